"""Voice features: the host-side descriptors (pitch, periodicity, level, flatness, ZCR), the device-side
log-mel, and the constants that fix their geometry (16 kHz, 25 ms frames, 10 ms hop, 64 mels).

They are shared by the live front-end (:mod:`umq.perception.voice.frontend`), the encoder
(:mod:`umq.perception.voice.net`) and training, which is why they live apart from the front-end's state.
"""
from __future__ import annotations

import librosa
import numpy as np
import torch
import torchaudio

from umq.device import to_device

SR = 16_000
N_FFT = 400
HOP = 160
N_MELS = 64
F_MIN, F_MAX = 50.0, 8000.0
LOG_EPS = 1e-6
WINDOW_S = 2.0
WINDOW_SAMPLES = int(WINDOW_S * SR)
YIN_FMIN, YIN_FMAX, YIN_FRAME = 60.0, 600.0, 1024
PITCH_PERIODICITY = 0.5
PITCH_MIN_DB = -75.0  # frames quieter than this have no usable pitch (a silent mic)
VAD_CHUNK = 512
VAD_THRESHOLD = 0.5

DESCRIPTORS: tuple[str, ...] = ("log2_f0", "periodicity", "rms_db", "log_flatness", "zcr")
FEATURE_NAMES: tuple[str, ...] = tuple(f"mel{i:02d}" for i in range(N_MELS)) + DESCRIPTORS
N_FEATURES = len(FEATURE_NAMES)
F0_CHANNEL = N_MELS + DESCRIPTORS.index("log2_f0")

# speaker normaliser defaults (frames are 10 ms; only voiced frames count)
PRIOR_FRAMES = 300.0
MEMORY_FRAMES = 3000.0


def n_frames(n_samples: int) -> int:
    return 1 + n_samples // HOP


# ----------------------------------------------------------------------------------------------- host side
def sanitize(samples: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Finite float32 copy clamped to [-1, 1], the valid mask with non-finite samples removed, and their count."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    v = np.ones(x.shape[0], bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    if v.shape[0] != x.shape[0]:
        raise ValueError(f"valid mask has {v.shape[0]} entries for {x.shape[0]} samples")
    finite = np.isfinite(x)
    n_bad = int(x.shape[0] - finite.sum())
    x = np.where(finite, x, np.float32(0.0))
    x = np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)
    v = v & finite
    x[~v] = 0.0
    return x, v, n_bad


def to_mono_16k(samples: np.ndarray, valid: np.ndarray | None = None, rate: int = SR,
                longest_s: float = 30.0) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Any input a caller may hand over -> 16 kHz mono float32 (+ valid mask), at most the last ``longest_s``.

    Stereo/multichannel (``[N, C]`` or ``[C, N]``, C <= 8) is averaged; another sample rate is resampled (soxr),
    NaN/inf kept as NaN so :func:`sanitize` still counts them. Returns ``(x, valid, duration_s)`` where
    ``duration_s`` is the length handed in (for the "too short" / "too long" cues).
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1) if x.shape[1] <= 8 and x.shape[1] < x.shape[0] else x.mean(axis=0)
    x = x.reshape(-1)
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    duration = x.shape[0] / float(rate)
    if rate != SR and x.shape[0] > 0:
        import soxr

        bad = ~np.isfinite(x)
        y = soxr.resample(np.where(bad, 0.0, x).astype(np.float32), rate, SR).astype(np.float32)
        m = np.minimum((np.arange(y.shape[0]) * (rate / SR)).astype(np.int64), x.shape[0] - 1)
        y[bad[m]] = np.nan
        v = None if valid is None else np.asarray(valid, bool).reshape(-1)[m]
        x, valid = y, v
    keep = int(longest_s * SR)
    if x.shape[0] > keep:
        x = x[-keep:]
        valid = None if valid is None else np.asarray(valid, bool).reshape(-1)[-keep:]
    return x, valid, duration


