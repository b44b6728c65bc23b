"""Face front-end: detection on a real photo, none on noise, cues that move the right way, bounded cache."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from streams.packets import VideoFrame
from umq.perception.face.cues import FaceCues
from umq.perception.face.frontend import FaceFrontEnd


def astronaut_frame(t: float = 0.0, index: int = 0, shift: int = 0) -> VideoFrame:
    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[40:340, 80 + shift:480 + shift]  # 400x300 view
    return VideoFrame(t, np.ascontiguousarray(img), index)


def frames(make, n=6):
    return [make(VideoFrame(i * 0.1, astronaut_frame().image, i)) for i in range(n)]


@pytest.fixture(scope="module")
def frontend():
    return FaceFrontEnd()


def test_face_found_on_astronaut_and_tracked(frontend):
    frontend.reset()
    feats = frontend([astronaut_frame(i * 0.1, i, shift=i) for i in range(6)])
    assert feats.mask.all() and feats.embeddings.shape == (6, frontend.embedding_dim)
    assert torch.isfinite(feats.embeddings).all() and torch.allclose(feats.probs.sum(-1), torch.ones(6), atol=1e-4)
    x, y, w, h = feats.box
    assert 100 < x + w / 2 < 220 and 30 < y + h / 2 < 140  # her face, in the 400x300 view
    assert feats.cues.face_ratio == 1.0 and feats.cues.stability > 0.7 and feats.cues.describe() == ""


def test_no_face_on_noise_is_not_the_same_as_no_video(frontend):
    frontend.reset()
    rng = np.random.default_rng(0)
    noise = [VideoFrame(i * 0.1, rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), i) for i in range(6)]
    feats = frontend(noise)
    assert not feats.mask.any() and feats.cues.frames == 6
    assert feats.cues.describe().startswith("no face in view")
    assert frontend([]).cues.describe() == "no video"


def _cues(frontend, transform) -> FaceCues:
    frontend.reset()
    return frontend([VideoFrame(i * 0.1, transform(astronaut_frame().image), i) for i in range(6)]).cues


def test_cues_move_the_right_way(frontend):
    clean = _cues(frontend, lambda im: im)
    dark = _cues(frontend, lambda im: (im * 0.08).astype(np.uint8))
    blurred = _cues(frontend, lambda im: cv2.GaussianBlur(im, (0, 0), 5.0))
    assert dark.brightness < clean.brightness / 5 and "too dark" in dark.describe()
    assert blurred.sharpness < clean.sharpness / 10 and "blurred" in blurred.describe()
    assert clean.describe() == ""


def test_motion_cue_rises_with_movement(frontend):
    frontend.reset()
    still = frontend([astronaut_frame(i * 0.1, i) for i in range(6)]).cues.motion
    frontend.reset()
    moving = frontend([astronaut_frame(i * 0.1, i, shift=(i % 2) * 60) for i in range(6)]).cues.motion
    assert moving > still + 0.02


def test_each_frame_is_analysed_once_and_the_cache_is_bounded():
    fe = FaceFrontEnd(cache_frames=8)
    fs = [astronaut_frame(i * 0.1, i) for i in range(20)]
    calls = []
    real = fe.tracker.update
    fe.tracker.update = lambda *a: calls.append(1) or real(*a)
    fe(fs[:12])
    fe(fs[4:16])  # an overlapping window: only the new frames are analysed
    assert len(calls) <= 12 and len(fe._cache) <= 8


def test_a_frame_that_does_not_decode_is_left_out_with_a_warning(frontend, caplog):
    frontend.reset()
    good = [astronaut_frame(i * 0.1, i, shift=i) for i in range(5)]  # with the broken one: 6, all analysed
    broken = VideoFrame.deferred(0.25, 99, lambda: None, "session/video.mjpeg: frame 99 at byte 1234")
    with caplog.at_level("WARNING"):
        feats = frontend(good[:3] + [broken] + good[3:])
    assert feats.mask.all() and feats.cues.frames == 5  # the five good frames, nothing made up for the broken one
    assert any("frame 99 at byte 1234" in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)


def test_replay_decodes_only_the_frames_the_face_front_end_samples(frontend, tmp_path):
    """Replayed frames are JPEGs decoded on first use; at 30 fps perception looks at a small share of them."""
    from streams.clock import SimulatedClock
    from streams.recorder import SessionRecorder
    from streams.replay import Replay

    clock = SimulatedClock(speed=None)
    rec = SessionRecorder(tmp_path / "s", {"video_fps": 30.0}, clock=clock).start()
    for k in range(30 * 5):
        clock.advance_to(k / 30)
        rec(astronaut_frame(k / 30, k, shift=k % 7))
    rec.close()
    frontend.reset()
    seen = {}
    windows = list(Replay(tmp_path / "s", speed=None).windows())
    for w in windows:
        assert frontend(w.video.frames).mask.any()
        seen.update({f.index: f for f in w.video.frames})
    decoded = sum(f.decoded for f in seen.values())
    assert len(windows) == 6 and len(seen) >= 130
    assert 0 < decoded <= 0.3 * len(seen), (decoded, len(seen))
