"""Speaker normalisation: running per-channel statistics of the session's voiced frames, shrunk towards a
training-set prior (:class:`FeatureStats`), so the first window is normalised sensibly and a new speaker is
learnt within seconds. See :class:`SpeakerNormalizer`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from umq.perception.voice.features import F0_CHANNEL, FEATURE_NAMES, MEMORY_FRAMES, N_FEATURES, PRIOR_FRAMES


@dataclass
class FeatureStats:
    """Prior of the speaker normaliser: per-channel mean and (within-speaker) variance of voiced frames of the
    training speakers, plus how many frames the prior weighs and the running memory.

    ``names`` is the channel layout the stats belong to: :data:`FEATURE_NAMES` (log-mel front-end, 10 ms frames)
    or :data:`umq.perception.voice.whisper.WHISPER_FEATURE_NAMES` (Whisper front-end, 20 ms frames); the
    front-end picks its feature path from it.
    """

    mean: np.ndarray
    var: np.ndarray
    prior_frames: float = PRIOR_FRAMES
    memory_frames: float = MEMORY_FRAMES
    names: tuple[str, ...] = FEATURE_NAMES

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        n = len(self.names)
        self.mean = np.asarray(self.mean, np.float64).reshape(-1)
        self.var = np.asarray(self.var, np.float64).reshape(-1)
        if self.mean.shape != (n,) or self.var.shape != (n,):
            raise ValueError(f"feature stats must have {n} channels, got {self.mean.shape}, {self.var.shape}")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.var)) and np.all(self.var > 0)):
            raise ValueError("feature stats must be finite with positive variances")
        if "log2_f0" not in self.names:
            raise ValueError("feature stats need a log2_f0 channel")

    @property
    def n_channels(self) -> int:
        return len(self.names)

    @property
    def f0_channel(self) -> int:
        return self.names.index("log2_f0")

    @property
    def whisper(self) -> bool:
        """True for the Whisper front-end's channel layout."""
        return self.names[0].startswith("whisper")

    def to_json(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "var": [float(v) for v in self.var],
                "prior_frames": float(self.prior_frames), "memory_frames": float(self.memory_frames),
                "names": list(self.names)}

    @classmethod
    def from_json(cls, d: dict) -> FeatureStats:
        from umq.perception.voice.whisper import WHISPER_FEATURE_NAMES

        names = tuple(d.get("names") or FEATURE_NAMES)
        if names not in (FEATURE_NAMES, WHISPER_FEATURE_NAMES):
            raise ValueError("feature stats were computed for different feature channels")
        return cls(np.asarray(d["mean"]), np.asarray(d["var"]), float(d.get("prior_frames", PRIOR_FRAMES)),
                   float(d.get("memory_frames", MEMORY_FRAMES)), names)


def normalizer_weights(speech: torch.Tensor, pitched: torch.Tensor, fvalid: torch.Tensor,
                       n_channels: int = N_FEATURES, f0: int = F0_CHANNEL) -> torch.Tensor:
    """Which frames each channel's running stats learn from ``[..., C, T]``: valid speech frames, and for the
    log2 f0 channel (index ``f0``) only the pitched ones."""
    w = (speech & fvalid).to(torch.float32).unsqueeze(-2).expand(*speech.shape[:-1], n_channels, speech.shape[-1])
    w = w.clone()
    w[..., f0, :] *= pitched.to(torch.float32)
    return w


def moments(feats: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted count, sum and sum of squares over time: each ``[..., C]``, float64."""
    f = feats.to(torch.float64)
    w = w.to(torch.float64)
    return w.sum(-1), (w * f).sum(-1), (w * f * f).sum(-1)


def mean_std(n: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, prior_mean: torch.Tensor,
             prior_var: torch.Tensor, prior_frames: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Shrinkage estimates: the speaker's running mean and variance each pulled towards the prior's with weight
    ``prior_frames`` (``mean = (n0*mu0 + S1) / (n0 + n)``, ``var = (n0*var0 + n*var_s) / (n0 + n)``); the
    variance is kept within [1/4, 4] of the prior's."""
    n0 = prior_frames
    tot = n0 + n
    mean = (n0 * prior_mean + s1) / tot
    ns = torch.clamp(n, min=1e-6)
    ms = s1 / ns
    var_s = torch.clamp(s2 / ns - ms * ms, min=0.0)
    var = (n0 * prior_var + n * var_s) / tot
    var = torch.minimum(torch.maximum(var, 0.25 * prior_var), 4.0 * prior_var)
    return mean, var.sqrt()


def apply_norm(feats: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, pitched: torch.Tensor,
               fvalid: torch.Tensor, f0: int = F0_CHANNEL) -> torch.Tensor:
    """``(x - mean) / std``; log2 f0 zeroed on unpitched frames, every channel zeroed on invalid frames."""
    z = (feats - mean.to(feats.dtype).unsqueeze(-1)) / std.to(feats.dtype).unsqueeze(-1)
    z = z.clone()
    z[..., f0, :] *= pitched.to(z.dtype)
    return z * fvalid.to(z.dtype).unsqueeze(-2)


class SpeakerNormalizer:
    """Running per-speaker standardisation of the frame features (lives on the features' device).

    State: exponentially forgotten count / sum / sum of squares of the voiced frames seen so far. Each update
    first decays the state by ``exp(-n_new / memory_frames)`` (only speech ages it: silence changes nothing),
    then adds the window's moments. Mean and variance combine the state with the training prior
    (:func:`mean_std`), so with no history the features are standardised by the prior alone.
    """

    def __init__(self, stats: FeatureStats, device: torch.device | str = "cpu", enabled: bool = True) -> None:
        self.stats = stats
        self.device = torch.device(device)
        self.enabled = enabled
        self.prior_mean = torch.as_tensor(stats.mean, dtype=torch.float64, device=self.device)
        self.prior_var = torch.as_tensor(stats.var, dtype=torch.float64, device=self.device)
        self.reset()

    def reset(self) -> None:
        z = torch.zeros(self.stats.n_channels, dtype=torch.float64, device=self.device)
        self.n, self.s1, self.s2 = z.clone(), z.clone(), z.clone()

    def update(self, feats: torch.Tensor, weights: torch.Tensor) -> None:
        if not self.enabled:
            return
        n, s1, s2 = moments(feats, weights)
        decay = torch.exp(-n / self.stats.memory_frames)
        self.n = self.n * decay + n
        self.s1 = self.s1 * decay + s1
        self.s2 = self.s2 * decay + s2

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.enabled:
            return self.prior_mean, self.prior_var.sqrt()
        return mean_std(self.n, self.s1, self.s2, self.prior_mean, self.prior_var, self.stats.prior_frames)

    def __call__(self, feats: torch.Tensor, pitched: torch.Tensor, fvalid: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_std()
        return apply_norm(feats, mean, std, pitched, fvalid, self.stats.f0_channel)

    @property
    def voiced_frames(self) -> float:
        """Effective number of voiced frames in the state (host sync: for display, not the hot path)."""
        return float(self.n[0].item())


