"""Readers for the labelled text sets: GoEmotions-Ekman ``.tsv`` and MELD ``.csv``, with labels mapped to the app order.

Both readers return a :class:`TextRows`: parallel lists of texts, label tuples (indices into
:data:`umq.labels.EMOTIONS`), group ids and a count of the rows that were skipped, by reason.

Label maps (app order ``neutral, happy, sad, angry, fearful, disgust, surprised``):
    * GoEmotions-Ekman: the label column indexes the ``goemotions_ekman_labels.txt`` beside the ``.tsv``
      (``anger, disgust, fear, joy, neutral, sadness, surprise``); names are mapped with
      :func:`umq.labels.canonical` (anger->angry, fear->fearful, joy->happy, sadness->sad, surprise->surprised).
    * MELD: the ``Emotion`` column (neutral, joy, surprise, anger, sadness, disgust, fear), same map.

Multi-label rows (about 9 % of GoEmotions-Ekman; MELD has none) keep every label in ``labels`` (de-duplicated, in
file order). What a consumer does with them is its choice and documented there: training splits the row's unit
weight evenly over its labels (soft target), evaluation skips them (they have no single right answer) and counts
them as ``skipped["multi_label"]``.

Rows whose emotion is outside the label set, whose label index is out of range, or whose text is empty are
skipped and counted, never silently mapped.

Nothing here needs torch.
"""
from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from umq import paths
from umq.labels import EMOTIONS, canonical
from umq.perception.text.normalize import normalize_text

REPO_ROOT = paths.REPO_ROOT

GOEMOTIONS_LABELS_FILE = "goemotions_ekman_labels.txt"

MELD_EMOTIONS: tuple[str, ...] = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
"""Values of MELD's ``Emotion`` column."""





@dataclass
class TextRows:
    """Parallel lists of one labelled text file.

    Attributes:
        texts: normalised utterances (:func:`normalize_text`).
        labels: per row, the app-order label indices (one for single-label rows, more for multi-label ones).
        groups: per row, the id rows must be split by (MELD ``Dialogue_ID``; GoEmotions comment id).
        source: ``"goemotions"`` or ``"meld"``.
        skipped: reason -> number of rows left out.
        path: the file read.
    """

    texts: list[str]
    labels: list[tuple[int, ...]]
    groups: list[str]
    source: str
    skipped: dict[str, int] = field(default_factory=dict)
    path: str = ""

    def __post_init__(self) -> None:
        if not (len(self.texts) == len(self.labels) == len(self.groups)):
            raise ValueError("texts, labels and groups must have the same length")
        for lab in self.labels:
            if not lab or any(not 0 <= i < len(EMOTIONS) for i in lab):
                raise ValueError(f"bad label tuple {lab!r}")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def single(self) -> list[int]:
        """Indices of single-label rows."""
        return [i for i, lab in enumerate(self.labels) if len(lab) == 1]

    def single_label(self) -> TextRows:
        """Only the single-label rows; multi-label ones are counted in ``skipped["multi_label"]``."""
        keep = self.single
        skipped = dict(self.skipped)
        n_multi = len(self) - len(keep)
        if n_multi:
            skipped["multi_label"] = skipped.get("multi_label", 0) + n_multi
        return TextRows([self.texts[i] for i in keep], [self.labels[i] for i in keep],
                        [self.groups[i] for i in keep], self.source, skipped, self.path)

    def y(self) -> list[int]:
        """First label per row (use on :meth:`single_label` rows)."""
        return [lab[0] for lab in self.labels]

    def class_counts(self) -> dict[str, int]:
        c = Counter(lab[0] for lab in self.labels if len(lab) == 1)
        return {EMOTIONS[i]: c.get(i, 0) for i in range(len(EMOTIONS))}


