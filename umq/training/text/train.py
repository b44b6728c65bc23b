"""Train the text emotion head on frozen MiniLM features: GoEmotions-Ekman train + MELD train, select on a held-out
part of MELD train (by dialogue), report MELD dev once.

    nice -n 19 python -m umq.training.text.train            # data from $UMQ_DATA or ../shared/data

Procedure (every choice below is made on MELD-train data only; MELD dev is scored once, at the end):

1. Features: the frozen encoder's per-layer masked means (all 7 layers cached; ``config["layers"]`` used) and the
   lexical features, for every row of ``meld_train``, ``meld_dev``, ``goemotions_ekman_train`` and
   ``goemotions_ekman_dev``, cached under ``~/.cache/umq/text`` (keyed by the data file's SHA-256 and the feature
   version; never inside the repo).
2. Split MELD train into fit / held-out parts by ``Dialogue_ID`` (20 % of the dialogues held out), ``--splits``
   times with different seeds (default 3).
3. Grid over how the sources and classes are weighted:
   * GoEmotions per-row sample weight ``w`` (``--goe-weights``; every MELD row weighs 1, a multi-label
     GoEmotions row spreads its weight evenly over its labels), and whether its rows train the shipped classifier
     (``shared``) or a training-only classifier on the shared embedding (``separate``: Reddit's label prior and
     boundaries differ from speech, so it only shapes the hidden layers) - ``--goe-modes``;
   * a class weight ``(1 / MELD-train class frequency) ** p`` (``--class-weight-powers``; 0 = none, 1 = balanced).
   Each setting trains the MLP on each split's fit part (+ GoEmotions) and scores that split's held-out part
   (weighted F1) after every epoch; the (setting, epoch) with the best mean over splits wins.
4. Per-class logit offsets that maximise held-out weighted F1 (greedy coordinate search) on the first split's
   held-out logits of the chosen setting, cross-fitted: offsets tuned on one half of the held-out dialogues are
   scored on the other half and vice versa; only when that out-of-sample gain exceeds 0.002 does their mean go
   into the head's ``logit_bias`` buffer (``--no-bias`` skips this step).
5. Refit on all of MELD train (+ GoEmotions) with the chosen setting and epoch count, same seed.
6. Score MELD dev and GoEmotions dev once; save ``assets/text/text_head.pt`` and ``assets/text/text_metrics.json``.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from umq.labels import EMOTIONS
from umq.metrics import classification_report
from umq.perception.digests import sha256_file
from umq.perception.text.net import DEFAULT_CONFIG, DEFAULT_WEIGHTS, TextEmotionHead, head_input, save_text_head
from umq.training.data.text import TextRows, read_goemotions, read_meld, text_dir

FEATURE_VERSION = 2  # bump when the encoder pipeline or lexical features change (invalidates the cache)
CACHE_DIR = Path(os.environ.get("UMQ_CACHE", Path.home() / ".cache" / "umq")) / "text"
FILES = {"meld_train": "meld_train_sent_emo.csv", "meld_dev": "meld_dev_sent_emo.csv",
         "goe_train": "goemotions_ekman_train.tsv", "goe_dev": "goemotions_ekman_dev.tsv"}


# ---------------------------------------------------------------------------------------------------- features
ALL_LAYERS = (0, 1, 2, 3, 4, 5, 6)
"""The cache keeps the masked mean of every MiniLM layer (0 = word embeddings), so recipes can be compared."""


def file_features(path: Path, rows: TextRows, layers: list[int], cache_dir: Path = CACHE_DIR,
                  encoder=None, log=print) -> tuple[np.ndarray, np.ndarray]:
    """``(hidden means [N, len(layers), 384] float16, lexical [N, 9] float32)`` for ``rows`` (read from ``path``),
    from the cache when present (the cache holds all 7 layers)."""
    from umq.perception.text.frontend import LEXICAL_NAMES, lexical_matrix, shared_encoder

    key = hashlib.sha256(json.dumps([sha256_file(path), FEATURE_VERSION, list(LEXICAL_NAMES), len(rows)])
                         .encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"{path.stem}-{key}.npz"
    if cache.is_file():
        z = np.load(cache)
        return z["H"][:, list(layers)], z["L"]
    enc = encoder if encoder is not None else shared_encoder()
    t = time.time()
    order = np.argsort([len(s) for s in rows.texts], kind="stable")  # length-sorted batches pad less
    H = np.zeros((len(rows), len(ALL_LAYERS), 384), np.float16)
    bs = 128
    for k, s in enumerate(range(0, len(order), bs)):
        idx = order[s:s + bs]
        H[idx] = enc.hidden_means([rows.texts[i] for i in idx], ALL_LAYERS, bs).cpu().numpy().astype(np.float16)
        if k % 50 == 0:
            log(f"  encoding {path.name}: {s}/{len(order)} ({time.time() - t:.0f}s)")
    L = lexical_matrix(rows.texts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, H=H, L=L)
    tmp.replace(cache)
    log(f"  encoded {path.name}: {len(rows)} rows in {time.time() - t:.0f}s -> {cache}")
    return H[:, list(layers)], L


def soft_targets(rows: TextRows) -> np.ndarray:
    """``[N, 7]``: 1 on the label of single-label rows, ``1/k`` on each of the ``k`` labels of multi-label rows."""
    Y = np.zeros((len(rows), len(EMOTIONS)), np.float32)
    for i, lab in enumerate(rows.labels):
        Y[i, list(lab)] = 1.0 / len(lab)
    return Y


def group_split(groups: list[str], frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(fit, held_out)``: ``frac`` of the distinct groups (seeded) are held out whole."""
    uniq = np.array(sorted(set(groups)))
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(uniq)[: int(round(frac * len(uniq)))].tolist())
    g = np.array(groups)
    mask = np.array([x in held for x in g])
    return np.flatnonzero(~mask), np.flatnonzero(mask)


