"""Raw-audio corruptions: what a real microphone does to speech, applied to float32 16 kHz mono arrays.

Every function takes the clean signal ``x`` (float, any length), returns a new float32 array of the same length
and never modifies its input. Randomness comes only from the ``rng`` argument (``numpy.random.Generator`` or a
seed), so corruptions are reproducible.

SNR convention (white and babble noise): ``snr_db = 10*log10(P_signal / P_noise)`` where both powers are mean
squares over the samples marked valid (all samples when ``valid`` is None). The noise is scaled exactly to that
ratio, so the realised SNR equals the requested one up to float32 rounding. The signal power includes the pauses
between words (the usual definition for additive-noise benchmarks), so a clip with long pauses is "noisier" in
its speech parts than its nominal SNR says.

Used by the voice encoder's training augmentation (:mod:`umq.training.voice.train`), by the tests of the cues,
and by the robustness evaluation.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.signal import fftconvolve, lfilter

SR = 16_000

RngLike = np.random.Generator | int | None


def _rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _as_f32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio [N], got shape {x.shape}")
    return x


def _power(x: np.ndarray, valid: np.ndarray | None = None) -> float:
    x64 = x.astype(np.float64)
    if valid is not None:
        x64 = x64[np.asarray(valid, bool)]
    return float(np.mean(x64 * x64)) if x64.size else 0.0


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Realised SNR of ``noisy = clean + noise`` (dB), the quantity the noise functions control."""
    clean = np.asarray(clean, np.float64)
    noise = np.asarray(noisy, np.float64) - clean
    ps, pn = _power(clean, valid), _power(noise, valid)
    return float(10.0 * np.log10(max(ps, 1e-30) / max(pn, 1e-30)))


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float, valid: np.ndarray | None = None) -> np.ndarray:
    """``x + g*noise`` with ``g`` chosen so that the SNR over the valid samples is exactly ``snr_db``.

    A silent ``x`` (power 0) is returned unchanged: an SNR relative to nothing is undefined. Invalid samples
    (``valid`` False: nothing arrived there) stay exactly as they were.
    """
    x = _as_f32(x)
    noise = np.asarray(noise, np.float64)
    if noise.shape != x.shape:
        raise ValueError(f"noise shape {noise.shape} != signal shape {x.shape}")
    ps, pn = _power(x, valid), _power(noise, valid)
    if ps <= 0.0 or pn <= 0.0:
        return x.copy()
    g = np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    out = x.astype(np.float64) + g * noise
    if valid is not None:
        v = np.asarray(valid, bool)
        out[~v] = x[~v]
    return out.astype(np.float32)


def white_noise(x: np.ndarray, snr_db: float, rng: RngLike = None, valid: np.ndarray | None = None) -> np.ndarray:
    """Add Gaussian white noise at ``snr_db``."""
    x = _as_f32(x)
    return mix_at_snr(x, _rng(rng).standard_normal(x.shape[0]), snr_db, valid)


def pink_noise(n: int, rng: RngLike = None) -> np.ndarray:
    """``n`` samples of 1/f noise (Voss-McCartney-like IIR approximation by P. Kellet), unit variance."""
    w = _rng(rng).standard_normal(n + 2000)
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    p = lfilter(b, a, w)[2000:]
    return (p / (p.std() + 1e-12)).astype(np.float64)


def synthetic_babble(n: int, rng: RngLike = None, talkers: int = 5, sr: int = SR) -> np.ndarray:
    """Speech-shaped babble without any recordings: ``talkers`` harmonic voices with random pitch contours and a
    syllabic (~4 Hz) on/off envelope, each through a random formant-like band-pass, summed. Unit variance."""
    rng = _rng(rng)
    t = np.arange(n) / sr
    out = np.zeros(n)
    for _ in range(talkers):
        f0 = rng.uniform(90, 260) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t + rng.uniform(0, 6.3)))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        v = sum(np.sin(k * phase) / k for k in range(1, 25) if k * f0.max() < sr / 2)
        syll = np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6.3))
        env = np.clip(syll, 0, None) ** 0.5
        v = v * env + 0.05 * rng.standard_normal(n) * env
        out += v / (np.std(v) + 1e-12)
    return out / (out.std() + 1e-12)


def babble_noise(x: np.ndarray, snr_db: float, talkers: Sequence[np.ndarray] | None = None, rng: RngLike = None,
                 valid: np.ndarray | None = None, n_talkers: int = 5) -> np.ndarray:
    """Add babble (several people talking) at ``snr_db``.

    ``talkers``: recordings of other speakers (float arrays, any lengths); ``n_talkers`` of them are picked, each
    is tiled/cut to ``len(x)`` from a random offset, normalised to equal power and summed. Without recordings a
    synthetic speech-shaped babble (:func:`synthetic_babble`) is used.
    """
    x = _as_f32(x)
    rng = _rng(rng)
    n = x.shape[0]
    if talkers:
        pick = rng.choice(len(talkers), size=min(n_talkers, len(talkers)), replace=False)
        noise = np.zeros(n)
        for i in pick:
            s = np.asarray(talkers[i], np.float64)
            if s.size == 0:
                continue
            reps = int(np.ceil((n + s.size) / s.size))
            s = np.tile(s, reps)
            off = int(rng.integers(0, s.size - n + 1))
            seg = s[off:off + n]
            noise += seg / (np.sqrt(np.mean(seg * seg)) + 1e-12)
    else:
        noise = synthetic_babble(n, rng, talkers=n_talkers)
    return mix_at_snr(x, noise, snr_db, valid)


