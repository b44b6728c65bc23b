"""Speech emotion corpora for the voice encoder, with one label space and per-corpus label sets.

Label space (:data:`VOICE_LABELS`): the app's Ekman-7 (:data:`umq.labels.EMOTIONS`) plus ``calm`` as an eighth
training class. RAVDESS and TurEV-DB label "calm", which is not "neutral" (low arousal, often positive); keeping
it apart lets the encoder learn it without blurring neutral. The app still sees 7 classes: the encoder merges
``calm`` into ``neutral`` at its output (log-sum-exp of the two logits).

Each corpus labels only some classes (:data:`CORPUS_CLASSES`); the training loss scores a clip only over its
corpus's classes (the other logits are masked out), so a TurEV "angry" is never pushed away from "disgust", a
class TurEV does not label.

Corpora (read from the shared data folder, never copied into the project):

* ``ravdess``: ``ravdess/labels.csv`` (actor 1-20; acted English, 8 classes incl. calm);
* ``urdu``, ``turev``: ``voice_extra/labels.csv`` (``corpus, speaker, emotion, audio``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from umq.labels import EMOTIONS

VOICE_LABELS: tuple[str, ...] = EMOTIONS + ("calm",)
CALM = len(EMOTIONS)
CORPUS_CLASSES: dict[str, tuple[str, ...]] = {
    "ravdess": VOICE_LABELS,
    "urdu": ("neutral", "happy", "sad", "angry"),
    "turev": ("calm", "happy", "sad", "angry"),
}
RAVDESS_CODE_NAMES = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust",
                      8: "surprised"}


@dataclass(frozen=True)
class VoiceClip:
    """One labelled clip: ``label`` indexes :data:`VOICE_LABELS`; ``speaker`` is unique across corpora."""

    corpus: str
    speaker: str
    label: int
    audio: Path
    actor: int | None = None  # RAVDESS actor number


def class_mask(corpus: str) -> list[bool]:
    """Which of the 8 :data:`VOICE_LABELS` the corpus labels."""
    keep = set(CORPUS_CLASSES[corpus])
    return [name in keep for name in VOICE_LABELS]


def _label_rows(path: Path, what: str) -> list[dict[str, str]]:
    """The rows of a corpus' ``labels.csv``; a missing file names itself and what to pass."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} labels not found: {path} (give the shared data folder with --data)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_ravdess(root: Path, actors: set[int] | None = None) -> list[VoiceClip]:
    path = Path(root) / "ravdess" / "labels.csv"
    out = []
    for r in _label_rows(path, "RAVDESS"):
        a = int(r["actor"])
        if actors is not None and a not in actors:
            continue
        name = RAVDESS_CODE_NAMES[int(r["emotion_code"])]
        out.append(VoiceClip("ravdess", f"ravdess-{a:02d}", VOICE_LABELS.index(name), path.parent / r["audio"], a))
    return out


def load_extra(root: Path, corpora: tuple[str, ...] = ("urdu", "turev")) -> list[VoiceClip]:
    path = Path(root) / "voice_extra" / "labels.csv"
    out = []
    for r in _label_rows(path, "voice_extra"):
        c = r["corpus"]
        if c not in corpora:
            continue
        name = r["emotion"].strip().lower()
        if name not in CORPUS_CLASSES[c]:
            raise ValueError(f"{path}: emotion {name!r} is not one of {c}'s classes {CORPUS_CLASSES[c]}")
        out.append(VoiceClip(c, r["speaker"], VOICE_LABELS.index(name), path.parent / r["audio"]))
    return out


def load_all(root: Path, ravdess_actors: set[int] | None = None) -> list[VoiceClip]:
    """RAVDESS (the given actors) + URDU + TurEV-DB."""
    return load_ravdess(root, ravdess_actors) + load_extra(root)
