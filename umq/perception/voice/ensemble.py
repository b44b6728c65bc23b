"""Voice encoder ensemble over two front-ends: the log-mel CRNN and Whisper-frame heads, read from one window.

Why: the two encoders make different mistakes. The log-mel CRNN (RAVDESS only) and the Whisper-tiny.en heads
(RAVDESS + URDU + TurEV-DB) each score about 0.70 on the held-out RAVDESS actors 17-20, and the average of their
class log-probabilities scores 4-6 points more at the encoder level on held-out speakers (numbers, the inner-split
check that chose it, and a 60-clip through-the-app check that shows no difference: ``docs/voice-encoder.md``).
The members share one window's sanitised audio, voice activity and descriptors
(:class:`~umq.perception.voice.frontend.VoiceFrontEnd` computes them once); each member keeps its own feature
path and its own speaker normaliser, because each was trained on its own channel layout and prior.

Output, like every voice encoder: ``(logits [B, 7], embedding [B, 128])``. The logits are the mean of the members'
7-class log-probabilities (a proper log-probability up to a constant, so ``softmax`` gives the ensemble's
distribution); the embedding is the mean of the members' 128-d embeddings, a fixed linear map of their
concatenation that keeps the fusion model's input size (``umq.runtime.features.DIMS``). The fusion model is
trained on exactly this embedding.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from umq.labels import EMOTIONS
from umq.perception.voice.normalize import FeatureStats

ARCH = "ensemble"


class VoiceEnsemble(nn.Module):
    """Members (each a voice encoder with its ``feature_stats``; a saved ensemble needs them all) read their own
    view of one window.

    ``forward(views)`` takes one ``(x [B, C_k, T_k], mask [B, T_k])`` pair per member, in member order (what
    :attr:`VoiceFeatures.views <umq.perception.voice.frontend.VoiceFeatures.views>` holds)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("a voice ensemble needs at least two members")
        dims = {int(m.embedding_dim) for m in members}
        if len(dims) != 1:
            raise ValueError(f"voice ensemble members disagree on the embedding size: {sorted(dims)}")
        self.members = nn.ModuleList(members)
        self.config = {"arch": ARCH, "members": [dict(m.config) for m in members]}
        self.labels: tuple[str, ...] = EMOTIONS
        self.metrics: dict = {}

    @property
    def feature_stats(self) -> tuple[FeatureStats, ...]:
        """One normaliser prior per member (the front-end builds one feature view per entry)."""
        return tuple(m.feature_stats for m in self.members)

    @property
    def embedding_dim(self) -> int:
        return int(self.members[0].embedding_dim)

    def forward(self, views: Sequence[tuple[torch.Tensor, torch.Tensor | None]]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._average(views, calm=False)

    def logits8(self, views: Sequence[tuple[torch.Tensor, torch.Tensor | None]]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log-probabilities [B, 8] over Ekman-7 + calm, embedding)`` for scoring corpora that label calm: a
        member without a calm output (the log-mel CRNN) gives calm its neutral score."""
        return self._average(views, calm=True)

    def _average(self, views: Sequence[tuple[torch.Tensor, torch.Tensor | None]], calm: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of the members' log-probabilities (7 classes, or 8 with ``calm``) and of their embeddings."""
        if len(views) != len(self.members):
            raise ValueError(f"the voice ensemble has {len(self.members)} members, got {len(views)} feature views")
        logp, embs = [], []
        for net, (x, mask) in zip(self.members, views):
            z, e = single_logits8(net, x, mask) if calm else net(x, mask)
            logp.append(z.log_softmax(-1))
            embs.append(e)
        return torch.stack(logp).mean(0), torch.stack(embs).mean(0)


def single_logits8(net: nn.Module, x: torch.Tensor, mask: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [B, 8] over Ekman-7 + calm, embedding)`` of one (non-ensemble) encoder: its own calm output
    when it has one (Whisper heads), else calm gets its neutral logit (the log-mel CRNN)."""
    if hasattr(net, "logits8"):
        return net.logits8(x, mask)
    z, e = net(x, mask)
    return torch.cat([z, z[:, :1]], 1), e


def logits8(net: nn.Module, views: Sequence[tuple[torch.Tensor, torch.Tensor]]
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`single_logits8` for any voice encoder from the front-end's views (an ensemble averages its
    members' log-probabilities)."""
    if isinstance(net, VoiceEnsemble):
        return net.logits8(views)
    x, mask = views[0]
    return single_logits8(net, x, mask)


def encode(net: nn.Module, views: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, embedding)`` of any voice encoder from the front-end's views (batched ``[B, C, T]`` / ``[B, T]``):
    an ensemble reads all of them, a single encoder the first."""
    if isinstance(net, VoiceEnsemble):
        return net(views)
    x, mask = views[0]
    return net(x, mask)


@torch.inference_mode()
def predict(net: nn.Module, views: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode ``(probabilities [B, 7], embedding [B, 128])`` of any voice encoder from batched views
    (:func:`umq.perception.voice.frontend.collate_views` of the windows' features)."""
    was = net.training
    net.eval()
    logits, e = encode(net, views)
    net.train(was)
    return logits.softmax(-1), e
