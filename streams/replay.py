"""Replay a recorded session folder or a video file through the same buffer and windower as live capture.

Packets of all modalities are merged by *arrival* time (when the live buffer received them; for files: a frame
at its time, audio and text once complete) onto a :class:`~streams.clock.SimulatedClock`. Windows are cut as
the live loop cuts them (once the streams have delivered past ``t1``, or when simulated time passes
``t1 + grace``), so a replayed session yields the same windows the recording process saw: same grid, same
presence, same reasons (modalities that had no source keep the reason recorded live). ``speed=None`` runs as
fast as possible and is deterministic; ``speed=1.0`` paces against the wall clock for demos.
"""
from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from .buffer import TimeAlignedBuffer, WindowConfig, Windower
from .clock import SimulatedClock
from .files import MediaFile, MediaFileError
from .packets import Modality, SourceStatus
from .session import SessionError, SessionReader, Timed
from .source import Sink
from .windows import Window

log = logging.getLogger(__name__)


def _monotone(it: Iterator[Timed]) -> Iterator[Timed]:
    """Guard the merge: arrival times within one stream never go backwards (tiny jitter is clamped)."""
    last = float("-inf")
    for arrival, packet in it:
        last = max(last, arrival)
        yield last, packet


class Replay:
    """Replay ``path`` (a session folder written by the recorder, or any video file FFmpeg reads).

    Args:
        path: session folder or media file.
        speed: real-time factor, or ``None`` for as fast as possible.
        sink: optional extra sink that receives every packet and status as it is replayed (e.g. a UI preview).

    Raises:
        streams.session.SessionError: a folder that is not a readable session.
        streams.files.MediaFileError: a file that is missing or cannot be decoded.
    """

    def __init__(self, path: str | os.PathLike, speed: float | None = 1.0, sink: Sink | None = None) -> None:
        self.path = Path(path)
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be positive or None (as fast as possible), got {speed}")
        self.speed = speed
        self.sink = sink
        if self.path.is_dir():  # SessionReader says what is wrong with a folder that is not a session
            self.kind = "session"
            self.source: SessionReader | MediaFile = SessionReader(self.path)
        else:
            self.kind = "file"
            self.source = MediaFile(self.path)
        self.clock = SimulatedClock(speed)
        self.stats: dict = {}
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what is being replayed ---------------------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        return self.source.meta

    @property
    def video_fps(self) -> float | None:
        return self.source.video_fps

    @property
    def end_t(self) -> float | None:
        """Where the final windows are cut: the recorded stop time of a cleanly closed session, else the end of
        the data."""
        return self.source.end_t if isinstance(self.source, SessionReader) else None

    def sources(self) -> dict[Modality, dict]:
        return self.source.sources()

    def absent_reasons(self) -> dict[Modality, str]:
        return self.source.absent_reasons()

    def window_config(self, window_s: float | None = None, hop_s: float | None = None) -> WindowConfig:
        """The live session's window configuration (recorded in ``meta.json``), or defaults with the file's fps;
        ``window_s``/``hop_s`` override it."""
        recorded = self.source.window_config() if isinstance(self.source, SessionReader) else None
        cfg = recorded or WindowConfig(video_fps=self.video_fps)
        if window_s is not None or hop_s is not None:
            cfg = replace(cfg, window_s=window_s or cfg.window_s, hop_s=hop_s or cfg.hop_s)
        return cfg

    @property
    def failure(self) -> str | None:
        """One line naming the file when the threaded replay stopped on an error, None otherwise."""
        exc = self.error
        if exc is None:
            return None
        text = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, (SessionError, MediaFileError)):
            return text  # these name the folder or file already
        return f"replay of {self.path} failed: {type(exc).__name__}: {text}"

    def packets(self) -> Iterator[Timed]:
        """Every ``(arrival, packet)`` of every modality (statuses included), merged in arrival order."""
        if isinstance(self.source, SessionReader):
            streams = [self.source.timed_statuses(), self.source.timed_frames(), self.source.timed_audio(),
                       self.source.timed_text()]
        else:
            streams = self.source.timed_streams()
        merged = heapq.merge(*(_monotone(s) for s in streams), key=lambda item: item[0])
        for arrival, packet in merged:
            if isinstance(packet, SourceStatus) and packet.modality is None:
                continue  # app-level events carry no modality and mean nothing to the buffer
            yield arrival, packet

    # -- synchronous ----------------------------------------------------------------------------------------
    def windows(self, config: WindowConfig | None = None) -> Iterator[Window]:
        """Run the replay in the calling thread and yield each window as the simulated clock passes its cut time.

        Deterministic for a given input: the same packets reach the buffer before each cut on every run, at any
        speed. With ``config`` whose ``video_fps`` is ``None``, the recorded/file fps is filled in.
        """
        config = config or self.window_config()
        if config.video_fps is None and self.video_fps:
            config = replace(config, video_fps=self.video_fps)
        buffer = TimeAlignedBuffer()
        windower = Windower(buffer, config, absent_reasons=self.absent_reasons())
        yield from self._drive(buffer, windower)

    def _drive(self, buffer: Sink | None, windower: Windower | None) -> Iterator[Window]:
        self.clock = SimulatedClock(self.speed)
        self.done.clear()
        end_t = self.end_t
        counts = {"video": 0, "audio": 0, "text": 0, "status": 0, "windows": 0}
        kinds = {"VideoFrame": "video", "AudioChunk": "audio", "TextSegment": "text", "SourceStatus": "status"}
        wall0 = time.perf_counter()
        last = 0.0
        finalized = False
        self.stats = {"counts": counts}

        def cut(now: float, final: bool = False) -> list[Window]:
            if windower is None or finalized:
                return []
            out = windower.due(now, final=final)
            counts["windows"] += len(out)
            return out

        try:
            for arrival, packet in self.packets():
                if self._stop.is_set():
                    return
                if end_t is not None and arrival > end_t and not finalized:
                    if not self.clock.advance_to(end_t):
                        return
                    yield from cut(end_t, final=True)
                    finalized = True
                if not self.clock.advance_to(arrival):
                    return
                yield from cut(arrival)
                if buffer is not None:
                    buffer(packet)
                if self.sink is not None:
                    self.sink(packet)
                counts[kinds[type(packet).__name__]] += 1
                yield from cut(arrival)  # this packet may complete a window (cut on arrival)
                last = max(last, arrival)
            end = end_t if end_t is not None else last
            if not finalized and self.clock.advance_to(end):
                yield from cut(end, final=True)
                finalized = True
        finally:
            wall = time.perf_counter() - wall0
            sim = self.clock.now()
            self.stats.update({"wall_s": wall, "sim_s": sim, "speedup": sim / wall if wall > 0 else float("inf"),
                               "finished": finalized})
            self.done.set()

    # -- threaded -------------------------------------------------------------------------------------------
    def start(self, sink: Sink | None = None, config: WindowConfig | None = None,
              on_window: Callable[[Window], None] | None = None,
              on_done: Callable[[BaseException | None], None] | None = None) -> None:
        """Replay in a background thread, feeding ``sink`` (e.g. the live engine's buffer) on the simulated clock.

        With ``on_window``, the thread also cuts windows itself and hands each one over: the deterministic way to
        drive a consumer at ``speed=None``, where polling :attr:`clock` could fall behind. ``on_done(error)`` is
        called from the thread when it ends (``error`` None after the last packet or a stop): a failure never
        passes unnoticed as a short replay.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("replay already running")
        self._stop.clear()
        self.error = None

        def run() -> None:
            try:
                if on_window is not None:
                    cfg = config or self.window_config()
                    if cfg.video_fps is None and self.video_fps:
                        cfg = replace(cfg, video_fps=self.video_fps)
                    buffer = TimeAlignedBuffer()
                    windower = Windower(buffer, cfg, absent_reasons=self.absent_reasons())

                    def push(p):
                        buffer.push(p)
                        if sink is not None:
                            sink(p)

                    for w in self._drive(push, windower):
                        on_window(w)
                else:
                    for _ in self._drive(sink, None):
                        pass
            except Exception as exc:  # noqa: BLE001 - reported through .error, the app decides what to show
                self.error = exc
                log.debug("replay of %s failed", self.path, exc_info=True)
                log.info("%s", self.failure)  # reported through .error/.failure by the caller
            if on_done is not None:
                try:
                    on_done(self.error)
                except Exception:  # noqa: BLE001
                    log.exception("replay completion callback failed")

        self._thread = threading.Thread(target=run, name=f"replay:{self.path.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop a threaded replay promptly (wakes a paced sleep)."""
        self.cancel()
        self.join(timeout)

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`stop` or :meth:`cancel` asked this replay to stop."""
        return self._stop.is_set()

    def cancel(self) -> None:
        """Ask a threaded replay to stop at its next packet, without waiting (safe from a consumer thread)."""
        self._stop.set()
        self.clock.interrupt()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a threaded replay; True when it has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