def read_label_names(path: str | Path) -> tuple[str, ...]:
    """One class name per non-empty line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"GoEmotions label file not found: {p}")
    names = tuple(line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    if not names:
        raise ValueError(f"no label names in {p}")
    return names


def read_goemotions(path: str | Path, labels_path: str | Path | None = None) -> TextRows:
    """Read a GoEmotions-Ekman ``.tsv`` (text, comma-separated label indices, comment id).

    Args:
        path: the ``.tsv``.
        labels_path: the class-name file the indices point into; default ``goemotions_ekman_labels.txt`` beside
            ``path``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"GoEmotions file not found: {p}")
    names = read_label_names(labels_path if labels_path is not None else p.parent / GOEMOTIONS_LABELS_FILE)
    to_app: list[int | None] = []
    for n in names:
        try:
            to_app.append(EMOTIONS.index(canonical(n)))
        except KeyError:
            to_app.append(None)  # a class outside the app label set: rows using it are skipped
    texts, labels, groups = [], [], []
    skipped: Counter = Counter()
    with p.open(encoding="utf-8", newline="") as f:
        for k, line in enumerate(f):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                skipped["malformed"] += 1
                continue
            text = normalize_text(parts[0])
            if not text:
                skipped["empty_text"] += 1
                continue
            try:
                idx = [int(s) for s in parts[1].split(",") if s.strip()]
            except ValueError:
                skipped["malformed"] += 1
                continue
            if not idx or any(not 0 <= i < len(names) for i in idx):
                skipped["label_out_of_range"] += 1
                continue
            mapped = [to_app[i] for i in idx]
            if any(m is None for m in mapped):
                skipped["emotion_outside_label_set"] += 1
                continue
            lab = tuple(dict.fromkeys(mapped))  # de-duplicate, keep file order
            texts.append(text)
            labels.append(lab)
            groups.append(parts[2].strip() if len(parts) > 2 and parts[2].strip() else f"row{k}")
    return TextRows(texts, labels, groups, "goemotions", dict(skipped), str(p))


def read_meld(path: str | Path) -> TextRows:
    """Read a MELD ``*_sent_emo.csv`` (columns ``Utterance``, ``Emotion``, ``Dialogue_ID`` ...)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"MELD file not found: {p}")
    texts, labels, groups = [], [], []
    skipped: Counter = Counter()
    with p.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"Utterance", "Emotion"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{p} is not a MELD csv: missing columns {sorted(missing)}")
        for k, row in enumerate(reader):
            text = normalize_text(row.get("Utterance") or "")
            if not text:
                skipped["empty_text"] += 1
                continue
            try:
                lab = EMOTIONS.index(canonical(row.get("Emotion") or ""))
            except KeyError:
                skipped["emotion_outside_label_set"] += 1
                continue
            texts.append(text)
            labels.append((lab,))
            dia = (row.get("Dialogue_ID") or "").strip()
            groups.append(f"dia{dia}" if dia else f"row{k}")
    return TextRows(texts, labels, groups, "meld", dict(skipped), str(p))


def read_text_file(path: str | Path) -> TextRows:
    """Dispatch on the suffix: ``.tsv`` -> :func:`read_goemotions`, ``.csv`` -> :func:`read_meld`."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".tsv":
        return read_goemotions(p)
    if suffix == ".csv":
        return read_meld(p)
    raise ValueError(f"unsupported text data file {p} (expected a GoEmotions-Ekman .tsv or a MELD .csv)")


def data_root(explicit: str | Path | None = None) -> Path | None:
    """The shared data folder: ``explicit``, else env ``UMQ_DATA``, else ``../shared/data`` beside the repo root.

    Returns None when none of them exists (a fresh clone without the data).
    """
    for cand in (explicit, os.environ.get("UMQ_DATA"), REPO_ROOT.parent / "shared" / "data"):
        if cand and Path(cand).expanduser().is_dir():
            return Path(cand).expanduser().resolve()
    return None


