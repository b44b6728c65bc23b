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
