"""Multi-corpus training of the Whisper-front-end voice encoder (RAVDESS + URDU + TurEV-DB), CPU, from a cache.

Run ``python -m umq.training.voice.cache --shard K --shards N`` first (features of every clip: a clean central
2 s window + augmented windows), then e.g.::

    nice -n 10 python -m umq.training.voice.train_multi --split inner     # model selection (speaker split)
    nice -n 10 python -m umq.training.voice.train_multi --split loco-urdu # train without URDU, test on it
    nice -n 10 python -m umq.training.voice.train_multi --split final --out assets/voice/voice_net.pt

Splits are by speaker (RAVDESS actors 17-20 are never in the cache: they are the reported validation actors,
scored through the live front-end by ``python -m umq.evaluate voice-multi``):

* ``inner``: train RAVDESS 1-12, URDU minus the inner-validation speakers, TurEV minus speaker 1984; validate
  on RAVDESS 13-16, those URDU speakers and TurEV 1984 (choices are made here only);
* ``loco-urdu`` / ``loco-turev``: train on RAVDESS 1-16 + the other extra corpus; test on every clip of the
  left-out corpus (4-class accuracy over its own classes);
* ``final``: RAVDESS 1-16 + URDU + TurEV (the shipped weights).

Corpus-aware batches: half RAVDESS, the rest split evenly over the other corpora present; within a corpus a
class is drawn uniformly, then a clip of it, then its clean window (30 %) or an augmented one. The loss is
cross-entropy (label smoothing 0.1) over the classes the clip's corpus labels only
(:data:`umq.training.data.voice_corpora.CORPUS_CLASSES`). Speaker normaliser simulation (p ``--p-norm``, never for URDU,
whose speakers each show nearly one emotion): the window is standardised by the shrinkage estimate from its own
moments plus those of 0-20 random other windows of the same speaker, as a live session would hold them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from umq.perception.voice.head import WhisperHeadNet
from umq.perception.voice.net import save_voice_net
from umq.perception.voice.normalize import FeatureStats, mean_std
from umq.perception.voice.whisper import WHISPER_FEATURE_NAMES
from umq.training.data.voice_corpora import CALM, CORPUS_CLASSES, class_mask, load_all
from umq.training.voice.cache import F0, cache_dir

log = logging.getLogger(__name__)
PRIOR_FRAMES_20MS = 150.0  # 3 s of speech
MEMORY_FRAMES_20MS = 1500.0  # ~30 s of speech
INNER_URDU_VAL = ("urdu-SM5", "urdu-SM24", "urdu-SM4", "urdu-SF6", "urdu-SF9", "urdu-SM6")
INNER_TUREV_VAL = ("turev-1984",)


def load_cache(data: Path) -> dict:
    clips = load_all(data, set(range(1, 17)))
    shards = sorted(cache_dir().glob("shard*of*.npz"))
    if not shards:
        raise FileNotFoundError(f"no voice feature cache in {cache_dir()}: run python -m umq.training.voice.cache")
    parts = [dict(np.load(p)) for p in shards]
    c = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    c["clips"] = clips
    c["clip"] = c["meta"][:, 0]
    c["variant"] = c["meta"][:, 1]
    c["corpus"] = np.array([clips[i].corpus for i in c["clip"]])
    c["speaker"] = np.array([clips[i].speaker for i in c["clip"]])
    c["label"] = np.array([clips[i].label for i in c["clip"]])
    return c


def split_speakers(c: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over the cache's windows: (train windows, test windows [clean only])."""
    spk, corp = c["speaker"], c["corpus"]
    actor = np.array([int(s.split("-")[1]) if s.startswith("ravdess") else 0 for s in spk])
    rav = corp == "ravdess"
    if split == "inner":
        val = (rav & (actor >= 13)) | np.isin(spk, INNER_URDU_VAL + INNER_TUREV_VAL)
        train = ~val
    elif split in ("loco-urdu", "loco-turev"):
        held = split.split("-")[1]
        val = corp == held
        train = ~val
    elif split == "final":
        train = np.ones(len(spk), bool)
        val = np.zeros(len(spk), bool)
    else:
        raise ValueError(f"unknown split {split!r}")
    return train, val & (c["variant"] == 0)


def prior(c: dict, idx: np.ndarray) -> FeatureStats:
    """Mean of per-speaker means and of per-speaker within-speaker variances (clean windows of ``idx``)."""
    means, vars_ = [], []
    for s in np.unique(c["speaker"][idx]):
        m = c["mom"][idx[c["speaker"][idx] == s]].astype(np.float64).sum(0)
        n = np.maximum(m[0], 1.0)
        mu = m[1] / n
        means.append(mu)
        vars_.append(np.maximum(m[2] / n - mu * mu, 1e-6))
    return FeatureStats(np.mean(means, 0), np.mean(vars_, 0), PRIOR_FRAMES_20MS, MEMORY_FRAMES_20MS,
                        WHISPER_FEATURE_NAMES)


