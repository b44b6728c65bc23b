"""RAVDESS loader on a small subset of the shared data (skips cleanly when the data folder is absent)."""
from __future__ import annotations

import numpy as np
import pytest

from umq.labels import EMOTIONS
from umq.training.data import apply_norm, default_data_root, fit_norm, parse_ids
from umq.training.data.features_audio import FRAME_NAMES, STAT_NAMES

ROOT = default_data_root()
RAVDESS = None if ROOT is None else ROOT / "ravdess"


def test_parse_ids():
    assert parse_ids("1-3,7") == [1, 2, 3, 7] and parse_ids("all") is None and parse_ids(None) is None


@pytest.mark.data
@pytest.mark.skipif(RAVDESS is None or not (RAVDESS / "labels.csv").exists(), reason="shared RAVDESS data absent")
def test_ravdess_actor_subset():
    from umq.training.data.ravdess import load_ravdess

    fs = load_ravdess(RAVDESS, actors=[2], progress=False)
    assert len(fs) == 60 and set(fs.groups) == {2} and fs.present.all()
    assert fs.x["audio"].shape == (60, 1, len(STAT_NAMES)) and fs.x["video"].shape == (60, 1, 35)
    assert np.isfinite(fs.x["audio"]).all() and fs.feature_names["video"][0] == "AU01_r"
    counts = np.bincount(fs.y, minlength=7)
    assert counts[EMOTIONS.index("neutral")] == 12  # 4 neutral + 8 calm clips per actor
    assert counts[EMOTIONS.index("happy")] == 8
    # f0 of a speaking actor is voiced for a good share of the trimmed clip
    vf = fs.x["audio"][:, 0, STAT_NAMES.index("voiced_frac")]
    assert 0.2 < vf.mean() < 0.95
    seq = load_ravdess(RAVDESS, actors=[2], audio_view="seq", progress=False)
    assert seq.x["audio"].shape[2] == len(FRAME_NAMES) and seq.mask["audio"].sum(1).min() > 10
    norm = fit_norm(fs, ["audio", "video"])
    z = apply_norm(fs, norm)
    assert np.allclose(z.x["audio"].mean((0, 1)), 0, atol=1e-4)  # one actor: per-speaker == global stats


def test_audio_feature_cache_follows_the_files_bytes(tmp_path, monkeypatch):
    """A remounted (touched) or copied audio file reads its cached features; changed bytes are extracted again."""
    import os
    import shutil

    import soundfile as sf

    from umq.training.data import features_audio as fa

    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    wav = tmp_path / "a" / "clip.wav"
    wav.parent.mkdir()
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32),
             16_000)
    calls = []
    real = fa.frame_features
    monkeypatch.setattr(fa, "frame_features", lambda y, p: calls.append(1) or real(y, p))
    cache, params = tmp_path / "cache", fa.AudioFeatureParams()
    cache.mkdir()
    first = fa.extract_file(wav, params, cache)
    os.utime(wav, (1e9, 1e9))
    copy = tmp_path / "b" / "clip.wav"
    copy.parent.mkdir()
    shutil.copy(wav, copy)
    again, copied = fa.extract_file(wav, params, cache), fa.extract_file(copy, params, cache)
    assert len(calls) == 1 and len(list(cache.glob("*.npz"))) == 1
    assert np.array_equal(first[1], again[1]) and np.array_equal(first[1], copied[1])
    sf.write(copy, np.zeros(16_000, np.float32) + 0.1 * np.sin(2 * np.pi * 300 * t).astype(np.float32), 16_000)
    fa.extract_file(copy, params, cache)
    assert len(calls) == 2 and len(list(cache.glob("*.npz"))) == 2
