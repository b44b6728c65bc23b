"""Train/runtime crop parity: a face placed in a camera-like frame and cut by the live detector + crop code comes
back framed like the FER image it came from; a frame without a face keeps the original row."""
from __future__ import annotations

import cv2
import numpy as np
from skimage import data

from umq.perception.face.align import fer_crop
from umq.perception.face.detect import RetinaFaceDetector
from umq.training.face.crops import Placement, camera_frame, runtime_crops


def _fer_like_astronaut() -> np.ndarray:
    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    det = RetinaFaceDetector(threads=1)(bgr)[0]
    return fer_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), det.box)


def test_camera_frame_is_a_dimmed_compressed_vga_frame():
    face = _fer_like_astronaut()
    frame = camera_frame(face, np.random.default_rng(0), Placement(gain=(0.5, 0.5)))
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert frame.mean() < 0.6 * 128  # the light gain was applied


def test_runtime_crop_reproduces_the_fer_framing_and_keeps_rows_aligned():
    face = _fer_like_astronaut()
    blank = np.full((48, 48), 128, np.uint8)  # nothing to detect
    crops, found = runtime_crops(np.stack([face, blank]), seed=3, workers=1,
                                 placement=Placement(side=(150, 200), angle=0.0, gain=(1.0, 1.0), jpeg=(90, 91)))
    assert crops.shape == (2, 48, 48) and crops.dtype == np.uint8
    assert found.tolist() == [True, False]
    assert np.array_equal(crops[1], blank)  # not found: the original row stays
    r = np.corrcoef(crops[0].ravel().astype(float), face.ravel().astype(float))[0, 1]
    assert r > 0.85, r  # the same face, framed the same way (a shifted or rescaled crop correlates far less)
    shifted = np.roll(face, 8, axis=1)
    assert np.corrcoef(shifted.ravel().astype(float), face.ravel().astype(float))[0, 1] < r


def test_training_adds_only_found_crops_of_training_rows_with_their_labels(tmp_path):
    from umq.training.face.train import add_runtime_crops

    X = np.arange(6, dtype=np.uint8)[:, None, None] * np.ones((1, 48, 48), np.uint8)
    Y = np.array([0, 1, 2, 3, 4, 5])
    tr_idx = np.array([0, 2, 3, 5])  # rows 1 and 4 held out
    crops = X + 100
    np.savez(tmp_path / "c.npz", images=crops, found=np.array([True, True, False, True, True, True]),
             source=np.arange(6))
    Xa, Ya, Ta = add_runtime_crops(tmp_path / "c.npz", tr_idx, X[tr_idx], Y[tr_idx], None, None)
    assert Ta is None and len(Xa) == 4 + 3  # rows 0, 3, 5: found and in training (2 not found; 1, 4 held out)
    assert Xa[4:, 0, 0].tolist() == [100, 103, 105] and Ya[4:].tolist() == [0, 3, 5]
