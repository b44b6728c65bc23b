"""The through-the-app face check: per-face scoring from result windows, and the command end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from umq.labels import EMOTIONS
from umq.training.data import default_data_root
from umq.training.face.appcheck import Faces, place_face, score

ROOT = Path(__file__).resolve().parents[1]
DATA = default_data_root()


def _window(t0: float, video: str | None, fused: str) -> dict:
    one = lambda lab: {e: (1.0 if e == lab else 0.0) for e in EMOTIONS}  # noqa: E731
    pred = {"label": video, "probs": one(video)} if video else None
    return {"t0": t0, "t1": t0 + 2.0, "label": fused, "probs": one(fused),
            "modalities": {"video": {"prediction": pred}}}


def test_score_uses_only_the_windows_inside_each_face():
    faces = Faces(np.zeros((2, 48, 48), np.uint8), np.array([EMOTIONS.index("happy"), EMOTIONS.index("sad")]))
    results = [_window(0.0, "happy", "happy"), _window(0.5, "happy", "happy"),
               _window(1.5, "sad", "sad"),  # straddles both faces: ignored
               _window(2.5, None, "sad"), _window(3.0, "angry", "sad")]
    rep = score(results, faces, seconds=2.5)
    assert rep["windows"] == 4 and rep["no_face_windows"] == 0.25
    assert rep["video_accuracy"] == 0.5 and rep["fused_accuracy"] == 1.0 and rep["faces_without_prediction"] == 0


def test_placed_face_is_a_vga_frame_with_the_face_in_it():
    face = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))
    frame = place_face(face, np.random.default_rng(0))
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert (np.abs(frame[..., 0].astype(int) - frame[..., 1]) == 0).mean() > 0.01  # grey face on a colour backdrop


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.skipif(DATA is None, reason="../shared/data not found (set UMQ_DATA)")
def test_app_face_command_end_to_end(tmp_path):
    out = tmp_path / "rep.json"
    proc = subprocess.run([sys.executable, "-m", "umq.training.evaluate", "app-face", "--data",
                           str(DATA / "fer2013" / "public_test.npz"), "--per-class", "1", "--out", str(out),
                           "--workdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert rep["faces"] == 7 and rep["windows"] >= 7 and 0.0 <= rep["video_accuracy"] <= 1.0
    assert rep["no_face_windows"] < 0.5  # faces filling a good part of the frame are found


def test_item_durations_are_whole_frames_so_items_do_not_drift():
    from umq.training.face.appcheck import whole_frames

    assert whole_frames(2.5, 30) == 2.5
    assert abs(whole_frames(2.5, 15) - 38 / 15) < 1e-12  # 37.5 frames cannot be shown: 38 are
    assert whole_frames(0.001, 15) == 1 / 15
