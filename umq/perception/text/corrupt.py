"""Raw-text corruptions for robustness training and tests: what a bad transcript looks like.

Every function takes a string and a ``numpy.random.Generator`` (deterministic given the seed) and returns a new
string; none of them looks at labels. Replacement words come from the MiniLM WordPiece vocabulary
(:func:`umq.perception.text.cues.vocabulary`), the same word list the garbled-text cue uses, unless a
``vocab`` sequence is given.

* :func:`drop_words` - each word removed with probability ``rate`` (ASR deletions, a cut-off window).
* :func:`replace_words` - each word replaced with probability ``rate`` by a random vocabulary word (ASR
  substitutions); with ``garble=True`` by a random letter string instead (garbage the vocabulary does not know).
* :func:`shuffle_words` - word order permuted (fragments out of order).
* :func:`truncate` - keep the first ``keep`` fraction of the words (at least ``min_words``).
* :func:`empty` - the empty string (no transcript).
* :func:`corrupt` - one of the above by name, the way a training loop samples them.
"""
from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np

CORRUPTIONS: tuple[str, ...] = ("drop", "replace", "garble", "shuffle", "truncate", "empty")

_VOCAB_LIST: list[str] | None = None


def _vocab(vocab: Sequence[str] | None) -> Sequence[str]:
    global _VOCAB_LIST
    if vocab is not None:
        if not len(vocab):
            raise ValueError("vocab must not be empty")
        return vocab
    if _VOCAB_LIST is None:
        from umq.perception.text.cues import vocabulary

        _VOCAB_LIST = sorted(w for w in vocabulary() if len(w) >= 2)
    return _VOCAB_LIST


def _check_rate(rate: float) -> float:
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    return rate


def drop_words(text: str, rate: float, rng: np.random.Generator) -> str:
    """Remove each word independently with probability ``rate``."""
    rate = _check_rate(rate)
    words = text.split()
    return " ".join(w for w, u in zip(words, rng.random(len(words))) if u >= rate)


def random_token(rng: np.random.Generator, length: int | None = None) -> str:
    """A random lower-case letter string (3-8 letters by default): a token no dictionary holds."""
    n = int(length) if length is not None else int(rng.integers(3, 9))
    letters = np.array(list(string.ascii_lowercase))
    return "".join(rng.choice(letters, n))


def replace_words(text: str, rate: float, rng: np.random.Generator, vocab: Sequence[str] | None = None,
                  garble: bool = False) -> str:
    """Replace each word with probability ``rate`` by a random vocabulary word (or a random letter string)."""
    rate = _check_rate(rate)
    words = text.split()
    if not words:
        return ""
    hit = rng.random(len(words)) < rate
    if garble:
        return " ".join(random_token(rng) if h else w for w, h in zip(words, hit))
    voc = _vocab(vocab)
    picks = rng.integers(0, len(voc), len(words))
    return " ".join(voc[p] if h else w for w, h, p in zip(words, hit, picks))


def shuffle_words(text: str, rng: np.random.Generator) -> str:
    words = text.split()
    order = rng.permutation(len(words))
    return " ".join(words[i] for i in order)


def truncate(text: str, keep: float, min_words: int = 0) -> str:
    """The first ``ceil(keep * words)`` words (at least ``min_words``, at most all)."""
    keep = _check_rate(keep)
    words = text.split()
    n = max(int(np.ceil(keep * len(words))), min(min_words, len(words)))
    return " ".join(words[:n])


def empty(text: str = "") -> str:
    return ""


def corrupt(text: str, kind: str, severity: float, rng: np.random.Generator) -> str:
    """Apply corruption ``kind`` (one of :data:`CORRUPTIONS`) at ``severity`` in [0, 1].

    ``severity`` is the drop/replace/garble rate, ``1 - keep`` for truncate, and is ignored by shuffle/empty.
    """
    severity = _check_rate(severity)
    if kind == "drop":
        return drop_words(text, severity, rng)
    if kind == "replace":
        return replace_words(text, severity, rng)
    if kind == "garble":
        return replace_words(text, severity, rng, garble=True)
    if kind == "shuffle":
        return shuffle_words(text, rng)
    if kind == "truncate":
        return truncate(text, 1.0 - severity)
    if kind == "empty":
        return empty(text)
    raise ValueError(f"unknown corruption {kind!r}; expected one of {CORRUPTIONS}")
