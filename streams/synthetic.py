"""Generated sources: frames, tones, noise, silence and scripted transcript lines, paced on the session clock.

They stand in for hardware in tests and for ``--source synthetic``, and can script the failures a real session
has (a camera that stops or freezes, a mic that goes quiet or drops out, a transcript with gaps), so every
missing-modality path can be exercised on a machine with no camera or microphone.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from .clock import Clock
from .packets import AUDIO_RATE, AudioChunk, Modality, SourceState, TextSegment, VideoFrame
from .source import Sink, ThreadedSource

Span = tuple[float, float]


def _inside(t: float, spans: tuple[Span, ...]) -> Span | None:
    for a, b in spans:
        if a <= t < b:
            return (a, b)
    return None


def synthetic_frame(index: int, t: float, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A deterministic moving test picture: gradient background, a drifting face-like disc, the time stamped in."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x[None, :] * 0.5 + 40).astype(np.uint8)
    img[..., 1] = np.linspace(60, 160, h, dtype=np.float32)[:, None].astype(np.uint8)
    img[..., 2] = 90
    cx = int(w / 2 + w / 5 * math.sin(t * 1.3))
    cy = int(h / 2 + h / 8 * math.cos(t * 0.9))
    r = max(8, min(w, h) // 5)
    cv2.circle(img, (cx, cy), r, (170, 190, 230), -1)
    cv2.circle(img, (cx - r // 3, cy - r // 4), max(2, r // 8), (40, 40, 40), -1)
    cv2.circle(img, (cx + r // 3, cy - r // 4), max(2, r // 8), (40, 40, 40), -1)
    cv2.ellipse(img, (cx, cy + r // 3), (r // 3, max(2, r // 8)), 0, 0, 180, (60, 40, 120), 2)
    cv2.putText(img, f"{index} {t:6.2f}s", (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return img


def synthetic_audio(kind: str, t0: float, n: int, rate: int = AUDIO_RATE, seed: int = 0, level: float = 0.3
                    ) -> np.ndarray:
    """``n`` samples of ``kind`` (``tone``, ``speechlike``, ``noise``, ``silence``) starting at time ``t0``.

    ``speechlike`` is a pitch-varying harmonic tone with syllable-rate amplitude modulation: it has the level
    and rhythm of speech without being speech.
    """
    t = t0 + np.arange(n, dtype=np.float64) / rate
    if kind == "silence":
        return np.zeros(n, np.float32)
    if kind == "noise":
        rng = np.random.default_rng(seed + int(t0 * rate))
        return (level * rng.standard_normal(n) / 3).astype(np.float32)
    if kind == "tone":
        return (level * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    if kind == "speechlike":
        f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / rate + 2 * np.pi * 140 * t0
        voice = sum(np.sin(k * phase) / k for k in range(1, 6))
        envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
        return (level * 0.6 * voice * envelope).astype(np.float32)
    raise ValueError(f"unknown synthetic audio kind {kind!r}: use tone, speechlike, noise or silence")


class _PacedSource(ThreadedSource):
    """Emits packets at a fixed period on the clock until stopped or ``duration_s`` has passed."""

    period_s: float = 0.02

    def __init__(self, name: str, clock: Clock, sink: Sink | None, duration_s: float | None) -> None:
        super().__init__(name, clock, sink)
        self.duration_s = duration_s

    def _run(self) -> None:
        self._set_status(SourceState.RUNNING)
        start = self.clock.now()
        k = 0
        while not self._stopping.is_set():
            due = start + k * self.period_s
            if self.duration_s is not None and due - start >= self.duration_s:
                self._set_status(SourceState.ENDED, "synthetic source finished")
                return
            delay = due - self.clock.now()
            if delay > 0 and self._stopping.wait(delay):
                return
            self._tick(k, due)
            k += 1

    def _tick(self, k: int, t: float) -> None:
        raise NotImplementedError


class SyntheticCamera(_PacedSource):
    """A camera that draws :func:`synthetic_frame` at ``fps``.

    Args:
        off: spans of session time when the camera is unplugged: no frames, status ``reconnecting``.
        frozen: spans with no frames while the status stays ``running`` (a stalled driver).
        drop_every: drop every n-th frame (index still advances, so the drop is visible downstream).
    """

    modality = Modality.VIDEO

    def __init__(self, clock: Clock, sink: Sink | None = None, fps: float = 15.0, size: tuple[int, int] = (320, 240),
                 duration_s: float | None = None, off: tuple[Span, ...] = (), frozen: tuple[Span, ...] = (),
                 drop_every: int = 0, name: str = "synthetic-camera") -> None:
        super().__init__(name, clock, sink, duration_s)
        self.fps, self.size, self.off, self.frozen, self.drop_every = fps, size, tuple(off), tuple(frozen), drop_every
        self.period_s = 1.0 / fps

    def _tick(self, k: int, t: float) -> None:
        span = _inside(t, self.off)
        if span:
            if self.status.state is not SourceState.RECONNECTING:
                self._set_status(SourceState.RECONNECTING, "camera disconnected (scripted)", t=span[0])
            return
        if self.status.state is SourceState.RECONNECTING:
            self.counters.reconnects += 1
            self._set_status(SourceState.RUNNING, "", t=t)
        if _inside(t, self.frozen) or (self.drop_every and k % self.drop_every == self.drop_every - 1):
            self.counters.dropped += 1
            return
        self._emit(VideoFrame(t, synthetic_frame(k, t, self.size), k))
        self.counters.measured_rate = self.fps


class SyntheticMicrophone(_PacedSource):
    """A microphone producing ``kind`` audio in ``chunk_s`` blocks.

    Args:
        silent: spans where the samples are zeros (a muted mic: present data at a low level).
        off: spans where no samples arrive and the status is ``unavailable`` (mic unplugged).
    """

    modality = Modality.AUDIO

    def __init__(self, clock: Clock, sink: Sink | None = None, kind: str = "speechlike", chunk_s: float = 0.032,
                 duration_s: float | None = None, silent: tuple[Span, ...] = (), off: tuple[Span, ...] = (),
                 level: float = 0.3, name: str = "synthetic-mic") -> None:
        super().__init__(name, clock, sink, duration_s)
        synthetic_audio(kind, 0.0, 1)  # validate kind now, not in the thread
        self.kind, self.silent, self.off, self.level = kind, tuple(silent), tuple(off), level
        self.chunk = int(round(chunk_s * AUDIO_RATE))
        self.period_s = self.chunk / AUDIO_RATE
        self._t_stream: float | None = None

    def _tick(self, k: int, t: float) -> None:
        # stamp by sample count from the first chunk, as a real stream clock does, so chunks tile exactly
        if self._t_stream is None:
            self._t_stream = t
        t_chunk = self._t_stream + k * self.chunk / AUDIO_RATE
        span = _inside(t_chunk, self.off)
        if span:
            if self.status.state is not SourceState.UNAVAILABLE:
                self._set_status(SourceState.UNAVAILABLE, "microphone unplugged (scripted)", t=span[0])
            return
        if self.status.state is SourceState.UNAVAILABLE:
            self._set_status(SourceState.RUNNING, "", t=t_chunk)
        kind = "silence" if _inside(t_chunk, self.silent) else self.kind
        self._emit(AudioChunk(t_chunk, synthetic_audio(kind, t_chunk, self.chunk, level=self.level)))
        self.counters.measured_rate = AUDIO_RATE


@dataclass(frozen=True)
class ScriptedLine:
    t0: float
    t1: float
    text: str


DEFAULT_LINES = (
    "hello there, this is a synthetic session",
    "I am really happy with how this turned out",
    "that noise is getting on my nerves",
    "oh no, I did not expect that at all",
)


class SyntheticTranscript(_PacedSource):
    """Emits scripted transcript lines: each is sent at its end time, as a live captioner would.

    By default one of :data:`DEFAULT_LINES` covers each ``every_s`` seconds, except inside ``gaps``.
    """

    modality = Modality.TEXT

    def __init__(self, clock: Clock, sink: Sink | None = None, lines: tuple[ScriptedLine, ...] | None = None,
                 every_s: float = 1.5, duration_s: float | None = None, gaps: tuple[Span, ...] = (),
                 name: str = "synthetic-transcript") -> None:
        super().__init__(name, clock, sink, duration_s)
        self.period_s = 0.05
        self.every_s, self.gaps = every_s, tuple(gaps)
        self._lines = list(lines) if lines is not None else None
        self._sent = 0
        self._origin: float | None = None
        self._lock = threading.Lock()

    def _tick(self, k: int, t: float) -> None:
        if self._origin is None:
            self._origin = t
        if self._lines is not None:
            while self._sent < len(self._lines) and self._lines[self._sent].t1 <= t:
                line = self._lines[self._sent]
                self._emit(TextSegment(line.t0, line.t1, line.text, "synthetic"))
                self._sent += 1
            return
        t0 = self._origin + self._sent * self.every_s
        t1 = t0 + self.every_s * 0.9
        if t1 <= t:
            if not _inside(t0, self.gaps):
                self._emit(TextSegment(t0, t1, DEFAULT_LINES[self._sent % len(DEFAULT_LINES)], "synthetic"))
            self._sent += 1
