"""Choose and measure the quality gate: ``python -m umq.training.runtime.gate [--data DIR]``.

The gate (:attr:`umq.runtime.calibration.QualityCalibration.gate`) leaves a present modality out of the fusion
when its calibrated quality reads below a threshold, exactly as if capture had flagged it missing. Why: the
calibrated number is the modality encoder's expected accuracy relative to clean (0 = chance), and a modality
at chance is no evidence; the trained fusion still lets some of it through, so on the validation triples a
badly degraded modality could cost more than the same modality removed (docs/results.md, "degraded ≥ removed").

How it is chosen: every threshold of :data:`GRID` is scored on the **fit half** of the validation triples (the
half the calibration was fitted on); the one with the best mean accuracy over every column (complete, each
subset missing, each corruption, switched off) wins, the smaller on a tie within :data:`TIE`. The **report
half** (never seen by the choice) gives the numbers written, with and without the gate. It is written into the
calibration file (``assets/runtime/calibration.json``), which the live analyzer reads; run it after
``python -m umq.training.runtime.calibrate``, which writes that file without a gate.

Only the shipped checkpoint (the first training seed) is measured: the other seeds' models are not saved.

``--app WORKDIR`` instead reads the six result files of a through-the-app run
(``python -m umq.evaluate app-triples --workdir WORKDIR [--half fit]``) and shows what each gate would have
given there, without replaying again: with the gate, a window whose modality reads below it gets the answer
the analyzer gives that window with the modality missing, which is the same window of the run where that
modality was removed (face covered, mic muted, no transcript) when the other modalities are as in the removed
run. Windows where that run does not exist (two modalities below the gate, or the gated modality is not the one
the condition degrades) keep their answer and are counted.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from umq.runtime.analyzer import ASSETS, load_runtime_model
from umq.runtime.calibration import QualityCalibration
from umq.runtime.features import MODALITIES
from umq.training.data import data_root_or_explain
from umq.training.runtime.evaluation import (
    degraded_vs_removed,
    evaluate_model,
    run,
    summary,
    validation_triples,
)
from umq.training.runtime.sampling import TripleSampler
from umq.training.runtime.train import add_face_source_args, face_source_for, load_caches

log = logging.getLogger(__name__)

GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
"""Calibrated-quality thresholds tried (0 = no gate). Above 0.3 a modality keeping a third of its clean
usefulness would be thrown away, which the ladders show is still worth having (the voice encoder keeps 0.93
of its clean accuracy at -3 dB SNR, docs/results.md)."""
TIE = 0.001  # accuracy difference below which the smaller gate wins


def mean_accuracy(conds: dict) -> float:
    return float(np.mean([v["accuracy"] for v in conds.values()]))


def violations(dvr: dict) -> list[str]:
    """The ``modality kind`` pairs where the degraded input scores below the same input removed."""
    out = []
    for m, row in dvr.items():
        for k, v in row.items():
            if k not in ("clean", "removed") and v < row["removed"]:
                out.append(f"{m} {k} ({v - row['removed']:+.3f})")
    return out


def gate_rates(model, s: TripleSampler, trip: dict, thresholds: np.ndarray | None) -> dict[str, float]:
    """Share of clean items each modality would be left out on: the gate's cost on good input."""
    if thresholds is None:
        return {m: 0.0 for m in MODALITIES}
    q = run(model, s, trip, {}, {})[1]
    return {m: round(float(np.mean(q[:, i] < thresholds[i])), 4) for i, m in enumerate(MODALITIES)}


def measure(model, s: TripleSampler, trip: dict, cal: QualityCalibration, gate: float) -> dict:
    thr = cal.with_gate(gate).raw_thresholds(MODALITIES)
    conds = evaluate_model(model, s, trip, thr)
    dvr = degraded_vs_removed(model, s, trip, gate=thr)
    return {"gate": gate, "raw_thresholds": None if thr is None else [float(t) for t in thr],
            "mean_all_columns": round(mean_accuracy(conds), 4), "summary": summary(conds),
            "conditions": conds, "degraded_vs_removed": dvr, "violations": violations(dvr),
            "clean_items_left_out": gate_rates(model, s, trip, thr)}


