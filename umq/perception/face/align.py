"""Crops framed like FER2013 images (:func:`fer_crop`, the live path), landmark alignment, head pose.

Why FER's geometry: the expression encoder and the runtime UMQ's face training vectors (made from FER crops, see
umq/training/runtime/triples.py) both assume a face framed the way FER2013 frames it. ``FER_TEMPLATE`` is where the
RetinaFace landmarks fall inside a 48x48 FER image and ``FER_BOX`` where its box falls: measured by running the
detector on 800 FER2013 *train* images (upscaled 4x, padded; 792 found), means. The live crop (:func:`fer_crop`)
puts the detector box where FER has it; the landmark similarity alignment (:func:`align_face`) measured worse
(docs/face-encoder.md). Either renders 48x48 (a FER image is a downscaled face) and the encoder's usual
preprocessing enlarges it to 64x64 bilinearly, exactly as for FER images in training.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

FER_SIZE = 48
# right eye, left eye, nose, right mouth corner, left mouth corner (subject's sides) in a 48x48 FER image;
# measured means (per-point std ~3.2-5 px: FER framing varies, the template is its centre)
_RAW = np.array([[15.30, 18.30], [32.12, 18.20], [23.49, 28.43], [17.12, 36.47], [30.77, 36.41]], np.float32)


def _symmetric(p: np.ndarray) -> np.ndarray:
    cx = float(p[[0, 1, 3, 4], 0].mean())
    out = p.copy()
    for a, b in ((0, 1), (3, 4)):
        half = (p[b, 0] - p[a, 0]) / 2
        y = (p[a, 1] + p[b, 1]) / 2
        out[a], out[b] = (cx - half, y), (cx + half, y)
    out[2, 0] = cx
    return out


FER_TEMPLATE = _symmetric(_RAW)


def similarity(landmarks: np.ndarray, template: np.ndarray = FER_TEMPLATE) -> np.ndarray:
    """The least-squares similarity transform ``[2, 3]`` taking the five landmarks onto the template (Umeyama)."""
    src = np.asarray(landmarks, np.float64).reshape(5, 2)
    dst = np.asarray(template, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    var = (s0 ** 2).sum()
    if var < 1e-6:
        raise ValueError("degenerate landmarks (all in one point)")
    # complex-number form of the 2-D similarity: d = a * s with a = sum(conj(s) d) / sum(|s|^2)
    sc, dc = s0[:, 0] + 1j * s0[:, 1], d0[:, 0] + 1j * d0[:, 1]
    a = (np.conj(sc) * dc).sum() / var
    m = np.array([[a.real, -a.imag, 0.0], [a.imag, a.real, 0.0]])
    m[:, 2] = md - m[:, :2] @ ms
    return m


def align_face(gray: np.ndarray, landmarks: np.ndarray, size: int = FER_SIZE) -> np.ndarray:
    """A ``size x size`` uint8 crop of ``gray`` framed like a FER2013 image (eyes, nose, mouth on the template).

    A face larger than the crop is first shrunk with area averaging around the face, so the crop is a proper
    downscale (like FER's images) rather than a point-sampled one; borders replicate the frame edge.
    """
    m = similarity(landmarks, FER_TEMPLATE * (size / FER_SIZE))
    scale = math.hypot(m[0, 0], m[1, 0])
    if scale < 0.5:  # downscale the neighbourhood first (area), then warp at about 1:1
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
        H, W = gray.shape[:2]
        x0, y0 = np.floor(corners.min(0)).astype(int) - 2
        x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            f = scale * 1.25  # leave a little resolution for the warp
            roi = gray[y0:y1, x0:x1]
            small = cv2.resize(roi, (max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))),
                               interpolation=cv2.INTER_AREA)
            fx, fy = small.shape[1] / roi.shape[1], small.shape[0] / roi.shape[0]
            # frame point p -> small point ((p - (x0, y0)) * f); compose m with the inverse of that
            back = np.array([[1 / fx, 0, x0], [0, 1 / fy, y0], [0, 0, 1]])
            return cv2.warpAffine(small, m @ back, (size, size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def head_pose(landmarks: np.ndarray) -> tuple[float, float]:
    """``(yaw, roll)`` in degrees, rough, from the five points.

    Roll is the angle of the eye line. Yaw comes from how far the nose sits from the midline of the eyes and mouth,
    relative to the eye distance (in the face's own rotated frame): 0 for a frontal face, about +-0.5 of the eye
    distance in near profile; mapped to degrees with ``asin(2 * offset)`` (a round-head approximation).
    """
    p = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye = p[1] - p[0]
    roll = math.degrees(math.atan2(eye[1], eye[0]))
    d = math.hypot(*eye)
    if d < 1e-6:
        return 90.0, roll
    c, s = eye / d
    rot = np.array([[c, s], [-s, c]])
    q = (p - p[[0, 1, 3, 4]].mean(0)) @ rot.T
    offset = float(q[2, 0]) / d
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, 2.0 * offset))))
    return yaw, roll


# Where the detector's box falls in a 48x48 FER image (x, y, w, h; same 792 train images, means). A FER image is
# therefore the square of side 48/38.27 box widths (48/49.61 heights) around a slightly shifted centre.
FER_BOX = (4.96, -0.37, 38.27, 49.61)


def fer_square(box) -> tuple[float, float, float]:
    """``(cx, cy, side)`` in frame pixels of the FER-framed square for a detector box ``(x, y, w, h)``."""
    x, y, w, h = (float(v) for v in box)
    bx, by, bw, bh = FER_BOX
    side = 0.5 * (w * FER_SIZE / bw + h * FER_SIZE / bh)
    cx = x + w / 2 + (FER_SIZE / 2 - (bx + bw / 2)) * side / FER_SIZE
    cy = y + h / 2 + (FER_SIZE / 2 - (by + bh / 2)) * side / FER_SIZE
    return cx, cy, side


def fer_crop(gray: np.ndarray, box, size: int = FER_SIZE) -> np.ndarray:
    """A ``size x size`` uint8 crop framed like a FER2013 image, from the detector's box (no rotation).

    This is what the live path uses. Measured on FER2013 *train* faces placed in frames, encoder accuracy on the
    crop: this box framing 0.671, the landmark similarity alignment (:func:`align_face`) 0.588, this framing
    plus roll correction 0.653 (the encoder was trained on FER's own, un-rotated framing; the original images
    score 0.711). Large faces are shrunk with area averaging first; borders replicate.
    """
    cx, cy, side = fer_square(box)
    scale = size / max(side, 1e-3)
    H, W = gray.shape[:2]
    if scale < 0.5:  # area-shrink the neighbourhood to about twice the crop size, then warp
        half = side * 0.75
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(W, int(cx + half) + 1), min(H, int(cy + half) + 1)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            f = scale * 2.0
            roi = gray[y0:y1, x0:x1]
            small = cv2.resize(roi, (max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))),
                               interpolation=cv2.INTER_AREA)
            fx, fy = small.shape[1] / roi.shape[1], small.shape[0] / roi.shape[0]
            gray, cx, cy, scale = small, (cx - x0) * fx, (cy - y0) * fy, scale / fx
    m = np.array([[scale, 0.0, size / 2 - scale * cx], [0.0, scale, size / 2 - scale * cy]])
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
