"""FER+ (Barsoum et al. 2016): ten annotators' votes on the FER2013 images, read in the app's label order.

Why a reader of its own: the FER+ votes are a cleaner target than FER2013's single label (about a quarter of the
FER2013 labels disagree with the FER+ majority), and the face encoder is trained on both. The FER+ files hold the
lossless pixels in another order than ``fer2013/*.npz`` (JPEG-derived), so the two are joined by image content
(:func:`match_images`), not by row number.

Evaluation follows the usual FER+ protocol: the label of an image is the majority of its ten votes; images whose
majority is tied, "unknown", "not a face" or "contempt" (no Ekman-7 slot) are left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from umq.labels import EMOTIONS

# FER+ vote columns -> app labels (contempt, unknown and "not a face" have none)
VOTE_TO_APP = {"neutral": "neutral", "happiness": "happy", "surprise": "surprised", "sadness": "sad",
               "anger": "angry", "disgust": "disgust", "fear": "fearful"}


@dataclass(frozen=True)
class FerPlus:
    """``images [N,48,48] uint8``; ``votes [N,7]`` Ekman votes in :data:`EMOTIONS` order (other columns dropped);
    ``majority [N]`` app index of the majority vote, -1 where tied or not an Ekman class."""

    images: np.ndarray
    votes: np.ndarray
    majority: np.ndarray


def majority_labels(votes: np.ndarray, vote_names: list[str]) -> np.ndarray:
    """Majority of all ten vote columns -> app index; -1 for ties and non-Ekman winners."""
    votes = votes.astype(np.int64)
    top = votes.argmax(1)
    unique = (votes == votes.max(1, keepdims=True)).sum(1) == 1
    y = np.array([EMOTIONS.index(VOTE_TO_APP[vote_names[t]]) if vote_names[t] in VOTE_TO_APP else -1 for t in top])
    y[~unique] = -1
    return y


def load_ferplus(path: str | Path) -> FerPlus:
    with np.load(path, allow_pickle=False) as d:
        images, raw, names = d["images"], d["votes"].astype(np.int64), [str(n) for n in d["vote_names"]]
    votes = np.zeros((len(raw), len(EMOTIONS)), np.float32)
    for j, name in enumerate(names):
        if name in VOTE_TO_APP:
            votes[:, EMOTIONS.index(VOTE_TO_APP[name])] = raw[:, j]
    return FerPlus(images.astype(np.uint8), votes, majority_labels(raw, names))


def _signature(images: np.ndarray) -> torch.Tensor:
    """12x12 mean-pooled, zero-mean, unit-norm pixels: survives FER2013's JPEG round trip (cosine > 0.9999)."""
    t = F.avg_pool2d(torch.from_numpy(images).float().unsqueeze(1), 4).flatten(1)
    t = t - t.mean(1, keepdim=True)
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-6)


def match_images(query: np.ndarray, reference: np.ndarray, min_cosine: float = 0.999,
                 chunk: int = 2048) -> np.ndarray:
    """Index into ``reference`` of the same picture for every ``query`` image, -1 where none is close enough.

    FER2013 holds exact duplicates (some with different labels); a duplicate matches whichever copy comes first."""
    q, r = _signature(query), _signature(reference)
    out = np.full(len(query), -1, np.int64)
    for i in range(0, len(q), chunk):
        sim, idx = (q[i:i + chunk] @ r.T).max(1)
        ok = (sim >= min_cosine).numpy()
        out[i:i + chunk][ok] = idx.numpy()[ok]
    return out
