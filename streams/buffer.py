"""Bounded per-modality buffers and the windower that slices them into :class:`~streams.windows.Window` values.

Memory is bounded by *time*, not by count: the buffer keeps only what a future window can still need
(``horizon_s`` of session time behind the newest packet), so an hour-long session costs the same as a minute.
Pushing never blocks beyond a short lock and never waits on a consumer.

Transcript lines are also tracked by *arrival*: a line that reaches the buffer after every window overlapping its
``[t0, t1]`` was cut (live ASR decodes speech seconds after it was spoken) is handed, once, to the next window cut,
marked late and with its original times (:attr:`~streams.windows.TextSlice.late`). Without this such a line would
land in no window and never be analysed.
"""
from __future__ import annotations

import bisect
import collections
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .packets import AUDIO_RATE, AudioChunk, Modality, SourceState, SourceStatus, TextSegment, VideoFrame
from .windows import AudioSlice, ModalityHealth, TextSlice, VideoSlice, Window

log = logging.getLogger(__name__)

_NOUN = {Modality.VIDEO: "camera", Modality.AUDIO: "microphone", Modality.TEXT: "transcript"}


@dataclass(frozen=True)
class Cut:
    """What one window is made of, taken from the buffer in one step (:meth:`TimeAlignedBuffer.cut`).

    Attributes:
        video, audio: frames and chunks overlapping the window.
        text: transcript lines overlapping the window.
        late: lines that arrived after every window overlapping them was cut (they end before the window).
        fresh: the lines of ``text`` and ``late`` that no earlier cut held.
        status: each modality's status history.
    """

    video: list[VideoFrame]
    audio: list[AudioChunk]
    text: list[TextSegment]
    late: list[TextSegment]
    fresh: list[TextSegment]
    status: dict[Modality, list[SourceStatus]]


