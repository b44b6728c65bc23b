"""Training objective of UMQ (and of every baseline, which simply lacks some of the terms).

``total = task + w_unimodal * unimodal + w_quality * (anchor_low + anchor_high + ladder + cross)
          + w_recon * recon + w_sim * similarity + w_balance * load_balance + w_consistency * consistency
          + w_q_target * q_target + w_twin * (twin + twin_task)``

The last two terms need material only the runtime trainer has (:class:`QualityExtras`): measured usefulness
targets per input version, and the "removed" twin of every sample with a corrupted modality.

Everything stays on the device; nothing here calls ``.item()`` (the training loop accumulates tensors).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from umq.corrupt import corruption_ladder
from umq.model.quality import anchor_losses, cross_rank_loss, ladder_rank_loss
from umq.model.umq import UMQ
from umq.types import Batch, ModalityInput, UMQOutput


def per_sample_loss(task: str, pred: Tensor, target: Tensor, smoothing: float = 0.0) -> Tensor:
    """Per-sample task loss: cross-entropy (classification) or L1 (regression, ``pred [B, 1]``)."""
    if task == "regression":
        return (pred.squeeze(-1) - target).abs()
    return F.cross_entropy(pred, target, reduction="none", label_smoothing=smoothing)


@dataclass
class QualityExtras:
    """Optional supervision of the runtime trainer.

    Attributes:
        ladder_targets: modality -> ``[L * B]`` measured usefulness of each ladder rung (rung-major, as the
            ladders are stacked); used with ``main_targets`` by the ``q_target`` term.
        main_targets: ``[B, M]`` usefulness of the inputs of the main (corrupted) pass, 0 where flagged missing.
        twin: the main batch with every corrupted modality flagged missing (zeros), or None.
        twin_valid: bool ``[B]``: the sample has a corrupted modality and its twin keeps at least one modality.
    """

    ladder_targets: dict[str, Tensor] | None = None
    main_targets: Tensor | None = None
    twin: Batch | None = None
    twin_valid: Tensor | None = None


def compute_losses(model: UMQ, batch: Batch, clean: Batch, g: torch.Generator,
                   ladders: dict[str, ModalityInput] | None = None,
                   extras: QualityExtras | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Forward ``batch`` (corrupted) and return ``(total, parts)``. ``clean`` is the same samples uncorrupted:
    it provides the corruption ladder and the reconstruction targets.

    ``ladders`` (modality -> rungs stacked along the batch axis, best first, ``len(ladder_sigmas) + 2`` rungs)
    replaces the feature-noise ladder with versions of the same samples corrupted at the signal level (the
    runtime model's blur/noise/dropped-word versions); rung 0 must be the clean sample."""
    cfg, L = model.config, model.config.loss
    out: UMQOutput = model(batch.inputs, batch.present)
    pf = batch.present.float()
    parts: dict[str, Tensor] = {}
    pred = out.regression.unsqueeze(-1) if cfg.task == "regression" else out.logits
    target = batch.y_reg if cfg.task == "regression" else batch.y
    parts["task"] = per_sample_loss(cfg.task, pred, target, L.label_smoothing).mean()
    uni_main = torch.stack([per_sample_loss(cfg.task, out.unimodal_logits[m], target) for m in model.names], 1)
    uni = (uni_main * pf).sum() / pf.sum().clamp_min(1.0)

    h_clean: dict[str, Tensor] = {}
    if model.estimator is not None:
        low, high, ladder, cross, target_terms = [], [], [], [], []
        use_targets = extras is not None and extras.ladder_targets is not None and L.w_q_target > 0
        B = batch.size
        n_rungs = len(L.ladder_sigmas) + 2
        high_target = math.log(L.anchor_high / (1 - L.anchor_high)) if L.rank_space == "logit" else L.anchor_high
        for i, m in enumerate(model.names):
            lad = ladders[m] if ladders is not None else corruption_ladder(clean.inputs[m], L.ladder_sigmas, g)
            h = model.encode(m, lad)
            logit = model.quality_logit(m, h, lad)
            score = (logit if L.rank_space == "logit" else torch.sigmoid(logit)).view(n_rungs, B)
            ul = per_sample_loss(cfg.task, model.unimodal[m](h), target.repeat(n_rungs)).view(n_rungs, B)
            h_clean[m] = h[:B]
            uni = uni + ul[0].mean()  # unimodal heads also learn from the clean rung
            ladder.append(ladder_rank_loss(score, L.ladder_margin))
            # candidates for the high anchor and the cross-sample ranking: all rungs but the bottom + the main
            # (training-corrupted) pass, missing entries included: their real unimodal loss on a zeroed input
            # is high, which is exactly the order we want (no boolean indexing: no host sync)
            s_main = out.q_logit[:, i] if L.rank_space == "logit" else torch.sigmoid(out.q_logit[:, i])
            cand_q = torch.cat([score[:-1].reshape(-1), s_main])
            cand_l = torch.cat([ul[:-1].reshape(-1), uni_main[:, i]])
            # the high anchor acts on uncorrupted representations only: a corrupted version is bounded by its
            # clean counterpart through the ladder, and anchoring it too would contradict the ladder margin
            hq, hl = (score[0], ul[0]) if L.high_anchor_clean_only else (cand_q, cand_l)
            lo, hi = anchor_losses(logit.view(n_rungs, B)[-1], hq, hl, L.loss_threshold, high_target)
            low.append(lo)
            high.append(hi)
            if cand_q.shape[0] > L.max_rank_items:
                idx = torch.randperm(cand_q.shape[0], generator=g, device=g.device)[:L.max_rank_items]
                cand_q, cand_l = cand_q[idx], cand_l[idx]
            cross.append(cross_rank_loss(cand_q, cand_l, L.cross_margin, L.loss_gap))
            if use_targets:
                target_terms.append(F.binary_cross_entropy_with_logits(logit, extras.ladder_targets[m]))
                target_terms.append(F.binary_cross_entropy_with_logits(out.q_logit[:, i], extras.main_targets[:, i]))
        parts["q_anchor_low"] = torch.stack(low).mean()
        parts["q_anchor_high"] = torch.stack(high).mean()
        parts["q_ladder"] = torch.stack(ladder).mean()
        parts["q_cross"] = torch.stack(cross).mean()
        if use_targets:
            parts["q_target"] = torch.stack(target_terms).mean()
    else:
        # same auxiliary signal for variants without an estimator: unimodal heads also see the clean pass
        h_clean = {m: model.encode(m, clean.inputs[m]) for m in model.names}
        for m in model.names:
            uni = uni + per_sample_loss(cfg.task, model.unimodal[m](h_clean[m]), target).mean()
    parts["unimodal"] = uni

    if model.enhancer is not None:
        rec = []
        n_present = pf.sum(1)
        for i, m in enumerate(model.names):
            has_donor = ((n_present - pf[:, i]) > 0).float()  # reconstruction needs another present modality
            err = (out.h_hat[m] - h_clean[m].detach()).pow(2).mean(-1)
            rec.append((err * has_donor).sum() / has_donor.sum().clamp_min(1.0))
        parts["recon"] = torch.stack(rec).mean()
    parts.update(out.aux)
    if extras is not None and extras.twin is not None and L.w_twin > 0 and cfg.task != "regression":
        parts.update(_twin_terms(model, out, extras, target, L.label_smoothing))

    w = {"q_target": L.w_q_target, "twin": L.w_twin, "twin_task": L.w_twin, "task": 1.0, "unimodal": L.w_unimodal,
         "q_anchor_low": L.w_quality, "q_anchor_high": L.w_quality,
         "q_ladder": L.w_quality, "q_cross": L.w_quality, "recon": L.w_recon, "similarity": L.w_sim,
         "load_balance": L.w_balance, "consistency": L.w_consistency}
    total = sum(w[k] * v for k, v in parts.items())
    return total, parts



def _twin_terms(model: UMQ, out: UMQOutput, extras: QualityExtras, target: Tensor,
                smoothing: float) -> dict[str, Tensor]:
    """``twin``: mean ``relu(loss(corrupted) - loss(removed twin))`` over valid samples (the twin's loss is the
    bar, not a target: no gradient through it); ``twin_task``: the twin's own task loss, so the model also
    learns the removed configuration it is compared with."""
    tw = model(extras.twin.inputs, extras.twin.present)
    l_main = per_sample_loss("classification", out.logits, target, smoothing)
    l_twin = per_sample_loss("classification", tw.logits, target, smoothing)
    v = extras.twin_valid.to(l_main.dtype)
    n = v.sum().clamp_min(1.0)
    return {"twin": (F.relu(l_main - l_twin.detach()) * v).sum() / n, "twin_task": (l_twin * v).sum() / n}
