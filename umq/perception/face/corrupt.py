"""Raw-image corruptions for the quality ladder and the dashboard's quality lab.

Same contract as :mod:`umq.perception.voice.corrupt` and :mod:`umq.perception.text.corrupt`:
``corrupt(image, kind, severity, rng)`` returns a corrupted copy, severity 0 is harmless and 1 the worst, and
higher severities are monotonically worse. Images are uint8, grayscale ``[H, W]`` or BGR ``[H, W, 3]``.

Frame-level failures (dropped frames, camera off) are not image corruptions: they change which frames reach
the window, so the quality lab applies them to the frame list (:func:`drop_frames`).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CORRUPTIONS = ("blur", "dark", "occlude", "noise", "lowres")


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def blur(img: np.ndarray, severity: float) -> np.ndarray:
    """Gaussian blur; sigma grows to 6 % of the image's short side (at 48 px: 2.9 px; at 240 px: 14 px)."""
    sigma = max(0.05 * min(img.shape[:2]) * severity, 1e-3)
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)


def dark(img: np.ndarray, severity: float, rng=None) -> np.ndarray:
    """Underexposure: brightness scaled down to 3 % with a gamma lift and sensor noise, as a dim webcam gives."""
    r = _rng(rng)
    x = img.astype(np.float32) / 255.0
    scale = 1.0 - 0.97 * severity
    x = np.power(x, 1.0 + severity) * scale
    x = x + r.normal(0.0, 0.012 * severity, x.shape).astype(np.float32)
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def occlude(img: np.ndarray, severity: float, rng=None) -> np.ndarray:
    """A dark block covering ``severity * 70 %`` of the image area (a hand or a mug in front of the face)."""
    r = _rng(rng)
    h, w = img.shape[:2]
    area = 0.7 * severity * h * w
    if area < 1:
        return img.copy()
    bh = int(min(h, max(1, round(np.sqrt(area * h / w)))))
    bw = int(min(w, max(1, round(area / bh))))
    y0 = int(r.integers(0, h - bh + 1))
    x0 = int(r.integers(0, w - bw + 1))
    out = img.copy()
    out[y0:y0 + bh, x0:x0 + bw] = int(r.integers(0, 60))
    return out


def noise(img: np.ndarray, severity: float, rng=None) -> np.ndarray:
    """Gaussian sensor noise, standard deviation up to 80 grey levels."""
    r = _rng(rng)
    x = img.astype(np.float32) + r.normal(0.0, 80.0 * severity, img.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def lowres(img: np.ndarray, severity: float) -> np.ndarray:
    """Down- and up-sampling to as little as 1/8 of the size (a far-away or low-resolution camera)."""
    h, w = img.shape[:2]
    f = 1.0 / (1.0 + 7.0 * severity)
    small = cv2.resize(img, (max(2, int(w * f)), max(2, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def corrupt(img: np.ndarray, kind: str, severity: float, rng=None) -> np.ndarray:
    """Apply ``kind`` (one of :data:`CORRUPTIONS`) at ``severity`` in [0, 1]; never modifies ``img``."""
    s = float(np.clip(severity, 0.0, 1.0))
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown image corruption {kind!r}; expected one of {CORRUPTIONS}")
    if s == 0.0:
        return img.copy()
    if kind == "blur":
        return blur(img, s)
    if kind == "dark":
        return dark(img, s, rng)
    if kind == "occlude":
        return occlude(img, s, rng)
    if kind == "noise":
        return noise(img, s, rng)
    return lowres(img, s)


def drop_frames(frames: Sequence, rate: float, rng=None) -> list:
    """Keep each frame with probability ``1 - rate`` (the newest is dropped too: a real drop has no favourites)."""
    r = _rng(rng)
    if rate <= 0:
        return list(frames)
    return [f for f in frames if r.random() >= rate]
