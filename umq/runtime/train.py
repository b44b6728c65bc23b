"""Train and validate the runtime model: ``python -m umq.runtime.train [--data DIR] [--out assets/runtime]``.

Trains UMQ over (face, voice, text) on label-consistent triples drawn from the training splits (FER2013
``train``, RAVDESS actors 1-16, MELD ``train``) with signal-level corruptions (:mod:`.triples`), plus the
quality-unaware MoE the dashboard's quality lab shows beside it and a late-fusion reference. The validation
triples come only from FER2013 ``public_test``, RAVDESS actors 17-20 and MELD ``dev``.

The quality ladder of the rank-guided estimator is made of real corrupted versions of each sample
(clean > severity 0.35 > severity 0.8 > switched off) instead of feature noise. Fixed number of steps, no model
selection on the validation split; every number written is measured once, after training.

Measured on the 2-core CPU of the development machine: building the vector caches ~25 min (once), training the
three models ~3 min.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from umq.checkpoint import save_checkpoint
from umq.data import NormStats, default_data_root
from umq.device import pick_device
from umq.labels import EMOTIONS
from umq.metrics import classification_report
from umq.model import UMQ, UMQConfig, compute_losses, variant_config
from umq.model.config import ModalitySpec
from umq.types import ModalityInput

from .analyzer import ASSETS
from .features import DIMS, FEATURE_RECIPE, MODALITIES
from .triples import (KINDS, SEVERITIES, ModalityCache, build_face_cache, build_text_cache, build_voice_cache,
                      version_names)

log = logging.getLogger(__name__)

LICENCE = ("research / non-commercial use only: trained on FER2013 (research use), RAVDESS (CC BY-NC-SA 4.0) and "
           "MELD (GPL-3.0) features")
VARIANTS = ("umq", "moe_unaware", "late_fusion")
P_CLEAN, P_CORRUPT = 0.4, 0.45  # per (sample, modality): clean / a corrupted version / flagged missing (rest)


@dataclass
class Caches:
    face: ModalityCache
    voice: ModalityCache
    text: ModalityCache

    def get(self, m: str) -> ModalityCache:
        return getattr(self, m)


def load_caches(root: Path, split: str, device: str, progress: bool) -> Caches:
    if split == "train":
        return Caches(build_face_cache(root / "fer2013" / "train.npz", 600, 0, device, progress),
                      build_voice_cache(root / "ravdess", list(range(1, 17)), 0, device, progress),
                      build_text_cache(root / "text" / "meld_train_sent_emo.csv", 350, 0, device, progress))
    return Caches(build_face_cache(root / "fer2013" / "public_test.npz", 200, 0, device, progress),
                  build_voice_cache(root / "ravdess", list(range(17, 21)), 0, device, progress),
                  build_text_cache(root / "text" / "meld_dev_sent_emo.csv", 150, 0, device, progress))


def fit_norm(c: Caches) -> NormStats:
    """Mean/std of the clean training vectors per modality (std floored: one-hot-like cue columns)."""
    mean, std = {}, {}
    for m in MODALITIES:
        x = c.get(m).x[:, 0]
        mean[m] = x.mean(0).astype(np.float32)
        std[m] = np.maximum(x.std(0), 0.05).astype(np.float32)
    return NormStats(mean, std, [])


class TripleSampler:
    """Label-consistent triples on the device: standardised vectors ``[N, V, D]`` per modality + class index."""

    def __init__(self, c: Caches, norm: NormStats, dev: torch.device) -> None:
        self.dev = dev
        self.x = {m: torch.from_numpy((c.get(m).x - norm.mean[m]) / norm.std[m]).float().to(dev) for m in MODALITIES}
        self.by_class = {m: [torch.from_numpy(np.flatnonzero(c.get(m).y == k)).to(dev) for k in range(len(EMOTIONS))]
                         for m in MODALITIES}
        self.versions = {m: c.get(m).versions for m in MODALITIES}
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
                sel = y == k
                pool = self.by_class[m][k]
                pick = torch.randint(len(pool), (len(y),), generator=g, device=self.dev)
                idx = torch.where(sel, pool[pick], idx)
            out[m] = idx
        return out

    def vectors(self, m: str, items: torch.Tensor, version: torch.Tensor) -> ModalityInput:
        x = self.x[m][items, version].unsqueeze(1)
        return ModalityInput(x, torch.ones(x.shape[:2], dtype=torch.bool, device=self.dev))


def _ladder(s: TripleSampler, m: str, items: torch.Tensor, g: torch.Generator) -> ModalityInput:
    """Rungs [clean, kind@0.35, kind@0.8, null] with one random corruption kind per sample."""
    B = len(items)
    names = s.versions[m]
    kinds = torch.randint(len(KINDS[m]), (B,), generator=g, device=s.dev)
    first = 1 + kinds * len(SEVERITIES)
    rungs = [torch.zeros_like(items), first, first + 1, torch.full_like(items, len(names) - 1)]
    xs = [s.x[m][items, r] for r in rungs]
    x = torch.cat(xs, 0).unsqueeze(1)
    return ModalityInput(x, torch.ones(x.shape[:2], dtype=torch.bool, device=s.dev))


def sample_batch(s: TripleSampler, B: int, g: torch.Generator):
    from umq.types import Batch

    y = torch.randint(len(EMOTIONS), (B,), generator=g, device=s.dev)
    items = s.items(y, g)
    M = len(MODALITIES)
    u = torch.rand((B, M), generator=g, device=s.dev)
    present = u < P_CLEAN + P_CORRUPT
    empty = ~present.any(1)
    present[empty, torch.randint(M, (B,), generator=g, device=s.dev)[empty]] = True
    inputs, clean_inputs, ladders = {}, {}, {}
    for i, m in enumerate(MODALITIES):
        V = len(s.versions[m])
        corrupted_version = torch.randint(1, V, (B,), generator=g, device=s.dev)
        version = torch.where(u[:, i] < P_CLEAN, torch.zeros_like(y), corrupted_version)
        xi = s.vectors(m, items[m], version)
        xi = ModalityInput(xi.x * present[:, i].view(-1, 1, 1).float(), xi.mask)  # flagged missing -> zeros
        inputs[m] = xi
        clean_inputs[m] = s.vectors(m, items[m], torch.zeros_like(y))
        ladders[m] = _ladder(s, m, items[m], g)
    ones = torch.ones((B, M), dtype=torch.bool, device=s.dev)
    return (Batch(MODALITIES, inputs, present, y), Batch(MODALITIES, clean_inputs, ones, y), ladders)


def model_config(variant: str) -> UMQConfig:
    base = UMQConfig(modalities=[ModalitySpec(m, DIMS[m]) for m in MODALITIES], d=64, dropout=0.2,
                     input_dropout=0.1, experts=4, expert_hidden=128)
    return variant_config(base, variant)


def train_variant(variant: str, s: TripleSampler, steps: int, B: int, seed: int, progress: bool) -> UMQ:
    from tqdm import tqdm

    torch.manual_seed(seed)
    model = UMQ(model_config(variant)).to(s.dev)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator(device=s.dev).manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc=f"train {variant}", disable=not progress):
        batch, clean, ladders = sample_batch(s, B, g)
        total, _ = compute_losses(model, batch, clean, g, ladders if model.estimator is not None else None)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
    return model.eval()


# ------------------------------------------------------------------------------------------------ validation
def validation_triples(c: Caches, n_per_class: int, seed: int) -> dict[str, np.ndarray]:
    """Fixed (face, voice, text) item indices with a shared label, ``n_per_class`` per class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(EMOTIONS)), n_per_class)
    out = {"y": y}
    for m in MODALITIES:
        out[m] = np.array([rng.choice(np.flatnonzero(c.get(m).y == k)) for k in y])
    return out


