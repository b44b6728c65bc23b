"""Corruptions: feature-level (training + evaluation protocol) and the raw-signal interface.

Feature level (standardised features, torch): missing and noisy are one low-quality problem, so both are
expressed on the same features. *Noise* adds ``N(0, sigma^2)`` at valid time steps; *missing* zeroes a
modality and clears its ``present`` flag (at least one modality per sample is always kept). The *ladder* of
one sample (clean > mild > strong > missing) feeds the estimator's ranking loss.

Raw-signal level (numpy): :class:`SignalCorruption` + a registry, implemented by the perception layer (blur,
darkness, noise at an SNR, clipping, dropped words ...). Only a reference white-noise corruption lives here.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from umq.types import Batch, ModalityInput


# ---------------------------------------------------------------------------------------------- feature level
@dataclass(frozen=True)
class Condition:
    """One evaluation condition. ``kind``: ``complete`` | ``missing`` (``level`` = per-entry missing rate) |
    ``noise`` (``level`` = sigma in standardised units; each modality of a sample is noised with probability
    ``noise_frac``, and at least one is)."""

    kind: str
    level: float = 0.0
    noise_frac: float = 0.5

    @property
    def label(self) -> str:
        return {"complete": "complete", "missing": f"missing {self.level:g}", "noise": f"noise σ={self.level:g}"}[
            self.kind]


def _rand(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=g, device=g.device)


def _ensure_one(selected: Tensor, allowed: Tensor, g: torch.Generator) -> Tensor:
    """Add one random ``allowed`` entry to rows of ``selected`` that have none."""
    empty = ~selected.any(1) & allowed.any(1)
    pick = torch.where(allowed, _rand(tuple(allowed.shape), g), torch.full_like(allowed, -1.0, dtype=torch.float))
    one = torch.nn.functional.one_hot(pick.argmax(1), allowed.shape[1]).bool()
    return selected | (one & empty.unsqueeze(1))


def drop_modalities(present: Tensor, rate: Tensor | float, g: torch.Generator) -> Tensor:
    """Drop each present (sample, modality) with probability ``rate`` (scalar or ``[B]``), keeping >= 1 per sample."""
    rate_t = torch.as_tensor(rate, device=present.device, dtype=torch.float)
    if rate_t.dim() == 1:
        rate_t = rate_t.unsqueeze(1)
    keep = present & (_rand(tuple(present.shape), g) >= rate_t)
    return _ensure_one(keep, present, g)


def set_missing(batch: Batch, new_present: Tensor, flagged: Tensor | None = None) -> Batch:
    """Zero every modality that is present in ``batch`` but not in ``new_present``.

    ``flagged`` (bool ``[B, M]``, default all) says which of those drops the capture layer knows about; unflagged
    drops keep ``present = True`` (an unknown failure the estimator itself must catch).
    """
    dropped = batch.present & ~new_present
    if flagged is None:
        flagged = torch.ones_like(dropped)
    inputs = {}
    for i, m in enumerate(batch.modalities):
        v = batch.inputs[m]
        keep = (~dropped[:, i]).to(v.x.dtype).view(-1, 1, 1)
        inputs[m] = ModalityInput(v.x * keep, v.mask)
    return batch.replace(inputs=inputs, present=batch.present & ~(dropped & flagged))


def add_noise(batch: Batch, sigma: Tensor, g: torch.Generator) -> Batch:
    """Add ``N(0, sigma[b, m]^2)`` to the valid steps of modality ``m`` of sample ``b`` (``sigma``: ``[B, M]``)."""
    inputs = {}
    for i, m in enumerate(batch.modalities):
        v = batch.inputs[m]
        eps = torch.randn(tuple(v.x.shape), generator=g, device=g.device).to(v.x.dtype)
        s = sigma[:, i].to(v.x.dtype).view(-1, 1, 1)
        inputs[m] = ModalityInput(v.x + s * eps * v.mask.unsqueeze(-1), v.mask)
    return batch.replace(inputs=inputs)


def noise_selection(present: Tensor, frac: float | Tensor, g: torch.Generator) -> Tensor:
    """Which present modalities get noise: each with probability ``frac``, at least one per sample."""
    frac_t = torch.as_tensor(frac, device=present.device, dtype=torch.float)
    sel = present & (_rand(tuple(present.shape), g) < frac_t)
    return _ensure_one(sel, present, g)


def apply_condition(batch: Batch, cond: Condition, g: torch.Generator) -> Batch:
    """Corrupt a (clean, standardised) batch according to an evaluation :class:`Condition`."""
    if cond.kind == "complete":
        return batch
    if cond.kind == "missing":
        return set_missing(batch, drop_modalities(batch.present, cond.level, g))
    if cond.kind == "noise":
        sel = noise_selection(batch.present, cond.noise_frac, g)
        return add_noise(batch, sel.float() * cond.level, g)
    raise ValueError(f"unknown condition kind {cond.kind!r}")


def protocol_conditions(missing_rates: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
                        sigmas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0), noise_frac: float = 0.5) -> list[Condition]:
    """The evaluation protocol: complete, each missing rate, each noise level."""
    return ([Condition("complete")] + [Condition("missing", r) for r in missing_rates]
            + [Condition("noise", s, noise_frac) for s in sigmas])


@dataclass
class TrainCorruption:
    """How training batches are corrupted, per sample: complete / missing / noisy / both (mixed), so that one
    model handles every condition. Missing rate ~ U(missing_rate); sigma log-uniform in ``sigma``."""

    p_complete: float = 0.25
    p_missing: float = 0.3
    p_noise: float = 0.3  # the rest (1 - sum) is mixed: missing and noise together
    missing_rate: tuple[float, float] = (0.1, 0.7)
    sigma: tuple[float, float] = (0.3, 5.0)
    noise_frac: float = 0.5
    p_unflagged: float = 0.1  # share of drops the capture layer does not flag (present stays True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainCorruption:
        d = dict(d)
        for k in ("missing_rate", "sigma"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)


def sample_training_corruption(batch: Batch, cfg: TrainCorruption, g: torch.Generator) -> tuple[Batch, Tensor]:
    """Corrupt a clean batch with a random condition per sample; returns ``(batch, corrupted [B, M] bool)``."""
    B, M = batch.present.shape
    u = _rand((B,), g)
    c1, c2, c3 = cfg.p_complete, cfg.p_complete + cfg.p_missing, cfg.p_complete + cfg.p_missing + cfg.p_noise
    do_miss = ((u >= c1) & (u < c2)) | (u >= c3)
    do_noise = u >= c2
    lo, hi = cfg.missing_rate
    rate = (lo + (hi - lo) * _rand((B,), g)) * do_miss
    new_present = drop_modalities(batch.present, rate, g)
    flagged = _rand((B, M), g) >= cfg.p_unflagged
    out = set_missing(batch, new_present, flagged)
    sel = noise_selection(new_present, cfg.noise_frac, g) & do_noise.unsqueeze(1)
    ls = math.log(cfg.sigma[0]) + (math.log(cfg.sigma[1]) - math.log(cfg.sigma[0])) * _rand((B, M), g)
    out = add_noise(out, torch.exp(ls) * sel, g)
    corrupted = (batch.present & ~new_present) | sel
    return out, corrupted


def corruption_ladder(x: ModalityInput, sigmas: tuple[float, ...], g: torch.Generator,
                      p_zeros: float = 0.25) -> ModalityInput:
    """Stack the rungs ``[clean, +sigma_1 noise, ..., bottom]`` of the same samples along the batch axis.

    The bottom rung ("missing") is zeros for a share ``p_zeros`` of the samples and pure noise
    ``N(0, s^2)``, ``s ~ U(0.5, 2)`` for the rest: after standardisation pure noise has the same marginal
    statistics as data (and a random scale makes its energy uninformative), so the estimator has to learn
    structure, not energy, to call it worthless. Zeros are easy (energy) and only need a small share.
    Returns ``ModalityInput`` with ``x [L * B, T, D]``.
    """
    v, mask = x.x, x.mask
    m = mask.unsqueeze(-1).to(v.dtype)
    B = v.shape[0]
    rungs = [v]
    for s in sigmas:
        rungs.append(v + s * torch.randn(tuple(v.shape), generator=g, device=g.device).to(v.dtype) * m)
    scale = 0.5 + 1.5 * _rand((B,), g)
    scale = torch.where(_rand((B,), g) < p_zeros, torch.zeros_like(scale), scale).to(v.dtype).view(-1, 1, 1)
    rungs.append(torch.randn(tuple(v.shape), generator=g, device=g.device).to(v.dtype) * m * scale)
    return ModalityInput(torch.cat(rungs, 0), mask.repeat(len(rungs), 1))


# ------------------------------------------------------------------------------------------------ signal level
class SignalCorruption(ABC):
    """A raw-signal corruption (image, audio samples, transcript) with a severity in [0, 1].

    Subclasses set ``name`` and ``modality`` and implement :meth:`apply`; :func:`register` makes them available
    by name. ``severity = 0`` must be the identity and higher severities must be monotonically worse, so the
    corruptions can build quality ladders from raw signals as :func:`corruption_ladder` does from features.
    """

    name: ClassVar[str]
    modality: ClassVar[str]

    def __init__(self, severity: float) -> None:
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"{type(self).__name__}: severity must be in [0, 1], got {severity}")
        self.severity = float(severity)

    @abstractmethod
    def apply(self, signal: Any, rng: np.random.Generator) -> Any:
        """Return a corrupted copy of ``signal``; never modify it in place."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(severity={self.severity:g})"


