"""Labelled clips on disk: reading audio files, the ``labels.csv`` layout, the central window, session order.
Used by evaluation and training (never by the live app, which gets its audio from :mod:`streams`)."""
from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from umq.labels import EMOTIONS, canonical
from umq.perception.voice.features import WINDOW_SAMPLES


def center_crop(x: np.ndarray, n: int = WINDOW_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The central ``n`` samples, zero-padded (and marked invalid) when the clip is shorter."""
    x = np.asarray(x, np.float32)
    valid = np.ones(n, bool)
    if x.shape[0] >= n:
        a = (x.shape[0] - n) // 2
        return x[a:a + n], valid
    out = np.zeros(n, np.float32)
    a = (n - x.shape[0]) // 2
    out[a:a + x.shape[0]] = x
    valid[:] = False
    valid[a:a + x.shape[0]] = True
    return out, valid


def read_audio(path: str | Path) -> np.ndarray:
    """Mono float32 at 16 kHz (soundfile; other rates are resampled with librosa)."""
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != 16_000:
        import librosa

        x = librosa.resample(x, orig_sr=sr, target_sr=16_000).astype(np.float32)
    return x


def read_labels(data_dir: str | Path, actors: Iterable[int] | None = None) -> tuple[list[dict], int]:
    """Rows of ``DIR/labels.csv`` with an Ekman-7 ``label`` index; returns ``(rows, skipped)`` where
    ``skipped`` counts rows whose emotion is outside the label set (or empty)."""
    data_dir = Path(data_dir)
    path = data_dir / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no labels.csv in {data_dir}")
    keep = None if actors is None else {int(a) for a in actors}
    rows, skipped = [], 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"clip_id", "emotion", "audio"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} lacks columns {sorted(missing)}")
        for r in reader:
            if keep is not None and (not r.get("actor") or int(r["actor"]) not in keep):
                continue
            try:
                lab = EMOTIONS.index(canonical(r["emotion"]))
            except (KeyError, ValueError):
                skipped += 1
                continue
            rows.append({"clip_id": r["clip_id"], "label": lab, "audio": data_dir / r["audio"],
                         "actor": r.get("actor") or None})
    return rows, skipped


def session_order(rows: list[dict], seed: int = 0) -> list[dict]:
    """The clips in the order a live session would meet them: a fixed pseudo-random shuffle (``labels.csv`` of
    RAVDESS is sorted by emotion, which would feed the normaliser all neutral clips first)."""
    perm = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in perm]
