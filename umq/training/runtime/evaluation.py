"""Held-out evaluation of the runtime models on label-consistent validation triples.

The validation caches (FER2013 ``public_test``, RAVDESS actors 17-20, MELD ``dev``) are split in two halves
(:func:`halves`): the *fit* half is the only data the quality calibration is fitted on, the *report* half gives
every number reported (fusion accuracies, reliability tables). Voice is split by actor (17-18 / 19-20), faces and
utterances by item (FER and MELD dev hold no speaker identities we could group by).

Columns (:func:`conditions`): complete; each subset of modalities flagged missing; each modality corrupted by
each kind at each severity of the validation ladder; each modality switched off without capture noticing.
"""
from __future__ import annotations

import numpy as np
import torch

from umq.labels import EMOTIONS
from umq.metrics import classification_report
from umq.runtime.features import MODALITIES
from umq.training.runtime.sampling import TripleSampler, encoder_correct, relative
from umq.training.runtime.triples import KINDS, ModalityCache
from umq.types import ModalityInput

SUBSETS = (("video",), ("audio",), ("text",), ("video", "audio"), ("video", "text"), ("audio", "text"))


def halves(cache: ModalityCache) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, report)`` item indices. Voice: first half of the actors / second half (items are stored actor by
    actor); faces and text: alternate items."""
    n = len(cache.y)
    idx = np.arange(n)
    if cache.modality == "audio":
        return idx[: n // 2], idx[n // 2:]
    return idx[0::2], idx[1::2]


def validation_triples(caches: dict[str, ModalityCache], n_per_class: int, seed: int,
                       part: str = "report") -> dict[str, np.ndarray]:
    """Fixed (face, voice, text) item indices with a shared label, ``n_per_class`` per class, drawn from the
    ``part`` half of every validation cache."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(EMOTIONS)), n_per_class)
    out = {"y": y}
    for m in MODALITIES:
        pool = halves(caches[m])[0 if part == "fit" else 1]
        out[m] = np.array([rng.choice(pool[caches[m].y[pool] == k]) for k in y])
    return out


@torch.inference_mode()
def run(model, s: TripleSampler, trip: dict, versions: dict[str, str], present: dict[str, bool],
        gate: np.ndarray | None = None):
    """Forward the triples with one version per modality; returns ``(probs, q)`` on the host.

    ``gate``: raw-score thresholds per modality (:meth:`QualityCalibration.raw_thresholds`). A present modality
    whose raw quality is below its threshold is then left out, as the live analyzer does: a second pass with it
    flagged missing gives the probabilities; ``q`` stays the first pass's."""
    n = len(trip["y"])
    pres = np.array([[present.get(m, True) for m in MODALITIES]] * n)
    probs, q = _forward(model, s, trip, versions, pres)
    if gate is not None:
        keep = pres & (q >= gate[None, :])
        if not np.array_equal(keep, pres):
            probs = _forward(model, s, trip, versions, keep)[0]
    return probs, q


def _forward(model, s: TripleSampler, trip: dict, versions: dict[str, str], pres: np.ndarray):
    """One pass with a per-item presence mask ``[n, M]`` (absent inputs zeroed, as the analyzer does)."""
    inputs = {}
    n = len(trip["y"])
    pres_t = torch.from_numpy(pres).to(s.dev)
    for i, m in enumerate(MODALITIES):
        v = s.versions[m].index(versions.get(m, "clean"))
        xi = s.vectors(m, torch.from_numpy(trip[m]).to(s.dev), torch.full((n,), v, device=s.dev))
        inputs[m] = ModalityInput(xi.x * pres_t[:, i].view(-1, *([1] * (xi.x.dim() - 1))), xi.mask)
    out = model(inputs, pres_t)
    return out.probs.cpu().numpy(), out.q.cpu().numpy()


def score(probs: np.ndarray, y: np.ndarray) -> dict:
    m = classification_report(y, probs.argmax(1))
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}


