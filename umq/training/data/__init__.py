"""Data sets as in-memory feature tensors (:class:`FeatureSet`) + normalisation shared by training/evaluation.

The data sets here are small (RAVDESS pair: 1200 clips), so a whole split lives on the device as padded
tensors and batches are index slices: no DataLoader workers competing for the two CPU cores.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from umq import paths
from umq.model.norm import NormStats
from umq.types import Batch, ModalityInput

log = logging.getLogger(__name__)

REPO_ROOT = paths.REPO_ROOT


def cache_dir() -> Path:
    """Feature caches live outside the repository: ``$UMQ_CACHE`` or ``~/.cache/umq``."""
    d = Path(os.environ.get("UMQ_CACHE", Path.home() / ".cache" / "umq"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def default_data_root() -> Path | None:
    """``$UMQ_DATA`` if set, else ``../shared/data`` relative to the repo root when it exists."""
    env = os.environ.get("UMQ_DATA")
    if env:
        return Path(env)
    p = REPO_ROOT.parent / "shared" / "data"
    return p if p.exists() else None


def data_root_or_explain(arg: str | None) -> Path | None:
    """The data root a command was given (``--data``), else :func:`default_data_root`; None, with the reason on
    stderr, when there is none (the caller exits with status 2)."""
    root = Path(arg) if arg else default_data_root()
    if root is None or not root.is_dir():
        print(f"no data{f' at {root}' if root else ''}: pass --data DIR (the ../shared/data layout) or set UMQ_DATA",
              file=sys.stderr)
        return None
    return root


def parse_ids(spec: str | list[int] | None) -> list[int] | None:
    """``"1-12,15"`` -> ``[1..12, 15]``; ``None``/``""``/``"all"`` -> ``None`` (everything present)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return None
    if isinstance(spec, list):
        return [int(a) for a in spec]
    out: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


@dataclass
class FeatureSet:
    """Padded features of ``N`` samples.

    Attributes:
        x / mask: modality -> ``[N, T, D]`` float32 / ``[N, T]`` bool.
        present: ``[N, M]`` bool, data-level availability (e.g. no face found).
        groups: ``[N]`` int speaker/actor id (speaker normalisation and group splits).
    """

    modalities: tuple[str, ...]
    x: dict[str, np.ndarray]
    mask: dict[str, np.ndarray]
    present: np.ndarray
    groups: np.ndarray
    ids: list[str]
    y: np.ndarray | None = None
    y_reg: np.ndarray | None = None
    feature_names: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def dims(self) -> dict[str, int]:
        return {m: int(self.x[m].shape[2]) for m in self.modalities}

    def subset(self, idx: np.ndarray) -> FeatureSet:
        idx = np.asarray(idx)
        return FeatureSet(self.modalities, {m: v[idx] for m, v in self.x.items()},
                          {m: v[idx] for m, v in self.mask.items()}, self.present[idx], self.groups[idx],
                          [self.ids[i] for i in idx], None if self.y is None else self.y[idx],
                          None if self.y_reg is None else self.y_reg[idx], self.feature_names)

    def select_groups(self, groups: list[int] | None) -> FeatureSet:
        if groups is None:
            return self
        return self.subset(np.flatnonzero(np.isin(self.groups, groups)))

    def to_batch(self, device: torch.device | str = "cpu") -> Batch:
        return Batch(self.modalities,
                     {m: ModalityInput(torch.from_numpy(self.x[m]).float(), torch.from_numpy(self.mask[m]))
                      for m in self.modalities},
                     torch.from_numpy(self.present),
                     None if self.y is None else torch.from_numpy(self.y).long(),
                     None if self.y_reg is None else torch.from_numpy(self.y_reg).float()).to(device)




def _masked_moments(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = mask[..., None].astype(np.float64)
    n = max(w.sum(), 1.0)
    mean = (x * w).sum((0, 1)) / n
    var = (((x - mean) ** 2) * w).sum((0, 1)) / n
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def speaker_normalise(fs: FeatureSet, modalities: list[str], eps: float = 1e-3) -> FeatureSet:
    """Standardise ``modalities`` per speaker with that speaker's own (present, valid) samples.

    Transductive per speaker: evaluation on a new speaker uses statistics of all of that speaker's clips. A live
    app does the same with a running per-speaker normaliser (see docs/model.md).
    """
    x = {m: v.copy() for m, v in fs.x.items()}
    for m in modalities:
        i = fs.modalities.index(m)
        for gid in np.unique(fs.groups):
            rows = np.flatnonzero((fs.groups == gid) & fs.present[:, i])
            if len(rows) == 0:
                continue
            mean, std = _masked_moments(fs.x[m][rows], fs.mask[m][rows])
            x[m][rows] = (fs.x[m][rows] - mean) / (std + eps) * fs.mask[m][rows][..., None]
    return FeatureSet(fs.modalities, x, fs.mask, fs.present, fs.groups, fs.ids, fs.y, fs.y_reg, fs.feature_names)


def fit_norm(fs: FeatureSet, speaker_norm: list[str]) -> NormStats:
    """Fit global statistics on (speaker-normalised, when configured) training features."""
    src = speaker_normalise(fs, speaker_norm) if speaker_norm else fs
    mean, std = {}, {}
    for i, m in enumerate(fs.modalities):
        rows = fs.present[:, i]
        mean[m], std[m] = _masked_moments(src.x[m][rows], src.mask[m][rows])
        std[m] = np.maximum(std[m], 1e-3)
    return NormStats(mean, std, list(speaker_norm))


def apply_norm(fs: FeatureSet, stats: NormStats) -> FeatureSet:
    """Speaker normalisation (if configured) then global standardisation; padding and absent inputs stay 0."""
    src = speaker_normalise(fs, stats.speaker_norm) if stats.speaker_norm else fs
    x = {}
    for i, m in enumerate(fs.modalities):
        keep = (fs.mask[m] & fs.present[:, i:i + 1])[..., None]
        x[m] = np.where(keep, (src.x[m] - stats.mean[m]) / stats.std[m], 0.0).astype(np.float32)
    return FeatureSet(fs.modalities, x, fs.mask, fs.present, fs.groups, fs.ids, fs.y, fs.y_reg, fs.feature_names)


def pad_sequences(seqs: list[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """List of ``[T_i, D]`` -> ``([N, T_max, D], [N, T_max])``; an empty sequence gets one masked-out step."""
    t_max = max([len(s) for s in seqs] + [1])
    x = np.zeros((len(seqs), t_max, dim), np.float32)
    mask = np.zeros((len(seqs), t_max), bool)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
        mask[i, :len(s)] = True
    return x, mask
