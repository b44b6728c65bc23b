"""What the dashboard draws as of one moment (:class:`DashboardState`), and the demo's scripted stretches."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np

from umq.result import Result

from ..engine import Telemetry
from ..paths import DEMO_SESSION

log = logging.getLogger(__name__)

PHASES = ("idle", "live", "replay", "recording", "finished", "failed")


@dataclass
class DashboardState:
    """Everything the dashboard draws, as of one moment.

    Attributes:
        mode: the engine's mode, ``idle``, ``live`` or ``replay``.
        phase: what a person should read: one of :data:`PHASES` (``recording`` while live and recording,
            ``finished``/``failed`` for a replay that ended or a run that broke).
        status: the status sentence derived from ``phase`` (never stale text).
        source: what is (or was last) playing.
        result: the newest :class:`~umq.result.Result` (None before the first window).
        frame: the newest camera frame, BGR (None without video).
        history: results of the last ``seconds`` of session time, oldest first.
        telemetry: the engine's :class:`~app.engine.Telemetry`.
        recording: the session folder being recorded, or None.
        transcript: the newest transcript lines seen in results (oldest first).
        finished: True when a replay has played to its end.
        stale: True when nothing is running: ``result``/``frame`` are what was there when it stopped.
        stopped_at: session time of the last result when stale.
        failure: the one-line reason of a failed run, or None.
        script: scripted stretches of the demo (name -> (t0, t1)); empty for anything else.
    """

    mode: str
    source: str
    status: str
    result: Result | None
    frame: np.ndarray | None
    history: list[Result]
    telemetry: Telemetry
    recording: str | None = None
    transcript: list[str] = field(default_factory=list)
    finished: bool = False
    phase: str = "idle"
    stale: bool = False
    stopped_at: float | None = None
    failure: str | None = None
    script: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def message(self) -> str:  # the version-1 name
        return self.status



def demo_script() -> dict[str, tuple[float, float]]:
    """``{"dark": (9.0, 15.0), ...}`` from the bundled demo's ``meta.json`` (empty if it has none)."""
    try:
        meta = json.loads((DEMO_SESSION / "meta.json").read_text(encoding="utf-8"))
        return {k: (float(v[0]), float(v[1])) for k, v in (meta.get("script") or {}).items()}
    except (OSError, ValueError, TypeError, IndexError) as exc:
        log.warning("demo script unreadable: %s", exc)
        return {}
