"""Audio emotion encoder: a small CRNN on speaker-normalised log-mels + voice descriptors, its loader, and the
folder evaluation used by ``python -m umq.evaluate audio``.

Architecture (:class:`VoiceEmotionNet`, ~0.25 M parameters, ~1 MB of float32 weights):

* mel branch: the 64 log-mel channels as a 1x64xT image through 4 conv blocks (3x3 conv, BatchNorm, ReLU;
  the first with stride 2x2, then max-pool 2x2, 2x2, 2x1) -> 96 channels x 4 mel bands x T/8, flattened per
  time step (80 ms);
* descriptor branch: the 5 descriptor channels (log2 f0, periodicity, RMS dB, log flatness, ZCR) average-pooled
  to T/8;
* both concatenated, a 1x1 conv to 128, a bidirectional GRU (64 per direction);
* attentive statistics pooling over the valid time steps (attention-weighted mean and std) -> linear ->
  **embedding** (128-d, what the fusion model consumes) -> dropout -> linear -> 7 logits in
  :data:`~umq.labels.EMOTIONS` order.

Inputs are the ``[B, 69, T]`` features and ``[B, T]`` mask of :class:`~umq.perception.voice.frontend.VoiceFrontEnd`
(any ``T >= 1``, shorter than 16 frames is padded and masked; trained on 2.0 s windows, T = 201).

Checkpoint (``assets/voice/voice_net.pt``, read with ``torch.load(weights_only=True)``): a dict with
``format_version``, ``config``, ``labels``, ``metrics``, ``feature_stats`` (the speaker normaliser's prior) and
``state_dict``. The weights were trained on RAVDESS (CC BY-NC-SA 4.0): research / non-commercial use only.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from umq import paths
from umq.checkpoint import read_checkpoint, weights_mismatch
from umq.device import default_device
from umq.labels import EMOTIONS
from umq.perception.voice.features import N_FEATURES, N_MELS
from umq.perception.voice.normalize import FeatureStats

FORMAT_VERSION = 1
DEFAULT_WEIGHTS = paths.ASSETS / "voice" / "voice_net.pt"
APP_LABELS: tuple[str, ...] = EMOTIONS

DEFAULT_CONFIG: dict = {
    "arch": "crnn_asp", "n_mels": N_MELS, "n_desc": N_FEATURES - N_MELS, "channels": [16, 32, 64, 96],
    "strides": [[2, 2], [1, 1], [1, 1], [1, 1]], "pools": [[1, 1], [2, 2], [2, 2], [2, 1]], "hidden": 128,
    "rnn": 64, "emb": 128, "num_classes": len(APP_LABELS), "dropout": 0.3,
}


class VoiceEmotionNet(nn.Module):
    """CRNN with attentive statistics pooling; ``forward(x [B,69,T], mask [B,T]) -> (logits [B,7], emb [B,E])``."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config or {})
        self.config = cfg
        self.n_mels, self.n_desc = int(cfg["n_mels"]), int(cfg["n_desc"])
        blocks, c_in, f = [], 1, self.n_mels
        self.time_stride = 1
        for c, st, pl in zip(cfg["channels"], cfg["strides"], cfg["pools"]):
            blocks += [nn.Conv2d(c_in, c, 3, stride=tuple(st), padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True)]
            if tuple(pl) != (1, 1):
                blocks.append(nn.MaxPool2d(tuple(pl)))
            c_in, f = c, ((f - 1) // st[0] + 1) // pl[0]
            self.time_stride *= st[1] * pl[1]
        self.cnn = nn.Sequential(*blocks)
        self.proj = nn.Sequential(nn.Conv1d(c_in * f + self.n_desc, cfg["hidden"], 1, bias=False),
                                  nn.BatchNorm1d(cfg["hidden"]), nn.ReLU(inplace=True))
        self.rnn = nn.GRU(cfg["hidden"], cfg["rnn"], batch_first=True, bidirectional=True)
        d = 2 * cfg["rnn"]
        self.att = nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, 1))
        self.emb = nn.Sequential(nn.Linear(2 * d, cfg["emb"]), nn.BatchNorm1d(cfg["emb"]), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(cfg["dropout"])
        self.head = nn.Linear(cfg["emb"], cfg["num_classes"])
        self.labels: tuple[str, ...] = APP_LABELS
        self.feature_stats: FeatureStats | None = None
        self.metrics: dict = {}

    @property
    def embedding_dim(self) -> int:
        return int(self.config["emb"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, t = x.shape
        if c != self.n_mels + self.n_desc:
            raise ValueError(f"expected {self.n_mels + self.n_desc} feature channels, got {c}")
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        if t < 2 * self.time_stride:  # too short for the pooling: pad (masked)
            x = F.pad(x, (0, 2 * self.time_stride - t))
            mask = F.pad(mask, (0, 2 * self.time_stride - t))
        h = self.cnn(x[:, None, : self.n_mels])  # [B, C, F', T']
        tt = h.shape[-1]
        h = h.flatten(1, 2)
        s = self.time_stride
        d = F.avg_pool1d(x[:, self.n_mels:], s, s, ceil_mode=True) if s > 1 else x[:, self.n_mels:]
        m = (F.avg_pool1d(mask[:, None].float(), s, s, ceil_mode=True)[:, 0] if s > 1 else mask.float()) >= 0.5
        if d.shape[-1] < tt:  # conv/pool rounding can leave the CNN one step longer
            d = F.pad(d, (0, tt - d.shape[-1]))
            m = F.pad(m, (0, tt - m.shape[-1]))
        d, m = d[..., :tt], m[..., :tt]
        h = self.proj(torch.cat([h, d], 1)).transpose(1, 2)  # [B, T', H]
        h, _ = self.rnn(h)
        # rows with no valid step attend everywhere instead of producing NaN
        m = m | ~m.any(dim=1, keepdim=True)
        a = self.att(h).squeeze(-1).masked_fill(~m, float("-inf"))
        w = torch.softmax(a, dim=1).unsqueeze(-1)
        mu = (w * h).sum(1)
        sd = ((w * (h - mu.unsqueeze(1)) ** 2).sum(1) + 1e-5).sqrt()
        e = self.emb(torch.cat([mu, sd], 1))
        return self.head(self.drop(e)), e

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode ``(probabilities [B,7], embedding [B,E])``."""
        was = self.training
        self.eval()
        logits, e = self(x, mask)
        self.train(was)
        return logits.softmax(-1), e


def build_voice_net(config: dict) -> nn.Module:
    """The encoder named by ``config["arch"]``: ``crnn_asp`` (log-mel CRNN), ``whisper_asp``
    (:class:`~umq.perception.voice.head.WhisperHeadNet` on the Whisper front-end) or ``ensemble``
    (:class:`~umq.perception.voice.ensemble.VoiceEnsemble` of the configs in ``config["members"]``)."""
    arch = config.get("arch", "crnn_asp")
    if arch == "ensemble":
        from umq.perception.voice.ensemble import VoiceEnsemble

        return VoiceEnsemble([build_voice_net(c) for c in config["members"]])
    if arch == "crnn_asp":
        return VoiceEmotionNet(config)
    if arch == "whisper_asp":
        from umq.perception.voice.head import WhisperHeadNet

        return WhisperHeadNet(config)
    raise ValueError(f"unknown voice encoder arch {arch!r}")


def _stats_json(net: nn.Module):
    stats = net.feature_stats
    if stats is None or (isinstance(stats, tuple) and any(s is None for s in stats)):
        raise ValueError("a voice checkpoint needs the feature stats (speaker normaliser prior) of every encoder")
    return [s.to_json() for s in stats] if isinstance(stats, tuple) else stats.to_json()


def _set_stats(net: nn.Module, blob) -> None:
    """A single encoder's prior, or one per ensemble member (a list in the checkpoint)."""
    if isinstance(blob, list):
        members = getattr(net, "members", None)
        if members is None or len(members) != len(blob):
            raise ValueError(f"{len(blob)} feature stats for an encoder that is not a {len(blob)}-member ensemble")
        for m, b in zip(members, blob):
            m.feature_stats = FeatureStats.from_json(b)
    else:
        net.feature_stats = FeatureStats.from_json(blob)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------------------------- checkpoint
def save_voice_net(net: nn.Module, path: str | Path, metrics: dict | None = None) -> Path:
    stats = _stats_json(net)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format_version": FORMAT_VERSION,
        "config": dict(net.config),
        "labels": list(net.labels),
        "metrics": metrics if metrics is not None else net.metrics,
        "feature_stats": stats,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
    }
    torch.save(blob, path)
    return path


def load_voice_net(path: str | Path | None = None, device: torch.device | str | None = None) -> nn.Module:
    """Load the voice encoder (default ``assets/voice/voice_net.pt``, or ``$UMQ_VOICE_WEIGHTS``) in eval mode on
    ``device`` (default: CUDA when available). Raises :class:`~umq.checkpoint.CheckpointError` naming the file."""
    if path is None:
        path = os.environ.get("UMQ_VOICE_WEIGHTS") or DEFAULT_WEIGHTS  # override: evaluation of other weights
    path = Path(path)
    blob = read_checkpoint(path, what="voice encoder", versions=(FORMAT_VERSION,),
                           required=("config", "state_dict", "feature_stats"), labels=APP_LABELS,
                           how_to_make="train them with `python -m umq.training.voice.train`")
    try:
        net = build_voice_net(blob["config"])
        net.load_state_dict(blob["state_dict"])
        _set_stats(net, blob["feature_stats"])
    except Exception as e:
        raise weights_mismatch(path, "voice encoder", e) from e
    net.metrics = blob.get("metrics", {})
    dev = torch.device(device) if device is not None else default_device()
    return net.to(dev).eval()