# ---------------------------------------------------------------------------------------------------- training
def weighted_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return classification_report(y, pred)["weighted_f1"]


def train_head(X: torch.Tensor, Y: torch.Tensor, w: torch.Tensor, config: dict, epochs: int, lr: float = 1e-3,
               weight_decay: float = 1e-2, batch_size: int = 256, seed: int = 0,
               val: tuple[torch.Tensor, np.ndarray] | None = None,
               aux_rows: torch.Tensor | None = None) -> tuple[TextEmotionHead, list[float], list]:
    """AdamW + one-cycle LR, soft-target cross-entropy weighted per row.

    ``aux_rows`` (bool ``[N]``): rows scored by a separate, training-only classifier layer on the shared embedding
    (GoEmotions rows: Reddit's label prior and decision boundaries differ from speech, so they shape the shared
    layers without pulling the shipped classifier towards their domain). Without it every row uses the head's
    classifier.

    Returns the head after the last epoch, the validation weighted F1 after each epoch (empty without ``val``) and
    the validation logits after each epoch.
    """
    torch.manual_seed(seed)
    head = TextEmotionHead(config)
    aux = torch.nn.Linear(head.emb_dim, len(EMOTIONS)) if aux_rows is not None else None
    wsum = w.sum()
    mu = (X * w[:, None]).sum(0) / wsum
    sd = (((X - mu) ** 2) * w[:, None]).sum(0).div(wsum).sqrt()
    head.set_normalizer(mu, sd)
    params = list(head.parameters()) + (list(aux.parameters()) if aux is not None else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n = X.shape[0]
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    curve, val_logits = [], []
    for _ in range(epochs):
        head.train()
        if aux is not None:
            aux.train()
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            logits, emb = head(X[idx])
            if aux is not None:
                a = aux_rows[idx]
                if a.any():
                    logits = torch.where(a[:, None], aux(head.drop(emb)), logits)
            loss = -(Y[idx] * F.log_softmax(logits, -1)).sum(1)
            loss = (loss * w[idx]).sum() / w[idx].sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if val is not None:
            head.eval()
            with torch.inference_mode():
                lv = head(val[0])[0]
            val_logits.append(lv)
            curve.append(weighted_f1(val[1], lv.argmax(1).numpy()))
    return head.eval(), curve, val_logits


def tune_bias(logits: torch.Tensor, y: np.ndarray, steps: tuple[float, ...] = (-0.3, -0.15, 0.15, 0.3),
              rounds: int = 3) -> np.ndarray:
    """Per-class additive logit offsets maximising weighted F1 of ``logits`` on ``y`` (greedy coordinate search)."""
    b = np.zeros(logits.shape[1], np.float32)
    lg = logits.numpy()
    best = weighted_f1(y, (lg + b).argmax(1))
    for _ in range(rounds):
        improved = False
        for c in range(len(b)):
            for d in steps:
                cand = b.copy()
                cand[c] += d
                score = weighted_f1(y, (lg + cand).argmax(1))
                if score > best + 1e-4:
                    best, b, improved = score, cand, True
        if not improved:
            break
    return b


# -------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="data root or text folder (default $UMQ_DATA or ../shared/data)")
    ap.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--metrics", default=None, help="metrics json (default: text_metrics.json beside --out)")
    ap.add_argument("--cache", default=str(CACHE_DIR))
    ap.add_argument("--goe-weights", default="0,0.1,0.3",
                    help="GoEmotions per-row sample weights to try (MELD rows weigh 1; 0 = MELD only)")
    ap.add_argument("--goe-modes", default="separate",
                    help="classifier GoEmotions rows train: the shipped one (shared) and/or a training-only one")
    ap.add_argument("--layers", default=",".join(map(str, DEFAULT_CONFIG["layers"])))
    ap.add_argument("--hidden", type=int, default=DEFAULT_CONFIG["hidden"])
    ap.add_argument("--emb", type=int, default=DEFAULT_CONFIG["emb"])
    ap.add_argument("--dropout", type=float, default=DEFAULT_CONFIG["dropout"])
    ap.add_argument("--epochs", type=int, default=12, help="epochs per selection run (best epoch is kept)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--heldout-frac", type=float, default=0.2)
    ap.add_argument("--splits", type=int, default=3, help="held-out splits (seeds seed..seed+k-1) averaged per epoch")
    ap.add_argument("--class-weight-powers", default="0,0.5",
                    help="row weight (1 / class frequency) ** power; 0 = plain, 1 = balanced")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-bias", action="store_true", help="skip the per-class logit offset tuning")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.time()
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    folder = text_dir(args.data)
    if folder is None:
        raise SystemExit("text data not found: pass --data or set UMQ_DATA (expects text/meld_*_sent_emo.csv, "
                         "text/goemotions_ekman_*.tsv)")
    layers = [int(s) for s in args.layers.split(",")]
    config = {**DEFAULT_CONFIG, "layers": layers, "hidden": args.hidden, "emb": args.emb, "dropout": args.dropout}
    rows = {k: (read_meld if v.endswith(".csv") else read_goemotions)(folder / v) for k, v in FILES.items()}
    for k, r in rows.items():
        log(f"{k}: {len(r)} rows, skipped {r.skipped}")

    feats = {}
    for k, r in rows.items():
        H, L = file_features(folder / FILES[k], r, layers, Path(args.cache), log=log)
        feats[k] = head_input(torch.from_numpy(H.astype(np.float32)), torch.from_numpy(L), config)
    t_feat = time.time() - t_start

    ym = np.array(rows["meld_train"].y())
    Ym = torch.from_numpy(soft_targets(rows["meld_train"]))
    Yg = torch.from_numpy(soft_targets(rows["goe_train"]))
    Xm, Xg = feats["meld_train"], feats["goe_train"]
    freq = np.bincount(ym, minlength=len(EMOTIONS)) / len(ym)

    def row_weights(Y: torch.Tensor, power: float) -> torch.Tensor:
        """Class weight ``(1 / MELD-train frequency) ** power`` (mean 1 over MELD train), spread over soft labels."""
        cw = (1.0 / freq) ** power
        cw = cw / (cw[ym]).mean()
        return Y @ torch.from_numpy(cw.astype(np.float32))

    def assemble(idx: np.ndarray, wg: float, mode: str, power: float):
        wm = row_weights(Ym[idx], power)
        if wg <= 0:
            return Xm[idx], Ym[idx], wm, None
        aux = (torch.cat([torch.zeros(len(idx), dtype=torch.bool), torch.ones(Xg.shape[0], dtype=torch.bool)])
               if mode == "separate" else None)
        return (torch.cat([Xm[idx], Xg]), torch.cat([Ym[idx], Yg]),
                torch.cat([wm, float(wg) * row_weights(Yg, power)]), aux)

    # ---- selection on MELD-train held-out dialogues (several splits, scores averaged per epoch)
    splits = [group_split(rows["meld_train"].groups, args.heldout_frac, args.seed + k) for k in range(args.splits)]
    for k, (fit, held) in enumerate(splits):
        log(f"MELD train split {k} by dialogue: fit {len(fit)} rows, held-out {len(held)} rows")
    settings = []
    for wg in [float(x) for x in args.goe_weights.split(",")]:
        for mode in ([""] if wg <= 0 else [m.strip() for m in args.goe_modes.split(",")]):
            if mode not in ("", "shared", "separate"):
                raise SystemExit(f"unknown --goe-modes entry {mode!r}")
            for power in [float(x) for x in args.class_weight_powers.split(",")]:
                settings.append((wg, mode, power))
    grid = []
    best = None
    for wg, mode, power in settings:
        t = time.time()
        curves, logits0 = [], None
        for k, (fit, held) in enumerate(splits):
            X, Y, w, aux = assemble(fit, wg, mode, power)
            _, curve, vlog = train_head(X, Y, w, config, args.epochs, args.lr, args.weight_decay, seed=args.seed,
                                        val=(Xm[held], ym[held]), aux_rows=aux)
            curves.append(curve)
            if k == 0:
                logits0 = vlog
        mean = np.mean(curves, 0)
        ep = int(np.argmax(mean))
        grid.append({"goe_weight": wg, "goe_mode": mode or "none", "class_weight_power": power,
                     "best_epoch": ep + 1, "heldout_weighted_f1": round(float(mean[ep]), 4),
                     "heldout_weighted_f1_per_split": [round(c[ep], 4) for c in curves],
                     "mean_curve": [round(float(c), 4) for c in mean], "seconds": round(time.time() - t, 1)})
        log(f"goe_weight={wg} mode={mode or 'none'} class_weight_power={power}: best epoch {ep + 1} held-out wF1 "
            f"{mean[ep]:.4f} (splits {[round(c[ep], 3) for c in curves]}; mean curve "
            f"{[round(float(c), 3) for c in mean]}) {time.time() - t:.0f}s")
        if best is None or mean[ep] > best[0]:
            best = (float(mean[ep]), wg, mode, power, ep + 1, logits0[ep])
    _, wg, mode, power, epochs, held_logits = best
    fit, held = splits[0]
    log(f"selected goe_weight={wg} mode={mode or 'none'} class_weight_power={power}, epochs={epochs}")

    bias = np.zeros(len(EMOTIONS), np.float32)
    bias_check = {}
    if not args.no_bias:
        # cross-fit: offsets tuned on one half of the held-out dialogues must help the other half too
        ha, hb = group_split([rows["meld_train"].groups[i] for i in held], 0.5, args.seed + 1)
        lg, yh = held_logits.numpy(), ym[held]
        b_a, b_b = tune_bias(held_logits[ha], yh[ha]), tune_bias(held_logits[hb], yh[hb])
        gain = 0.5 * (weighted_f1(yh[hb], (lg[hb] + b_a).argmax(1)) - weighted_f1(yh[hb], lg[hb].argmax(1))
                      + weighted_f1(yh[ha], (lg[ha] + b_b).argmax(1)) - weighted_f1(yh[ha], lg[ha].argmax(1)))
        bias_check = {"crossfit_gain": round(float(gain), 4), "half_a": np.round(b_a, 3).tolist(),
                      "half_b": np.round(b_b, 3).tolist()}
        if gain > 0.002:  # noqa: PLR2004 - see step 4 of the module docstring
            bias = 0.5 * (b_a + b_b)
        log(f"logit offsets: cross-fitted held-out gain {gain:+.4f} -> using {np.round(bias, 3).tolist()}")
    heldout_score = best[0] if not bias.any() else None

    # ---- refit on all of MELD train (+ GoEmotions), score dev once
    t = time.time()
    X, Y, w, aux = assemble(np.arange(len(ym)), wg, mode, power)
    head, _, _ = train_head(X, Y, w, config, epochs, args.lr, args.weight_decay, seed=args.seed, aux_rows=aux)
    with torch.no_grad():
        head.logit_bias.copy_(torch.from_numpy(bias))
    log(f"refit on {X.shape[0]} rows in {time.time() - t:.0f}s")

    def score(key: str) -> dict:
        r = rows[key].single_label() if key.startswith("goe") else rows[key]
        idx = rows[key].single
        with torch.inference_mode():
            pred = head(feats[key][idx])[0].argmax(1).numpy()
        m = classification_report(r.y(), pred)
        y = np.array(r.y())
        m["majority_weighted_f1"] = weighted_f1(y, np.full_like(y, np.bincount(y).argmax()))
        m["skipped"] = int(sum(r.skipped.values()))
        m["skipped_reasons"] = dict(r.skipped)
        return m

    metrics = {"meld_dev": score("meld_dev"), "goemotions_dev": score("goe_dev")}
    wall = time.time() - t_start
    for k, m in metrics.items():
        log(f"{k}: n={m['n']} wF1={m['weighted_f1']:.4f} acc={m['accuracy']:.4f} macroF1={m['macro_f1']:.4f} "
            f"recall={ {c: round(v, 3) for c, v in m['per_class_recall'].items() if v is not None} }")
    info = {
        "selection": {"heldout": f"{args.heldout_frac:.0%} of MELD-train dialogues, {args.splits} seeded splits",
                      "splits": args.splits, "heldout_rows": [int(len(h)) for _, h in splits], "grid": grid,
                      "goe_weight": wg, "goe_mode": mode or "none", "class_weight_power": power, "epochs": epochs,
                      "logit_bias": [round(float(b), 3) for b in bias], "logit_bias_check": bias_check,
                      "heldout_weighted_f1": None if heldout_score is None else round(heldout_score, 4)},
        "train_rows": {"meld_train": int(len(ym)), "goemotions_train": int(Xg.shape[0]) if wg > 0 else 0},
        "config": config,
        "args": vars(args),
        "wall_time_s": round(wall, 1),
        "feature_time_s": round(t_feat, 1),
        "host": {"python": platform.python_version(), "torch": str(torch.__version__), "threads": args.threads},
        "licence": "research / non-commercial use (trained on GoEmotions, Apache-2.0, and MELD, GPL-3.0)",
    }
    metrics_all = {**metrics, **info}
    out = save_text_head(head, args.out, metrics_all)
    mpath = Path(args.metrics) if args.metrics else out.with_name("text_metrics.json")
    mpath.write_text(json.dumps(metrics_all, indent=2) + "\n", encoding="utf-8")
    log(f"saved {out} ({out.stat().st_size / 1024:.0f} KiB) and {mpath}; wall time {wall:.0f}s")
    return metrics_all


if __name__ == "__main__":
    main()
