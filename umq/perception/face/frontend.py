"""Face front-end: find every face, follow it, crop it the way the encoder was trained, embed it on the model's device.

Detection is RetinaFace with five landmarks (:mod:`.face_detect`), run every few analysed frames; faces are
followed in between by template matching and keep stable track ids (:mod:`.face_track`). Each face is aligned onto
FER2013's crop geometry from its detector box (:mod:`.face_align`), so the encoder sees at run time what it saw
in training. Frames larger than 640 px are analysed on a 640 px copy (boxes are reported in frame pixels). At most
``max_faces`` faces are analysed per frame (largest first). The primary face — the one that drives fusion — is the
current one while it stays at least half as large as the largest face, otherwise the largest. Frames appear in
several overlapping windows (2 s windows, 0.5 s hop), so each frame is analysed once and cached by frame number.
"""
from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from streams.packets import FrameDecodeError
from umq.device import to_device
from umq.perception.face.align import fer_crop, head_pose
from umq.perception.face.cues import MIN_FACE_PX, FaceCues, FrameCues, sharpness
from umq.perception.face.detect import to_bgr
from umq.perception.face.net import FaceExpressionNet, load_face_net, preprocess_batch
from umq.perception.face.track import MultiFaceTracker, iou

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels
WORK_SIDE = 640  # frames are analysed with their longest side at most this

__all__ = ["Box", "FaceFeatures", "FaceFrontEnd", "FaceObservation", "FaceTracker", "FrameAnalysis", "iou"]
FaceTracker = MultiFaceTracker  # the name callers (bench) use


@dataclass(frozen=True)
class FaceObservation:
    """One face in one analysed frame (frame pixels)."""

    track_id: int
    box: Box
    score: float
    embedding: torch.Tensor | None  # [E] on the model's device; None when the face was too small to analyse
    probs: torch.Tensor | None  # [7]


@dataclass(frozen=True)
class FrameAnalysis:
    """One frame's face result, cached by frame number; ``faces`` largest first, ``primary`` indexes it."""

    faces: tuple[FaceObservation, ...]
    primary: int | None
    cues: FrameCues

    @property
    def main(self) -> FaceObservation | None:
        return self.faces[self.primary] if self.primary is not None else None


@dataclass(frozen=True)
class FaceFeatures:
    """What the face front-end hands to the model for one window.

    Attributes:
        embeddings: ``[K, E]`` on the model's device, one row per sampled frame (zeros where no face): the
            primary face's.
        mask: ``[K]`` bool, True where the primary face was analysed.
        probs: ``[K, 7]`` the face encoder's own class probabilities (zeros where no face).
        cues: the window's :class:`FaceCues` (of the primary face).
        box: the newest frame's primary face box, for the preview overlay.
        faces: every face of the newest analysed frame, the primary first.
    """

    embeddings: torch.Tensor
    mask: torch.Tensor
    probs: torch.Tensor
    cues: FaceCues
    box: Box | None
    faces: tuple[FaceObservation, ...] = ()


