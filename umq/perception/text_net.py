"""Text emotion head on frozen MiniLM features: :class:`TextEmotionHead`, its feature recipe, and the loader.

Input (built by :func:`head_input` from :meth:`umq.perception.text.SentenceEncoder.hidden_means`): for each
MiniLM layer in ``config["layers"]`` the L2-normalised masked mean of that layer's hidden states (384 each), then
the :data:`umq.perception.text.LEXICAL_NAMES` features (VADER sentiment, punctuation, caps, length). The head
standardises the input with the training set's mean/std (buffers saved with the weights), then
``Linear -> GELU -> Dropout -> Linear(emb) -> GELU`` gives the embedding handed to the fusion model, and a
``Linear(emb, 7)`` gives logits in the app order (:data:`umq.labels.EMOTIONS`).

Checkpoint (``assets/text/text_head.pt``, read with ``torch.load(weights_only=True)``)::

    {"format_version": 1, "config": {...}, "labels": [...7 names...], "metrics": {...}, "state_dict": {...}}
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from umq.labels import EMOTIONS

FORMAT_VERSION = 1
CONTEXT_FORMAT_VERSION = 2  # umq.perception.text_context.ContextTextHead
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "text" / "text_head.pt"

DEFAULT_CONFIG: dict = {
    "layers": [0, 3, 4, 5, 6],
    "lexical": True,
    "n_lexical": 9,
    "embed_dim": 384,
    "hidden": 192,
    "emb": 128,
    "dropout": 0.3,
    "input_dropout": 0.1,
    "num_classes": len(EMOTIONS),
}


def input_dim(config: dict) -> int:
    return len(config["layers"]) * int(config["embed_dim"]) + (int(config["n_lexical"]) if config["lexical"] else 0)


def head_input(hidden_means: Tensor, lexical: Tensor | None, config: dict) -> Tensor:
    """Head input ``[N, input_dim]`` from ``hidden_means`` ``[N, L, 384]`` (layers as in ``config["layers"]``, in
    that order) and lexical features ``[N, n_lexical]``."""
    if hidden_means.dim() != 3 or hidden_means.shape[1] != len(config["layers"]):
        raise ValueError(f"hidden_means must be [N, {len(config['layers'])}, D], got {tuple(hidden_means.shape)}")
    parts = [F.normalize(hidden_means.float(), dim=-1).flatten(1)]
    if config["lexical"]:
        if lexical is None or lexical.shape != (hidden_means.shape[0], int(config["n_lexical"])):
            raise ValueError(f"lexical features [N, {config['n_lexical']}] required")
        parts.append(lexical.to(parts[0].device, torch.float32))
    return torch.cat(parts, 1)


class TextEmotionHead(nn.Module):
    """MLP over frozen-encoder features -> (7-class logits, ``emb``-d embedding)."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        self.config = {**DEFAULT_CONFIG, **(config or {})}
        c = self.config
        d = input_dim(c)
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.in_drop = nn.Dropout(float(c["input_dropout"]))
        self.fc1 = nn.Linear(d, int(c["hidden"]))
        self.drop = nn.Dropout(float(c["dropout"]))
        self.fc2 = nn.Linear(int(c["hidden"]), int(c["emb"]))
        self.cls = nn.Linear(int(c["emb"]), int(c["num_classes"]))
        self.register_buffer("logit_bias", torch.zeros(int(c["num_classes"])))  # tuned offsets (see train_text)

    @property
    def input_dim(self) -> int:
        return input_dim(self.config)

    @property
    def emb_dim(self) -> int:
        return int(self.config["emb"])

    def set_normalizer(self, mean: Tensor, std: Tensor) -> None:
        self.mean.copy_(mean.detach().to(self.mean))
        self.std.copy_(std.detach().clamp_min(1e-6).to(self.std))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, input_dim]`` -> ``(logits [B, 7], embedding [B, emb])``."""
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"TextEmotionHead expects [B, {self.input_dim}], got {tuple(x.shape)}")
        z = (x - self.mean) / self.std
        h = self.drop(F.gelu(self.fc1(self.in_drop(z))))
        emb = F.gelu(self.fc2(h))
        logits = self.cls(self.drop(emb)) + self.logit_bias
        return logits, emb


def save_text_head(head: nn.Module, path: str | Path, metrics: dict | None = None) -> Path:
    import json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # metrics/config go through JSON so the file holds only plain types (loadable with weights_only=True)
    plain = json.loads(json.dumps({"config": dict(head.config), "metrics": metrics or {}}, default=str))
    version = CONTEXT_FORMAT_VERSION if plain["config"].get("kind") == "context" else FORMAT_VERSION
    torch.save({"format_version": version, "config": plain["config"], "labels": list(EMOTIONS),
                "metrics": plain["metrics"],
                "state_dict": {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}}, p)
    return p


def load_text_head(path: str | Path | None = None, device: str | torch.device | None = None) -> nn.Module:
    """Load the text head (default ``assets/text/text_head.pt``) in eval mode on ``device``: a
    :class:`~umq.perception.text_context.ContextTextHead` (format 2) or a single-line :class:`TextEmotionHead`
    (format 1). Both give ``head(x) -> (logits [B, 7], embedding [B, emb])``.

    ``head.metrics`` holds the metrics stored with the weights.

    Raises:
        FileNotFoundError / ValueError: naming the file when it is missing or not a text-head checkpoint.
    """
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise FileNotFoundError(f"text head weights not found: {p} (train them with "
                                f"`python -m umq.perception.train_text`)")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read text head checkpoint {p}: {e}") from e
    if not isinstance(ck, dict) or not {"format_version", "config", "labels", "state_dict"} <= set(ck):
        raise ValueError(f"{p} is not a text head checkpoint (keys: "
                         f"{sorted(ck) if isinstance(ck, dict) else type(ck).__name__})")
    if ck["format_version"] not in (FORMAT_VERSION, CONTEXT_FORMAT_VERSION):
        raise ValueError(f"{p}: format_version {ck['format_version']} is not supported (expected "
                         f"{FORMAT_VERSION} or {CONTEXT_FORMAT_VERSION})")
    if tuple(ck["labels"]) != EMOTIONS:
        raise ValueError(f"{p}: labels {ck['labels']} differ from the app order {EMOTIONS}")
    if ck["format_version"] == CONTEXT_FORMAT_VERSION:
        from umq.perception.text_context import ContextTextHead

        head: nn.Module = ContextTextHead(ck["config"])
    else:
        head = TextEmotionHead(ck["config"])
    try:
        head.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{p}: weights do not match its config: {e}") from e
    head.metrics = dict(ck.get("metrics") or {})
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return head.eval().requires_grad_(False).to(dev)


def labels() -> Sequence[str]:
    return EMOTIONS


# ------------------------------------------------------------------------------------------------- evaluation
def classification_metrics(y_true, y_pred, n_classes: int = len(EMOTIONS)) -> dict:
    """Accuracy, macro/weighted F1 (over classes present in ``y_true``), per-class recall, confusion (rows = true).

    Plain numpy, so evaluation needs no scikit-learn. Per-class recall is None for a class absent from ``y_true``.
    """
    import numpy as np

    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    if yt.shape != yp.shape:
        raise ValueError("y_true and y_pred differ in length")
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (yt, yp), 1)
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        rec = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
    present = support > 0
    n = int(yt.size)
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / n) if n else 0.0,
        "per_class_recall": {EMOTIONS[i] if n_classes == len(EMOTIONS) else str(i):
                             (float(rec[i]) if present[i] else None) for i in range(n_classes)},
        "per_class_f1": {EMOTIONS[i] if n_classes == len(EMOTIONS) else str(i): float(f1[i])
                         for i in range(n_classes)},
        "confusion": cm.tolist(),
    }


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

    from umq.data.text import read_text_file

    head = head if head is not None else load_text_head()
    if frontend is None:
        from umq.perception.text import TextFrontEnd

        frontend = TextFrontEnd(head=head)
    if int(getattr(head, "context", 0)) > 0 and Path(path).suffix.lower() == ".csv":
        return _evaluate_dialogues(path, head, frontend, limit)
    rows = read_text_file(path).single_label()
    texts, y = rows.texts, rows.y()
    if limit is not None:
        texts, y = texts[:limit], y[:limit]
    logits = predict_texts(texts, head, frontend)
    pred = logits.argmax(1).numpy() if len(texts) else np.zeros(0, np.int64)
    out = classification_metrics(y, pred)
    if len(y):
        maj = int(np.bincount(y, minlength=len(EMOTIONS)).argmax())
        out["majority_weighted_f1"] = classification_metrics(y, [maj] * len(y))["weighted_f1"]
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

    from umq.data.text import read_meld_dialogues
    from umq.perception.text_train_context import Samples, build_samples, predict

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
    out = classification_metrics(s.y, logits.argmax(1).numpy())
    maj = int(np.bincount(s.y, minlength=len(EMOTIONS)).argmax()) if len(s.y) else 0
    out["majority_weighted_f1"] = classification_metrics(s.y, [maj] * len(s.y))["weighted_f1"] if len(s.y) else 0.0
    out["skipped"] = int(sum(d.skipped.values()))  # out-of-set lines stay as context, counted here
    out["skipped_reasons"] = dict(d.skipped)
    out["labels"] = list(EMOTIONS)
    out["path"] = str(path)
    out["context"] = head.context
    return out