@torch.inference_mode()
def run(model: UMQ, s: TripleSampler, trip: dict, versions: dict[str, int | str], present: dict[str, bool]):
    """Forward the validation triples with one version per modality; returns (probs, q) on the host."""
    inputs = {}
    n = len(trip["y"])
    for m in MODALITIES:
        v = versions.get(m, 0)
        v = s.versions[m].index(v) if isinstance(v, str) else v
        items = torch.from_numpy(trip[m]).to(s.dev)
        xi = s.vectors(m, items, torch.full((n,), v, device=s.dev))
        if not present.get(m, True):
            xi = ModalityInput(torch.zeros_like(xi.x), xi.mask)
        inputs[m] = xi
    pres = torch.tensor([[present.get(m, True) for m in MODALITIES]] * n, device=s.dev)
    out = model(inputs, pres)
    return out.probs.cpu().numpy(), out.q.cpu().numpy()


def _score(probs: np.ndarray, y: np.ndarray) -> dict:
    m = classification_report(y, probs.argmax(1))
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}


def conditions() -> dict[str, tuple[dict, dict]]:
    """name -> (versions, present). Missing = flagged by capture; corrupted = present but degraded."""
    conds: dict[str, tuple[dict, dict]] = {"complete": ({}, {})}
    for keep in (("face",), ("voice",), ("text",), ("face", "voice"), ("face", "text"), ("voice", "text")):
        conds["only " + "+".join(keep)] = ({}, {m: m in keep for m in MODALITIES})
    for m in MODALITIES:
        for k in KINDS[m]:
            conds[f"{m} {k}@0.8"] = ({m: f"{k}@0.8"}, {})
        conds[f"{m} off (unflagged)"] = ({m: "null"}, {})
    return conds


def evaluate_model(model: UMQ, s: TripleSampler, trip: dict) -> dict:
    y = trip["y"]
    res = {}
    for name, (versions, present) in conditions().items():
        probs, _ = run(model, s, trip, versions, present)
        res[name] = _score(probs, y)
    return res


