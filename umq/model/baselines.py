"""Baselines and ablations as presets of :class:`UMQConfig`.

They are the same model class with stages switched off, so they share the encoders, unimodal heads, data
pipeline, training corruptions, optimiser and early stopping with UMQ: differences in the results come from the
fusion design only. Each baseline gets the ``present`` flags too (zero-filling of known-missing inputs;
late fusion averages over present modalities only), so none is handicapped by information UMQ has.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from umq.model.config import UMQConfig


@dataclass(frozen=True)
class Variant:
    name: str
    title: str
    overrides: dict[str, Any]
    description: str


_NO_Q = {"use_estimator": False, "use_enhancer": False}
VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("umq", "UMQ (full)", {}, "estimator + enhancer + quality-aware MoE"),
    Variant("early_fusion", "Early fusion", {"fusion": "concat", **_NO_Q},
            "concat of zero-filled modality vectors + present flags -> MLP"),
    Variant("late_fusion", "Late fusion", {"fusion": "late", **_NO_Q},
            "mean of unimodal logits over present modalities"),
    Variant("moe_unaware", "MoE (quality-unaware)", {"fusion": "moe", "router_input": "feat", **_NO_Q},
            "same experts; router sees pooled features only"),
    Variant("umq_no_estimator", "UMQ w/o estimator", {"use_estimator": False},
            "q = present flag; noisy inputs count as full quality"),
    Variant("umq_no_enhancer", "UMQ w/o enhancer", {"use_enhancer": False},
            "h_enh = q * h (blend toward zero instead of the reconstruction)"),
    Variant("umq_no_qrouting", "UMQ w/o quality routing", {"router_input": "feat"},
            "estimator + enhancer, router sees pooled features only"),
]}


def variant_config(base: UMQConfig, name: str) -> UMQConfig:
    """``base`` with the overrides of variant ``name`` applied (a new, validated config)."""
    if name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; known: {sorted(VARIANTS)}")
    cfg = copy.deepcopy(base)
    for k, v in VARIANTS[name].overrides.items():
        setattr(cfg, k, v)
    cfg.validate()
    return cfg
