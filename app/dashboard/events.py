"""The dashboard's event log: every message a person must be able to read (a refusal, a saved recording, a
finished or failed replay) is kept here with its time, instead of being written into a status line that the
next refresh overwrites. The UI shows new entries as toasts and the last ones in a scrollable log."""
from __future__ import annotations

import collections
import html
import itertools
import threading
import time
from dataclasses import dataclass

LEVELS = ("info", "warning", "error")


@dataclass(frozen=True)
class Event:
    """One message: ``seq`` increases by one per event (clients remember the last they have shown)."""

    seq: int
    wall: float
    level: str
    text: str

    def clock(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.wall))


class EventLog:
    """A bounded, thread-safe log of :class:`Event` (the oldest fall off beyond ``maxlen``)."""

    def __init__(self, maxlen: int = 50) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=maxlen)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, text: str, level: str = "info") -> Event:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        with self._lock:
            ev = Event(next(self._seq), time.time(), level, text)
            self._events.append(ev)
        return ev

    def since(self, seq: int) -> list[Event]:
        """Events newer than ``seq`` (oldest first)."""
        with self._lock:
            return [e for e in self._events if e.seq > seq]

    def last(self, n: int = 20) -> list[Event]:
        with self._lock:
            return list(self._events)[-n:]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._events[-1].seq if self._events else 0


EMPTY = "<span style='color:#8c959f'>no messages yet</span>"
LEVEL_COLOURS = {"info": "#57606a", "warning": "#b35900", "error": "#b42318"}


def log_html(events: list[Event]) -> str:
    """Newest first, escaped, in a fixed-height scrollable box; ``data-count`` for tests."""
    rows = "".join(
        f"<div class='umq-event' data-level='{e.level}' data-seq='{e.seq}'>"
        f"<span style='color:#8c959f'>{e.clock()}</span> "
        f"<span style='color:{LEVEL_COLOURS[e.level]}'>{html.escape(e.text)}</span></div>"
        for e in reversed(events))
    return (f"<div class='umq-log' data-count='{len(events)}' style='max-height:7.5em;overflow-y:auto;"
            f"font-size:0.85em;border:1px solid #d0d7de;border-radius:6px;padding:4px 8px'>"
            f"{rows or EMPTY}</div>")
