"""Per-modality encoders: ``[B, T, D]`` features + mask -> one vector ``h_m [B, d]``.

All encoders zero padded positions after every layer and pool with a masked attention pooling, so padding a
sequence never changes ``h_m`` (tested). ``T = 1`` (clip-level vectors such as RAVDESS AUs) is just a sequence
of length one, for which the pooling is the identity.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class MaskedAttentionPool(nn.Module):
    """``softmax(w . tanh(W x_t))``-weighted mean over valid steps; an all-masked row pools to zeros."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d, d)
        self.score = nn.Linear(d, 1, bias=False)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        scores = self.score(torch.tanh(self.proj(x))).squeeze(-1)  # [B, T]
        scores = scores.masked_fill(~mask, float("-inf"))
        any_valid = mask.any(1, keepdim=True)
        scores = torch.where(any_valid, scores, torch.zeros_like(scores))  # avoid NaN for empty rows
        w = torch.softmax(scores, dim=1) * any_valid
        return torch.einsum("bt,btd->bd", w, x)


class _ConvBlock(nn.Module):
    def __init__(self, d: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d, d, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        y = self.drop(torch.nn.functional.gelu(y))
        return self.norm(x + y) * mask.unsqueeze(-1)


class ModalityEncoder(nn.Module):
    """Linear projection -> temporal layers (``mlp``: per-step MLP, ``conv``: residual conv, ``transformer``)
    -> masked attention pooling -> output projection.

    Why no final LayerNorm: the norm of ``h`` carries part of the "how much signal vs noise" evidence the
    quality estimator needs; normalising it away made noisy inputs indistinguishable in early tests.
    """

    def __init__(self, in_dim: int, d: int, kind: str = "mlp", layers: int = 1, kernel: int = 5,
                 dropout: float = 0.3, input_dropout: float = 0.1) -> None:
        super().__init__()
        self.kind = kind
        self.in_drop = nn.Dropout(input_dropout)
        self.proj = nn.Sequential(nn.Linear(in_dim, d), nn.GELU(), nn.Dropout(dropout))
        if kind == "mlp":
            self.layers = nn.ModuleList(
                nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout)) for _ in range(layers))
        elif kind == "conv":
            self.layers = nn.ModuleList(_ConvBlock(d, kernel, dropout) for _ in range(layers))
        elif kind == "transformer":
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=2 * d, dropout=dropout, batch_first=True,
                                           norm_first=True) for _ in range(layers))
        else:
            raise ValueError(f"unknown encoder kind {kind!r}")
        self.pool = MaskedAttentionPool(d)
        self.out = nn.Linear(d, d)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(-1)
        z = self.proj(self.in_drop(x * m)) * m
        for layer in self.layers:
            if self.kind == "mlp":
                z = (z + layer(z)) * m
            elif self.kind == "conv":
                z = layer(z, mask)
            else:
                # an all-padded row would make attention NaN: give it one (zero) valid key
                kpm = ~mask
                kpm[:, 0] &= mask.any(1)
                z = layer(z, src_key_padding_mask=kpm) * m
        return self.out(self.pool(z, mask))
