"""Detector benchmark (not a test): recall of RetinaFace vs the Haar cascade on faces in 640x480 frames at several
sizes, tilts and light levels, time per detection, and the face stage's time per window.

    python -m umq.training.face.bench --data ../shared/data/fer2013/train.npz --faces 12
    python -m umq.training.face.bench --stage assets/demo_session --windows 60

Faces are FER2013 *train* images (not a validation split) upscaled to the face size plus the astronaut photo.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time

import cv2
import numpy as np


def _scene(face: np.ndarray, side: int, angle: float, gain: float, rng: np.random.Generator):
    """A grey 640x480 frame with the face pasted; returns (BGR frame, face centre)."""
    frame = np.clip(cv2.GaussianBlur(rng.integers(40, 200, (480, 640), dtype=np.uint8), (0, 0), 25)
                    .astype(np.float32), 0, 255).astype(np.uint8)
    f = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR)
    m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    f = cv2.warpAffine(f, m, (side, side), borderMode=cv2.BORDER_REPLICATE)
    x0, y0 = int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side))
    frame[y0:y0 + side, x0:x0 + side] = f
    frame = np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), (x0 + side / 2, y0 + side / 2)


def _haar(bgr: np.ndarray):
    cascade = _haar.c = getattr(_haar, "c", None) or cv2.CascadeClassifier(
        cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if gray.mean() < 80:
        gray = cv2.equalizeHist(gray)
    return [tuple(map(float, b)) for b in cascade.detectMultiScale(gray, 1.1, 5, minSize=(20, 20))]


def recall(faces: list[np.ndarray], seed: int = 0) -> dict:
    from umq.perception.face.detect import RetinaFaceDetector

    det = RetinaFaceDetector(threads=1)
    rng = np.random.default_rng(seed)
    out: dict = {}
    times = {"retinaface": [], "haar": []}
    for side, angle, gain in itertools.product((40, 80, 160, 320), (0, 20, 35), (1.0, 0.35)):
        hits = {"retinaface": 0, "haar": 0}
        for face in faces:
            bgr, (cx, cy) = _scene(face, side, angle, gain, rng)
            for name, fn in (("retinaface", lambda im: [d.box for d in det(im)]), ("haar", _haar)):
                t = time.perf_counter()
                boxes = fn(bgr)
                times[name].append((time.perf_counter() - t) * 1000)
                hits[name] += any(abs(x + w / 2 - cx) < side / 3 and abs(y + h / 2 - cy) < side / 3
                                  for x, y, w, h in boxes)
        out[f"{side}px/{angle}deg/x{gain}"] = {k: v / len(faces) for k, v in hits.items()}
    summary = {k: float(np.mean([v[k] for v in out.values()])) for k in ("retinaface", "haar")}
    return {"conditions": out, "mean_recall": summary,
            "ms_per_frame_p50": {k: float(np.median(v)) for k, v in times.items()}}


def stage(video: str, windows: int, threads: int = 2) -> dict:
    """The face front-end's time per window (ms) on a replayed video or session, as the app runs it."""
    import torch

    from streams.replay import Replay
    from umq.perception.face.frontend import FaceFrontEnd

    torch.set_num_threads(threads)
    fe = FaceFrontEnd()
    _ = fe.net  # load before timing
    times = []
    for k, w in enumerate(Replay(video, speed=None).windows()):
        if k >= windows:
            break
        t = time.perf_counter()
        fe(w.video.frames)
        times.append((time.perf_counter() - t) * 1000)
    t = np.array(times[1:])
    return {"windows": len(t), "p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)),
            "detections": fe.tracker.detections, "threads": threads}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="FER2013-layout .npz to take faces from (detector recall)")
    ap.add_argument("--faces", type=int, default=12)
    ap.add_argument("--stage", metavar="VIDEO", help="instead: time the face stage per window on this video/session")
    ap.add_argument("--windows", type=int, default=60)
    args = ap.parse_args(argv)
    if args.stage:
        print(json.dumps(stage(args.stage, args.windows), indent=1))
        return 0
    if not args.data:
        ap.error("--data or --stage is required")
    from skimage import data

    with np.load(args.data) as d:
        imgs = d["images"]
    rng = np.random.default_rng(1)
    faces = [imgs[i] for i in rng.choice(len(imgs), args.faces - 1, replace=False)]
    faces.append(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[30:230, 130:320])
    print(json.dumps(recall(faces), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
