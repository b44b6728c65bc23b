"""Voice front-end: one 16 kHz mono window -> normalised frame features for the emotion encoder + quality cues.

Per window (``samples`` float32, ``valid`` bool, as :class:`streams.windows.AudioSlice` carries them):

1. **Sanitise** (host): NaN/inf -> 0 and marked invalid (counted for the cues), values clamped to the [-1, 1]
   full scale (anything beyond it is clipped audio anyway).
2. **Descriptors** (host, librosa, 10 ms hop, frames centred on ``t*160``): yin pitch (60-600 Hz, 64 ms frames)
   and its periodicity (normalised autocorrelation at the yin period; a frame is *pitched* when >= 0.5 and its
   RMS is above -75 dBFS),
   RMS level (dB), spectral flatness (log), zero-crossing rate. They feed the cues and, as 5 extra channels,
   the encoder (log2 f0 only on pitched frames).
3. **Voice activity** (host, silero-vad, loaded once, lazily, on CPU): speech probability per 32 ms chunk, reset
   per window. It gives the speech ratio cue and selects the frames the speaker normaliser learns from.
4. **Log-mel** (model device): ``torchaudio.transforms.MelSpectrogram`` (25 ms Hann, 10 ms hop, 64 mels
   50-8000 Hz, power) and ``log(mel + 1e-6)``. The samples are uploaded once; everything after stays on the
   device (no host round trip): features ``[69, T]`` = 64 log-mels + 5 descriptors, ``T = 1 + N // 160``
   (201 for a 2.0 s window).
5. **Speaker normalisation** (device, :class:`SpeakerNormalizer`): per-channel running mean/variance of the
   session's voiced frames (exponential forgetting, ~30 s of speech memory) shrunk towards a prior from the
   training set, so the first window is already normalised sensibly; ``normalize=False`` uses the prior only
   (a fixed global standardisation). Invalid frames are set to 0 and masked.

:class:`VoiceFrontEnd` runs all of it and returns :class:`VoiceFeatures`; it keeps the speaker state between
calls (one front-end per live session; :meth:`VoiceFrontEnd.reset` when the speaker changes).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from umq.device import default_device, to_device
from umq.perception.voice.cues import VoiceCues, compute_cues
from umq.perception.voice.features import (
    SR,
    chunk_valid,
    descriptor_matrix,
    descriptor_tracks,
    frame_valid,
    n_frames,
    raw_features,
    sanitize,
    to_mono_16k,
)
from umq.perception.voice.normalize import FeatureStats, SpeakerNormalizer, normalizer_weights
from umq.perception.voice.vad import SileroVAD, speech_frames

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ front-end
@dataclass
class VoiceFeatures:
    """What the front-end hands the encoder and the fusion model for one window.

    Attributes:
        features: normalised frame features ``[C, T]`` float32 on the model device: log-mel front-end ``[69, T]``
            at 10 ms (64 log-mels + 5 descriptors), Whisper front-end ``[389, T]`` at 20 ms (384 encoder channels +
            5 descriptors); the layout follows the loaded net's :class:`FeatureStats`.
        mask: bool ``[T]`` on the device; True where the frame's audio arrived (the encoder pools only these).
        cues: the window's :class:`VoiceCues`.
        speech: bool ``[T]`` (host): VAD speech per feature frame.
        pitched: bool ``[T]`` (host): feature frames with a voice pitch.
        views: ``(features, mask)`` per encoder member, in the member order of a
            :class:`~umq.perception.voice.ensemble.VoiceEnsemble` (each normalised by its own speaker normaliser);
            for a single encoder just ``((features, mask),)``. ``features``/``mask``/``speech``/``pitched`` are the
            first member's.
    """

    features: torch.Tensor
    mask: torch.Tensor
    cues: VoiceCues
    speech: np.ndarray
    pitched: np.ndarray
    views: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()

    def __post_init__(self) -> None:
        if not self.views:  # one encoder: its view is the features
            self.views = ((self.features, self.mask),)

    @property
    def frames(self) -> int:
        return int(self.features.shape[-1])


def _stack(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(int(f.shape[-1]) for f, _ in pairs)
    dev = pairs[0][0].device
    x = torch.zeros(len(pairs), pairs[0][0].shape[0], t, device=dev)
    m = torch.zeros(len(pairs), t, dtype=torch.bool, device=dev)
    for i, (f, mk) in enumerate(pairs):
        x[i, :, : f.shape[-1]] = f
        m[i, : f.shape[-1]] = mk
    return x, m


def collate(items: list[VoiceFeatures]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack windows into ``x [B, C, T]`` and ``mask [B, T]`` (shorter ones zero-padded and masked)."""
    return _stack([(it.features, it.mask) for it in items])