SIGNAL_CORRUPTIONS: dict[str, type[SignalCorruption]] = {}


def register(cls: type[SignalCorruption]) -> type[SignalCorruption]:
    """Class decorator adding a corruption to the registry under ``cls.name`` (names must be unique)."""
    if cls.name in SIGNAL_CORRUPTIONS and SIGNAL_CORRUPTIONS[cls.name] is not cls:
        raise ValueError(f"signal corruption {cls.name!r} is already registered")
    SIGNAL_CORRUPTIONS[cls.name] = cls
    return cls


def make_corruption(name: str, severity: float) -> SignalCorruption:
    if name not in SIGNAL_CORRUPTIONS:
        raise KeyError(f"unknown signal corruption {name!r}; available: {sorted(SIGNAL_CORRUPTIONS)}")
    return SIGNAL_CORRUPTIONS[name](severity)


def available_corruptions(modality: str | None = None) -> list[str]:
    return sorted(n for n, c in SIGNAL_CORRUPTIONS.items() if modality is None or c.modality == modality)


@register
class AudioWhiteNoise(SignalCorruption):
    """Reference implementation: white noise at an SNR from 40 dB (severity 0+) down to -5 dB (severity 1)."""

    name = "audio_white_noise"
    modality = "audio"

    def apply(self, signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.severity == 0.0:
            return signal.copy()
        snr_db = 40.0 - 45.0 * self.severity
        power = float(np.mean(np.square(signal, dtype=np.float64))) + 1e-12
        noise = rng.standard_normal(signal.shape) * math.sqrt(power / 10 ** (snr_db / 10))
        return (signal + noise).astype(signal.dtype)
