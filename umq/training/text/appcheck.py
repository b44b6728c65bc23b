"""Through-the-app check of the text branch: labelled dialogue lines as subtitles beside a black, silent video.

    python -m umq.evaluate app-text --data ../shared/data/text/meld_dev_sent_emo.csv --work /tmp/apptext \
        [--limit 400] [--hop 1.0] [--app-dir OTHER_CHECKOUT] [--out metrics.json]

1. :func:`write_subtitle_video`: the lines of a MELD ``.csv`` in dialogue order (so each line has its
   predecessors as context) become ``check.srt`` cues, ``line_s`` long with ``gap_s`` of silence between them (a
   gap at least one window long, so the windows covering a line hold that line only and the pauses exercise the
   "nobody spoke" state); ``check.mp4`` is black frames without an audio track (ffmpeg).
2. ``python -m app replay check.mp4 --headless --out r.jsonl`` plays it through the whole app (capture, windows,
   perception, runtime model).
3. :func:`score_replay`: every line is scored from the windows that overlap it: the mean of their fused ``probs``
   (the app's answer) and, where the windows carry it, the mean of the text head's own probabilities
   (``modalities.text.prediction``). Balanced accuracy (mean per-class recall), weighted and macro F1.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umq.labels import EMOTIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckLine:
    t0: float
    t1: float
    text: str
    label: int


def srt_time(t: float) -> str:
    """Seconds -> ``HH:MM:SS,mmm`` (an SRT cue time)."""
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def check_lines(data: str | Path, limit: int | None = None, line_s: float = 1.5, gap_s: float = 2.5) -> list[CheckLine]:
    """Labelled lines of a MELD ``.csv`` in dialogue order, timed one after another (first line at ``gap_s``)."""
    from umq.training.data.text import read_meld_dialogues

    d = read_meld_dialogues(data)
    out, t = [], gap_s
    for text, lab in zip(d.texts, d.labels):
        if limit is not None and len(out) >= limit:
            break
        out.append(CheckLine(t, t + line_s, text, lab))
        t += line_s + gap_s
    return out


def write_subtitle_video(lines: list[CheckLine], work: str | Path, tail_s: float = 3.0) -> Path:
    """``work/check.srt`` and ``work/check.mp4`` (black 160x120 at 5 fps, no audio) covering every line."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    srt = work / "check.srt"
    srt.write_text("".join(f"{k + 1}\n{srt_time(ln.t0)} --> {srt_time(ln.t1)}\n{ln.text}\n\n"
                           for k, ln in enumerate(lines)), encoding="utf-8")
    video = work / "check.mp4"
    dur = (lines[-1].t1 if lines else 0.0) + tail_s
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", f"color=black:s=160x120:r=5:d={dur:.2f}",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-an", str(video)]
    subprocess.run(cmd, check=True)
    (work / "lines.json").write_text(json.dumps([ln.__dict__ for ln in lines]), encoding="utf-8")
    return video


def replay(video: Path, out: Path, hop: float | None = None, cwd: str | Path | None = None) -> None:
    """Play ``video`` through the app headless (the same command a user runs; ``hop`` overrides the window hop,
    ``cwd`` runs another checkout of the app, e.g. the previous release for a before/after comparison)."""
    cmd = [sys.executable, "-m", "app", "replay", str(Path(video).resolve()), "--headless", "--out",
           str(Path(out).resolve())]
    subprocess.run(cmd + (["--hop", str(hop)] if hop else []), check=True, cwd=cwd)


def _metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    from umq.metrics import classification_report

    m = classification_report(y, pred)
    rec = [v for v in m["per_class_recall"].values() if v is not None]
    m["balanced_accuracy"] = float(np.mean(rec)) if rec else 0.0
    return m


def score_replay(lines: list[CheckLine], results: str | Path) -> dict:
    """Per-line scores from the result windows overlapping each line (see the module docstring)."""
    rows = [json.loads(s) for s in Path(results).read_text(encoding="utf-8").splitlines() if s.strip()]
    t0 = np.array([r["t0"] for r in rows])
    t1 = np.array([r["t1"] for r in rows])
    fused = np.array([[r["probs"][e] for e in EMOTIONS] for r in rows]) if rows else np.zeros((0, 7))
    # the text head's own probabilities: schema 2 carries them in modalities.text.prediction (schema 1 in extra)
    own = [(((r.get("modalities") or {}).get("text") or {}).get("prediction") or {}).get("probs")
           or ((r.get("extra") or {}).get("cues") or {}).get("text", {}).get("probs") for r in rows]
    y, p_fused, p_own, n_windows = [], [], [], []
    for ln in lines:
        idx = np.flatnonzero((t0 < ln.t1) & (t1 > ln.t0))
        if not len(idx):
            continue
        y.append(ln.label)
        n_windows.append(len(idx))
        p_fused.append(int(fused[idx].mean(0).argmax()))
        o = [own[i] for i in idx if own[i]]
        p_own.append(int(np.mean([[v[e] for e in EMOTIONS] for v in o], 0).argmax()) if o else -1)
    y_arr = np.array(y, np.int64)
    out = {"lines": len(lines), "scored": len(y), "windows_per_line": float(np.mean(n_windows)) if n_windows else 0,
           "fused": _metrics(y_arr, np.array(p_fused, np.int64))}
    if p_own and min(p_own) >= 0:
        out["text_head"] = _metrics(y_arr, np.array(p_own, np.int64))
    states = [r.get("state", {}).get("text") for r in rows]
    out["text_states"] = {s: states.count(s) for s in set(states)}
    return out


def run_check(data: str | Path, work: str | Path, limit: int | None = None, hop: float | None = None,
              app_dir: str | Path | None = None) -> dict:
    lines = check_lines(data, limit)
    video = write_subtitle_video(lines, work)
    out = Path(work) / "r.jsonl"
    replay(video, out, hop, app_dir)
    res = score_replay(lines, out)
    res["data"] = str(data)
    return res