class TimeAlignedBuffer:
    """Thread-safe store of recent packets and of each modality's status history.

    Args:
        horizon_s: how much session time to keep behind the newest packet of each modality.
        max_video_frames: hard cap on stored frames whatever the timestamps say (guards against a source that
            stamps every frame with the same time).
        max_audio_chunks, max_text_segments: the same caps for the other modalities; ``max_text_segments`` also
            caps the transcript lines not yet handed to any window (drained at every cut, so only a buffer nobody
            cuts windows from ever reaches it; the oldest line goes first).
    """

    def __init__(self, horizon_s: float = 4.0, max_video_frames: int = 600, max_audio_chunks: int = 4000,
                 max_text_segments: int = 2000) -> None:
        self.horizon_s = horizon_s
        self._lock = threading.Lock()
        self._video: collections.deque[VideoFrame] = collections.deque(maxlen=max_video_frames)
        self._audio: collections.deque[AudioChunk] = collections.deque(maxlen=max_audio_chunks)
        self._text: collections.deque[TextSegment] = collections.deque(maxlen=max_text_segments)
        self._undelivered: collections.deque[TextSegment] = collections.deque(maxlen=max_text_segments)
        """Transcript lines in arrival order that no window cut has included yet (see :meth:`cut`)."""
        self._status: dict[Modality, list[SourceStatus]] = {m: [] for m in Modality}
        self._latest_t: dict[Modality, float] = {m: -math.inf for m in Modality}
        self.latest_frame: VideoFrame | None = None  # latest-wins slot for previews
        self.arrived = threading.Event()
        """Set on every camera/microphone packet or status: wakes a live windower as soon as a window may be
        complete, instead of polling."""

    def push(self, packet: VideoFrame | AudioChunk | TextSegment | SourceStatus) -> None:
        """Add a packet (usable directly as a source sink)."""
        with self._lock:
            if isinstance(packet, VideoFrame):
                self._video.append(packet)
                self.latest_frame = packet
                self._advance(Modality.VIDEO, packet.t)
            elif isinstance(packet, AudioChunk):
                if packet.rate != AUDIO_RATE:
                    raise ValueError(f"audio must be resampled to {AUDIO_RATE} Hz before the buffer, got {packet.rate}")
                self._audio.append(packet)
                self._advance(Modality.AUDIO, packet.t_end)
            elif isinstance(packet, TextSegment):
                self._text.append(packet)
                self._undelivered.append(packet)
                self._advance(Modality.TEXT, packet.t1)
            elif isinstance(packet, SourceStatus):
                if packet.modality is None:
                    raise ValueError("a status pushed to the buffer must name its modality")
                hist = self._status[packet.modality]
                bisect.insort(hist, packet, key=lambda s: s.t)
                self._prune_status(packet.modality)
            else:
                raise TypeError(f"unknown packet type {type(packet).__name__}")
        if not isinstance(packet, TextSegment):
            self.arrived.set()

    __call__ = push

    def complete_through(self, t: float) -> bool:
        """Whether every camera and microphone stream that is delivering has data at or past ``t``.

        Frames and audio chunks of one stream arrive in time order, so once a stream's newest data reaches ``t``
        nothing earlier than ``t`` is still on its way: a window ending at ``t`` can be cut without waiting out
        the grace. A stream that is off, unavailable or ended does not hold windows back; one that has sent
        packets without ever reporting a state counts as delivering. The transcript never holds a window (lines
        arrive seconds late or never): a late line reaches the next window cut instead (:meth:`cut`).
        """
        with self._lock:
            for m in (Modality.VIDEO, Modality.AUDIO):
                hist = self._status[m]
                delivering = hist[-1].state.delivers if hist else self._latest_t[m] > -math.inf
                if delivering and self._latest_t[m] < t:
                    return False
        return True

    def _advance(self, modality: Modality, t: float) -> None:
        if t > self._latest_t[modality]:
            self._latest_t[modality] = t
        cutoff = self._latest_t[modality] - self.horizon_s
        if modality is Modality.VIDEO:
            while self._video and self._video[0].t < cutoff:
                self._video.popleft()
        elif modality is Modality.AUDIO:
            while self._audio and self._audio[0].t_end < cutoff:
                self._audio.popleft()
        else:
            while self._text and self._text[0].t1 < cutoff:
                self._text.popleft()
        self._prune_status(modality)

    def _prune_status(self, modality: Modality) -> None:
        hist = self._status[modality]
        newest = max(self._latest_t[modality], hist[-1].t if hist else -math.inf)
        cutoff = newest - self.horizon_s
        # keep the last status before the cutoff: it is still the state in force at the cutoff
        while len(hist) > 1 and hist[1].t <= cutoff:
            hist.pop(0)
        if len(hist) > 256:  # a flapping device: keep the newest
            del hist[: len(hist) - 256]

    def snapshot(self, t0: float, t1: float) -> tuple[list[VideoFrame], list[AudioChunk], list[TextSegment],
                                                      dict[Modality, list[SourceStatus]]]:
        """Packets overlapping ``[t0, t1)`` and the status histories, copied under the lock (a pure read: late
        transcript lines are handed out only by :meth:`cut`)."""
        with self._lock:
            video = [f for f in self._video if t0 <= f.t < t1]
            audio = [c for c in self._audio if c.t < t1 and c.t_end > t0]
            text = [s for s in self._text if s.t0 < t1 and s.t1 >= t0]
            status = {m: list(h) for m, h in self._status.items()}
        return video, audio, text, status

    def cut(self, t0: float, t1: float) -> Cut:
        """What the window ``[t0, t1)`` is made of: :meth:`snapshot` plus the *late* transcript lines, taken
        atomically, and marks every line handed out as delivered (``fresh``: the ones no earlier cut held).

        Late lines are those that arrived after every window overlapping them was cut: never delivered and ending
        before ``t0`` (no later window can overlap them either). Each is returned by exactly one cut, the first
        after it arrived, so it is analysed once, never twice, and never lost. A line that overlaps ``[t0, t1)``
        is simply in the snapshot (however late it came) and counts as delivered; a line that starts at or after
        ``t1`` waits for its own windows. Windows must be cut in time order (the :class:`Windower` does).

        Why not hold windows back for the transcript instead: lines come seconds late or never, so every result
        would wait the worst-case recogniser delay, and text would be analysed against different windows live
        and in replay. Lines known up front (subtitle files, recorded sessions whose lines arrived in time) are
        never late, so their windows are exactly what they were without this rule.
        """
        with self._lock:
            video = [f for f in self._video if t0 <= f.t < t1]
            audio = [c for c in self._audio if c.t < t1 and c.t_end > t0]
            text = [s for s in self._text if s.t0 < t1 and s.t1 >= t0]
            status = {m: list(h) for m, h in self._status.items()}
            late: list[TextSegment] = []
            fresh: list[TextSegment] = []
            if self._undelivered:
                pending = {id(s) for s in self._undelivered}
                fresh = [s for s in text if id(s) in pending]
                on_time = {id(s) for s in fresh}
                waiting = [s for s in self._undelivered if id(s) not in on_time]
                late = [s for s in waiting if s.t1 < t0]
                fresh += late
                self._undelivered.clear()
                # a line no window has reached yet; or one overlapping this window that the store already let go
                # of (the count cap), which then goes to the next cut as late rather than being lost
                self._undelivered.extend(s for s in waiting if s.t1 >= t0)
        return Cut(video, audio, text, late, fresh, status)

    def sizes(self) -> dict[str, int]:
        """Current item counts, for telemetry and the memory tests (``text_undelivered``: transcript lines no
        window has included yet)."""
        with self._lock:
            return {"video": len(self._video), "audio": len(self._audio), "text": len(self._text),
                    "text_undelivered": len(self._undelivered),
                    "status": sum(len(h) for h in self._status.values())}


