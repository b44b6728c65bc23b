"""Live microphone capture with a ``sounddevice.InputStream``, as 16 kHz mono float32 chunks.

Why this shape: the PortAudio callback runs on a real-time audio thread, so it only copies the block into a
bounded ring and counts; a slow consumer then costs dropped (counted) audio, never a blocked driver. A worker
thread drains the ring, downmixes/resamples when the device cannot do 16 kHz mono itself, and stamps chunks with a
*stream clock*: anchored on the session clock at the first callback, then advanced by sample count so consecutive
chunks tile exactly, and re-anchored only when it drifts from the session clock by more than 0.1 s.

Every failure (PortAudio missing, no device, a stream that dies) is a status with a sentence a user can act on.
``sounddevice`` is imported lazily so that a machine without PortAudio can still import this module.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .clock import Clock
from .devices import MIC_HINT, PORTAUDIO_MISSING, SOUNDDEVICE_MISSING, Backoff, RateMeter
from .packets import AUDIO_RATE, AudioChunk, Modality, SourceState
from .source import Sink, ThreadedSource

log = logging.getLogger(__name__)

REANCHOR_S = 0.1
_DRIFT_WINDOW_S = 0.5  # callbacks only ever arrive late, so the smallest lag over this span is the true offset


class _Stream:
    """One open stream and the state its callback shares with the worker (a new one per (re)open, so a late
    callback from a closing stream can never write into the next stream's ring)."""

    def __init__(self, rate: int, channels: int, capacity: int) -> None:
        self.rate, self.channels, self.capacity = rate, channels, capacity
        self.ring: collections.deque[tuple[int, np.ndarray, float]] = collections.deque()
        self.ready = threading.Event()
        self.finished = threading.Event()
        self.pos = 0  # device frames delivered so far, including dropped ones
        self.last_cb = time.monotonic()
        self.error = ""
        self.handle: Any = None


class MicrophoneSource(ThreadedSource):
    """A sounddevice input stream delivering :class:`AudioChunk` packets at :data:`AUDIO_RATE` Hz mono.

    Args:
        device: PortAudio device index or name fragment; ``None`` for the system default input.
        block_s: callback block duration.
        stream_factory: ``sounddevice.InputStream`` or a stand-in with the same constructor keywords
            (``device, samplerate, channels, dtype, blocksize, callback, finished_callback``) and
            ``start/stop/close/active``.
        query_device: ``device -> {"default_samplerate", "max_input_channels"}`` for the rate fallback;
            defaults to ``sounddevice.query_devices(device, "input")`` (or the factory's ``query_device``).
        ring_s: audio the ring holds while the worker is busy; beyond that new blocks are dropped and counted.
        stall_s: a stream with no callback for this long is treated as lost.
    """

    modality = Modality.AUDIO

    def __init__(self, clock: Clock, sink: Sink | None = None, device: int | str | None = None, block_s: float = 0.02,
                 stream_factory: Callable[..., Any] | None = None, *, name: str | None = None,
                 query_device: Callable[[Any], dict] | None = None, reconnect: bool = True, ring_s: float = 2.0,
                 stall_s: float = 1.0, retry_initial_s: float = 0.5, retry_max_s: float = 5.0) -> None:
        if isinstance(device, str) and device.strip().isdigit():
            device = int(device)
        super().__init__(name or ("microphone" if device is None else f"microphone {device}"), clock, sink)
        self.device, self.block_s, self.stream_factory = device, block_s, stream_factory
        self.query_device, self.reconnect = query_device, reconnect
        self.ring_s, self.stall_s = ring_s, stall_s
        self._backoff = Backoff(retry_initial_s, retry_max_s)
        self.counters.extra.update(reanchors=0, device_rate=0, device_channels=0)

    def _stop(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=0.9)

    # -- opening ----------------------------------------------------------------------------------------------
    def _backend(self) -> tuple[Callable[..., Any], Callable[[Any], dict] | None]:
        if self.stream_factory is not None:
            return self.stream_factory, self.query_device or getattr(self.stream_factory, "query_device", None)
        import sounddevice as sd  # lazy: raises OSError when the PortAudio library is missing

        return sd.InputStream, self.query_device or (lambda dev: dict(sd.query_devices(dev, "input")))

    def _open(self, factory: Callable[..., Any], query: Callable[[Any], dict] | None) -> _Stream:
        """Open at 16 kHz mono, else at the device's default rate (mono, then its channel count)."""
        tries = [(AUDIO_RATE, 1)]
        info_err = ""
        if query is not None:
            try:
                info = query(self.device)
                rate, chans = int(round(float(info["default_samplerate"]))), int(info["max_input_channels"])
                tries += [(rate, 1), (rate, max(1, chans))]
            except Exception as exc:  # noqa: BLE001 - no such device: the open error below says it better
                info_err = str(exc)
        first_err: Exception | None = None
        for rate, chans in dict.fromkeys(tries):
            st = _Stream(rate, chans, max(4, math.ceil(self.ring_s / self.block_s)))
            try:
                st.handle = factory(device=self.device, samplerate=rate, channels=chans, dtype="float32",
                                    blocksize=max(1, int(round(self.block_s * rate))), callback=self._callback(st),
                                    finished_callback=st.finished.set)
                st.handle.start()
            except Exception as exc:  # noqa: BLE001 - PortAudioError, ValueError("No input device matching ...")
                first_err = first_err or exc
                self._close(st)
                continue
            if (rate, chans) != (AUDIO_RATE, 1):
                log.info("%s does not do %d Hz mono; capturing %d Hz x%d and converting", self.name, AUDIO_RATE,
                         rate, chans)
            return st
        raise OSError(self._open_reason(str(first_err or info_err), no_device=bool(info_err)))

    def _open_reason(self, err: str, no_device: bool) -> str:
        detail = f" ({err})" if err else ""
        if self.device is not None:
            return f"microphone {self.device!r} could not be opened{detail}: check it is connected, or {MIC_HINT}"
        if no_device:
            return f"no input device found{detail}: connect a microphone or {MIC_HINT}"
        return f"the default microphone could not be opened{detail}: check it is free, or {MIC_HINT}"

    @staticmethod
    def _close(st: _Stream) -> None:
        for method in ("stop", "close"):
            with contextlib.suppress(Exception):
                if st.handle is not None:
                    getattr(st.handle, method)()

    def _callback(self, st: _Stream) -> Callable[..., None]:
        """The real-time callback: copy, count, signal. Nothing here may block or raise."""
        counters, clock = self.counters, self.clock

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            try:
                t = clock.now()
                st.last_cb = time.monotonic()
                if status and getattr(status, "input_overflow", False):
                    counters.overflows += 1
                pos, st.pos = st.pos, st.pos + frames
                if len(st.ring) >= st.capacity:
                    counters.dropped += frames * AUDIO_RATE // st.rate
                else:
                    st.ring.append((pos, np.array(indata, dtype=np.float32, copy=True), t))
                st.ready.set()
            except Exception as exc:  # noqa: BLE001 - raising would abort the stream inside PortAudio
                st.error = f"audio callback failed: {exc}"

        return callback

    # -- worker -----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            factory, query = self._backend()
        except OSError:
            self._set_status(SourceState.UNAVAILABLE, PORTAUDIO_MISSING)
            return
        except ImportError:
            self._set_status(SourceState.UNAVAILABLE, SOUNDDEVICE_MISSING)
            return
        lost = ""
        while not self._stopping.is_set():
            try:
                st = self._open(factory, query)
            except OSError as exc:
                if lost:
                    self._set_status(SourceState.RECONNECTING, lost)
                else:
                    self._set_status(SourceState.UNAVAILABLE, str(exc))
                if not self.reconnect or self._stopping.wait(self._backoff.next()):
                    return
                continue
            if lost:
                self.counters.reconnects += 1
            self._backoff.reset()
            self.counters.extra.update(device_rate=st.rate, device_channels=st.channels)
            self._set_status(SourceState.RUNNING)
            try:
                why = _Pump(self, st).run()
            finally:
                self._close(st)
            if why is None:
                return
            self.counters.measured_rate = 0.0
            lost = f"microphone disconnected: {why}"
            if not self.reconnect:
                self._set_status(SourceState.UNAVAILABLE, f"{lost} (reconnect disabled)")
                return
            lost += "; reconnecting"
            self._set_status(SourceState.RECONNECTING, lost)
            if self._stopping.wait(self._backoff.next()):
                return


class _Pump:
    """Drains one stream's ring into stamped 16 kHz chunks until the stream dies (returns why) or stop (None)."""

    def __init__(self, src: MicrophoneSource, st: _Stream) -> None:
        self.src, self.st = src, st
        self.ratio = AUDIO_RATE / st.rate
        self.resampler = self._new_resampler()
        self.anchor: tuple[float, int, int] | None = None  # (session time, device pos, output pos)
        self.next_pos = 0
        self.out_pos = 0
        self.lags: collections.deque[tuple[float, float]] = collections.deque()
        self.batch: list[np.ndarray] = []
        self.batch_pos = 0
        self.meter = RateMeter()

    def _new_resampler(self) -> Any:
        if self.st.rate == AUDIO_RATE:
            return None
        import soxr

        return soxr.ResampleStream(self.st.rate, AUDIO_RATE, 1, dtype="float32")

    def run(self) -> str | None:
        src, st = self.src, self.st
        while not src._stopping.is_set():
            st.ready.wait(0.05)
            st.ready.clear()
            while st.ring:
                self._block(*st.ring.popleft())
            self._flush()
            if st.error:
                return st.error
            if st.finished.is_set() or not _active(st.handle):
                return "the audio stream stopped"
            quiet = time.monotonic() - st.last_cb
            if quiet > max(self.src.stall_s, 2.0 if self.anchor is None else 0.0):
                return f"no audio for {quiet:.1f} s"
        if self.resampler is not None:
            self._append(self.resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self._flush()
        return None

    def _block(self, pos: int, data: np.ndarray, t_cb: float) -> None:
        n = len(data)
        anchor = self.anchor
        if anchor is None:
            anchor = self._reanchor(pos, n, t_cb, count=False)
        elif pos != self.next_pos:  # blocks were dropped: leave a hole of the right length
            self._flush()
            if self.resampler is not None:
                self.resampler = self._new_resampler()
            _, a_pos, a_out = anchor
            self.out_pos = a_out + int(round((pos - a_pos) * self.ratio))
        t_anchor, a_pos, _ = anchor
        lag = t_cb - (t_anchor + (pos + n - a_pos) / self.st.rate)
        self.lags.append((t_cb, lag))
        while self.lags and self.lags[0][0] < t_cb - _DRIFT_WINDOW_S:
            self.lags.popleft()
        span = t_cb - self.lags[0][0]
        if lag < -REANCHOR_S or (span >= _DRIFT_WINDOW_S * 0.8 and min(x for _, x in self.lags) > REANCHOR_S):
            self._flush()
            self._reanchor(pos, n, t_cb, count=True)
        self.next_pos = pos + n
        mono = data.mean(axis=1, dtype=np.float32) if data.ndim == 2 and data.shape[1] > 1 else data.reshape(-1)
        if self.resampler is not None:
            mono = self.resampler.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32))
        self._append(mono)
        self.src.counters.measured_rate = self.meter.update(t_cb, n * self.ratio)

    def _reanchor(self, pos: int, n: int, t_cb: float, count: bool) -> tuple[float, int, int]:
        """Anchor the stream clock at this block; returns the new anchor (also kept in ``self.anchor``)."""
        anchor = self.anchor = (t_cb - n / self.st.rate, pos, self.out_pos)
        self.lags.clear()
        if count:
            self.src.counters.extra["reanchors"] = self.src.counters.extra.get("reanchors", 0) + 1
            log.info("%s: stream clock drifted more than %.1f s from the session clock; re-anchored",
                     self.src.name, REANCHOR_S)
        return anchor

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            if not self.batch:
                self.batch_pos = self.out_pos
            self.batch.append(np.asarray(samples, dtype=np.float32).reshape(-1))
            self.out_pos += len(samples)

    def _flush(self) -> None:
        if not self.batch or self.anchor is None:
            return
        samples = np.concatenate(self.batch) if len(self.batch) > 1 else self.batch[0]
        self.batch = []
        t_anchor, _, a_out = self.anchor
        self.src._emit(AudioChunk(t_anchor + (self.batch_pos - a_out) / AUDIO_RATE, samples, AUDIO_RATE))


def _active(handle: Any) -> bool:
    try:
        return bool(getattr(handle, "active", True))
    except Exception:  # noqa: BLE001 - a dead PortAudio stream may raise on query
        return False
