"""Pure functions from results to what the dashboard draws (HTML snippets, plot tables, overlay images).

Kept apart from Gradio so they are unit-testable and so the UI module stays a thin layer. Every HTML element
that shows a number carries it in a ``data-*`` attribute too, which is what the browser test reads.
"""
from __future__ import annotations

import html
import math

import cv2
import numpy as np
import pandas as pd

from umq.labels import EMOTIONS
from umq.result import Result

MODALITY_TITLES = {"video": "Face (camera)", "audio": "Voice (microphone)", "text": "Transcript"}
EMOTION_COLOURS = {"neutral": "#8c959f", "happy": "#e3b341", "sad": "#1f6feb", "angry": "#cf222e",
                   "fearful": "#8250df", "disgust": "#1a7f37", "surprised": "#fb8500"}
MODALITY_COLOURS = {"video": "#1f6feb", "audio": "#fb8500", "text": "#1a7f37"}
STATE_COLOURS = {"ok": "#1a7f37", "low": "#b35900", "missing": "#b42318", "idle": "#5b6770"}
BOX_COLOURS = {"ok": (55, 160, 40), "low": (0, 140, 230), "missing": (40, 40, 200), "idle": (120, 120, 120)}  # BGR

CSS = """
.umq-gauges {display: flex; gap: 10px; flex-wrap: wrap;}
.umq-gauge {flex: 1 1 180px; border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 10px;}
.umq-gauge .name {font-weight: 600; font-size: 0.95em;}
.umq-gauge .bar {height: 10px; background: #eaeef2; border-radius: 5px; margin: 6px 0;}
.umq-gauge .fill {height: 10px; border-radius: 5px;}
.umq-badge {display: inline-block; color: white; border-radius: 4px; padding: 0 6px; font-size: 0.8em;
            font-weight: 700; margin-left: 6px;}
.umq-reason {font-size: 0.85em; color: #57606a; min-height: 1.2em;}
.umq-routing {display: flex; gap: 6px; align-items: flex-end; height: 60px;}
.umq-routing div {background: #6e40c9; width: 28px; border-radius: 3px 3px 0 0;}
.umq-compare td, .umq-compare th {padding: 2px 8px;}
"""


def legend_html() -> str:
    """Colour keys for the emotion and quality plots (the plots' own legends are clipped by their containers)."""
    def keys(mapping: dict[str, str]) -> str:
        return " ".join(f"<span style='white-space:nowrap'><span style='display:inline-block;width:12px;height:4px;"
                        f"background:{c};vertical-align:middle;margin-right:4px'></span>{html.escape(n)}</span>"
                        for n, c in mapping.items())

    return (f"<div class='umq-legend' style='display:flex;gap:24px;font-size:0.85em'><div>{keys(EMOTION_COLOURS)}"
            f"</div><div>{keys({MODALITY_TITLES[m]: c for m, c in MODALITY_COLOURS.items()})}</div></div>")


def gauges_html(result: Result | None) -> str:
    """One gauge per modality: quality bar, OK / LOW / MISSING badge and the reason."""
    if result is None:
        return "<div class='umq-gauges' data-ready='0'>waiting for the first window…</div>"
    parts = []
    for m, title in MODALITY_TITLES.items():
        if m not in result.quality:
            continue
        q, st, why = result.quality[m], result.state[m], result.reason[m]
        colour = STATE_COLOURS[st]
        parts.append(
            f"<div class='umq-gauge' data-modality='{m}' data-quality='{q:.4f}' data-state='{st}'>"
            f"<span class='name'>{title}</span><span class='umq-badge' style='background:{colour}'>{st.upper()}</span>"
            f"<div class='bar'><div class='fill' style='width:{q * 100:.0f}%;background:{colour}'></div></div>"
            f"<span>quality {q:.2f}</span><div class='umq-reason'>{html.escape(why) or '&nbsp;'}</div></div>")
    return f"<div class='umq-gauges' data-ready='1' data-index='{result.index}'>{''.join(parts)}</div>"


def emotion_label(result: Result | None) -> dict[str, float]:
    return dict(result.probs) if result is not None else {}


def baseline_label(result: Result | None) -> dict[str, float]:
    if result is None or result.baseline is None:
        return {}
    return dict(result.baseline.probs)


def headline_html(result: Result | None) -> str:
    if result is None:
        return "<div class='umq-headline' data-label=''>—</div>"
    if result.no_evidence:
        return (f"<div class='umq-headline' data-label='' data-no-evidence='1' style='font-size:1.6em;"
                f"font-weight:700;color:#888'>no usable input <span style='font-size:0.6em;font-weight:400'>"
                f"(window {result.t0:.1f}–{result.t1:.1f} s)</span></div>")
    return (f"<div class='umq-headline' data-label='{result.label}' data-confidence='{result.confidence:.4f}' "
            f"style='font-size:1.6em;font-weight:700'>{result.label} "
            f"<span style='font-size:0.6em;font-weight:400'>({result.confidence:.0%}, window "
            f"{result.t0:.1f}–{result.t1:.1f} s)</span></div>")


