"""Text encoder evaluation (``python -m umq.evaluate text``): a labelled file through the live front-end and head."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from umq.labels import EMOTIONS
from umq.metrics import classification_report
from umq.perception.text.net import TextEmotionHead, load_text_head


@torch.inference_mode()
def predict_texts(texts: Sequence[str], head: TextEmotionHead, frontend, batch_size: int = 128) -> Tensor:
    """Logits ``[N, 7]`` (CPU) for ``texts`` (non-empty strings)."""
    out = []
    dev = next(head.parameters()).device
    for s in range(0, len(texts), batch_size):
        x, _ = frontend.batch(texts[s:s + batch_size], batch_size)
        out.append(head(x.to(dev))[0].float().cpu())
    return torch.cat(out) if out else torch.zeros(0, len(EMOTIONS))


def evaluate_text_file(path: str | Path, head: TextEmotionHead | None = None, frontend=None,
                       limit: int | None = None) -> dict:
    """Score ``head`` on a labelled text file: a GoEmotions-Ekman ``.tsv`` or a MELD ``.csv``.

    GoEmotions label indices point into ``goemotions_ekman_labels.txt`` beside the ``.tsv``. Multi-label rows are
    skipped (a single-label metric has no right answer for them) and so are rows whose emotion is outside the
    label set or whose text is empty; all of them are counted in ``skipped`` (by reason in ``skipped_reasons``).
    ``limit`` scores only the first ``limit`` usable rows (file order).

    Returns:
        ``dict(n, accuracy, macro_f1, weighted_f1, per_class_recall, per_class_f1, confusion, skipped,
        skipped_reasons, labels, path, majority_weighted_f1)``; ``confusion[i][j]`` counts true class ``i``
        predicted as ``j`` (app order); ``majority_weighted_f1`` is the score of always predicting the most common
        class of the scored rows (a floor to compare against).
    """
    import numpy as np

    from umq.training.data.text import read_text_file

    head = head if head is not None else load_text_head()
    if frontend is None:
        from umq.perception.text.frontend import TextFrontEnd

        frontend = TextFrontEnd(head=head)
    if int(getattr(head, "context", 0)) > 0 and Path(path).suffix.lower() == ".csv":
        return _evaluate_dialogues(path, head, frontend, limit)
    rows = read_text_file(path).single_label()
    texts, y = rows.texts, rows.y()
    if limit is not None:
        texts, y = texts[:limit], y[:limit]
    logits = predict_texts(texts, head, frontend)
    pred = logits.argmax(1).numpy() if len(texts) else np.zeros(0, np.int64)
    out = classification_report(y, pred)
    if len(y):
        maj = int(np.bincount(y, minlength=len(EMOTIONS)).argmax())
        out["majority_weighted_f1"] = classification_report(y, [maj] * len(y))["weighted_f1"]
    else:
        out["majority_weighted_f1"] = 0.0
    out["skipped"] = int(sum(rows.skipped.values()))
    out["skipped_reasons"] = dict(rows.skipped)
    out["labels"] = list(EMOTIONS)
    out["path"] = str(path)
    return out


def _evaluate_dialogues(path: str | Path, head, frontend, limit: int | None) -> dict:
    """A MELD ``.csv`` scored by a context head: each line read with its dialogue's previous lines (speakers
    unknown, as in the app)."""
    import numpy as np

    from umq.training.data.text import read_meld_dialogues
    from umq.training.text.train_context import Samples, build_samples, predict

    d = read_meld_dialogues(path)
    uniq = sorted(set(d.texts))
    index = {t: i for i, t in enumerate(uniq)}
    feats = torch.cat([frontend.batch(uniq[a:a + 128])[0].cpu() for a in range(0, len(uniq), 128)])
    s = build_samples([d], 0, index, head.context)
    if limit is not None:
        s = s.take(np.arange(min(limit, len(s.y))))
    s = Samples(s.cur, s.ctx, np.full_like(s.spk, 2), s.y, s.source, s.group)
    dev = next(head.parameters()).device
    logits = predict(head.cpu(), feats, s)
    head.to(dev)
    out = classification_report(s.y, logits.argmax(1).numpy())
    maj = int(np.bincount(s.y, minlength=len(EMOTIONS)).argmax()) if len(s.y) else 0
    out["majority_weighted_f1"] = classification_report(s.y, [maj] * len(s.y))["weighted_f1"] if len(s.y) else 0.0
    out["skipped"] = int(sum(d.skipped.values()))  # out-of-set lines stay as context, counted here
    out["skipped_reasons"] = dict(d.skipped)
    out["labels"] = list(EMOTIONS)
    out["path"] = str(path)
    out["context"] = head.context
    return out
