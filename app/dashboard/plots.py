"""Timelines as inline SVG: readable at any length, with the demo's scripted stretches shaded, a cursor at the
current or scrubbed time, and the windows where UMQ and the quality-unaware MoE disagree marked.

Readable at any length: windows are averaged into at most ``bins`` time bins, and the emotion view draws only
the ``top`` classes by mean probability (or the classes asked for), in the fixed class order. Windows without
evidence are not drawn as emotion lines; a grey band along the bottom marks them. Each point sits at its window's
centre, the same pairing the scrub view uses.
"""
from __future__ import annotations

from umq.labels import EMOTIONS
from umq.result import Result

from .render import EMOTION_COLOURS, MODALITY_COLOURS, SCRIPT_WORDS, esc

W, H, PAD_L, PAD_B, PAD_T = 900, 190, 34, 22, 16


def _bins(history: list[Result], bins: int, t0: float, t_end: float) -> list[list[Result]]:
    out: list[list[Result]] = [[] for _ in range(bins)]
    for r in history:
        c = (r.t0 + r.t1) / 2
        out[min(bins - 1, max(0, int((c - t0) / (t_end - t0) * bins)))].append(r)
    return [g for g in out if g]  # empty bins are skipped: a line breaks only where there is no evidence


def _x(t: float, t_end: float, t_start: float = 0.0) -> float:
    return PAD_L + (W - PAD_L - 4) * min(max((t - t_start) / (t_end - t_start), 0.0), 1.0)


def _y(v: float) -> float:
    return PAD_T + (H - PAD_T - PAD_B) * (1.0 - v)


def _polyline(points: list[tuple[float, float] | None], colour: str, name: str) -> str:
    """Lines broken where a point is None (no evidence in that bin)."""
    segs: list[list[tuple[float, float]]] = []
    cur: list[tuple[float, float]] = []
    for p in points + [None]:
        if p is None:
            if len(cur) >= 1:
                segs.append(cur)
            cur = []
        else:
            cur.append(p)
    return "".join(
        f"<polyline data-series='{esc(name)}' fill='none' stroke='{colour}' stroke-width='1.8' points='"
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in (s if len(s) > 1 else s * 2)) + "'/>" for s in segs)


def top_classes(history: list[Result], k: int = 3) -> list[str]:
    """The ``k`` classes with the highest mean probability over windows with evidence, in the fixed order."""
    ev = [r for r in history if not r.no_evidence] or history
    if not ev:
        return list(EMOTIONS[:k])
    mean = {e: sum(r.probs.get(e, 0.0) for r in ev) / len(ev) for e in EMOTIONS}
    best = sorted(EMOTIONS, key=lambda e: -mean[e])[:k]
    return [e for e in EMOTIONS if e in best]


