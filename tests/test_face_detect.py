"""RetinaFace detection, FER-geometry alignment, multi-face tracking and bad frames, on real photos."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from streams.packets import VideoFrame
from umq.perception.face.align import FER_BOX, FER_TEMPLATE, align_face, fer_crop, fer_square, head_pose, similarity
from umq.perception.face.cues import FaceCues
from umq.perception.face.detect import RetinaFaceDetector, to_bgr
from umq.perception.face.frontend import FaceFrontEnd
from umq.perception.face.track import MultiFaceTracker


class Frame:
    """A frame as the front-end reads it (``t``, ``index``, ``image``) without VideoFrame's HxWx3 uint8 check:
    the front-end itself must cope with whatever a source hands it."""

    def __init__(self, t: float, image: np.ndarray, index: int) -> None:
        self.t, self.image, self.index = t, image, index


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector(threads=1)


@pytest.fixture(scope="module")
def frontend(detector) -> FaceFrontEnd:
    return FaceFrontEnd(tracker=MultiFaceTracker(detector))


def _face(img: np.ndarray) -> np.ndarray:
    return img[40:200, 150:300]  # the astronaut's head, 150x160


def _crowd(face: np.ndarray, n: int, size=(480, 640), shift: int = 0, hide: int | None = None) -> np.ndarray:
    """``n`` copies of a face on a grey frame, in a row-major grid; copy ``hide`` left out (occluded)."""
    frame = np.full((*size, 3), 90, np.uint8)
    cols = 5 if n > 4 else n
    side = min(size[1] // cols, size[0] // ((n + cols - 1) // cols)) - 16
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    for k in range(n):
        if k == hide:
            continue
        y, x = (k // cols) * (side + 8) + 4, (k % cols) * (side + 8) + 4 + shift
        frame[y:y + side, x:x + side] = small
    return frame


def test_detector_finds_the_face_and_its_landmarks(detector, astronaut):
    dets = detector(astronaut)
    assert len(dets) == 1 and dets[0].score > 0.9
    x, y, w, h = dets[0].box
    assert 160 < x + w / 2 < 260 and 80 < y + h / 2 < 160
    right_eye, left_eye, nose, mouth_r, _ = dets[0].landmarks
    assert right_eye[0] < nose[0] < left_eye[0] and right_eye[1] < nose[1] < mouth_r[1]
    rng = np.random.default_rng(0)
    assert detector(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)) == []


def test_alignment_puts_the_landmarks_on_fer_geometry(detector, astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    for angle in (0, 25):  # a tilted head is rotated upright
        m = cv2.getRotationMatrix2D((256, 256), angle, 1.0)
        img = cv2.warpAffine(gray, m, (512, 512))
        lmk = detector(img)[0].landmarks
        crop = align_face(img, lmk)
        assert crop.shape == (48, 48) and crop.dtype == np.uint8
        t = similarity(lmk)
        mapped = np.c_[lmk, np.ones(5)] @ t.T
        assert np.abs(mapped - FER_TEMPLATE).max() < 3.0, mapped  # eyes, nose, mouth where FER has them
        yaw, roll = head_pose(lmk)
        assert abs(yaw) < 20 and abs(roll - (-angle + 3)) < 8, (yaw, roll)


def test_head_pose_sees_a_turned_head():
    frontal = FER_TEMPLATE.copy()
    turned = frontal.copy()
    turned[2, 0] += 7.0  # nose near the left eye's column: a head turned far to one side
    assert abs(head_pose(frontal)[0]) < 1 and head_pose(turned)[0] > 50
    cues = FaceCues(6, 1.0, 0.3, 0.9, 100.0, 0.5, 0.2, 0.0, seen_ratio=1.0, yaw=70.0)
    assert "face turned away" in cues.describe()


@pytest.mark.parametrize("shape", [(16, 16, 3), (16, 16), (480, 640, 1), (480, 640, 2), (480, 640, 4), (9, 700, 3)])
def test_odd_frames_do_not_crash_and_say_no_face(frontend, shape):
    frontend.reset()
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, shape, dtype=np.uint8)
    feats = frontend([Frame(i * 0.1, img, i) for i in range(3)])
    assert feats.cues.frames == 3 and not feats.mask.any() and feats.cues.describe().startswith("no face in view")


def test_grey_float_and_4k_frames_find_the_face(frontend, astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    big = cv2.resize(astronaut, (3840, 2160), interpolation=cv2.INTER_LINEAR)  # 4K, analysed at 640
    rgba = cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA)
    for img in (gray, gray.astype(np.float32) / 255.0, big, rgba):
        frontend.reset()
        feats = frontend([Frame(0.0, img, 0)])
        assert feats.mask.all(), img.shape
        x, y, w, h = feats.box
        sx = img.shape[1] / 512
        assert 150 * sx < x + w / 2 < 270 * sx  # reported in the frame's own pixels
    assert to_bgr(gray).shape == (512, 512, 3)
    with pytest.raises(ValueError, match="H x W"):
        to_bgr(np.zeros((4, 4, 5), np.uint8))


def test_ten_faces_analyse_at_most_four_with_stable_ids(frontend, astronaut):
    frontend.reset()
    face = _face(astronaut)
    seen = []
    for i in range(4):  # the crowd drifts right a little each frame
        feats = frontend([VideoFrame(i * 0.1, _crowd(face, 10, shift=2 * i), i)])
        assert len(feats.faces) == 4 and all(o.probs is not None for o in feats.faces)  # capped at 4 analysed
        seen.append(sorted(o.track_id for o in feats.faces))
    assert all(ids == seen[0] for ids in seen) and len(set(seen[0])) == 4


def test_track_ids_survive_a_short_occlusion_and_primary_is_the_largest(detector, astronaut):
    fe = FaceFrontEnd(tracker=MultiFaceTracker(detector, detect_every=1))
    face = _face(astronaut)
    frame = np.full((480, 640, 3), 90, np.uint8)

    def scene(hide_small: bool, dx: int = 0) -> np.ndarray:
        f = frame.copy()
        f[60:300, 40 + dx:280 + dx] = cv2.resize(face, (240, 240))
        if not hide_small:
            f[200:320, 420:540] = cv2.resize(face, (120, 120))
        return f

    first = fe([VideoFrame(0.0, scene(False), 0)]).faces
    assert len(first) == 2 and first[0].box[2] > first[1].box[2]  # primary (largest) first
    ids = [o.track_id for o in first]
    fe([VideoFrame(0.1, scene(True, 4), 1)])  # the small face is hidden for a moment
    again = fe([VideoFrame(0.2, scene(False, 8), 2)]).faces
    assert [o.track_id for o in again] == ids


def test_a_face_too_small_to_read_is_not_called_no_face(frontend, astronaut, monkeypatch):
    monkeypatch.setattr("umq.perception.face.frontend.MIN_FACE_PX", 10_000)  # every detected face counts as too small
    frontend.reset()
    feats = frontend([VideoFrame(i * 0.1, astronaut, i) for i in range(3)])
    assert not feats.mask.any() and feats.cues.describe().startswith("face too small")
    assert feats.faces and feats.faces[0].probs is None


def test_fer_crop_framing_survives_a_round_trip_through_a_frame(detector, astronaut):
    """A FER-framed crop, enlarged into a frame and cropped again, comes back with the same framing."""
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    first = fer_crop(gray, detector(gray)[0].box)
    assert first.shape == (48, 48)
    frame = np.full((480, 640), 100, np.uint8)
    frame[100:292, 300:492] = cv2.resize(first, (192, 192), interpolation=cv2.INTER_LINEAR)
    again = fer_crop(frame, detector(frame)[0].box)
    (dx, dy), _ = cv2.phaseCorrelate(first.astype(np.float64), again.astype(np.float64))
    assert abs(dx) < 3 and abs(dy) < 3, (dx, dy)  # same place within a few pixels of 48 (FER's spread: 3-5)
    sharp_first, sharp_again = cv2.Laplacian(first, cv2.CV_64F).var(), cv2.Laplacian(again, cv2.CV_64F).var()
    assert sharp_again > 0.3 * sharp_first  # a proper downscale, not a smear
    cx, cy, side = fer_square(tuple(v * 4 for v in FER_BOX))  # a FER image's own box, 4x: the 192-px image
    assert abs(cx - 96) < 1 and abs(cy - 96) < 1 and abs(side - 192) < 1


def test_large_faces_are_re_detected_on_a_smaller_copy_every_third_time_at_full_size(detector, astronaut):
    """A periodic re-detection of large followed faces runs on a 480-px copy (every third detection at full
    resolution; small faces always at full resolution): the coarse copy finds the same face and keeps the size
    the full-resolution detection measured."""
    from umq.perception.face.track import iou

    sides: list[int | None] = []

    class Counting:
        def __call__(self, bgr, max_faces=16, max_side=None):
            sides.append(max_side)
            return detector(bgr, max_faces=max_faces, max_side=max_side)

    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[100:340, 200:440] = cv2.resize(_face(astronaut), (240, 240))
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    tracker = MultiFaceTracker(Counting(), detect_every=1)  # a detection on every frame exercises the rules
    found = [tracker.update(gray, frame, k / 5) for k in range(6)]
    assert sides == [None, 480, 480, None, 480, 480] and tracker.coarse_detections == 4
    assert all(len(f) == 1 and f[0].track_id == 1 for f in found)
    assert iou(found[0][0].box, found[1][0].box) > 0.85  # the coarse detection re-anchors the same face ...
    assert found[1][0].box[2:] == found[0][0].box[2:]  # ... and keeps the size the full-resolution one measured

    small = np.full((480, 640, 3), 90, np.uint8)  # a face under coarse_min_px: every refresh at full resolution
    small[200:248, 300:348] = cv2.resize(_face(astronaut), (48, 48))
    sides.clear()
    tracker.reset()
    seen = [tracker.update(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), small, k / 5) for k in range(4)]
    assert all(len(f) == 1 for f in seen) and sides == [None] * 4


def test_an_empty_scene_is_searched_every_other_frame_and_a_newcomer_is_found(detector, astronaut):
    """After four searches in a row found nothing, the detector runs on every second analysed frame; a face that
    walks in is found at the next search, and then every frame is handled again."""
    calls: list[int] = []

    class Counting:
        def __call__(self, bgr, max_faces=16, max_side=None):
            calls.append(1)
            return detector(bgr, max_faces=max_faces, max_side=max_side)

    blank = np.full((480, 640, 3), 90, np.uint8)
    tracker = MultiFaceTracker(Counting(), detect_every=1)
    assert all(tracker.update(blank[..., 0], blank, k / 5) == [] for k in range(10))
    assert len(calls) == 4 + 3  # frames 0-3, then 5, 7 and 9
    face = blank.copy()
    face[100:340, 200:440] = cv2.resize(_face(astronaut), (240, 240))
    gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    seen = [tracker.update(gray, face, (10 + k) / 5) for k in range(5)]
    assert seen[0] == [] and all(len(f) == 1 for f in seen[1:])  # frame 10 is not searched, 11 finds the face
    assert len(calls) == 7 + 4  # a face in view: every frame detected again (detect_every=1)