def text_dir(explicit: str | Path | None = None) -> Path | None:
    """``<data root>/text`` when it exists (also accepts ``explicit`` pointing at the text folder itself)."""
    root = data_root(explicit)
    if root is None:
        return None
    if (root / "text").is_dir():
        return root / "text"
    if (root / GOEMOTIONS_LABELS_FILE).is_file() or any(root.glob("meld_*_sent_emo.csv")):
        return root
    return None


# ------------------------------------------------------------------------------------------- dialogue corpora
EMORYNLP_MAP: dict[str, str | None] = {"neutral": "neutral", "joyful": "happy", "scared": "fearful", "mad": "angry",
                                       "sad": "sad", "peaceful": None, "powerful": None}
"""EmoryNLP's seven emotions -> app labels; ``Peaceful`` and ``Powerful`` have no Ekman counterpart: such lines are
kept as *context* for their neighbours but carry no training target (label -1)."""

DAILYDIALOG_MAP: dict[str, str] = {"neutral": "neutral", "happiness": "happy", "happy": "happy", "sadness": "sad",
                                   "anger": "angry", "fear": "fearful", "disgust": "disgust",
                                   "surprise": "surprised", "surprised": "surprised"}

MAX_LINE_CHARS = 2000
"""Corpus lines longer than this are cut (nothing in the corpora is; a guard against a broken file)."""


@dataclass
class DialogueLines:
    """Utterances in dialogue order, with what a context model needs.

    Attributes:
        texts: normalised utterances.
        labels: app-order label index per line, ``-1`` when the line has no usable label (context only).
        dialogue: per line, the dialogue/scene it belongs to; lines of one dialogue are contiguous, in turn order.
        speaker: per line, the speaker's name or turn letter (``""`` when unknown).
        group: per line, the id splits must respect (an episode for the Friends corpora, the dialogue otherwise).
        source: ``"meld"``, ``"emorynlp"`` or ``"dailydialog"``.
        skipped: reason -> number of lines left out or left unlabelled.
    """

    texts: list[str]
    labels: list[int]
    dialogue: list[str]
    speaker: list[str]
    group: list[str]
    source: str
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def previous(self, i: int, n: int) -> list[int]:
        """Indices of up to ``n`` lines before line ``i`` in its dialogue, oldest first."""
        out = []
        j = i - 1
        while j >= 0 and len(out) < n and self.dialogue[j] == self.dialogue[i]:
            out.append(j)
            j -= 1
        return out[::-1]

    def subset(self, keep: list[int]) -> DialogueLines:
        return DialogueLines([self.texts[i] for i in keep], [self.labels[i] for i in keep],
                             [self.dialogue[i] for i in keep], [self.speaker[i] for i in keep],
                             [self.group[i] for i in keep], self.source, dict(self.skipped))


