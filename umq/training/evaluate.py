"""Evaluation: the missing/noisy protocol and the encoders, as a library and as a CLI.

    python -m umq.evaluate protocol --checkpoint A.pt [B.pt ...] --data DIR [--actors 17-20] [--seeds 3]
                                    [--out results.json] [--device cpu]
    python -m umq.evaluate face  --data FILE.npz [--out metrics.json]     # FER2013 layout
    python -m umq.evaluate audio --data DIR      [--out metrics.json]     # labels.csv: clip_id, emotion, audio
    python -m umq.evaluate text  --data FILE     [--out metrics.json]     # GoEmotions .tsv or MELD .csv
    python -m umq.evaluate app-text --data MELD.csv --work DIR [--limit N]  # subtitles through the app
    python -m umq.evaluate app-triples --data DIR [--per-class 10]         # fusion through the app, 6 conditions

In the protocol every checkpoint sees exactly the same corrupted inputs (corruptions are drawn on the CPU from a
generator seeded by (seed, condition)), so differences between rows are paired comparisons. The encoder
commands score the shipped (or ``--checkpoint``) weights and write n, accuracy, macro/weighted F1, per-class
recall, the confusion matrix and the skipped-row count.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from umq.corrupt import Condition, apply_condition, protocol_conditions
from umq.metrics import protocol_metrics, regression_metrics
from umq.model import UMQ
from umq.training.data import FeatureSet, apply_norm, parse_ids
from umq.types import Batch

log = logging.getLogger(__name__)


@torch.inference_mode()
def predict(model: UMQ, batch: Batch, device: torch.device | str, batch_size: int = 512) -> dict[str, np.ndarray]:
    """Outputs of ``model`` on ``batch`` (any device) as numpy: ``pred`` (logits or regression), ``q``, ``routing``."""
    model.eval()
    preds, qs, rs = [], [], []
    for start in range(0, batch.size, batch_size):
        idx = torch.arange(start, min(start + batch_size, batch.size))
        sub = batch.index(idx, trim=True).to(device)
        out = model(sub.inputs, sub.present)
        preds.append((out.logits if out.logits is not None else out.regression).float().cpu())
        qs.append(out.q.float().cpu())
        if out.routing is not None:
            rs.append(out.routing.float().cpu())
    return {"pred": torch.cat(preds).numpy(), "q": torch.cat(qs).numpy(),
            "routing": torch.cat(rs).numpy() if rs else np.zeros((batch.size, 0), np.float32)}


def condition_batch(clean: Batch, cond: Condition, seed: int, index: int) -> Batch:
    """The corrupted version of ``clean`` (a CPU batch) for ``cond``; deterministic in ``(seed, index)``."""
    g = torch.Generator().manual_seed(10_007 * seed + index)
    return apply_condition(clean, cond, g)


def evaluate_conditions(model: UMQ, fs: FeatureSet, conditions: list[Condition], seeds: int | list[int],
                        device: torch.device | str) -> dict[str, dict[str, float]]:
    """Metrics per condition label (mean and std over corruption seeds) for normalised features ``fs``."""
    clean = fs.to_batch("cpu")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    results: dict[str, dict[str, float]] = {}
    for ci, cond in enumerate(conditions):
        per_seed = []
        for s in seed_list if cond.kind != "complete" else seed_list[:1]:
            out = predict(model, condition_batch(clean, cond, s, ci), device)
            if model.config.task == "regression":
                m = regression_metrics(fs.y_reg, out["pred"].reshape(-1))
            else:
                m = protocol_metrics(fs.y, out["pred"])
            for i, name in enumerate(model.names):
                m[f"q_{name}"] = float(out["q"][:, i].mean())
            per_seed.append(m)
        keys = per_seed[0].keys()
        results[cond.label] = {k: float(np.mean([p[k] for p in per_seed])) for k in keys}
        results[cond.label].update({f"{k}_std": float(np.std([p[k] for p in per_seed])) for k in keys})
    return results


def summarise(res: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    """Means over the missing conditions, the noisy conditions, and all corrupted conditions."""
    miss = [v[metric] for k, v in res.items() if k.startswith("missing")]
    noise = [v[metric] for k, v in res.items() if k.startswith("noise")]
    return {"complete": res.get("complete", {}).get(metric, float("nan")),
            "missing_mean": float(np.mean(miss)) if miss else float("nan"),
            "noise_mean": float(np.mean(noise)) if noise else float("nan"),
            "corrupted_mean": float(np.mean(miss + noise)) if miss or noise else float("nan")}


def format_table(rows: dict[str, dict[str, dict[str, float]]], metric: str, scale: float = 100.0) -> str:
    """Markdown table: one row per model, one column per condition + the three means."""
    first = next(iter(rows.values()))
    conds = list(first)
    head = ["model"] + conds + ["mean missing", "mean noisy", "mean corrupted"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in rows.items():
        s = summarise(res, metric)
        fmt = ".1f" if scale == 100.0 else ".3f"
        cells = [f"{res[c][metric] * scale:{fmt}}" for c in conds]
        cells += [f"{s[k] * scale:{fmt}}" for k in ("missing_mean", "noise_mean", "corrupted_mean")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_checkpoints(paths: list[str], data: str | None, actors: str | None, seeds: int, device: str | None,
                         split: str = "test", progress: bool = True) -> dict[str, dict[str, dict[str, float]]]:
    from umq.checkpoint import load_model
    from umq.device import pick_device
    from umq.training.data.loading import load_dataset

    dev = pick_device(device)
    cache: dict[str, FeatureSet] = {}
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for p in paths:
        model, norm, ckpt = load_model(p, dev)
        key = json.dumps(ckpt["data"], sort_keys=True)
        if key not in cache:
            cache[key] = load_dataset(ckpt["data"], data, groups=parse_ids(actors), split=split, progress=progress)
        fs = apply_norm(cache[key], norm)
        name = Path(p).stem
        rows[name] = evaluate_conditions(model, fs, protocol_conditions(), seeds, dev)
    return rows


def report_table(rep: dict, title: str) -> str:
    """The readable summary printed by ``face``/``audio``/``text``: headline numbers, per-class recall, confusion."""
    from umq.labels import EMOTIONS

    lines = [f"{title}: n={rep['n']}  accuracy={rep['accuracy']:.4f}  macro_f1={rep['macro_f1']:.4f}  "
             f"weighted_f1={rep['weighted_f1']:.4f}  skipped={rep.get('skipped', 0)}", "",
             "class        recall   " + " ".join(f"{e[:5]:>6}" for e in EMOTIONS) + "   (confusion: rows true)"]
    for i, e in enumerate(EMOTIONS):
        r = rep["per_class_recall"].get(e)
        row = rep["confusion"][i] if i < len(rep["confusion"]) else []
        lines.append(f"{e:<12} {'   -  ' if r is None else f'{r:6.3f}'}   " + " ".join(f"{v:6d}" for v in row))
    return "\n".join(lines)


def _encoder_eval(args: argparse.Namespace) -> dict:
    """``face``/``audio``/``text``: score a shipped (or given) encoder on data in the ../shared/data layout."""
    from umq.device import pick_device

    dev = pick_device(args.device)
    if args.command == "face":
        from umq.perception.face.net import load_face_net
        from umq.training.face.evaluate import evaluate_face_npz

        return evaluate_face_npz(args.data, load_face_net(args.checkpoint, device=dev), device=dev)
    if args.command == "audio":
        from umq.perception.voice.net import load_voice_net
        from umq.training.voice.evaluate import evaluate_audio_folder

        return evaluate_audio_folder(args.data, load_voice_net(args.checkpoint, device=dev), device=dev,
                                     progress=not args.quiet)
    from umq.perception.text.net import load_text_head
    from umq.training.text.evaluate import evaluate_text_file

    return evaluate_text_file(args.data, load_text_head(args.checkpoint, device=dev))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("voice-multi", "app-voice", "voice-adapt"):  # voice across corpora / through the app
        from umq.training.voice.evaluate import main as voice_main

        return voice_main(argv)
    ap = argparse.ArgumentParser(prog="python -m umq.evaluate", description=__doc__.split("\n")[0],
                                 epilog="voice across corpora and through the app: voice-multi, voice-adapt, "
                                        "app-voice (python -m umq.evaluate voice-multi --help)")
    sub = ap.add_subparsers(dest="command", required=True)
    helps = {"face": ("FILE.npz", "face crops: `images` uint8 [N,48,48], `labels`, `classes` (FER2013 layout)"),
             "audio": ("DIR", "a folder with labels.csv (clip_id, emotion, audio[, actor]); audio paths relative "
                              "to DIR; emotions outside the label set are skipped and counted"),
             "text": ("FILE", "a GoEmotions-Ekman .tsv (labels file beside it) or a MELD .csv")}
    for name, (meta, what) in helps.items():
        e = sub.add_parser(name, help=f"score the {name} encoder on {what}")
        e.add_argument("--data", required=True, metavar=meta, help=what)
        e.add_argument("--checkpoint", default=None, help="encoder weights (default: the shipped ones in assets/)")
        e.add_argument("--out", default=None, help="write the metrics as JSON (n, accuracy, macro_f1, weighted_f1, "
                                                   "per_class_recall, confusion, skipped)")
        e.add_argument("--device", default=None)
        e.add_argument("--quiet", action="store_true", help="no progress bar")
    from umq.training.face import appcheck as face_appcheck

    af = sub.add_parser("app-face", help="faces placed in video frames, replayed through the app, scored per face")
    face_appcheck.add_arguments(af)
    from umq.training.runtime import appcheck as triples_appcheck

    atr = sub.add_parser("app-triples", help="held-out face+voice+text triples of one emotion as one video, replayed "
                                             "through the app under each condition (umq.training.runtime.appcheck)")
    triples_appcheck.add_arguments(atr)
    at = sub.add_parser("app-text", help="labelled dialogue lines as subtitles beside a black video, replayed "
                                         "through the app; per-line scores (umq.training.text.appcheck)")
    at.add_argument("--data", required=True, metavar="FILE", help="a MELD .csv (lines are played in dialogue order)")
    at.add_argument("--work", required=True, help="folder for check.srt, check.mp4 and r.jsonl")
    at.add_argument("--limit", type=int, default=None, help="only the first N lines")
    at.add_argument("--hop", type=float, default=None, help="window hop for the replay (default: the app's)")
    at.add_argument("--app-dir", default=None, help="replay with another checkout of the app (before/after)")
    at.add_argument("--out", default=None, help="write the metrics as JSON")
    pr = sub.add_parser("protocol", help="complete / missing-rate / noise-level protocol table")
    pr.add_argument("--checkpoint", nargs="+", required=True)
    pr.add_argument("--data", default=None, help="data folder (RAVDESS layout) or MMSA .pkl")
    pr.add_argument("--actors", default=None, help="RAVDESS actors, e.g. 17-20 (default: all present)")
    pr.add_argument("--split", default="test", help="MMSA split")
    pr.add_argument("--seeds", type=int, default=3, help="corruption seeds to average over")
    pr.add_argument("--device", default=None)
    pr.add_argument("--out", default=None, help="write the full results as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from umq.checkpoint import CheckpointError

    if args.command == "app-face":
        return face_appcheck.run_cli(args)
    if args.command == "app-triples":
        return triples_appcheck.run_cli(args)
    if args.command == "app-text":
        from umq.training.text.appcheck import run_check

        rep = run_check(args.data, args.work, args.limit, args.hop, args.app_dir)
        for k in ("fused", "text_head"):
            if k in rep:
                m = rep[k]
                print(f"{k}: n={m['n']} balanced_acc={m['balanced_accuracy']:.4f} weighted_f1={m['weighted_f1']:.4f} "
                      f"macro_f1={m['macro_f1']:.4f}")
        print(f"text states: {rep['text_states']}")
        if args.out:
            Path(args.out).write_text(json.dumps(rep, indent=1))
        return 0
    if args.command in ("face", "audio", "text"):
        if not Path(args.data).exists():
            print(f"error: {args.data} does not exist", file=sys.stderr)
            return 2
        try:
            rep = _encoder_eval(args)
        except (CheckpointError, FileNotFoundError, ValueError, KeyError, OSError) as e:
            print(f"error: {args.command} evaluation of {args.data} failed: {e}", file=sys.stderr)
            return 2
        rep.setdefault("skipped", 0)
        print(report_table(rep, f"{args.command} encoder on {args.data}"))
        if args.out:
            Path(args.out).write_text(json.dumps(rep, indent=1))
        return 0

    try:
        rows = evaluate_checkpoints(args.checkpoint, args.data, args.actors, args.seeds, args.device, args.split)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    task_metrics = ["acc2", "acc7", "f1", "mae", "corr"] if "mae" in next(iter(next(iter(rows.values())).values())) \
        else ["acc", "f1"]
    for metric in task_metrics:
        scale = 1.0 if metric in ("mae", "corr") else 100.0
        print(f"\n{metric} ({'x1' if scale == 1 else '%'}), mean over {args.seeds} corruption seeds\n")
        print(format_table(rows, metric, scale))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
