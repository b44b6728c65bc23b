"""Train the context-aware text head (:class:`umq.perception.text.context.ContextTextHead`) on frozen MiniLM.

    OMP_NUM_THREADS=1 nice -n 10 python -m umq.training.text.train_context     # data: $UMQ_DATA or ../shared/data

Data (all in dialogue order, every line is a context line; only lines with an Ekman-7 label are targets):
MELD train, EmoryNLP train+dev+test (episodes that occur in MELD dev dropped), DailyDialog train+valid+test.
MELD dev is the reported validation split: it is scored once, after every choice was made on an inner split.

Procedure:

1. Per-line features (frozen MiniLM layer means + lexical features,
   :func:`umq.perception.text.frontend.TextFrontEnd.batch`)
   for every distinct line, cached under ``~/.cache/umq/text`` (never in the repo).
2. Inner split: 20 % of the MELD-train *episodes* (whole episodes, so no scene leaks; EmoryNLP scenes of those
   episodes are dropped from the fit part too) are held out; choices are scored on their MELD lines only.
3. Small grid over the source weights (EmoryNLP, DailyDialog) and the logit-adjustment strength of the loss;
   per setting the epoch with the best inner score ``(weighted F1 + macro F1) / 2`` is kept; then a post-hoc
   per-class offset ``beta * log(prior)`` (one scalar ``beta``) is chosen on the same inner split.
4. Refit on all training lines with the chosen setting, score MELD dev once, save ``assets/text/text_head.pt``.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

FEATURE_VERSION = 3
CACHE_DIR = Path(os.environ.get("UMQ_CACHE", Path.home() / ".cache" / "umq")) / "text"


def line_features(texts: list[str], frontend, cache_dir: Path = CACHE_DIR, batch_size: int = 64,
                  progress: bool = True) -> tuple[dict[str, int], np.ndarray]:
    """``(text -> row, features [U, input_dim] float16)`` for the distinct ``texts``, cached by content."""
    from tqdm import tqdm

    uniq = sorted(set(texts))
    key = hashlib.sha256(json.dumps([FEATURE_VERSION, frontend.config["layers"], frontend.config["lexical"], uniq])
                         .encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"lines-{key}.npy"
    index = {t: i for i, t in enumerate(uniq)}
    if cache.is_file():
        return index, np.load(cache)
    order = np.argsort([len(t) for t in uniq], kind="stable")  # length-sorted batches pad less
    X = np.zeros((len(uniq), frontend.input_dim), np.float16)
    t = time.time()
    for s in tqdm(range(0, len(order), batch_size), desc="encoding lines", disable=not progress):
        idx = order[s:s + batch_size]
        x, _ = frontend.batch([uniq[i] for i in idx], batch_size)
        X[idx] = x.float().cpu().numpy().astype(np.float16)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, X)
    tmp.replace(cache)
    log.info("encoded %d lines in %.0f s -> %s", len(uniq), time.time() - t, cache)
    return index, X


# ------------------------------------------------------------------------------------------------- samples
SOURCES = ("meld", "emorynlp", "dailydialog")


def load_corpora(root: Path) -> dict[str, list]:
    """Training corpora and MELD dev as :class:`~umq.training.data.text.DialogueLines` (EmoryNLP minus MELD-dev
    episodes)."""
    from umq.training.data.text import episodes_of, read_dailydialog, read_emorynlp, read_meld_dialogues

    held = episodes_of(root / "meld_dev_sent_emo.csv")
    out = {"meld": [read_meld_dialogues(root / "meld_train_sent_emo.csv")],
           "emorynlp": [read_emorynlp(root / f"emorynlp_{s}.csv", held) for s in ("train", "dev", "test")
                        if (root / f"emorynlp_{s}.csv").is_file()],
           "dailydialog": [read_dailydialog(root / f"dailydialog_{s}.csv") for s in ("train", "valid", "test")
                           if (root / f"dailydialog_{s}.csv").is_file()],
           "meld_dev": [read_meld_dialogues(root / "meld_dev_sent_emo.csv")]}
    return out


def overlap_with(dev_texts: set[str], corpora: list, min_words: int = 4) -> int:
    """How many training lines of >= ``min_words`` words repeat a held-out line word for word (case and
    punctuation ignored): a check that nothing held out leaks in through another corpus."""
    def key(t: str) -> str:
        return " ".join("".join(c for c in t.lower() if c.isalnum() or c.isspace()).split())

    dev = {key(t) for t in dev_texts if len(t.split()) >= min_words}
    return sum(key(t) in dev for c in corpora for t in c.texts if len(t.split()) >= min_words)


@dataclass
class Samples:
    """Labelled lines with their context, as indices into the line-feature matrix."""

    cur: np.ndarray        # [S] feature row of the line
    ctx: np.ndarray        # [S, N] feature rows of previous lines, oldest first, -1 = none (left-padded)
    spk: np.ndarray        # [S, N] SAME / OTHER / UNKNOWN
    y: np.ndarray          # [S]
    source: np.ndarray     # [S] index into SOURCES (MELD dev: 0)
    group: list[str]       # split groups

    def take(self, idx: np.ndarray) -> Samples:
        return Samples(self.cur[idx], self.ctx[idx], self.spk[idx], self.y[idx], self.source[idx],
                       [self.group[i] for i in idx])


def build_samples(corpora: list, source: int, index: dict[str, int], n_ctx: int) -> Samples:
    from umq.perception.text.net import OTHER, SAME, UNKNOWN

    cur, ctx, spk, y, grp = [], [], [], [], []
    for c in corpora:
        for i, lab in enumerate(c.labels):
            if lab < 0:
                continue
            prev = c.previous(i, n_ctx)
            row = [-1] * (n_ctx - len(prev)) + [index[c.texts[j]] for j in prev]
            s = [UNKNOWN] * n_ctx
            for k, j in enumerate(prev):
                a, b = c.speaker[j], c.speaker[i]
                s[n_ctx - len(prev) + k] = UNKNOWN if not (a and b) else (SAME if a == b else OTHER)
            cur.append(index[c.texts[i]])
            ctx.append(row)
            spk.append(s)
            y.append(lab)
            grp.append(c.group[i])
    n = len(cur)
    return Samples(np.asarray(cur, np.int64), np.asarray(ctx, np.int64).reshape(n, n_ctx),
                   np.asarray(spk, np.int64).reshape(n, n_ctx), np.asarray(y, np.int64),
                   np.full(n, source, np.int64), grp)


def concat(parts: list[Samples]) -> Samples:
    return Samples(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("cur", "ctx", "spk", "y", "source")),
                   [g for p in parts for g in p.group])


# ---------------------------------------------------------------------------------------------------- training
def dialogue_batches(s: Samples, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of whole dialogue runs in shuffled dialogue order: neighbouring lines share context, so each
    distinct line of a batch is projected once (about (N+1) times cheaper than shuffled single lines)."""
    groups: dict[str, list[int]] = {}
    for i, g in enumerate(s.group):
        groups.setdefault(g, []).append(i)
    keys = list(groups)
    rng.shuffle(keys)
    order = np.concatenate([groups[k] for k in keys]) if keys else np.zeros(0, np.int64)
    return [order[a:a + batch_size] for a in range(0, len(order), batch_size)]


