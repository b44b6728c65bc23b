"""Metrics of the evaluation protocol (numpy, no sklearn dependency)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from umq.labels import EMOTIONS


def weighted_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Support-weighted mean of per-class F1 over classes present in ``y``."""
    classes, support = np.unique(y, return_counts=True)
    f1s = []
    for c in classes:
        tp = np.sum((pred == c) & (y == c))
        fp = np.sum((pred == c) & (y != c))
        fn = np.sum((pred != c) & (y == c))
        f1s.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.sum(np.asarray(f1s) * support) / support.sum())


def protocol_metrics(y: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Accuracy and weighted F1 from logits: the two numbers of the missing/noisy protocol tables."""
    pred = logits.argmax(1)
    return {"acc": float(np.mean(pred == y)), "f1": weighted_f1(y, pred)}


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MMSA conventions: Acc-2 / F1 on non-zero labels (negative vs positive), Acc-7 on rounded clipped scores."""
    nz = y != 0
    yb, pb = y[nz] > 0, pred[nz] > 0
    acc2 = float(np.mean(yb == pb)) if nz.any() else float("nan")
    f1 = weighted_f1(yb.astype(int), pb.astype(int)) if nz.any() else float("nan")
    acc7 = float(np.mean(np.round(np.clip(pred, -3, 3)) == np.round(np.clip(y, -3, 3))))
    mae = float(np.mean(np.abs(pred - y)))
    corr = float(np.corrcoef(pred, y)[0, 1]) if np.std(pred) > 0 and np.std(y) > 0 else 0.0
    return {"acc2": acc2, "acc7": acc7, "f1": f1, "mae": mae, "corr": corr}


def classification_report(y_true, y_pred, labels: Sequence[str] = EMOTIONS) -> dict:
    """The report every encoder evaluation writes (``python -m umq.evaluate face|audio|text``, the training
    scripts, the through-the-app checks): n, accuracy, macro F1 (over the classes present in ``y_true``),
    support-weighted F1, per-class recall (None for a class absent from ``y_true``) and F1, and the confusion
    matrix (rows = true class, columns = predicted) in ``labels`` order.

    Plain numpy, so evaluation needs no scikit-learn.
    """
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length ({y_true.shape} vs {y_pred.shape})")
    n_classes = len(labels)
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(1).astype(float)
    predicted = cm.sum(0).astype(float)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = support > 0
    n = int(len(y_true))
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / n) if n else 0.0,
        "per_class_recall": {labels[i]: (float(recall[i]) if present[i] else None) for i in range(n_classes)},
        "per_class_f1": {labels[i]: float(f1[i]) for i in range(n_classes)},
        "confusion": cm.tolist(),
        "labels": list(labels),
    }
