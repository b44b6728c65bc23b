"""Through-the-app fusion check: held-out label-consistent triples as one video, replayed under each condition.

Why: the runtime model's tables (:mod:`.evaluation`) score cached vectors; a user meets the whole app. Here every
item is a FER2013 ``public_test`` face placed in 640x480 frames, a RAVDESS clip of a validation actor on the audio
track and a MELD ``dev`` line as a subtitle, all three of the same emotion, ``--seconds`` per item. The video is
written once per condition and played with ``python -m app replay VIDEO --headless`` (the command a user runs);
each item is scored from the windows inside its interval: the fused label (an empty label, "no usable input",
counts as wrong), the quality-unaware comparison model's label where the result carries it, and each
modality's own prediction, and each modality's mean quality gauge.

The gauge is meant to read as the modality's usefulness relative to clean (docs/results.md, section 1), so the
report also puts, per condition and modality, the mean gauge beside the relative accuracy of that modality's own
prediction through the app (``gauge_vs_usefulness``): the reliability check of the cached tables, asked of the
app. An item whose modality gave no prediction (no face found) counts as a chance guess there, as it reads ~0;
idle windows (nobody spoke) are left out of the gauge's mean.

Conditions (the ones issue 17 names): ``clean``; ``face_covered`` (black frames: the camera covered);
``face_blurred`` (Gaussian blur, sigma 6 px on the 640x480 frame); ``voice_0db`` (white noise at 0 dB SNR over
the whole track); ``mic_muted`` (digital silence); ``no_transcript`` (no subtitle file). "Degraded >= removed"
reads: ``face_blurred`` >= ``face_covered`` and ``voice_0db`` >= ``mic_muted``. Any ``voice_<N>db`` (e.g.
``voice_10db``, ``voice_-5db``) adds white noise at N dB the same way, for a noise ladder through the app.

The SNR is the track's: the noise is scaled to the RMS of every non-silent sample of the whole track, as a room's
fixed noise floor would be, so soft clips sit far below it and loud ones above (on the report half's 140 clips,
``--per-class 20 --seed 1``, the median clip is 14.7 dB below the nominal SNR). The report gives each voice
condition's per-clip SNRs (``voice_snr_per_clip``: median and 10-90 %).

    python -m umq.evaluate app-triples --data ../shared/data --per-class 10 [--conditions clean mic_muted ...]
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from umq.labels import EMOTIONS
from umq.training.face.appcheck import place_face, whole_frames
from umq.training.text.appcheck import srt_time

log = logging.getLogger(__name__)
CONDITIONS = ("clean", "face_covered", "face_blurred", "voice_0db", "mic_muted", "no_transcript")
_VOICE_SNR = re.compile(r"voice_(-?\d+(?:\.\d+)?)db")
W, H, FPS, SR = 640, 480, 15, 16_000
HALVES = {"report": (1, {19, 20}), "fit": (0, {17, 18})}  # (first FER/MELD item, RAVDESS actors)


@dataclass(frozen=True)
class Item:
    label: int
    face: np.ndarray  # [48, 48] uint8
    voice: np.ndarray  # float32 at 16 kHz
    line: str


def load_items(root: Path, per_class: int, seed: int = 0, half: str = "report") -> list[Item]:
    """``per_class`` triples per class, drawn from the report half of the validation data (odd FER
    ``public_test`` faces, RAVDESS actors 19-20, odd MELD ``dev`` lines), classes interleaved. ``half="fit"``
    draws from the other half (even faces and lines, actors 17-18 - the calibration's voice actors): disjoint from
    the report half, so a choice made on it (the quality gate) can be reported on the other."""
    first, actors = HALVES[half]
    from umq.perception.face.net import to_app_index
    from umq.training.data.text import read_meld_dialogues
    from umq.training.data.voice_corpora import load_ravdess
    from umq.training.voice.clips import read_audio

    rng = np.random.default_rng(seed)
    with np.load(root / "fer2013" / "public_test.npz", allow_pickle=False) as d:
        faces = d["images"][first::2]
        face_y = to_app_index([str(c) for c in d["classes"]])[d["labels"].astype(np.int64)][first::2]
    clips = [c for c in load_ravdess(root, actors) if c.label < len(EMOTIONS)]  # calm has no slot
    voice_y = np.array([c.label for c in clips])
    meld = read_meld_dialogues(root / "text" / "meld_dev_sent_emo.csv")
    text_y = np.asarray(meld.labels)[first::2]
    texts = list(meld.texts)[first::2]
    items = []
    for k in range(len(EMOTIONS)):
        f = rng.permutation(np.flatnonzero(face_y == k))
        v = rng.permutation(np.flatnonzero(voice_y == k))
        t = rng.permutation(np.flatnonzero(text_y == k))
        for j in range(per_class):  # a class with fewer items than per_class repeats them (rare MELD classes)
            items.append(Item(k, faces[f[j % len(f)]], read_audio(clips[v[j % len(v)]].audio),
                              texts[t[j % len(t)]]))
    return [items[i] for i in rng.permutation(len(items))]


def voice_snr(condition: str) -> float | None:
    """The nominal SNR (dB) of a ``voice_<N>db`` condition; None for any other condition."""
    m = _VOICE_SNR.fullmatch(condition)
    return float(m.group(1)) if m else None


def check_condition(condition: str) -> str:
    """``condition`` if it is known (one of :data:`CONDITIONS` or ``voice_<N>db``), else ValueError."""
    if condition not in CONDITIONS and voice_snr(condition) is None:
        raise ValueError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}, or voice_<N>db")
    return condition


def _in_slot(it: Item, seconds: float) -> np.ndarray:
    """The part of an item's voice that plays: its slot less 0.5 s (it starts 0.25 s in)."""
    return it.voice[: int(round(seconds * SR)) - SR // 2]


def _track(items: list[Item], seconds: float) -> np.ndarray:
    """Every item's voice in its slot (0.25 s in, cut 0.5 s before the slot ends), silence between."""
    seg = int(round(seconds * SR))
    audio = np.zeros(seg * len(items), np.float32)
    for i, it in enumerate(items):
        v = _in_slot(it, seconds)
        audio[i * seg + SR // 4: i * seg + SR // 4 + len(v)] = v
    return audio


def _level(x: np.ndarray) -> float:
    """RMS of the non-silent samples (the reference of the track's SNR)."""
    nz = x[np.abs(x) > 1e-4]
    return float(np.sqrt(np.mean(nz ** 2))) if nz.size else 0.0


def per_clip_snr(items: list[Item], seconds: float, snr_db: float) -> np.ndarray:
    """Each clip's own SNR (dB) under the noise that ``voice_<snr_db>db`` adds to the whole track."""
    ref = _level(_track(items, seconds)) or 0.01
    return np.array([snr_db + 20 * np.log10(max(_level(_in_slot(it, seconds)), 1e-9) / ref) for it in items])


def write_condition(items: list[Item], condition: str, seconds: float, work: Path, seed: int) -> Path:
    """``work/<condition>.mp4`` (+ ``.srt`` unless ``no_transcript``) for the items under ``condition``."""
    check_condition(condition)
    import soundfile as sf

    rng = np.random.default_rng(seed)  # the same faces, offsets and noise in every condition
    n = int(round(seconds * FPS))
    audio = _track(items, seconds)
    snr = voice_snr(condition)
    if snr is not None:  # white noise at this SNR against the whole track's level (a fixed noise floor)
        rms = _level(audio) or 0.01
        noise = np.random.default_rng(seed + 1).normal(0.0, rms, audio.shape).astype(np.float32)
        audio = audio + noise * np.float32(10 ** (-snr / 20))
    elif condition == "mic_muted":
        audio[:] = 0.0
    wav, video = work / f"{condition}.wav", work / f"{condition}.mp4"
    sf.write(wav, np.clip(audio, -1, 1), SR)
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{W}x{H}",
           "-r", str(FPS), "-i", "-", "-i", str(wav), "-shortest", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(video)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for it in items:
        frame = place_face(it.face, rng)
        if condition == "face_covered":
            frame = np.zeros_like(frame)
        elif condition == "face_blurred":
            frame = cv2.GaussianBlur(frame, (0, 0), 6.0)
        data = frame.tobytes()
        for _ in range(n):
            proc.stdin.write(data)
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed writing {video}")
    wav.unlink()
    srt = video.with_suffix(".srt")
    srt.unlink(missing_ok=True)
    if condition != "no_transcript":
        srt.write_text("".join(
            f"{i + 1}\n{srt_time(i * seconds + 0.25)} --> {srt_time((i + 1) * seconds - 0.25)}\n{it.line}\n\n"
            for i, it in enumerate(items)), encoding="utf-8")
    return video


def _probs(p: dict | None) -> np.ndarray | None:
    return None if not p else np.array([float(p.get(e, 0.0)) for e in EMOTIONS])


def score(rows: list[dict], items: list[Item], seconds: float) -> dict:
    """Per item: mean probabilities of the windows inside its interval -> label; accuracy per output."""
    hits: dict[str, list[bool]] = {"fused": [], "baseline": [], "video": [], "audio": [], "text": []}
    gauge: dict[str, list[float]] = {"video": [], "audio": [], "text": []}
    no_label = 0
    for i, it in enumerate(items):
        a, b = i * seconds - 0.05, (i + 1) * seconds + 0.05
        inside = [r for r in rows if r["t0"] >= a and r["t1"] <= b]
        labelled = [r for r in inside if r.get("label")]
        no_label += len(inside) - len(labelled)
        fused = [_probs(r["probs"]) for r in labelled]
        hits["fused"].append(bool(fused) and int(np.mean(fused, 0).argmax()) == it.label)
        base = [_probs(r["baseline"]["probs"]) for r in inside if (r.get("baseline") or {}).get("probs")]
        if base:
            hits["baseline"].append(int(np.mean(base, 0).argmax()) == it.label)
        for m in ("video", "audio", "text"):
            own = [_probs(p["probs"]) for r in inside
                   if (p := ((r.get("modalities") or {}).get(m) or {}).get("prediction"))]
            if own:
                hits[m].append(int(np.mean(own, 0).argmax()) == it.label)
            reports = [(r.get("modalities") or {}).get(m) for r in inside]
            # an idle window (a transcript source with nobody speaking: subtitle lines arrive when they end)
            # has nothing to read, so its 0 says nothing about usefulness; a missing one (no face found) does
            qs = [float(x.get("quality") or 0.0) for x in reports if x is not None and x.get("state") != "idle"]
            if qs:
                gauge[m].append(float(np.mean(qs)))
    out: dict = {"items": len(items), "windows_without_label": no_label}
    for k, v in hits.items():
        if v:
            out[k] = {"accuracy": round(float(np.mean(v)), 4), "items_scored": len(v)}
        if k in gauge and gauge[k]:
            out.setdefault(k, {"items_scored": 0})["mean_gauge"] = round(float(np.mean(gauge[k])), 4)
    return out


def gauge_vs_usefulness(conditions: dict) -> dict:
    """Per condition and modality: mean gauge beside the relative accuracy of the modality's own prediction
    (chance-to-clean scale, an unscored item counted as a chance guess; clean = 1 by definition)."""
    from umq.training.runtime.sampling import CHANCE, relative

    def accuracy(c: dict, m: str) -> float:  # over every item, an unscored one a chance guess
        scored = c[m]["items_scored"]
        return (c[m].get("accuracy", 0.0) * scored + (c["items"] - scored) * CHANCE) / c["items"]

    clean = conditions.get("clean")
    if not clean:
        return {}
    out: dict = {}
    for cond, c in conditions.items():
        for m in ("video", "audio", "text"):
            if m not in c or "mean_gauge" not in c[m] or "accuracy" not in clean.get(m, {}):
                continue
            rel = 1.0 if cond == "clean" else float(relative(accuracy(c, m), accuracy(clean, m)))
            out.setdefault(cond, {})[m] = {"mean_gauge": c[m]["mean_gauge"], "relative_accuracy": round(rel, 4),
                                           "gap": round(c[m]["mean_gauge"] - rel, 4)}
    return out


def run(root: Path, per_class: int, seconds: float, conditions: list[str], seed: int, work: Path,
        half: str = "report") -> dict:
    seconds = whole_frames(seconds, FPS)  # the frames, the audio track and the scorer agree on each interval
    items = load_items(root, per_class, seed, half)
    rep: dict = {"per_class": per_class, "seconds": seconds, "seed": seed, "half": half, "conditions": {}}
    for cond in conditions:
        video = write_condition(items, cond, seconds, work, seed)
        out = work / f"{cond}.jsonl"
        log.info("replaying %s headless", video)
        subprocess.run([sys.executable, "-m", "app", "replay", str(video), "--headless", "--out", str(out)],
                       check=True)
        rows = [json.loads(s) for s in out.read_text().splitlines() if s.strip()]
        rep["conditions"][cond] = score(rows, items, seconds)
        log.info("%s: %s", cond, json.dumps(rep["conditions"][cond]))
    c = rep["conditions"]
    pairs = {"video": ("face_blurred", "face_covered"), "audio": ("voice_0db", "mic_muted")}
    rep["degraded_minus_removed"] = {m: round(c[d]["fused"]["accuracy"] - c[r]["fused"]["accuracy"], 4)
                                     for m, (d, r) in pairs.items() if d in c and r in c}
    voiced = {k: snr for k in c if (snr := voice_snr(k)) is not None}
    rep["voice_minus_muted"] = {k: round(c[k]["fused"]["accuracy"] - c["mic_muted"]["fused"]["accuracy"], 4)
                                for k in voiced if "mic_muted" in c}
    rep["voice_snr_per_clip"] = {}
    below_track = per_clip_snr(items, seconds, 0.0)  # each clip's level against the track's (dB)
    for k, snr in voiced.items():
        snrs = snr + below_track
        rep["voice_snr_per_clip"][k] = {"median": round(float(np.median(snrs)), 1),
                                        "p10": round(float(np.percentile(snrs, 10)), 1),
                                        "p90": round(float(np.percentile(snrs, 90)), 1)}
    rep["gauge_vs_usefulness"] = gauge_vs_usefulness(c)
    return rep


def _condition_arg(value: str) -> str:
    try:
        return check_condition(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", required=True, help="data root in the ../shared/data layout")
    ap.add_argument("--per-class", type=int, default=10, help="triples per class")
    ap.add_argument("--seconds", type=float, default=4.0, help="how long each item plays")
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), type=_condition_arg,
                    help=f"any of {', '.join(CONDITIONS)}, or voice_<N>db (white noise at N dB SNR; default: all six)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--half", choices=tuple(HALVES), default="report",
                    help="validation half the items come from: report (default, what docs/results.md quotes) or "
                         "fit (even FER public_test faces and MELD dev lines, RAVDESS actors 17-18: disjoint from "
                         "report, for choosing things such as the quality gate)")
    ap.add_argument("--workdir", default=None, help="keep the videos and results here (default: a temp folder)")
    ap.add_argument("--out", default=None, help="write the report as JSON")


def run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = Path(args.data)
    if not (root / "fer2013").is_dir() or not (root / "ravdess").is_dir() or not (root / "text").is_dir():
        print(f"error: {root} lacks fer2013/, ravdess/ or text/ (the ../shared/data layout)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rep = run(root, args.per_class, args.seconds, args.conditions, args.seed, work, args.half)
    print(json.dumps(rep, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=1))
    return 0
