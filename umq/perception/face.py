"""Face front-end: find the face cheaply, crop it the way the encoder was trained, embed it on the model's device.

Cheap by construction: the Haar cascade runs on a downscaled copy of the frame and only every few frames (or
when the track is lost); in between, the face is followed by normalised template matching in a small search
region. Frames appear in several overlapping windows (2 s windows, 0.5 s hop), so each frame is analysed once and
its result cached by frame number.
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from streams.packets import FrameDecodeError
from umq.device import to_device

from .face_cues import FaceCues, FrameCues, sharpness
from .face_net import FaceExpressionNet, crop_face, load_face_net, preprocess_batch

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels

_CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"


def iou(a: Box | None, b: Box | None) -> float:
    if a is None or b is None:
        return 0.0
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Haar detection on a downscaled frame every ``detect_every`` frames, template tracking in between.

    Args:
        detect_width: frames are shrunk to this width for detection (a 640x480 frame: 4x fewer pixels at 320).
        detect_every: run the detector at least this often even while tracking (re-anchors a drifting track).
        min_face: smallest face, as a fraction of the frame height, the detector looks for.
        track_score: normalised cross-correlation below which a track is considered lost.
    """

    def __init__(self, detect_width: int = 320, detect_every: int = 4, min_face: float = 0.1,
                 track_score: float = 0.55) -> None:
        self.detector = cv2.CascadeClassifier(_CASCADE)
        if self.detector.empty():
            raise RuntimeError(f"OpenCV Haar cascade missing or unreadable: {_CASCADE}; "
                               "reinstall opencv-python-headless==4.14.0.94")
        self.detect_width, self.detect_every = detect_width, detect_every
        self.min_face, self.track_score = min_face, track_score
        self.box: Box | None = None
        self._template: np.ndarray | None = None
        self._since_detect = 0

    def reset(self) -> None:
        self.box, self._template, self._since_detect = None, None, 0

    def update(self, gray: np.ndarray) -> Box | None:
        """The face box in this frame (largest face), or None."""
        if self.box is not None and self._since_detect < self.detect_every:
            tracked = self._track(gray)
            if tracked is not None:
                self._since_detect += 1
                self._set(gray, tracked)
                return tracked
        found = self._detect(gray)
        self._since_detect = 0
        if found is None:
            self.reset()
            return None
        self._set(gray, found)
        return found

    def _set(self, gray: np.ndarray, box: Box) -> None:
        x, y, w, h = box
        self.box = box
        self._template = gray[y:y + h, x:x + w].copy()

    def _detect(self, gray: np.ndarray) -> Box | None:
        h, w = gray.shape
        scale = min(1.0, self.detect_width / w)
        small = cv2.resize(gray, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else gray
        if small.mean() < 80:  # dim light: stretch contrast for the detector only (it adds false hits otherwise)
            small = cv2.equalizeHist(small)
        min_side = max(20, int(self.min_face * small.shape[0]))
        faces, votes = self.detector.detectMultiScale2(small, scaleFactor=1.1, minNeighbors=5,
                                                       minSize=(min_side, min_side))
        if len(faces) == 0:
            return None
        # the most strongly supported detection (neighbour votes), ties to the larger face
        best = max(range(len(faces)), key=lambda i: (int(votes[i]), faces[i][2] * faces[i][3]))
        x, y, bw, bh = faces[best]
        return int(x / scale), int(y / scale), int(bw / scale), int(bh / scale)

    def _track(self, gray: np.ndarray) -> Box | None:
        x, y, w, h = self.box
        H, W = gray.shape
        pad_x, pad_y = w // 2, h // 2
        x0, y0 = max(0, x - pad_x), max(0, y - pad_y)
        x1, y1 = min(W, x + w + pad_x), min(H, y + h + pad_y)
        region = gray[y0:y1, x0:x1]
        if self._template is None or region.shape[0] < h or region.shape[1] < w:
            return None
        res = cv2.matchTemplate(region, self._template, cv2.TM_CCOEFF_NORMED)
        _, score, _, loc = cv2.minMaxLoc(res)
        if score < self.track_score:
            return None
        return x0 + loc[0], y0 + loc[1], w, h


@dataclass(frozen=True)
class FrameAnalysis:
    """One frame's face result, cached by frame number."""

    box: Box | None
    cues: FrameCues
    embedding: torch.Tensor | None  # [E] on the model's device
    probs: torch.Tensor | None  # [7] on the model's device


@dataclass(frozen=True)
class FaceFeatures:
    """What the face front-end hands to the model for one window.

    Attributes:
        embeddings: ``[K, E]`` on the model's device, one row per sampled frame (zeros where no face).
        mask: ``[K]`` bool, True where a face was found.
        probs: ``[K, 7]`` the face encoder's own class probabilities (zeros where no face).
        cues: the window's :class:`FaceCues`.
        box: the newest frame's face box, for the preview overlay.
    """

    embeddings: torch.Tensor
    mask: torch.Tensor
    probs: torch.Tensor
    cues: FaceCues
    box: Box | None


class FaceFrontEnd:
    """Frames of a window -> :class:`FaceFeatures`.

    Args:
        net: the face expression encoder (default: the shipped weights, loaded on first use).
        device: where embeddings live (the model's device).
        frames_per_window: frames sampled evenly from each window (the newest always included).
        cache_frames: how many per-frame results to keep (bounded memory).
    """

    def __init__(self, net: FaceExpressionNet | None = None, device: str | torch.device = "cpu",
                 frames_per_window: int = 6, cache_frames: int = 256, tracker: FaceTracker | None = None) -> None:
        self.device = torch.device(device)
        self._net = net
        self.frames_per_window = frames_per_window
        self.tracker = tracker or FaceTracker()
        self._cache: collections.OrderedDict[tuple[int, float], FrameAnalysis | None] = collections.OrderedDict()
        self._cache_size = cache_frames
        self._prev_gray_small: np.ndarray | None = None
        self._prev_box: Box | None = None

    @property
    def net(self) -> FaceExpressionNet:
        if self._net is None:
            self._net = load_face_net(device=self.device)
        return self._net

    @property
    def embedding_dim(self) -> int:
        return int(self.net.embedding_dim)

    def clear_cache(self) -> None:
        """Forget cached frame analyses (e.g. the frames are now corrupted differently), keep tracking."""
        self._cache.clear()

    def reset(self) -> None:
        """Forget tracking state and cached frames (a new session)."""
        self._cache.clear()
        self.tracker.reset()
        self._prev_gray_small, self._prev_box = None, None

    @staticmethod
    def sample(frames: Sequence, k: int, grid_s: float = 1 / 3) -> list:
        """Up to ``k`` frames: the newest, plus the frames nearest to points of a fixed session-time grid
        (every ``grid_s`` seconds) going back from it.

        A fixed grid means overlapping windows pick the same frames, so the per-frame cache answers most of them:
        with a 0.5 s hop only the newest frame and one or two grid frames are new in each window.
        """
        if len(frames) <= k:
            return list(frames)
        times = np.array([f.t for f in frames])
        chosen = {len(frames) - 1}
        g = np.floor(times[-1] / grid_s) * grid_s
        while len(chosen) < k and g >= times[0] - grid_s / 2:
            i = int(np.abs(times - g).argmin())
            chosen.add(i)
            g -= grid_s
        return [frames[i] for i in sorted(chosen)]

    @torch.inference_mode()
    def __call__(self, frames: Sequence) -> FaceFeatures:
        chosen = self.sample(frames, self.frames_per_window)
        pending = [f for f in chosen if (f.index, f.t) not in self._cache]
        self._analyse(pending)
        results = [self._cache[(f.index, f.t)] for f in chosen]
        return self._features([r for r in results if r is not None])  # None: a frame that did not decode

    def _analyse(self, frames: Sequence) -> None:
        crops, owners = [], []
        for f in frames:  # in time order: tracking and motion need the previous frame
            try:
                image = f.image  # a replayed frame is decoded here, on first use
            except FrameDecodeError as exc:
                log.warning("%s; left out of the face analysis", exc)
                self._store(f, None)  # remembered, so overlapping windows do not retry (and warn) again
                continue
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            box = self.tracker.update(gray)
            small = cv2.resize(gray, (80, 60), interpolation=cv2.INTER_AREA)
            motion = (float(np.mean(cv2.absdiff(small, self._prev_gray_small))) / 255.0
                      if self._prev_gray_small is not None else 0.0)
            self._prev_gray_small = small
            region = gray[box[1]:box[1] + box[3], box[0]:box[0] + box[2]] if box else gray
            cues = FrameCues(
                face_found=box is not None,
                box_size=(box[3] / gray.shape[0]) if box else 0.0,
                stability=iou(box, self._prev_box),
                sharpness=sharpness(region),
                brightness=float(region.mean()) / 255.0,
                contrast=float(region.std()) / 255.0,
                motion=motion,
            )
            self._prev_box = box
            if box is not None:
                crops.append(crop_face(gray, box))
                owners.append((f, box, cues))
            else:
                self._store(f, FrameAnalysis(None, cues, None, None))
        if crops:
            x = to_device(preprocess_batch(crops, self.net.input_size), self.device)
            logits, emb = self.net(x)
            probs = logits.softmax(-1)
            for i, (f, box, cues) in enumerate(owners):
                self._store(f, FrameAnalysis(box, cues, emb[i], probs[i]))

    def _store(self, frame, analysis: FrameAnalysis | None) -> None:
        self._cache[(frame.index, frame.t)] = analysis
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _features(self, results: list[FrameAnalysis]) -> FaceFeatures:
        k, e = len(results), self.embedding_dim
        emb = torch.zeros(max(k, 1), e, device=self.device)
        probs = torch.zeros(max(k, 1), 7, device=self.device)
        mask = torch.zeros(max(k, 1), dtype=torch.bool, device=self.device)
        rows = [i for i, r in enumerate(results) if r.embedding is not None]
        if rows:
            emb[rows] = torch.stack([results[i].embedding for i in rows])
            probs[rows] = torch.stack([results[i].probs for i in rows])
            mask[rows] = True
        return FaceFeatures(emb, mask, probs, FaceCues.from_frames([r.cues for r in results]),
                            results[-1].box if results else None)
