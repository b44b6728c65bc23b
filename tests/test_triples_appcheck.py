"""The through-the-app fusion check: each condition changes only what it names, and items are scored from the
windows inside their interval."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from umq.labels import EMOTIONS
from umq.training.data import default_data_root
from umq.training.runtime.appcheck import Item, gauge_vs_usefulness, per_clip_snr, score, voice_snr, write_condition

DATA = default_data_root()


def _items(n: int = 3) -> list[Item]:
    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    return [Item(k, rng.integers(0, 255, (48, 48)).astype(np.uint8),
                 (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), f"line {k}") for k in range(n)]


def _audio(video) -> np.ndarray:
    wav = video.with_suffix(".check.wav")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(video), "-ac", "1", "-ar", "16000", str(wav)],
                   check=True)
    return sf.read(wav, dtype="float32")[0]


def test_conditions_change_only_what_they_name(tmp_path):
    items = _items()
    clean = write_condition(items, "clean", 2.0, tmp_path, 0)
    srt = clean.with_suffix(".srt").read_text()
    assert "line 0" in srt and "line 2" in srt
    a_clean = _audio(clean)
    assert np.sqrt(np.mean(a_clean ** 2)) > 0.05
    muted = write_condition(items, "mic_muted", 2.0, tmp_path, 0)
    assert np.abs(_audio(muted)).max() < 1e-3 and muted.with_suffix(".srt").is_file()
    none = write_condition(items, "no_transcript", 2.0, tmp_path, 0)
    assert not none.with_suffix(".srt").exists()
    noisy = _audio(write_condition(items, "voice_0db", 2.0, tmp_path, 0))
    silent_gap = slice(int(1.8 * 16_000), int(1.95 * 16_000))  # between two clips: noise only
    assert np.sqrt(np.mean(noisy[silent_gap] ** 2)) > 0.1 and np.abs(a_clean[silent_gap]).max() < 0.02
    with pytest.raises(ValueError, match="unknown condition"):
        write_condition(items, "foggy", 2.0, tmp_path, 0)
    # a noise ladder: voice_<N>db adds the same noise N dB quieter
    ten = _audio(write_condition(items, "voice_10db", 2.0, tmp_path, 0))
    ratio = np.sqrt(np.mean(ten[silent_gap] ** 2)) / np.sqrt(np.mean(noisy[silent_gap] ** 2))
    assert abs(20 * np.log10(ratio) + 10) < 1.0, ratio
    assert voice_snr("voice_-5db") == -5.0 and voice_snr("voice_0db") == 0.0 and voice_snr("mic_muted") is None


def test_the_track_snr_puts_soft_clips_below_the_nominal_one():
    """The noise floor is set against the whole track, as in a room: a clip 20 dB softer than another sits
    20 dB lower, and the louder clips (which dominate the track's level) sit a little above the nominal SNR."""
    items = _items(2)
    soft = Item(1, items[1].face, items[1].voice * 0.1, items[1].line)
    snr = per_clip_snr([items[0], soft], 2.0, 10.0)
    assert snr[0] - snr[1] == pytest.approx(20.0, abs=0.01)
    assert 10.0 < snr[0] < 13.1  # at most 10 log10(2) above: the loud clip is half the track's non-silent samples


def _row(t0: float, label: str, video: str | None = None, empty: bool = False, quality: float = 0.8) -> dict:
    probs = {e: (0.9 if e == label else 0.1 / 6) for e in EMOTIONS}
    pred = {"probs": {e: (0.9 if e == video else 0.1 / 6) for e in EMOTIONS}} if video else None
    return {"t0": t0, "t1": t0 + 2.0, "probs": probs, "label": "" if empty else label,
            "baseline": {"probs": probs}, "modalities": {"video": {"prediction": pred, "quality": quality}}}


def test_items_are_scored_from_their_own_windows_and_an_empty_label_is_wrong():
    items = _items(2)  # labels 0 (neutral) and 1 (happy), 4 s each
    rows = [_row(0.0, "neutral", "neutral"), _row(2.0, "neutral", "sad"), _row(3.0, "happy"),  # straddles: ignored
            _row(4.0, "happy", empty=True), _row(6.0, "happy", empty=True)]
    rows[1]["modalities"]["video"]["state"] = "idle"  # nothing to read: left out of the gauge's mean
    rows[1]["modalities"]["video"]["quality"] = 0.0
    rep = score(rows, items, 4.0)
    assert rep["fused"]["accuracy"] == 0.5  # item 1 has only "no usable input" windows
    assert rep["windows_without_label"] == 2
    assert rep["baseline"]["accuracy"] == 1.0 and rep["video"]["items_scored"] == 1
    # the gauge: mean over items of the mean quality of the item's own windows (item 0: 0.8; item 1: 0.8)
    assert rep["video"]["mean_gauge"] == pytest.approx(0.8) and "audio" not in rep


def test_gauge_is_set_beside_the_modalitys_relative_accuracy_through_the_app():
    """Clean reads 1 by definition; an unscored item (no face found) counts as a chance guess; a modality with
    no prediction at all (camera covered) is useless (relative accuracy 0)."""
    conds = {"clean": {"items": 70, "video": {"accuracy": 0.6, "items_scored": 70, "mean_gauge": 0.9}},
             "face_blurred": {"items": 70, "video": {"accuracy": 0.5, "items_scored": 56, "mean_gauge": 0.5}},
             "face_covered": {"items": 70, "video": {"items_scored": 0, "mean_gauge": 0.0}}}
    g = gauge_vs_usefulness(conds)
    assert g["clean"]["video"] == {"mean_gauge": 0.9, "relative_accuracy": 1.0, "gap": -0.1}
    acc = (0.5 * 56 + 14 / 7) / 70  # 0.4286
    assert g["face_blurred"]["video"]["relative_accuracy"] == pytest.approx((acc - 1 / 7) / (0.6 - 1 / 7), abs=1e-4)
    assert g["face_covered"]["video"]["relative_accuracy"] == 0.0


@pytest.mark.slow
@pytest.mark.skipif(DATA is None, reason="../shared/data not found (set UMQ_DATA)")
def test_app_triples_replays_through_the_app(tmp_path):
    out = tmp_path / "rep.json"
    subprocess.run([sys.executable, "-m", "umq.evaluate", "app-triples", "--data", str(DATA), "--per-class", "1",
                    "--conditions", "clean", "face_covered", "--workdir", str(tmp_path), "--out", str(out)],
                   check=True, timeout=600)
    rep = json.loads(out.read_text())
    c = rep["conditions"]
    assert c["clean"]["items"] == 7 and c["clean"]["video"]["items_scored"] >= 6
    assert "video" not in c["face_covered"] or c["face_covered"]["video"]["items_scored"] <= 1  # no face, no say
    assert "video" not in rep["degraded_minus_removed"]  # face_blurred was not played
