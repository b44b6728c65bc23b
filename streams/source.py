"""The one small interface every capture or file source implements.

A source owns a thread (or a driver callback), stamps packets on the shared clock and hands them to a *sink*.
Sinks must never block: the buffer appends to bounded deques and the recorder drops and counts when its queue
is full, so a slow consumer can never stall capture.
"""
from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable

from .clock import Clock
from .packets import AudioChunk, Modality, SourceCounters, SourceState, SourceStatus, TextSegment, VideoFrame

log = logging.getLogger(__name__)

Packet = VideoFrame | AudioChunk | TextSegment | SourceStatus
Sink = Callable[[Packet], None]


def _discard(_: Packet) -> None:
    pass


class Tee:
    """Fan one packet stream out to several sinks (e.g. the buffer and the recorder). A failing sink is logged
    and skipped, never allowed to break capture."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = list(sinks)

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def remove(self, sink: Sink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def __call__(self, packet: Packet) -> None:
        for sink in list(self.sinks):
            try:
                sink(packet)
            except Exception:  # noqa: BLE001 - a sink bug must not kill a capture thread
                log.exception("sink %r failed on %s", sink, type(packet).__name__)


class Source(abc.ABC):
    """Base class: lifecycle, status reporting and counters.

    Subclasses implement :meth:`_start` and :meth:`_stop` and call :meth:`_emit` and :meth:`_set_status`.
    """

    modality: Modality

    def __init__(self, name: str, clock: Clock, sink: Sink | None = None) -> None:
        self.name = name
        self.clock = clock
        self.sink: Sink = sink or _discard
        self.counters = SourceCounters()
        self._status = SourceStatus(SourceState.STOPPED, "not started", 0.0, self.modality, name)
        self._status_lock = threading.Lock()

    # -- public API -----------------------------------------------------------------------------------------
    def connect(self, sink: Sink) -> None:
        """Route this source's packets and status changes to ``sink``. Call before :meth:`start`."""
        self.sink = sink

    @property
    def status(self) -> SourceStatus:
        with self._status_lock:
            return self._status

    def start(self) -> None:
        self._set_status(SourceState.STARTING, "")
        self._start()

    def stop(self) -> None:
        self._stop()
        if self.status.state not in (SourceState.ENDED, SourceState.UNAVAILABLE):
            self._set_status(SourceState.STOPPED, "stopped")

    # -- for subclasses -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _start(self) -> None: ...

    @abc.abstractmethod
    def _stop(self) -> None: ...

    def _emit(self, packet: VideoFrame | AudioChunk | TextSegment) -> None:
        self.counters.packets += 1
        self.sink(packet)

    def _set_status(self, state: SourceState, reason: str = "", t: float | None = None) -> None:
        """Record a state change and forward it to the sink, so the buffer (and the recorder) see it in time order."""
        status = SourceStatus(state, reason, self.clock.now() if t is None else t, self.modality, self.name)
        with self._status_lock:
            changed = (status.state, status.reason) != (self._status.state, self._status.reason)
            self._status = status
        if changed:
            level = logging.WARNING if state in (SourceState.UNAVAILABLE, SourceState.RECONNECTING) else logging.INFO
            log.log(level, "%s source %s: %s%s", self.modality.value, self.name, state.value,
                    f" ({reason})" if reason else "")
            self.sink(status)


class ThreadedSource(Source):
    """A source whose work is a loop in its own daemon thread; :meth:`_run` must return when ``_stopping`` is set."""

    def __init__(self, name: str, clock: Clock, sink: Sink | None = None) -> None:
        super().__init__(name, clock, sink)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._guarded_run, name=f"{self.modality.value}:{self.name}",
                                        daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                log.warning("%s source %s did not stop within 5 s", self.modality.value, self.name)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _guarded_run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - report, never crash the app
            log.exception("%s source %s crashed", self.modality.value, self.name)
            self._set_status(SourceState.UNAVAILABLE, f"{self.name} failed: {exc}")

    @abc.abstractmethod
    def _run(self) -> None: ...