def routing_html(result: Result | None) -> str:
    if result is None or not result.routing:
        return "<div class='umq-routing'></div>"
    bars = "".join(f"<div title='expert {i + 1}: {w:.2f}' style='height:{max(w, 0.02) * 100:.0f}%'></div>"
                   for i, w in enumerate(result.routing))
    labels = " ".join(f"E{i + 1} {w:.2f}" for i, w in enumerate(result.routing))
    return f"<div class='umq-routing'>{bars}</div><div style='font-size:0.8em'>{labels}</div>"


def compare_html(result: Result | None) -> str:
    """UMQ next to the quality-unaware baseline, for the lab."""
    if result is None or result.baseline is None:
        return "<div class='umq-compare' data-umq='' data-baseline=''>—</div>"
    b = result.baseline
    umq = result.label or "no usable input"
    return (f"<table class='umq-compare' data-umq='{result.label}' data-baseline='{b.label}'>"
            f"<tr><th>UMQ (quality-aware)</th><th>MoE (quality-unaware)</th></tr>"
            f"<tr><td><b>{umq}</b> {result.confidence:.0%}</td>"
            f"<td><b>{b.label}</b> {b.confidence:.0%}</td></tr></table>")


def emotion_frame(history: list[Result]) -> pd.DataFrame:
    rows = [(r.t1, e, r.probs[e]) for r in history for e in EMOTIONS if e in r.probs]
    return _typed(pd.DataFrame(rows, columns=["t", "emotion", "probability"]), "probability")


def quality_frame(history: list[Result]) -> pd.DataFrame:
    rows = [(r.t1, m, r.quality[m]) for r in history for m in r.quality]
    return _typed(pd.DataFrame(rows, columns=["t", "modality", "quality"]), "quality")


def _typed(df: pd.DataFrame, value: str) -> pd.DataFrame:
    """Numeric columns even when empty: the plot picks its axis types from the first value it gets."""
    return df.astype({"t": "float64", value: "float64"})


def telemetry_md(tel, result: Result | None) -> str:
    def p(d: dict, key: str = "p50") -> str:
        v = d.get(key) if d else None
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f} ms"

    lat = result.latency_ms if result is not None else {}
    fronts = ", ".join(f"{k[:-3]} {v:.0f} ms" for k, v in lat.items() if k.endswith("_ms"))
    drops = sum(tel.dropped.values()) if tel.dropped else 0
    srcs = "; ".join(f"{m}: {d['state']}{' (' + d['reason'] + ')' if d.get('reason') else ''}"
                     for m, d in sorted(tel.sources.items()))
    return (f"**mode** {tel.mode} · **t** {tel.session_t:.1f} s · **video** {tel.video_fps:.1f} fps · "
            f"**windows** {tel.windows} · **results** {tel.results} · **dropped (latest wins)** {drops}  \n"
            f"**end-to-end** p50 {p(tel.end_to_end_ms)} / p95 {p(tel.end_to_end_ms, 'p95')} · "
            f"**perception** p50 {p(tel.stage_ms.get('perception', {}))} · **model** p50 "
            f"{p(tel.stage_ms.get('model', {}))} · this window: {fronts or '–'}  \n"
            f"**sources** {srcs or '–'}" + (f"  \n**last error** {tel.last_error}" if tel.last_error else ""))


def overlay(frame_bgr: np.ndarray | None, result: Result | None, size: tuple[int, int] = (480, 360)) -> np.ndarray:
    """RGB preview: the frame (or a grey card saying why there is none), the face box and a state line."""
    if frame_bgr is None:
        img = np.full((size[1], size[0], 3), 40, np.uint8)
        why = result.reason.get("video", "") if result is not None else ""
        cv2.putText(img, "no video", (20, size[1] // 2 - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (220, 220, 220), 2)
        if why:
            cv2.putText(img, why[:48], (20, size[1] // 2 + 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (200, 200, 200), 1)
        return img
    img = frame_bgr.copy()
    if result is not None:
        st = result.state.get("video", "ok")
        for face in result.faces:
            x, y, w, h = face.box
            cv2.rectangle(img, (x, y), (x + w, y + h), BOX_COLOURS[st], 2 if face.primary else 1)
            said = f"{face.prediction.label} {face.prediction.confidence:.0%}" if face.prediction else ""
            if face.primary and not said and result.label:
                said = f"{result.label} {result.confidence:.0%}"
            cv2.putText(img, f"#{face.track_id} {said}".strip(), (x, max(12, y - 6)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, BOX_COLOURS[st], 1)
        text = f"video {st.upper()}" + (f": {result.reason['video']}" if result.reason.get("video") else "")
        cv2.rectangle(img, (0, img.shape[0] - 22), (img.shape[1], img.shape[0]), (0, 0, 0), -1)
        cv2.putText(img, text[:60], (6, img.shape[0] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def results_csv(history: list[Result]) -> str:
    """One row per window: times, label, probabilities, quality, state and reason per modality."""
    cols = ["index", "t0", "t1", "label", "confidence"]
    rows = []
    for r in history:
        row = {"index": r.index, "t0": r.t0, "t1": r.t1, "label": r.label, "confidence": round(r.confidence, 5),
               "no_evidence": int(r.no_evidence)}
        row.update({f"p_{e}": round(v, 5) for e, v in r.probs.items()})
        for m in r.quality:
            row[f"quality_{m}"] = round(r.quality[m], 4)
            row[f"state_{m}"] = r.state[m]
            row[f"reason_{m}"] = r.reason[m]
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=cols)
    return df.to_csv(index=False)
