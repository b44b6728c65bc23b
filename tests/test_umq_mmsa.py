"""MMSA pickle loader on a generated pickle, and refusal of pickles that would run code."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from umq.training.data.mmsa import load_mmsa, safe_load_pickle


def _split(n, rng):
    return {
        "raw_text": np.array([f"utt {i}" for i in range(n)], dtype=object),
        "id": [f"vid_{i}" for i in range(n)],
        "text": rng.standard_normal((n, 6, 768)).astype(np.float32),
        "text_bert": np.stack([rng.integers(0, 100, (n, 6)), (np.arange(6) < 4)[None].repeat(n, 0).astype(int),
                               np.zeros((n, 6), int)], 1),
        "audio": rng.standard_normal((n, 9, 5)).astype(np.float32),
        "audio_lengths": rng.integers(1, 10, n),
        "vision": rng.standard_normal((n, 8, 20)).astype(np.float32),
        "vision_lengths": np.r_[0, rng.integers(1, 9, n - 1)],
        "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
        "classification_labels": rng.integers(0, 3, n),
    }


def test_load_generated_pickle(tmp_path):
    rng = np.random.default_rng(0)
    data = {"train": _split(5, rng), "valid": _split(3, rng), "test": _split(4, rng)}
    data["test"]["audio"][2] = 0.0  # an all-zero modality counts as absent
    path = tmp_path / "unaligned.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    fs = load_mmsa(path, "test")
    assert fs.modalities == ("text", "audio", "video") and len(fs) == 4
    assert fs.dims() == {"text": 768, "audio": 5, "video": 20}
    assert fs.mask["text"].sum(1).tolist() == [4, 4, 4, 4]  # from text_bert's attention-mask row
    assert np.array_equal(fs.mask["audio"].sum(1), np.minimum(data["test"]["audio_lengths"], 9))
    assert fs.mask["video"][0].sum() == 1  # zero length keeps one (masked-as-valid) step, never an empty row
    assert fs.present[:, 1].tolist() == [True, True, False, True]
    assert np.allclose(fs.y_reg, data["test"]["regression_labels"]) and fs.ids[0] == "vid_0"
    with pytest.raises(ValueError, match="split 'dev'"):
        load_mmsa(path, "dev")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _Custom:
    pass


@pytest.mark.parametrize("payload,name", [(_Exploit(), "system"), (_Custom(), "_Custom")])
def test_malicious_pickles_are_refused(tmp_path, payload, name):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": {"x": payload}}))
    with pytest.raises(pickle.UnpicklingError, match=f"refusing to load global .*{name}"):
        safe_load_pickle(path)


def test_regression_train_and_evaluate_cli(tmp_path, capsys):
    import torch

    from umq.training import evaluate, train

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    data = {s: _split(n, rng) for s, n in (("train", 24), ("valid", 8), ("test", 8))}
    for s in data.values():
        s["text"] = s["text"][:, :, :16]  # smaller text features keep the test fast
    pkl = tmp_path / "mini.pkl"
    pkl.write_bytes(pickle.dumps(data, protocol=4))
    cfg = tmp_path / "mmsa.toml"
    cfg.write_text('[data]\nkind = "mmsa"\n[model]\ntask = "regression"\nd = 16\nd_s = 8\nexperts = 2\n'
                   'expert_hidden = 16\nencoder = "transformer"\n[train]\nepochs = 2\nbatch_size = 8\n')
    ckpt = tmp_path / "r.pt"
    assert train.main(["--config", str(cfg), "--data", str(pkl), "--out", str(ckpt), "--quiet"]) == 0
    assert evaluate.main(["protocol", "--checkpoint", str(ckpt), "--data", str(pkl), "--seeds", "1",
                          "--out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "acc2" in out and "mae" in out and "corr" in out