MIN_HOP_S = 0.05
"""Shortest hop between windows: bounds the work per second of media (20 windows/s)."""
MAX_WINDOW_S = 60.0
"""Longest window: the buffer keeps a window's worth of media in memory."""


@dataclass(frozen=True)
class WindowConfig:
    """Windowing parameters.

    Attributes:
        window_s: span of each window.
        hop_s: time between consecutive windows (a new result every hop).
        grace_s: the longest a window waits after ``t1`` for late packets (audio callbacks, file tails). With
            ``cut_on_arrival`` this is only spent on a stream that is late or stalled.
        cut_on_arrival: cut a window as soon as every delivering camera/microphone stream has sent data at or
            past ``t1`` (:meth:`TimeAlignedBuffer.complete_through`) instead of always waiting ``grace_s``. The
            window's data is the same either way for in-order streams; only a transcript line arriving inside
            the grace lands in the next window instead. Result latency drops by about the grace.
        stale_after_s: a video or audio stream whose newest data in the window is older than this at ``t1`` is
            marked missing ("no frames for 1.2 s"), so a silent stop shows up within one hop.
        gap_s: holes in the data longer than this are reported as gaps.
        video_fps: the camera's nominal frame rate; ``None`` estimates it from frame timestamps.
    """

    window_s: float = 2.0
    hop_s: float = 0.5
    grace_s: float = 0.25
    stale_after_s: float = 0.5
    gap_s: float = 0.25
    video_fps: float | None = None
    cut_on_arrival: bool = True

    def __post_init__(self) -> None:
        for name in ("window_s", "hop_s", "grace_s", "stale_after_s", "gap_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
        if not (self.window_s > 0 and self.hop_s > 0):
            raise ValueError(f"window_s and hop_s must be positive, got {self.window_s}, {self.hop_s}")
        if self.hop_s < MIN_HOP_S:  # 1e-6 s would cut millions of windows per minute of media
            raise ValueError(f"hop {self.hop_s:g} s is below the minimum of {MIN_HOP_S:g} s "
                             f"(at most {1 / MIN_HOP_S:g} windows per second of media)")
        if self.window_s > MAX_WINDOW_S:
            raise ValueError(f"window {self.window_s:g} s is longer than the maximum of {MAX_WINDOW_S:g} s")
        if self.video_fps is not None and not (isinstance(self.video_fps, (int, float))
                                               and math.isfinite(self.video_fps) and self.video_fps > 0):
            raise ValueError(f"video_fps must be a positive number or None, got {self.video_fps!r}")
        if self.hop_s > self.window_s:
            raise ValueError(f"hop_s ({self.hop_s}) larger than window_s ({self.window_s}) would skip data")

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("window_s", "hop_s", "grace_s", "stale_after_s", "gap_s", "video_fps",
                                           "cut_on_arrival")}