def collate_views(items: list[VoiceFeatures]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`collate` per view: what :func:`umq.perception.voice.ensemble.encode` takes for any voice encoder."""
    return [_stack([it.views[k] for it in items]) for k in range(len(items[0].views))]


class VoiceFrontEnd:
    """Features + cues for one session's audio windows, keeping the running speaker normaliser.

    Args:
        stats: the normaliser prior: a :class:`FeatureStats`, its JSON dict, or an object with a
            ``feature_stats`` attribute (a loaded voice encoder); a sequence of them (an ensemble's) makes one
            feature view per entry, each with its own normaliser, from one pass of the shared steps 1-3.
        device: where features are computed and returned (default: CUDA when available).
        normalize: True to adapt to the speaker (running statistics), False for the fixed prior only.
        vad: False skips silero-vad (speech ratio 0, the normaliser then learns from all valid frames); for tests
            and for environments without the model.

    Call it with ``(samples, valid)`` per window; :meth:`reset` starts a new speaker/session.
    """

    def __init__(self, stats=None, device: torch.device | str | None = None, normalize: bool = True,
                 vad: bool = True) -> None:
        if stats is None:
            from umq.perception.voice.net import load_voice_net  # the shipped prior

            stats = load_voice_net(device="cpu").feature_stats
        if hasattr(stats, "feature_stats"):
            stats = stats.feature_stats
        many = stats if isinstance(stats, (list, tuple)) else [stats]
        many = [FeatureStats.from_json(s) if isinstance(s, dict) else s for s in many]
        self.device = torch.device(device) if device is not None else default_device()
        self.normalizers = [SpeakerNormalizer(s, self.device, enabled=normalize) for s in many]
        self.normalizer = self.normalizers[0]
        self.use_vad = vad
        self.windows = 0

    def reset(self) -> None:
        """Forget the speaker (new session or new person); the priors stay."""
        for n in self.normalizers:
            n.reset()
        self.windows = 0

    def __call__(self, samples: np.ndarray, valid: np.ndarray | None = None, update: bool = True,
                 rate: int = SR) -> VoiceFeatures:
        """Features and cues of one window: ``samples`` float (mono ``[N]``, or ``[N, C]`` / ``[C, N]``) at
        ``rate`` Hz, ``valid`` marks the samples that arrived. Never raises on odd audio (empty, NaN/inf, silent,
        clipped, DC offset, minutes long): the cues say what is wrong."""
        samples, valid, duration = to_mono_16k(samples, valid, rate)
        x, v, n_bad = sanitize(samples, valid)
        cue_x = x
        if v.any():  # a DC offset would shift the features, not the speech: remove it (the cues see the raw level)
            x = x - np.float32(x[v].mean())
            x[~v] = 0.0
        t = n_frames(x.shape[0])
        fv = frame_valid(v)
        cv = chunk_valid(v)
        probs = SileroVAD.probs(x) if self.use_vad else np.zeros(cv.shape[0], np.float32)
        speech = speech_frames(probs, t) & fv if self.use_vad else fv.copy()
        tracks = descriptor_tracks(x)
        paths: dict[bool, tuple] = {}  # whisper? -> (raw features, speech, pitched, valid); each path runs once
        outs = []  # per member: (features, mask, speech, pitched)
        for norm in self.normalizers:
            stats = norm.stats
            if stats.whisper not in paths:
                if stats.whisper:
                    from umq.perception.voice.whisper import whisper_frame_features

                    f = whisper_frame_features(x, tracks, descriptor_matrix(tracks), speech, fv)
                    paths[True] = (to_device(f["feats"], self.device), f["speech"], f["pitched"], f["fvalid"])
                else:
                    feats, _ = raw_features(x, self.device, tracks)
                    paths[False] = (feats, speech, tracks["pitched"][:t], fv)
            feats, speech_f, pitched_f, fv_f = paths[stats.whisper]
            with torch.inference_mode():
                sp, pt, fvt = (to_device(a, self.device) for a in (speech_f, pitched_f, fv_f))
                if update:
                    norm.update(feats, normalizer_weights(sp, pt, fvt, stats.n_channels, stats.f0_channel))
                z = norm(feats, pt, fvt).to(torch.float32)
            outs.append((z, fvt, speech_f, pitched_f))
        cues = compute_cues(cue_x, v, n_bad, probs, cv, tracks["pitched"][:t], fv, duration)
        self.windows += 1
        z, fvt, speech_f, pitched_f = outs[0]
        return VoiceFeatures(z, fvt, cues, speech_f, pitched_f, tuple((o[0], o[1]) for o in outs))
