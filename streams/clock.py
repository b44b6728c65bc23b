"""The session clock that every packet is stamped with.

Live capture uses :class:`SessionClock` (monotonic seconds since the session started). Replay uses
:class:`SimulatedClock`, which the replay driver advances as it feeds recorded packets, either paced against the
wall clock (``speed=1.0``, or any factor) or as fast as possible (``speed=None``). Everything downstream only
calls ``now()``, so live and replay share one code path.
"""
from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the session started."""
        ...


class SessionClock:
    """Monotonic session time; immune to wall-clock jumps (NTP, DST)."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self.started_at_unix = time.time()

    def now(self) -> float:
        return time.monotonic() - self._t0


class SimulatedClock:
    """Replay time, moved forward by the replay driver.

    Args:
        speed: real-time factor (1.0 plays at recorded pace, 2.0 twice as fast) or ``None`` for as fast as
            possible, in which case :meth:`advance_to` never sleeps.
    """

    def __init__(self, speed: float | None = 1.0, start: float = 0.0) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be positive or None (max), got {speed}")
        self.speed = speed
        self._t = start
        self._origin_sim = start
        self._origin_wall = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance_to(self, t: float) -> bool:
        """Move simulated time to ``t``, sleeping first when paced. Returns False if :meth:`interrupt` was called."""
        if self.speed is not None:
            wall_target = self._origin_wall + (t - self._origin_sim) / self.speed
            delay = wall_target - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return False
        with self._lock:
            if t > self._t:
                self._t = t
        return not self._stop.is_set()

    def interrupt(self) -> None:
        """Wake a sleeping :meth:`advance_to` (used to stop a paced replay promptly)."""
        self._stop.set()
