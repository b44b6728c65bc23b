"""Training batches of the runtime model: label-consistent triples drawn from the vector caches, on the device.

Besides the batch itself (each modality clean, corrupted at the signal level, or flagged missing) a draw gives
what the quality terms of the loss need (:class:`umq.model.losses.QualityExtras`):

* the corruption ladder of every sample (clean > kind@0.35 > kind@0.8 > switched off), built only from the
  corruption kinds that measurably cost the modality's encoder accuracy (:func:`degrading_kinds`): a kind that
  does not hurt (FER faces with frames dropped: every face that arrives is intact) must not be ranked below clean;
* the measured usefulness of every input version (:func:`usefulness`): the encoder's accuracy on that version
  relative to clean, 1 = as good as clean, 0 = chance — the number the quality gauge is meant to show;
* the "removed" twin of each sample with a corrupted modality (those modalities flagged missing), against which
  the loss penalises doing worse: a degraded input should never be worse than no input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from umq.labels import EMOTIONS
from umq.model.losses import QualityExtras
from umq.runtime.features import EMBED, MODALITIES, N_CLASSES
from umq.training.runtime.triples import KINDS, SEVERITIES, ModalityCache
from umq.types import Batch, ModalityInput

P_CLEAN, P_CORRUPT = 0.4, 0.45  # per (sample, modality): clean / a corrupted version / flagged missing (rest)
CHANCE = 1.0 / N_CLASSES


def encoder_correct(cache: ModalityCache) -> np.ndarray:
    """``[N, V]`` bool: the modality's own encoder (its probabilities inside the vector) is right."""
    probs = cache.x[:, :, EMBED:EMBED + N_CLASSES]
    return probs.argmax(-1) == cache.y[:, None]


def relative(acc: np.ndarray | float, acc_clean: float) -> np.ndarray:
    """Accuracy relative to clean on the chance-to-clean scale, clipped to [0, 1]."""
    return np.clip((np.asarray(acc, np.float64) - CHANCE) / max(acc_clean - CHANCE, 1e-6), 0.0, 1.0)


def usefulness(cache: ModalityCache) -> np.ndarray:
    """``[V]`` measured relative accuracy of each version (``null`` forced to 0: nothing to read)."""
    acc = encoder_correct(cache).mean(0)
    u = relative(acc, float(acc[0]))
    u[0] = 1.0
    u[cache.versions.index("null")] = 0.0
    return u.astype(np.float32)


def degrading_kinds(cache: ModalityCache, min_drop: float = 0.1) -> list[int]:
    """Indices into ``KINDS[m]`` of the kinds whose strongest severity costs at least ``min_drop`` usefulness."""
    u = usefulness(cache)
    names = cache.versions
    return [k for k, kind in enumerate(KINDS[cache.modality])
            if u[0] - u[names.index(f"{kind}@{max(SEVERITIES):g}")] >= min_drop]


@dataclass
class Draw:
    """One training batch: the main (corrupted) batch, the same samples clean, the ladders and the extras."""

    batch: Batch
    clean: Batch
    ladders: dict[str, ModalityInput]
    extras: QualityExtras


