"""Text normalisation shared by training and the live front-end (one spelling of quotes, dashes, spaces)."""
from __future__ import annotations

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": " - ",
                         "\u2013": " - ", "\u2026": "...", "\u00a0": " "})


def normalize_text(text: str) -> str:
    """Typographic quotes/dashes/ellipsis -> ASCII and whitespace collapsed.

    MELD and Reddit use curly apostrophes (``I’m``) that an ASR or keyboard transcript writes as ``I'm``; the
    MiniLM tokenizer splits the two differently, so training and runtime text both go through this.
    """
    return " ".join(text.translate(_QUOTES).split())
