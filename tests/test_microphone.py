"""MicrophoneSource: real sounddevice on this card-less machine, and a fake InputStream for the callback path."""
from __future__ import annotations

import ast
import pathlib
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from streams.clock import SessionClock, SimulatedClock
from streams.microphone import MicrophoneSource
from streams.packets import AUDIO_RATE, AudioChunk, SourceState, SourceStatus
from tests.helpers import wait_for


class FakePortAudioError(Exception):
    pass


class FakeStream:
    """Stands in for ``sounddevice.InputStream``: a thread calls ``callback`` every block with a 440 Hz tone.

    cfg keys: accept(rate, channels) -> bool; blocks: stop (as on unplug) after this many blocks; stall_after:
    go silent but stay active; overflow_every: flag input_overflow on every n-th block; speed: blocks delivered
    this many times faster than real time; clock: a SimulatedClock set to each block's capture time just before
    its callback, so stamps are exact however busy the machine is (pacing stays real-time).
    """

    def __init__(self, cfg: dict, *, device, samplerate, channels, dtype, blocksize, callback,
                 finished_callback=None, **_) -> None:
        cfg.setdefault("opened", []).append((samplerate, channels))
        if not cfg.get("accept", lambda r, c: (r, c) == (AUDIO_RATE, 1))(samplerate, channels):
            raise FakePortAudioError(f"Invalid sample rate/channels {samplerate}/{channels}")
        assert dtype == "float32"
        self.cfg, self.rate, self.channels, self.blocksize = cfg, samplerate, channels, blocksize
        self.callback, self.finished_callback = callback, finished_callback
        self.delivered, self.callbacks, self.data = 0, [], []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.active = False
        cfg.setdefault("streams", []).append(self)

    def start(self) -> None:
        self.active = True
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        self.active = False

    def close(self) -> None:
        self.stop()

    def _loop(self) -> None:
        period = self.blocksize / self.rate / self.cfg.get("speed", 1.0)
        next_t, k = time.monotonic(), 0
        while not self._halt.is_set():
            if k == self.cfg.get("blocks"):
                self.active = False
                if self.finished_callback:
                    self.finished_callback()
                return
            if k == self.cfg.get("stall_after"):
                self._halt.wait()
                return
            next_t += period
            if self._halt.wait(max(0.0, next_t - time.monotonic())):
                return
            n = self.blocksize
            x = (0.5 * np.sin(2 * np.pi * 440 * (self.delivered + np.arange(n)) / self.rate)).astype(np.float32)
            block = np.repeat(x[:, None], self.channels, axis=1)
            every = self.cfg.get("overflow_every")
            status = SimpleNamespace(input_overflow=bool(every) and k % every == every - 1)
            if "clock" in self.cfg:  # capture time of the block's end, plus a callback scheduling delay
                delay = self.cfg["rng"].uniform(0, self.cfg.get("jitter", 0.01))
                self.cfg["clock"].advance_to((self.delivered + n) / self.rate / self.cfg.get("speed", 1.0) + delay)
                self.cfg.setdefault("first_callback_t", self.cfg["clock"].now())
            t = time.perf_counter()
            self.callback(block, n, None, status)
            self.callbacks.append(time.perf_counter() - t)
            self.data.append(x)
            self.delivered += n
            k += 1


class NoPortAudio:
    """An import hook that fails like ``import sounddevice`` does on a machine without libportaudio."""

    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


def fake(cfg: dict):
    return lambda **kw: FakeStream(cfg, **kw)


class Collector:
    def __init__(self, clock, block_first_s: float = 0.0) -> None:
        self.clock, self.items, self.lock = clock, [], threading.Lock()
        self.block_first_s = block_first_s

    def __call__(self, packet) -> None:
        if isinstance(packet, AudioChunk) and self.block_first_s:
            time.sleep(self.block_first_s)  # a stalled consumer
            self.block_first_s = 0.0
        with self.lock:
            self.items.append((packet, self.clock.now()))

    @property
    def chunks(self) -> list[AudioChunk]:
        with self.lock:
            return [p for p, _ in self.items if isinstance(p, AudioChunk)]

    def states(self) -> list[SourceState]:
        with self.lock:
            return [p.state for p, _ in self.items if isinstance(p, SourceStatus)]

    def reasons(self) -> list[str]:
        with self.lock:
            return [p.reason for p, _ in self.items if isinstance(p, SourceStatus)]


