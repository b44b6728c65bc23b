"""Capture sources fed from outside the process: webcam frames and microphone chunks a browser streams in.

When the app runs on a remote GPU machine, the camera and microphone are on the user's laptop; the dashboard's
streaming inputs hand each frame or audio chunk to :meth:`BrowserCamera.push` / :meth:`BrowserMicrophone.push`.
Pushing never blocks and never raises on bad input (it is logged and counted): the caller is a web handler.
A browser that stops sending is noticed by the windower (no data for ``stale_after`` seconds -> missing).
"""
from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from .clock import Clock
from .packets import AUDIO_RATE, AudioChunk, Modality, SourceState, VideoFrame
from .source import Sink, Source

log = logging.getLogger(__name__)


class _PushSource(Source):
    def __init__(self, name: str, clock: Clock, sink: Sink | None = None) -> None:
        super().__init__(name, clock, sink)
        self._lock = threading.Lock()
        self._running = False
        self.counters.extra["rejected"] = 0

    def _start(self) -> None:
        self._running = True
        self._set_status(SourceState.STARTING, "waiting for the browser to send data")

    def _stop(self) -> None:
        self._running = False

    def _reject(self, why: str) -> None:
        self.counters.extra["rejected"] += 1
        log.warning("%s source %s: ignored pushed data (%s)", self.modality.value, self.name, why)


class BrowserCamera(_PushSource):
    """Frames pushed as RGB ``uint8 [H, W, 3]`` arrays (what Gradio's webcam stream gives)."""

    modality = Modality.VIDEO

    def __init__(self, clock: Clock, sink: Sink | None = None, name: str = "browser camera",
                 max_side: int = 640) -> None:
        super().__init__(name, clock, sink)
        self.max_side = max_side
        self._index = 0

    def push(self, rgb: np.ndarray | None) -> bool:
        if not self._running:
            return False
        if rgb is None or not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
            self._reject(f"expected an RGB image, got {getattr(rgb, 'shape', type(rgb).__name__)}")
            return False
        import cv2

        img = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]).astype(np.uint8, copy=False), cv2.COLOR_RGB2BGR)
        h, w = img.shape[:2]
        if max(h, w) > self.max_side:  # browsers send large frames; the face front-end needs ~320 px
            s = self.max_side / max(h, w)
            img = cv2.resize(img, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA)
        with self._lock:
            self._index += 1
            frame = VideoFrame(self.clock.now(), img, self._index)
        if self.status.state != SourceState.RUNNING:
            self._set_status(SourceState.RUNNING)
        self._emit(frame)
        return True


class BrowserMicrophone(_PushSource):
    """Audio pushed as ``(rate, samples)``: int16 or float, mono or ``[n, channels]``; resampled to 16 kHz.

    Chunks of a continuous browser stream arrive with network and queue jitter: stamping each at "arrival minus
    its length" would leave gaps and overlaps between consecutive chunks although no sample was lost. So a chunk
    continues the previous one (sample-exact) while that keeps the stream within ``max_lag_s`` of the clock;
    only a real pause (nothing pushed for longer) restarts the stream at arrival time.
    :attr:`coverage` says how much of the time since the first chunk the received audio covers.
    """

    modality = Modality.AUDIO

    def __init__(self, clock: Clock, sink: Sink | None = None, name: str = "browser microphone",
                 max_lag_s: float = 1.0) -> None:
        super().__init__(name, clock, sink)
        self._resampler: Any = None  # soxr.ResampleStream, made when the first chunk's rate is known
        self._rate: int | None = None
        self.max_lag_s = max_lag_s
        self._next_t: float | None = None
        self._first_t: float | None = None
        self.received_s = 0.0
        self.restarts = 0

    @property
    def coverage(self) -> float:
        """Seconds of audio received / seconds since the first chunk started (1.0 = no gap), or 0 before any."""
        if self._first_t is None:
            return 0.0
        span = max(self.clock.now() - self._first_t, 1e-6)
        return min(1.0, self.received_s / span)

    def _place(self, n: int, now: float) -> float:
        """Start time of a chunk of ``n`` samples arriving at ``now`` (see the class docstring)."""
        dur = n / AUDIO_RATE
        arrival_start = max(0.0, now - dur)
        nxt = self._next_t
        if nxt is None or arrival_start - nxt > self.max_lag_s or nxt - arrival_start > self.max_lag_s:
            if nxt is not None:
                self.restarts += 1
            t0 = arrival_start
        else:
            t0 = nxt
        self._next_t = t0 + dur
        if self._first_t is None:
            self._first_t = t0
        self.received_s += dur
        return t0

    def push(self, rate: int, samples: np.ndarray) -> bool:
        if not self._running:
            return False
        try:
            x = np.asarray(samples)
            scale = 1.0 / 32768.0 if np.issubdtype(x.dtype, np.integer) else 1.0  # int16 PCM from browsers
            if x.ndim == 2:
                x = x.mean(axis=1)
            if x.ndim != 1 or x.size == 0 or int(rate) <= 0:
                raise ValueError(f"expected mono or [n, channels] samples and a positive rate, got {x.shape} @ {rate}")
            x = x.astype(np.float32) * np.float32(scale)
        except (TypeError, ValueError) as exc:
            self._reject(str(exc))
            return False
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        if int(rate) != AUDIO_RATE:
            import soxr

            with self._lock:
                if self._resampler is None or self._rate != int(rate):
                    self._resampler = soxr.ResampleStream(int(rate), AUDIO_RATE, 1, dtype="float32")
                    self._rate = int(rate)
                x = self._resampler.resample_chunk(x)
        if x.size == 0:
            return True
        with self._lock:
            t0 = self._place(x.size, self.clock.now())
        chunk = AudioChunk(t0, np.clip(x, -1.0, 1.0).astype(np.float32))
        if self.status.state != SourceState.RUNNING:
            self._set_status(SourceState.RUNNING)
        self._emit(chunk)
        return True
