"""Several faces followed across frames with stable ids: detector every few frames, template tracking between.

The detector (RetinaFace, ~13 ms per 640x480 frame on 2 threads) runs on every ``detect_every``-th analysed frame
and whenever a track is lost; in between each face is followed by normalised template matching at a reduced scale
(~1 ms), and its landmarks move with its box. A face that disappears keeps its id for ``keep_s`` seconds, so a
hand passing in front of it does not make it a new face.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import cv2
import numpy as np

from umq.perception.face.detect import Detection, RetinaFaceDetector

BoxF = tuple[float, float, float, float]


def iou(a: BoxF | None, b: BoxF | None) -> float:
    if a is None or b is None:
        return 0.0
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(frozen=True)
class TrackedFace:
    """One face in one frame (work-image pixels)."""

    track_id: int
    box: BoxF
    score: float
    landmarks: np.ndarray  # [5, 2]
    detected: bool  # found by the detector in this frame (False: followed by template matching)
    age: int  # frames this track has been seen


@dataclass
class _Track:
    face: TrackedFace
    template: np.ndarray | None
    last_t: float


class MultiFaceTracker:
    """Frame (grey + BGR work image) -> the faces in it, largest first, at most ``max_faces``.

    Args:
        detector: the face detector (default RetinaFace on 2 threads).
        detect_every: run the detector at least every this many analysed frames.
        max_faces: faces tracked (and later analysed) per frame; more are ignored, largest kept.
        keep_s: a lost face keeps its id this long (frame time).
        track_score: template-match correlation below which a face counts as lost until the next detection.
        match_iou: a detection continues a track when their boxes overlap at least this much.
    """

    def __init__(self, detector: RetinaFaceDetector | None = None, detect_every: int = 3, max_faces: int = 4,
                 keep_s: float = 1.5, track_score: float = 0.6, match_iou: float = 0.3) -> None:
        self.detector = detector or RetinaFaceDetector()
        self.detect_every, self.max_faces, self.keep_s = detect_every, max_faces, keep_s
        self.track_score, self.match_iou = track_score, match_iou
        self._tracks: dict[int, _Track] = {}
        self._ids = itertools.count(1)
        self._since_detect = 0
        self.detections = 0  # detector runs (for benchmarks)

    def reset(self) -> None:
        """A new session: no tracks, and ids start again at 1 (so a replayed session gets the same ids)."""
        self._tracks.clear()
        self._ids = itertools.count(1)
        self._since_detect = 0

    def update(self, gray: np.ndarray, bgr: np.ndarray, t: float) -> list[TrackedFace]:
        for tid in [k for k, tr in self._tracks.items() if t - tr.last_t > self.keep_s or t < tr.last_t - 5.0]:
            del self._tracks[tid]  # expired, or time went backwards (a new session)
        visible = [tid for tid, tr in self._tracks.items() if tr.last_t >= 0 and tr.template is not None]
        faces: list[TrackedFace] | None = None
        if visible and self._since_detect < self.detect_every - 1:
            faces = self._follow(gray, t, visible)
            self._since_detect += 1
        if faces is None:
            faces = self._detect(gray, bgr, t)
            self._since_detect = 0
        faces.sort(key=lambda f: -f.box[2] * f.box[3])
        return faces

    # -- detection: match to tracks by IoU, new ids for the rest -------------------------------------------------
    def _detect(self, gray: np.ndarray, bgr: np.ndarray, t: float) -> list[TrackedFace]:
        self.detections += 1
        dets: list[Detection] = self.detector(bgr, max_faces=16)
        pairs = sorted(((iou(d.box, tr.face.box), i, tid) for i, d in enumerate(dets)
                        for tid, tr in self._tracks.items()), reverse=True)
        used_d, used_t, assign = set(), set(), {}
        for o, i, tid in pairs:
            if o < self.match_iou:
                break
            if i not in used_d and tid not in used_t:
                used_d.add(i)
                used_t.add(tid)
                assign[i] = tid
        # at most max_faces: faces already followed first (so a crowd does not reshuffle ids), then the largest
        order = sorted(range(len(dets)), key=lambda i: (i not in assign, -dets[i].box[2] * dets[i].box[3]))
        out = []
        for i in order[:self.max_faces]:
            d = dets[i]
            tid = assign.get(i)
            age = self._tracks[tid].face.age + 1 if tid is not None else 1
            if tid is None:
                tid = next(self._ids)
            face = TrackedFace(tid, d.box, d.score, d.landmarks, True, age)
            self._tracks[tid] = _Track(face, _template(gray, d.box), t)
            out.append(face)
        kept = {f.track_id for f in out}
        for tid, tr in self._tracks.items():  # not seen now: stays in memory, but is not followed by templates
            if tid not in kept:
                tr.template = None
        return out

    # -- between detections: template matching at a reduced scale ----------------------------------------------
    def _follow(self, gray: np.ndarray, t: float, tids: list[int]) -> list[TrackedFace] | None:
        out = []
        H, W = gray.shape[:2]
        for tid in tids:
            tr = self._tracks[tid]
            x, y, w, h = tr.face.box
            f = min(1.0, 48.0 / max(w, h, 1.0))
            x0, y0 = int(max(0, x - w / 2)), int(max(0, y - h / 2))
            x1, y1 = int(min(W, x + 1.5 * w)), int(min(H, y + 1.5 * h))
            region = gray[y0:y1, x0:x1]
            tmpl = tr.template
            rw, rh = max(1, round(region.shape[1] * f)), max(1, round(region.shape[0] * f))
            if tmpl is None or rh < tmpl.shape[0] or rw < tmpl.shape[1]:
                return None  # a face at the border or lost: ask the detector
            res = cv2.matchTemplate(cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA), tmpl,
                                    cv2.TM_CCOEFF_NORMED)
            _, score, _, loc = cv2.minMaxLoc(res)
            if not np.isfinite(score) or score < self.track_score:
                return None  # lost: detect now (the others are re-found by the detector too)
            nx, ny = x0 + loc[0] / f, y0 + loc[1] / f
            dx, dy = nx - x, ny - y
            face = replace(tr.face, box=(nx, ny, w, h), landmarks=tr.face.landmarks + np.float32([dx, dy]),
                           detected=False, age=tr.face.age + 1)
            tr.face, tr.last_t = face, t
            out.append(face)
        return out


def _template(gray: np.ndarray, box: BoxF) -> np.ndarray | None:
    """The face patch at the tracking scale (longest side 48 px), or None when it leaves the frame."""
    x, y, w, h = box
    H, W = gray.shape[:2]
    x0, y0, x1, y1 = int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H or x1 - x0 < 4 or y1 - y0 < 4:
        return None
    f = min(1.0, 48.0 / max(w, h))
    patch = gray[y0:y1, x0:x1]
    size = (max(1, round(patch.shape[1] * f)), max(1, round(patch.shape[0] * f)))
    return cv2.resize(patch, size, interpolation=cv2.INTER_AREA) if f < 1.0 else patch.copy()
