"""RAVDESS pair loader: speech audio (``audio16k/Actor_NN/*.flac``) + clip-level facial action units.

Works on any folder in the layout of ``shared/data/ravdess`` (``labels.csv`` optional: without it the clip ids
are parsed from the file names), so a checkpoint can score actors that are not in the shared data.
Modalities: ``audio`` (clip functionals ``[1, ~300]`` or a 25 Hz frame sequence ``[T, 58]``, by ``audio_view``)
and ``video`` (17 AU intensities + 18 AU presence fractions, ``[1, 35]``). A clip without AUs has
``present[video] = False``.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from umq.labels import ravdess_label
from umq.training.data import FeatureSet, cache_dir, pad_sequences
from umq.training.data.features_audio import FRAME_NAMES, STAT_NAMES, AudioFeatureParams, extract_file, pool_frames

log = logging.getLogger(__name__)

MODALITIES = ("audio", "video")


def _clip_fields(clip_id: str) -> tuple[int, int]:
    """``(emotion_code, actor)`` from ``03-01-EE-II-SS-RR-AA``."""
    parts = clip_id.split("-")
    if len(parts) != 7:
        raise ValueError(f"not a RAVDESS clip id: {clip_id!r}")
    return int(parts[2]), int(parts[6])


def list_clips(root: Path) -> list[tuple[str, Path]]:
    """``(clip_id, audio path)`` for every clip, from labels.csv when present, else from the file names."""
    labels = root / "labels.csv"
    if labels.exists():
        with open(labels, newline="") as f:
            rows = [(r["clip_id"], root / r["audio"]) for r in csv.DictReader(f)]
    else:
        rows = [(p.stem, p) for p in sorted((root / "audio16k").glob("Actor_*/*.flac"))]
    if not rows:
        raise FileNotFoundError(f"no RAVDESS clips under {root} (expected labels.csv or audio16k/Actor_NN/*.flac)")
    return rows


def load_ravdess(root: str | Path, actors: list[int] | None = None, audio_view: str = "stats",
                 params: AudioFeatureParams | None = None, progress: bool = True) -> FeatureSet:
    """Load (and cache) features of the clips of ``actors`` (``None``: all present)."""
    root = Path(root)
    params = params or AudioFeatureParams()
    if audio_view not in ("stats", "seq"):
        raise ValueError(f"audio_view must be 'stats' or 'seq', got {audio_view!r}")
    clips = [(cid, p) for cid, p in list_clips(root) if actors is None or _clip_fields(cid)[1] in actors]
    if not clips:
        raise ValueError(f"no clips for actors {actors} under {root}")
    au: dict[str, np.ndarray] = {}
    au_names: list[str] = []
    au_file = root / "face_au.npz"
    if au_file.exists():
        with np.load(au_file, allow_pickle=False) as d:
            feats = np.concatenate([d["au_intensity"], d["au_presence"]], 1).astype(np.float32)
            au = {str(c): feats[i] for i, c in enumerate(d["clip_id"])}
            au_names = [str(n) for n in d["au_intensity_names"]] + [str(n) for n in d["au_presence_names"]]
    else:
        log.warning("%s not found: the video modality is missing for every clip", au_file)
    cache = cache_dir() / "ravdess_audio"
    cache.mkdir(parents=True, exist_ok=True)
    seqs, stats, vision, present, y, groups = [], [], [], [], [], []
    for cid, path in tqdm(clips, desc="audio features", disable=not progress, leave=False):
        code, actor = _clip_fields(cid)
        if path.exists():
            frames, st = extract_file(path, params, cache)
            a_ok = True
        else:
            log.warning("audio file missing: %s", path)
            frames, st, a_ok = np.zeros((0, len(FRAME_NAMES)), np.float32), np.zeros(len(STAT_NAMES), np.float32), False
        seqs.append(pool_frames(frames, params.seq_pool))
        stats.append(st)
        v_ok = cid in au
        vision.append(au[cid] if v_ok else np.zeros(35, np.float32))
        present.append((a_ok, v_ok))
        y.append(ravdess_label(code))
        groups.append(actor)
    if audio_view == "stats":
        xa, ma = np.stack(stats)[:, None, :], np.ones((len(clips), 1), bool)
        a_names = STAT_NAMES
    else:
        xa, ma = pad_sequences(seqs, len(FRAME_NAMES))
        a_names = FRAME_NAMES
    xv = np.stack(vision)[:, None, :]
    return FeatureSet(MODALITIES, {"audio": xa, "video": xv}, {"audio": ma, "video": np.ones((len(clips), 1), bool)},
                      np.asarray(present, bool), np.asarray(groups), [c for c, _ in clips], np.asarray(y, np.int64),
                      None, {"audio": list(a_names), "video": au_names})
