"""Voice encoder evaluation across corpora and through the app.

``python -m umq.evaluate voice-multi --data DATA``: the encoder through the live front-end
(:class:`~umq.perception.voice.frontend.VoiceFrontEnd`)
on RAVDESS actors 17-20 (7 classes, calm = neutral) and every clip
of URDU and TurEV-DB (4 classes each: the argmax over the corpus's own classes). Each clip is the central 2 s
window (shorter clips sit in digital silence, as a short utterance does inside a live window). Normaliser modes:
``prior`` (fixed training prior) or ``running`` (one session per speaker, clips in a seeded random order, each
updating the state before it is scored, as live). The log-mel CRNN has no calm output: for TurEV its neutral
logit stands for calm. ``--snr clean,10,0,-5,-10`` repeats it with white noise at each SNR over the window (a
steady noise floor under speech: soft speech under a room's floor sits well below 0 dB).

``python -m umq.evaluate voice-adapt --data DATA``: the running speaker normaliser on RAVDESS actors 17-20: accuracy
on half of each actor's clips after it heard 0-60 s of that actor's speech (the other half), and two actors
taking turns clip by clip with one shared state, a reset at every change, one state per speaker, or the prior.

``python -m umq.evaluate app-voice --data DATA --actors 17-20``: the through-the-app check. RAVDESS clips of the
given actors are concatenated (0.5 s of silence between) into a video with black 320x240 frames and no
transcript (ffmpeg), replayed with ``python -m app replay VIDEO --headless --out r.jsonl``, and each clip is
scored by the mean of the fused probabilities of the result windows lying inside it (7 classes, calm = neutral),
and by the mean of the voice encoder's own probabilities in those windows (the result's
``modalities.audio.prediction``), which does not depend on the fusion model.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from umq.labels import EMOTIONS
from umq.metrics import classification_report
from umq.perception.voice.corrupt import corrupt, white_noise
from umq.perception.voice.ensemble import logits8 as voice_logits8
from umq.perception.voice.ensemble import predict as predict_voice
from umq.perception.voice.frontend import VoiceFrontEnd, collate_views
from umq.perception.voice.net import VoiceEmotionNet, load_voice_net
from umq.training.data.voice_corpora import CALM, CORPUS_CLASSES, VOICE_LABELS, VoiceClip, load_extra, load_ravdess
from umq.training.voice.cache import place
from umq.training.voice.clips import center_crop, read_audio, read_labels, session_order

log = logging.getLogger(__name__)
GAP_S = 0.5


def parse_range(s: str) -> set[int]:
    out: set[int] = set()
    for part in s.split(","):
        a, _, b = part.partition("-")
        out |= set(range(int(a), int(b or a) + 1))
    return out


def clip_logits(net, feats) -> torch.Tensor:
    """8 logits (Ekman-7 + calm) for one window; the CRNN's calm logit is its neutral logit."""
    with torch.inference_mode():
        return voice_logits8(net, collate_views([feats]))[0][0].float().cpu()


def score(corpus: str, logits8: torch.Tensor, label: int) -> tuple[int, int]:
    """(truth, prediction) in the corpus's scoring space."""
    if corpus == "ravdess":
        l7 = torch.cat([torch.logsumexp(logits8[[0, CALM]], 0, keepdim=True), logits8[1:CALM]])
        return (0 if label == CALM else label), int(l7.argmax())
    allowed = torch.tensor([n in CORPUS_CLASSES[corpus] for n in VOICE_LABELS])
    return label, int(logits8.masked_fill(~allowed, -1e4).argmax())


