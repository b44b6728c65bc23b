"""Benchmark settings, the targets it reports against, and where generated sessions are cached."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..paths import DEMO_SESSION

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("UMQ_BENCH_CACHE", Path.home() / ".cache" / "umq" / "bench"))
GENERATOR_VERSION = 1  # bump when the generated session's content changes (invalidates the cache)

# targets on the 2-core CPU machine at default settings (issue 6)
TARGETS = {
    "end_to_end_p95_ms": 150.0,
    "umq_forward_b1_ms": 3.0,
    "replay_rtf": 8.0,
    "rss_growth_mb_per_hour": 50.0,
    "dropped_audio_samples": 0,
}


@dataclass
class BenchConfig:
    """Sizes of one benchmark run (``quick()`` for tests/CI, defaults for the full run)."""

    device: str | None = None
    live_s: float = 60.0
    live_size: tuple[int, int] = (640, 480)
    live_fps: float = 30.0
    long_s: float = 600.0
    long_size: tuple[int, int] = (640, 480)
    long_fps: float = 30.0
    soak_s: float = 3600.0
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    forward_iters: int = 200
    naive_windows: int | None = None  # None: the whole demo session
    ab_windows: int = 87  # demo windows per arm of the parallel-face and silero-vad A/Bs
    ab_replay_s: float = 60.0  # generated session replayed with and without deferred frame decoding
    ab_live_s: float = 20.0  # live capture with grace-only window cuts (the other arm is the live run)
    parallel_face: bool = True  # the engine's Analyzer(parallel=...) (default on, chosen by measurement)
    batch_inputs: int = 4  # demo-session copies per arm of the batch-throughput section
    batch: bool = True  # measure batch throughput (local and Ray, 1 and 2 workers)
    demo_path: Path = DEMO_SESSION
    cache_dir: Path = CACHE_DIR
    quick: bool = False

    @classmethod
    def quick_config(cls, **kw) -> BenchConfig:
        base = dict(live_s=10.0, long_s=20.0, soak_s=180.0, forward_iters=50, naive_windows=20, ab_windows=30,
                    ab_replay_s=20.0, ab_live_s=6.0, batch_inputs=2, batch=False,
                    quick=True)
        base.update(kw)
        return cls(**base)
