"""The bundled demo session: it replays, its scripted stretches show up as missing where capture knows it, and
the builder regenerates exactly what is shipped."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from app.cli import DEMO_SESSION
from app.demo import DURATION_S, SCRIPT, build
from streams.replay import Replay
from streams.session import SessionReader


def test_demo_session_is_shipped_and_complete():
    reader = SessionReader(DEMO_SESSION)
    assert reader.complete and reader.end_t == DURATION_S
    assert 30 <= DURATION_S <= 60


def test_demo_replay_marks_the_camera_off_stretch_and_keeps_silence_present():
    windows = list(Replay(DEMO_SESSION, speed=None).windows())
    assert len(windows) == int((DURATION_S - 2.0) / 0.5) + 1
    off0, off1 = SCRIPT["camera_off"]
    for w in windows:
        video, audio = w.video.health, w.audio.health
        if w.t0 >= off0 and w.t1 <= off1:
            assert not video.present and video.reason.startswith("camera disconnected")
        if w.t1 <= off0 or w.t0 >= off1:
            assert video.present
        assert audio.present  # a muted mic is present data at a low level; judging it is the model's job
    mute0, mute1 = SCRIPT["mic_silent"]
    muted = [w for w in windows if w.t0 >= mute0 and w.t1 <= mute1]
    assert muted and all(np.abs(w.audio.samples).max() == 0.0 for w in muted)
    no_tr0, no_tr1 = SCRIPT["no_transcript"]
    assert all(not w.text.health.present for w in windows if w.t0 >= no_tr0 + 1.0 and w.t1 <= no_tr1)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (.ci/run installs it)")
def test_builder_regenerates_the_shipped_session(tmp_path):
    build(tmp_path / "demo")
    fresh, shipped = SessionReader(tmp_path / "demo"), SessionReader(DEMO_SESSION)
    assert [f.t for f in fresh.frames()] == [f.t for f in shipped.frames()]
    a = np.concatenate([c.samples for c in fresh.audio_chunks()])
    b = np.concatenate([c.samples for c in shipped.audio_chunks()])
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    assert [s.text for s in fresh.text_segments()] == [s.text for s in shipped.text_segments()]
    f0 = next(iter(fresh.frames())).image.astype(int)
    s0 = next(iter(shipped.frames())).image.astype(int)
    assert np.abs(f0 - s0).mean() < 1.0
    meta = json.loads((tmp_path / "demo" / "meta.json").read_text())
    assert meta["script"] == {k: list(v) for k, v in SCRIPT.items()}