def evaluate_corpus(net, clips: list[VoiceClip], normalize: bool, device, seed: int = 0,
                    snr_db: float | None = None) -> dict:
    """Accuracy on ``clips`` (central 2 s windows), one speaker session per speaker. ``snr_db``: white noise at
    that SNR over each window (seeded per call), the way a steady noise floor meets one stretch of speech."""
    by_spk: dict[str, list[VoiceClip]] = {}
    for c in clips:
        by_spk.setdefault(c.speaker, []).append(c)
    y, p = [], []
    rng = np.random.default_rng(seed)
    for _, group in sorted(by_spk.items()):
        fe = VoiceFrontEnd(net.feature_stats, device=device, normalize=normalize)
        for c in session_order(group, seed):
            x = place(read_audio(c.audio), None)
            if snr_db is not None:
                x = white_noise(x, snr_db, rng)
            t, q = score(c.corpus, clip_logits(net, fe(x)), c.label)
            y.append(t)
            p.append(q)
    y, p = np.asarray(y), np.asarray(p)
    classes = sorted(set(y.tolist()))
    recall = {VOICE_LABELS[k]: round(float((p[y == k] == k).mean()), 3) for k in classes}
    return {"n": len(y), "accuracy": round(float((y == p).mean()), 4), "per_class_recall": recall}


def voice_multi(args) -> dict:
    torch.set_num_threads(1)
    dev = torch.device(args.device or "cpu")
    net = load_voice_net(args.checkpoint, device=dev).eval()
    sets = {"ravdess": load_ravdess(args.data, parse_range(args.actors)), **{
        c: load_extra(args.data, (c,)) for c in ("urdu", "turev")}}
    keep = args.corpora.split(",")
    snrs = [None if v == "clean" else float(v) for v in args.snr.split(",")]
    out = {}
    for snr in snrs:
        tag = "" if snr is None else f"/{snr:g}dB"
        for mode in args.modes.split(","):
            for name, clips in ((k, v) for k, v in sets.items() if k in keep):
                r = evaluate_corpus(net, clips, mode == "running", dev, snr_db=snr)
                out[f"{name}/{mode}{tag}"] = r
                print(f"{name:8s} {mode:8s} {tag[1:] or 'clean':7s} n={r['n']:5d} accuracy {r['accuracy']:.3f}  "
                      f"{r['per_class_recall']}")
    return out


# ------------------------------------------------------------------------------------- speaker adaptation
def _pred(net, fe, x, label, update=True) -> bool:
    t, q = score("ravdess", clip_logits(net, fe(place(x, None), update=update)), label)
    return t == q


