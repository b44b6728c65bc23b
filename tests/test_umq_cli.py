"""End to end through the CLIs on a tiny generated RAVDESS-layout folder: train -> evaluate -> resume."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from umq.checkpoint import load_checkpoint
from umq.training import evaluate, train

torch.set_num_threads(1)

TINY_CONFIG = """
[data]
kind = "ravdess"
train_groups = "1-2"
val_groups = "3"
audio_view = "{view}"
speaker_norm = ["audio", "video"]
[model]
d = 16
d_s = 8
experts = 2
expert_hidden = 16
[model.encoders]
audio = "{encoder}"
[train]
epochs = 3
batch_size = 8
patience = 5
refit = {refit}
save_every = 1
"""


def make_ravdess(root: Path, actors=(1, 2, 3, 4), emotions=(1, 3, 5), reps=2, seconds=0.6) -> Path:
    """Synthetic clips with emotion-dependent pitch and loudness, AUs with emotion-dependent means."""
    rng = np.random.default_rng(0)
    rows, ids, au_i, au_p = [], [], [], []
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    for a in actors:
        (root / "audio16k" / f"Actor_{a:02d}").mkdir(parents=True, exist_ok=True)
        for e in emotions:
            for r in range(1, reps + 1):
                cid = f"03-01-{e:02d}-01-01-{r:02d}-{a:02d}"
                f0 = 110 + 40 * e + 10 * a
                y = (0.1 + 0.05 * e) * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(len(t))
                y = np.concatenate([np.zeros(1600), y, np.zeros(1600)]).astype(np.float32)
                rel = f"audio16k/Actor_{a:02d}/{cid}.flac"
                sf.write(root / rel, y, sr, subtype="PCM_16")
                rows.append({"clip_id": cid, "actor": a, "emotion_code": e, "audio": rel})
                ids.append(cid)
                au_i.append(rng.normal(e, 0.5, 17))
                au_p.append(rng.uniform(0, 1, 18))
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["clip_id", "actor", "emotion_code", "audio"])
        w.writeheader()
        w.writerows(rows)
    np.savez(root / "face_au.npz", clip_id=np.array(ids), au_intensity=np.array(au_i, np.float32),
             au_presence=np.array(au_p, np.float32), au_intensity_names=np.array([f"AU{i}_r" for i in range(17)]),
             au_presence_names=np.array([f"AU{i}_c" for i in range(18)]))
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_ravdess(tmp_path_factory.mktemp("ravdess"))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("UMQ_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.slow  # model loads or trains: seconds to minutes on 2 cores
@pytest.mark.parametrize("view,encoder,refit", [("stats", "mlp", "true"), ("seq", "conv", "false")])
def test_train_then_evaluate_cli(tiny_data, tmp_path, capsys, view, encoder, refit):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_CONFIG.format(view=view, encoder=encoder, refit=refit))
    ckpt = tmp_path / "m.pt"
    assert train.main(["--config", str(cfg), "--data", str(tiny_data), "--out", str(ckpt), "--quiet"]) == 0
    assert ckpt.exists() and not Path(str(ckpt) + ".last.pt").exists()
    ck = load_checkpoint(ckpt)
    assert ck["kind"] == "umq" and ck["labels"][0] == "neutral" and ck["data"]["audio_view"] == view
    assert ck["norm"]["speaker_norm"] == ["audio", "video"] and ck["metrics"]["best_epoch"] >= 1
    out_json = tmp_path / "res.json"
    rc = evaluate.main(["protocol", "--checkpoint", str(ckpt), "--data", str(tiny_data), "--actors", "4",
                        "--seeds", "2", "--out", str(out_json)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| m |" in printed and "missing 0.7" in printed and "noise σ=4" in printed
    res = json.loads(out_json.read_text())["m"]
    assert len(res) == 12 and 0.0 <= res["complete"]["acc"] <= 1.0 and "f1_std" in res["noise σ=2"]
    assert res["missing 0.7"]["q_audio"] < res["complete"]["q_audio"]  # missing audio -> q forced to 0


def test_resume_continues_from_last_checkpoint(tiny_data, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_CONFIG.format(view="stats", encoder="mlp", refit="false"))
    conf = train.load_config(cfg)
    ckpt = tmp_path / "m.pt"
    conf["train"]["epochs"] = 2
    train.train_model(conf, str(tiny_data), ckpt, progress=False)
    # simulate an interrupted 3-epoch run: a last-checkpoint from after epoch 2 of the same config
    conf["train"]["epochs"] = 3
    last = Path(str(ckpt) + ".last.pt")
    import umq.training.train as T

    orig = T._run_epoch
    calls = []

    def counting(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return orig(*a, **k)

    T._run_epoch = counting
    try:
        with pytest.raises(KeyboardInterrupt):
            train.train_model(conf, str(tiny_data), ckpt, progress=False)
    finally:
        T._run_epoch = orig
    assert last.exists() and load_checkpoint(last)["train_state"]["epoch"] == 2
    calls.clear()
    T._run_epoch = counting
    try:
        m = train.train_model(conf, str(tiny_data), ckpt, resume=True, progress=False)
    finally:
        T._run_epoch = orig
    assert len(calls) == 1 and m["epochs_run"] == 3 and not last.exists()


def test_evaluate_reports_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert evaluate.main(["protocol", "--checkpoint", str(bad), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "format_version 1" in err
