"""``python -m app replay PATH --headless``: replay without a browser, one JSON line per window.

Failures are never reported as success: a reader error, a model file that does not load, a stage that fails,
or a replay that cuts no window is one ``error: ...`` line naming the file and exit status 1, and the output
file is only replaced when the run succeeded (:func:`app.outputs.atomic_output`). :func:`load_analyzer` is
shared with other batch commands (``analyze``). Prints the short summary a person reads.
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from .engine import Engine, EngineConfig
from .outputs import RunFailed, atomic_output, one_line, partial_path

EXIT_OK, EXIT_ERROR = 0, 1


def replay_headless(path: Path, out: str = "-", windows_only: bool = False, speed: float | None = None,
                    window: float | None = None, hop: float | None = None, device: str | None = None,
                    lsl: str | None = None) -> int:
    """Replay ``path`` without a browser: one JSON line per window to ``out`` (``-``: stdout; a file is written
    as ``OUT.partial`` and renamed on success); returns the exit status.

    Any failure (reader, model, stage, or no window at all) is one ``error: ...`` line naming the file and exit
    1; the partial output stays as ``OUT.partial`` and a previous ``OUT`` is left as it was. ``lsl``: also publish
    each result as LSL streams with that name prefix (:mod:`app.lsl`)."""
    from streams.files import MediaFileError
    from streams.replay import Replay
    from streams.session import SessionError

    from .lsl import LslUnavailable

    try:
        replay = Replay(path, speed=speed)
        config = replay.window_config(window, hop)
    except (SessionError, MediaFileError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    statuses = _StatusNotes()
    replay.sink = statuses
    to_stdout = out == "-"
    report = sys.stderr if to_stdout else sys.stdout
    writing = False  # whether OUT.partial is this run's (a stale one from an earlier run is not named)
    try:
        analyzer = None if windows_only else load_analyzer(device)
        with contextlib.nullcontext(sys.stdout) if to_stdout else atomic_output(out) as f:
            writing = not to_stdout
            if analyzer is None:
                n, present, reasons = _write_windows(replay, config, f, statuses)
            else:
                n, present, reasons = _write_results(replay, config, f, analyzer, lsl)
    except OSError as exc:
        if not to_stdout and not writing:
            print(f"error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        else:
            print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except (RunFailed, SessionError, MediaFileError, LslUnavailable) as exc:
        kept = f" (partial output kept in {partial_path(out)})" if writing else ""
        print(f"error: {one_line(exc)}{kept}", file=sys.stderr)
        return EXIT_ERROR
    st = replay.stats
    speed_txt = "max" if speed is None else f"{speed:g}x"
    what = "windows" if windows_only else "results"
    print(f"replayed {path} ({replay.kind}, {st.get('sim_s', 0):.1f} s of session time) in "
          f"{st.get('wall_s', 0):.2f} s at speed {speed_txt} ({st.get('speedup', 0):.1f}x real time)", file=report)
    print(f"  {what} {n} -> {'stdout' if to_stdout else out}; present: video {present['video']}, "
          f"audio {present['audio']}, text {present['text']}", file=report)
    for note in statuses.notes():
        print(f"  warning: {note}", file=report)
    for m, rs in reasons.items():
        for reason, count in sorted(rs.items(), key=lambda kv: -kv[1])[:3]:
            print(f"  {m} not ok in {count}: {reason}", file=report)
    return EXIT_OK


class _StatusNotes:
    """Replay side sink: how each stream ended or why it was unavailable, for the summary (a truncated file
    says so there, not only inside per-window JSON)."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def __call__(self, packet) -> None:
        from streams.packets import SourceState, SourceStatus

        if isinstance(packet, SourceStatus) and packet.modality is not None and packet.reason \
                and packet.state in (SourceState.ENDED, SourceState.UNAVAILABLE):
            self.last[packet.modality.value] = packet.reason

    def notes(self) -> list[str]:
        return [f"{m}: {r}" for m, r in self.last.items() if not r.startswith("end of ")]


def _tally(present: dict, reasons: dict, m: str, ok: bool, reason: str) -> None:
    if ok:
        present[m] += 1
    else:
        reasons[m][reason] = reasons[m].get(reason, 0) + 1


def _write_windows(replay, config, out, statuses: _StatusNotes) -> tuple[int, dict, dict]:
    n, present = 0, {"video": 0, "audio": 0, "text": 0}
    reasons: dict[str, dict[str, int]] = {m: {} for m in present}
    try:
        for w in replay.windows(config):
            js = w.to_json()
            out.write(json.dumps(js) + "\n")
            n += 1
            for m in present:
                _tally(present, reasons, m, js[m]["present"], js[m]["reason"])
    except (OSError, RunFailed):
        raise
    except Exception as exc:  # noqa: BLE001 - a reader bug or damaged input: one line, not a traceback
        from streams.files import MediaFileError
        from streams.session import SessionError

        if isinstance(exc, (SessionError, MediaFileError)):
            raise RunFailed(str(exc)) from exc
        raise RunFailed(f"replay of {replay.path} failed: {type(exc).__name__}: {exc}") from exc
    if n == 0:
        notes = "; ".join(statuses.notes())
        raise RunFailed(f"{replay.path.name}: no analysis window: {replay.stats.get('sim_s', 0.0):.1f} s of media "
                        f"is shorter than one {config.window_s:g} s window" + (f" ({notes})" if notes else "")
                        + "; nothing was analysed")
    return n, present, reasons


def _write_results(replay, config, out, analyzer, lsl: str | None = None) -> tuple[int, dict, dict]:
    """Every window through the engine and the runtime model (blocking hand-offs: nothing dropped). Raises
    :class:`~app.outputs.RunFailed` with the engine's reason when the run failed."""
    from .lsl import attach_lsl

    engine = Engine(analyzer.stages(), EngineConfig(window=config, policy="block"))
    attach_lsl(engine, lsl, config.hop_s)
    present = {"video": 0, "audio": 0, "text": 0}
    reasons: dict[str, dict[str, int]] = {m: {} for m in present}
    n = 0

    def write(r) -> None:
        nonlocal n
        out.write(json.dumps(r.to_json()) + "\n")
        n += 1
        for m in present:
            _tally(present, reasons, m, r.state.get(m) != "missing", r.reason.get(m, ""))

    engine.subscribe(write)
    engine.start_replay(replay, config)
    try:
        engine.wait_replay()
    finally:
        engine.stop()
    if engine.failure:
        raise RunFailed(engine.failure)
    return n, present, reasons


def load_analyzer(device: str | None):
    """The runtime analyzer with every model loaded now (the face net is otherwise loaded on the first window):
    a damaged or missing weights file is one :class:`~app.outputs.RunFailed` naming it, before any work."""
    from umq.runtime import Analyzer

    try:
        analyzer = Analyzer(device=device)
        analyzer.warm_up()
    except (OSError, ValueError, RuntimeError, ImportError) as exc:  # CheckpointError, ModelDigestError, ...
        raise RunFailed(f"cannot load the models: {one_line(exc)}") from exc
    return analyzer
