"""Checkpoint round trip (bit-exact outputs) and clear errors for corrupt / wrong-version files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from umq.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, load_model, save_checkpoint
from umq.labels import EMOTIONS
from umq.model import UMQ, ModalitySpec, UMQConfig
from umq.model.norm import NormStats

torch.set_num_threads(1)


def _model_and_norm():
    torch.manual_seed(0)
    cfg = UMQConfig([ModalitySpec("audio", 7, "conv"), ModalitySpec("video", 4)], d=16, d_s=8, experts=2,
                    expert_hidden=16)
    model = UMQ(cfg)
    model.train()
    x = {"audio": torch.randn(4, 5, 7), "video": torch.randn(4, 1, 4)}
    from umq.types import ModalityInput

    inputs = {m: ModalityInput(v, torch.ones(v.shape[:2], dtype=torch.bool)) for m, v in x.items()}
    model(inputs, torch.ones(4, 2, dtype=torch.bool))  # updates the EMA baseline buffer: must be saved too
    norm = NormStats({"audio": np.arange(7, dtype=np.float32), "video": np.ones(4, np.float32)},
                     {"audio": np.ones(7, np.float32), "video": np.full(4, 2.0, np.float32)}, ["audio"])
    return model.eval(), norm, inputs


def test_round_trip_is_bit_exact(tmp_path):
    model, norm, inputs = _model_and_norm()
    present = torch.tensor([[True, True], [True, False], [False, True], [True, True]])
    path = save_checkpoint(tmp_path / "m.pt", kind="umq", model=model, labels=list(EMOTIONS), norm=norm,
                           data={"kind": "ravdess", "audio_view": "seq"}, metrics={"acc": 0.5})
    loaded, norm2, ck = load_model(path)
    assert ck["format_version"] == FORMAT_VERSION and ck["metrics"] == {"acc": 0.5}
    assert not loaded.training
    with torch.inference_mode():
        a, b = model(inputs, present), loaded(inputs, present)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.q, b.q) and torch.equal(a.routing, b.routing)
    assert torch.equal(model.enhancer.b, loaded.enhancer.b) and model.enhancer.b.abs().sum() > 0
    assert np.array_equal(norm2.mean["audio"], norm.mean["audio"]) and norm2.speaker_norm == ["audio"]


def test_corrupt_and_wrong_version_files_give_clear_errors(tmp_path):
    model, norm, _ = _model_and_norm()
    good = save_checkpoint(tmp_path / "m.pt", kind="umq", model=model, labels=list(EMOTIONS), norm=norm, data={},
                           metrics={})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=f"truncated.pt.*format_version {FORMAT_VERSION}"):
        load_checkpoint(truncated)
    ck = torch.load(good, weights_only=True)
    ck["format_version"] = 99
    torch.save(ck, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match=r"v99.pt has format_version 99; this code reads format_version 1"):
        load_checkpoint(tmp_path / "v99.pt")
    del ck["format_version"]
    torch.save(ck, tmp_path / "nov.pt")
    with pytest.raises(CheckpointError, match="nov.pt has no format_version"):
        load_checkpoint(tmp_path / "nov.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")


def test_checkpoint_with_code_objects_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format_version": 1, "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt is unreadable or corrupt"):
        load_checkpoint(tmp_path / "evil.pt")