def assert_contiguous(chunks: list[AudioChunk], tol: float = 1e-6) -> None:
    for a, b in zip(chunks, chunks[1:]):
        assert abs(b.t - a.t_end) < tol, f"chunk at {b.t} does not follow chunk ending at {a.t_end}"


def run_fake(cfg: dict, seconds: float, **kw):
    clock = cfg.setdefault("clock", SimulatedClock(speed=None))
    cfg.setdefault("rng", np.random.default_rng(0))
    sink = Collector(clock, kw.pop("block_first_s", 0.0))
    mic = MicrophoneSource(clock, sink, stream_factory=fake(cfg), **kw)
    mic.start()
    time.sleep(seconds)
    mic.stop()
    return mic, sink


def has_input_device() -> bool:
    try:
        import sounddevice as sd

        return any(d["max_input_channels"] > 0 for d in sd.query_devices())
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(has_input_device(), reason="this machine has a microphone")
@pytest.mark.parametrize("device, expect", [(None, "no input device found"), (3, "microphone 3"),
                                            ("USB", "microphone 'USB'")])
def test_no_sound_card_is_unavailable_with_an_actionable_reason(device, expect):
    sink = Collector(SessionClock())
    mic = MicrophoneSource(SessionClock(), sink, device=device)
    mic.start()
    assert wait_for(lambda: mic.status.state is SourceState.UNAVAILABLE)
    reason = mic.status.reason
    assert reason.startswith(expect) and "--mic" in reason and "python -m app devices" in reason
    assert "(" in reason, "the PortAudio message is included"
    t = time.monotonic()
    mic.stop()
    assert time.monotonic() - t < 0.5 and not mic.alive
    assert mic.status.state is SourceState.UNAVAILABLE


def test_missing_portaudio_is_a_status_not_a_crash(monkeypatch):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    mic = MicrophoneSource(SessionClock())
    mic.start()
    mic.join(2.0)
    assert mic.status.state is SourceState.UNAVAILABLE
    assert mic.status.reason.startswith("PortAudio is not installed") and "libportaudio2" in mic.status.reason


