"""Device choice: CUDA when available (parameters and buffers live there), CPU otherwise."""
from __future__ import annotations

import os

import numpy as np
import torch


class DeviceError(ValueError):
    """A requested device that does not exist here (names it, and what to use instead)."""


def default_device() -> torch.device:
    """CUDA when this machine has it, else the CPU; no side effects (library code that is handed no device uses
    this; a command line that names one goes through :func:`pick_device`)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` ("cpu", "cuda", "cuda:1") wins; else CUDA if available.

    Raises:
        DeviceError: ``requested`` is not a device name, or names a CUDA device this machine does not have (a
            GPU run that silently fell back to the CPU would report the wrong numbers).

    On CPU the intra-op thread count defaults to 1 (``$UMQ_THREADS`` overrides, capped at 2): the models are
    tiny, and on the shared 2-core host two OpenMP threads made a training epoch 20x slower (1.0 s -> 21 s)
    by spinning against the other jobs.
    """
    try:
        dev = torch.device(requested) if requested else default_device()
    except RuntimeError:
        raise DeviceError(f"device {requested!r} is not a device name: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {requested!r}: CUDA is not available on this machine (no NVIDIA GPU or "
                              f"driver, or torch {torch.__version__} built without CUDA); use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {requested!r}: this machine has {count} CUDA device(s), "
                              f"cuda:0..cuda:{count - 1}")
    elif dev.type != "cpu":
        raise DeviceError(f"device {requested!r} is not supported: use cpu, cuda or cuda:N")
    if dev.type == "cpu":
        torch.set_num_threads(max(1, min(int(os.environ.get("UMQ_THREADS", "1")), 2)))
    return dev


def to_device(x: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Host data -> ``device`` without a blocking copy where that is possible.

    On CUDA the data is staged in page-locked memory (PyTorch's caching host allocator: the pinned blocks are
    reused, and not before the copy that used them has finished) and copied with ``non_blocking=True``, so the
    caller's thread goes on while the transfer runs. ``non_blocking`` from ordinary pageable memory, as NumPy
    arrays are, would be a synchronous staged copy. On CPU the array is shared, not copied.
    """
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    device = torch.device(device)
    if device.type != "cuda":
        return t.to(device)
    if t.device.type == "cpu":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def to_host(t: torch.Tensor) -> np.ndarray:
    """Device tensor -> NumPy: on CUDA through a pinned buffer, waiting only for this copy (an event), not for
    the whole device."""
    if t.device.type != "cuda":
        return t.detach().cpu().numpy()
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t.detach(), non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    done.synchronize()
    return host.numpy()
