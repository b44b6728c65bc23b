"""Stage 1: per-modality quality estimator and its rank-guided training losses.

``q_m = sigmoid(MLP_m(h_m))``. Supervision follows the paper's recipe: explicit anchors only at the two ends
(pure noise / missing -> 0 by BCE; representations whose unimodal predictive loss is low -> a hinge pushing
``q >= anchor_high``), and in between only *pairwise ranking* constraints, because there is no ground-truth
quality value for "somewhat noisy" data, only an order:

* along a corruption ladder of the same sample (clean > mild noise > strong noise > missing), and
* across samples, by their unimodal loss (lower loss -> higher q), only for pairs whose losses differ by more
  than ``loss_gap`` (closer pairs are within label noise and would only inject noise into the ranking).

The hinge terms can act on probabilities ``q`` or on logits (``rank_space``, default ``logit``). In probability
space two things went wrong in practice: (1) the BCE anchor drives everything toward 0 before the estimator
can discriminate, after which ``sigmoid'`` ~ 0 and the ranking hinges lose their gradient (everything
collapsed to q ~ 0.001); (2) "clean >= mild + margin" and "low-loss mild rung >= 0.95" cannot both hold
when ``0.95 + margin > 1``. In logit space both vanish: the order is the same, gradients do not saturate,
and the constraints are always feasible.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def input_energy(x: Tensor, mask: Tensor) -> Tensor:
    """``[B, 1]`` log mean square of the valid (standardised) input values: ~0 for clean data, larger with
    additive noise, very negative for zeroed inputs. Pure N(0, 1) noise also gives ~0, so this cue alone
    cannot satisfy the pure-noise anchor: the estimator still has to learn structure from ``h``."""
    m = mask.unsqueeze(-1).to(x.dtype)
    ms = (x.pow(2) * m).sum((1, 2)) / (m.sum((1, 2)) * x.shape[-1]).clamp_min(1.0)
    return torch.log(ms + 1e-3).unsqueeze(-1)


class QualityEstimator(nn.Module):
    """One small MLP per modality mapping ``h_m`` (and optionally the input energy) to a quality logit."""

    def __init__(self, names: tuple[str, ...], d: int, hidden: int = 32, detach: bool = False,
                 use_stats: bool = True) -> None:
        super().__init__()
        self.detach = detach
        self.use_stats = use_stats
        d_in = d + (1 if use_stats else 0)
        self.mlps = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, 1)) for m in names})
        for mlp in self.mlps.values():  # start optimistic (q ~ 0.73): inputs are clean most of the time
            nn.init.constant_(mlp[-1].bias, 1.0)

    def logit(self, name: str, h: Tensor, stats: Tensor | None = None) -> Tensor:
        """Quality logit ``[B]`` for modality ``name``; ``stats`` = :func:`input_energy` when ``use_stats``."""
        z = h.detach() if self.detach else h
        if self.use_stats:
            if stats is None:
                raise ValueError("this estimator reads input statistics: pass stats=input_energy(x, mask)")
            z = torch.cat([z, stats], -1)
        return self.mlps[name](z).squeeze(-1)


def ladder_rank_loss(q: Tensor, margin: float, valid: Tensor | None = None) -> Tensor:
    """Hinge loss on adjacent rungs of a corruption ladder.

    Args:
        q: ``[L, B]`` qualities, rung 0 = cleanest, rung ``L-1`` = most corrupted.
        margin: required gap ``q[l] - q[l+1] >= margin``.
        valid: optional bool ``[B]`` selecting samples that take part.

    Returns:
        Mean of ``relu(margin - (q[l] - q[l+1]))``; exactly 0 when every adjacent gap is at least ``margin``.
    """
    viol = F.relu(margin - (q[:-1] - q[1:]))  # [L-1, B]
    if valid is not None:
        w = valid.to(viol.dtype).unsqueeze(0).expand_as(viol)
        return (viol * w).sum() / w.sum().clamp_min(1.0)
    return viol.mean()


def cross_rank_loss(q: Tensor, loss: Tensor, margin: float, gap: float) -> Tensor:
    """Pairwise ranking across samples: if ``loss_i + gap < loss_j`` then want ``q_i >= q_j + margin``.

    Args:
        q: ``[N]`` qualities; loss: ``[N]`` unimodal losses (treated as constants).
    Returns:
        Mean hinge over the constrained pairs (0 if there are none).
    """
    loss = loss.detach()
    better = (loss.unsqueeze(1) + gap) < loss.unsqueeze(0)  # [i, j]: i clearly better than j
    viol = F.relu(margin - (q.unsqueeze(1) - q.unsqueeze(0)))
    w = better.to(q.dtype)
    return (viol * w).sum() / w.sum().clamp_min(1.0)


def anchor_losses(q_logit_low: Tensor, q_high_candidates: Tensor, loss_candidates: Tensor,
                  threshold: float, target_high: float) -> tuple[Tensor, Tensor]:
    """The two explicit anchors.

    Args:
        q_logit_low: logits of pure-noise / missing inputs; BCE toward 0.
        q_high_candidates: scores (q, or logits with ``target_high`` given as a logit) of any representations;
            those whose unimodal loss is below ``threshold`` get ``relu(target_high - score)``.
        loss_candidates: their unimodal losses.
    Returns:
        ``(low_anchor, high_anchor)`` scalar losses.
    """
    low = F.binary_cross_entropy_with_logits(q_logit_low, torch.zeros_like(q_logit_low))
    good = (loss_candidates.detach() < threshold).to(q_high_candidates.dtype)
    high = (F.relu(target_high - q_high_candidates) * good).sum() / good.sum().clamp_min(1.0)
    return low, high
