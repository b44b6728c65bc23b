"""Face encoder evaluation on a crop file (``python -m umq.evaluate face``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from umq.metrics import classification_report
from umq.perception.face.net import FER2013_CLASSES, FaceExpressionNet, to_app_index
from umq.training.data.ferplus import is_ferplus, load_ferplus


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate_face_npz(path: str | Path, net: FaceExpressionNet, device: str | torch.device | None = None,
                      batch_size: int = 512, tta_flip: bool = True, limit: int | None = None,
                      stride: int = 1) -> dict:
    """Score ``net`` on an npz with ``images`` uint8 [N,H,W] face crops and either ``labels`` int indexing
    ``classes`` (FER2013 layout) or ``votes`` (FER+: scored against the majority, :mod:`umq.training.data.ferplus`).

    Returns dict(n, accuracy, macro_f1, weighted_f1, per_class_recall, confusion, labels, tta_flip); the confusion
    matrix is in APP_LABELS order (rows = true class). ``stride``/``limit`` score ``images[::stride][:limit]``
    (FER2013 public_test is sorted by class, so a quick subset needs a stride, not a prefix)."""
    if is_ferplus(path):  # FER+ votes: majority label, ties and non-Ekman majorities left out
        fp = load_ferplus(path)
        keep = fp.majority >= 0
        images, y_true = fp.images[keep], fp.majority[keep]
    else:
        with np.load(path, allow_pickle=False) as d:
            images = d["images"]
            labels = d["labels"].astype(np.int64)
            classes = [str(c) for c in d["classes"]] if "classes" in d.files else list(FER2013_CLASSES)
        y_true = to_app_index(classes)[labels]
    if stride != 1 or limit is not None:
        images, y_true = images[::stride][:limit], y_true[::stride][:limit]
    device = device or next(net.parameters()).device
    net = net.to(device)
    pred = net.predict(images, device=device, tta_flip=tta_flip, batch_size=batch_size)
    rep = classification_report(y_true, pred.probs.argmax(1))
    rep["tta_flip"] = bool(tta_flip)
    return rep
