"""Pure functions from results to what the dashboard draws (HTML snippets, overlay images, exports).

Kept apart from Gradio so they are unit-testable and so the UI modules stay thin. Every element that shows a
number carries it in a ``data-*`` attribute too, which is what the browser test reads. Every string that comes
from outside (file names, camera names, transcript lines, reasons) is HTML-escaped here (:func:`esc`).
Classes are always drawn in the fixed order of :data:`umq.labels.EMOTIONS`. Timelines: :mod:`.plots`.
"""
from __future__ import annotations

import html
import math

import cv2
import numpy as np
import pandas as pd

from umq.labels import EMOTIONS
from umq.result import Result
from umq.runtime import NO_INPUT_REASON

from .experts import expert_names

MODALITY_TITLES = {"video": "Face (camera)", "audio": "Voice (microphone)", "text": "Transcript"}
MODALITY_SHORT = {"video": "face", "audio": "voice", "text": "text"}
EMOTION_COLOURS = {"neutral": "#8c959f", "happy": "#e3b341", "sad": "#1f6feb", "angry": "#cf222e",
                   "fearful": "#8250df", "disgust": "#1a7f37", "surprised": "#fb8500"}
MODALITY_COLOURS = {"video": "#1f6feb", "audio": "#fb8500", "text": "#1a7f37"}
STATE_COLOURS = {"ok": "#1a7f37", "low": "#b35900", "missing": "#b42318", "idle": "#5b6770"}
BOX_COLOURS = {"ok": (55, 160, 40), "low": (0, 140, 230), "missing": (40, 40, 200), "idle": (120, 120, 120)}  # BGR
NO_INPUT = NO_INPUT_REASON  # what is shown instead of a class when there is no evidence

CSS = """
.umq-gauges {display: flex; gap: 10px; flex-wrap: wrap;}
.umq-gauge {flex: 1 1 180px; border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 10px;}
.umq-gauge[data-state='idle'] {border-style: dashed; background: #f6f8fa;}
.umq-gauge[data-state='missing'] {background: #fff5f5;}
.umq-gauge .name {font-weight: 600; font-size: 0.95em;}
.umq-gauge .bar {height: 10px; background: #eaeef2; border-radius: 5px; margin: 6px 0;}
.umq-gauge .fill {height: 10px; border-radius: 5px;}
.umq-badge {display: inline-block; color: white; border-radius: 4px; padding: 0 6px; font-size: 0.8em;
            font-weight: 700; margin-left: 6px;}
.umq-reason, .umq-says {font-size: 0.85em; color: #57606a; min-height: 1.2em;}
.umq-flag {display: inline-block; background: #fff1e5; color: #8a4600; border-radius: 4px; padding: 0 5px;
           margin: 1px 3px 1px 0; font-size: 0.8em;}
.umq-routing {display: flex; gap: 6px; align-items: flex-end; height: 60px;}
.umq-routing div {background: #6e40c9; width: 28px; border-radius: 3px 3px 0 0;}
.umq-compare td, .umq-compare th {padding: 2px 8px;}
.umq-stale {opacity: 0.45; filter: grayscale(1);}
.umq-banner {border-radius: 6px; padding: 6px 10px; margin: 4px 0; font-size: 0.9em;}
.umq-probs .row {display: flex; align-items: center; gap: 6px; font-size: 0.9em; margin: 2px 0;}
.umq-probs .row .n {width: 80px;} .umq-probs .row .b {flex: 1; height: 10px; background: #eaeef2; border-radius: 5px;}
.umq-probs .row .f {height: 10px; border-radius: 5px;}
"""


def esc(text: object) -> str:
    """HTML-escape anything user-controlled before it goes into HTML or Markdown."""
    return html.escape(str(text), quote=True)


def legend_html() -> str:
    """Colour keys for the emotion and quality timelines."""
    def keys(mapping: dict[str, str]) -> str:
        return " ".join(f"<span style='white-space:nowrap'><span style='display:inline-block;width:12px;height:4px;"
                        f"background:{c};vertical-align:middle;margin-right:4px'></span>{esc(n)}</span>"
                        for n, c in mapping.items())

    return (f"<div class='umq-legend' style='display:flex;gap:24px;font-size:0.85em'><div>{keys(EMOTION_COLOURS)}"
            f"</div><div>{keys({MODALITY_TITLES[m]: c for m, c in MODALITY_COLOURS.items()})}</div></div>")