def status_at(history: list[SourceStatus], t: float) -> SourceStatus | None:
    """The status in force just before session time ``t`` (the last one stamped strictly before ``t``): windows
    are half-open ``[t0, t1)``, so a change stamped exactly at ``t1`` belongs to the next window."""
    i = bisect.bisect_left([s.t for s in history], t)
    return history[i - 1] if i else None


def _gaps(times_start: list[float], times_end: list[float], t0: float, t1: float, gap_s: float
          ) -> tuple[tuple[tuple[float, float], ...], float]:
    """Holes in ``[t0, t1)`` not covered by the intervals, longer than ``gap_s``; plus the trailing hole."""
    gaps: list[tuple[float, float]] = []
    cursor = t0
    for a, b in sorted(zip(times_start, times_end)):
        if a - cursor > gap_s:
            gaps.append((cursor, a))
        cursor = max(cursor, b)
    trailing = max(0.0, t1 - cursor)
    if trailing > gap_s:
        gaps.append((cursor, t1))
    return tuple(gaps), trailing


class Windower:
    """Cuts the buffer into fixed-length windows ending every ``hop_s`` on the session clock.

    Windows end at ``t1 = window_s + k * hop_s``: the first result arrives once a full window exists. Live,
    call :meth:`due` with ``clock.now()`` whenever packets arrive or time passes (it cuts a window once its
    streams have delivered past ``t1``, or after ``grace_s`` at the latest); in replay, the driver calls it as it
    advances simulated time and after each packet, so both paths cut identical windows from identical packets.

    A transcript line that arrives after all the windows overlapping it were cut goes into the next window's
    :class:`~streams.windows.TextSlice` (in ``segments``, and listed in ``late``) with its original times
    (:meth:`TimeAlignedBuffer.cut`): it is analysed once, in the first window cut after it arrived.
    """

    def __init__(self, buffer: TimeAlignedBuffer, config: WindowConfig | None = None,
                 absent_reasons: dict[Modality, str] | None = None) -> None:
        self.buffer = buffer
        self.config = config or WindowConfig()
        need = self.config.window_s + self.config.grace_s + 1.0
        if buffer.horizon_s < need:
            buffer.horizon_s = need
        self.absent_reasons = {Modality.VIDEO: "no camera", Modality.AUDIO: "no microphone",
                               Modality.TEXT: "no transcript source"}
        if absent_reasons:
            self.absent_reasons.update(absent_reasons)
        self._next_index = 0
        self._fps_estimate: float | None = None

    def t1_of(self, index: int) -> float:
        return round(self.config.window_s + index * self.config.hop_s, 9)

    def due(self, now: float, final: bool = False) -> list[Window]:
        """All windows not yet emitted that are complete at ``now``: ``t1 <= now`` and either every delivering
        stream has arrived past ``t1`` (``cut_on_arrival``) or the grace after ``t1`` has run out; with ``final``
        (the session ends) every window with ``t1 <= now``."""
        out = []
        while self._ready(self.t1_of(self._next_index), now, final):
            out.append(self.make(self._next_index))
            self._next_index += 1
        return out

    def wait_due(self, now: Callable[[], float], timeout: float) -> list[Window]:
        """Live: wait until a camera/microphone packet arrives (it may complete a window) or ``timeout`` passes
        (the grace deadline of a stalled stream), then :meth:`due` at ``now()``."""
        self.buffer.arrived.wait(timeout)
        self.buffer.arrived.clear()  # before due(): a packet arriving from here on wakes the next call
        return self.due(now())

    def _ready(self, t1: float, now: float, final: bool) -> bool:
        if t1 > now + 1e-9:
            return False
        if final or t1 + self.config.grace_s <= now + 1e-9:
            return True
        return self.config.cut_on_arrival and self.buffer.complete_through(t1)

    def make(self, index: int) -> Window:
        t1 = self.t1_of(index)
        t0 = t1 - self.config.window_s
        c = self.buffer.cut(t0, t1)
        return Window(
            index=index, t0=t0, t1=t1,
            video=self._video_slice(c.video, c.status[Modality.VIDEO], t0, t1),
            audio=self._audio_slice(c.audio, c.status[Modality.AUDIO], t0, t1),
            text=self._text_slice(c.text, c.status[Modality.TEXT], t0, t1, c.late, c.fresh),
        )

    # -- per modality ---------------------------------------------------------------------------------------
    def _device(self, modality: Modality, history: list[SourceStatus], t1: float) -> tuple[SourceState, str, bool]:
        """(state, reason, configured) of the modality's source at ``t1``."""
        st = status_at(history, t1)
        if st is None:
            if history:  # a source exists but only reported later than t1 (replay of a late start)
                return SourceState.STARTING, "", True
            return SourceState.STOPPED, self.absent_reasons[modality], False
        return st.state, st.reason, True

    @staticmethod
    def _outage_in_window(history: list[SourceStatus], t0: float, t1: float) -> SourceStatus | None:
        """The latest non-delivering status in force at some point of the window (a device that came back just
        at ``t1`` still explains why the window had no data)."""
        for st in reversed(history):
            if st.t < t1 and not st.state.delivers:
                return st if st.t >= t0 or st is status_at(history, t0) else None
        return None

    def _missing_reason(self, modality: Modality, state: SourceState, device_reason: str, configured: bool,
                        received: int, trailing: float, span: float,
                        outage: SourceStatus | None = None) -> str:
        noun = _NOUN[modality]
        if state.delivers and outage is not None:
            state, device_reason = outage.state, outage.reason
        if not configured:
            return self.absent_reasons[modality]
        if state is SourceState.UNAVAILABLE:
            return device_reason or f"{noun} unavailable"
        if state is SourceState.RECONNECTING:  # sources explain their own disconnects ("camera 0 disconnected: ...")
            return device_reason or f"{noun} disconnected"
        if state is SourceState.STOPPED:
            return f"{noun} stopped"
        if state is SourceState.ENDED:  # a file says why it ended ("x.mp4: video ends at 3.0 s ... (truncated?)")
            return device_reason or f"{noun} input ended"
        what = "frames" if modality is Modality.VIDEO else "audio"
        return f"no {what} for {min(trailing, span):.1f} s" if received else f"no {what} for {span:.1f} s"

    def _fps(self, frames: list[VideoFrame]) -> float | None:
        if self.config.video_fps:
            return self.config.video_fps
        if len(frames) >= 3:
            dt = np.diff([f.t for f in frames])
            dt = dt[dt > 0]
            if len(dt):
                # the shortest typical interval is the nominal period; drops only lengthen intervals
                est = 1.0 / float(np.percentile(dt, 25))
                self._fps_estimate = est if self._fps_estimate is None else 0.8 * self._fps_estimate + 0.2 * est
        return self._fps_estimate

    def _video_slice(self, frames: list[VideoFrame], history: list[SourceStatus], t0: float, t1: float) -> VideoSlice:
        cfg = self.config
        span = t1 - t0
        state, dev_reason, configured = self._device(Modality.VIDEO, history, t1)
        fps = self._fps(frames)
        period = 1.0 / fps if fps else 0.0
        gaps, trailing = _gaps([f.t for f in frames], [f.t + period for f in frames], t0, t1,
                               max(cfg.gap_s, 2.5 * period))
        expected = int(round(span * fps)) if fps else len(frames)
        dropped = sum(max(0, b.index - a.index - 1) for a, b in zip(frames, frames[1:]))
        present = bool(frames and state.delivers and trailing < cfg.stale_after_s)
        reason = "" if present else self._missing_reason(Modality.VIDEO, state, dev_reason, configured,
                                                           len(frames), trailing, span,
                                                           self._outage_in_window(history, t0, t1))
        health = ModalityHealth(Modality.VIDEO, present, reason, expected, len(frames), dropped,
                                max(0, expected - len(frames)), gaps, max((b - a for a, b in gaps), default=0.0),
                                state, dev_reason)
        return VideoSlice(tuple(frames), health)

    def _audio_slice(self, chunks: list[AudioChunk], history: list[SourceStatus], t0: float, t1: float) -> AudioSlice:
        cfg = self.config
        rate = AUDIO_RATE
        n = int(round((t1 - t0) * rate))
        samples = np.zeros(n, np.float32)
        valid = np.zeros(n, bool)
        for c in chunks:
            start = int(round((c.t - t0) * rate))
            a, b = max(0, start), min(n, start + len(c.samples))
            if b > a:
                samples[a:b] = c.samples[a - start: b - start]
                valid[a:b] = True
        received = int(valid.sum())
        gaps, trailing = self._sample_gaps(valid, t0, rate, cfg.gap_s)
        state, dev_reason, configured = self._device(Modality.AUDIO, history, t1)
        present = bool(received > 0 and state.delivers and trailing < cfg.stale_after_s)
        reason = "" if present else self._missing_reason(Modality.AUDIO, state, dev_reason, configured,
                                                           received, trailing, t1 - t0,
                                                           self._outage_in_window(history, t0, t1))
        health = ModalityHealth(Modality.AUDIO, present, reason, n, received, 0, n - received, gaps,
                                max((b - a for a, b in gaps), default=0.0), state, dev_reason)
        return AudioSlice(samples, valid, health, rate)

    @staticmethod
    def _sample_gaps(valid: np.ndarray, t0: float, rate: int, gap_s: float
                     ) -> tuple[tuple[tuple[float, float], ...], float]:
        if valid.all():
            return (), 0.0
        # runs of invalid samples
        padded = np.concatenate([[True], valid, [True]])
        edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
        starts, ends = edges[::2], edges[1::2]
        gaps = tuple((float(t0 + s / rate), float(t0 + e / rate))
                     for s, e in zip(starts, ends) if (e - s) / rate > gap_s)
        trailing = 0.0 if valid[-1] else float((len(valid) - starts[-1]) / rate)
        return gaps, trailing

    def _text_slice(self, segments: list[TextSegment], history: list[SourceStatus], t0: float, t1: float,
                    late: list[TextSegment] | None = None, fresh: list[TextSegment] | None = None) -> TextSlice:
        """The window's lines (late ones included, in start order): words present make the text present; none
        leaves the reason to the source's state (``no transcript`` while it runs: idle, not missing)."""
        state, dev_reason, configured = self._device(Modality.TEXT, history, t1)
        late = sorted(late or (), key=lambda s: s.t0)
        segments = sorted([*segments, *late], key=lambda s: s.t0)
        has_words = any(s.text.strip() for s in segments)
        if has_words:
            reason = ""
        elif not configured:
            reason = self.absent_reasons[Modality.TEXT]
        elif state is SourceState.UNAVAILABLE:
            reason = dev_reason or "transcript unavailable"
        else:
            reason = "no transcript"
        health = ModalityHealth(Modality.TEXT, has_words, reason, 0, len(segments), 0, 0, (), 0.0, state, dev_reason)
        return TextSlice(tuple(segments), health, tuple(late), tuple(sorted(fresh or (), key=lambda s: s.t0)))
