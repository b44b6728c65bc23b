"""Checkpoints: the one reader every weights file goes through, and the UMQ checkpoint format.

:func:`read_checkpoint` is how the app opens *any* weights file (UMQ, face, voice and text encoders): it must
exist, load with ``torch.load(weights_only=True)`` (no pickled code), be a dict, carry a ``format_version`` the
caller reads (one rule: the version is in the caller's list of versions it understands; newer or unknown versions
are refused), hold the required keys, and list its class labels in the app order. Every failure is one
:class:`CheckpointError` naming the file, what it should have been and what to do.

UMQ checkpoint format

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
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from umq.labels import EMOTIONS
from umq.model import UMQ, UMQConfig
from umq.model.norm import NormStats

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REQUIRED = ("format_version", "kind", "model_config", "labels", "norm", "data", "metrics", "state_dict")


class CheckpointError(RuntimeError):
    """A weights file cannot be used: missing, unreadable, not the expected kind of checkpoint, a format version
    this code does not read, other labels, or weights that do not fit the network."""


LEGACY_MODALITY_NAMES = {"face": "video", "voice": "audio", "vision": "video"}
"""Modality names of checkpoints written before the app used one vocabulary (video, audio, text) everywhere;
:func:`load_checkpoint` renames them on load, so older UMQ checkpoints keep working."""


def read_checkpoint(path: str | Path, *, what: str, versions: Collection[int], required: Iterable[str] = (),
                    labels: Sequence[str] | None = EMOTIONS, map_location: str | torch.device = "cpu",
                    how_to_make: str = "") -> dict[str, Any]:
    """Load and validate one weights file (see the module docstring); ``what`` names the kind in messages
    ("face encoder"), ``how_to_make`` says what to run when the file is missing."""
    path = Path(path)
    accepted = sorted(versions)
    expect = f"a {what} checkpoint with format_version {' or '.join(map(str, accepted))}"
    if not path.is_file():
        raise CheckpointError(f"{what} checkpoint {path} does not exist" + (f" ({how_to_make})" if how_to_make else ""))
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a torch file, or contains disallowed objects
        raise CheckpointError(f"{what} checkpoint {path} is unreadable or corrupt ({describe_load_error(e)}); "
                              f"expected {expect}") from e
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"{what} checkpoint {path} has no format_version; expected {expect}")
    if ckpt["format_version"] not in accepted:
        raise CheckpointError(f"{what} checkpoint {path} has format_version {ckpt['format_version']!r}; this code "
                              f"reads format_version {' or '.join(map(str, accepted))}")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"{what} checkpoint {path} lacks keys {missing}; expected {expect}")
    if labels is not None and tuple(ckpt.get("labels", labels)) != tuple(labels):
        raise CheckpointError(f"{what} checkpoint {path} has labels {ckpt.get('labels')}; the app's order is "
                              f"{list(labels)}")
    return ckpt


def weights_mismatch(path: str | Path, what: str, exc: BaseException) -> CheckpointError:
    """The error for a file whose weights do not fit the network its own config describes."""
    return CheckpointError(f"{what} checkpoint {path} does not match the network: {type(exc).__name__}: {exc}")


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
    """Load and validate a UMQ checkpoint (modality names in the app vocabulary); raises :class:`CheckpointError`
    naming the file and the expected version."""
    ckpt = read_checkpoint(path, what="UMQ", versions=(FORMAT_VERSION,), required=REQUIRED, labels=None,
                           map_location=map_location)
    return rename_legacy_modalities(ckpt)


def _rename(name: str) -> str:
    return LEGACY_MODALITY_NAMES.get(name, name)


def rename_legacy_modalities(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The same checkpoint with modality names from :data:`LEGACY_MODALITY_NAMES` replaced (config, norm,
    data description, state-dict keys); a checkpoint already in the app vocabulary comes back unchanged."""
    names = [m["name"] for m in ckpt["model_config"].get("modalities", [])]
    if not any(n in LEGACY_MODALITY_NAMES for n in names):
        return ckpt
    out = dict(ckpt)
    cfg = dict(ckpt["model_config"])
    cfg["modalities"] = [{**m, "name": _rename(m["name"])} for m in cfg["modalities"]]
    out["model_config"] = cfg
    norm = ckpt["norm"]
    out["norm"] = {"mean": {_rename(k): v for k, v in norm["mean"].items()},
                   "std": {_rename(k): v for k, v in norm["std"].items()},
                   "speaker_norm": [_rename(m) for m in norm["speaker_norm"]]}
    data = dict(ckpt["data"])
    if "modalities" in data:
        data["modalities"] = [_rename(m) for m in data["modalities"]]
    for key in ("versions", "encoders"):
        if isinstance(data.get(key), dict):
            data[key] = {_rename(k): v for k, v in data[key].items()}
    out["data"] = data
    out["state_dict"] = {".".join(_rename(p) for p in k.split(".")): v for k, v in ckpt["state_dict"].items()}
    return out


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
