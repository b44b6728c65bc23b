"""Train/runtime crop parity: faces placed in camera-like frames and cut by the app's own detector and crop code.

Why: the live path (RetinaFace box -> :func:`umq.perception.face.align.fer_crop`) reproduces FER2013's *mean*
framing, but each detection frames a face a little differently from the FER image it came from, and a face seen
through a camera has been resized, rotated and compressed. The encoder trained only on FER's own 48x48 images
loses points on what the app cuts (docs/face-encoder.md, "Through the app"). This module makes the training set
the app would produce: every face is upscaled to a random size, rotated, lit, placed on a random backdrop,
JPEG-compressed like a video frame, then detected and cropped by exactly the code that runs live.

    python -m umq.training.face.crops --data ../shared/data/fer2013/train.npz --out ~/.cache/umq/face_crops/train.npz

The output has the same layout as its input (``images`` uint8 [N,48,48], ``labels`` + ``classes`` or ``votes``
+ ``vote_names``), plus ``source`` (index of the input image) and ``found`` (False where the detector found no
face; the image is then the original 48x48 face, so rows stay aligned with the input). It is derived from the
training data: keep it out of the repository like the data itself.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)
W, H = 640, 480


@dataclass(frozen=True)
class Placement:
    """How a face is shown to the camera: its side in pixels, roll in degrees, light gain and JPEG quality."""

    side: tuple[int, int] = (64, 300)
    angle: float = 15.0
    gain: tuple[float, float] = (0.45, 1.15)
    jpeg: tuple[int, int] = (55, 95)


def background(rng: np.random.Generator) -> np.ndarray:
    """A smooth coloured texture (a room-like backdrop without faces), 640x480 BGR."""
    low = rng.integers(30, 220, (6, 8, 3)).astype(np.uint8)
    bg = cv2.resize(low, (W, H), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, (H, W, 3))
    return np.clip(bg + noise, 0, 255).astype(np.uint8)


def place(img48: np.ndarray, rng: np.random.Generator, side: tuple[int, int] = (110, 300), angle: float = 10.0
          ) -> np.ndarray:
    """One 640x480 BGR frame: the face upscaled bilinearly to a side in ``side``, rotated within +-``angle``
    degrees, at a random offset on :func:`background`."""
    s = int(rng.uniform(*side))
    face = cv2.resize(img48, (s, s), interpolation=cv2.INTER_LINEAR)
    a = float(rng.uniform(-angle, angle))
    m = cv2.getRotationMatrix2D((s / 2, s / 2), a, 1.0)
    rot = cv2.warpAffine(face, m, (s, s), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpAffine(np.full((s, s), 255, np.uint8), m, (s, s), flags=cv2.INTER_NEAREST) > 0
    frame = background(rng)
    x0, y0 = int(rng.integers(0, W - s)), int(rng.integers(0, H - s))
    roi = frame[y0:y0 + s, x0:x0 + s]
    roi[mask] = cv2.cvtColor(rot, cv2.COLOR_GRAY2BGR)[mask]
    return frame


def camera_frame(img48: np.ndarray, rng: np.random.Generator, p: Placement = Placement()) -> np.ndarray:
    """:func:`place` with the light scaled and the frame passed through JPEG, as a webcam/video frame would be."""
    frame = place(img48, rng, p.side, p.angle).astype(np.float32) * rng.uniform(*p.gain)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*p.jpeg))])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    return decoded if decoded is not None else frame


def _cut(args: tuple[np.ndarray, int, Placement]) -> tuple[np.ndarray, np.ndarray]:
    """Worker: detect + crop every face of a chunk; the original image where nothing is found."""
    from umq.perception.face.align import fer_crop
    from umq.perception.face.detect import RetinaFaceDetector

    images, seed, placement = args
    det = RetinaFaceDetector(threads=1)
    rng = np.random.default_rng(seed)
    out = images.copy()
    found = np.zeros(len(images), bool)
    for i, img in enumerate(images):
        frame = camera_frame(img, rng, placement)
        faces = det(frame, max_faces=4)
        if not faces:
            continue
        best = max(faces, key=lambda d: d.box[2] * d.box[3])
        out[i] = fer_crop(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), best.box)
        found[i] = True
    return out, found


def runtime_crops(images: np.ndarray, seed: int = 0, workers: int = 2, placement: Placement = Placement(),
                  chunk: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """``(crops [N,48,48], found [N])``: each face as the live path would cut it from a camera frame."""
    chunks = [(images[i:i + chunk], seed * 100_003 + i, placement) for i in range(0, len(images), chunk)]
    crops, found = [], []
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for k, (c, f) in enumerate(pool.map(_cut, chunks)):
            crops.append(c)
            found.append(f)
            log.info("%d/%d chunks, %.0f s", k + 1, len(chunks), time.time() - t0)
    return np.concatenate(crops), np.concatenate(found)


def write_crops(data: Path, out: Path, seed: int = 0, workers: int = 2, limit: int = 0,
                placement: Placement = Placement()) -> Path:
    """Cut every face of ``data`` (or the first ``limit``) as the live path would and write them to ``out`` (same
    layout plus ``source`` and ``found``; written to a temporary name first, so an interrupted run leaves none)."""
    with np.load(data, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    n = len(arrays["images"]) if not limit else min(limit, len(arrays["images"]))
    rows = {k: (v[:n] if len(v) == len(arrays["images"]) else v) for k, v in arrays.items()}
    crops, found = runtime_crops(rows["images"][:n], seed, workers, placement)
    rows.update(images=crops, found=found, source=np.arange(n))
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.stem}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **rows)
    tmp.replace(out)
    log.info("%s: %d faces, detector found %d (%.1f %%)", out, n, int(found.sum()), 100 * found.mean())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umq.training.face.crops", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="FER2013-layout or FER+ .npz of 48x48 faces")
    ap.add_argument("--out", required=True, help="where the runtime crops go (.npz, same layout)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="processes, one detector thread each")
    ap.add_argument("--limit", type=int, default=0, help="only the first N faces (0: all)")
    ap.add_argument("--side", type=int, nargs=2, default=list(Placement.side), help="face side range in pixels")
    ap.add_argument("--angle", type=float, default=Placement.angle, help="roll range, +- degrees")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    placement = Placement(side=(args.side[0], args.side[1]), angle=args.angle)
    write_crops(Path(args.data), Path(args.out), args.seed, args.workers, args.limit, placement)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