def _read_csv_rows(p: Path, required: set[str], what: str) -> list[dict]:
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    with p.open(encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.DictReader(f)
        missing = required - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{p} is not a {what} csv: missing columns {sorted(missing)}")
        return list(reader)


def _int(v: str | None, default: int = 0) -> int:
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        return default


def _assemble(rows: list[tuple], source: str, skipped: Counter) -> DialogueLines:
    """``rows`` of (sort key, text, label, dialogue, speaker, group) -> :class:`DialogueLines` in dialogue order."""
    rows.sort(key=lambda r: r[0])
    out = DialogueLines([], [], [], [], [], source, {})
    for _, text, lab, dia, spk, grp in rows:
        text = normalize_text(text)[:MAX_LINE_CHARS]
        if not text:
            skipped["empty_text"] += 1
            continue
        out.texts.append(text)
        out.labels.append(lab)
        out.dialogue.append(dia)
        out.speaker.append(spk)
        out.group.append(grp)
    out.skipped = dict(skipped)
    return out


def read_meld_dialogues(path: str | Path) -> DialogueLines:
    """MELD ``*_sent_emo.csv`` in dialogue order (``Dialogue_ID``, ``Utterance_ID``), with speakers."""
    p = Path(path)
    rows, skipped = [], Counter()
    for k, r in enumerate(_read_csv_rows(p, {"Utterance", "Emotion", "Dialogue_ID", "Utterance_ID"}, "MELD")):
        try:
            lab = EMOTIONS.index(canonical(r.get("Emotion") or ""))
        except KeyError:
            lab = -1
            skipped["emotion_outside_label_set"] += 1
        dia = _int(r["Dialogue_ID"], -1)
        grp = (f"friends-s{_int(r['Season'])}e{_int(r['Episode'])}" if r.get("Season") and r.get("Episode")
               else f"meld-dia{dia}")
        rows.append(((dia, _int(r["Utterance_ID"]), k), r["Utterance"] or "", lab, f"meld{dia}",
                     (r.get("Speaker") or "").strip(), grp))
    return _assemble(rows, "meld", skipped)


def read_emorynlp(path: str | Path, exclude_episodes: set[tuple[int, int]] = frozenset()) -> DialogueLines:
    """EmoryNLP ``.csv`` (Friends scenes) in scene order; lines of ``exclude_episodes`` ``(season, episode)`` are
    dropped (counted in ``skipped["held_out_episode"]``), so nothing from a held-out episode reaches training."""
    p = Path(path)
    rows, skipped = [], Counter()
    need = {"Utterance", "Speaker", "Emotion", "Scene_ID", "Utterance_ID", "Season", "Episode"}
    for k, r in enumerate(_read_csv_rows(p, need, "EmoryNLP")):
        season, episode = _int(r["Season"]), _int(r["Episode"])
        if (season, episode) in exclude_episodes:
            skipped["held_out_episode"] += 1
            continue
        name = (r.get("Emotion") or "").strip().lower()
        mapped = EMORYNLP_MAP.get(name)
        if mapped is None:
            skipped["unlabelled_" + (name or "blank")] += 1
        lab = EMOTIONS.index(mapped) if mapped is not None else -1
        spk = (r.get("Speaker") or "").strip().strip("[]").strip("'\"")
        scene = f"emory-s{season}e{episode}-{_int(r['Scene_ID'])}"
        rows.append(((season, episode, _int(r["Scene_ID"]), _int(r["Utterance_ID"]), k), r["Utterance"] or "", lab,
                     f"{p.stem}-{scene}", spk, f"friends-s{season}e{episode}"))
    return _assemble(rows, "emorynlp", skipped)


def read_dailydialog(path: str | Path) -> DialogueLines:
    """DailyDialog (RECCON subset) ``.csv``: ``dialogue_id, turn, speaker, utterance, emotion``."""
    p = Path(path)
    rows, skipped = [], Counter()
    for k, r in enumerate(_read_csv_rows(p, {"dialogue_id", "turn", "speaker", "utterance", "emotion"},
                                         "DailyDialog")):
        mapped = DAILYDIALOG_MAP.get((r.get("emotion") or "").strip().lower())
        if mapped is None:
            skipped["emotion_outside_label_set"] += 1
        lab = EMOTIONS.index(mapped) if mapped is not None else -1
        dia = (r.get("dialogue_id") or f"row{k}").strip()
        # DailyDialog is tokenised ("Hey , you wanna ... ?"): glue punctuation back as people type it
        text = re.sub(r" ([,.!?;:%])", r"\1", (r.get("utterance") or "").replace(" ' ", "'").replace(" ’ ", "'"))
        rows.append(((dia, _int(r["turn"]), k), text, lab, f"dd-{dia}", (r.get("speaker") or "").strip(),
                     f"dd-{dia}"))
    return _assemble(rows, "dailydialog", skipped)


def episodes_of(path: str | Path) -> set[tuple[int, int]]:
    """``(season, episode)`` pairs of a MELD or EmoryNLP csv (to keep held-out episodes out of training)."""
    rows = _read_csv_rows(Path(path), {"Season", "Episode"}, "Friends")
    return {(_int(r["Season"]), _int(r["Episode"])) for r in rows}