def encoder_reference(c: Caches, trip: dict) -> dict:
    """Each encoder alone on the same validation items (its own probabilities, clean and corrupted)."""
    out = {}
    for m in MODALITIES:
        x = c.get(m).x[trip[m]]
        probs = x[:, :, 128:135]
        out[m] = {"clean": _score(probs[:, 0], trip["y"])}
        for k in KINDS[m]:
            v = c.get(m).versions.index(f"{k}@0.8")
            out[m][f"{k}@0.8"] = _score(probs[:, v], trip["y"])
    return out


def against_best_remaining(conds: dict, encoders: dict) -> dict:
    """Per condition: the fused accuracy minus the best *usable* single encoder's clean accuracy.

    Usable = present and not the corrupted one (for "voice white@0.8" the face and text encoders on clean input);
    for "complete" every encoder. Positive = fusion beats the best input it could have relied on alone.
    """
    out = {}
    for name, res in conds.items():
        if name == "complete":
            usable = list(MODALITIES)
        elif name.startswith("only "):
            usable = name[5:].split("+")
        else:
            usable = [m for m in MODALITIES if not name.startswith(m + " ")]
        best = max(encoders[m]["clean"]["accuracy"] for m in usable)
        out[name] = round(res["accuracy"] - best, 4)
    return out


def quality_ordering(model: UMQ, s: TripleSampler, trip: dict) -> dict:
    """Per modality and corruption kind: mean q per severity and how often q orders clean > 0.35 > 0.8 > off."""
    out = {}
    for i, m in enumerate(MODALITIES):
        q_clean = run(model, s, trip, {}, {})[1][:, i]
        q_null = run(model, s, trip, {m: "null"}, {})[1][:, i]
        out[m] = {"clean": round(float(q_clean.mean()), 4), "off": round(float(q_null.mean()), 4)}
        pair_hits, pair_n = 0, 0
        for k in KINDS[m]:
            qs = [q_clean] + [run(model, s, trip, {m: f"{k}@{sev:g}"}, {})[1][:, i] for sev in SEVERITIES] + [q_null]
            hits = [(a > b) for a, b in zip(qs[:-1], qs[1:])]
            out[m][k] = {"mean_q": [round(float(q.mean()), 4) for q in qs],
                         "pairwise_order": round(float(np.mean(hits)), 4),
                         "means_ordered": bool(all(a.mean() > b.mean() for a, b in zip(qs[:-1], qs[1:])))}
            pair_hits += int(np.sum(hits))
            pair_n += int(np.size(hits))
        out[m]["pairwise_order"] = round(pair_hits / pair_n, 4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umq.runtime.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="data root in the ../shared/data layout (default $UMQ_DATA)")
    ap.add_argument("--out", default=str(ASSETS), help="folder for the checkpoints and metrics.json")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = Path(args.data) if args.data else default_data_root()
    if root is None or not root.is_dir():
        print("no data: pass --data DIR (the ../shared/data layout) or set UMQ_DATA", file=sys.stderr)
        return 2
    dev = pick_device(args.device)
    t0 = time.time()
    train_c = load_caches(root, "train", "cpu", not args.quiet)
    val_c = load_caches(root, "val", "cpu", not args.quiet)
    t_cache = time.time() - t0
    norm = fit_norm(train_c)
    s_train, s_val = TripleSampler(train_c, norm, dev), TripleSampler(val_c, norm, dev)
    trip = validation_triples(val_c, 300, args.seed + 1)
    out = Path(args.out)
    metrics: dict = {"n_train_items": {m: int(len(train_c.get(m).y)) for m in MODALITIES},
                     "n_val_triples": int(len(trip["y"])), "steps": args.steps, "batch_size": args.batch_size,
                     "cache_seconds": round(t_cache, 1), "encoders": encoder_reference(val_c, trip), "models": {}}
    for variant in VARIANTS:
        t1 = time.time()
        model = train_variant(variant, s_train, args.steps, args.batch_size, args.seed, not args.quiet)
        m = {"train_seconds": round(time.time() - t1, 1), "conditions": evaluate_model(model, s_val, trip)}
        m["vs_best_usable_encoder"] = against_best_remaining(m["conditions"], metrics["encoders"])
        if model.estimator is not None:
            m["quality"] = quality_ordering(model, s_val, trip)
        metrics["models"][variant] = m
        data = {"kind": "runtime", "feature_recipe": FEATURE_RECIPE, "modalities": list(MODALITIES),
                "versions": {k: version_names(k) for k in MODALITIES}, "licence": LICENCE}
        save_checkpoint(out / f"{variant}.pt", kind=variant, model=model.cpu(), labels=list(EMOTIONS), norm=norm,
                        data=data, metrics={"train_seconds": m["train_seconds"],
                                            "complete_accuracy": m["conditions"]["complete"]["accuracy"]})
        log.info("%s: complete %.3f, only face %.3f, only voice %.3f, only text %.3f", variant,
                 m["conditions"]["complete"]["accuracy"], m["conditions"]["only face"]["accuracy"],
                 m["conditions"]["only voice"]["accuracy"], m["conditions"]["only text"]["accuracy"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"wrote {', '.join(v + '.pt' for v in VARIANTS)} and metrics.json to {out} "
          f"in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
