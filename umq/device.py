"""Device choice: CUDA when available (parameters and buffers live there), CPU otherwise."""
from __future__ import annotations

import os

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` ("cpu", "cuda", "cuda:1") wins; else CUDA if available.

    On CPU the intra-op thread count defaults to 1 (``$UMQ_THREADS`` overrides, capped at 2): the models are
    tiny, and on the shared 2-core host two OpenMP threads made a training epoch 20x slower (1.0 s -> 21 s)
    by spinning against the other jobs.
    """
    dev = torch.device(requested) if requested else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cpu":
        torch.set_num_threads(max(1, min(int(os.environ.get("UMQ_THREADS", "1")), 2)))
    return dev