def test_module_imports_sounddevice_lazily():
    src = pathlib.Path(__file__).resolve().parents[1] / "streams" / "microphone.py"
    top = [n for n in ast.parse(src.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top for a in n.names} | {n.module for n in top if isinstance(n, ast.ImportFrom)}
    assert "sounddevice" not in names


def test_callback_chunks_are_contiguous_and_exact():
    cfg: dict = {}
    mic, sink = run_fake(cfg, 0.5)
    stream = cfg["streams"][0]
    chunks = sink.chunks
    assert sink.states()[:2] == [SourceState.STARTING, SourceState.RUNNING]
    assert all(c.rate == AUDIO_RATE and c.samples.dtype == np.float32 for c in chunks)
    assert_contiguous(chunks)
    got = np.concatenate([c.samples for c in chunks])
    assert np.array_equal(got, np.concatenate(stream.data)), "every delivered sample arrives once, in order"
    assert mic.counters.extra["reanchors"] == 0 and mic.counters.dropped == 0
    assert abs(mic.counters.measured_rate - AUDIO_RATE) < 0.02 * AUDIO_RATE, "unbiased despite callback jitter"
    assert chunks[0].t == pytest.approx(cfg["first_callback_t"] - 0.02), "anchored one block before the 1st callback"


def test_overflows_are_counted():
    cfg = {"overflow_every": 5}
    mic, _ = run_fake(cfg, 0.4)
    blocks = len(cfg["streams"][0].data)
    assert blocks >= 10 and mic.counters.overflows == blocks // 5


def test_full_ring_drops_new_blocks_instead_of_blocking():
    cfg: dict = {}
    mic, sink = run_fake(cfg, 0.9, ring_s=0.2, block_first_s=0.5)  # ring holds 10 blocks; consumer stuck 0.5 s
    stream = cfg["streams"][0]
    assert len(stream.callbacks) >= 30, "the driver callback kept running while the consumer was stuck"
    assert max(stream.callbacks) < 0.05
    chunks = sink.chunks
    received = sum(len(c.samples) for c in chunks)
    assert mic.counters.dropped > 0 and received + mic.counters.dropped == stream.delivered
    holes = [b.t - a.t_end for a, b in zip(chunks, chunks[1:]) if b.t - a.t_end > 1e-6]
    assert holes and abs(sum(holes) - mic.counters.dropped / AUDIO_RATE) < 1e-6, "holes exactly as long as the loss"
    assert mic.counters.extra["reanchors"] == 0, "dropping does not disturb the stream clock"


def test_dead_stream_reconnects_with_backoff_and_recovers():
    cfg: dict = {"blocks": 10}
    tries = []

    def factory(**kw):
        tries.append(kw["samplerate"])
        if len(tries) == 2:
            raise FakePortAudioError("device unavailable")
        return FakeStream(cfg if len(tries) == 1 else {}, **kw)

    clock = SessionClock()
    sink = Collector(clock)
    mic = MicrophoneSource(clock, sink, stream_factory=factory, retry_initial_s=0.05)
    mic.start()
    assert wait_for(lambda: mic.counters.reconnects == 1 and len(sink.chunks) >= 15)
    mic.stop()
    assert sink.states() == [SourceState.STARTING, SourceState.RUNNING, SourceState.RECONNECTING,
                             SourceState.RUNNING, SourceState.STOPPED]
    assert sink.reasons()[2] == "microphone disconnected: the audio stream stopped; reconnecting"
    assert len(tries) == 3


def test_silent_stream_is_detected_as_lost():
    cfg = {"stall_after": 5}
    clock = SessionClock()
    sink = Collector(clock)
    mic = MicrophoneSource(clock, sink, stream_factory=fake(cfg), stall_s=0.3, retry_initial_s=0.05)
    mic.start()
    assert wait_for(lambda: SourceState.RECONNECTING in sink.states(), 3.0)
    mic.stop()
    assert any(r.startswith("microphone disconnected: no audio for") for r in sink.reasons())


def test_rate_fallback_resamples_48k_stereo_to_16k_mono():
    cfg = {"accept": lambda r, c: (r, c) == (48000, 2)}
    mic, sink = run_fake(cfg, 0.6, query_device=lambda dev: {"default_samplerate": 48000.0, "max_input_channels": 2})
    assert cfg["opened"] == [(16000, 1), (48000, 1), (48000, 2)]
    assert mic.counters.extra["device_rate"] == 48000 and mic.counters.extra["device_channels"] == 2
    chunks = sink.chunks
    assert chunks and all(c.rate == AUDIO_RATE for c in chunks)
    assert_contiguous(chunks)
    got = np.concatenate([c.samples for c in chunks])
    assert abs(len(got) - cfg["streams"][0].delivered / 3) <= 2, "16 kHz worth of the 48 kHz input"
    spectrum = np.abs(np.fft.rfft(got[400:]))
    peak = np.fft.rfftfreq(len(got) - 400, 1 / AUDIO_RATE)[spectrum.argmax()]
    assert abs(peak - 440) < 10 and 0.4 < np.abs(got[400:]).max() < 0.6


@pytest.mark.parametrize("speed", [1.4, 0.7])
def test_drifting_stream_clock_is_reanchored(speed):
    cfg = {"speed": speed}  # the device clock runs 40 % fast / 30 % slow against the session clock
    mic, sink = run_fake(cfg, 1.0)
    assert mic.counters.extra["reanchors"] >= (2 if speed > 1 else 1)
    lateness = [received - p.t_end for p, received in sink.items if isinstance(p, AudioChunk)]
    assert min(lateness) > -0.11, "chunks are never stamped in the future by more than the tolerance"
    assert max(lateness) < 0.4, "nor left far in the past"


def test_list_microphones_explains_why_there_are_none(monkeypatch):
    from streams.devices import PORTAUDIO_MISSING, describe_devices, list_microphones

    if not has_input_device():
        listing = list_microphones()
        assert isinstance(listing, str) and ("no input device" in listing or "could not query" in listing)
        assert listing in describe_devices(max_cameras=1)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    assert list_microphones() == PORTAUDIO_MISSING