class TripleSampler:
    """Label-consistent triples on the device: standardised vectors ``[N, V, D]`` per modality + class index."""

    def __init__(self, caches: dict[str, ModalityCache], norm, dev: torch.device) -> None:
        self.dev = dev
        self.x = {m: torch.from_numpy((caches[m].x - norm.mean[m]) / norm.std[m]).float().to(dev)
                  for m in MODALITIES}
        self.by_class = {m: [torch.from_numpy(np.flatnonzero(caches[m].y == k)).to(dev)
                             for k in range(len(EMOTIONS))] for m in MODALITIES}
        self.versions = {m: caches[m].versions for m in MODALITIES}
        self.useful = {m: torch.from_numpy(usefulness(caches[m])).to(dev) for m in MODALITIES}
        kinds = {m: degrading_kinds(caches[m]) or list(range(len(KINDS[m]))) for m in MODALITIES}
        self.ladder_kinds = {m: torch.tensor(kinds[m], device=dev) for m in MODALITIES}
        for m in MODALITIES:
            empty = [EMOTIONS[k] for k, ix in enumerate(self.by_class[m]) if len(ix) == 0]
            if empty:
                raise ValueError(f"{m} data has no items of class {empty}")

    def items(self, y: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        """A random item index per sample and modality with the sample's label."""
        out = {}
        for m in MODALITIES:
            idx = torch.empty_like(y)
            for k in range(len(EMOTIONS)):
                pool = self.by_class[m][k]
                pick = torch.randint(len(pool), (len(y),), generator=g, device=self.dev)
                idx = torch.where(y == k, pool[pick], idx)
            out[m] = idx
        return out

    def vectors(self, m: str, items: torch.Tensor, version: torch.Tensor) -> ModalityInput:
        x = self.x[m][items, version].unsqueeze(1)
        return ModalityInput(x, torch.ones(x.shape[:2], dtype=torch.bool, device=self.dev))

    def ladder(self, m: str, items: torch.Tensor, g: torch.Generator) -> tuple[ModalityInput, torch.Tensor]:
        """Rungs [clean, kind@0.35, kind@0.8, null] stacked rung-major, one degrading kind per sample, and the
        measured usefulness of every rung ``[4 * B]``."""
        B = len(items)
        pool = self.ladder_kinds[m]
        kinds = pool[torch.randint(len(pool), (B,), generator=g, device=self.dev)]
        first = 1 + kinds * len(SEVERITIES)
        rungs = [torch.zeros_like(items), first, first + 1, torch.full_like(items, len(self.versions[m]) - 1)]
        x = torch.cat([self.x[m][items, r] for r in rungs], 0).unsqueeze(1)
        targets = torch.cat([self.useful[m][r] for r in rungs])
        return ModalityInput(x, torch.ones(x.shape[:2], dtype=torch.bool, device=self.dev)), targets

    def draw(self, B: int, g: torch.Generator) -> Draw:
        y = torch.randint(len(EMOTIONS), (B,), generator=g, device=self.dev)
        items = self.items(y, g)
        M = len(MODALITIES)
        u = torch.rand((B, M), generator=g, device=self.dev)
        present = u < P_CLEAN + P_CORRUPT
        empty = ~present.any(1)
        present[empty, torch.randint(M, (B,), generator=g, device=self.dev)[empty]] = True
        inputs, clean_inputs, ladders, ladder_t, main_t, corrupted = {}, {}, {}, {}, [], []
        for i, m in enumerate(MODALITIES):
            V = len(self.versions[m])
            version = torch.where(u[:, i] < P_CLEAN, torch.zeros_like(y),
                                  torch.randint(1, V, (B,), generator=g, device=self.dev))
            xi = self.vectors(m, items[m], version)
            inputs[m] = ModalityInput(xi.x * present[:, i].view(-1, 1, 1).float(), xi.mask)  # missing -> zeros
            clean_inputs[m] = self.vectors(m, items[m], torch.zeros_like(y))
            ladders[m], ladder_t[m] = self.ladder(m, items[m], g)
            main_t.append(self.useful[m][version] * present[:, i].float())
            corrupted.append(present[:, i] & (version != 0))
        bad = torch.stack(corrupted, 1)
        twin_present = present & ~bad
        twin = Batch(MODALITIES, {m: ModalityInput(inputs[m].x * twin_present[:, i].view(-1, 1, 1).float(),
                                                   inputs[m].mask) for i, m in enumerate(MODALITIES)},
                     twin_present, y)
        extras = QualityExtras(ladder_t, torch.stack(main_t, 1), twin, bad.any(1) & twin_present.any(1))
        ones = torch.ones((B, M), dtype=torch.bool, device=self.dev)
        return Draw(Batch(MODALITIES, inputs, present, y), Batch(MODALITIES, clean_inputs, ones, y), ladders, extras)
