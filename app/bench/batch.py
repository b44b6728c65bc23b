"""Batch throughput: session-hours analysed per wall-hour by ``python -m app analyze``, with 1 and 2 workers,
as local processes and as Ray actors (a section of ``python -m app bench``; ``--batch-only`` runs it alone).

The inputs are copies of the bundled demo session (distinct folders, so each is a separate input). The wall time
is the whole batch as a user sees it: worker start-up and model loading included, which is why short batches
gain less from more workers than long ones. The load average is recorded beside each arm: on a shared machine
the numbers say more about the neighbours than about the code.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .config import BenchConfig

ARMS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))


def batch_inputs(cfg: BenchConfig, n: int) -> list[Path]:
    """``n`` copies of the demo session under the bench cache (made once)."""
    root = cfg.cache_dir / "batch-inputs"
    out = []
    for i in range(n):
        dst = root / f"demo-{i}"
        if not (dst / "meta.json").is_file():
            tmp = root / f".demo-{i}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(cfg.demo_path, tmp)
            shutil.rmtree(dst, ignore_errors=True)
            tmp.rename(dst)
        out.append(dst)
    return out


def measure_batch(cfg: BenchConfig, progress: Callable[[str], None] = lambda s: None,
                  arms=ARMS) -> dict:
    """Each arm analyses the same inputs from scratch (``force``) into a temporary folder."""
    import pandas as pd

    from ..batch import TaskOptions, discover, run_batch
    from ..batch.ray_runner import RayOptions, RayUnavailable

    paths = batch_inputs(cfg, cfg.batch_inputs)
    items = discover(paths).inputs
    rows = []
    ray_up = False
    try:
        for runner, workers in arms:
            progress(f"batch: {len(items)} inputs, {runner}, {workers} worker(s)")
            load_before = os.getloadavg()[0]
            ray_opts = RayOptions(workers=workers, num_cpus=max(2, workers)) if runner == "ray" else None
            with tempfile.TemporaryDirectory(prefix="umq-bench-batch-") as out:
                t = time.perf_counter()
                try:
                    report = run_batch(items, Path(out), TaskOptions(device=cfg.device), force=True,
                                       workers=workers, ray=ray_opts, progress=False)
                except RayUnavailable as exc:
                    rows.append({"runner": runner, "workers": workers, "error": str(exc)})
                    continue
                wall = time.perf_counter() - t
                ray_up = ray_up or runner == "ray"
                summary = pd.read_csv(Path(out) / "summary.csv")
            session_s = float(summary["duration_s"].fillna(0).sum())
            rows.append({"runner": runner, "workers": workers, "inputs": len(items), "failed": report["failed"],
                         "session_s": round(session_s, 1), "wall_s": round(wall, 1),
                         "session_h_per_wall_h": round(session_s / wall, 2) if wall > 0 else None,
                         "load_avg_before": round(load_before, 1), "load_avg_after": round(os.getloadavg()[0], 1)})
    finally:
        if ray_up:
            import ray

            ray.shutdown()
    return {"inputs": [str(p) for p in paths], "cpus": os.cpu_count(), "arms": rows}


def format_batch(b: dict) -> list[str]:
    lines = [f"Batch analysis ({len(b['inputs'])} x demo session, {b['cpus']} CPUs; wall time includes model "
             f"loading): session-hours per wall-hour"]
    for a in b["arms"]:
        if "error" in a:
            lines.append(f"  {a['runner']:<6}{a['workers']} worker(s): not measured ({a['error']})")
        else:
            lines.append(f"  {a['runner']:<6}{a['workers']} worker(s): {a['session_h_per_wall_h']:>6} "
                         f"({a['session_s']:g} s of session in {a['wall_s']:g} s; load average "
                         f"{a['load_avg_before']} -> {a['load_avg_after']})")
    return lines