def voice_adapt(args) -> dict:
    """How much speech the running normaliser needs, and what a speaker change does to it (RAVDESS actors)."""
    torch.set_num_threads(1)
    net = load_voice_net(args.checkpoint, device="cpu").eval()
    clips = load_ravdess(args.data, parse_range(args.actors))
    audio = {c.audio: read_audio(c.audio) for c in clips}
    by = {}
    for c in clips:
        by.setdefault(c.actor, []).append(c)
    out: dict = {"enrolment": {}, "turns": {}}
    for budget in (0, 10, 30, 60):  # seconds of VAD speech heard before scoring
        ok = []
        for _, group in sorted(by.items()):
            order = session_order(group, 1)
            enrol, test = order[: len(order) // 2], order[len(order) // 2:]
            fe = VoiceFrontEnd(net.feature_stats, device="cpu", normalize=True)
            frame_s = 0.02 if fe.normalizer.stats.whisper else 0.01  # its own frames (an ensemble's first member)
            for c in enrol:
                if fe.normalizer.voiced_frames * frame_s >= budget:
                    break
                fe(place(audio[c.audio], None))
            ok += [_pred(net, fe, audio[c.audio], c.label, update=False) for c in test]
        out["enrolment"][budget] = round(float(np.mean(ok)), 4)
        print(f"enrolled with {budget:3d} s of speech: accuracy {np.mean(ok):.3f} (n={len(ok)})")
    actors = sorted(by)
    pairs = [(actors[i], actors[i + 1]) for i in range(0, len(actors) - 1, 2)]
    for mode in ("prior", "shared", "reset", "per-speaker"):
        ok = []
        for a, b in pairs:
            turns = [c for pair in zip(session_order(by[a], 2), session_order(by[b], 2)) for c in pair]
            fes = {k: VoiceFrontEnd(net.feature_stats, device="cpu", normalize=mode != "prior") for k in (a, b)}
            prev = None
            for c in turns:
                fe = fes[c.actor] if mode == "per-speaker" else fes[a]
                if mode == "reset" and prev is not None and prev != c.actor:
                    fe.reset()
                ok.append(_pred(net, fe, audio[c.audio], c.label))
                prev = c.actor
        out["turns"][mode] = round(float(np.mean(ok)), 4)
        print(f"two speakers taking turns, normaliser {mode:12s}: accuracy {np.mean(ok):.3f} (n={len(ok)})")
    return out


# ------------------------------------------------------------------------------------------ through the app
def build_video(clips: list[VoiceClip], path: Path) -> list[tuple[float, float, VoiceClip]]:
    """Concatenate the clips (0.5 s silence between) under black frames; returns each clip's time span."""
    import soundfile as sf

    parts, spans, t = [], [], 0.0
    gap = np.zeros(int(GAP_S * 16000), np.float32)
    for c in clips:
        x = read_audio(c.audio)
        spans.append((t, t + len(x) / 16000, c))
        parts += [x, gap]
        t += (len(x) + len(gap)) / 16000
    wav = path.with_suffix(".wav")
    sf.write(wav, np.concatenate(parts), 16000)
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=black:s=320x240:r=15",
                    "-i", str(wav), "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                    "-b:a", "128k", str(path)], check=True)
    wav.unlink()
    return spans


def app_voice(args) -> dict:
    clips = sorted(load_ravdess(args.data, parse_range(args.actors)), key=lambda c: str(c.audio))
    if args.limit:
        clips = [clips[i] for i in np.random.default_rng(0).permutation(len(clips))[: args.limit]]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="umq-app-voice-"))
    work.mkdir(parents=True, exist_ok=True)
    video, res = work / "voice.mp4", work / "r.jsonl"
    spans = build_video(clips, video)
    env = dict(os.environ)
    if args.checkpoint:
        env["UMQ_VOICE_WEIGHTS"] = str(Path(args.checkpoint).resolve())
    subprocess.run([sys.executable, "-m", "app", "replay", str(video), "--headless", "--out", str(res)],
                   check=True, env=env)
    rows = [json.loads(line) for line in res.read_text().splitlines() if line.strip()]
    y, p, pv, empty = [], [], [], 0
    for a, b, c in spans:
        inside = [r for r in rows if r["t0"] >= a - 0.05 and r["t1"] <= b + 0.05]
        if not inside:  # clips shorter than a window: the windows overlapping it most
            inside = [r for r in rows if min(r["t1"], b) - max(r["t0"], a) >= 0.5 * (b - a)]
        if not inside:
            empty += 1
            continue
        probs = np.mean([[r["probs"].get(e, 0.0) for e in EMOTIONS] for r in inside], 0)
        y.append(0 if c.label == CALM else c.label)
        p.append(int(np.argmax(probs)))
        enc = [[pred["probs"][e] for e in EMOTIONS] for r in inside
               if (pred := ((r.get("modalities") or {}).get("audio") or {}).get("prediction"))]
        pv.append(int(np.argmax(np.mean(enc, 0))) if enc else -1)
    y, p, pv = np.asarray(y), np.asarray(p), np.asarray(pv)
    out = {"n": len(y), "accuracy": round(float((y == p).mean()), 4), "clips_without_window": empty,
           "windows": len(rows), "video": str(video),
           # the voice encoder's own probabilities in the same windows (independent of fusion); a clip whose
           # windows carry none (all "mic silent", say) counts as wrong
           "voice_encoder_accuracy": round(float((y == pv).mean()), 4),
           "clips_without_voice_prediction": int((pv < 0).sum())}
    print(json.dumps(out))
    return out


