"""The per-input task: one input through the same engine path as headless replay, rendered to its outputs.

The path is the one ``python -m app replay X --headless`` takes (:class:`~streams.replay.Replay` at maximum speed
-> :class:`~app.engine.Engine` with blocking hand-offs -> the :class:`~umq.runtime.analyzer.Analyzer`'s stages),
so a batch row and a headless replay line of the same window are the same result. The task returns the rendered
CSV and JSONL text instead of writing files: the caller writes them (atomically), which lets a Ray worker on
another machine hand its outputs back to the machine that owns the output folder.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .inputs import BatchInput, input_sha256
from .provenance import header

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskOptions:
    """Analysis settings shared by every input of a batch (picklable: it travels to worker processes)."""

    window: float | None = None
    hop: float | None = None
    device: str | None = None
    lab: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """What analysing one input produced.

    Attributes:
        item: the input.
        error: why it failed (``None`` when it succeeded); a failed input has no outputs.
        jsonl, csv: the rendered outputs (empty on failure).
        summary: the footer of the JSONL (windows, duration, failed windows, wall time), used for summary.csv.
    """

    item: BatchInput
    error: str | None = None
    jsonl: str = ""
    csv: str = ""
    summary: dict = field(default_factory=dict)


def expected_windows(replay, config) -> int | None:
    """How many windows an input will give (for the progress bar), when its duration is known up front."""
    end = replay.end_t or replay.meta.get("duration_s") or replay.meta.get("end_t")
    if not end:
        return None
    return max(1, int((float(end) - config.window_s) / config.hop_s) + 1)


def make_analyzer(options: TaskOptions):
    """An Analyzer for a worker: loaded once, warm, with the batch's quality-lab settings."""
    from umq.runtime import LabSettings

    from ..headless import load_analyzer

    analyzer = load_analyzer(options.device)  # RunFailed naming the file when a weights file does not load
    if options.lab:
        analyzer.lab.set(LabSettings(**options.lab))
    return analyzer


def analyze_input(item: BatchInput, analyzer, options: TaskOptions,
                  on_window: Callable[[int], None] | None = None,
                  on_total: Callable[[int | None], None] | None = None) -> Outcome:
    """Analyse one input; every failure becomes ``Outcome.error`` (a damaged input never stops the batch).

    ``on_total(n)`` is told the expected number of windows once known, ``on_window(1)`` after each window.
    """
    try:
        return _analyze(item, analyzer, options, on_window, on_total)
    except Exception as exc:
        log.debug("input %s failed", item.path, exc_info=True)
        return Outcome(item, error=_reason(exc))


def _reason(exc: BaseException) -> str:
    from streams.files import MediaFileError
    from streams.session import SessionError

    from ..outputs import RunFailed, one_line

    text = one_line(exc) or type(exc).__name__
    if isinstance(exc, (MediaFileError, SessionError, RunFailed)):
        return text
    return f"{type(exc).__name__}: {text}"


def _analyze(item, analyzer, options, on_window, on_total) -> Outcome:
    from streams.replay import Replay

    from ..engine import Engine, EngineConfig
    from ..outputs import RunFailed
    from ..table import results_frame, start_unix_of, to_csv_text

    sha = input_sha256(item)
    replay = Replay(item.path, speed=None)
    config = replay.window_config(options.window, options.hop)
    if on_total is not None:
        on_total(expected_windows(replay, config))
    analyzer.reset()
    engine = Engine(analyzer.stages(), EngineConfig(window=config, policy="block", history=1))
    results = []

    def collect(r) -> None:
        results.append(r)
        if on_window is not None:
            on_window(1)

    engine.subscribe(collect)
    t = time.perf_counter()
    engine.start_replay(replay, config)
    try:
        engine.wait_replay()
    finally:
        engine.stop()
    wall = time.perf_counter() - t
    failure = getattr(engine, "failure", None) or (str(replay.error) if replay.error else None)
    if failure:
        raise RunFailed(failure)
    tel = engine.telemetry()
    failed_windows = sum(tel.errors.values())
    if not results:
        why = f"; {tel.last_error}" if tel.last_error else ""
        raise RunFailed(f"no window could be analysed ({tel.windows} windows cut{why})")
    results.sort(key=lambda r: r.index)
    meta = replay.meta if isinstance(replay.meta, dict) else {}
    head = header(input_path=item.path, input_sha256=sha, name=item.name, analyzer=analyzer,
                  window_s=config.window_s, hop_s=config.hop_s, meta=meta)
    duration = float(replay.stats.get("sim_s") or results[-1].t1)
    footer = {"type": "footer", "windows": len(results), "failed_windows": failed_windows,
              "last_error": tel.last_error if failed_windows else "", "duration_s": round(duration, 3),
              "wall_s": round(wall, 3), "input_sha256": sha}
    lines = [json.dumps(head)] + [json.dumps({"type": "result", **r.to_json()}) for r in results]
    lines.append(json.dumps(footer))
    df = results_frame(results, source=str(item.path), start_unix=start_unix_of(meta))
    return Outcome(item, jsonl="\n".join(lines) + "\n", csv=to_csv_text(df), summary=footer)
