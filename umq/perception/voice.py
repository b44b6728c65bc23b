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
import threading
from dataclasses import dataclass

import librosa
import numpy as np
import torch
import torchaudio

from umq.device import to_device

from .voice_cues import VoiceCues, compute_cues

log = logging.getLogger(__name__)

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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


class _ChunkBatchedVAD:
    """silero-vad's 16 kHz network run over all of a clip's 32 ms chunks at once.

    silero's own ``audio_forward`` steps the whole network once per chunk (63 Python-level steps for 2 s). Only
    its LSTM cell carries state from chunk to chunk: the STFT and the convolutional encoder see one chunk plus the
    64 samples before it. So the encoder runs on every chunk as one batch, the cell's weights run as a one-layer
    ``nn.LSTM`` over the chunk sequence (the same equations), and the output head as one batch: 2 s costs about
    4 ms instead of 27 ms on this 2-core CPU. It reaches into the JIT model's submodules, so
    :meth:`SileroVAD.model` checks it against ``audio_forward`` on test signals when it loads and keeps the
    original path if the two differ (another silero version, say).
    """

    def __init__(self, jit_model) -> None:
        net = jit_model._model  # the 16 kHz network
        self.context = int(net.context_size_samples)
        self.net = net
        cell = dict(net.decoder.rnn.named_parameters())
        self.lstm = torch.nn.LSTM(cell["weight_ih"].shape[1], cell["weight_hh"].shape[1])
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, f"{name}_l0").copy_(cell[name])
        self.lstm.eval()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: 1-D float32, a whole number of chunks. Returns one speech probability per chunk."""
        chunks = x.view(-1, VAD_CHUNK)
        before = torch.cat([chunks.new_zeros(1, self.context), chunks[:-1, -self.context:]], 0)
        z = self.net.encoder(self.net.run_extractors(torch.cat([before, chunks], 1))).squeeze(-1)  # [n, 128]
        h, _ = self.lstm(z[:, None, :])  # [n, 1, 128], zero initial state as after reset_states()
        return self.net.decoder.decoder(h[:, 0, :, None]).squeeze(1).mean(1)


class SileroVAD:
    """silero-vad (the JIT model shipped in the ``silero_vad`` package), loaded once per process on first use.

    Always runs on CPU (it is a tiny recurrent model fed from host audio), single-threaded for the duration of
    the call (measured on a loaded 2-core machine: 2 threads took 0.2-6 s per 2 s window, 1 thread 60 ms).
    Importing ``silero_vad`` calls ``torch.set_num_threads(1)``; the loader restores the caller's thread count.
    The JIT file is verified against its recorded SHA-256 (:mod:`umq.perception.model_digests`) before loading.
    Chunks are evaluated together (:class:`_ChunkBatchedVAD`) when that matches silero's own loop on load.
    """

    _model = None
    _batched: _ChunkBatchedVAD | None = None
    _lock = threading.RLock()
    TOLERANCE = 1e-4
    """Largest difference from silero's own per-chunk loop accepted for the batched path (measured: ~5e-7)."""

    @classmethod
    def model(cls):
        if cls._model is None:
            with cls._lock:
                if cls._model is None:
                    threads = torch.get_num_threads()
                    try:
                        import warnings

                        from silero_vad.utils_vad import init_jit_model

                        from .packaged import packaged_model_file
                        # the same file load_silero_vad() reads, verified against its SHA-256 first
                        path = packaged_model_file("silero_vad", "silero-vad", "silero_vad.jit", "silero-vad model")
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            m = init_jit_model(str(path))
                        m.eval()
                        cls._batched = cls._checked_batched(m)
                    finally:
                        torch.set_num_threads(threads)
                    cls._model = m
        return cls._model

    @staticmethod
    def _checked_batched(m) -> _ChunkBatchedVAD | None:
        """The batched path if it reproduces ``audio_forward`` on speech-like, noisy, silent and one-chunk input."""
        try:
            batched = _ChunkBatchedVAD(m)
            rng = np.random.default_rng(0)
            t = np.arange(2 * SR) / SR
            voiced = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
            tests = [voiced + 0.02 * rng.standard_normal(t.size).astype(np.float32),
                     0.1 * rng.standard_normal(3 * SR).astype(np.float32), np.zeros(SR, np.float32),
                     voiced[:VAD_CHUNK]]
            tests = [np.pad(x, (0, -x.size % VAD_CHUNK)) for x in tests]  # whole chunks, as probs() pads them
            torch.set_num_threads(1)
            with torch.inference_mode():
                worst = max(float((batched(torch.from_numpy(x)) - m.audio_forward(torch.from_numpy(x)[None], SR)[0])
                                  .abs().max()) for x in tests)
        except Exception as exc:  # noqa: BLE001 - another silero layout: keep its own loop
            log.warning("silero-vad: chunk-batched evaluation unavailable (%s); using its per-chunk loop", exc)
            return None
        if worst > SileroVAD.TOLERANCE:
            log.warning("silero-vad: chunk-batched evaluation differs from its own loop by %.2g; using the loop",
                        worst)
            return None
        log.debug("silero-vad: chunk-batched evaluation verified (max difference %.2g)", worst)
        return batched

    @classmethod
    def batched_available(cls) -> bool:
        """True when the all-chunks-at-once form passed its check against silero's loop on load."""
        cls.model()
        return cls._batched is not None

    @classmethod
    def probs(cls, x: np.ndarray, batched: bool = True) -> np.ndarray:
        """Speech probability per 512-sample (32 ms) chunk, ``ceil(N / 512)`` values; state reset per call.

        ``batched=False`` runs silero's own per-chunk loop (the reference the batched form is checked against;
        the bench times both)."""
        x = np.asarray(x, np.float32)
        n_chunks = -(-x.shape[0] // VAD_CHUNK)
        if n_chunks == 0:
            return np.zeros(0, np.float32)
        x = np.pad(x, (0, n_chunks * VAD_CHUNK - x.shape[0]))  # silero pads the last chunk with zeros too
        with cls._lock, torch.inference_mode():
            model = cls.model()
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # small sequential steps: extra threads only add barrier waits
            try:
                xt = torch.from_numpy(np.ascontiguousarray(x))
                fast = cls._batched if batched else None
                out = fast(xt) if fast is not None else model.audio_forward(xt[None], SR)[0]
            finally:
                torch.set_num_threads(threads)
        return out[:n_chunks].numpy().astype(np.float32)


def speech_frames(vad_probs: np.ndarray, t: int, threshold: float = VAD_THRESHOLD) -> np.ndarray:
    """Map per-chunk VAD probabilities onto the 10 ms frames (frame ``i`` centred at sample ``160 i``)."""
    idx = np.minimum((np.arange(t) * HOP) // VAD_CHUNK, max(0, len(vad_probs) - 1))
    return np.asarray(vad_probs)[idx] >= threshold if len(vad_probs) else np.zeros(t, bool)


# ---------------------------------------------------------------------------------------------- device side
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


# ------------------------------------------------------------------------------------------ normalisation
@dataclass
class FeatureStats:
    """Prior of the speaker normaliser: per-channel mean and (within-speaker) variance of voiced frames of the
    training speakers, plus how many frames the prior weighs and the running memory.

    ``names`` is the channel layout the stats belong to: :data:`FEATURE_NAMES` (log-mel front-end, 10 ms frames)
    or :data:`umq.perception.voice_whisper.WHISPER_FEATURE_NAMES` (Whisper front-end, 20 ms frames); the
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
        from .voice_whisper import WHISPER_FEATURE_NAMES

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
    """

    features: torch.Tensor
    mask: torch.Tensor
    cues: VoiceCues
    speech: np.ndarray
    pitched: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.features.shape[-1])


def collate(items: list[VoiceFeatures]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack windows into ``x [B, 69, T]`` and ``mask [B, T]`` (shorter ones zero-padded and masked)."""
    t = max(it.frames for it in items)
    dev = items[0].features.device
    x = torch.zeros(len(items), items[0].features.shape[0], t, device=dev)
    m = torch.zeros(len(items), t, dtype=torch.bool, device=dev)
    for i, it in enumerate(items):
        x[i, :, : it.frames] = it.features
        m[i, : it.frames] = it.mask
    return x, m


class VoiceFrontEnd:
    """Features + cues for one session's audio windows, keeping the running speaker normaliser.

    Args:
        stats: the normaliser prior: a :class:`FeatureStats`, its JSON dict, or an object with a
            ``feature_stats`` attribute (a loaded :class:`~umq.perception.voice_net.VoiceEmotionNet`).
        device: where features are computed and returned (default: CUDA when available).
        normalize: True to adapt to the speaker (running statistics), False for the fixed prior only.
        vad: False skips silero-vad (speech ratio 0, the normaliser then learns from all valid frames); for tests
            and for environments without the model.

    Call it with ``(samples, valid)`` per window; :meth:`reset` starts a new speaker/session.
    """

    def __init__(self, stats=None, device: torch.device | str | None = None, normalize: bool = True,
                 vad: bool = True) -> None:
        if stats is None:
            from .voice_net import load_voice_net  # the shipped prior

            stats = load_voice_net(device="cpu").feature_stats
        if hasattr(stats, "feature_stats"):
            stats = stats.feature_stats
        if isinstance(stats, dict):
            stats = FeatureStats.from_json(stats)
        self.device = torch.device(device) if device is not None else default_device()
        self.normalizer = SpeakerNormalizer(stats, self.device, enabled=normalize)
        self.use_vad = vad
        self.windows = 0

    def reset(self) -> None:
        """Forget the speaker (new session or new person); the prior stays."""
        self.normalizer.reset()
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
        stats = self.normalizer.stats
        if stats.whisper:
            from .voice_whisper import whisper_frame_features

            tracks = descriptor_tracks(x)
            f = whisper_frame_features(x, tracks, descriptor_matrix(tracks), speech, fv)
            feats = to_device(f["feats"], self.device)
            speech_f, pitched_f, fv_f = f["speech"], f["pitched"], f["fvalid"]
        else:
            feats, tracks = raw_features(x, self.device)
            speech_f, pitched_f, fv_f = speech, tracks["pitched"][:t], fv
        with torch.inference_mode():
            sp, pt, fvt = (to_device(a, self.device) for a in (speech_f, pitched_f, fv_f))
            if update:
                self.normalizer.update(feats, normalizer_weights(sp, pt, fvt, stats.n_channels, stats.f0_channel))
            z = self.normalizer(feats, pt, fvt).to(torch.float32)
        cues = compute_cues(cue_x, v, n_bad, probs, cv, tracks["pitched"][:t], fv, duration)
        self.windows += 1
        return VoiceFeatures(z, fvt, cues, speech_f, pitched_f)
