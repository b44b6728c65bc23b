"""Checkpoint format: a dict of plain Python types and tensors, loadable with ``weights_only=True``.

Keys (format_version 1)::

    format_version: int            # FORMAT_VERSION
    kind: str                      # "umq" or the baseline/ablation variant name
    model_config: dict             # UMQConfig.to_dict()
    labels: list[str]              # class names in head order (umq.labels.EMOTIONS)
    norm: {"mean": {mod: Tensor}, "std": {mod: Tensor}, "speaker_norm": [mod, ...]}
    data: dict                     # how features were made (kind, audio_view, audio params, ...)
    metrics: dict                  # training / selection metrics (plain floats)
    state_dict: dict[str, Tensor]
    train_state: dict | absent     # only in the resumable "last" checkpoint

No pickled classes are stored, so loading never runs code from the file.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from .data import NormStats
from .model import UMQ, UMQConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REQUIRED = ("format_version", "kind", "model_config", "labels", "norm", "data", "metrics", "state_dict")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used (unreadable, not a UMQ checkpoint, or a different format version)."""


def describe_load_error(exc: BaseException) -> str:
    """One line for why ``torch.load(weights_only=True)`` refused a file, without torch's advice to retry with
    ``weights_only=False`` (which would run whatever code the file carries)."""
    text = str(exc)
    if "Weights only load failed" in text:
        detail = next((ln.strip() for ln in text.splitlines()
                       if "GLOBAL" in ln or "Unsupported" in ln or "unsupported" in ln), "")
        return ("it holds objects other than tensors and plain data, so it may carry code, and was refused"
                + (f" ({detail.rstrip('.')})" if detail else ""))
    first = " ".join(text.split())
    cut = first.find(". ")
    return f"{type(exc).__name__}: {first[:cut] if cut > 0 else first}"


def save_checkpoint(path: str | Path, *, kind: str, model: UMQ, labels: list[str], norm: NormStats | None, data: dict,
                    metrics: dict, train_state: dict | None = None) -> Path:
    """Write atomically (temp file + rename) so an interrupted run never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "kind": kind, "model_config": model.config.to_dict(),
        "labels": list(labels),
        "norm": norm.to_dict() if norm is not None else {"mean": {}, "std": {}, "speaker_norm": []},
        "data": data, "metrics": metrics,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if train_state is not None:
        ckpt["train_state"] = train_state
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(ckpt, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate; raises :class:`CheckpointError` naming the file and the expected version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a torch file, or contains disallowed objects
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({describe_load_error(e)}); "
                              f"expected a UMQ checkpoint with format_version {FORMAT_VERSION}") from e
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"checkpoint {path} has no format_version; expected a UMQ checkpoint with "
                              f"format_version {FORMAT_VERSION}")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format_version {ckpt['format_version']!r}; this code reads "
                              f"format_version {FORMAT_VERSION}")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} (format_version {FORMAT_VERSION}) lacks keys {missing}")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu") -> tuple[UMQ, NormStats]:
    """Rebuild the model (in eval mode, on ``device``) and its feature normalisation."""
    model = UMQ(UMQConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), NormStats.from_dict(ckpt["norm"])


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[UMQ, NormStats, dict[str, Any]]:
    """Convenience: ``(model, norm, checkpoint dict)`` from a file."""
    ckpt = load_checkpoint(path, map_location=device)
    model, norm = model_from_checkpoint(ckpt, device)
    return model, norm, ckpt
