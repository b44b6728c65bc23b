"""The project's emotion label set and the maps from each source data set onto it.

Every model head, data loader and UI speaks the same Ekman-7 order (``EMOTIONS``); source data sets name and
order their classes differently, so each gets an explicit map here instead of ad-hoc string handling spread
over loaders.
"""
from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
"""Ekman-7 in the project's canonical order; class index ``i`` of every classifier head is ``EMOTIONS[i]``."""

EMOTION_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

RAVDESS_CODES: dict[int, str] = {
    1: "neutral",
    2: "neutral",  # calm: RAVDESS's eighth class has no Ekman counterpart; closest is neutral
    3: "happy",
    4: "sad",
    5: "angry",
    6: "fearful",
    7: "disgust",
    8: "surprised",
}
"""RAVDESS emotion code (third field of the clip id) -> Ekman-7 name; calm maps to neutral."""

FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
"""FER2013's own class order (index = the integer label in the npz)."""

GOEMOTIONS_EKMAN_CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
"""Order of ``labels.txt`` of the GoEmotions Ekman split."""

_SYNONYMS: dict[str, str] = {
    # FER2013 / GoEmotions / MELD spellings -> canonical
    "anger": "angry",
    "angry": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fearful",
    "fearful": "fearful",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "neutral": "neutral",
    "calm": "neutral",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprised",
    "surprised": "surprised",
}


def canonical(name: str) -> str:
    """Map any known emotion spelling (FER2013, GoEmotions, MELD, RAVDESS) to its Ekman-7 name.

    Raises:
        KeyError: for a name outside the known vocabularies, so silent label corruption cannot happen.
    """
    key = name.strip().lower()
    if key not in _SYNONYMS:
        raise KeyError(f"unknown emotion name {name!r}; known: {sorted(_SYNONYMS)}")
    return _SYNONYMS[key]


def index_of(name: str) -> int:
    """Ekman-7 class index of any known emotion spelling."""
    return EMOTION_INDEX[canonical(name)]


def ravdess_label(code: int) -> int:
    """Ekman-7 index for a RAVDESS emotion code (1-8); calm (2) -> neutral."""
    if code not in RAVDESS_CODES:
        raise KeyError(f"RAVDESS emotion code must be 1-8, got {code}")
    return EMOTION_INDEX[RAVDESS_CODES[code]]


FER2013_TO_EKMAN: tuple[int, ...] = tuple(index_of(c) for c in FER2013_CLASSES)
"""``FER2013_TO_EKMAN[fer_label]`` is the Ekman-7 index."""

GOEMOTIONS_TO_EKMAN: tuple[int, ...] = tuple(index_of(c) for c in GOEMOTIONS_EKMAN_CLASSES)
"""``GOEMOTIONS_TO_EKMAN[goemotions_index]`` is the Ekman-7 index."""