def _says(pred) -> str:
    return f"{pred.label} {pred.confidence:.0%}" if pred is not None else "—"


def gauges_html(result: Result | None, stale: bool = False) -> str:
    """One gauge per modality: quality bar, OK / LOW / MISSING / IDLE badge, the reason, the cue flags and what
    that modality's own encoder says."""
    if result is None:
        return "<div class='umq-gauges' data-ready='0'>waiting for the first window…</div>"
    parts = []
    for m, title in MODALITY_TITLES.items():
        rep = result.modalities.get(m)
        if rep is None:
            continue
        colour = STATE_COLOURS[rep.state]
        flags = "".join(f"<span class='umq-flag'>{esc(f)}</span>" for f in rep.flags)
        says = (f"{MODALITY_SHORT[m]} says <b>{esc(_says(rep.prediction))}</b>" if rep.prediction is not None
                else f"{MODALITY_SHORT[m]}: no prediction")
        parts.append(
            f"<div class='umq-gauge' data-modality='{m}' data-quality='{rep.quality:.4f}' data-state='{rep.state}'"
            f" data-says='{esc(rep.prediction.label if rep.prediction else '')}'>"
            f"<span class='name'>{title}</span><span class='umq-badge' style='background:{colour}'>"
            f"{rep.state.upper()}</span>"
            f"<div class='bar'><div class='fill' style='width:{rep.quality * 100:.0f}%;background:{colour}'>"
            "</div></div>"
            f"<span>quality {rep.quality:.2f}</span><div class='umq-reason'>{esc(rep.reason) or '&nbsp;'}</div>"
            f"<div class='umq-flags'>{flags}</div><div class='umq-says'>{says}</div></div>")
    cls = "umq-gauges umq-stale" if stale else "umq-gauges"
    return (f"<div class='{cls}' data-ready='1' data-index='{result.index}' data-stale='{int(stale)}'>"
            f"{''.join(parts)}</div>")


def probs_html(result: Result | None, stale: bool = False, title: str = "Emotion") -> str:
    """The fused distribution as bars in the fixed class order; greyed with "no usable input" without evidence."""
    if result is None:
        return f"<div class='umq-probs' data-ready='0'><b>{esc(title)}</b> —</div>"
    grey = result.no_evidence or stale
    rows = "".join(
        f"<div class='row' data-emotion='{e}' data-p='{result.probs.get(e, 0.0):.4f}'><span class='n'>{e}</span>"
        f"<span class='b'><span class='f' style='display:block;width:{result.probs.get(e, 0.0) * 100:.0f}%;"
        f"background:{'#afb8c1' if grey else EMOTION_COLOURS[e]}'></span></span>"
        f"<span>{result.probs.get(e, 0.0):.0%}</span></div>" for e in EMOTIONS)
    note = f" <i>({NO_INPUT}: no class is named)</i>" if result.no_evidence else ""
    return (f"<div class='umq-probs{' umq-stale' if stale else ''}' data-ready='1' "
            f"data-no-evidence='{int(result.no_evidence)}'><b>{esc(title)}</b>{note}{rows}</div>")


def headline_html(result: Result | None, stale: bool = False, stopped_at: float | None = None) -> str:
    """The verdict: a class with its confidence, or "no usable input"; then what each modality says; greyed and
    marked "stopped at t = ..." when nothing runs any more."""
    if result is None:
        return "<div class='umq-headline' data-label='' data-stale='0'>—</div>"
    when = f"window {result.t0:.1f}–{result.t1:.1f} s"
    if result.no_evidence:
        verdict, style = f"{NO_INPUT} <span style='font-size:0.6em;font-weight:400'>({when})</span>", "color:#888"
    else:
        verdict = (f"{result.label} <span style='font-size:0.6em;font-weight:400'>({result.confidence:.0%}, "
                   f"{when})</span>")
        style = ""
    says = [f"{MODALITY_SHORT[m]} says {esc(_says(r.prediction))}" if r.usable and r.prediction is not None
            else f"{MODALITY_SHORT[m]}: {r.state}" for m, r in result.modalities.items()]
    says.append(f"fused: {result.label or NO_INPUT}")
    stale_note = (f"<div class='umq-stopped' style='color:#b42318;font-size:0.9em'>stopped at t = "
                  f"{stopped_at if stopped_at is not None else result.t1:.1f} s: not live</div>" if stale else "")
    return (f"<div class='umq-headline{' umq-stale' if stale else ''}' data-label='{esc(result.label)}' "
            f"data-no-evidence='{int(result.no_evidence)}' data-confidence='{result.confidence:.4f}' "
            f"data-stale='{int(stale)}'><div style='font-size:1.6em;font-weight:700;{style}'>{verdict}</div>"
            f"<div class='umq-says'>{'; '.join(says)}</div></div>{stale_note}")


