"""Typed containers that cross module boundaries: model inputs (:class:`Batch`) and outputs (:class:`UMQOutput`).

Keeping them as dataclasses instead of loose dicts/tuples means the data loaders, the corruption module, the
model and the evaluation code agree on shapes by construction, and mistakes fail loudly at the boundary.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ModalityInput:
    """One modality of a batch.

    Attributes:
        x: float features ``[B, T, D]`` (``T = 1`` for clip-level vectors), already standardised.
        mask: bool ``[B, T]``; ``True`` marks valid time steps. Padding must never change a model output.

    Non-finite values (NaN, +-inf from a broken decoder, a division by a zero std, a corrupt feature file) and
    absurd magnitudes are sanitised on construction: NaN -> 0 (the standardised mean), +-inf and anything beyond
    +-:data:`FEATURE_LIMIT` -> +-:data:`FEATURE_LIMIT`. One element-wise op, no host sync; finite in-range values
    are unchanged bit for bit. Without it a single NaN feature made every output probability NaN.
    """

    x: Tensor
    mask: Tensor

    def __post_init__(self) -> None:
        if self.x.dim() != 3 or self.mask.dim() != 2 or self.x.shape[:2] != self.mask.shape:
            raise ValueError(f"ModalityInput expects x [B,T,D] and mask [B,T]; got {tuple(self.x.shape)}, "
                             f"{tuple(self.mask.shape)}")
        if self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool, got {self.mask.dtype}")
        if self.x.is_floating_point():
            self.x = sanitize_features(self.x)


FEATURE_LIMIT = 1e3
"""Standardised features beyond +-1000 standard deviations are clipped (nothing real gets near; x^2 stays finite)."""


def sanitize_features(x: Tensor) -> Tensor:
    """NaN -> 0, +-inf and values beyond +-:data:`FEATURE_LIMIT` -> +-:data:`FEATURE_LIMIT` (a new tensor)."""
    return torch.nan_to_num(x, nan=0.0, posinf=FEATURE_LIMIT, neginf=-FEATURE_LIMIT).clamp_(-FEATURE_LIMIT,
                                                                                           FEATURE_LIMIT)


@dataclass
class Batch:
    """A batch over named modalities.

    Attributes:
        modalities: the modality order; column ``m`` of ``present`` and of every ``[B, M]`` output is
            ``modalities[m]``.
        inputs: modality name -> :class:`ModalityInput`.
        present: bool ``[B, M]``; ``False`` when the capture layer knows the modality is missing for that sample.
        y: class indices ``[B]`` (classification) or ``None``.
        y_reg: float targets ``[B]`` (regression) or ``None``.
    """

    modalities: tuple[str, ...]
    inputs: dict[str, ModalityInput]
    present: Tensor
    y: Tensor | None = None
    y_reg: Tensor | None = None

    def __post_init__(self) -> None:
        if set(self.inputs) != set(self.modalities):
            raise ValueError(f"inputs {sorted(self.inputs)} do not match modalities {self.modalities}")
        if self.present.shape != (self.size, len(self.modalities)) or self.present.dtype != torch.bool:
            raise ValueError(f"present must be bool [B, M]=({self.size}, {len(self.modalities)}), "
                             f"got {tuple(self.present.shape)} {self.present.dtype}")

    @property
    def size(self) -> int:
        return int(next(iter(self.inputs.values())).x.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            modalities=self.modalities,
            inputs={m: ModalityInput(v.x.to(device), v.mask.to(device)) for m, v in self.inputs.items()},
            present=self.present.to(device),
            y=None if self.y is None else self.y.to(device),
            y_reg=None if self.y_reg is None else self.y_reg.to(device),
        )

    def index(self, idx: Tensor, trim: bool = False) -> Batch:
        """Rows ``idx`` of every tensor (a sub-batch).

        ``trim=True`` drops time padding no row of the sub-batch needs; it costs one host sync, so the training
        loop leaves it off (padding never changes outputs) and evaluation turns it on.
        """
        inputs = {}
        for m, v in self.inputs.items():
            x, mask = v.x[idx], v.mask[idx]
            if trim and mask.shape[1] > 1:
                t_max = max(int(mask.sum(1).max().item()), 1)
                x, mask = x[:, :t_max], mask[:, :t_max]
            inputs[m] = ModalityInput(x, mask)
        return Batch(self.modalities, inputs, self.present[idx],
                     None if self.y is None else self.y[idx], None if self.y_reg is None else self.y_reg[idx])

    def replace(self, inputs: dict[str, ModalityInput] | None = None, present: Tensor | None = None) -> Batch:
        return Batch(self.modalities, dict(self.inputs) if inputs is None else inputs,
                     self.present if present is None else present, self.y, self.y_reg)


@dataclass
class UMQOutput:
    """What :meth:`umq.model.UMQ.forward` returns.

    Attributes:
        logits: ``[B, C]`` class logits (``None`` for a regression-only model).
        probs: ``softmax(logits)``.
        regression: ``[B]`` regression output (``None`` unless the config enables it).
        q: ``[B, M]`` estimated quality per modality in [0, 1] (0 = missing/pure noise, ~1 = reliable).
        routing: ``[B, K]`` expert weights of the MoE (``None`` for fusions without experts).
        unimodal_logits: modality -> ``[B, C]`` (or ``[B, 1]`` for regression) from the auxiliary unimodal heads.
        aux: named auxiliary loss terms computed during the forward pass (scalars), e.g. ``similarity``,
            ``load_balance``, ``consistency``; empty in eval mode where they are not needed.
        h: modality -> ``[B, d]`` encoder representations; ``h_hat``: reconstructions; ``h_enh``: blended.
        q_logit: raw estimator logits (``None`` without an estimator).
    """

    logits: Tensor | None
    probs: Tensor | None
    regression: Tensor | None
    q: Tensor
    routing: Tensor | None
    unimodal_logits: dict[str, Tensor]
    aux: dict[str, Tensor] = field(default_factory=dict)
    h: dict[str, Tensor] = field(default_factory=dict)
    h_hat: dict[str, Tensor] = field(default_factory=dict)
    h_enh: dict[str, Tensor] = field(default_factory=dict)
    q_logit: Tensor | None = None  # raw estimator logits [B, M] before known-missing forcing (training losses)
