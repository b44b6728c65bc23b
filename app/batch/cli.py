"""``python -m app analyze PATH [PATH ...] --out DIR``: batch analysis of videos and session folders.

Per input ``DIR/<name>.csv`` (the results table, :mod:`app.table`) and ``DIR/<name>.jsonl`` (a provenance
header, one :class:`~umq.result.Result` per line, a footer); ``DIR/summary.csv`` (one row per input) and
``DIR/errors.csv`` (inputs that failed, with the reason). Exit status 0 when every input was analysed, 1 when
any failed, 2 for a usage error found before any work (a missing path, an output folder that cannot be written,
Ray not available).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .inputs import InputError, discover, input_sha256
from .outputs import (
    OutputError,
    check_writable,
    completed,
    done_row,
    paths_of,
    remove_stale_temporaries,
    summary_row,
    write_atomic,
    write_errors,
    write_summary,
)
from .task import Outcome, TaskOptions

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub) -> argparse.ArgumentParser:
    a = sub.add_parser("analyze", help="analyse video files and session folders into CSV/JSONL tables")
    a.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="video files (mp4, mkv, webm, avi, mov), session folders, or folders of them (recursive)")
    a.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
    g = a.add_mutually_exclusive_group()
    g.add_argument("--resume", dest="force", action="store_false", default=False,
                   help="skip inputs whose outputs are complete (default)")
    g.add_argument("--force", dest="force", action="store_true", help="analyse every input again")
    a.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes on this machine, each with its own models (default 1); with --ray the "
                        "number of Ray actors (default: one per CPU of the cluster)")
    a.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on Ray: a local instance without ADDRESS, else the cluster at ADDRESS (HOST:PORT, "
                        "ray://HOST:10001 or auto); --workers then sets the number of actors")
    a.add_argument("--ray-gpus", type=float, default=0.0, metavar="G", help="GPUs per Ray worker (e.g. 0.5)")
    a.add_argument("--ray-cpus", type=float, default=1.0, metavar="C", help="CPUs per Ray worker (default 1)")
    a.add_argument("--ray-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the Ray head before giving up (default 10)")
    a.add_argument("--window", type=float, help="override the window length (s)")
    a.add_argument("--hop", type=float, help="override the hop (s)")
    a.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    a.add_argument("--no-progress", action="store_true", help="no progress bars")
    a.set_defaults(func=main)
    return a


def main(args: argparse.Namespace) -> int:
    try:
        found = discover(args.paths, exclude=[args.out])
        check_writable(args.out)
    except (InputError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.workers is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    for path, why in found.ignored:
        log.warning("ignored %s: %s", path, why)
    if not found.inputs:
        print(f"error: no video files or session folders under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return EXIT_USAGE
    ray_opts = None
    if args.ray is not None:
        from .ray_runner import RayOptions, RayUnavailable, connect

        ray_opts = RayOptions(address=args.ray or None, workers=args.workers,
                              cpus_per_worker=args.ray_cpus, gpus_per_worker=args.ray_gpus,
                              timeout_s=args.ray_timeout)
        try:
            connect(ray_opts)  # before any work: a missing package or an unreachable head is a usage error
        except RayUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    options = TaskOptions(window=args.window, hop=args.hop, device=getattr(args, "device", None))
    from umq.checkpoint import CheckpointError

    from ..outputs import RunFailed

    try:
        report = run_batch(found.inputs, args.out, options, force=args.force, workers=args.workers or 1,
                           ray=ray_opts, progress=not args.no_progress)
    except (CheckpointError, RunFailed) as exc:  # the models cannot load: nothing could be analysed
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"interrupted: finished inputs are in {args.out}; run the same command again to resume",
              file=sys.stderr)
        return 130
    print(f"analysed {report['analysed']}, skipped {report['skipped']} (already done), failed {report['failed']}; "
          f"ignored {len(found.ignored)} other files -> {args.out}")
    if report["failed"]:
        print(f"  failures are listed in {args.out / 'errors.csv'}", file=sys.stderr)
    return EXIT_FAILED if report["failed"] else EXIT_OK


def run_batch(items, out: Path, options: TaskOptions, *, force: bool = False, workers: int = 1, ray=None,
              progress: bool = True, analyzer=None) -> dict:
    """Analyse ``items`` into ``out``; returns counts ``{"analysed", "skipped", "failed", "errors"}``.

    ``analyzer`` (in-process runs only) reuses already loaded models (the Python API and tests pass one).
    """
    from .local import Progress, run_in_process, run_in_processes

    check_writable(out)
    remove_stale_temporaries(out)
    rows: dict[Path, dict] = {}
    errors: dict[Path, str] = {}
    todo = []
    for item in items:
        footer = None if force else completed(out, item, input_sha256(item) if item.path.exists() else None)
        if footer is not None:
            rows[item.path] = done_row(out, item, footer)
        else:
            todo.append(item)
    bar = Progress(len(items), disable=(None if progress else True))
    bar.inputs.update(len(items) - len(todo))
    counts = {"analysed": 0, "skipped": len(items) - len(todo), "failed": 0}

    def on_outcome(o: Outcome) -> None:
        if o.error:
            errors[o.item.path] = o.error
            rows[o.item.path] = summary_row(o.item, None, None, o.error)
            counts["failed"] += 1
            log.error("%s: %s", o.item.path, o.error)
        else:
            csv, jsonl = paths_of(out, o.item)
            write_atomic(csv, o.csv)
            write_atomic(jsonl, o.jsonl)  # last: the JSONL's footer marks the input complete
            rows[o.item.path] = done_row(out, o.item, o.summary)
            counts["analysed"] += 1
        write_summary(out, items, rows)
        bar.input_done(o.item.name)

    try:
        if not todo:
            pass
        elif ray is not None:
            from .ray_runner import run_on_ray

            run_on_ray(todo, options, ray, bar, on_outcome)
        elif workers > 1 and len(todo) > 1:
            run_in_processes(todo, options, min(workers, len(todo)), bar, on_outcome)
        else:
            run_in_process(todo, options, bar, on_outcome, analyzer=analyzer)
    finally:
        bar.close()
        write_summary(out, items, rows)
        write_errors(out, items, errors)
    return {**counts, "errors": errors}