def evaluate_audio_folder(data_dir: str | Path, net: VoiceEmotionNet, device: torch.device | str | None = None,
                          actors: Iterable[int] | None = None, mode: str = "crop", normalize: bool = True,
                          enrol: bool = False, seed: int = 0, corruption: tuple[str, float] | None = None,
                          progress: bool = False) -> dict:
    """Score ``net`` on a folder of labelled clips (``DIR/labels.csv``: ``clip_id, emotion, audio`` [, ``actor``]).

    Each clip is read, sanitised and passed through a :class:`VoiceFrontEnd` exactly as the live app would:
    ``mode="crop"`` scores the central 2.0 s window (the app's window; shorter clips are zero-padded and
    masked), ``mode="clip"`` the whole clip in one pass.

    With ``normalize`` the running speaker normaliser is used, one session per ``actor``: the actor's clips are
    met in :func:`session_order` (seeded shuffle) and each clip updates the state before it is scored, so a
    speaker's first clips see little adaptation (what the live app does). ``enrol=True`` instead lets the
    normaliser first listen to all of the actor's clips, then scores them with that state frozen (a speaker
    enrolled for ~3 minutes; an upper bound for long sessions). Without an ``actor`` column every clip is its
    own session. ``normalize=False`` uses the fixed training prior.

    ``corruption=(kind, severity)`` degrades every clip first with :func:`~umq.perception.voice.corrupt.corrupt`
    (seeded per clip; babble is synthetic), for robustness curves.

    Returns ``dict(n, accuracy, macro_f1, weighted_f1, per_class_recall, confusion, skipped)`` plus ``mode``,
    ``normalize``, ``enrol``, ``corruption`` and ``unreadable`` (clips that could not be read, also counted in
    ``skipped``).
    """
    if mode not in ("crop", "clip"):
        raise ValueError("mode is 'crop' or 'clip'")
    device = torch.device(device) if device is not None else next(net.parameters()).device
    rows, skipped = read_labels(data_dir, actors)
    net = net.to(device).eval()
    groups: dict[object, list[dict]] = {}
    for r in rows:
        key = r["actor"] if r["actor"] is not None else r["clip_id"]
        groups.setdefault(key, []).append(r)
    y_true, y_pred, unreadable = [], [], 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc="audio eval")
    for group in groups.values():
        fe = VoiceFrontEnd(net.feature_stats, device=device, normalize=normalize)
        windows = []
        for r in session_order(group, seed):
            try:
                x = read_audio(r["audio"])
            except Exception:
                unreadable += 1
                continue
            xs, v = center_crop(x) if mode == "crop" else (x, None)
            if corruption is not None:
                kind, severity = corruption
                rng = np.random.default_rng([seed, len(y_true) + len(windows), 7])
                xs, v2 = corrupt(xs, kind, severity, rng)
                v = v2 if v is None else (v & v2)
            windows.append((r, (xs, v)))
        if enrol and normalize:
            for _, (xs, v) in windows:
                fe(xs, v)
        for r, (xs, v) in windows:
            feats = fe(xs, v, update=not enrol)
            probs, _ = predict_voice(net, collate_views([feats]))
            y_true.append(r["label"])
            y_pred.append(int(probs.argmax(-1).item()))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    out = classification_report(y_true, y_pred)
    out.update(skipped=skipped + unreadable, unreadable=unreadable, mode=mode, normalize=normalize,
               enrol=bool(enrol and normalize), corruption=list(corruption) if corruption else None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umq.evaluate", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("voice-multi", "app-voice", "voice-adapt"):
        e = sub.add_parser(name)
        e.add_argument("--data", type=Path, default=Path(os.environ.get("UMQ_DATA", "../shared/data")),
                       help="the shared data folder (ravdess/, voice_extra/)")
        e.add_argument("--actors", default="17-20", help="RAVDESS actors (default: the validation actors 17-20)")
        e.add_argument("--checkpoint", default=None, help="voice weights (default: assets/voice/voice_net.pt)")
        e.add_argument("--out", default=None, help="write the results as JSON")
    sub.choices["voice-multi"].add_argument("--modes", default="prior,running")
    sub.choices["voice-multi"].add_argument("--device", default=None)
    sub.choices["voice-multi"].add_argument("--corpora", default="ravdess,urdu,turev")
    sub.choices["voice-multi"].add_argument(
        "--snr", default="clean", help="comma-separated: clean and/or white-noise SNRs in dB over each window, "
        "e.g. clean,10,5,0,-5,-10 (a noise-floor ladder)")
    sub.choices["app-voice"].add_argument("--limit", type=int, default=0, help="score a seeded subset of clips")
    sub.choices["app-voice"].add_argument("--workdir", default=None, help="keep the video and r.jsonl here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        rep = {"voice-multi": voice_multi, "app-voice": app_voice, "voice-adapt": voice_adapt}[args.command](args)
    except (FileNotFoundError, ValueError, subprocess.CalledProcessError) as e:
        print(f"error: {args.command} failed: {e}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())


