"""Who may change what the dashboard does: one controlling browser session at a time.

One dashboard drives one engine, so two people pressing Start would silently undo each other. Instead the first
session that changes something (start, stop, replay, lab, record) holds control; every other session sees the
same analysis read-only and is told "controlled by another session" when it tries to change it. Control is
released when its holder has not been heard from (no refresh, no call) for ``timeout_s`` seconds, e.g. after
closing the tab, or explicitly with :meth:`ControlLease.release`.
"""
from __future__ import annotations

import threading
import time


class NotInControl(PermissionError):
    """Another session controls the dashboard; this one is read-only."""


class ControlLease:
    def __init__(self, timeout_s: float = 15.0, now=time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._now = now
        self._holder: str | None = None
        self._seen = 0.0
        self._lock = threading.Lock()

    def _expired(self) -> bool:
        return self._holder is None or self._now() - self._seen > self.timeout_s

    def claim(self, session: str | None) -> None:
        """Take or keep control for ``session``; raise :class:`NotInControl` when another session holds it.
        ``None`` is the operator (command line, the demo loop): always allowed, takes nothing."""
        if session is None:
            return
        with self._lock:
            if self._holder not in (None, session) and not self._expired():
                raise NotInControl("the dashboard is controlled by another session; this one is read-only "
                                   f"until that session has been gone for {self.timeout_s:.0f} s")
            self._holder, self._seen = session, self._now()

    def touch(self, session: str | None) -> None:
        """Called on every refresh: keeps the holder's control alive."""
        with self._lock:
            if session is not None and session == self._holder:
                self._seen = self._now()

    def release(self, session: str | None) -> None:
        with self._lock:
            if session == self._holder:
                self._holder = None

    @property
    def holder(self) -> str | None:
        """The controlling session, or None (nobody, or its lease has run out)."""
        with self._lock:
            return None if self._expired() else self._holder

    def read_only(self, session: str | None) -> bool:
        """True when ``session`` may look but not change anything right now."""
        with self._lock:
            return session is not None and self._holder not in (None, session) and not self._expired()
