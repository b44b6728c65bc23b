"""Stage 3: quality-aware mixture of experts.

The router reads the quality vector ``q`` (optionally concatenated with the mean enhanced representation) and
weights ``K`` expert MLPs that all see the concatenation of the enhanced representations, plus (option
``unimodal_expert``) one *unimodal expert*: the quality-weighted mean of the unimodal heads' logits, which the
caller mixes in with the last routing weight. It gives the router a direct single-modality path for samples
where only one modality is usable, instead of forcing them through cross-modal experts fed with
reconstructions. Two regularisers:

* load balancing ``K * sum_k mean_i(g_ik)^2 - 1`` (0 at uniform average use), so no expert starves;
* routing consistency ``sum_ij k_ij ||g_i - g_j||^2 / sum_ij k_ij`` with ``k_ij = exp(-||q_i - q_j||^2 / tau)``:
  samples with similar quality configurations are sent to similar experts, which is what makes experts
  specialise by quality configuration instead of by arbitrary feature clusters.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class QualityMoE(nn.Module):
    def __init__(self, n_modalities: int, d: int, experts: int = 4, hidden: int = 128, router_input: str = "q+feat",
                 top_k: int = 0, temp: float = 1.0, dropout: float = 0.3, consistency_tau: float = 0.1,
                 unimodal_expert: bool = False) -> None:
        super().__init__()
        self.unimodal_expert = unimodal_expert
        self.consistency_tau = consistency_tau
        self.router_input = router_input
        self.top_k = top_k
        self.temp = temp
        r_in = {"q+feat": n_modalities + d, "q": n_modalities, "feat": d}[router_input]
        self.router = nn.Sequential(nn.Linear(r_in, 32), nn.GELU(), nn.Linear(32, experts + int(unimodal_expert)))
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Dropout(dropout), nn.Linear(n_modalities * d, hidden), nn.GELU(), nn.Dropout(dropout),
                          nn.Linear(hidden, d)) for _ in range(experts))

    def gate(self, q: Tensor, pooled: Tensor) -> Tensor:
        """Routing weights ``[B, K (+1)]`` (rows sum to 1; the last column is the unimodal expert if enabled)."""
        r = {"q+feat": lambda: torch.cat([q, pooled], -1), "q": lambda: q, "feat": lambda: pooled}[self.router_input]()
        logits = self.router(r) / self.temp
        if self.top_k:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.softmax(logits, -1)

    def forward(self, z: Tensor, q: Tensor, pooled: Tensor, train_aux: bool) -> tuple[Tensor, Tensor, dict]:
        """``z``: ``[B, M*d]`` concatenated representations. Returns ``(fused [B, d], gates [B, K (+1)], aux)``;
        ``fused`` mixes the MLP experts only, the caller adds ``gates[:, -1]`` x the unimodal expert."""
        g = self.gate(q, pooled)
        out = torch.stack([e(z) for e in self.experts], 1)  # [B, K, d]
        fused = torch.einsum("bk,bkd->bd", g[:, :len(self.experts)], out)
        aux: dict[str, Tensor] = {}
        if train_aux:
            aux["load_balance"] = load_balance_loss(g)
            aux["consistency"] = routing_consistency_loss(g, q.detach(), self.consistency_tau)
        return fused, g, aux


def load_balance_loss(g: Tensor) -> Tensor:
    """``K * sum_k (mean_i g_ik)^2 - 1``: 0 when experts are used equally on average, up to ``K - 1``."""
    p = g.mean(0)
    return g.shape[1] * (p * p).sum() - 1.0


def routing_consistency_loss(g: Tensor, q: Tensor, tau: float = 0.1) -> Tensor:
    """Kernel-weighted mean squared routing difference between samples of similar quality vectors."""
    k = torch.exp(-torch.cdist(q, q).pow(2) / tau)
    k = k * (1 - torch.eye(k.shape[0], device=k.device, dtype=k.dtype))
    dg = torch.cdist(g, g).pow(2)
    return (k * dg).sum() / k.sum().clamp_min(1e-6)

