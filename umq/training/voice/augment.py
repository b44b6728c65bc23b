"""Room and device augmentation for training the voice encoder: one random "recording chain" per call.

A live user is a new speaker in a new room with a new microphone. Each training window is passed through a
random chain that imitates that (every step optional, parameters drawn per call from ``rng``):

1. **tempo/pitch**: resampling by a factor in [0.93, 1.07] (a small joint speed + pitch change, like a
   different voice or a slightly faster talker);
2. **room**: a random impulse response (:func:`umq.perception.voice.corrupt.synthetic_rir`, RT60 0.15-1.0 s,
   random direct-to-reverberant ratio), p 0.5;
3. **noise** at a random SNR (``snr_db``, default :data:`SNR_RANGE_DB`, 0-30 dB): white, pink, "room"
   (brown-ish low-frequency rumble + hum), or babble (recorded other talkers when given, else synthetic), p 0.8.
   A range down to -10 dB (soft speech under a room's fixed noise floor sits well below 0 dB) made the encoder
   better under such a floor but the fused answer worse, so it is an option, not the recipe
   (docs/voice-encoder.md, "Training under a noise floor");
4. **device**: band-limiting (a random high-pass 80-300 Hz and low-pass 3.4-7.5 kHz, or the 300-3400 Hz
   telephone band), p 0.5;
5. **codec**: 8-bit mu-law quantisation, or a round trip through 8 kHz, p 0.25;
6. **gain** -25..+6 dB with saturation at full scale (so loud gains clip), and hard clipping of 1-8 % of the
   samples, p 0.08.

All steps keep the length and return float32 in [-1, 1]; the input is never modified.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.signal import butter, resample_poly, sosfilt

from umq.perception.voice import corrupt as ac

SR = 16_000
SNR_RANGE_DB = (0.0, 30.0)
"""Per-window SNR range (dB) of the noise step in the shipped recipe."""


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (pitch up by the same ratio), trimmed or zero-padded to ``len(x)``."""
    x = np.asarray(x, np.float32)
    up, down = 100, round(100 * factor)
    y = resample_poly(x, up, down).astype(np.float32)
    out = np.zeros_like(x)
    n = min(len(y), len(x))
    out[:n] = y[:n]
    return out


def band_limit(x: np.ndarray, low_hz: float | None, high_hz: float | None, sr: int = SR) -> np.ndarray:
    """4th-order Butterworth high-pass at ``low_hz`` and/or low-pass at ``high_hz`` (None skips that side)."""
    y = np.asarray(x, np.float64)
    if low_hz:
        y = sosfilt(butter(4, low_hz, "highpass", fs=sr, output="sos"), y)
    if high_hz and high_hz < sr / 2:
        y = sosfilt(butter(4, high_hz, "lowpass", fs=sr, output="sos"), y)
    return y.astype(np.float32)


def telephone(x: np.ndarray) -> np.ndarray:
    """The narrow-band telephone channel: 300-3400 Hz."""
    return band_limit(x, 300.0, 3400.0)


def mu_law(x: np.ndarray, bits: int = 8) -> np.ndarray:
    """Quantise with a ``bits``-bit mu-law codec (G.711-like) and decode again."""
    mu = float(2 ** bits - 1)
    x = np.clip(np.asarray(x, np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((y + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu).astype(np.float32)


def narrowband(x: np.ndarray) -> np.ndarray:
    """Round trip through 8 kHz (what a narrow-band codec keeps)."""
    y = resample_poly(resample_poly(np.asarray(x, np.float64), 1, 2), 2, 1)[: len(x)]
    return y.astype(np.float32)


def room_noise(n: int, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Low-frequency room rumble (integrated white noise, high-passed at 20 Hz) plus a weak mains hum."""
    b = np.cumsum(rng.standard_normal(n))
    b = sosfilt(butter(2, 20.0, "highpass", fs=sr, output="sos"), b)
    b /= np.std(b) + 1e-12
    t = np.arange(n) / sr
    f = 50.0 if rng.random() < 0.5 else 60.0
    hum = sum(np.sin(2 * np.pi * f * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3))
    return (b + rng.uniform(0.0, 0.5) * hum / (np.std(hum) + 1e-12)).astype(np.float64)


def random_chain(x: np.ndarray, rng: np.random.Generator, talkers: Sequence[np.ndarray] | None = None,
                 snr_db: tuple[float, float] = SNR_RANGE_DB) -> np.ndarray:
    """One random room + device + noise chain (module docstring) applied to a clean window."""
    x = np.asarray(x, np.float32)
    if rng.random() < 0.5:
        x = speed(x, rng.uniform(0.93, 1.07))
    if rng.random() < 0.5:
        x = ac.reverberate(x, rng.uniform(0.15, 1.0), rng, direct=rng.uniform(0.3, 2.0))
    if rng.random() < 0.8:
        snr = rng.uniform(*snr_db)
        r = rng.random()
        if r < 0.25:
            x = ac.white_noise(x, snr, rng)
        elif r < 0.45:
            x = ac.mix_at_snr(x, ac.pink_noise(x.shape[0], rng), snr)
        elif r < 0.65:
            x = ac.mix_at_snr(x, room_noise(x.shape[0], rng), snr)
        else:
            x = ac.babble_noise(x, snr, talkers, rng, n_talkers=int(rng.integers(3, 7)))
    if rng.random() < 0.5:
        if rng.random() < 0.4:
            x = telephone(x)
        else:
            x = band_limit(x, rng.uniform(80.0, 300.0), rng.uniform(3400.0, 7500.0))
    if rng.random() < 0.25:
        x = mu_law(x) if rng.random() < 0.5 else narrowband(x)
    x = ac.gain(x, rng.uniform(-25.0, 6.0))
    if rng.random() < 0.08:
        x = ac.clip_fraction(x, rng.uniform(0.01, 0.08))
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def render_variant(x: np.ndarray, rng: np.random.Generator, talkers: list[np.ndarray],
                   snr_db: tuple[float, float] = SNR_RANGE_DB) -> np.ndarray:
    """One random corruption of a clean clip for the log-mel CRNN recipe (``umq.training.voice.train``, whose
    docstring lists it; its feature cache pre-renders these): reverberation, one noise, gain, clipping."""
    if rng.random() < 0.4:
        x = ac.reverberate(x, rng.uniform(0.2, 0.9), rng, direct=rng.uniform(0.5, 2.0))
    r = rng.random()
    snr = rng.uniform(*snr_db)
    if r < 0.35:
        x = ac.white_noise(x, snr, rng)
    elif r < 0.55:
        x = ac.mix_at_snr(x, ac.pink_noise(x.shape[0], rng), snr)
    elif r < 0.85:
        x = ac.babble_noise(x, snr, talkers, rng, n_talkers=int(rng.integers(3, 7)))
    x = ac.gain(x, rng.uniform(-20.0, 6.0))
    if rng.random() < 0.1:
        x = ac.clip_fraction(x, rng.uniform(0.01, 0.1))
    return x
