"""The dashboard's API for programs (``gradio_client``), with stable names and JSON outputs:

* ``/analyze_video`` (video file[, transcript .srt/.vtt]) -> list of results (``Result.to_json``): replays the
  upload as fast as possible through the same engine and returns every window.
* ``/latest_result`` () -> the newest result as JSON, or null.
* ``/start_replay`` (path, speed "1x"/"max") -> status sentence (path under the allowed folders).
* ``/set_lab`` (settings dict, LabSettings field names) -> the settings in force.
* ``/export`` (kind "csv"/"jsonl") -> the results file.
* ``/status`` () -> ``{"phase", "status", "telemetry", "browser"}`` (browser: what this browser's capture
  delivered, e.g. ``audio_coverage``).

Each call needs control like a click does (:mod:`.control`): another session's run is never silently replaced.
"""
from __future__ import annotations

import dataclasses
import time
from typing import NoReturn

import gradio as gr

from umq.runtime import LabSettings

from .controller import DashboardController, NotInControl


def add_api(ctl: DashboardController) -> None:
    from .ui import session_of
    from .ui_replay import upload_and_play, write_export

    def refuse(exc: Exception) -> NoReturn:
        raise gr.Error(str(exc), print_exception=False)

    def analyze_video(video: gr.FileData, transcript: gr.FileData | None = None,
                      request: gr.Request | None = None) -> list[dict]:
        """Replay an uploaded video (and its .srt/.vtt) at maximum speed; every window's result as JSON."""
        files = [f["path"] if isinstance(f, dict) else getattr(f, "path", f) for f in (video, transcript) if f]
        try:
            upload_and_play(ctl, session_of(request), files, None)
        except (NotInControl, ValueError, OSError) as exc:
            refuse(exc)
        eng = ctl.engine
        deadline = time.monotonic() + 1800
        while not eng.wait_replay(1.0):
            if time.monotonic() > deadline or getattr(eng, "failure", None):
                break
        failure = getattr(eng, "failure", None)
        if failure:
            refuse(RuntimeError(f"analysis failed: {failure}"))
        return [r.to_json() for r in ctl.full_history()]

    def latest_result() -> dict | None:
        """The newest window's result (schema 2 JSON), or null before the first."""
        r = ctl.engine.latest_result()
        return r.to_json() if r is not None else None

    def start_replay(path: str, speed: str = "1x", request: gr.Request | None = None) -> str:
        """Replay a session folder or video under the allowed folders at "1x" or "max"."""
        try:
            return ctl.start_replay(path, None if speed == "max" else 1.0, session=session_of(request))
        except (NotInControl, ValueError, OSError) as exc:
            refuse(exc)

    def set_lab(settings: dict, request: gr.Request | None = None) -> dict:
        """Set the quality lab (LabSettings field names; missing ones are off); returns the settings in force."""
        names = {f.name for f in dataclasses.fields(LabSettings)}
        unknown = set(settings) - names
        try:
            if unknown:
                raise ValueError(f"unknown lab settings {sorted(unknown)}; known: {sorted(names)}")
            ctl.set_lab(LabSettings(**settings), session=session_of(request))
        except (NotInControl, ValueError, TypeError) as exc:
            refuse(exc)
        return dataclasses.asdict(ctl.lab.settings)

    def export(kind: str = "jsonl") -> gr.FileData:
        """The current session's results as "csv" or "jsonl"."""
        try:
            return gr.FileData(path=write_export(ctl, kind))
        except ValueError as exc:
            refuse(exc)

    def status() -> dict:
        """What the dashboard is doing: phase (idle/live/replay/recording/finished/failed), sentence, telemetry."""
        s = ctl.state()
        return {"phase": s.phase, "status": s.status, "telemetry": dataclasses.asdict(s.telemetry),
                "browser": ctl.browser_stats()}

    for fn in (analyze_video, latest_result, start_replay, set_lab, export, status):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=None if fn in (latest_result, status) else 1)