def conditions(versions: dict[str, list[str]]) -> dict[str, tuple[dict, dict]]:
    """name -> (versions, present). Missing = flagged by capture; corrupted = present but degraded."""
    conds: dict[str, tuple[dict, dict]] = {"complete": ({}, {})}
    for keep in SUBSETS:
        conds["only " + "+".join(keep)] = ({}, {m: m in keep for m in MODALITIES})
    for m in MODALITIES:
        for v in versions[m]:
            if v not in ("clean", "null"):
                conds[f"{m} {v}"] = ({m: v}, {})
        conds[f"{m} off (unflagged)"] = ({m: "null"}, {})
    return conds


def evaluate_model(model, s: TripleSampler, trip: dict, gate: np.ndarray | None = None) -> dict:
    return {name: score(run(model, s, trip, v, p, gate)[0], trip["y"])
            for name, (v, p) in conditions(s.versions).items()}


def summary(conds: dict) -> dict:
    """Means over column groups: missing (a modality flagged missing), corrupted (a modality degraded or
    switched off unflagged), and all non-complete columns."""
    acc = {k: v["accuracy"] for k, v in conds.items()}
    missing = [v for k, v in acc.items() if k.startswith("only ")]
    corrupted = [v for k, v in acc.items() if k != "complete" and not k.startswith("only ")]
    return {"complete": acc["complete"], "mean_missing": round(float(np.mean(missing)), 4),
            "mean_corrupted": round(float(np.mean(corrupted)), 4),
            "mean_all": round(float(np.mean(missing + corrupted)), 4)}


def degraded_vs_removed(model, s: TripleSampler, trip: dict, severity: str = "0.8",
                        gate: np.ndarray | None = None) -> dict:
    """Per modality: accuracy with that modality clean, degraded by each kind at ``severity``, switched off
    unflagged, and removed (flagged missing); the others clean. "Degraded >= removed" is the property wanted."""
    out = {}
    y = trip["y"]
    for m in MODALITIES:
        row = {"clean": score(run(model, s, trip, {}, {}, gate)[0], y)["accuracy"],
               "removed": score(run(model, s, trip, {}, {m: False}, gate)[0], y)["accuracy"],
               "off (unflagged)": score(run(model, s, trip, {m: "null"}, {}, gate)[0], y)["accuracy"]}
        for k in KINDS[m]:
            row[f"{k}@{severity}"] = score(run(model, s, trip, {m: f"{k}@{severity}"}, {}, gate)[0],
                                           y)["accuracy"]
        out[m] = row
    return out


def encoder_reference(caches: dict[str, ModalityCache], trip: dict) -> dict:
    """Each encoder alone on the same items (its own probabilities), per version, and relative to clean."""
    out = {}
    for m in MODALITIES:
        ok = encoder_correct(caches[m])[trip[m]]
        acc = ok.mean(0)
        out[m] = {v: {"accuracy": round(float(a), 4), "relative": round(float(relative(a, acc[0])), 4)}
                  for v, a in zip(caches[m].versions, acc)}
    return out


def quality_ordering(model, s: TripleSampler, trip: dict) -> dict:
    """Per modality and kind: mean raw q along the ladder (clean, each severity, off) and whether means fall."""
    out = {}
    for i, m in enumerate(MODALITIES):
        q_clean = run(model, s, trip, {}, {})[1][:, i]
        q_null = run(model, s, trip, {m: "null"}, {})[1][:, i]
        out[m] = {"clean": round(float(q_clean.mean()), 4), "off": round(float(q_null.mean()), 4)}
        for k in KINDS[m]:
            names = [v for v in s.versions[m] if v.startswith(k + "@")]
            qs = [q_clean] + [run(model, s, trip, {m: v}, {})[1][:, i] for v in names] + [q_null]
            means = [float(q.mean()) for q in qs]
            out[m][k] = {"mean_q": [round(v, 4) for v in means],
                         "means_ordered": bool(all(a >= b for a, b in zip(means[:-1], means[1:])))}
    return out
