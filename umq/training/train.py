"""Training: ``python -m umq.train --config configs/ravdess_umq.toml [--data DIR] [--out PATH] [--resume]``.

Seeded, resumable (a ``<out>.last.pt`` file is written after every epoch and removed on success), early
stopping on an inner validation split carved from the training speakers (never on the reported validation
actors), optional refit on all training speakers for the selected number of epochs.
"""
from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from umq.checkpoint import load_checkpoint, save_checkpoint
from umq.corrupt import Condition, TrainCorruption, sample_training_corruption
from umq.device import pick_device
from umq.labels import EMOTIONS
from umq.model import UMQ, UMQConfig, compute_losses, variant_config
from umq.training.data import FeatureSet, apply_norm, fit_norm, parse_ids
from umq.training.data.loading import load_dataset
from umq.training.evaluate import evaluate_conditions
from umq.types import Batch

log = logging.getLogger(__name__)


LICENCE = {"ravdess": "research / non-commercial use only: trained on RAVDESS (Livingstone & Russo 2018, "
                      "CC BY-NC-SA 4.0)"}


def load_config(path: str | Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return tomllib.load(f)


def build_model_config(cfg: dict, dims: dict[str, int], variant: str) -> UMQConfig:
    """``[model]`` table + the data's modality sizes (+ per-modality encoder overrides) + variant overrides."""
    m = dict(cfg.get("model", {}))
    enc = m.pop("encoders", {})
    m["modalities"] = [{"name": k, "dim": d, "encoder": enc.get(k)} for k, d in dims.items()]
    return variant_config(UMQConfig.from_dict(m), variant)


def split_data(cfg: dict, data_path: str | None, fs_all: FeatureSet | None,
               progress: bool = True) -> tuple[FeatureSet, FeatureSet]:
    """(train, inner validation) raw features according to ``[data]``."""
    d = cfg["data"]
    if d.get("kind", "ravdess") == "mmsa":
        return load_dataset(d, data_path, split="train"), load_dataset(d, data_path, split="valid")
    tr, va = parse_ids(d["train_groups"]), parse_ids(d["val_groups"])
    fs = fs_all if fs_all is not None else load_dataset(d, data_path, groups=tr + va, progress=progress)
    return fs.select_groups(tr), fs.select_groups(va)


def selection_conditions(cfg: dict) -> list[Condition]:
    spec = cfg["train"].get("select_conditions", [["complete", 0], ["missing", 0.3], ["missing", 0.6],
                                                  ["noise", 1.0], ["noise", 3.0]])
    return [Condition(k, float(v)) for k, v in spec]


def selection_score(res: dict[str, dict[str, float]], task: str) -> float:
    """Higher is better: mean accuracy (classification) or mean -MAE (regression) over selection conditions."""
    return float(np.mean([v["acc"] if task != "regression" else -v["mae"] for v in res.values()]))


def _run_epoch(model: UMQ, opt: torch.optim.Optimizer, train: Batch, tc: TrainCorruption, g: torch.Generator,
               bs: int) -> dict[str, float]:
    model.train()
    n = train.size
    perm = torch.randperm(n, generator=g, device=g.device)
    steps = max(n // bs, 1)  # drop the incomplete last batch (in-batch ranking/contrast need a full batch)
    acc: dict[str, torch.Tensor] = {}
    for s in range(steps):
        clean = train.index(perm[s * bs:(s + 1) * bs])
        corrupted, _ = sample_training_corruption(clean, tc, g)
        total, parts = compute_losses(model, corrupted, clean, g)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        parts["total"] = total
        for k, v in parts.items():  # accumulate on the device: no per-step host sync
            acc[k] = acc.get(k, 0.0) + v.detach()
    return {k: float(v) / steps for k, v in acc.items()}  # one sync per epoch


def _fit(cfg: dict, mcfg: UMQConfig, train: Batch, val: FeatureSet | None, dev: torch.device, epochs: int,
         last_path: Path, phase: str, resume: bool, progress: bool) -> tuple[UMQ, dict[str, Any]]:
    """Train for up to ``epochs``; with ``val`` keep the best selection score (early stopping), else the last."""
    t = cfg["train"]
    torch.manual_seed(int(t.get("seed", 0)))
    model = UMQ(mcfg).to(dev)
    lr = float(t.get("lr", 2e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=float(t.get("weight_decay", 1e-2)), fused=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, int(t.get("epochs", 80)), eta_min=lr * 0.05)
    g = torch.Generator(device=dev).manual_seed(int(t.get("seed", 0)) + (0 if phase == "select" else 1))
    tc = TrainCorruption.from_dict(cfg.get("corrupt", {}))
    st: dict[str, Any] = {"phase": phase, "epoch": 0, "best_score": -1e9, "best_epoch": 0, "bad": 0, "history": []}
    best_state = None
    if resume and last_path.exists():
        ck = load_checkpoint(last_path, map_location=dev)
        ts = ck.get("train_state", {})
        if ts.get("phase") == phase and ck["model_config"] == mcfg.to_dict():
            model.load_state_dict(ck["state_dict"])
            opt.load_state_dict(ts["optimizer"])
            sched.load_state_dict(ts["scheduler"])
            g.set_state(ts["generator"].cpu())
            torch.set_rng_state(ts["torch_rng"].cpu())
            best_state = ts.get("best_state")
            st = {k: ts[k] for k in ("phase", "epoch", "best_score", "best_epoch", "bad", "history")}
            log.info("resumed %s phase at epoch %d from %s", phase, st["epoch"], last_path)
        else:
            log.warning("%s is from another phase or config: starting %s from scratch", last_path, phase)
    patience = int(t.get("patience", 12))
    conds = selection_conditions(cfg)
    bar = tqdm(range(st["epoch"], epochs), desc=f"train[{phase}]", disable=not progress, leave=False)
    for ep in bar:
        stats = _run_epoch(model, opt, train, tc, g, int(t.get("batch_size", 64)))
        sched.step()
        rec = {"epoch": ep + 1, "loss": stats["total"]}
        if val is not None:
            res = evaluate_conditions(model, val, conds, [int(t.get("select_seed", 0))], dev)
            score = selection_score(res, mcfg.task)
            rec["select"] = score
            if score > st["best_score"]:
                st.update(best_score=score, best_epoch=ep + 1, bad=0)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                st["bad"] += 1
        st["history"].append(rec)
        st["epoch"] = ep + 1
        bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k != "epoch"})
        ts = {**copy.deepcopy(st), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
              "generator": g.get_state(), "torch_rng": torch.get_rng_state(), "best_state": best_state}
        if int(t.get("save_every", 1)) and (ep + 1) % int(t.get("save_every", 1)) == 0:
            save_checkpoint(last_path, kind="last", model=model, labels=list(EMOTIONS), norm=None,
                            data={}, metrics={}, train_state=ts)
        if val is not None and st["bad"] >= patience:
            break
    if val is not None and best_state is not None:
        model.load_state_dict(best_state)
    return model, st


def train_model(cfg: dict, data_path: str | None = None, out: str | Path = "runs/umq.pt", resume: bool = False,
                variant: str = "umq", device: str | None = None, progress: bool = True,
                fs_all: FeatureSet | None = None) -> dict[str, Any]:
    """Train one model variant and write its checkpoint to ``out``; returns its metrics."""
    t0 = time.time()
    dev = pick_device(device)
    out = Path(out)
    last = out.with_name(out.name + ".last.pt")
    d, t = cfg["data"], cfg["train"]
    train_raw, val_raw = split_data(cfg, data_path, fs_all, progress)
    speaker_norm = list(d.get("speaker_norm", []))
    norm = fit_norm(train_raw, speaker_norm)
    train_n, val_n = apply_norm(train_raw, norm), apply_norm(val_raw, norm)
    mcfg = build_model_config(cfg, train_raw.dims(), variant)
    epochs = int(t.get("epochs", 80))
    model, st = _fit(cfg, mcfg, train_n.to_batch(dev), val_n, dev, epochs, last, "select", resume, progress)
    metrics: dict[str, Any] = {"select_score": st["best_score"], "best_epoch": st["best_epoch"],
                               "epochs_run": st["epoch"], "n_train": len(train_raw), "n_val": len(val_raw),
                               "select_history": [round(h.get("select", float("nan")), 4) for h in st["history"]]}
    if t.get("refit", False):
        # refit on train + inner-val speakers for the selected number of epochs (more speakers generalise better)
        full_raw = _concat(train_raw, val_raw)
        norm = fit_norm(full_raw, speaker_norm)
        full_n = apply_norm(full_raw, norm)
        model, st2 = _fit(cfg, mcfg, full_n.to_batch(dev), None, dev, max(st["best_epoch"], 1), last, "refit", resume,
                          progress)
        metrics["refit_epochs"] = st2["epoch"]
        metrics["n_train"] = len(full_raw)
    metrics["train_seconds"] = time.time() - t0
    data_spec = {k: v for k, v in d.items() if k in ("kind", "audio_view", "audio_params")}
    data_spec["licence"] = LICENCE.get(d.get("kind", "ravdess"), "research use; inherits the training data's terms")
    save_checkpoint(out, kind=variant, model=model.cpu(), labels=list(EMOTIONS), norm=norm, data=data_spec,
                    metrics=metrics)
    last.unlink(missing_ok=True)
    log.info("%s: select score %.4f at epoch %d, %.0f s -> %s", variant, metrics["select_score"],
             metrics["best_epoch"], metrics["train_seconds"], out)
    return metrics


def _concat(a: FeatureSet, b: FeatureSet) -> FeatureSet:
    x, mask = {}, {}
    for m in a.modalities:
        t = max(a.x[m].shape[1], b.x[m].shape[1])
        pad = lambda v, fill, t=t: np.pad(v, [(0, 0), (0, t - v.shape[1])] + [(0, 0)] * (v.ndim - 2),  # noqa: E731
                                          constant_values=fill)
        x[m] = np.concatenate([pad(a.x[m], 0), pad(b.x[m], 0)])
        mask[m] = np.concatenate([pad(a.mask[m], False), pad(b.mask[m], False)])
    cat = lambda u, v: None if u is None else np.concatenate([u, v])  # noqa: E731
    return FeatureSet(a.modalities, x, mask, np.concatenate([a.present, b.present]),
                      np.concatenate([a.groups, b.groups]), a.ids + b.ids, cat(a.y, b.y), cat(a.y_reg, b.y_reg),
                      a.feature_names)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umq.train", description="Train a UMQ model (or a baseline).")
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", default=None, help="data folder (RAVDESS layout) or MMSA .pkl; default from config/env")
    ap.add_argument("--out", default=None, help="checkpoint path (default runs/<config stem>.pt)")
    ap.add_argument("--variant", default="umq", help="umq or a baseline/ablation name (umq.model.VARIANTS)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>.last.pt when it exists")
    ap.add_argument("--device", default=None)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    out = args.out or f"runs/{Path(args.config).stem}.pt"
    m = train_model(cfg, args.data or cfg["data"].get("path"), out, args.resume, args.variant, args.device,
                    progress=not args.quiet)
    print(f"saved {out}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