def silence(x: np.ndarray) -> np.ndarray:
    """A muted microphone: all zeros (samples still arrive, so they stay valid)."""
    return np.zeros_like(_as_f32(x))


def mute(x: np.ndarray, start_s: float, dur_s: float, sr: int = SR) -> np.ndarray:
    """Zero ``[start_s, start_s + dur_s)`` (a mute button pressed mid-window)."""
    out = _as_f32(x).copy()
    a = max(0, int(round(start_s * sr)))
    out[a:a + max(0, int(round(dur_s * sr)))] = 0.0
    return out


def clip(x: np.ndarray, level: float) -> np.ndarray:
    """Hard clipping at ``+-level`` (a saturating preamp or ADC)."""
    if level <= 0:
        raise ValueError("clip level must be > 0")
    return np.clip(_as_f32(x), -level, level).astype(np.float32)


def clip_fraction(x: np.ndarray, fraction: float) -> np.ndarray:
    """Hard clipping at the level that saturates about ``fraction`` of the samples (0 < fraction < 1)."""
    x = _as_f32(x)
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be in (0, 1)")
    level = float(np.quantile(np.abs(x), 1.0 - fraction))
    return clip(x, max(level, 1e-6))


def gain(x: np.ndarray, db: float, saturate: bool = True) -> np.ndarray:
    """Multiply by ``10**(db/20)``; with ``saturate`` the result is clipped to the [-1, 1] full scale as a real
    converter would."""
    out = _as_f32(x) * np.float32(10.0 ** (db / 20.0))
    return np.clip(out, -1.0, 1.0) if saturate else out


def synthetic_rir(rt60_s: float, sr: int = SR, rng: RngLike = None, direct: float = 1.0,
                  predelay_s: float = 0.005) -> np.ndarray:
    """Synthetic room impulse response: a unit direct path, then exponentially decaying Gaussian noise whose energy
    falls by 60 dB in ``rt60_s`` seconds (amplitude ``exp(-6.908 t / rt60)``), starting ``predelay_s`` later.
    The tail's energy relative to the direct path is fixed by ``direct`` (tail scaled to unit energy / direct)."""
    rng = _rng(rng)
    if rt60_s <= 0:
        return np.array([1.0])
    n = int(rt60_s * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60_s)
    tail /= np.sqrt(np.sum(tail * tail)) + 1e-12
    d = int(predelay_s * sr)
    h = np.zeros(d + n)
    h[0] = direct
    h[d:] += tail
    return h


def reverberate(x: np.ndarray, rt60_s: float, rng: RngLike = None, sr: int = SR, direct: float = 1.0) -> np.ndarray:
    """Convolve with :func:`synthetic_rir`, keep the original length and RMS level."""
    x = _as_f32(x)
    h = synthetic_rir(rt60_s, sr, rng, direct)
    y = fftconvolve(x.astype(np.float64), h)[: x.shape[0]]
    px, py = _power(x), _power(y)
    if py > 0:
        y *= np.sqrt(px / py)
    return y.astype(np.float32)


def dropouts(x: np.ndarray, n_gaps: int, gap_s: float, rng: RngLike = None,
             sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """Lost packets: ``n_gaps`` spans of ``gap_s`` seconds at random places become zeros and are marked invalid.

    Returns ``(samples, valid)`` like :class:`streams.windows.AudioSlice` carries them.
    """
    x = _as_f32(x).copy()
    rng = _rng(rng)
    valid = np.ones(x.shape[0], bool)
    g = max(1, int(round(gap_s * sr)))
    for _ in range(n_gaps):
        a = int(rng.integers(0, max(1, x.shape[0] - g + 1)))
        x[a:a + g] = 0.0
        valid[a:a + g] = False
    return x, valid


CORRUPTIONS = ("clean", "white", "babble", "silence", "clip", "gain", "reverb", "dropout")


def corrupt(x: np.ndarray, kind: str, severity: float, rng: RngLike = None,
            talkers: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One named corruption at a severity in [0, 1] (0 = harmless, 1 = worst), returning ``(samples, valid)``.

    ``white``/``babble``: SNR from 30 dB (0) down to -5 dB (1); ``clip``: 0 % to 30 % of samples clipped;
    ``gain``: 0 to -40 dB; ``reverb``: RT60 0.1 s to 1.5 s; ``dropout``: 0 % to 80 % of the window lost in
    100 ms gaps; ``silence``: muted at any severity > 0.
    """
    x = _as_f32(x)
    rng = _rng(rng)
    s = float(np.clip(severity, 0.0, 1.0))
    valid = np.ones(x.shape[0], bool)
    if kind == "clean" or (s == 0.0 and kind != "silence"):
        return x.copy(), valid
    if kind == "white":
        return white_noise(x, 30.0 - 35.0 * s, rng), valid
    if kind == "babble":
        return babble_noise(x, 30.0 - 35.0 * s, talkers, rng), valid
    if kind == "silence":
        return silence(x), valid
    if kind == "clip":
        return clip_fraction(x, max(1e-3, 0.3 * s)), valid
    if kind == "gain":
        return gain(x, -40.0 * s), valid
    if kind == "reverb":
        return reverberate(x, 0.1 + 1.4 * s, rng), valid
    if kind == "dropout":
        n = int(round(0.8 * s * x.shape[0] / (0.1 * SR)))
        return dropouts(x, n, 0.1, rng)
    raise ValueError(f"unknown corruption {kind!r}; known: {CORRUPTIONS}")
