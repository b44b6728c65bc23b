"""Model configuration: one dataclass tree, built from a TOML table and stored verbatim in checkpoints.

Every choice the UMQ paper leaves open is a field here (see docs/model.md for the reason behind each default),
and the baselines/ablations are the same model with a few fields switched (see :mod:`umq.model.baselines`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class ModalitySpec:
    """A named input modality: feature size ``dim`` and optionally an encoder kind overriding the default."""

    name: str
    dim: int
    encoder: str | None = None


@dataclass
class LossConfig:
    """Loss weights and the quality-ranking hyperparameters (margin, loss threshold, anchor target)."""

    label_smoothing: float = 0.1
    w_unimodal: float = 0.5  # auxiliary unimodal heads (they define "unimodal predictive loss")
    w_quality: float = 1.0  # stage 1: anchors + ladder ranking + cross-sample ranking
    w_recon: float = 1.0  # stage 2: reconstruction of the clean representation
    w_sim: float = 0.1  # stage 2: decoupling similarity constraints
    w_balance: float = 0.01  # stage 3: load balancing
    w_consistency: float = 0.1  # stage 3: similar quality -> similar routing
    rank_space: str = "logit"  # "logit" | "prob": where the ranking/anchor hinges act (see quality.py)
    ladder_margin: float = 1.0  # min gap between adjacent ladder rungs (clean > mild > strong > missing)
    cross_margin: float = 0.5  # min gap between two samples whose unimodal losses differ by > loss_gap
    loss_threshold: float = 0.5  # unimodal loss below this -> hinge q >= anchor_high
    loss_gap: float = 0.3  # cross-sample pairs are constrained only when their losses differ by more than this
    anchor_high: float = 0.95
    high_anchor_clean_only: bool = True  # high anchor only on uncorrupted representations (see losses.py)
    ladder_sigmas: tuple[float, ...] = (0.7, 2.5)  # mild and strong Gaussian noise rungs (standardised units)
    max_rank_items: int = 256  # cap on items entering the O(n^2) cross-sample ranking
    consistency_tau: float = 0.1  # kernel width of the routing-consistency regulariser (squared q distance)
    # usefulness target: BCE of the quality logit toward the measured relative accuracy of the modality's encoder
    # on inputs of the same version (1 = as good as clean, 0 = chance); needs targets from the caller
    w_q_target: float = 0.0
    # degraded >= removed: hinge on the task loss of a sample with corrupted modalities above the loss of its
    # "removed" twin (the same sample with those modalities flagged missing); needs the twin from the caller
    w_twin: float = 0.0


@dataclass
class UMQConfig:
    """Architecture and stage switches. Defaults are the full UMQ model."""

    modalities: list[ModalitySpec]
    task: str = "classification"  # or "regression" (MMSA sentiment in [-3, 3])
    num_classes: int = 7
    d: int = 64
    encoder: str = "mlp"  # "mlp" | "conv" | "transformer" (default for modalities without an override)
    enc_layers: int = 1
    kernel: int = 5
    dropout: float = 0.3
    input_dropout: float = 0.1
    # stage 1: quality estimator
    use_estimator: bool = True  # False: q = present flag (ablation "w/o estimator")
    known_missing: bool = True  # force q = 0 where the capture layer flags a modality as missing
    quality_detach: bool = False  # estimator reads h without sending gradient into the encoder
    quality_hidden: int = 32
    quality_stats: bool = True  # estimator also reads the log input energy (see quality.input_energy)
    # stage 2: quality enhancer
    use_enhancer: bool = True  # False: h_enh = q * h (blend toward zero, ablation "w/o enhancer")
    d_s: int = 32  # size of the sample-specific / modality-specific codes
    baseline: str = "ema"  # "ema" (EMA of high-quality c_m) | "learned"
    baseline_momentum: float = 0.98
    donor_weighting: str = "normalized"  # "normalized" (q_n / sum q) | "softmax" (softmax(q_n / donor_temp))
    donor_temp: float = 0.2
    blend_grad: bool = False  # let the task loss move q through the blend (False keeps q a pure quality score)
    s_align: str = "infonce"  # "infonce" | "cosine" alignment of sample-specific codes across modalities
    # stage 3: fusion
    fusion: str = "moe"  # "moe" | "concat" (early-fusion baseline) | "late" (late-fusion baseline)
    router_input: str = "q+feat"  # "q+feat" | "q" | "feat" (quality-unaware)
    experts: int = 4
    expert_hidden: int = 128
    top_k: int = 0  # 0 = soft gating over all experts
    unimodal_expert: bool = False  # extra expert = quality-weighted mean of unimodal logits (see moe.py)
    # fused logits = quality-weighted mean of the unimodal logits + the routed experts' correction (zero at init):
    # the mixture starts as quality-weighted late fusion and learns only what it adds to it
    fusion_residual: bool = False
    router_temp: float = 1.0
    loss: LossConfig = field(default_factory=LossConfig)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.modalities)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss"]["ladder_sigmas"] = list(self.loss.ladder_sigmas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UMQConfig:
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        mods = [m if isinstance(m, ModalitySpec) else ModalitySpec(**m) for m in d.pop("modalities")]
        loss = d.pop("loss", {}) or {}
        if not isinstance(loss, LossConfig):
            lknown = {f.name for f in fields(LossConfig)}
            if set(loss) - lknown:
                raise ValueError(f"unknown loss config keys: {sorted(set(loss) - lknown)}")
            loss = dict(loss)
            if "ladder_sigmas" in loss:
                loss["ladder_sigmas"] = tuple(float(s) for s in loss["ladder_sigmas"])
            loss = LossConfig(**loss)
        cfg = cls(modalities=mods, loss=loss, **d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        choices = {
            "task": ("classification", "regression"), "encoder": ("mlp", "conv", "transformer"),
            "baseline": ("ema", "learned"), "donor_weighting": ("normalized", "softmax"),
            "s_align": ("infonce", "cosine"), "fusion": ("moe", "concat", "late"),
            "router_input": ("q+feat", "q", "feat"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key} must be one of {allowed}, got {getattr(self, key)!r}")
        for s in self.modalities:
            if s.encoder is not None and s.encoder not in choices["encoder"]:
                raise ValueError(f"encoder of {s.name} must be one of {choices['encoder']}, got {s.encoder!r}")
        if len(set(self.names)) != len(self.names) or not self.modalities:
            raise ValueError(f"modality names must be unique and non-empty: {self.names}")
        if self.loss.rank_space not in ("logit", "prob"):
            raise ValueError(f"model.loss.rank_space must be 'logit' or 'prob', got {self.loss.rank_space!r}")
        if not 0 < self.loss.anchor_high < 1:
            raise ValueError(f"model.loss.anchor_high must be in (0, 1), got {self.loss.anchor_high}")
        if self.fusion_residual and (self.fusion != "moe" or self.unimodal_expert):
            raise ValueError("fusion_residual needs fusion='moe' and replaces unimodal_expert (set it False)")
        if not 0 <= self.top_k <= self.experts + int(self.unimodal_expert):
            raise ValueError(f"top_k must be in [0, experts], got {self.top_k}")
