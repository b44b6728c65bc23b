"""Train the audio emotion encoder (:class:`~umq.perception.voice.net.VoiceEmotionNet`) on RAVDESS speech.

    nice -n 19 python -m umq.training.voice.train --data ../shared/data/ravdess          # final: actors 1-16
    python -m umq.training.voice.train --train-actors 1-12 --val-actors 13-16 --out /tmp/dev.pt \
        --no-final-eval --eval-every 5                                                    # development

Protocol: split by actor, never by clip. Development runs train on actors 1-12 and select on 13-16; the shipped
model trains on 1-16 with the selected settings and is scored once on 17-20 (``--val-actors``) through the live
pipeline (:func:`~umq.perception.voice.net.evaluate_audio_folder`: central 2 s window and whole clip, with and
without the speaker normaliser).

Data pipeline (features are cached under ``~/.cache/umq/voice``, never inside the repository):

* every clip is featurised with the front-end's own :func:`~umq.perception.voice.features.raw_features` (clean),
  and each training clip additionally in ``--variants`` pre-rendered corrupted copies (:func:`render_variant`: synthetic
  reverberation, white / pink / babble noise at 0-30 dB SNR (``--snr-db``), gain -20..+6 dB with full-scale saturation,
  occasional hard clipping); babble is mixed from clips of actors 1-12 other than the clip's own actor;
* each training step draws, per clip, a session condition (clean 30 %, else a random corrupted variant) and a
  random 2.0 s crop (201 frames), then applies on the fly: a +-6 dB gain shift (crop and history alike),
  lost-audio spans (15 %), the speaker normaliser simulation and SpecAugment;
* speaker normaliser simulation: the normaliser state is what a live session would hold after a random number
  (0-20) of the same actor's other clips (clean in a clean session, random variants otherwise; capped at the
  normaliser's memory), updated with the current crop; 25 % of samples use the fixed prior only
  (``normalize=False``), so one model serves both modes.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from umq import paths
from umq.labels import EMOTIONS, canonical
from umq.metrics import classification_report
from umq.perception.voice.features import (
    MEMORY_FRAMES,
    N_FEATURES,
    N_MELS,
    PRIOR_FRAMES,
    frame_valid,
    n_frames,
    raw_features,
    sanitize,
)
from umq.perception.voice.net import DEFAULT_CONFIG, DEFAULT_WEIGHTS, VoiceEmotionNet, count_parameters, save_voice_net
from umq.perception.voice.normalize import FeatureStats, apply_norm, mean_std, moments, normalizer_weights
from umq.perception.voice.vad import SileroVAD, speech_frames
from umq.training.voice.augment import SNR_RANGE_DB, render_variant
from umq.training.voice.clips import read_audio
from umq.training.voice.evaluate import evaluate_audio_folder

ROOT = paths.REPO_ROOT
CACHE = Path(os.environ.get("UMQ_CACHE", Path.home() / ".cache" / "umq")) / "voice"
CROP_FRAMES = n_frames(32000)  # 201
RMS_CHANNEL = N_MELS + 2
FEATURE_VERSION = 1
BABBLE_ACTORS = range(1, 13)


def default_data_dir() -> Path:
    env = os.environ.get("UMQ_DATA")
    base = Path(env) if env else ROOT.parent / "shared" / "data"
    return base / "ravdess" if (base / "ravdess").is_dir() else base


def parse_actors(s: str) -> list[int]:
    out: list[int] = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part.strip():
            out.append(int(part))
    return out


# ------------------------------------------------------------------------------------------------ features
def featurize(x: np.ndarray, speech_clean: np.ndarray | None = None) -> dict:
    """Front-end features of a whole clip (host copies): raw ``[69, T]`` float16, masks and moments."""
    xs, v, _ = sanitize(x)
    feats, tracks = raw_features(xs, "cpu")
    t = feats.shape[-1]
    fv = frame_valid(v)
    if speech_clean is None:
        speech_clean = speech_frames(SileroVAD.probs(xs), t) & fv
    pitched = tracks["pitched"][:t]
    w = normalizer_weights(torch.from_numpy(speech_clean), torch.from_numpy(pitched), torch.from_numpy(fv))
    n, s1, s2 = moments(feats, w)
    return {"feats": feats.numpy().astype(np.float16), "pitched": pitched, "speech": speech_clean,
            "mom": torch.stack([n, s1, s2]).numpy()}


def load_clips(data_dir: Path) -> list[dict]:
    rows = []
    with open(data_dir / "labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({"clip_id": r["clip_id"], "actor": int(r["actor"]),
                         "label": EMOTIONS.index(canonical(r["emotion"])), "audio": data_dir / r["audio"]})
    return rows


def build_cache(data_dir: Path, train_actors: list[int], variants: int, seed: int = 1234,
                snr_db: tuple[float, float] = SNR_RANGE_DB) -> dict:
    """Features of every clip (clean) and ``variants`` corrupted copies of each training-actor clip, cached."""
    rows = load_clips(data_dir)
    parts = [FEATURE_VERSION, str(data_dir.resolve()), len(rows), variants, seed, sorted(train_actors)]
    if tuple(snr_db) != SNR_RANGE_DB:  # the default keeps the key (and the cache) of earlier runs
        parts.append(list(snr_db))
    key = hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:10]
    path = CACHE / f"ravdess_feats_{key}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        print(f"features from cache {path}", flush=True)
        return {k: z[k] for k in z.files}
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small per-clip transforms: one thread is faster than two on a busy machine
    audio = [read_audio(r["audio"]) for r in rows]
    babble_pool = [i for i, r in enumerate(rows) if r["actor"] in BABBLE_ACTORS]
    feats, pitched, speech, mom, clip_idx, var_idx, offs = [], [], [], [], [], [], [0]
    for i, r in enumerate(rows):
        clean = featurize(audio[i])
        items = [clean]
        if r["actor"] in train_actors:
            rng = np.random.default_rng([seed, i])
            talkers = [audio[j] for j in babble_pool if rows[j]["actor"] != r["actor"]]
            for _ in range(variants):
                y = render_variant(audio[i], rng, talkers, snr_db)
                items.append(featurize(y, clean["speech"]))
        for v, it in enumerate(items):
            feats.append(it["feats"])
            pitched.append(it["pitched"])
            speech.append(it["speech"])
            mom.append(it["mom"])
            clip_idx.append(i)
            var_idx.append(v)
            offs.append(offs[-1] + it["feats"].shape[1])
        if i % 100 == 0:
            print(f"featurised {i}/{len(rows)} clips, {time.time() - t0:.0f} s", flush=True)
    out = {
        "feats": np.concatenate(feats, axis=1), "pitched": np.concatenate(pitched),
        "speech": np.concatenate(speech), "mom": np.stack(mom), "offs": np.asarray(offs, np.int64),
        "clip": np.asarray(clip_idx, np.int64), "variant": np.asarray(var_idx, np.int64),
        "label": np.asarray([r["label"] for r in rows], np.int64),
        "actor": np.asarray([r["actor"] for r in rows], np.int64),
        "clip_id": np.asarray([r["clip_id"] for r in rows]),
    }
    torch.set_num_threads(threads)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.rename(path)
    print(f"features cached in {path} ({time.time() - t0:.0f} s)", flush=True)
    return out


def prior_stats(cache: dict, actors: list[int]) -> FeatureStats:
    """Prior of the normaliser: mean over the training actors of their voiced-frame means and variances."""
    clean = cache["variant"] == 0
    means, vars_ = [], []
    for a in actors:
        sel = clean & (cache["actor"][cache["clip"]] == a)
        n, s1, s2 = cache["mom"][sel].sum(0)
        m = s1 / np.maximum(n, 1)
        means.append(m)
        vars_.append(np.maximum(s2 / np.maximum(n, 1) - m * m, 1e-6))
    return FeatureStats(np.mean(means, 0), np.mean(vars_, 0), PRIOR_FRAMES, MEMORY_FRAMES)


# ---------------------------------------------------------------------------------------------- training
class Sampler:
    """Draws training batches: crops, on-the-fly augmentation and the speaker-normaliser simulation."""

    def __init__(self, cache: dict, clips: np.ndarray, stats: FeatureStats, args, rng: np.random.Generator):
        self.c = cache
        self.clips = clips
        self.stats = stats
        self.args = args
        self.rng = rng
        self.rows_of: dict[int, np.ndarray] = {}
        for r in range(len(cache["clip"])):
            self.rows_of.setdefault(int(cache["clip"][r]), []).append(r)
        self.rows_of = {k: np.asarray(v) for k, v in self.rows_of.items()}
        actor = cache["actor"]
        self.same_actor = {int(i): clips[(actor[clips] == actor[i]) & (clips != i)] for i in clips}
        self.pm = torch.as_tensor(stats.mean)
        self.pv = torch.as_tensor(stats.var)
        self.feats = torch.from_numpy(cache["feats"])  # float16 [C, total]

    def _row(self, clip: int, p_clean: float) -> int:
        rows = self.rows_of[clip]
        if len(rows) == 1 or self.rng.random() < p_clean:
            return int(rows[0])
        return int(self.rng.choice(rows[1:]))

    def batch(self, idx: np.ndarray, train: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.args
        xs, ms = [], []
        for clip in idx:
            # a session is clean (crop and history clean, as in the validation) or corrupted (random variants)
            clean_session = self.rng.random() < a.p_clean
            row = self._row(int(clip), 1.0 if clean_session else 0.0)
            o0, o1 = self.c["offs"][row], self.c["offs"][row + 1]
            t = o1 - o0
            k = int(self.rng.integers(0, max(1, t - CROP_FRAMES + 1)))
            sl = slice(o0 + k, o0 + min(t, k + CROP_FRAMES))
            f = self.feats[:, sl].float()
            pitched = torch.from_numpy(self.c["pitched"][sl])
            speech = torch.from_numpy(self.c["speech"][sl])
            fv = torch.ones(f.shape[1], dtype=torch.bool)
            if self.rng.random() < a.p_drop:  # audio that never arrived
                n = f.shape[1]
                L = int(self.rng.uniform(0.2, 0.6) * n)
                s = int(self.rng.integers(0, n - L + 1))
                fv[s:s + L] = False
            g = self.rng.uniform(-a.gain_db, a.gain_db)
            shift = torch.zeros(N_FEATURES, dtype=torch.float64)
            shift[:N_MELS] = g * math.log(10.0) / 10.0
            shift[RMS_CHANNEL] = g
            f = f + shift.float()[:, None]
            # normaliser state
            if self.rng.random() < a.p_prior_only:
                mean, std = self.pm, self.pv.sqrt()
            else:
                k_hist = int(self.rng.integers(0, a.max_history + 1))
                pool = self.same_actor[int(clip)]
                n = torch.zeros(N_FEATURES, dtype=torch.float64)
                s1, s2 = n.clone(), n.clone()
                if k_hist and len(pool):
                    hist = self.rng.choice(pool, size=min(k_hist, len(pool)), replace=False)
                    p_h = 1.0 if clean_session else a.p_clean
                    m = np.stack([self.c["mom"][self._row(int(h), p_h)] for h in hist]).sum(0)
                    m = torch.from_numpy(m)
                    scale = torch.clamp(self.stats.memory_frames / torch.clamp(m[0], min=1.0), max=1.0)
                    n, s1, s2 = m[0] * scale, m[1] * scale, m[2] * scale
                    # the same gain applied to the history (the mic is the same all session)
                    s2 = s2 + 2 * shift * s1 + n * shift * shift
                    s1 = s1 + n * shift
                w = normalizer_weights(speech, pitched, fv)
                cn, c1, c2 = moments(f, w)
                decay = torch.exp(-cn / self.stats.memory_frames)
                n, s1, s2 = n * decay + cn, s1 * decay + c1, s2 * decay + c2
                mean, std = mean_std(n, s1, s2, self.pm, self.pv, self.stats.prior_frames)
            z = apply_norm(f, mean, std, pitched, fv)
            if z.shape[1] < CROP_FRAMES:
                pad = CROP_FRAMES - z.shape[1]
                z = F.pad(z, (0, pad))
                fv = F.pad(fv, (0, pad))
            if train and a.specaug:
                for _ in range(2):
                    w_ = int(self.rng.integers(0, 9))
                    f0 = int(self.rng.integers(0, N_MELS - w_ + 1))
                    z[f0:f0 + w_] = 0.0
                for _ in range(2):
                    w_ = int(self.rng.integers(0, 21))
                    t0 = int(self.rng.integers(0, CROP_FRAMES - w_ + 1))
                    z[:, t0:t0 + w_] = 0.0
            xs.append(z)
            ms.append(fv)
        y = torch.from_numpy(self.c["label"][idx])
        return torch.stack(xs).float(), torch.stack(ms), y


@torch.no_grad()
def fast_eval(net: VoiceEmotionNet, cache: dict, clips: np.ndarray, stats: FeatureStats, normalize: bool,
              mode: str = "crop") -> dict:
    """Validation from cached clean features; speaker sessions per actor in the same seeded order as
    :func:`~umq.perception.voice.net.evaluate_audio_folder` (running normaliser)."""
    net.eval()
    pm, pv = torch.as_tensor(stats.mean), torch.as_tensor(stats.var)
    preds, ys = [], []
    state: dict[int, list] = {}
    order = []
    for a in dict.fromkeys(int(v) for v in cache["actor"][clips]):
        group = [int(c) for c in clips if int(cache["actor"][c]) == a]
        order += [group[i] for i in np.random.default_rng(0).permutation(len(group))]
    for clip in order:
        row = int(np.flatnonzero((cache["clip"] == clip) & (cache["variant"] == 0))[0])
        o0, o1 = cache["offs"][row], cache["offs"][row + 1]
        if mode == "crop":
            t = o1 - o0
            k = max(0, (t - CROP_FRAMES) // 2)
            sl = slice(o0 + k, o0 + min(t, k + CROP_FRAMES))
        else:
            sl = slice(o0, o1)
        f = torch.from_numpy(cache["feats"][:, sl]).float()
        pitched = torch.from_numpy(cache["pitched"][sl])
        speech = torch.from_numpy(cache["speech"][sl])
        fv = torch.ones(f.shape[1], dtype=torch.bool)
        if normalize:
            a = int(cache["actor"][clip])
            st = state.setdefault(a, [torch.zeros(N_FEATURES, dtype=torch.float64)] * 3)
            cn, c1, c2 = moments(f, normalizer_weights(speech, pitched, fv))
            decay = torch.exp(-cn / stats.memory_frames)
            st[:] = [st[0] * decay + cn, st[1] * decay + c1, st[2] * decay + c2]
            mean, std = mean_std(st[0], st[1], st[2], pm, pv, stats.prior_frames)
        else:
            mean, std = pm, pv.sqrt()
        z = apply_norm(f, mean, std, pitched, fv)
        logits, _ = net(z[None].float(), fv[None])
        preds.append(int(logits.argmax(-1)))
        ys.append(int(cache["label"][clip]))
    net.train()
    return classification_report(ys, preds)


def train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data_dir = Path(args.data) if args.data else default_data_dir()
    train_actors, val_actors = parse_actors(args.train_actors), parse_actors(args.val_actors)
    if set(train_actors) & set(val_actors):
        raise SystemExit("train and validation actors overlap")
    t_start = time.time()
    cache = build_cache(data_dir, sorted(set(range(1, 17)) | set(train_actors)), args.variants,
                        snr_db=(args.snr_db[0], args.snr_db[1]))
    t_feat = time.time() - t_start
    if args.cache_only:
        return
    actor = cache["actor"]
    train_clips = np.flatnonzero(np.isin(actor, train_actors))
    val_clips = np.flatnonzero(np.isin(actor, val_actors))
    stats = prior_stats(cache, train_actors)
    cfg = dict(DEFAULT_CONFIG)
    cfg.update(json.loads(args.config) if args.config else {})
    net = VoiceEmotionNet(cfg)
    net.feature_stats = stats
    print(f"{count_parameters(net)} parameters; train {len(train_clips)} clips (actors {args.train_actors}), "
          f"val {len(val_clips)} (actors {args.val_actors})", flush=True)
    sampler = Sampler(cache, train_clips, stats, args, rng)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.wd)
    steps_per_epoch = math.ceil(len(train_clips) / args.batch)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.15)
    history = []
    t_train = time.time()
    for ep in range(1, args.epochs + 1):
        net.train()
        perm = rng.permutation(train_clips)
        tot_loss, nb = 0.0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            x, m, y = sampler.batch(idx)
            if args.mixup > 0 and rng.random() < 0.5:
                lam = float(rng.beta(args.mixup, args.mixup))
                p = torch.randperm(x.shape[0])
                x = lam * x + (1 - lam) * x[p]
                m = m | m[p]
                logits, _ = net(x, m)
                loss = lam * F.cross_entropy(logits, y, label_smoothing=args.smooth) + \
                    (1 - lam) * F.cross_entropy(logits, y[p], label_smoothing=args.smooth)
            else:
                logits, _ = net(x, m)
                loss = F.cross_entropy(logits, y, label_smoothing=args.smooth)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            tot_loss += float(loss.detach())
            nb += 1
        rec = {"epoch": ep, "loss": tot_loss / nb, "time_s": round(time.time() - t_train, 1)}
        if val_clips.size and args.eval_every > 0 and (ep % args.eval_every == 0 or ep == args.epochs):
            for norm in (True, False):
                r = fast_eval(net, cache, val_clips, stats, norm)
                rec[f"val_crop_{'norm' if norm else 'none'}"] = round(r["accuracy"], 4)
            r = fast_eval(net, cache, val_clips, stats, True, "clip")
            rec["val_clip_norm"] = round(r["accuracy"], 4)
        history.append(rec)
        print(json.dumps(rec), flush=True)
    t_train = time.time() - t_train
    metrics = {
        "train_actors": train_actors, "val_actors": val_actors, "epochs": args.epochs, "seed": args.seed,
        "variants": args.variants, "parameters": count_parameters(net), "history": history,
        "wall_time_s": {"features": round(t_feat, 1), "training": round(t_train, 1)},
        "args": {k: v for k, v in vars(args).items() if k not in ("func",)},
        "config": cfg,
        "note": "RAVDESS-trained weights: research / non-commercial use only (CC BY-NC-SA 4.0).",
    }
    out = Path(args.out)
    save_voice_net(net, out, metrics)
    if args.final_eval and val_clips.size:
        t0 = time.time()
        net.eval()
        ev = {}
        for mode in ("crop", "clip"):
            for name, norm, enrol in (("norm", True, False), ("none", False, False), ("enrolled", True, True)):
                r = evaluate_audio_folder(data_dir, net, "cpu", actors=val_actors, mode=mode, normalize=norm,
                                          enrol=enrol)
                ev[f"{mode}_{name}"] = r
                print(f"{mode} {name}: acc {r['accuracy']:.4f} macro-F1 {r['macro_f1']:.4f}", flush=True)
        metrics["eval"] = ev
        metrics["wall_time_s"]["evaluation"] = round(time.time() - t0, 1)
        save_voice_net(net, out, metrics)
    metrics["wall_time_s"]["total"] = round(time.time() - t_start, 1)
    save_voice_net(net, out, metrics)
    mpath = out.with_name(out.stem + "_metrics.json")
    mpath.write_text(json.dumps(metrics, indent=1))
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB) and {mpath}", flush=True)


ROBUSTNESS = (  # (name, corruption kind, severity) -- severities of audio_corrupt.corrupt
    ("clean", "clean", 0.0),
    ("white 20 dB", "white", 10 / 35), ("white 10 dB", "white", 20 / 35), ("white 0 dB", "white", 30 / 35),
    ("babble 10 dB", "babble", 20 / 35), ("babble 0 dB", "babble", 30 / 35),
    ("reverb RT60 0.6 s", "reverb", 0.5 / 1.4), ("clipping 10%", "clip", 1 / 3), ("gain -30 dB", "gain", 0.75),
    ("dropouts ~40%", "dropout", 0.5), ("silence", "silence", 1.0),
)


def robustness(args) -> None:
    """Accuracy of a trained checkpoint on the validation actors' central 2 s windows under each corruption of
    :data:`ROBUSTNESS`, with and without the speaker normaliser; stored in the checkpoint's metrics."""
    from umq.perception.voice.net import load_voice_net

    torch.set_num_threads(args.threads)
    data_dir = Path(args.data) if args.data else default_data_dir()
    path = Path(args.robustness)
    net = load_voice_net(path, "cpu")
    actors = parse_actors(args.val_actors)
    res = {}
    t0 = time.time()
    for name, kind, sev in ROBUSTNESS:
        res[name] = {}
        for norm in (True, False):
            r = evaluate_audio_folder(data_dir, net, "cpu", actors=actors, mode="crop", normalize=norm,
                                      corruption=(kind, sev))
            res[name]["norm" if norm else "none"] = {"accuracy": round(r["accuracy"], 4),
                                                     "macro_f1": round(r["macro_f1"], 4)}
        print(name, json.dumps(res[name]), flush=True)
    metrics = dict(net.metrics)
    metrics["robustness"] = {"actors": actors, "mode": "crop", "results": res,
                             "wall_time_s": round(time.time() - t0, 1)}
    save_voice_net(net, path, metrics)
    path.with_name(path.stem + "_metrics.json").write_text(json.dumps(metrics, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="RAVDESS folder (labels.csv + audio16k); default "
                   "$UMQ_DATA/ravdess or ../shared/data/ravdess")
    p.add_argument("--train-actors", default="1-16")
    p.add_argument("--val-actors", default="17-20")
    p.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--wd", type=float, default=1e-2)
    p.add_argument("--smooth", type=float, default=0.1)
    p.add_argument("--mixup", type=float, default=0.3)
    p.add_argument("--variants", type=int, default=4)
    p.add_argument("--p-clean", type=float, default=0.3)
    p.add_argument("--snr-db", type=float, nargs=2, default=list(SNR_RANGE_DB), metavar=("LOW", "HIGH"),
                   help="noise SNR range of the rendered training variants (default 0 30)")
    p.add_argument("--p-drop", type=float, default=0.15)
    p.add_argument("--p-prior-only", type=float, default=0.25)
    p.add_argument("--max-history", type=int, default=20)
    p.add_argument("--gain-db", type=float, default=6.0)
    p.add_argument("--no-specaug", dest="specaug", action="store_false")
    p.add_argument("--config", default="", help="JSON overrides of the model config")
    p.add_argument("--eval-every", type=int, default=0,
                   help="score the validation actors every N epochs (development runs only; 0 = never, so the "
                   "held-out actors of the final run are scored once, at the end)")
    p.add_argument("--no-final-eval", dest="final_eval", action="store_false")
    p.add_argument("--cache-only", action="store_true", help="only build the feature cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is 4-7x faster than 2 on the shared, oversubscribed 2-core machine)")
    p.add_argument("--robustness", default="", metavar="CHECKPOINT",
                   help="instead of training: score CHECKPOINT on --val-actors under the corruptions of ROBUSTNESS")
    a = p.parse_args(argv)
    robustness(a) if a.robustness else train(a)


if __name__ == "__main__":
    main()
