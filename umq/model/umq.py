"""The UMQ model: encoders -> (1) quality estimator -> (2) quality enhancer -> (3) quality-aware MoE -> heads.

``UMQ(config)`` is also every baseline and ablation (see :mod:`umq.model.baselines`): the stages are switched by
config fields, so all variants share encoders, heads, data pipeline and training corruptions.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from umq.model.config import UMQConfig
from umq.model.encoders import ModalityEncoder
from umq.model.enhancer import QualityEnhancer
from umq.model.moe import QualityMoE
from umq.model.quality import QualityEstimator, input_energy
from umq.types import ModalityInput, UMQOutput


class UMQ(nn.Module):
    """Unified multimodal quality model over ``config.modalities``.

    ``forward(inputs, present)`` takes ``inputs``: modality -> :class:`ModalityInput` (``x [B,T,D]``, ``mask [B,T]``)
    and ``present``: bool ``[B, M]`` in ``config.names`` order, and returns a :class:`UMQOutput`.
    """

    def __init__(self, config: UMQConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        cfg = config
        self.names = cfg.names
        self.out_dim = 1 if cfg.task == "regression" else cfg.num_classes
        self.encoders = nn.ModuleDict({
            s.name: ModalityEncoder(s.dim, cfg.d, s.encoder or cfg.encoder, cfg.enc_layers, cfg.kernel, cfg.dropout,
                                    cfg.input_dropout) for s in cfg.modalities})
        self.unimodal = nn.ModuleDict({
            m: nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.d, self.out_dim)) for m in self.names})
        self.estimator = (QualityEstimator(self.names, cfg.d, cfg.quality_hidden, cfg.quality_detach, cfg.quality_stats)
                          if cfg.use_estimator else None)
        self.enhancer = (QualityEnhancer(self.names, cfg.d, cfg.d_s, cfg.baseline, cfg.baseline_momentum,
                                         cfg.donor_weighting, cfg.donor_temp, cfg.s_align)
                         if cfg.use_enhancer else None)
        M = len(self.names)
        self.moe = None
        self.concat = None
        if cfg.fusion == "moe":
            self.moe = QualityMoE(M, cfg.d, cfg.experts, cfg.expert_hidden, cfg.router_input, cfg.top_k,
                                  cfg.router_temp, cfg.dropout, cfg.loss.consistency_tau, cfg.unimodal_expert)
        elif cfg.fusion == "concat":
            self.concat = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(M * cfg.d + M, cfg.expert_hidden),
                                        nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.expert_hidden, cfg.d))
        self.head = nn.Linear(cfg.d, self.out_dim) if cfg.fusion != "late" else None
        if cfg.fusion_residual and self.head is not None:  # start exactly at quality-weighted late fusion
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    # -- pieces reused by the training losses -------------------------------------------------------------
    def encode(self, name: str, x: ModalityInput) -> Tensor:
        return self.encoders[name](x.x, x.mask)

    def quality_logit(self, name: str, h: Tensor, x: ModalityInput) -> Tensor:
        """Raw quality logit ``[B]`` of modality ``name`` (requires an estimator)."""
        stats = input_energy(x.x, x.mask) if self.config.quality_stats else None
        return self.estimator.logit(name, h, stats)

    def quality_logits(self, h: dict[str, Tensor], inputs: dict[str, ModalityInput]) -> Tensor | None:
        if self.estimator is None:
            return None
        return torch.stack([self.quality_logit(m, h[m], inputs[m]) for m in self.names], 1)

    # -- forward -------------------------------------------------------------------------------------------
    def forward(self, inputs: dict[str, ModalityInput], present: Tensor) -> UMQOutput:
        cfg = self.config
        train_aux = self.training
        h = {m: self.encode(m, inputs[m]) for m in self.names}
        pf = present.to(h[self.names[0]].dtype)
        uni = {m: self.unimodal[m](h[m]) for m in self.names}
        q_logit = self.quality_logits(h, inputs)
        if q_logit is None:
            q = pf
        else:
            q = torch.sigmoid(q_logit)
            if cfg.known_missing:
                q = q * pf
        q_blend = q if cfg.blend_grad else q.detach()
        aux: dict[str, Tensor] = {}
        h_hat: dict[str, Tensor] = {}
        if self.enhancer is not None:
            h_enh, h_hat, a = self.enhancer(h, q_blend, present, train_aux)
            aux.update(a)
        else:
            h_enh = {m: q_blend[:, i:i + 1] * h[m] for i, m in enumerate(self.names)}
        routing = None
        if cfg.fusion == "late":
            w = pf / pf.sum(1, keepdim=True).clamp_min(1.0)
            fused_out = sum(w[:, i:i + 1] * uni[m] for i, m in enumerate(self.names))
        else:
            z = torch.cat([h_enh[m] for m in self.names], -1)
            if cfg.fusion == "moe":
                pooled = torch.stack([h_enh[m] for m in self.names], 1).mean(1)
                fused, routing, a = self.moe(z, q_blend, pooled, train_aux)
                aux.update(a)
                fused_out = self.head(fused)
                if cfg.unimodal_expert or cfg.fusion_residual:
                    w = q_blend / q_blend.sum(1, keepdim=True).clamp_min(1e-6)
                    uni_mix = sum(w[:, i:i + 1] * uni[m] for i, m in enumerate(self.names))
                    fused_out = fused_out + (uni_mix if cfg.fusion_residual else routing[:, -1:] * uni_mix)
            else:
                fused_out = self.head(self.concat(torch.cat([z, pf], -1)))
        logits = probs = reg = None
        if cfg.task == "regression":
            reg = fused_out.squeeze(-1)
        else:
            logits = fused_out
            probs = torch.softmax(logits, -1)
        return UMQOutput(logits=logits, probs=probs, regression=reg, q=q, routing=routing, unimodal_logits=uni,
                         aux=aux, h=h, h_hat=h_hat, h_enh=h_enh, q_logit=q_logit)
