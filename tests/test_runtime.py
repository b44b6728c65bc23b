"""The shipped runtime model on real signals: quality estimates and states respond to real degradations.

Inputs: scikit-image's public-domain astronaut photo, espeak-ng speech, typed text; nothing from ../shared/data.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from streams.packets import AUDIO_RATE, AudioChunk, Modality, SourceState, VideoFrame
from umq.checkpoint import CheckpointError
from umq.result import Result
from umq.runtime.analyzer import ASSETS, Analyzer, load_runtime_model
from umq.runtime.lab import LabSettings

from .helpers import status, text, window_of

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng not installed (.ci/run installs it)")


def _speech(words: str) -> np.ndarray:
    import soundfile

    wav = subprocess.run(["espeak-ng", "-s", "150", "--stdout", words], capture_output=True, check=True).stdout
    import io

    x, sr = soundfile.read(io.BytesIO(wav), dtype="float32")
    import soxr

    return soxr.resample(x, sr, AUDIO_RATE).astype(np.float32)


@pytest.fixture(scope="module")
def analyzer():
    a = Analyzer()
    a.warm_up()
    return a


@pytest.fixture(scope="module")
def clean_window():
    import cv2
    from skimage import data

    img = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (320, 240))
    speech = _speech("I am so happy today, this is wonderful news for all of us")
    speech = np.pad(speech, (0, max(0, 2 * AUDIO_RATE - speech.size)))[-2 * AUDIO_RATE:] * 3.0
    frames = [VideoFrame(i / 10, img, i) for i in range(20)]
    chunks = [AudioChunk(k * 0.1, speech[k * 1600:(k + 1) * 1600]) for k in range(20)]
    running = [status(m, SourceState.RUNNING, 0.0) for m in Modality]
    return window_of(running + frames + chunks + [text(0.1, 1.9, "I am so happy today, this is wonderful news")], 2.0)


def _analyse(a: Analyzer, w, settings: LabSettings | None = None) -> Result:
    a.reset()
    a.lab.set(settings or LabSettings())
    try:
        return a.predict(a.perceive(w))
    finally:
        a.lab.reset()


def test_shipped_checkpoints_load_and_bad_ones_are_named(tmp_path):
    for name in ("umq.pt", "moe_unaware.pt", "late_fusion.pt"):
        model, mean, std, ckpt = load_runtime_model(ASSETS / name)
        assert ckpt["data"]["kind"] == "runtime" and "non-commercial" in ckpt["data"]["licence"]
    with pytest.raises(CheckpointError, match="not a runtime model"):
        load_runtime_model(ASSETS.parent / "ravdess_pair" / "umq.pt")
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pt"):
        load_runtime_model(bad)


def test_other_encoder_weights_warn_but_a_front_end_refactor_only_notes(tmp_path, caplog):
    """A runtime checkpoint records the encoder weights it was trained on: other weights mean other input
    vectors (a warning naming the modality); a front-end code digest that differs is only noted (debug)."""
    import logging

    import torch

    from umq.runtime.features import encoder_weights_digest

    ckpt = torch.load(ASSETS / "umq.pt", map_location="cpu", weights_only=True)
    ckpt["data"]["encoder_weights"] = {m: encoder_weights_digest(m) for m in ("video", "audio", "text")}
    ckpt["data"]["encoders"] = {**ckpt["data"]["encoders"], "text": "0" * 16}
    path = tmp_path / "refactored.pt"
    torch.save(ckpt, path)
    with caplog.at_level(logging.DEBUG, logger="umq.runtime.analyzer"):
        load_runtime_model(path)
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    assert any("text front-end code changed" in r.getMessage() for r in caplog.records)
    caplog.clear()
    ckpt["data"]["encoder_weights"]["video"] = "f" * 16
    torch.save(ckpt, path)
    with caplog.at_level(logging.INFO, logger="umq.runtime.analyzer"):
        load_runtime_model(path)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "other video encoder weights" in warned[0]


def test_clean_window_gives_a_valid_result_with_every_modality_present(analyzer, clean_window):
    r = _analyse(analyzer, clean_window)
    assert set(r.quality) == {"video", "audio", "text"}
    assert r.state["video"] != "missing" and r.state["audio"] != "missing" and r.state["text"] != "missing", r.reason
    assert r.quality["video"] > 0.5 and r.quality["audio"] > 0.5 and r.quality["text"] > 0.5, r.quality
    assert abs(sum(r.routing) - 1) < 1e-3 and r.baseline is not None and r.baseline.label in r.probs
    assert r.primary_face is not None and {"face_ms", "voice_ms", "text_ms", "umq_ms"} <= set(r.latency_ms)


@pytest.mark.parametrize("settings, modality, reason", [
    (LabSettings(camera_off=True), "video", "camera off"),
    (LabSettings(mute=True), "audio", "mic silent"),
    (LabSettings(no_transcript=True), "text", "transcript removed"),
])
def test_switched_off_inputs_are_missing_with_their_reason(analyzer, clean_window, settings, modality, reason):
    r = _analyse(analyzer, clean_window, settings)
    assert r.state[modality] == "missing" and r.quality[modality] == 0.0 and reason in r.reason[modality], r.reason
    others = [m for m in r.state if m != modality]
    assert all(r.state[m] != "missing" for m in others)


@pytest.mark.parametrize("modality, mild, strong", [
    ("audio", LabSettings(noise_snr_db=10.0), LabSettings(noise_snr_db=-5.0)),
    ("video", LabSettings(blur=0.3), LabSettings(blur=0.8)),
    ("text", LabSettings(word_replace=0.3), LabSettings(word_replace=0.9)),
])
def test_quality_falls_with_the_severity_of_a_real_degradation(analyzer, clean_window, modality, mild, strong):
    q = [_analyse(analyzer, clean_window, s).quality[modality] for s in (LabSettings(), mild, strong)]
    assert q[0] > q[2] and q[1] >= q[2] - 0.02, q


def test_voice_gauge_falls_as_a_noise_floor_rises(analyzer):
    """Speech sinking under a steady noise floor (three sentences at a natural level, white noise at 10, -5 and
    -15 dB SNR): the mean voice gauge falls with every step, and speech 15 dB under the noise reads as nearly
    useless (the voice ensemble keeps 0.14 of its clean accuracy there on held-out RAVDESS). Single windows
    scatter by +-0.15, so the check is on means. The runtime ladder once stopped at 2 dB SNR per clip, and that
    model read these sentences at -5 dB as more useful than at 10 dB (means 0.67 and 0.65) and at -15 dB 0.32."""
    windows = []
    for words in ("I am so happy today, this is wonderful news for all of us",
                  "Leave me alone, I told you not to come here again",
                  "the train leaves at nine and arrives in the afternoon"):
        sp = _speech(words)
        sp = np.pad(sp, (0, max(0, 2 * AUDIO_RATE - sp.size)))[-2 * AUDIO_RATE:]
        chunks = [AudioChunk(k * 0.1, sp[k * 1600:(k + 1) * 1600]) for k in range(20)]
        windows.append(window_of([status(m, SourceState.RUNNING, 0.0) for m in Modality] + chunks, 2.0))
    means = {snr: float(np.mean([_analyse(analyzer, w, LabSettings(noise_snr_db=snr)).quality["audio"]
                                 for w in windows]))
             for snr in (10.0, -5.0, -15.0)}
    assert means[10.0] > means[-5.0] + 0.1 and means[-5.0] > means[-15.0] + 0.1, means
    assert means[-15.0] < 0.3, means


def test_dark_frames_are_reported(analyzer, clean_window):
    r = _analyse(analyzer, clean_window, LabSettings(dark=0.9))
    video = r.modalities["video"]
    assert (video.state == "missing" and "no face" in video.reason) or "too dark" in video.flags, video


def test_badge_follows_the_gauge_and_cue_findings_stay_flags(analyzer, clean_window):
    """One rule (issue 17): a present modality is low exactly when its calibrated quality is below the threshold;
    a cue finding ("too dark", "noisy: SNR ...", "clipping") is shown as a flag beside it and never turns a
    useful modality low by itself (the screen once showed "voice 0.89 LOW noisy")."""
    from umq.runtime.states import LOW_QUALITY

    flagged_ok = 0
    for s in (LabSettings(), LabSettings(noise_snr_db=3.0), LabSettings(blur=0.3), LabSettings(dark=0.9),
              LabSettings(clipping=0.2), LabSettings(word_drop=0.5)):
        r = _analyse(analyzer, clean_window, s)
        for m, rep in r.modalities.items():
            if rep.state in ("missing", "idle"):
                continue
            assert (rep.state == "low") == (rep.quality < LOW_QUALITY), (s, m, rep)
            flagged_ok += bool(rep.flags) and rep.state == "ok" and rep.reason == ""
    assert flagged_ok, "no flagged modality read ok: the check above never saw a flag on a useful input"


def test_all_inputs_missing_names_no_class(analyzer, clean_window):
    r = _analyse(analyzer, clean_window, LabSettings(camera_off=True, mute=True, no_transcript=True))
    assert r.no_evidence and r.label == "" and set(r.state.values()) <= {"missing", "idle"}, r.state
    assert r.to_json()["label"] == "" and r.to_json()["no_evidence"] is True


def test_each_present_modality_reports_its_own_prediction(analyzer, clean_window):
    r = _analyse(analyzer, clean_window)
    for m in ("video", "audio", "text"):
        pred = r.modalities[m].prediction
        assert pred is not None and abs(sum(pred.probs.values()) - 1) < 1e-3 and pred.label in r.probs, m
    muted = _analyse(analyzer, clean_window, LabSettings(mute=True))
    assert muted.modalities["audio"].prediction is None


def test_non_finite_features_do_not_break_the_result(analyzer, clean_window):
    import dataclasses

    import torch

    analyzer.reset()
    p = analyzer.perceive(clean_window)
    audio = p.modalities["audio"]
    p.modalities["audio"] = dataclasses.replace(audio, x=torch.full_like(audio.x, float("nan")))
    r = analyzer.predict(p)
    assert all(np.isfinite(v) for v in r.probs.values()) and abs(sum(r.probs.values()) - 1) < 1e-3
    assert r.state["audio"] != "ok" and r.quality["audio"] < 0.5, r.modalities["audio"]
    assert r.state["video"] == "ok" or r.modalities["video"].flags, r.modalities["video"]


def test_a_flickering_microphone_gives_valid_results_that_do_not_drift(analyzer, clean_window):
    analyzer.reset()
    results = []
    try:
        for k in range(6):  # the mic drops out every other window, without a session reset in between
            analyzer.lab.set(LabSettings(mute=bool(k % 2)))
            results.append(analyzer.predict(analyzer.perceive(clean_window)))
    finally:
        analyzer.lab.reset()
    for k, r in enumerate(results):
        assert abs(sum(r.probs.values()) - 1) < 1e-3 and all(np.isfinite(v) for v in r.probs.values())
        assert (r.state["audio"] == "missing") == bool(k % 2), (k, r.state)
    first, last = results[0].probs, results[-2].probs
    assert max(abs(first[e] - last[e]) for e in first) < 0.05, (first, last)


def _gated_calibration(tmp_path, left_out: set[str]):
    """A calibration whose map reads 0 for the modalities in ``left_out`` and 1 for the others, gate 0.3."""
    from umq.runtime.calibration import QualityCalibration

    knots = {m: ((0.0, 1.0), (0.0, 0.0) if m in left_out else (1.0, 1.0)) for m in ("video", "audio", "text")}
    path = tmp_path / f"cal_{'_'.join(sorted(left_out))}.json"
    QualityCalibration(knots, gate=0.3).save(path)
    return path


def test_the_quality_gate_leaves_a_modality_out_exactly_as_if_it_were_missing(tmp_path, clean_window):
    a = Analyzer(calibration=_gated_calibration(tmp_path, {"video"}))
    gated = _analyse(a, clean_window)
    video = gated.modalities["video"]
    assert video.state == "low" and video.reason.startswith("left out of the fusion"), video
    assert video.left_out and not video.usable and video.to_json()["left_out"] is True
    assert not gated.modalities["audio"].left_out and "left_out" not in gated.modalities["audio"].to_json()
    assert gated.quality["audio"] == 1.0 and "left out" not in gated.reason["audio"], gated.reason
    removed = _analyse(a, clean_window, LabSettings(camera_off=True))  # the model told the camera is off
    assert removed.state["video"] == "missing"
    assert np.allclose(list(gated.probs.values()), list(removed.probs.values()), atol=1e-5)
    plain = _analyse(Analyzer(calibration=None), clean_window)  # no calibration, no gate
    assert not np.allclose(list(plain.probs.values()), list(removed.probs.values()), atol=1e-3)
    a.close()


def test_every_modality_left_out_names_no_class(tmp_path, clean_window):
    a = Analyzer(calibration=_gated_calibration(tmp_path, {"video", "audio", "text"}))
    r = _analyse(a, clean_window)
    assert r.no_evidence and r.label == "", r.reason
    assert all(s == "low" for s in r.state.values()) and all("left out" in x for x in r.reason.values())
    assert Result.from_json(r.to_json()).modalities["video"].left_out
    a.close()


def test_the_baseline_reads_inputs_standardised_with_its_own_statistics(tmp_path, clean_window):
    """A quality-unaware baseline trained on other caches than umq.pt has other normalisation statistics; the lab's
    comparison is only fair if it reads its inputs standardised with its own, not with UMQ's."""
    import torch

    from umq.runtime.fast import eager_forward
    from umq.runtime.features import MODALITIES

    ckpt = torch.load(ASSETS / "moe_unaware.pt", map_location="cpu", weights_only=True)
    for m in MODALITIES:  # statistics no shipped model uses: raw vectors in
        ckpt["norm"]["mean"][m] = torch.zeros_like(ckpt["norm"]["mean"][m])
        ckpt["norm"]["std"][m] = torch.ones_like(ckpt["norm"]["std"][m])
    path = tmp_path / "baseline_raw.pt"
    torch.save(ckpt, path)
    a = Analyzer(baseline=path, calibration=None)
    a.reset()
    p = a.perceive(clean_window)
    got = np.array(list(a.predict(p).baseline.probs.values()))
    model = load_runtime_model(path, "cpu")[0]
    xs = tuple(torch.nan_to_num(p.modalities[m].x.cpu().float()).view(1, 1, -1) * p.modalities[m].present
               for m in MODALITIES)
    present = torch.tensor([[p.modalities[m].present for m in MODALITIES]])
    with torch.inference_mode():
        want = eager_forward(model.eval())(xs, present)[0][0].numpy().astype(np.float64)
    assert np.allclose(got, want / want.sum(), atol=1e-4), (got, want)
    shared = Analyzer(calibration=None)  # the shipped pair shares one normalisation: the same vectors serve both
    assert shared._baseline_norm is None and a._baseline_norm is not None
    a.close()
    shared.close()
