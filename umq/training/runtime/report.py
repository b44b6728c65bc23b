"""Markdown tables of the runtime models' held-out numbers: ``python -m umq.training.runtime.report [metrics.json]``.

Reads the ``metrics.json`` written by :mod:`umq.training.runtime.train` (default
``assets/runtime/metrics.json``) and prints
the tables of docs/results.md: summary, every column with UMQ's margin over the best quality-unaware model, and
degraded vs removed per modality. Every number is the mean over the training seeds, ± their standard deviation.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from umq.runtime.analyzer import ASSETS

NAMES = {"umq": "UMQ", "moe_unaware": "MoE (quality-unaware)", "late_fusion": "late fusion",
         "umq_no_enhancer": "UMQ w/o enhancer"}
BASELINES = ("moe_unaware", "late_fusion")


def _pm(d: dict) -> str:
    return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"


def summary_table(models: dict) -> list[str]:
    keys = ("complete", "mean_missing", "mean_corrupted", "mean_all")
    out = ["| model | complete | mean missing | mean corrupted | mean of all degraded columns |",
           "|---|---|---|---|---|"]
    for v, m in models.items():
        out.append(f"| {NAMES.get(v, v)} | " + " | ".join(_pm(m["summary"][k]) for k in keys) + " |")
    return out


def columns_table(models: dict) -> tuple[list[str], list[str]]:
    """Every column; returns (table, columns UMQ loses to a baseline by more than the seed spread)."""
    umq = models["umq"]["conditions"]
    base = [b for b in BASELINES if b in models]
    out = ["| column | UMQ | " + " | ".join(NAMES[b] for b in base) + " | UMQ − best baseline |",
           "|---|---|" + "---|" * len(base) + "---|"]
    lost = []
    for col, d in umq.items():
        best = max(models[b]["conditions"][col]["mean"] for b in base)
        diff = 100 * (d["mean"] - best)
        mark = ""
        if diff < 0:
            mark = " (loses)"
            lost.append(f"{col} ({diff:+.1f})")
        out.append(f"| {col} | {_pm(d)} | " + " | ".join(_pm(models[b]["conditions"][col]) for b in base)
                   + f" | {diff:+.1f}{mark} |")
    return out, lost


def degraded_table(models: dict) -> list[str]:
    out = []
    for m in ("video", "audio", "text"):
        cols = list(models["umq"]["degraded_vs_removed"][m])
        out += [f"**{m}**", "", "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for v, mm in models.items():
            row = mm["degraded_vs_removed"][m]
            out.append(f"| {NAMES.get(v, v)} | " + " | ".join(f"{100 * row[c]['mean']:.1f}" for c in cols) + " |")
        out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umq.training.runtime.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("metrics", nargs="?", default=str(ASSETS / "metrics.json"))
    args = ap.parse_args(argv)
    metrics = json.loads(Path(args.metrics).read_text())
    models = metrics["models"]
    cols, lost = columns_table(models)
    head = (f"Seeds {metrics['seeds']}; {metrics['val_triples']['n']} validation triples "
            f"({metrics['val_triples']['drawn_from']}).")
    lines = [head, "", *summary_table(models), "", *cols, "",
             "Columns UMQ loses: " + (", ".join(lost) if lost else "none"), "", *degraded_table(models)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