def timeline_svg(history: list[Result], kind: str = "emotion", t_end: float | None = None,
                 cursor: float | None = None, stretches: dict[str, tuple[float, float]] | None = None,
                 classes: list[str] | None = None, top: int = 3, bins: int = 300,
                 disagreements: bool = False, title: str = "") -> str:
    """An SVG timeline of ``kind`` ``emotion`` (selected or top classes) or ``quality`` (per modality), from
    the first window's start to the last window's end (or ``t_end``)."""
    last = max((r.t1 for r in history), default=0.0)
    t_start = min((r.t0 for r in history), default=0.0)
    t_end = max(t_end or 0.0, last, t_start + 1.0)
    nb = max(1, min(bins, len(history)))
    groups = _bins(history, nb, t_start, t_end)
    parts = [(f"<rect x='{PAD_L}' y='{PAD_T}' width='{W - PAD_L - 4}' height='{H - PAD_T - PAD_B}' "
              "fill='#fbfcfd' stroke='#d0d7de'/>")]
    for name, (a, b) in sorted((stretches or {}).items(), key=lambda kv: kv[1][0]):
        if a >= t_end or b <= t_start:
            continue
        x0, x1 = _x(a, t_end, t_start), _x(b, t_end, t_start)
        parts.append(f"<rect class='stretch' data-stretch='{esc(name)}' x='{x0:.1f}' y='{PAD_T}' "
                     f"width='{max(1.0, x1 - x0):.1f}' height='{H - PAD_T - PAD_B}' fill='#ddf4ff' opacity='0.8'>"
                     f"<title>{esc(SCRIPT_WORDS.get(name, name))} {a:.0f}–{b:.0f} s (scripted)</title></rect>"
                     f"<text x='{x0 + 2:.1f}' y='{PAD_T - 3}' font-size='10' fill='#0969da'>"
                     f"{esc(SCRIPT_WORDS.get(name, name))}</text>")
    for v in (0.0, 0.5, 1.0):
        parts.append(f"<text x='2' y='{_y(v) + 4:.1f}' font-size='10' fill='#57606a'>{v:.1f}</text>")
    for k in range(6):
        t = t_start + (t_end - t_start) * k / 5
        parts.append(f"<text x='{_x(t, t_end, t_start) - 8:.1f}' y='{H - 6}' font-size='10' "
                     f"fill='#57606a'>{t:.0f} s</text>")
    centres = [sum((r.t0 + r.t1) / 2 for r in g) / len(g) for g in groups]
    if kind == "emotion":
        shown = classes or top_classes(history, top)
        for e in shown:
            pts = []
            for g, c in zip(groups, centres):
                ev = [r for r in g if not r.no_evidence]
                mean = sum(r.probs.get(e, 0.0) for r in ev) / len(ev) if ev else 0.0
                pts.append((_x(c, t_end, t_start), _y(mean)) if ev else None)
            parts.append(_polyline(pts, EMOTION_COLOURS.get(e, "#000"), e))
        for g, c in zip(groups, centres):
            if all(r.no_evidence for r in g):
                parts.append(f"<rect class='no-evidence' x='{_x(c, t_end, t_start) - 1.5:.1f}' y='{H - PAD_B - 5}' "
                             f"width='3' height='5' fill='#8c959f'/>")
    else:
        shown = [m for m in MODALITY_COLOURS if any(m in r.modalities for r in history)]
        for m in shown:
            pts = [(_x(c, t_end, t_start), _y(sum(r.modalities[m].quality for r in g if m in r.modalities)
                                                 / len(g))) for g, c in zip(groups, centres)]
            parts.append(_polyline(pts, MODALITY_COLOURS[m], m))
    n_dis = 0
    if disagreements:
        for r in history:
            if r.baseline is not None and r.label != r.baseline.label:
                n_dis += 1
                x0, x1 = _x(r.t0, t_end, t_start), _x(r.t1, t_end, t_start)
                parts.append(f"<rect class='disagree' x='{x0:.1f}' y='{PAD_T}' width='{max(1.0, x1 - x0):.1f}' "
                             f"height='4' fill='#cf222e'><title>UMQ {esc(r.label or 'no usable input')} vs MoE "
                             f"{esc(r.baseline.label)} ({r.t0:.1f}–{r.t1:.1f} s)</title></rect>")
    if cursor is not None:
        xc = _x(cursor, t_end, t_start)
        parts.append(f"<line class='cursor' x1='{xc:.1f}' x2='{xc:.1f}' y1='{PAD_T}' "
                     f"y2='{H - PAD_B}' stroke='#cf222e' stroke-width='2'/>")
    legend = " ".join(f"<span style='color:{(EMOTION_COLOURS | MODALITY_COLOURS).get(s, '#000')}'>■ {esc(s)}</span>"
                      for s in shown)
    head = f"<div style='font-weight:600;font-size:0.9em'>{esc(title)}</div>" if title else ""
    return (f"<div class='umq-timeline' data-kind='{kind}' data-t-end='{last:.2f}' "
            f"data-n='{len(history)}' data-cursor='{'' if cursor is None else f'{cursor:.2f}'}' "
            f"data-disagree='{n_dis}'>{head}<svg viewBox='0 0 {W} {H}' width='100%' preserveAspectRatio='none' "
            f"style='max-height:{H}px'>{''.join(parts)}</svg><div style='font-size:0.8em'>{legend}</div></div>")
