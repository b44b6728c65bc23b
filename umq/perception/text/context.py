"""Dialogue context for the text branch at run time: :class:`TranscriptContext` keeps the session's recent lines
and reads each new line with its predecessors through :class:`~umq.perception.text.net.ContextTextHead`.

Why: a line's emotion often depends on what was said before it ("Oh really." after good news vs after an insult).
The head reads the current line plus up to ``config["context"]`` previous lines, each as the same frozen-MiniLM
feature vector the single-line head used (:meth:`umq.perception.text.frontend.TextFrontEnd.batch`), so every line is
encoded once and re-used as context for the lines after it (the cost of a window stays one MiniLM pass at most).

Model: a shared line projection (standardise -> dropout -> Linear -> GELU) for the current and the context lines;
each context line adds a small "who and how far back" code (same speaker / other speaker / unknown, distance);
attention from the current line over its context lines gives a context summary; ``[current, summary, has_context]``
-> Linear -> GELU is the embedding handed to the fusion model, and Linear(emb, 7) + ``logit_bias`` the logits in
the app order. ``forward(x)`` without context is valid (training drops the context of some lines on purpose), so
every caller of the single-line head (``head(x) -> (logits, emb)``) keeps working.
"""
from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from umq.labels import EMOTIONS
from umq.perception.text.net import UNKNOWN, context_meta

"""The single-line head's layers and sizes, plus up to 4 previous lines."""

"""Per context line: same speaker, other speaker, speaker unknown, distance back / context."""







# ------------------------------------------------------------------------------------------------- runtime
@dataclass(frozen=True)
class LineOutput:
    """The head's output for one transcript line read with its predecessors."""

    probs: Tensor
    emb: Tensor
    probs_host: tuple[float, ...]  # copied to the host once per line (for the result's cues), not per window


class TranscriptContext:
    """The session's recent transcript lines and the caches that keep overlapping windows from re-encoding.

    Every window hands over its segments (:meth:`window_outputs`); a segment not seen before joins the history
    (bounded, ordered by time). A line is encoded once (feature cache), and its (line, predecessors) output is
    cached, so a line covered by three overlapping windows costs one MiniLM pass and one head pass. Works for any
    transcript source (subtitle replay, typed lines, stdin, ASR), since all arrive as ``TextSegment`` s.

    Args:
        head: a :class:`ContextTextHead` (or the single-line head: context is then ignored).
        frontend: the :class:`~umq.perception.text.frontend.TextFrontEnd` giving per-line features.
        history: how many recent lines are kept (memory stays flat).
    """

    def __init__(self, head: nn.Module, frontend, history: int = 64, cache: int = 256) -> None:
        self.head, self.frontend = head, frontend
        self.n_ctx = int(getattr(head, "context", 0))
        self.max_history = int(history)
        self.max_cache = int(cache)
        self._history: list[tuple[float, float, str]] = []
        self._seen: set[tuple[float, float, str]] = set()
        self._features: collections.OrderedDict[str, Tensor] = collections.OrderedDict()
        self._outputs: collections.OrderedDict[tuple, LineOutput] = collections.OrderedDict()
        self._last_t0 = -math.inf
        self.last_probs: dict[str, float] = {}
        """The text head's own probabilities for the last window (host floats), for the result's cues."""

    def clear(self) -> None:
        """Forget the session (history and caches)."""
        self._history.clear()
        self._seen.clear()
        self._features.clear()
        self._outputs.clear()
        self._last_t0 = -math.inf

    def __len__(self) -> int:
        return len(self._history)

    def _lru_put(self, d: collections.OrderedDict, key, value) -> None:
        d[key] = value
        d.move_to_end(key)
        while len(d) > self.max_cache:
            d.popitem(last=False)

    def _add(self, key: tuple[float, float, str]) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        self._history.append(key)
        self._history.sort(key=lambda k: (k[1], k[0]))  # by end: the order lines were finished in
        while len(self._history) > self.max_history:
            self._seen.discard(self._history.pop(0))

    def previous(self, key: tuple[float, float, str]) -> list[str]:
        """Texts of up to ``n_ctx`` lines before ``key`` in the history, oldest first."""
        if self.n_ctx <= 0 or key not in self._seen:
            return []
        i = self._history.index(key)
        return [k[2] for k in self._history[max(0, i - self.n_ctx):i]]

    def _features_of(self, texts: list[str]) -> Tensor:
        todo = [t for t in dict.fromkeys(texts) if t not in self._features]
        if todo:
            x, _ = self.frontend.batch(todo)
            for t, row in zip(todo, x):
                self._lru_put(self._features, t, row)
        for t in texts:
            self._features.move_to_end(t)
        return torch.stack([self._features[t] for t in texts])

    def line_output(self, text: str, previous: list[str]) -> LineOutput:
        key = (text, tuple(previous))
        hit = self._outputs.get(key)
        if hit is not None:
            self._outputs.move_to_end(key)
            return hit
        feats = self._features_of([*previous, text])
        x = feats[-1:]
        if previous and self.n_ctx > 0:
            ctx = feats[:-1].unsqueeze(0)
            meta = torch.tensor([context_meta([UNKNOWN] * len(previous), self.n_ctx)], device=x.device)
            mask = torch.ones(1, len(previous), dtype=torch.bool, device=x.device)
            logits, emb = self.head(x, ctx, mask, meta)
        else:
            logits, emb = self.head(x)
        probs = logits.float().softmax(-1)[0]
        out = LineOutput(probs, emb[0], tuple(round(float(v), 4) for v in probs.cpu()))
        self._lru_put(self._outputs, key, out)
        return out

    @torch.inference_mode()
    def window_outputs(self, segments: Sequence, t0: float, t1: float) -> tuple[Tensor, Tensor]:
        """``(embedding, probabilities)`` of a window: the mean over its lines (each read with its predecessors),
        weighted by how much of the window each line covers (a late line that does not overlap the window: by its
        own length). ``segments`` need ``t0``, ``t1`` and ``text``."""
        if t0 < self._last_t0 - 1.0:  # the clock went back: a new session (replay restarted)
            self.clear()
        self._last_t0 = t0
        keys = []
        for s in segments:
            text = " ".join(str(getattr(s, "text", "") or "").split())
            if text:
                key = (float(s.t0), float(s.t1), text)
                self._add(key)
                keys.append(key)
        if not keys:
            raise ValueError("window_outputs needs at least one non-empty segment")
        probs, embs, weights, host = [], [], [], []
        for key in keys:
            out = self.line_output(key[2], self.previous(key))
            probs.append(out.probs)
            embs.append(out.emb)
            host.append(out.probs_host)
            overlap = min(key[1], t1) - max(key[0], t0)
            # a line held by a window it does not overlap arrived late (streams: TextSlice.late): it counts with its
            # own length, as it would have in the windows it was too late for
            weights.append((overlap if overlap > 0 else max(key[1] - key[0], 0.0)) + 1e-3)
        wn = [v / sum(weights) for v in weights]
        self.last_probs = {e: round(sum(h[k] * v for h, v in zip(host, wn)), 4) for k, e in enumerate(EMOTIONS)}
        w = torch.tensor(wn, device=probs[0].device)
        emb = (torch.stack(embs) * w[:, None]).sum(0)
        p = (torch.stack(probs) * w[:, None]).sum(0)
        return emb, p