class Batcher:
    """Corpus-aware, class-balanced batches with the speaker-normaliser simulation (module docstring)."""

    def __init__(self, c: dict, train: np.ndarray, stats: FeatureStats, p_norm: float, rng: np.random.Generator):
        self.c, self.rng, self.p_norm = c, rng, p_norm
        self.idx = np.flatnonzero(train)
        self.mu0 = torch.as_tensor(stats.mean)
        self.var0 = torch.as_tensor(stats.var)
        self.by_cc: dict[str, dict[int, np.ndarray]] = {}
        for corp in np.unique(c["corpus"][self.idx]):
            ii = self.idx[c["corpus"][self.idx] == corp]
            self.by_cc[corp] = {int(k): ii[c["label"][ii] == k] for k in np.unique(c["label"][ii])}
        self.by_spk = {s: self.idx[c["speaker"][self.idx] == s] for s in np.unique(c["speaker"][self.idx])}
        others = [k for k in self.by_cc if k != "ravdess"]
        share = 0.5 if "ravdess" in self.by_cc and others else 1.0
        self.quota = {k: (share if k == "ravdess" else (1 - share) / max(1, len(others)) if others else 1.0)
                      for k in self.by_cc}
        if "ravdess" not in self.by_cc:
            self.quota = {k: 1.0 / len(self.by_cc) for k in self.by_cc}

    def pick(self, n: int) -> np.ndarray:
        corps = list(self.quota)
        cs = self.rng.choice(len(corps), n, p=[self.quota[k] for k in corps])
        out = []
        for ci in cs:
            classes = self.by_cc[corps[ci]]
            k = list(classes)[self.rng.integers(len(classes))]
            w = classes[k]
            clip = self.c["clip"][w[self.rng.integers(len(w))]]
            same = w[self.c["clip"][w] == clip]
            clean = same[self.c["variant"][same] == 0]
            out.append(clean[0] if (self.rng.random() < 0.3 and len(clean)) else same[self.rng.integers(len(same))])
        return np.asarray(out)

    def normalise(self, rows: np.ndarray, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised features ``[B, 389, T]`` and masks ``[B, T]`` of cache rows."""
        c = self.c
        x = torch.from_numpy(c["feats"][rows].astype(np.float32))
        fv = torch.from_numpy(c["fvalid"][rows])
        pt = torch.from_numpy(c["pitched"][rows])
        mean = self.mu0.expand(len(rows), -1).clone()
        var = self.var0.expand(len(rows), -1).clone()
        for j, r in enumerate(rows):
            if not train or c["corpus"][r] == "urdu" or self.rng.random() >= self.p_norm:
                continue
            pool = self.by_spk[c["speaker"][r]]
            k = int(self.rng.integers(0, 21))
            hist = pool[self.rng.integers(0, len(pool), k)] if k else np.zeros(0, int)
            m = c["mom"][np.append(hist, r)].astype(np.float64).sum(0)
            cap = MEMORY_FRAMES_20MS / max(m[0, 0], MEMORY_FRAMES_20MS)
            m = torch.from_numpy(m * cap)
            mu, sd = mean_std(m[0], m[1], m[2], self.mu0, self.var0, PRIOR_FRAMES_20MS)
            mean[j], var[j] = mu, sd * sd
        z = (x - mean[..., None].float()) / var.sqrt()[..., None].float()
        z[:, F0] *= pt.float()
        z = z * fv[:, None].float()
        if train:  # lose a random span (p 0.3) like a dropout in capture
            for j in range(len(rows)):
                if self.rng.random() < 0.3:
                    t = z.shape[-1]
                    ln = int(self.rng.integers(5, t // 3))
                    a = int(self.rng.integers(0, t - ln))
                    fv[j, a:a + ln] = False
                    z[j, :, a:a + ln] = 0
        return z, fv


def masked_loss(logits8: torch.Tensor, labels: torch.Tensor, allowed: torch.Tensor, smooth: float = 0.1
                ) -> torch.Tensor:
    """Cross-entropy over each row's allowed classes only (label smoothing spread over those classes)."""
    z = logits8.masked_fill(~allowed, -1e4)
    logp = F.log_softmax(z, -1)
    k = allowed.sum(-1, keepdim=True).float()
    tgt = allowed.float() * (smooth / k)
    tgt = tgt + (1 - smooth) * F.one_hot(labels, logits8.shape[-1]).float()
    return -(tgt * logp).sum(-1).mean()


def corpus_scores(net: WhisperHeadNet, b: Batcher, rows: np.ndarray, enrol: bool) -> dict:
    """Accuracy per corpus on clean windows: RAVDESS 7-class (calm = neutral), URDU/TurEV over their 4 classes.
    ``enrol``: the normaliser holds all of the speaker's clean windows (else the prior only)."""
    c = b.c
    out = {}
    net.eval()
    for corp in np.unique(c["corpus"][rows]):
        rr = rows[c["corpus"][rows] == corp]
        if enrol and corp != "urdu":
            saved = b.by_spk, b.p_norm
            b.by_spk = {s: rr[c["speaker"][rr] == s] for s in np.unique(c["speaker"][rr])}
            b.p_norm = 2.0
            z, m = enrolled(b, rr)
            b.by_spk, b.p_norm = saved
        else:
            z, m = b.normalise(rr, train=False)
        with torch.inference_mode():
            l8, _ = net.logits8(z, m)
        y = c["label"][rr]
        if corp == "ravdess":
            l7 = torch.cat([torch.logsumexp(l8[:, [0, CALM]], -1, keepdim=True), l8[:, 1:CALM]], 1)
            pred = l7.argmax(-1).numpy()
            yy = np.where(y == CALM, 0, y)
        else:
            allowed = torch.tensor(class_mask(corp))
            pred = l8.masked_fill(~allowed, -1e4).argmax(-1).numpy()
            yy = y
        out[corp] = float((pred == yy).mean())
    return out


def enrolled(b: Batcher, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    c = b.c
    mean = b.mu0.expand(len(rows), -1).clone()
    var = b.var0.expand(len(rows), -1).clone()
    for s, ii in b.by_spk.items():
        m = torch.from_numpy(c["mom"][ii].astype(np.float64).sum(0))
        m = m * (MEMORY_FRAMES_20MS / max(float(m[0, 0]), MEMORY_FRAMES_20MS))
        mu, sd = mean_std(m[0], m[1], m[2], b.mu0, b.var0, PRIOR_FRAMES_20MS)
        sel = c["speaker"][rows] == s
        mean[sel], var[sel] = mu, sd * sd
    x = torch.from_numpy(c["feats"][rows].astype(np.float32))
    z = (x - mean[..., None].float()) / var.sqrt()[..., None].float()
    z[:, F0] *= torch.from_numpy(c["pitched"][rows]).float()
    fv = torch.from_numpy(c["fvalid"][rows])
    return z * fv[:, None].float(), fv


def train(args) -> dict:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    c = load_cache(args.data)
    tr, te = split_speakers(c, args.split)
    clean_tr = np.flatnonzero(tr & (c["variant"] == 0))
    stats = prior(c, clean_tr)
    b = Batcher(c, tr, stats, args.p_norm, rng)
    net = WhisperHeadNet({"hidden": args.hidden})
    net.feature_stats = stats
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.15)
    allowed_by = {k: torch.tensor(class_mask(k)) for k in CORPUS_CLASSES}
    test_rows = np.flatnonzero(te)
    history, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        net.train()
        rows = b.pick(args.batch)
        z, m = b.normalise(rows, train=True)
        y = torch.from_numpy(c["label"][rows]).long()
        allowed = torch.stack([allowed_by[k] for k in c["corpus"][rows]])
        l8, _ = net.logits8(z, m)
        loss = masked_loss(l8, y, allowed)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        if len(test_rows) and (step % args.eval_every == 0 or step == args.steps):
            r = {"step": step, "loss": float(loss), "prior": corpus_scores(net, b, test_rows, False),
                 "enrolled": corpus_scores(net, b, test_rows, True), "s": round(time.time() - t0)}
            history.append(r)
            log.info("%s", json.dumps(r))
    out = {"split": args.split, "steps": args.steps, "p_norm": args.p_norm, "hidden": args.hidden,
           "history": history, "train_windows": int(tr.sum()), "test_clips": len(test_rows),
           "seconds": round(time.time() - t0)}
    if args.out:
        net.eval()
        save_voice_net(net, args.out, {"training": {k: v for k, v in out.items() if k != "history"}})
        log.info("saved %s", args.out)
    return out


def main(argv: list[str] | None = None) -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path(os.environ.get("UMQ_DATA", "../shared/data")))
    p.add_argument("--split", default="inner", choices=["inner", "loco-urdu", "loco-turev", "final"])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--p-norm", type=float, default=0.6)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--log", type=Path, default=None, help="write the run summary (JSON) here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = train(a)
    if a.log:
        a.log.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
