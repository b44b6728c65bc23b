"""Several faces followed across frames with stable ids: detector every few frames, template tracking between.

The detector (RetinaFace, ~19 ms per 640x480 frame on an idle 2-core CPU, ~5 ms at 320x240) runs on every
``detect_every``-th analysed frame and whenever a track is lost; in between each face is followed by normalised
template matching at a reduced scale (~1 ms), and its landmarks move with its box. A face that disappears keeps
its id for ``keep_s`` seconds, so a hand passing in front of it does not make it a new face.

A periodic re-detection while every followed face is large (``coarse_min_px``) runs on a copy at most
``coarse_side`` pixels wide, which costs about half as much: a 64-px face is 43 px there, well above the
detector's smallest anchors. Every ``full_every``-th detection is at full resolution, so a small newcomer is
still found within a few seconds, and a coarse detection moves a face's box but keeps the size the last
full-resolution one measured (the FER-framed crop is sensitive to a few per cent of size). Once ``empty_after``
searches in a row found no face, an empty scene is searched on every other analysed frame (a face that walks in
is found one frame later; a face the detector finds only now and then never gets that far).
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
        coarse_side, coarse_min_px, full_every: periodic re-detections run at most ``coarse_side`` wide while every
            followed face is at least ``coarse_min_px`` high (work-image pixels), except every ``full_every``-th
            detection (``coarse_side=0``: always full resolution).
        empty_after: consecutive searches without a face after which an empty scene is searched every other frame.
    """

    def __init__(self, detector: RetinaFaceDetector | None = None, detect_every: int = 3, max_faces: int = 4,
                 keep_s: float = 1.5, track_score: float = 0.6, match_iou: float = 0.3, coarse_side: int = 480,
                 coarse_min_px: float = 64.0, full_every: int = 3, empty_after: int = 4) -> None:
        self.detector = detector or RetinaFaceDetector()
        self.detect_every, self.max_faces, self.keep_s = detect_every, max_faces, keep_s
        self.track_score, self.match_iou = track_score, match_iou
        self.coarse_side, self.coarse_min_px, self.full_every = coarse_side, coarse_min_px, max(1, full_every)
        self.empty_after = max(1, empty_after)
        self._misses = 0  # consecutive searches that found no face
        self._skipped = False  # the last analysed frame of an empty scene was not searched
        self._tracks: dict[int, _Track] = {}
        self._ids = itertools.count(1)
        self._since_detect = 0
        self._since_full = 0  # detections since the last full-resolution one
        self.detections = 0  # detector runs (for benchmarks)
        self.coarse_detections = 0  # of which at reduced resolution

    def reset(self) -> None:
        """A new session: no tracks, and ids start again at 1 (so a replayed session gets the same ids)."""
        self._tracks.clear()
        self._ids = itertools.count(1)
        self._since_detect = self._since_full = self._misses = 0
        self._skipped = False

    def update(self, gray: np.ndarray, bgr: np.ndarray, t: float) -> list[TrackedFace]:
        for tid in [k for k, tr in self._tracks.items() if t - tr.last_t > self.keep_s or t < tr.last_t - 5.0]:
            del self._tracks[tid]  # expired, or time went backwards (a new session)
        visible = [tid for tid, tr in self._tracks.items() if tr.last_t >= 0 and tr.template is not None]
        faces: list[TrackedFace] | None = None
        periodic = bool(visible) and self._since_detect >= self.detect_every - 1
        if visible and not periodic:
            faces = self._follow(gray, t, visible)
            self._since_detect += 1
        if faces is None:
            if not visible and self._misses >= self.empty_after and not self._skipped:
                self._skipped = True  # an empty scene (several searches found nothing): search every other frame
                return []
            self._skipped = False
            # only a periodic refresh of large faces goes coarse; a face the templates lost gets the full frame
            coarse = (periodic and self.coarse_side > 0 and self._since_full < self.full_every - 1
                      and min(self._tracks[tid].face.box[3] for tid in visible) >= self.coarse_min_px)
            faces = self._detect(gray, bgr, t, coarse)
            self._since_detect = 0
            self._since_full = self._since_full + 1 if coarse else 0
            self._misses = 0 if faces else self._misses + 1
        faces.sort(key=lambda f: -f.box[2] * f.box[3])
        return faces

    # -- detection: match to tracks by IoU, new ids for the rest -------------------------------------------------
    def _detect(self, gray: np.ndarray, bgr: np.ndarray, t: float, coarse: bool = False) -> list[TrackedFace]:
        self.detections += 1
        self.coarse_detections += int(coarse)
        dets: list[Detection] = self.detector(bgr, max_faces=16, max_side=self.coarse_side if coarse else None)
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
            box, landmarks = d.box, d.landmarks
            if coarse and i in assign:
                # a coarse box is as good as a template's for where the face is, but its size jitters by ~5 %,
                # and the FER-framed crop is sensitive to that: keep the size the last full-size detection gave
                old = self._tracks[tid].face
                dx = d.box[0] + d.box[2] / 2 - (old.box[0] + old.box[2] / 2)
                dy = d.box[1] + d.box[3] / 2 - (old.box[1] + old.box[3] / 2)
                box = (old.box[0] + dx, old.box[1] + dy, old.box[2], old.box[3])
                landmarks = old.landmarks + np.float32([dx, dy])
            face = TrackedFace(tid, box, d.score, landmarks, True, age)
            self._tracks[tid] = _Track(face, _template(gray, box), t)
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
