"""Through-the-app face check: validation faces placed in video frames, replayed by the app, scored per face.

Why: the encoder's own accuracy on 48x48 crops says nothing about the detector -> crop -> encoder path the app
runs on camera frames. This builds a video from held-out faces (FER2013 PublicTest or FER+ valid: each face
upscaled to a random size, rotated a little, placed at a random offset on a textured background in 640x480
frames, shown ``--seconds`` each, silent audio, no transcript), plays it with
``python -m app replay VIDEO --headless --out r.jsonl`` and scores every face from the windows that lie inside its
interval: the video modality's own prediction (``modalities["video"].prediction``) and the fused label, against
the encoder alone on the same 48x48 faces (the runtime path: no flip test-time augmentation).

    python -m umq.evaluate app-face --data ../shared/data/fer2013/public_test.npz --per-class 20
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umq.labels import EMOTIONS
from umq.training.face.crops import H, W, place

log = logging.getLogger(__name__)
FPS = 30


@dataclass(frozen=True)
class Faces:
    images: np.ndarray  # [N, 48, 48] uint8
    labels: np.ndarray  # [N] app label index


def load_faces(path: str | Path, per_class: int, seed: int = 0) -> Faces:
    """A class-balanced sample of FER2013-layout faces (``labels``/``classes``) or FER+ faces (``votes``: majority
    vote, ties and non-emotion majorities left out)."""
    from umq.training.face.evaluate import read_labelled_faces

    images, y = read_labelled_faces(path)
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(len(EMOTIONS))]))
    keep = rng.permutation(keep)  # classes interleaved in the video
    return Faces(images[keep], y[keep])


def place_face(img48: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One 640x480 BGR frame: the face upscaled to 110-300 px, rotated +-10 degrees, at a random offset."""
    return place(img48, rng, side=(110, 300), angle=10.0)


def make_video(faces: Faces, out: Path, seconds: float, seed: int) -> None:
    """Write the faces as an H.264 mp4 with a silent mono audio track (ffmpeg)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{W}x{H}",
           "-r", str(FPS), "-i", "-", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-shortest",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for img in faces.images:
        frame = place_face(img, rng).tobytes()
        for _ in range(n):
            proc.stdin.write(frame)
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed writing {out}")


def encoder_accuracy(faces: Faces) -> tuple[float, np.ndarray]:
    """The encoder alone on the 48x48 faces, as the runtime calls it (no flip TTA)."""
    import torch

    from umq.perception.face.net import load_face_net, preprocess_batch

    net = load_face_net()
    with torch.inference_mode():
        pred = net(preprocess_batch(faces.images, net.input_size))[0].argmax(-1).numpy()
    return float((pred == faces.labels).mean()), pred


def score(results: list[dict], faces: Faces, seconds: float, margin: float = 0.1) -> dict:
    """Per face: windows inside ``[i*seconds, (i+1)*seconds]``; mean of the video prediction's and of the fused
    probabilities over them -> label. A face with no window whose video prediction exists counts as wrong."""
    n = len(faces.labels)
    vid_ok, fused_ok, no_face, windows, missed = 0, 0, 0, 0, 0
    for i in range(n):
        t0, t1 = i * seconds - margin, (i + 1) * seconds + margin
        inside = [r for r in results if r["t0"] >= t0 and r["t1"] <= t1]
        windows += len(inside)
        vp = [r["modalities"]["video"]["prediction"]["probs"] for r in inside
              if r["modalities"]["video"].get("prediction")]
        no_face += len(inside) - len(vp)
        fp = [r["probs"] for r in inside if r.get("label")]
        if vp:
            vid_ok += EMOTIONS[int(np.mean([[p[e] for e in EMOTIONS] for p in vp], 0).argmax())] == \
                EMOTIONS[faces.labels[i]]
        else:
            missed += 1
        if fp:
            fused_ok += EMOTIONS[int(np.mean([[p[e] for e in EMOTIONS] for p in fp], 0).argmax())] == \
                EMOTIONS[faces.labels[i]]
    return {"faces": n, "windows": windows, "video_accuracy": vid_ok / n, "fused_accuracy": fused_ok / n,
            "no_face_windows": no_face / max(windows, 1), "faces_without_prediction": missed}


def whole_frames(seconds: float, fps: int) -> float:
    """``seconds`` rounded to whole frames: each item is shown for ``round(seconds * fps)`` frames, so the scorer
    must use that duration, or items drift against their intervals (2.5 s at 15 fps is 38 frames, 2.533 s)."""
    return max(1, round(seconds * fps)) / fps


def run(data: str, per_class: int, seconds: float, seed: int, workdir: Path, keep: bool = False) -> dict:
    seconds = whole_frames(seconds, FPS)
    faces = load_faces(data, per_class, seed)
    video, out = workdir / "app_face.mp4", workdir / "app_face.jsonl"
    log.info("writing %d faces (%.1f s each) to %s", len(faces.labels), seconds, video)
    make_video(faces, video, seconds, seed)
    enc, _ = encoder_accuracy(faces)
    log.info("replaying %s headless", video)
    subprocess.run([sys.executable, "-m", "app", "replay", str(video), "--headless", "--out", str(out)], check=True)
    results = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    rep = {"data": Path(data).name, "per_class": per_class, "seconds": seconds, "seed": seed,
           "encoder_accuracy": enc, **score(results, faces, seconds)}
    if not keep:
        video.unlink(missing_ok=True)
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umq.evaluate app-face", description=__doc__.split("\n")[0])
    add_arguments(ap)
    return run_cli(ap.parse_args(argv))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", required=True, help="FER2013-layout .npz (labels, classes) or FER+ .npz (votes)")
    ap.add_argument("--per-class", type=int, default=20, help="faces per class (balanced)")
    ap.add_argument("--seconds", type=float, default=2.5, help="how long each face is shown")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where the video and results go (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the video")
    ap.add_argument("--out", default=None, help="write the report as JSON")


def run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not Path(args.data).exists():
        print(f"error: {args.data} does not exist", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rep = run(args.data, args.per_class, args.seconds, args.seed, work, keep=args.keep)
    print(json.dumps(rep, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
