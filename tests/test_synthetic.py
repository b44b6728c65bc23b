"""Synthetic sources run as real threads on the session clock and script the failures a live session has."""
from __future__ import annotations

import time

import numpy as np
import pytest

from streams.buffer import TimeAlignedBuffer, WindowConfig, Windower
from streams.clock import SessionClock
from streams.packets import AUDIO_RATE, AudioChunk, SourceState, VideoFrame
from streams.source import Tee
from streams.synthetic import SyntheticCamera, SyntheticMicrophone, SyntheticTranscript, synthetic_audio


def run_live(sources, seconds, config=None):
    clock = SessionClock()
    buffer = TimeAlignedBuffer()
    got = []
    tee = Tee(buffer, got.append)
    windower = Windower(buffer, config or WindowConfig(hop_s=0.5))
    for s in sources:
        s.clock = clock
        s.connect(tee)
        s.start()
    windows = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        windows += windower.due(clock.now())
        time.sleep(0.02)
    for s in sources:
        s.stop()
    return got, windows


@pytest.mark.slow  # 5.2 s of live capture in real time
def test_camera_off_span_is_missing_within_one_hop_and_recovers():
    cam = SyntheticCamera(SessionClock(), fps=20, size=(64, 48), off=((2.6, 3.6),))
    got, windows = run_live([cam], 5.2)
    frames = [p for p in got if isinstance(p, VideoFrame)]
    assert frames and not any(2.6 <= f.t < 3.6 for f in frames)
    by_t1 = {w.t1: w.video.health for w in windows}
    assert by_t1[2.5].present
    assert not by_t1[3.0].present and by_t1[3.0].reason.startswith("camera disconnected")
    assert by_t1[4.5].present  # recovered without restart
    assert cam.counters.reconnects == 1


def test_microphone_chunks_tile_without_gaps_and_silence_is_present():
    mic = SyntheticMicrophone(SessionClock(), silent=((0.0, 10.0),))
    got, windows = run_live([mic], 2.6)
    chunks = [p for p in got if isinstance(p, AudioChunk)]
    assert len(chunks) > 50
    assert all(abs(b.t - a.t_end) < 1e-6 for a, b in zip(chunks, chunks[1:]))  # stream clock: exact tiling
    w = windows[0]
    assert w.audio.health.present and w.audio.health.missing < 0.05 * AUDIO_RATE
    assert np.abs(w.audio.samples).max() == 0.0


def test_transcript_lines_arrive_and_gap_is_missing():
    tr = SyntheticTranscript(SessionClock(), every_s=0.5, gaps=((0.9, 5.0),))
    got, windows = run_live([tr], 4.4)
    assert any(p.text for p in got if hasattr(p, "text"))
    assert windows[0].text.health.present  # [0, 2) holds the lines sent before the gap
    assert not windows[-1].text.health.present and windows[-1].text.health.reason == "no transcript"


def test_finite_source_ends_with_status():
    cam = SyntheticCamera(SessionClock(), fps=30, size=(32, 24), duration_s=0.3)
    cam.start()
    cam.join(2.0)
    assert cam.status.state is SourceState.ENDED
    assert 8 <= cam.counters.packets <= 10


def test_stop_is_prompt():
    mic = SyntheticMicrophone(SessionClock())
    mic.start()
    time.sleep(0.1)
    t = time.monotonic()
    mic.stop()
    assert time.monotonic() - t < 0.5
    assert mic.status.state is SourceState.STOPPED and not mic.alive


@pytest.mark.parametrize("kind", ["tone", "speechlike", "noise", "silence"])
def test_audio_kinds_are_bounded_float32(kind):
    x = synthetic_audio(kind, 1.0, 1600)
    assert x.dtype == np.float32 and x.shape == (1600,) and np.abs(x).max() <= 1.0
    assert (np.abs(x).max() == 0) == (kind == "silence")


def test_unknown_audio_kind_is_rejected_at_construction():
    with pytest.raises(ValueError, match="unknown synthetic audio kind"):
        SyntheticMicrophone(SessionClock(), kind="music")
