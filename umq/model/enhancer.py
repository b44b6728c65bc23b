"""Stage 2: quality enhancer.

Each representation is decoupled into a sample-specific code ``s_m`` (what this sample says, shareable across
modalities) and a modality-specific code ``c_m`` (how this modality looks in general). A low-quality
representation is rebuilt from what the *other* modalities say about the sample plus the modality's baseline:

    h_hat_m = Dec_m([sum_{n != m} w_n s_n ; b_m]) + beta_m,     w_n ∝ q_n (n present, n != m)
    h_enh_m = q_m h_m + (1 - q_m) h_hat_m

Similarity constraints keep the decoupling meaningful: ``s`` of the same sample agree across modalities
(InfoNCE or cosine), ``c_m`` is pulled toward the baseline ``b_m``, and ``s_m ⟂ c_m``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class QualityEnhancer(nn.Module):
    def __init__(self, names: tuple[str, ...], d: int, d_s: int, baseline: str = "ema", momentum: float = 0.98,
                 donor_weighting: str = "normalized", donor_temp: float = 0.2, s_align: str = "infonce",
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.names = names
        self.baseline_kind = baseline
        self.momentum = momentum
        self.donor_weighting = donor_weighting
        self.donor_temp = donor_temp
        self.s_align = s_align
        self.proj_s = nn.ModuleDict({m: nn.Linear(d, d_s) for m in names})
        self.proj_c = nn.ModuleDict({m: nn.Linear(d, d_s) for m in names})
        self.dec = nn.ModuleDict({m: nn.Sequential(nn.Linear(2 * d_s, d), nn.GELU(), nn.Dropout(dropout),
                                                   nn.Linear(d, d)) for m in names})
        self.beta = nn.Parameter(torch.zeros(len(names), d))  # the paper's learnable bias, one per modality
        if baseline == "learned":
            self.b = nn.Parameter(torch.randn(len(names), d_s) * 0.1)
        else:
            self.register_buffer("b", torch.zeros(len(names), d_s))
            self.register_buffer("b_initialised", torch.zeros(len(names), dtype=torch.bool))

    def donor_weights(self, q: Tensor, present: Tensor) -> Tensor:
        """``[B, M, M]``: weight of donor ``n`` when rebuilding ``m``; rows sum to 1, or 0 with no donor."""
        M = q.shape[1]
        allowed = present.unsqueeze(1) & ~torch.eye(M, dtype=torch.bool, device=q.device).unsqueeze(0)
        if self.donor_weighting == "softmax":
            logits = (q / self.donor_temp).unsqueeze(1).expand(-1, M, -1).masked_fill(~allowed, float("-inf"))
            has = allowed.any(-1, keepdim=True)
            w = torch.softmax(torch.where(has, logits, torch.zeros_like(logits)), -1) * has
        else:
            raw = q.unsqueeze(1) * allowed + 1e-6 * allowed
            w = raw / raw.sum(-1, keepdim=True).clamp_min(1e-6)
        return w

    def forward(self, h: dict[str, Tensor], q: Tensor, present: Tensor,
                train_aux: bool) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """Returns ``(h_enh, h_hat, aux)``; ``q`` is used as given (the caller decides on its gradient)."""
        s = torch.stack([self.proj_s[m](h[m]) for m in self.names], 1)  # [B, M, d_s]
        c = torch.stack([self.proj_c[m](h[m]) for m in self.names], 1)
        w = self.donor_weights(q.detach(), present)  # donor choice follows quality; no gradient into q
        donor = torch.einsum("bmn,bnd->bmd", w, s)  # [B, M, d_s]
        h_hat, h_enh = {}, {}
        for i, m in enumerate(self.names):
            b = self.b[i].expand(donor.shape[0], -1)
            h_hat[m] = self.dec[m](torch.cat([donor[:, i], b], -1)) + self.beta[i]
            qi = q[:, i].unsqueeze(-1)
            h_enh[m] = qi * h[m] + (1 - qi) * h_hat[m]
        aux: dict[str, Tensor] = {}
        if train_aux:
            good = present & (q.detach() > 0.5)  # reliable representations define the constraints
            aux["similarity"] = self._similarity(s, c, good)
            if self.baseline_kind == "ema":
                self._update_baseline(c.detach(), good)
        return h_enh, h_hat, aux

    def _similarity(self, s: Tensor, c: Tensor, good: Tensor) -> Tensor:
        B, M, _ = s.shape
        sn, cn = F.normalize(s, dim=-1), F.normalize(c, dim=-1)
        g = good.to(s.dtype)
        # (1) sample-specific codes of the same sample agree across modalities
        align = s.new_zeros(())
        pairs = 0
        for i in range(M):
            for j in range(i + 1, M):
                both = g[:, i] * g[:, j]
                if self.s_align == "infonce":
                    keep = both > 0
                    pair_ok = keep.unsqueeze(0) & keep.unsqueeze(1)
                    logits = (sn[:, i] @ sn[:, j].T / 0.2).masked_fill(~pair_ok, float("-inf"))
                    tgt = torch.arange(B, device=s.device)
                    rows = keep.unsqueeze(1)  # rows of unreliable samples are neutralised, then weighted 0
                    li = F.cross_entropy(torch.where(rows, logits, torch.zeros_like(logits)), tgt, reduction="none")
                    lj = F.cross_entropy(torch.where(rows, logits.T, torch.zeros_like(logits)), tgt,
                                         reduction="none")
                    align = align + ((li + lj) * 0.5 * both).sum() / both.sum().clamp_min(1.0)
                else:
                    cos = (sn[:, i] * sn[:, j]).sum(-1)
                    align = align + ((1 - cos) * both).sum() / both.sum().clamp_min(1.0)
                pairs += 1
        align = align / max(pairs, 1)
        # (2) modality-specific codes stay close to the modality baseline (hence to each other)
        bn = F.normalize(self.b, dim=-1).unsqueeze(0)
        to_base = (((1 - (cn * bn).sum(-1)) * g).sum() / g.sum().clamp_min(1.0))
        # (3) s and c carry different information
        orth = (((sn * cn).sum(-1) ** 2) * g).sum() / g.sum().clamp_min(1.0)
        return align + to_base + orth

    @torch.no_grad()
    def _update_baseline(self, c: Tensor, good: Tensor) -> None:
        """EMA of the mean high-quality ``c_m``; the first batch initialises it. No host sync."""
        g = good.to(c.dtype).unsqueeze(-1)  # [B, M, 1]
        cnt = g.sum(0)  # [M, 1]
        mean = (c * g).sum(0) / cnt.clamp_min(1.0)
        has = cnt > 0
        first = has & ~self.b_initialised.unsqueeze(-1)
        upd = torch.where(first, mean, self.momentum * self.b + (1 - self.momentum) * mean)
        self.b.copy_(torch.where(has, upd, self.b))
        self.b_initialised |= has.squeeze(-1)