def routing_html(result: Result | None, names: list[str] | None = None) -> str:
    """Routing weights per expert, each named by the quality pattern it specialises in (measured on the demo,
    see :mod:`.experts`), with the measured mean routing in the tooltip."""
    if result is None or not result.routing:
        return "<div class='umq-routing'></div>"
    names = names or expert_names(len(result.routing))
    bars = "".join(f"<div title='{esc(names[i])}: {w:.2f}' style='height:{max(w, 0.02) * 100:.0f}%'></div>"
                   for i, w in enumerate(result.routing))
    labels = "".join(f"<div title='{esc(names[i])}' data-expert='{i}'>{esc(names[i].split(':')[0])}: "
                     f"<b>{w:.2f}</b></div>" for i, w in enumerate(result.routing))
    return (f"<div class='umq-routing'>{bars}</div><div style='font-size:0.8em'>{labels}</div>"
            "<div style='font-size:0.75em;color:#57606a'>Experts are named by the input-quality pattern they get "
            "most weight on (measured on the demo); hover for details.</div>")


def compare_html(result: Result | None) -> str:
    """UMQ next to the quality-unaware baseline, for the lab; highlighted when they disagree."""
    if result is None or result.baseline is None:
        return "<div class='umq-compare' data-umq='' data-baseline='' data-disagree='0'>—</div>"
    b = result.baseline
    umq = result.label or NO_INPUT
    disagree = result.label != b.label
    bg = "background:#fff8c5;" if disagree else ""
    note = "<div style='font-size:0.85em'>they disagree on this window</div>" if disagree else ""
    conf = f" {result.confidence:.0%}" if result.label else ""
    return (f"<table class='umq-compare' style='{bg}' data-umq='{esc(result.label)}' data-baseline='{esc(b.label)}' "
            f"data-disagree='{int(disagree)}'><tr><th>UMQ (quality-aware)</th><th>MoE (quality-unaware)</th></tr>"
            f"<tr><td><b>{esc(umq)}</b>{conf}</td><td><b>{esc(b.label)}</b> {b.confidence:.0%}</td></tr></table>{note}")


def lab_banner_html(lab: dict[str, str] | None) -> str:
    """"Quality lab active: ..." on the Live tab while any corruption is applied (from ``Result.lab``)."""
    if not lab:
        return "<div class='umq-lab-banner' data-active='0'></div>"
    what = ", ".join(f"{esc(k)} {esc(v)}" for k, v in lab.items())
    return (f"<div class='umq-lab-banner umq-banner' data-active='1' style='background:#fff1e5;color:#8a4600'>"
            f"<b>Quality lab active:</b> {what}. The inputs are degraded on purpose (Quality lab tab, "
            f"<i>Reset lab</i> to undo).</div>")


SCRIPT_WORDS = {"dark": "dark", "camera_off": "camera off", "mic_silent": "mic silent", "noise": "noise",
                "no_transcript": "no transcript", "blur": "blur", "face_out": "face leaves"}


def demo_banner_html(script: dict[str, tuple[float, float]]) -> str:
    """What the demo is and which stretches are scripted failures (from its ``meta.json``)."""
    if not script:
        return "<div class='umq-demo-banner' data-script='0'></div>"
    parts = ", ".join(f"{esc(SCRIPT_WORDS.get(k, k))} {a:.0f}–{b:.0f} s"
                      for k, (a, b) in sorted(script.items(), key=lambda kv: kv[1][0]))
    return (f"<div class='umq-demo-banner umq-banner' data-script='{len(script)}' style='background:#ddf4ff'>"
            f"<b>This is the bundled demo</b>, a {max(b for _, b in script.values()):.0f} s recording that loops. "
            f"It breaks its inputs on purpose to show how UMQ copes: {parts}. The shaded stretches on the "
            "timelines mark them. Start live analysis or open a replay to use your own input.</div>")


