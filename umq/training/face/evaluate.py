"""Face encoder evaluation on a crop file (``python -m umq.evaluate face``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from umq.metrics import classification_report
from umq.perception.face.net import FER2013_CLASSES, FaceExpressionNet, to_app_index
from umq.training.data.ferplus import majority_labels


def read_labelled_faces(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N,48,48], labels [N])`` of a FER2013-layout file (``labels`` indexing ``classes``) or a FER+ file
    (``votes``: the majority label, -1 where tied or not an Ekman class); labels are app indices."""
    with np.load(path, allow_pickle=False) as d:
        images = d["images"]
        if "votes" in d.files:
            return images, majority_labels(d["votes"], [str(n) for n in d["vote_names"]])
        classes = [str(c) for c in d["classes"]] if "classes" in d.files else list(FER2013_CLASSES)
        return images, to_app_index(classes)[d["labels"].astype(np.int64)]


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate_face_npz(path: str | Path, net: FaceExpressionNet, device: str | torch.device | None = None,
                      batch_size: int = 512, tta_flip: bool = True, limit: int | None = None,
                      stride: int = 1) -> dict:
    """Score ``net`` on an npz with ``images`` uint8 [N,H,W] face crops and either ``labels`` int indexing
    ``classes`` (FER2013 layout) or ``votes`` (FER+: scored against the majority, :mod:`umq.training.data.ferplus`).

    Returns dict(n, accuracy, macro_f1, weighted_f1, per_class_recall, confusion, labels, tta_flip); the confusion
    matrix is in APP_LABELS order (rows = true class). ``stride``/``limit`` score ``images[::stride][:limit]``
    (FER2013 public_test is sorted by class, so a quick subset needs a stride, not a prefix)."""
    images, y_true = read_labelled_faces(path)
    keep = y_true >= 0  # FER+: ties and non-Ekman majorities left out
    images, y_true = images[keep], y_true[keep]
    if stride != 1 or limit is not None:
        images, y_true = images[::stride][:limit], y_true[::stride][:limit]
    device = device or next(net.parameters()).device
    net = net.to(device)
    pred = net.predict(images, device=device, tta_flip=tta_flip, batch_size=batch_size)
    rep = classification_report(y_true, pred.probs.argmax(1))
    rep["tta_flip"] = bool(tta_flip)
    return rep
