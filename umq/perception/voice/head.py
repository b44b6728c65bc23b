"""Emotion head on the Whisper front-end's frames (:mod:`umq.perception.voice.whisper`).

``WhisperHeadNet.forward(x [B, 389, T], mask [B, T]) -> (logits [B, 7], emb [B, 128])``: the same interface as
the log-mel CRNN (:class:`umq.perception.voice.net.VoiceEmotionNet`), so the app and the runtime fusion model
consume either.

Architecture (~0.1 M parameters): average-pool the 20 ms frames to 40 ms -> 1x1 conv 389 -> H (BatchNorm, GELU)
-> 3-tap conv H -> H (BatchNorm, GELU, residual) -> attentive statistics pooling over the valid steps (mean and
std) -> linear + BatchNorm + ReLU = **128-d embedding** -> dropout -> 8 logits over
:data:`umq.training.data.voice_corpora.VOICE_LABELS` (Ekman-7 + calm). ``forward`` returns 7 logits in
:data:`umq.labels.EMOTIONS` order with calm merged into neutral (``logsumexp`` of the two), which is what the
app shows; :meth:`logits8` keeps calm apart (training, TurEV evaluation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from umq.labels import EMOTIONS

HEAD_CONFIG: dict = {"arch": "whisper_asp", "in_channels": 389, "hidden": 128, "emb": 128, "pool": 2,
                     "num_classes": len(EMOTIONS) + 1, "dropout": 0.3, "in_dropout": 0.1}


class WhisperHeadNet(nn.Module):
    """Small attentive-statistics head on Whisper encoder frames + voice descriptors (module docstring)."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        cfg = dict(HEAD_CONFIG)
        cfg.update(config or {})
        self.config = cfg
        c, h = int(cfg["in_channels"]), int(cfg["hidden"])
        self.pool = int(cfg["pool"])
        self.in_drop = nn.Dropout(float(cfg["in_dropout"]))
        self.proj = nn.Sequential(nn.Conv1d(c, h, 1, bias=False), nn.BatchNorm1d(h), nn.GELU())
        self.conv = nn.Sequential(nn.Conv1d(h, h, 3, padding=1, bias=False), nn.BatchNorm1d(h), nn.GELU())
        self.att = nn.Sequential(nn.Conv1d(h, 64, 1), nn.Tanh(), nn.Conv1d(64, 1, 1))
        self.emb = nn.Sequential(nn.Linear(2 * h, cfg["emb"]), nn.BatchNorm1d(cfg["emb"]), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(float(cfg["dropout"]))
        self.head = nn.Linear(cfg["emb"], int(cfg["num_classes"]))
        self.labels: tuple[str, ...] = EMOTIONS
        self.feature_stats = None
        self.metrics: dict = {}

    @property
    def embedding_dim(self) -> int:
        return int(self.config["emb"])

    def logits8(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [B, 8] over Ekman-7 + calm, emb [B, 128])``."""
        b, c, t = x.shape
        if c != int(self.config["in_channels"]):
            raise ValueError(f"expected {self.config['in_channels']} feature channels, got {c}")
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        if self.pool > 1:
            if t < self.pool:
                x, mask = F.pad(x, (0, self.pool - t)), F.pad(mask, (0, self.pool - t))
            x = F.avg_pool1d(x, self.pool, self.pool, ceil_mode=True)
            mask = F.avg_pool1d(mask[:, None].float(), self.pool, self.pool, ceil_mode=True)[:, 0] >= 0.5
        h = self.proj(self.in_drop(x))
        h = h + self.conv(h)
        m = mask | ~mask.any(dim=1, keepdim=True)  # a row with no valid step attends everywhere (no NaN)
        a = self.att(h).squeeze(1).masked_fill(~m, float("-inf"))
        w = torch.softmax(a, dim=1).unsqueeze(1)
        mu = (w * h).sum(-1)
        sd = ((w * (h - mu.unsqueeze(-1)) ** 2).sum(-1) + 1e-5).sqrt()
        e = self.emb(torch.cat([mu, sd], 1))
        return self.head(self.drop(e)), e

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z, e = self.logits8(x, mask)
        n = len(EMOTIONS)
        neutral = torch.logsumexp(torch.stack([z[:, 0], z[:, n]], -1), -1)
        return torch.cat([neutral[:, None], z[:, 1:n]], 1), e

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode ``(probabilities [B, 7], embedding [B, 128])``."""
        was = self.training
        self.eval()
        logits, e = self(x, mask)
        self.train(was)
        return logits.softmax(-1), e
