"""Browser capture sources: pushed frames and audio become packets on the session clock; bad input is refused."""
from __future__ import annotations

import itertools

import numpy as np

from streams.browser import BrowserCamera, BrowserMicrophone
from streams.clock import SimulatedClock
from streams.packets import AUDIO_RATE, AudioChunk, SourceState, SourceStatus, VideoFrame


def _collect(src):
    got = []
    src.connect(got.append)
    src.start()
    return got


def test_frames_are_converted_to_bgr_resized_and_numbered():
    clock = SimulatedClock(None)
    cam = BrowserCamera(clock, max_side=320)
    got = _collect(cam)
    assert not cam.push(None) and cam.counters.extra["rejected"] == 1  # nothing yet, a clear refusal
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[..., 0] = 255  # pure red in RGB
    clock.advance_to(1.0)
    assert cam.push(rgb) and cam.push(rgb)
    frames = [p for p in got if isinstance(p, VideoFrame)]
    assert [f.index for f in frames] == [1, 2] and frames[0].t == 1.0
    assert frames[0].image.shape == (240, 320, 3) and frames[0].image[0, 0].tolist() == [0, 0, 255]  # BGR
    assert cam.status.state == SourceState.RUNNING
    assert any(isinstance(p, SourceStatus) and p.state == SourceState.RUNNING for p in got)
    cam.stop()
    assert not cam.push(rgb)  # stopped: ignored, never raises


def test_audio_is_resampled_to_16k_mono_float():
    clock = SimulatedClock(None)
    mic = BrowserMicrophone(clock)
    got = _collect(mic)
    t = np.arange(48_000) / 48_000
    stereo = (np.stack([np.sin(2 * np.pi * 440 * t)] * 2, 1) * 16000).astype(np.int16)
    total = 0
    for k in range(10):  # ten 100 ms chunks at 48 kHz stereo int16, as a browser sends them
        clock.advance_to((k + 1) * 0.1)
        assert mic.push(48_000, stereo[k * 4800:(k + 1) * 4800])
    chunks = [p for p in got if isinstance(p, AudioChunk)]
    total = sum(c.samples.size for c in chunks)
    assert abs(total - AUDIO_RATE) < 800  # the resampler holds back a few ms
    x = np.concatenate([c.samples for c in chunks])
    assert x.dtype == np.float32 and 0.4 < np.abs(x).max() <= 0.5 + 1e-3
    assert not mic.push(16_000, np.zeros((0,), np.float32)) and not mic.push(0, np.ones(10))
    assert mic.push(16_000, np.array([np.nan, np.inf, 0.1], np.float32))  # sanitised, not refused
    assert np.isfinite([p for p in got if isinstance(p, AudioChunk)][-1].samples).all()


def test_jittered_arrivals_of_a_continuous_stream_leave_no_gaps():
    """Chunks of 250 ms arriving early, late and in bursts are placed back to back; a real pause restarts."""
    clock = SimulatedClock(None)
    mic = BrowserMicrophone(clock)
    got = _collect(mic)
    rng = np.random.default_rng(0)
    t = 0.0
    for k in range(40):
        t = (k + 1) * 0.25 + rng.uniform(-0.2, 0.3)  # arrival jitter up to 300 ms
        clock.advance_to(max(t, clock.now()))
        assert mic.push(16_000, np.full(4000, 0.1, np.float32))
    chunks = [p for p in got if isinstance(p, AudioChunk)]
    for a, b in itertools.pairwise(chunks):
        assert abs(b.t - (a.t + a.samples.size / AUDIO_RATE)) < 1e-6  # contiguous
    assert mic.restarts == 0 and mic.coverage > 0.95
    clock.advance_to(clock.now() + 5.0)  # the browser stopped sending for 5 s
    assert mic.push(16_000, np.full(4000, 0.1, np.float32))
    last = [p for p in got if isinstance(p, AudioChunk)][-1]
    assert mic.restarts == 1 and abs(last.t - (clock.now() - 0.25)) < 1e-6