def choose(model, s: TripleSampler, fit_trip: dict, cal: QualityCalibration) -> tuple[float, list[dict]]:
    rows = [measure(model, s, fit_trip, cal, g) for g in GRID]
    best = max(r["mean_all_columns"] for r in rows)
    chosen = min(r["gate"] for r in rows if r["mean_all_columns"] >= best - TIE)
    return chosen, rows


REMOVED_RUN = {("clean", "video"): "face_covered", ("clean", "audio"): "mic_muted",
               ("clean", "text"): "no_transcript", ("face_blurred", "video"): "face_covered",
               ("voice_0db", "audio"): "mic_muted"}
"""(condition, gated modality) -> the app-triples run that holds the same windows with that modality removed."""


def _window(r: dict) -> tuple[float, float]:
    return round(float(r["t0"]), 3), round(float(r["t1"]), 3)


def gate_app_rows(rows: dict[str, list[dict]], gate: float) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Result rows per condition as they would be with ``gate`` (see the module docstring), and per condition
    how many windows were replaced and how many could not be simulated."""
    by_window = {c: {_window(r): r for r in rs} for c, rs in rows.items()}
    out, counts = {}, {}
    for cond, rs in rows.items():
        new, replaced, kept = [], 0, 0
        for r in rs:
            below = [m for m in MODALITIES if (r.get("modalities") or {}).get(m, {}).get("state") in ("ok", "low")
                     and r["modalities"][m]["quality"] < gate]
            other = REMOVED_RUN.get((cond, below[0])) if len(below) == 1 else None
            if other and _window(r) in by_window.get(other, {}):
                new.append(by_window[other][_window(r)])
                replaced += 1
            else:
                new.append(r)
                kept += bool(below)
        out[cond] = new
        counts[cond] = {"windows": len(rs), "replaced": replaced, "not_simulated": kept}
    return out, counts


def app_table(work: Path, root: Path, half: str, per_class: int, seed: int, seconds: float) -> list[dict]:
    """Per gate of :data:`GRID` (and 0.4, 0.5): fused per-item accuracy per condition of an app-triples run."""
    from umq.training.face.appcheck import whole_frames
    from umq.training.runtime.appcheck import FPS, load_items, score

    rows = {f.stem: [json.loads(s) for s in f.read_text().splitlines() if s.strip()]
            for f in sorted(Path(work).glob("*.jsonl"))}
    if not rows:
        raise FileNotFoundError(f"no app-triples results (*.jsonl) in {work}: run python -m umq.evaluate "
                                f"app-triples --workdir {work} first")
    items = load_items(root, per_class, seed, half)
    secs = whole_frames(seconds, FPS)
    table = []
    for g in (*GRID, 0.4, 0.5):
        gated, counts = gate_app_rows(rows, g)
        acc = {c: score(rs, items, secs).get("fused", {}).get("accuracy", 0.0) for c, rs in gated.items()}
        table.append({"gate": g, "accuracy": acc, "mean": round(float(np.mean(list(acc.values()))), 4),
                      "windows": counts})
    return table


def markdown(fit_rows: list[dict], chosen: float, report: dict) -> str:
    lines = ["Fit half (the choice):", "",
             "| gate | mean of all columns | complete | mean corrupted | degraded < removed | clean left out (v/a/t) |",
             "|---|---|---|---|---|---|"]
    for r in fit_rows:
        lo = r["clean_items_left_out"]
        lines.append(f"| {r['gate']:.2f}{' (chosen)' if r['gate'] == chosen else ''} | {r['mean_all_columns']:.4f} | "
                     f"{r['summary']['complete']:.4f} | {r['summary']['mean_corrupted']:.4f} | "
                     f"{len(r['violations'])} | {lo['video']:.3f} / {lo['audio']:.3f} / {lo['text']:.3f} |")
    lines += ["", "Report half:", "",
              "| | complete | mean missing | mean corrupted | mean of all columns | degraded < removed |",
              "|---|---|---|---|---|---|"]
    for name, r in report.items():
        sm = r["summary"]
        lines.append(f"| {name} | {sm['complete']:.4f} | {sm['mean_missing']:.4f} | {sm['mean_corrupted']:.4f} | "
                     f"{r['mean_all_columns']:.4f} | {', '.join(r['violations']) or 'none'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umq.training.runtime.gate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="data root in the ../shared/data layout (default $UMQ_DATA)")
    ap.add_argument("--checkpoint", default=str(ASSETS / "umq.pt"))
    ap.add_argument("--calibration", default=str(ASSETS / "calibration.json"),
                    help="read, and rewritten with the chosen gate unless --dry-run")
    ap.add_argument("--report", default=None, help="also write every measurement as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="measure and print, write no calibration")
    add_face_source_args(ap)
    ap.add_argument("--app", default=None, metavar="WORKDIR",
                    help="instead: what each gate gives on an app-triples run kept with --workdir (writes nothing)")
    ap.add_argument("--half", default="fit", help="with --app: the half that run used (--half of app-triples)")
    ap.add_argument("--per-class", type=int, default=20, help="with --app: that run's --per-class")
    ap.add_argument("--seed", type=int, default=1, help="with --app: that run's --seed")
    ap.add_argument("--seconds", type=float, default=4.0, help="with --app: that run's --seconds")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    root = data_root_or_explain(args.data)
    if root is None:
        return 2
    if args.app:
        table = app_table(Path(args.app), root, args.half, args.per_class, args.seed, args.seconds)
        conds = list(table[0]["accuracy"])
        print("| gate | " + " | ".join(conds) + " | mean | windows replaced / not simulated |")
        print("|---|" + "---|" * (len(conds) + 2))
        for r in table:
            rep = sum(c["replaced"] for c in r["windows"].values())
            kept = sum(c["not_simulated"] for c in r["windows"].values())
            print(f"| {r['gate']:.2f} | " + " | ".join(f"{r['accuracy'][c]:.3f}" for c in conds)
                  + f" | {r['mean']:.4f} | {rep} / {kept} |")
        if args.report:
            Path(args.report).write_text(json.dumps(table, indent=1))
        return 0
    face = face_source_for(args)
    if face is None:
        return 2
    cal = QualityCalibration.load(args.calibration)
    if not cal.fitted:
        print(f"no fitted calibration at {args.calibration}: run python -m umq.training.runtime.calibrate first",
              file=sys.stderr)
        return 2
    model, mean, std, _ = load_runtime_model(args.checkpoint, "cpu")
    model.eval()
    val_c = load_caches(root, "val", "cpu", True, face)
    norm = SimpleNamespace(mean={m: mean[m].numpy() for m in MODALITIES}, std={m: std[m].numpy() for m in MODALITIES})
    s = TripleSampler(val_c, norm, torch.device("cpu"))
    chosen, fit_rows = choose(model, s, validation_triples(val_c, 100, 1, part="fit"), cal)
    rep_trip = validation_triples(val_c, 100, 1, part="report")
    report = {"no gate": measure(model, s, rep_trip, cal, 0.0)}
    if chosen > 0:
        report[f"gate {chosen:.2f}"] = measure(model, s, rep_trip, cal, chosen)
    print(markdown(fit_rows, chosen, report))
    if args.report:
        Path(args.report).write_text(json.dumps({"chosen": chosen, "fit": fit_rows, "report": report}, indent=1))
    if not args.dry_run:
        meta = {**cal.meta, "gate": f"chosen from {list(GRID)} on the fit half of the validation triples (best mean "
                                    f"accuracy over every column); python -m umq.training.runtime.gate"}
        QualityCalibration(cal.knots, meta, chosen).save(args.calibration)
        print(f"wrote gate {chosen:.2f} to {args.calibration}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