class FaceFrontEnd:
    """Frames of a window -> :class:`FaceFeatures`.

    Args:
        net: the face expression encoder (default: the shipped weights, loaded on first use).
        device: where embeddings live (the model's device).
        frames_per_window: frames sampled evenly from each window (the newest always included).
        cache_frames: how many per-frame results to keep (bounded memory).
        tracker: the face tracker (default: RetinaFace every 3rd analysed frame, at most 4 faces).
        batch: one face-net call for all of a window's new faces (True) or one call per frame (the naive
            reference path ``python -m app bench`` compares against).
        reuse: keep per-frame results (and tracks) between windows (True), or start every window afresh.
    """

    def __init__(self, net: FaceExpressionNet | None = None, device: str | torch.device = "cpu",
                 frames_per_window: int = 6, cache_frames: int = 256, tracker: MultiFaceTracker | None = None,
                 batch: bool = True, reuse: bool = True) -> None:
        self.batch, self.reuse = batch, reuse
        self.device = torch.device(device)
        self._net = net
        self.frames_per_window = frames_per_window
        self.tracker = tracker or MultiFaceTracker()
        self._cache: collections.OrderedDict[tuple[int, float], FrameAnalysis | None] = collections.OrderedDict()
        self._cache_size = cache_frames
        self._prev_gray_small: np.ndarray | None = None
        self._prev_boxes: dict[int, Box] = {}
        self._primary_id: int | None = None

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
        self._prev_gray_small, self._prev_boxes, self._primary_id = None, {}, None

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
        if not self.reuse:
            self.reset()
        pending = [f for f in chosen if (f.index, f.t) not in self._cache]
        for group in ([pending] if self.batch else [[f] for f in pending]):
            self._analyse(group)
        results = [self._cache[(f.index, f.t)] for f in chosen]
        return self._features([r for r in results if r is not None])  # None: a frame that did not decode

    # -- per frame ---------------------------------------------------------------------------------------------
    def _analyse(self, frames: Sequence) -> None:
        crops: list[np.ndarray] = []
        pending: list[tuple] = []  # (frame, faces as (track_id, box, score, crop index or None), primary, cues)
        for f in frames:  # in time order: tracking and motion need the previous frame
            try:
                bgr = to_bgr(f.image)  # a replayed frame is decoded here, on first use
            except (FrameDecodeError, ValueError) as exc:
                log.warning("%s; left out of the face analysis", exc)
                self._store(f, None)  # remembered, so overlapping windows do not retry (and warn) again
                continue
            H0, W0 = bgr.shape[:2]
            s = min(1.0, WORK_SIDE / max(H0, W0))
            if s < 1.0:
                bgr = cv2.resize(bgr, (max(1, round(W0 * s)), max(1, round(H0 * s))), interpolation=cv2.INTER_AREA)
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            tracked = self.tracker.update(gray, bgr, float(f.t))
            faces, primary = [], None
            for tf in tracked:
                box = _frame_box(tf.box, s, W0, H0)
                usable = tf.box[3] >= MIN_FACE_PX
                if usable:
                    crops.append(fer_crop(gray, tf.box))
                faces.append((tf.track_id, box, tf.score, len(crops) - 1 if usable else None, tf))
            primary = self._choose_primary(faces)
            cues = self._cues(gray, faces[primary] if primary is not None else None, bool(faces))
            pending.append((f, faces, primary, cues))
        out = (None, None)
        if crops:
            x = to_device(preprocess_batch(crops, self.net.input_size), self.device)
            logits, emb = self.net(x)
            out = (emb, logits.softmax(-1))
        for f, faces, primary, cues in pending:
            obs = tuple(FaceObservation(tid, box, score, out[0][k] if k is not None else None,
                                        out[1][k] if k is not None else None) for tid, box, score, k, _ in faces)
            self._store(f, FrameAnalysis(obs, primary, cues))

    def _choose_primary(self, faces: list) -> int | None:
        """Index of the primary face: the current one while it is at least half the largest, else the largest
        analysable face (ties to the longer-tracked)."""
        usable = [i for i, fc in enumerate(faces) if fc[3] is not None]
        pool = usable or list(range(len(faces)))
        if not pool:
            self._primary_id = None
            return None
        area = {i: faces[i][1][2] * faces[i][1][3] for i in pool}
        best = max(pool, key=lambda i: (area[i], faces[i][4].age))
        cur = next((i for i in pool if faces[i][0] == self._primary_id), None)
        choice = cur if cur is not None and area[cur] >= 0.5 * area[best] else best
        self._primary_id = faces[choice][0]
        return choice

    def _cues(self, gray: np.ndarray, face, seen: bool) -> FrameCues:
        small = cv2.resize(gray, (80, 60), interpolation=cv2.INTER_AREA)
        motion = (float(np.mean(cv2.absdiff(small, self._prev_gray_small))) / 255.0
                  if self._prev_gray_small is not None else 0.0)
        self._prev_gray_small = small
        if face is None:
            self._prev_boxes = {}
            mean, std = _mean_std(gray)
            return FrameCues(False, 0.0, 0.0, sharpness(gray), mean / 255.0, std / 255.0, motion, seen=seen)
        tid, box, _score, k, tf = face
        x, y, w, h = (int(round(v)) for v in tf.box)
        H, W = gray.shape[:2]
        region = gray[max(0, y):min(H, y + h), max(0, x):min(W, x + w)]
        region = region if region.size else gray
        stability = iou(self._prev_boxes.get(tid), box)
        self._prev_boxes = {tid: box}
        yaw, roll = head_pose(tf.landmarks)
        mean, std = _mean_std(region)
        return FrameCues(face_found=k is not None, box_size=tf.box[3] / H if k is not None else 0.0,
                         stability=stability if k is not None else 0.0, sharpness=sharpness(region),
                         brightness=mean / 255.0, contrast=std / 255.0,
                         motion=motion, seen=True, yaw=yaw, roll=roll)

    def _store(self, frame, analysis: FrameAnalysis | None) -> None:
        self._cache[(frame.index, frame.t)] = analysis
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # -- per window ----------------------------------------------------------------------------------------------
    def _features(self, results: list[FrameAnalysis]) -> FaceFeatures:
        k, e = len(results), self.embedding_dim
        emb = torch.zeros(max(k, 1), e, device=self.device)
        probs = torch.zeros(max(k, 1), 7, device=self.device)
        mask = torch.zeros(max(k, 1), dtype=torch.bool, device=self.device)
        newest = results[-1] if results else None
        # the window follows the newest frame's primary face; frames where it is absent use their own primary
        want = newest.main.track_id if newest is not None and newest.main is not None else None
        rows, chosen = [], []
        for i, r in enumerate(results):
            ob = next((o for o in r.faces if o.track_id == want), None) or r.main
            if ob is not None and ob.embedding is not None:
                rows.append(i)
                chosen.append(ob)
        if rows:
            emb[rows] = torch.stack([o.embedding for o in chosen])
            probs[rows] = torch.stack([o.probs for o in chosen])
            mask[rows] = True
        faces: tuple[FaceObservation, ...] = ()
        if newest is not None and newest.faces:
            p = newest.primary if newest.primary is not None else 0
            faces = (newest.faces[p],) + tuple(o for j, o in enumerate(newest.faces) if j != p)
        box = newest.main.box if newest is not None and newest.main is not None else None
        return FaceFeatures(emb, mask, probs, FaceCues.from_frames([r.cues for r in results]), box, faces)


def _mean_std(gray: np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation of a grey image: numpy's values within 1e-12, in one C pass
    (``gray.std()`` on a 640x480 frame costs ~1 ms, several per window)."""
    m, s = cv2.meanStdDev(gray)
    return float(m[0, 0]), float(s[0, 0])


def _frame_box(box, s: float, W: int, H: int) -> Box:
    """A work-image box in frame pixels, clipped to the frame."""
    x, y, w, h = (v / s for v in box)
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(W, int(round(x + w))), min(H, int(round(y + h)))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)