def forward_batch(head, feats: torch.Tensor, s: Samples, idx: np.ndarray, rng: np.random.Generator | None,
                  p_drop_ctx: float = 0.25, p_unknown: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits/emb of samples ``idx``; with ``rng`` (training) the context is randomly shortened or dropped and
    speaker codes are hidden (the app rarely knows who speaks)."""
    from umq.perception.text.net import UNKNOWN, context_meta

    ctx = s.ctx[idx].copy()
    spk = s.spk[idx].copy()
    n = ctx.shape[1]
    if rng is not None and n:
        keep = rng.integers(0, n + 1, len(idx))  # keep the last k lines
        keep[rng.random(len(idx)) < p_drop_ctx] = 0
        ctx[np.arange(n)[None, :] < (n - keep)[:, None]] = -1
        spk[rng.random(spk.shape) < p_unknown] = UNKNOWN
    rows = np.unique(np.concatenate([s.cur[idx], ctx[ctx >= 0]]))
    pos = {r: k for k, r in enumerate(rows)}
    hu = head._project(feats[torch.from_numpy(rows)].float())
    hc = hu[torch.tensor([pos[r] for r in s.cur[idx]])]
    if not n:
        return head.combine(hc, None)
    mask = torch.from_numpy(ctx >= 0)
    gather = torch.tensor([[pos.get(r, 0) for r in row] for row in ctx])
    hk = hu[gather]
    meta = torch.tensor([context_meta(list(r), n) for r in spk], dtype=torch.float32)
    # distance codes count from the current line; padded slots are masked anyway
    return head.combine(hc, hk, mask, meta)


def predict(head, feats: torch.Tensor, s: Samples, batch_size: int = 1024) -> torch.Tensor:
    head.eval()
    out = []
    with torch.inference_mode():
        for a in range(0, len(s.y), batch_size):
            out.append(forward_batch(head, feats, s, np.arange(a, min(a + batch_size, len(s.y))), None)[0])
    return torch.cat(out) if out else torch.zeros(0, 7)


def train(feats: torch.Tensor, s: Samples, config: dict, weights: dict[str, float], tau: float,
          log_prior: torch.Tensor, epochs: int, lr: float = 1e-3, weight_decay: float = 1e-2,
          batch_size: int = 256, seed: int = 0, val: Samples | None = None) -> tuple[object, list[torch.Tensor]]:
    """AdamW + one-cycle; cross-entropy on ``logits + tau * log_prior`` (logit adjustment: the raw logits learn
    class-balanced scores, rare classes are not drowned by neutral), rows weighted by their source.

    Returns the head and, with ``val``, its validation logits after every epoch."""
    from umq.perception.text.net import ContextTextHead

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = ContextTextHead(config)
    used = np.unique(np.concatenate([s.cur, s.ctx[s.ctx >= 0]]))
    xf = feats[torch.from_numpy(used)].float()
    head.set_normalizer(xf.mean(0), xf.std(0))
    w_src = torch.tensor([weights.get(name, 0.0) for name in SOURCES])
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * len(dialogue_batches(s, batch_size, np.random.default_rng(0)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    curves = []
    for _ in range(epochs):
        head.train()
        for idx in dialogue_batches(s, batch_size, rng):
            w = w_src[torch.from_numpy(s.source[idx])]
            if not (w > 0).any():
                continue
            logits, _ = forward_batch(head, feats, s, idx, rng)
            loss = F.cross_entropy(logits + tau * log_prior, torch.from_numpy(s.y[idx]), reduction="none")
            loss = (loss * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if val is not None:
            curves.append(predict(head, feats, val))
    head.eval()
    return head, curves


# ------------------------------------------------------------------------------------------------- selection
BETAS = tuple(np.round(np.linspace(-1.0, 1.5, 11), 2).tolist())


def score(y: np.ndarray, logits: torch.Tensor, offset: torch.Tensor | None = None) -> dict:
    from umq.metrics import classification_report

    z = logits if offset is None else logits + offset
    return classification_report(y, z.argmax(1).numpy())


def objective(m: dict) -> float:
    """What the inner split maximises: the mean of weighted and macro F1 (the issue asks for both)."""
    return 0.5 * (m["weighted_f1"] + m["macro_f1"])


def group_split(groups: list[str], frac: float, seed: int) -> np.ndarray:
    """Boolean mask of rows whose group is among ``frac`` of the distinct groups (seeded)."""
    uniq = np.array(sorted(set(groups)))
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(uniq)[: round(frac * len(uniq))].tolist())
    return np.array([g in held for g in groups])


def parse_args(argv=None):
    import argparse

    from umq.perception.text.net import DEFAULT_WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="the text data folder (default $UMQ_DATA/text or ../shared/data)")
    ap.add_argument("--context", type=int, default=4, help="previous lines read with each line")
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--grid", default="0:0:1,1:0.5:1,1:1:1,1:0.5:0",
                    help="settings w_emorynlp:w_dailydialog:tau (MELD rows weigh 1)")
    ap.add_argument("--heldout-frac", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--explore", action="store_true",
                    help="stop after the inner-split grid (MELD dev is neither scored nor looked at)")
    ap.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--metrics", default=None)
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    import platform

    from umq.perception.text.frontend import TextFrontEnd
    from umq.perception.text.net import CONTEXT_CONFIG, save_text_head
    from umq.training.data.text import text_dir

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    t_start = time.time()
    root = text_dir(args.data)
    if root is None:
        raise SystemExit("no text data: pass --data or set UMQ_DATA (see ../shared/data/README.md)")
    corpora = load_corpora(root)
    dev_lines = corpora["meld_dev"][0]
    leaks = overlap_with(set(dev_lines.texts), [c for k in SOURCES for c in corpora[k]])
    log.info("training lines repeating a MELD-dev line (>= 4 words): %d", leaks)
    config = {**CONTEXT_CONFIG, "context": args.context}
    fe = TextFrontEnd(config=config, device="cpu")
    all_texts = [t for cs in corpora.values() for c in cs for t in c.texts]
    t = time.time()
    index, X = line_features(all_texts, fe)
    t_feat = time.time() - t
    feats = torch.from_numpy(X)
    parts = [build_samples(corpora[name], k, index, args.context) for k, name in enumerate(SOURCES)]
    data = concat(parts)
    dev = build_samples(corpora["meld_dev"], 0, index, args.context)
    counts = np.bincount(parts[0].y, minlength=7).astype(np.float64)
    log_prior = torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32)
    log.info("samples: %s; MELD dev %d", {n: len(p.y) for n, p in zip(SOURCES, parts)}, len(dev.y))

    # ---- inner split: whole Friends episodes (MELD and EmoryNLP share them), scored on MELD lines only
    held_mask = group_split(parts[0].group, args.heldout_frac, args.seed)
    held_groups = {g for g, h in zip(parts[0].group, held_mask) if h}
    in_held = np.array([g in held_groups for g in data.group])
    fit = data.take(np.flatnonzero(~in_held))
    held = data.take(np.flatnonzero(in_held & (data.source == 0)))
    log.info("inner split: fit %d lines, held-out %d MELD lines (%d episodes)", len(fit.y), len(held.y),
             len(held_groups))
    grid = []
    best = None
    for setting in args.grid.split(","):
        we, wd, tau = (float(v) for v in setting.split(":"))
        weights = {"meld": 1.0, "emorynlp": we, "dailydialog": wd}
        t = time.time()
        _, curves = train(feats, fit, config, weights, tau, log_prior, args.epochs, args.lr, args.weight_decay,
                          seed=args.seed, val=held)
        for ep, lg in enumerate(curves):
            for beta in BETAS:
                m = score(held.y, lg, beta * log_prior)
                o = objective(m)
                if best is None or o > best[0]:
                    best = (o, we, wd, tau, ep + 1, beta, m)
        row = max(((objective(score(held.y, lg, b * log_prior)), ep + 1, b) for ep, lg in enumerate(curves)
                   for b in BETAS))
        m = score(held.y, curves[row[1] - 1], row[2] * log_prior)
        grid.append({"w_emorynlp": we, "w_dailydialog": wd, "tau": tau, "best_epoch": row[1], "beta": row[2],
                     "objective": round(row[0], 4), "weighted_f1": round(m["weighted_f1"], 4),
                     "macro_f1": round(m["macro_f1"], 4), "seconds": round(time.time() - t, 1)})
        log.info("setting %s: %s", setting, grid[-1])
    _, we, wd, tau, epochs, beta, m_held = best
    log.info("selected w_emorynlp=%s w_dailydialog=%s tau=%s epochs=%d beta=%s", we, wd, tau, epochs, beta)
    if args.explore:
        return {"grid": grid}

    # ---- refit on everything, score MELD dev once
    weights = {"meld": 1.0, "emorynlp": we, "dailydialog": wd}
    head, _ = train(feats, data, config, weights, tau, log_prior, epochs, args.lr, args.weight_decay, seed=args.seed)
    with torch.no_grad():
        head.logit_bias.copy_(beta * log_prior)
    logits = predict(head, feats, dev)
    m_dev = score(dev.y, logits)
    no_ctx = Samples(dev.cur, np.full_like(dev.ctx, -1), dev.spk, dev.y, dev.source, dev.group)
    m_dev_noctx = score(dev.y, predict(head, feats, no_ctx))
    unknown = Samples(dev.cur, dev.ctx, np.full_like(dev.spk, 2), dev.y, dev.source, dev.group)
    m_dev_unknown = score(dev.y, predict(head, feats, unknown))
    for name, m in (("MELD dev", m_dev), ("MELD dev, no context", m_dev_noctx),
                    ("MELD dev, speakers unknown", m_dev_unknown)):
        log.info("%s: wF1=%.4f macroF1=%.4f acc=%.4f recall=%s", name, m["weighted_f1"], m["macro_f1"],
                 m["accuracy"], {c: round(v, 3) for c, v in m["per_class_recall"].items() if v is not None})
    wall = time.time() - t_start
    metrics = {
        "meld_dev": m_dev, "meld_dev_no_context": m_dev_noctx, "meld_dev_speakers_unknown": m_dev_unknown,
        "selection": {"heldout": f"{args.heldout_frac:.0%} of MELD-train episodes (EmoryNLP scenes of those "
                                 "episodes left out of the fit part), scored on MELD lines",
                      "grid": grid, "w_emorynlp": we, "w_dailydialog": wd, "tau": tau, "epochs": epochs,
                      "beta": beta, "objective": "mean of weighted and macro F1",
                      "heldout_weighted_f1": round(m_held["weighted_f1"], 4),
                      "heldout_macro_f1": round(m_held["macro_f1"], 4)},
        "train_lines": {n: len(p.y) for n, p in zip(SOURCES, parts)},
        "skipped": {n: [c.skipped for c in corpora[n]] for n in SOURCES},
        "training_lines_repeating_dev": leaks,
        "config": config, "args": vars(args), "wall_time_s": round(wall, 1), "feature_time_s": round(t_feat, 1),
        "host": {"python": platform.python_version(), "torch": str(torch.__version__), "threads": args.threads},
        "licence": "research / non-commercial use (MELD GPL-3.0, EmoryNLP, DailyDialog CC BY-NC-SA 4.0)",
    }
    out = save_text_head(head, args.out, metrics)
    mpath = Path(args.metrics) if args.metrics else out.with_name("text_metrics.json")
    mpath.write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    log.info("saved %s (%.0f KiB) and %s; wall time %.0f s", out, out.stat().st_size / 1024, mpath, wall)
    return metrics


if __name__ == "__main__":
    main()
