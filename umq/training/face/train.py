"""Fine-tune the face expression encoder on FER2013 (recipe and numbers: docs/face-encoder.md).

    nice -n 19 python -m umq.training.face.train --data ../shared/data/fer2013 \
        --init ~/.cache/umq/face_fer_port.pt --out ~/.cache/umq/face_runs/ft1/final.pt \
        --run-dir ~/.cache/umq/face_runs/ft1 --epochs 16 --time-budget-min 68 --threads 1

``--init`` is the checkpoint written by :mod:`umq.training.face.port_fer` (omit it to train from scratch).
By default all of ``train.npz`` is used and the EMA weights of the last step are kept (no selection): the ported
weights were trained on all of FER2013 train, so a train holdout (``--holdout 0.1``) is not unseen data for them.
``public_test.npz`` is scored once, at the end (plain and with flip TTA). Augmentation is done on whole batches in
torch: random zoom/shift/rotation/flip of the 48x48 FER face resampled straight to the 64x64 input (identity
transform == the bilinear resize of :func:`preprocess_face`), then contrast/brightness/gamma, blur or
down-up-sampling, noise and small occlusions, to mimic webcam faces from a Haar detector.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from umq.metrics import classification_report
from umq.perception.face.net import (
    APP_LABELS,
    DEFAULT_CONFIG,
    FaceExpressionNet,
    load_face_net,
    preprocess_batch,
    save_face_net,
    to_app_index,
)
from umq.training.data.ferplus import load_ferplus, match_images
from umq.training.face.evaluate import evaluate_face_npz


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as d:
        y = to_app_index([str(c) for c in d["classes"]])[d["labels"].astype(np.int64)]
        return d["images"].astype(np.uint8), y


def ferplus_targets(ferplus_dir: Path, fer_x: np.ndarray, fer_y: np.ndarray, weight: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FER+ train images with soft targets ``weight * votes + (1 - weight) * FER2013 label`` (both as
    distributions over the app labels) and a hard label (the argmax) for the running accuracy.

    Where an image has no Ekman vote (all contempt/unknown/not-a-face) the FER2013 label alone is the target; where
    it has no FER2013 twin the votes alone are."""
    fp = load_ferplus(ferplus_dir / "train.npz")
    twin = match_images(fp.images, fer_x)
    n_votes = fp.votes.sum(1, keepdims=True)
    votes = np.divide(fp.votes, n_votes, out=np.zeros_like(fp.votes), where=n_votes > 0)
    onehot = np.zeros_like(votes)
    has_twin = twin >= 0
    onehot[np.flatnonzero(has_twin), fer_y[twin[has_twin]]] = 1.0
    w_votes = np.where(n_votes[:, 0] > 0, np.where(has_twin, weight, 1.0), 0.0)[:, None].astype(np.float32)
    target = w_votes * votes + (1.0 - w_votes) * onehot
    keep = target.sum(1) > 0.5
    print(f"FER+ train {len(keep)}: {int(has_twin.sum())} matched to a FER2013 image, {int((~keep).sum())} with no "
          f"usable label dropped; vote weight {weight}", flush=True)
    target = target[keep] / target[keep].sum(1, keepdims=True)
    return fp.images[keep], target.astype(np.float32), target.argmax(1)