def frame_valid(valid: np.ndarray, frame: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """A 10 ms frame is valid when at least half of its centred ``frame``-sample analysis window arrived."""
    n = valid.shape[0]
    t = n_frames(n)
    c = np.concatenate([[0], np.cumsum(valid.astype(np.int64))])
    centres = np.arange(t) * hop
    a = np.clip(centres - frame // 2, 0, n)
    b = np.clip(centres + frame // 2, 0, n)
    return (c[b] - c[a]) >= frame // 2


def chunk_valid(valid: np.ndarray, chunk: int = VAD_CHUNK) -> np.ndarray:
    n = valid.shape[0]
    k = -(-n // chunk)
    pad = np.zeros(k * chunk, bool)
    pad[:n] = valid
    return pad.reshape(k, chunk).mean(axis=1) >= 0.5


def descriptor_tracks(x: np.ndarray) -> dict[str, np.ndarray]:
    """librosa descriptors at the mel frame rate (``T = 1 + N // 160`` frames, centred).

    Returns float32 arrays ``f0`` (Hz, yin), ``periodicity`` (0..1), ``pitched`` (bool), ``rms_db``,
    ``log_flatness``, ``zcr``.
    """
    x = np.asarray(x, np.float32)
    t = n_frames(x.shape[0])
    if x.shape[0] < YIN_FRAME // 2 + 1:
        x = np.pad(x, (0, YIN_FRAME // 2 + 1 - x.shape[0]))
    f0 = librosa.yin(x, fmin=YIN_FMIN, fmax=YIN_FMAX, sr=SR, frame_length=YIN_FRAME, hop_length=HOP,
                     center=True)[:t]
    # periodicity: normalised autocorrelation of the yin frame at the yin period
    xp = np.pad(x.astype(np.float64), (YIN_FRAME // 2, YIN_FRAME // 2))
    frames = librosa.util.frame(xp, frame_length=YIN_FRAME, hop_length=HOP, axis=0)[:t]  # [T, 1024]
    pmax = int(np.ceil(SR / YIN_FMIN))
    w = YIN_FRAME - pmax
    period = np.clip(np.round(SR / np.maximum(f0, 1.0)).astype(np.int64), 1, pmax)
    a = frames[:, :w]
    b = np.take_along_axis(frames, period[:, None] + np.arange(w)[None, :], axis=1)
    num = np.sum(a * b, axis=1)
    den = np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1))
    periodicity = np.where(den > 1e-12, num / np.maximum(den, 1e-30), 0.0).clip(0.0, 1.0)
    rms = librosa.feature.rms(y=x, frame_length=N_FFT, hop_length=HOP, center=True)[0, :t]
    rms_db = 20.0 * np.log10(rms + 1e-5)
    pitched = (periodicity >= PITCH_PERIODICITY) & (f0 >= YIN_FMIN) & (f0 <= YIN_FMAX) & (rms_db > PITCH_MIN_DB)
    flat = librosa.feature.spectral_flatness(y=x, n_fft=N_FFT, hop_length=HOP, center=True)[0, :t]
    zcr = librosa.feature.zero_crossing_rate(x, frame_length=N_FFT, hop_length=HOP, center=True)[0, :t]
    return {
        "f0": f0.astype(np.float32),
        "periodicity": periodicity.astype(np.float32),
        "pitched": pitched,
        "rms_db": rms_db.astype(np.float32),
        "log_flatness": np.log(flat + 1e-6).astype(np.float32),
        "zcr": zcr.astype(np.float32),
    }


def descriptor_matrix(tr: dict[str, np.ndarray]) -> np.ndarray:
    """The 5 descriptor channels ``[5, T]`` in :data:`DESCRIPTORS` order (log2 f0 is 0 on unpitched frames)."""
    lf0 = np.where(tr["pitched"], np.log2(np.maximum(tr["f0"], 1.0)), 0.0)
    return np.stack([lf0, tr["periodicity"], tr["rms_db"], tr["log_flatness"], tr["zcr"]]).astype(np.float32)



class MelExtractor(torch.nn.Module):
    """``log(MelSpectrogram(x) + 1e-6)`` ``[..., 64, T]`` on whatever device the module lives on."""

    def __init__(self) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SR, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP, f_min=F_MIN, f_max=F_MAX,
            n_mels=N_MELS, power=2.0, center=True, pad_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(x) + LOG_EPS)


_MEL: dict[str, MelExtractor] = {}


def mel_extractor(device: torch.device | str) -> MelExtractor:
    key = str(torch.device(device))
    if key not in _MEL:
        _MEL[key] = MelExtractor().to(device).eval()
    return _MEL[key]


def raw_features(x: np.ndarray, device: torch.device | str = "cpu", tracks: dict | None = None
                 ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Un-normalised frame features ``[69, T]`` on ``device`` (64 log-mels + 5 descriptors) and the host tracks.

    ``x`` must already be sanitised. This is the single feature definition shared by training and live use.
    """
    tracks = descriptor_tracks(x) if tracks is None else tracks
    desc = descriptor_matrix(tracks)
    t = n_frames(x.shape[0])
    if x.shape[0] <= N_FFT // 2:  # reflect padding needs more than half a frame
        x = np.pad(x, (0, N_FFT // 2 + 1 - x.shape[0]))
    with torch.inference_mode():
        xt = to_device(np.asarray(x, np.float32), device)
        mel = mel_extractor(device)(xt)[:, :t]
        d = to_device(desc[:, :t], device)
        feats = torch.cat([mel, d], dim=0)
    return feats, tracks


