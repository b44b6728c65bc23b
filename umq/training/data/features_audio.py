"""Audio features for emotion: frame-level prosodic/spectral descriptors and clip-level functionals.

Frame level (50 Hz, after trimming leading/trailing silence): 20 MFCC + 20 ΔMFCC, log energy and its Δ,
pitch (librosa.yin, in semitones, 0 where unvoiced) + voicing flag + periodicity (normalised autocorrelation
at the pitch lag, a harmonicity proxy), spectral flatness, ZCR, log centroid / roll-off / bandwidth,
spectral flux and 7 spectral-contrast bands (58 values).

Clip level (~300 values): mean/std/p10/p50/p90 of each frame descriptor over speech frames, plus pitch
functionals over voiced frames (mean, std, percentiles, range, slope), voiced fraction, speech duration,
energy slope and voiced-onset rate. Emotion in acted speech is mostly in these prosodic statistics, and on
~1000 training clips a small model on functionals generalises to unseen speakers better than one that has to
learn them from frames (docs/model.md).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from umq.perception.digests import sha256_file

log = logging.getLogger(__name__)

FEATURE_VERSION = 1  # bump when the extraction code changes: it is part of the cache key


@dataclass(frozen=True)
class AudioFeatureParams:
    sr: int = 16000
    n_fft: int = 1024
    win: int = 640
    hop: int = 320
    n_mels: int = 40
    n_mfcc: int = 20
    fmin: float = 65.0
    fmax: float = 500.0
    top_db: float = 35.0
    seq_pool: int = 2  # frames averaged per step of the sequence view (50 Hz -> 25 Hz)

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "v": FEATURE_VERSION}, sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


FRAME_NAMES: list[str] = ([f"mfcc{i}" for i in range(20)] + [f"dmfcc{i}" for i in range(20)]
                          + ["log_energy", "d_log_energy", "f0_st", "voiced", "periodicity", "flatness", "zcr",
                             "log_centroid", "log_rolloff", "log_bandwidth", "flux"]
                          + [f"contrast{i}" for i in range(7)])
_STATS = ("mean", "std", "p10", "p50", "p90")
EXTRA_NAMES = ["f0_mean", "f0_std", "f0_p10", "f0_p50", "f0_p90", "f0_range", "f0_slope", "voiced_frac",
               "duration", "energy_slope", "onset_rate"]
STAT_NAMES: list[str] = [f"{n}_{s}" for n in FRAME_NAMES for s in _STATS] + EXTRA_NAMES


def _periodicity(y: np.ndarray, f0: np.ndarray, p: AudioFeatureParams) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, p.n_fft // 2), p.n_fft)[::p.hop][:len(f0)]
    out = np.zeros(len(f0), np.float32)
    for t, fr in enumerate(frames):
        lag = int(round(p.sr / f0[t]))
        if lag <= 0 or lag >= len(fr) - 1:
            continue
        a, b = fr[:-lag], fr[lag:]
        den = np.sqrt(np.dot(a, a) * np.dot(b, b))
        out[t] = np.dot(a, b) / den if den > 1e-10 else 0.0
    return out


def frame_features(y: np.ndarray, p: AudioFeatureParams) -> np.ndarray:
    """``[T, 58]`` frame descriptors (see module docstring) of a mono float signal at ``p.sr``."""
    import librosa

    yt, _ = librosa.effects.trim(y, top_db=p.top_db)
    if len(yt) < p.n_fft:
        yt = np.pad(yt if len(yt) else y[:p.n_fft], (0, max(0, p.n_fft - len(yt))))
    S = np.abs(librosa.stft(yt, n_fft=p.n_fft, hop_length=p.hop, win_length=p.win)) ** 2
    T = S.shape[1]
    mel = librosa.feature.melspectrogram(S=S, sr=p.sr, n_mels=p.n_mels)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=p.n_mfcc)
    dmfcc = librosa.feature.delta(mfcc, width=min(9, T if T % 2 else T - 1)) if T >= 3 else np.zeros_like(mfcc)
    energy = 10 * np.log10(S.sum(0) / p.n_fft + 1e-10)
    d_energy = np.gradient(energy) if T > 1 else np.zeros_like(energy)
    f0 = librosa.yin(yt, fmin=p.fmin, fmax=p.fmax, sr=p.sr, frame_length=p.n_fft, hop_length=p.hop)[:T]
    per = _periodicity(yt, f0, p)
    voiced = ((per > 0.5) & (energy > energy.max() - 35)).astype(np.float32)
    f0_st = np.where(voiced > 0, 12 * np.log2(f0 / 55.0), 0.0)
    flat = np.log10(librosa.feature.spectral_flatness(S=S) + 1e-10)[0]
    zcr = librosa.feature.zero_crossing_rate(yt, frame_length=p.n_fft, hop_length=p.hop)[0][:T]
    cent = np.log(librosa.feature.spectral_centroid(S=S, sr=p.sr)[0] + 1)
    roll = np.log(librosa.feature.spectral_rolloff(S=S, sr=p.sr)[0] + 1)
    bw = np.log(librosa.feature.spectral_bandwidth(S=S, sr=p.sr)[0] + 1)
    logS = np.log(S + 1e-10)
    flux = np.r_[0.0, np.sqrt(np.mean(np.diff(logS, axis=1) ** 2, 0))] if T > 1 else np.zeros(T)
    contrast = librosa.feature.spectral_contrast(S=S, sr=p.sr, n_bands=6)
    feats = np.vstack([mfcc, dmfcc, energy, d_energy, f0_st, voiced, per, flat, zcr, cent, roll, bw, flux, contrast])
    return np.nan_to_num(feats.T.astype(np.float32))


def clip_statistics(frames: np.ndarray, p: AudioFeatureParams) -> np.ndarray:
    """``[len(STAT_NAMES)]`` functionals of ``frames`` (``[T, 58]``)."""
    energy = frames[:, FRAME_NAMES.index("log_energy")]
    speech = frames[energy > energy.max() - 40] if len(frames) else frames
    if len(speech) == 0:
        speech = np.zeros((1, frames.shape[1]), np.float32)
    pct = np.percentile(speech, [10, 50, 90], axis=0)
    base = np.stack([speech.mean(0), speech.std(0), pct[0], pct[1], pct[2]], 1).reshape(-1)
    voiced = frames[:, FRAME_NAMES.index("voiced")] > 0
    f0 = frames[voiced, FRAME_NAMES.index("f0_st")]
    dt = p.hop / p.sr
    if len(f0) >= 2:
        t = np.flatnonzero(voiced) * dt
        q10, q50, q90 = np.percentile(f0, [10, 50, 90])
        slope = np.polyfit(t, f0, 1)[0]
        pitch = [f0.mean(), f0.std(), q10, q50, q90, q90 - q10, slope]
    else:
        pitch = [0.0] * 7
    dur = len(frames) * dt
    e_slope = np.polyfit(np.arange(len(energy)) * dt, energy, 1)[0] if len(energy) >= 2 else 0.0
    onsets = np.sum(np.diff(voiced.astype(int)) == 1) / max(dur, 1e-3)
    extra = pitch + [voiced.mean() if len(voiced) else 0.0, dur, e_slope, onsets]
    return np.nan_to_num(np.concatenate([base, np.asarray(extra, np.float64)]).astype(np.float32))


def pool_frames(frames: np.ndarray, k: int) -> np.ndarray:
    """Average non-overlapping groups of ``k`` frames (the sequence view's rate)."""
    if k <= 1 or len(frames) < k:
        return frames
    n = len(frames) // k
    return frames[:n * k].reshape(n, k, -1).mean(1)


def extract_file(path: Path, p: AudioFeatureParams, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(frames [T, 58], stats [~300])`` of one audio file, cached under ``cache`` by the file's bytes and the
    params (not its path or time: a remounted or copied data folder keeps its cache)."""
    key = hashlib.sha1(bytes.fromhex(sha256_file(path)) + p.key().encode()).hexdigest()
    f = cache / f"{key}.npz"
    if f.exists():
        try:
            with np.load(f) as d:
                return d["frames"], d["stats"]
        except Exception:  # a truncated cache file is just recomputed
            log.warning("ignoring unreadable cache file %s", f)
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    y = y.mean(1)
    if sr != p.sr:
        import librosa

        y = librosa.resample(y, orig_sr=sr, target_sr=p.sr)
    frames = frame_features(y, p)
    stats = clip_statistics(frames, p)
    tmp = f.with_suffix(".tmp.npz")
    np.savez(tmp, frames=frames, stats=stats)
    tmp.replace(f)
    return frames, stats
