"""Per-frame and per-window measurements of how usable the face signal is.

The quality estimator learns quality from the representations themselves; these cues are what the dashboard
shows a person ("too dark", "blurred", "no face in view") and what the runtime model gets as side information.
"No face in view" is a different state from "no video": the camera works, but there is nothing to read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

# thresholds behind describe(); chosen on the demo session and the cue tests (see docs/perception.md)
DARK_BRIGHTNESS = 0.18  # mean grey level of the face (or frame) in [0, 1]
BLUR_SHARPNESS = 30.0  # variance of the Laplacian on a 64x64 face crop (frame centre without a face)
LOW_CONTRAST = 0.06  # grey-level standard deviation in [0, 1]
SMALL_FACE = 0.12  # face box height / frame height
FAST_MOTION = 0.12  # mean absolute frame difference in [0, 1]
FACE_SEEN = 0.5  # fraction of sampled frames with a face, below which the face is "not in view"
MIN_FACE_PX = 20  # a detected face shorter than this (work-image pixels, <= 640 wide) is not analysed: too small
TURNED_YAW = 50.0  # |yaw| in degrees (from the five landmarks) above which the face is "turned away"


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian on the crop resized to 64x64, so the number does not depend on the crop size."""
    if gray.size == 0:
        return 0.0
    g = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(g, cv2.CV_32F).var())


@dataclass(frozen=True)
class FrameCues:
    """Measurements of one frame. Brightness, contrast and sharpness are taken on the face when there is one."""

    face_found: bool
    box_size: float  # face height / frame height (0 without a face)
    stability: float  # IoU of the face box with the previous frame's (0 when either has no face)
    sharpness: float
    brightness: float
    contrast: float
    motion: float
    seen: bool = False  # a face was detected, usable or not (too small faces are seen but not analysed)
    yaw: float = 0.0  # degrees, from the landmarks (0 without a face)
    roll: float = 0.0


@dataclass(frozen=True)
class FaceCues:
    """Window summary of :class:`FrameCues` (medians, so one odd frame does not decide).

    Attributes:
        frames: frames analysed in the window (0 when there was no video).
        face_ratio: fraction of those frames with a face that was analysed.
        seen_ratio: fraction with a detected face, analysed or not (too small): tells "face too small" from
            "no face in view".
        yaw, roll: median absolute head yaw / roll in degrees over the frames with a face (not part of
            :meth:`vector`: the runtime model's face input is unchanged).
    """

    frames: int
    face_ratio: float
    box_size: float
    stability: float
    sharpness: float
    brightness: float
    contrast: float
    motion: float
    seen_ratio: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"FaceCues.{f.name} must be finite and >= 0, got {v}")
        if self.face_ratio > 1.0 or self.stability > 1.0 or self.seen_ratio > 1.0:
            raise ValueError("face_ratio and stability are fractions in [0, 1]")

    @classmethod
    def from_frames(cls, cues: list[FrameCues]) -> FaceCues:
        if not cues:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        with_face = [c for c in cues if c.face_found] or cues

        def med(name: str, pool: list[FrameCues]) -> float:
            return float(np.median([getattr(c, name) for c in pool]))

        return cls(
            frames=len(cues),
            face_ratio=sum(c.face_found for c in cues) / len(cues),
            box_size=med("box_size", with_face) if with_face is not cues else 0.0,
            stability=med("stability", cues),
            sharpness=med("sharpness", with_face),
            brightness=med("brightness", with_face),
            contrast=med("contrast", with_face),
            motion=float(np.mean([c.motion for c in cues])),
            seen_ratio=sum(c.seen or c.face_found for c in cues) / len(cues),
            yaw=float(np.median([abs(c.yaw) for c in with_face])) if with_face is not cues else 0.0,
            roll=float(np.median([abs(c.roll) for c in with_face])) if with_face is not cues else 0.0,
        )

    def vector(self) -> np.ndarray:
        """Fixed-order, roughly unit-scaled features for the model's side input."""
        return np.array([self.face_ratio, self.box_size, self.stability, min(self.sharpness / 200.0, 2.0),
                         self.brightness, self.contrast * 4.0, min(self.motion * 5.0, 2.0)], np.float32)

    def problems(self) -> list[str]:
        """What is wrong with the face signal, most important first; empty when it looks usable."""
        if self.frames == 0:
            return ["no video"]
        out = []
        if self.face_ratio < FACE_SEEN:
            out.append("face too small" if self.seen_ratio >= FACE_SEEN else "no face in view")
        if self.brightness < DARK_BRIGHTNESS:
            out.append("too dark")
        if self.sharpness < BLUR_SHARPNESS:
            out.append("blurred")
        if self.contrast < LOW_CONTRAST and "too dark" not in out:
            out.append("low contrast")
        if self.face_ratio >= FACE_SEEN and self.box_size < SMALL_FACE:
            out.append("face too small")
        if self.face_ratio >= FACE_SEEN and self.yaw > TURNED_YAW:
            out.append("face turned away")
        if self.motion > FAST_MOTION:
            out.append("moving fast")
        return out

    def describe(self) -> str:
        """A short reason for the dashboard, e.g. ``"too dark, blurred"``; empty when nothing is wrong."""
        return ", ".join(self.problems()[:2])
