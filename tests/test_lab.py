"""Quality-lab corruptions: image corruptions get monotonically worse, lab settings act on the right modality."""
from __future__ import annotations

import numpy as np
import pytest

from streams.packets import AUDIO_RATE, AudioChunk, Modality, SourceState, VideoFrame
from umq.perception.face import corrupt as video_corrupt
from umq.perception.face.cues import sharpness
from umq.runtime.lab import LabSettings, QualityLab

from .helpers import status, text, window_of


def _face_image(size=(160, 120)) -> np.ndarray:
    import cv2
    from skimage import data

    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def test_image_corruptions_are_identity_at_zero_and_worse_with_severity():
    img = _face_image()
    for kind in video_corrupt.CORRUPTIONS:
        assert np.array_equal(video_corrupt.corrupt(img, kind, 0.0, 0), img)
    sharp = [sharpness(video_corrupt.corrupt(img, "blur", s, 0)[..., 1]) for s in (0.0, 0.3, 0.6, 1.0)]
    assert sharp == sorted(sharp, reverse=True) and sharp[-1] < 0.1 * sharp[0]
    bright = [video_corrupt.corrupt(img, "dark", s, 0).mean() for s in (0.0, 0.3, 0.6, 1.0)]
    assert bright == sorted(bright, reverse=True) and bright[-1] < 10
    covered = [np.mean(video_corrupt.corrupt(img, "occlude", s, 1) != img) for s in (0.2, 0.5, 0.9)]
    assert covered == sorted(covered)
    with pytest.raises(ValueError, match="unknown image corruption"):
        video_corrupt.corrupt(img, "fog", 0.5)


def _window(seconds=2.0, words="I am really happy to see you today"):
    img = _face_image()
    frames = [VideoFrame(i / 10, img, i) for i in range(int(seconds * 10))]
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
    speech = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    speech += 0.001 * rng.standard_normal(speech.shape).astype(np.float32)
    chunks = [AudioChunk(k * 0.1, speech[k * 1600:(k + 1) * 1600]) for k in range(int(seconds * 10))]
    running = [status(m, SourceState.RUNNING, 0.0) for m in Modality]
    return window_of(running + frames + chunks + [text(0.2, 1.8, words)], seconds)


def test_lab_defaults_change_nothing():
    w = _window()
    assert QualityLab().apply(w) is w
    with pytest.raises(ValueError):
        LabSettings(blur=1.5)
    with pytest.raises(ValueError):
        LabSettings(noise_snr_db=float("nan"))


def test_camera_off_and_no_transcript_mark_the_modality_missing_with_a_reason():
    w = _window()
    out = QualityLab(LabSettings(camera_off=True, no_transcript=True)).apply(w)
    assert not out.video.health.present and "camera off" in out.video.health.reason and not out.video.frames
    assert not out.text.health.present and "transcript removed" in out.text.health.reason
    assert out.audio is w.audio  # untouched
    assert w.video.health.present and w.video.frames  # the original window is not modified


def test_noise_is_added_at_the_requested_snr_and_mute_silences():
    w = _window()
    for snr in (20.0, 0.0):
        out = QualityLab(LabSettings(noise_snr_db=snr)).apply(w)
        noise = out.audio.samples - w.audio.samples
        measured = 10 * np.log10(np.mean(w.audio.samples ** 2) / np.mean(noise ** 2))
        assert abs(measured - snr) < 0.5
    muted = QualityLab(LabSettings(mute=True)).apply(w)
    assert muted.audio.health.present and not np.any(muted.audio.samples)


def test_frame_corruption_is_the_same_for_a_frame_in_every_window():
    """Overlapping windows share frames; each frame must be corrupted identically (the face cache relies on it)."""
    lab = QualityLab(LabSettings(image_noise=0.5, occlude=0.4))
    w = _window()
    a, b = lab.apply(w), lab.apply(w)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a.video.frames, b.video.frames))
    assert not np.array_equal(a.video.frames[0].image, w.video.frames[0].image)
    # the dashboard's "what perception sees" preview uses the same per-frame function
    assert all(np.array_equal(QualityLab.corrupt_frame(f, lab.settings).image, g.image)
               for f, g in zip(w.video.frames, a.video.frames))


def test_frame_drop_and_word_drop_remove_about_the_requested_share():
    w = _window(seconds=2.0, words=" ".join(f"word{i}" for i in range(40)))
    out = QualityLab(LabSettings(frame_drop=0.5, word_drop=0.5)).apply(w)
    assert 4 <= len(out.video.frames) <= 16 and out.video.health.dropped >= len(w.video.frames) - len(out.video.frames)
    assert 10 <= out.text.words <= 30
    everything = QualityLab(LabSettings(frame_drop=1.0)).apply(w)
    assert not everything.video.health.present and "dropped" in everything.video.health.reason
    assert out.meta["lab"]["video"] == "frame drop 50%"
