"""Voice activity: silero-vad (shipped in the ``silero_vad`` package), batched over a window's 32 ms chunks."""
from __future__ import annotations

import logging
import threading

import numpy as np
import torch

from umq.perception.voice.features import HOP, SR, VAD_CHUNK, VAD_THRESHOLD

log = logging.getLogger(__name__)


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
    The JIT file is verified against its recorded SHA-256 (:mod:`umq.perception.digests`) before loading.
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

                        from umq.perception.packaged import packaged_model_file
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