def telemetry_md(tel, result: Result | None) -> str:
    def p(d: dict, key: str = "p50") -> str:
        v = d.get(key) if d else None
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f} ms"

    lat = result.latency_ms if result is not None else {}
    fronts = ", ".join(f"{esc(k[:-3])} {v:.0f} ms" for k, v in lat.items() if k.endswith("_ms"))
    drops = sum(tel.dropped.values()) if tel.dropped else 0
    srcs = "; ".join(f"{esc(m)}: {esc(d['state'])}{' (' + esc(d['reason']) + ')' if d.get('reason') else ''}"
                     for m, d in sorted(tel.sources.items()))
    return (f"**mode** {tel.mode} · **t** {tel.session_t:.1f} s · **video received** {tel.video_fps:.1f} fps "
            f"(last 2 s) · **windows** {tel.windows} · **results** {tel.results} · **dropped (latest wins)** {drops}"
            f"  \n**end-to-end** p50 {p(tel.end_to_end_ms)} / p95 {p(tel.end_to_end_ms, 'p95')} · "
            f"**perception** p50 {p(tel.stage_ms.get('perception', {}))} · **model** p50 "
            f"{p(tel.stage_ms.get('model', {}))} · this window: {fronts or '–'}  \n"
            f"**sources** {srcs or '–'}" + (f"  \n**last error** {esc(tel.last_error)}" if tel.last_error else ""))


def overlay(frame_bgr: np.ndarray | None, result: Result | None, size: tuple[int, int] = (480, 360),
            stopped_at: float | None = None) -> np.ndarray:
    """RGB preview: the frame (or a grey card saying why there is none), the face box and a state line; greyed
    with "stopped at t = ..." when ``stopped_at`` is given (nothing runs: the picture is old)."""
    if frame_bgr is None:
        img = np.full((size[1], size[0], 3), 40, np.uint8)
        why = result.reason.get("video", "") if result is not None else ""
        cv2.putText(img, "no video", (20, size[1] // 2 - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (220, 220, 220), 2)
        if why:
            cv2.putText(img, why[:48], (20, size[1] // 2 + 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (200, 200, 200), 1)
    else:
        img = frame_bgr.copy()
        if result is not None:
            _draw_result(img, result)
    if stopped_at is not None:
        grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        img = (grey * 0.5).astype(np.uint8)
        cv2.putText(img, f"stopped at t = {stopped_at:.1f} s", (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                    (255, 255, 255), 2)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _draw_result(img: np.ndarray, result: Result) -> None:
    st = result.state.get("video", "ok")
    for face in result.faces:
        x, y, w, h = face.box
        cv2.rectangle(img, (x, y), (x + w, y + h), BOX_COLOURS[st], 2 if face.primary else 1)
        said = f"{face.prediction.label} {face.prediction.confidence:.0%}" if face.prediction else ""
        if face.primary and not said:
            said = f"{result.label} {result.confidence:.0%}" if result.label else NO_INPUT
        cv2.putText(img, f"#{face.track_id} {said}".strip(), (x, max(12, y - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, BOX_COLOURS[st], 1)
    text = f"video {st.upper()}" + (f": {result.reason['video']}" if result.reason.get("video") else "")
    cv2.rectangle(img, (0, img.shape[0] - 22), (img.shape[1], img.shape[0]), (0, 0, 0), -1)
    cv2.putText(img, text[:60], (6, img.shape[0] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)


def results_csv(history: list[Result]) -> str:
    """One row per window: times, label (empty without evidence) and the ``no_evidence`` flag, probabilities in
    the fixed class order, and per modality quality, state, reason and that modality's own label."""
    cols = ["index", "t0", "t1", "label", "confidence", "no_evidence"]
    rows = []
    for r in history:
        row = {"index": r.index, "t0": r.t0, "t1": r.t1, "label": r.label, "confidence": round(r.confidence, 5),
               "no_evidence": int(r.no_evidence)}
        row.update({f"p_{e}": round(r.probs[e], 5) for e in EMOTIONS if e in r.probs})
        for m, rep in r.modalities.items():
            row[f"quality_{m}"] = round(rep.quality, 4)
            row[f"state_{m}"] = rep.state
            row[f"reason_{m}"] = rep.reason
            row[f"label_{m}"] = rep.prediction.label if rep.prediction is not None and rep.usable else ""
        row["baseline_label"] = r.baseline.label if r.baseline is not None else ""
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=cols)
    return df.to_csv(index=False)