def add_runtime_crops(path: Path, tr_idx: np.ndarray, Xtr: np.ndarray, Ytr: np.ndarray, Ttr: np.ndarray | None,
                      T: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The training faces plus their runtime crops (where the detector found the face), same labels/targets.

    Only crops of training rows are added (``source`` in ``tr_idx``), so a holdout stays unseen in both forms."""
    if T is not None:
        raise SystemExit("--runtime-crops with --ferplus is not supported: the crops are made from train.npz rows")
    with np.load(path, allow_pickle=False) as d:
        crops, found, source = d["images"], d["found"], d["source"]
    in_train = np.isin(source, tr_idx) & found
    pos = np.searchsorted(tr_idx, source[in_train])  # tr_idx is sorted
    print(f"runtime crops {path}: {int(in_train.sum())} of {len(found)} added", flush=True)
    return np.concatenate([Xtr, crops[in_train]]), np.concatenate([Ytr, Ytr[pos]]), Ttr


def stratified_holdout(y: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hold = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        hold.append(idx[: int(round(frac * len(idx)))])
    hold = np.sort(np.concatenate(hold))
    mask = np.ones(len(y), bool)
    mask[hold] = False
    return np.flatnonzero(mask), hold


class Augmenter:
    """Batch augmentation: uint8 [B,48,48] -> float [B,1,S,S] in [-1,1]."""

    def __init__(self, out_size: int = 64, scale=(0.85, 1.15), shift: float = 0.08, rot_deg: float = 12.0,
                 p_flip: float = 0.5, p_blur: float = 0.25, p_downup: float = 0.2, p_noise: float = 0.3,
                 p_erase: float = 0.2, seed: int = 0):
        self.s = out_size
        self.scale, self.shift, self.rot = scale, shift, math.radians(rot_deg)
        self.p_flip, self.p_blur, self.p_downup, self.p_noise, self.p_erase = p_flip, p_blur, p_downup, p_noise, p_erase
        self.g = torch.Generator().manual_seed(seed)

    def _u(self, n, lo, hi):
        return torch.rand(n, generator=self.g) * (hi - lo) + lo

    def __call__(self, imgs: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(imgs).float().div_(255.0).unsqueeze(1)  # [B,1,48,48] in [0,1]
        B = x.shape[0]
        # geometry: output pixel p samples input at A p + t (normalised coords). zoom z>1 = face larger in crop.
        z = self._u(B, *self.scale)
        a = self._u(B, -self.rot, self.rot)
        flip = torch.where(torch.rand(B, generator=self.g) < self.p_flip, -1.0, 1.0)
        tx, ty = self._u(B, -2 * self.shift, 2 * self.shift), self._u(B, -2 * self.shift, 2 * self.shift)
        cos, sin = torch.cos(a) / z, torch.sin(a) / z
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, [B, 1, self.s, self.s], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # photometric
        mean = x.mean(dim=(2, 3), keepdim=True)
        x = (x - mean) * self._u(B, 0.6, 1.4).view(B, 1, 1, 1) + mean + self._u(B, -0.15, 0.15).view(B, 1, 1, 1)
        x = x.clamp(0, 1)
        gam = torch.where(torch.rand(B, generator=self.g) < 0.5, self._u(B, 0.7, 1.5), torch.ones(B))
        x = x.clamp_min(1e-4).pow(gam.view(B, 1, 1, 1))
        # blur (gaussian) or low resolution (down-up), mutually exclusive
        r = torch.rand(B, generator=self.g)
        blur = r < self.p_blur
        if blur.any():
            sig = float(self._u(1, 0.5, 1.3))
            k = torch.arange(-2, 3, dtype=torch.float32)
            k = torch.exp(-k ** 2 / (2 * sig ** 2))
            k = k / k.sum()
            xb = x[blur]
            xb = F.conv2d(F.pad(xb, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
            xb = F.conv2d(F.pad(xb, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))
            x[blur] = xb
        du = (r >= self.p_blur) & (r < self.p_blur + self.p_downup)
        if du.any():
            lo = int(self._u(1, 16, 40))
            xd = F.interpolate(x[du], size=(lo, lo), mode="area")
            x[du] = F.interpolate(xd, size=(self.s, self.s), mode="bilinear", align_corners=False)
        noise = torch.rand(B, generator=self.g) < self.p_noise
        if noise.any():
            std = self._u(int(noise.sum()), 0.0, 0.04).view(-1, 1, 1, 1)
            x[noise] = x[noise] + torch.randn(x[noise].shape, generator=self.g) * std
        erase = torch.nonzero(torch.rand(B, generator=self.g) < self.p_erase).flatten()
        for i in erase.tolist():
            h, w = int(self._u(1, 8, 24)), int(self._u(1, 8, 24))
            y0, x0 = int(self._u(1, 0, self.s - h)), int(self._u(1, 0, self.s - w))
            x[i, :, y0:y0 + h, x0:x0 + w] = float(self._u(1, 0, 1))
        return x.clamp(0, 1).mul(2.0).sub(1.0)


@torch.inference_mode()
def holdout_features(net: FaceExpressionNet, x: torch.Tensor, n_frozen: int, bs: int = 256) -> tuple:
    """Frozen-trunk feature maps of the holdout images and of their mirror images (computed once)."""
    net.eval()
    f = torch.cat([net.trunk(x[i:i + bs], n_frozen) for i in range(0, len(x), bs)])
    ff = torch.cat([net.trunk(torch.flip(x[i:i + bs], dims=[3]), n_frozen) for i in range(0, len(x), bs)])
    return f, ff


@torch.inference_mode()
def eval_feats(net: FaceExpressionNet, feats: tuple, y: np.ndarray, n_frozen: int, bs: int = 512) -> dict:
    net.eval()
    f, ff = feats
    p = torch.cat([net.tail(f[i:i + bs], n_frozen)[0].softmax(-1) for i in range(0, len(f), bs)])
    pf = torch.cat([net.tail(ff[i:i + bs], n_frozen)[0].softmax(-1) for i in range(0, len(f), bs)])
    pf = 0.5 * (p + pf)
    rep_f = classification_report(y, pf.argmax(1).numpy())
    return {"acc": classification_report(y, p.argmax(1).numpy())["accuracy"], "acc_flip": rep_f["accuracy"],
            "macro_f1_flip": rep_f["macro_f1"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("UMQ_DATA", "../shared/data") + "/fer2013",
                    help="folder with train.npz and public_test.npz")
    ap.add_argument("--ferplus", help="folder with the FER+ train.npz/valid.npz: train on the FER+ pixels with "
                                      "the votes mixed into the FER2013 labels (--vote-weight), score FER+ valid")
    ap.add_argument("--vote-weight", type=float, default=0.7,
                    help="weight of the FER+ vote distribution in the target (the rest is the FER2013 label)")
    ap.add_argument("--runtime-crops", help="an .npz from `python -m umq.training.face.crops` made from the same "
                    "train.npz: its found faces (as the live detector + crop cut them) are added beside the originals, "
                    "so the encoder learns the framing the app produces (train/runtime crop parity)")
    ap.add_argument("--init", help="checkpoint to start from (port_fer output); default: random init")
    ap.add_argument("--out", default="assets/face/face_net.pt")
    ap.add_argument("--run-dir", default="~/.cache/umq/face_runs/latest", help="per-epoch checkpoints + log")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--time-budget-min", type=float, default=0.0,
                    help="if > 0 the cosine LR schedule runs on max(step/total, elapsed/budget) and training stops "
                         "when either reaches 1 (always ends annealed)")
    ap.add_argument("--freeze-blocks", type=int, default=1,
                    help="keep the stem and the first N residual blocks fixed (eval-mode BN); -1 = train all")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--holdout", type=float, default=0.0,
                    help="stratified fraction of train.npz held out for checkpoint selection. Default 0: the ported "
                         "fer weights were trained on all of FER2013 train, so a train holdout is not unseen data "
                         "for them; the recipe then keeps the EMA weights of the last step (no selection)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (smoke tests)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = Path(args.data).expanduser()
    run_dir = Path(args.run_dir).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    X, Y = load_npz(data / "train.npz")
    T = None  # soft targets [N, 7] when training on the FER+ votes
    if args.ferplus:
        X, T, Y = ferplus_targets(Path(args.ferplus).expanduser(), X, Y, args.vote_weight)
    tr_idx, ho_idx = stratified_holdout(Y, args.holdout, args.seed)
    Xtr, Ytr = X[tr_idx], Y[tr_idx]
    Ttr = T[tr_idx] if T is not None else None
    if args.runtime_crops:
        Xtr, Ytr, Ttr = add_runtime_crops(Path(args.runtime_crops).expanduser(), tr_idx, Xtr, Ytr, Ttr, T)
    use_holdout = len(ho_idx) > 0
    x_ho = preprocess_batch(X[ho_idx]) if use_holdout else None  # exactly the inference preprocessing
    y_ho = Y[ho_idx]
    print(f"train {len(Ytr)}  holdout {len(y_ho)}  classes {APP_LABELS}", flush=True)

    net = load_face_net(args.init) if args.init else FaceExpressionNet(DEFAULT_CONFIG)
    nf = args.freeze_blocks if args.freeze_blocks >= 0 else 0
    frozen = args.freeze_blocks >= 0
    frozen_modules = [net.conv1, net.bn1, net.conv2, net.bn2, *net.blocks[:nf]] if frozen else []
    for m in frozen_modules:
        for p in m.parameters():
            p.requires_grad_(False)

    def set_train():
        net.train()
        for m in frozen_modules:
            m.eval()

    ema = torch.optim.swa_utils.AveragedModel(
        net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema), use_buffers=True)
    feats = holdout_features(net, x_ho, nf) if use_holdout else None
    start = eval_feats(net, feats, y_ho, nf) if use_holdout else {"acc_flip": -1.0}
    print(f"epoch 0 holdout {json.dumps(start)}  ({time.time() - t_start:.0f}s)", flush=True)

    decay, no_decay = [], []
    for p in net.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = len(Ytr) // args.batch_size
    total = steps_per_epoch * args.epochs
    budget_s = args.time_budget_min * 60.0
    t_train = time.time()

    def progress(step: int) -> float:
        p = step / total
        if budget_s > 0:
            p = max(p, (time.time() - t_train) / budget_s)
        return min(p, 1.0)

    def set_lr(step: int) -> float:
        lr = args.lr * min(1.0, (step + 1) / args.warmup_steps) * 0.5 * (1 + math.cos(math.pi * progress(step)))
        for g in opt.param_groups:
            g["lr"] = lr
        return lr

    aug = Augmenter(out_size=net.input_size, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    best = {"score": start["acc_flip"], "epoch": 0, "which": "init"}
    save_face_net(net, run_dir / "best.pt", metrics={"holdout": start, "epoch": 0})
    history = [{"epoch": 0, **{f"ema_{k}": v for k, v in start.items()}}]
    step, done = 0, False
    for epoch in range(1, args.epochs + 1):
        set_train()
        t0 = time.time()
        perm = rng.permutation(len(Ytr))
        tl, tc, tn = 0.0, 0, 0
        for b in range(steps_per_epoch):
            lr = set_lr(step)
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            xb = aug(Xtr[idx])
            yb = torch.from_numpy(Ytr[idx])
            if frozen:
                with torch.no_grad():
                    h = net.trunk(xb, nf)
                logits, _ = net.tail(h, nf)
            else:
                logits, _ = net(xb)
            if Ttr is not None:
                tb = torch.from_numpy(Ttr[idx]) * (1 - args.label_smoothing) + args.label_smoothing / logits.shape[1]
                loss = -(tb * logits.log_softmax(-1)).sum(-1).mean()
            else:
                loss = F.cross_entropy(logits, yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update_parameters(net)
            step += 1
            tl += loss.item() * len(idx)
            tc += int((logits.argmax(1) == yb).sum())
            tn += len(idx)
            if b % 25 == 0:
                print(f"  ep {epoch} step {b}/{steps_per_epoch} loss {tl / tn:.4f} acc {tc / tn:.4f} "
                      f"lr {lr:.2e} progress {progress(step):.3f} {time.time() - t0:.0f}s", flush=True)
            if (args.max_steps and step >= args.max_steps) or progress(step) >= 1.0:
                done = True
                break
        em = eval_feats(ema.module, feats, y_ho, nf) if use_holdout else {}
        rec = {"epoch": epoch, "steps": step, "train_loss": tl / tn, "train_acc": tc / tn, "epoch_s": time.time() - t0,
               **{f"ema_{k}": v for k, v in em.items()}}
        cands = [("ema", ema.module, em)]
        if use_holdout and (done or epoch == args.epochs):
            raw = eval_feats(net, feats, y_ho, nf)
            rec.update({f"raw_{k}": v for k, v in raw.items()})
            cands.append(("raw", net, raw))
        history.append(rec)
        print("epoch", json.dumps(rec), flush=True)
        for which, m, r in cands:
            if not use_holdout:  # no selection: the pre-committed choice is the EMA weights at the end
                best = {"score": None, "epoch": epoch, "which": "ema (last, no selection)"}
                save_face_net(m, run_dir / "best.pt", metrics={"epoch": epoch, "which": which})
            elif r["acc_flip"] > best["score"]:
                best = {"score": r["acc_flip"], "epoch": epoch, "which": which}
                save_face_net(m, run_dir / "best.pt", metrics={"holdout": r, "epoch": epoch, "which": which})
        save_face_net(ema.module, run_dir / "last_ema.pt", metrics={"holdout": em, "epoch": epoch})
        (run_dir / "history.json").write_text(json.dumps(history, indent=1))
        if done:
            break
    print("best on holdout:", json.dumps(best), flush=True)
    return finalize(args, run_dir, data, best, history, x_ho, y_ho, t_start)


def finalize(args, run_dir: Path, data: Path, best: dict, history: list, x_ho, y_ho, t_start: float) -> int:
    final = load_face_net(run_dir / "best.pt")
    pt = data / "public_test.npz"
    source = (f"FER+ train.npz pixels, target {args.vote_weight} x FER+ votes + {1 - args.vote_weight:.2g} x FER2013 "
              "label" if args.ferplus else "FER2013 train.npz")
    metrics = {
        "train_data": f"{source} minus a stratified {args.holdout:.0%} holdout (seed {args.seed})",
        "selected": best, "args": {k: v for k, v in vars(args).items()}, "history": history,
    }
    if x_ho is not None:
        ho = eval_feats(final, holdout_features(final, x_ho, 0), y_ho, 0)
        metrics.update(holdout_accuracy=ho["acc"], holdout_accuracy_flip_tta=ho["acc_flip"])
    if pt.is_file():
        plain = evaluate_face_npz(pt, final, tta_flip=False)
        flip = evaluate_face_npz(pt, final, tta_flip=True)
        metrics["public_test"] = {"plain": plain, "flip_tta": flip}
        print(f"public_test accuracy plain {plain['accuracy']:.4f}  flip-TTA {flip['accuracy']:.4f}  "
              f"macro-F1 (flip) {flip['macro_f1']:.4f}", flush=True)
    if args.ferplus and (Path(args.ferplus).expanduser() / "valid.npz").is_file():
        fv = Path(args.ferplus).expanduser() / "valid.npz"
        plain = evaluate_face_npz(fv, final, tta_flip=False)
        flip = evaluate_face_npz(fv, final, tta_flip=True)
        metrics["ferplus_valid"] = {"plain": plain, "flip_tta": flip}
        print(f"FER+ valid majority accuracy plain {plain['accuracy']:.4f}  flip-TTA {flip['accuracy']:.4f}",
              flush=True)
    metrics["wall_time_s"] = time.time() - t_start
    out = Path(args.out)
    save_face_net(final, out, metrics={k: v for k, v in metrics.items() if k != "history"})
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print("wrote", out, f"wall {metrics['wall_time_s']:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
