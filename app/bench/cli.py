"""``python -m app bench`` options."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .config import CACHE_DIR, BenchConfig
from .report import _json_safe, format_table, run_bench


# -- command line -------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to ``subparsers`` (``python -m app bench``)."""
    b = subparsers.add_parser("bench", help="measure latency, replay speed, UMQ throughput and memory")
    b.add_argument("--out", type=Path, default=Path("bench.json"), help="JSON report (default bench.json)")
    b.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    b.add_argument("--quick", action="store_true",
                   help="small sizes for tests/CI: 10 s live, 20 s generated session, 3 min soak, fewer iterations")
    b.add_argument("--long-minutes", type=float, help="generated session length in minutes (default 10)")
    b.add_argument("--soak-minutes", type=float,
                   help="session time replayed for the RSS growth measurement (default 60; quick 3)")
    b.add_argument("--live-seconds", type=float, help="live synthetic capture length (default 60; quick 10)")
    b.add_argument("--sequential-face", action="store_true",
                   help="run the engine with the face front-end after voice/text instead of beside them (the A/B "
                        "section measures both either way)")
    b.add_argument("--batch-only", action="store_true",
                   help="measure only batch throughput (analyze: local and Ray, 1 and 2 workers)")
    b.add_argument("--batch-inputs", type=int, metavar="N", help="demo-session copies per batch arm (default 4)")
    b.add_argument("--no-batch", action="store_true", help="skip the batch-throughput section")
    b.add_argument("--cache-dir", type=Path, help=f"where generated sessions are kept (default {CACHE_DIR})")
    b.set_defaults(func=main)
    return b


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    kw: dict[str, Any] = {"device": getattr(args, "device", None)}
    if getattr(args, "long_minutes", None):
        kw["long_s"] = args.long_minutes * 60.0
    if getattr(args, "soak_minutes", None):
        kw["soak_s"] = args.soak_minutes * 60.0
    if getattr(args, "live_seconds", None):
        kw["live_s"] = args.live_seconds
    if getattr(args, "sequential_face", False):
        kw["parallel_face"] = False
    if getattr(args, "batch_inputs", None):
        kw["batch_inputs"] = args.batch_inputs
    if getattr(args, "no_batch", False):
        kw["batch"] = False
    if getattr(args, "cache_dir", None):
        kw["cache_dir"] = args.cache_dir
    return BenchConfig.quick_config(**kw) if getattr(args, "quick", False) else BenchConfig(**kw)


def main(args: argparse.Namespace) -> int:
    from umq.device import DeviceError

    cfg = config_from_args(args)
    if getattr(args, "batch_only", False):
        from .batch import format_batch, measure_batch

        report = {"batch": measure_batch(cfg, progress=lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))}
        print("\n".join(format_batch(report["batch"])))
        out = Path(getattr(args, "out", None) or "bench.json")
        out.write_text(json.dumps(_json_safe(report), indent=2) + "\n")
        print(f"wrote {out}")
        return 0
    try:
        report = run_bench(cfg, progress=lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))
    except (RuntimeError, DeviceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    out = Path(getattr(args, "out", None) or "bench.json")
    out.write_text(json.dumps(_json_safe(report), indent=2) + "\n")
    print(f"wrote {out}")
    return 0
