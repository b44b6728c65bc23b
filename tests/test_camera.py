"""CameraSource against real OpenCV decoding: video files written here, and real captures wrapped to fail."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from streams.camera import CameraSource, to_bgr
from streams.clock import SessionClock, SimulatedClock
from streams.packets import SourceState, SourceStatus, VideoFrame
from tests.helpers import wait_for

W, H = 64, 48


def level(i: int) -> int:
    return 20 + 9 * i  # distinct flat grey per frame: survives MJPG, tells which file frame we got


def write_video(path, n: int, fps: float) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((H, W, 3), level(i), np.uint8))
    writer.release()
    return str(path)


def file_position(frame: VideoFrame) -> int:
    return int(round((float(frame.image.mean()) - 20) / 9))


class Collector:
    def __init__(self) -> None:
        self.items: list = []
        self.lock = threading.Lock()

    def __call__(self, packet) -> None:
        with self.lock:
            self.items.append(packet)

    @property
    def frames(self) -> list[VideoFrame]:
        with self.lock:
            return [p for p in self.items if isinstance(p, VideoFrame)]

    @property
    def statuses(self) -> list[SourceStatus]:
        with self.lock:
            return [p for p in self.items if isinstance(p, SourceStatus)]

    def states(self) -> list[SourceState]:
        return [s.state for s in self.statuses]


class PacedCapture:
    """A real cv2.VideoCapture on a looping file that behaves like a camera: ``read`` blocks until the next frame.

    ``fail_after``: reads start failing after this many frames (camera unplugged); ``stall``: {frame number:
    extra periods} the read blocks for (frames the driver lost); ``clock``: a SimulatedClock that ``read``
    advances instead of sleeping, for exact timing on a busy machine.
    """

    def __init__(self, path: str, fps: float = 25.0, fail_after: int | None = None, stall=None, gray=False,
                 opened=True, clock: SimulatedClock | None = None) -> None:
        self.cap = cv2.VideoCapture(path)
        self.period, self.fail_after, self.stall, self.gray = 1.0 / fps, fail_after, stall or {}, gray
        self.opened, self.n, self.next_t, self.sets, self.clock = opened, 0, None, [], clock

    def isOpened(self) -> bool:
        return self.opened and self.cap.isOpened()

    def read(self):
        if self.fail_after is not None and self.n >= self.fail_after:
            return False, None
        now = self.clock.now() if self.clock else time.monotonic()
        self.next_t = now if self.next_t is None else self.next_t + self.period * (1 + self.stall.get(self.n, 0))
        if self.clock:
            self.clock.advance_to(self.next_t)
        elif self.next_t > now:
            time.sleep(self.next_t - now)
        ok, img = self.cap.read()
        if not ok:  # loop the file
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self.cap.read()
        self.n += 1
        return ok, (cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if self.gray and ok else img)

    def get(self, prop):
        return 1.0 / self.period if prop == cv2.CAP_PROP_FPS else self.cap.get(prop)

    def set(self, prop, value):
        self.sets.append((prop, value))
        return True

    def release(self) -> None:
        self.cap.release()


@pytest.fixture
def video(tmp_path):
    return write_video(tmp_path / "clip.avi", 12, 30.0)


def test_video_file_is_paced_decoded_and_ends(video):
    sink = Collector()
    cam = CameraSource(SessionClock(), sink, device=video)
    cam.start()
    assert wait_for(lambda: cam.status.state is SourceState.ENDED, 5.0), sink.states()
    cam.stop()
    frames = sink.frames
    assert cam.status.state is SourceState.ENDED and cam.status.reason == "end of file"
    assert sink.states() == [SourceState.STARTING, SourceState.RUNNING, SourceState.ENDED]
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in frames)
    # every file frame is either emitted with its own position as index, or counted as dropped (late reader)
    assert len(frames) + cam.counters.dropped == 12 and len(frames) >= 8
    assert [f.index for f in frames] == [file_position(f) for f in frames]
    ts = [f.t for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert 0.25 < ts[-1] - ts[0] < 1.0, "a 30 fps file must play at about real time, not all at once"
    assert 15 < cam.counters.measured_rate < 60
    assert cam.latest(max_age_s=None) is frames[-1]


def test_absent_camera_is_unavailable_and_stop_is_prompt_during_backoff():
    calls = []

    def factory(dev):
        calls.append(dev)
        return cv2.VideoCapture(dev)

    sink = Collector()
    cam = CameraSource(SessionClock(), sink, device=0, capture_factory=factory)
    cam.start()
    assert wait_for(lambda: cam.status.state is SourceState.UNAVAILABLE)
    reason = cam.status.reason
    assert "camera 0" in reason and "could not be opened" in reason and "--camera" in reason
    t = time.monotonic()
    cam.stop()  # the thread is inside its 0.5 s backoff wait
    assert time.monotonic() - t < 0.4
    assert not cam.alive and calls == [0]
    assert cam.status.state is SourceState.UNAVAILABLE, "stop keeps the explanation"


def test_absent_camera_keeps_retrying_with_growing_backoff():
    calls = []

    def factory(dev):
        calls.append(time.monotonic())
        return cv2.VideoCapture(dev)

    cam = CameraSource(SessionClock(), None, device="0", capture_factory=factory, retry_initial_s=0.02,
                       retry_max_s=0.16)
    cam.start()
    assert wait_for(lambda: len(calls) >= 6)
    cam.stop()
    gaps = np.diff(calls)
    assert gaps[0] < gaps[3], "retries back off"
    assert gaps[3] < 0.5, "backoff is capped"

    once = []
    cam = CameraSource(SessionClock(), None, device=0, reconnect=False,
                       capture_factory=lambda d: once.append(d) or cv2.VideoCapture(d))
    cam.start()
    cam.join(2.0)
    assert not cam.alive and once == [0] and cam.status.state is SourceState.UNAVAILABLE


def test_unreadable_file_is_unavailable_without_retry(tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"not a video at all" * 10)
    cam = CameraSource(SessionClock(), None, device=str(bad))
    cam.start()
    cam.join(2.0)
    assert not cam.alive
    assert cam.status.state is SourceState.UNAVAILABLE and str(bad) in cam.status.reason


def test_lost_camera_reconnects_and_recovers_without_restart(video):
    made: list[PacedCapture] = []

    def factory(dev):
        n = len(made)
        # 1st: 6 good frames then unplugged; 2nd: still absent; 3rd: back
        made.append(PacedCapture(video, fail_after=6 if n == 0 else None, opened=n != 1))
        return made[-1]

    sink = Collector()
    cam = CameraSource(SessionClock(), sink, device=0, capture_factory=factory, retry_initial_s=0.05)
    cam.start()
    assert wait_for(lambda: cam.counters.reconnects == 1 and len(sink.frames) >= 10, 6.0), sink.states()
    cam.stop()
    states = sink.states()
    assert states[:4] == [SourceState.STARTING, SourceState.RUNNING, SourceState.RECONNECTING, SourceState.RUNNING]
    lost = sink.statuses[2].reason
    assert lost.startswith("camera 0 disconnected:") and "10 reads failed" in lost
    assert cam.counters.failed_reads == 10 and len(made) == 3
    assert cam.status.state is SourceState.STOPPED
    idx = [f.index for f in sink.frames]
    assert idx == sorted(set(idx)) and idx[:6] == list(range(6)), "indices keep running across the reconnect"
    assert all(m.cap.isOpened() is False for m in made), "every capture was released"


def test_missed_frames_are_counted_and_advance_the_index(video):
    stalls = {6: 3, 14: 2}  # the driver lost 3 frames, then 2
    clock = SimulatedClock(speed=None)  # advanced by the capture's reads: exact timing whatever the CPU load
    sink = Collector()
    cam = CameraSource(clock, sink, device=0, capture_factory=lambda d: PacedCapture(video, stall=stalls, clock=clock))
    cam.start()
    assert wait_for(lambda: len(sink.frames) >= 40, 5.0)
    cam.stop()
    frames = sink.frames[:40]
    jumps = [b.index - a.index - 1 for a, b in zip(frames, frames[1:])]
    assert cam.counters.dropped == 5 and sum(jumps) == 5, "the windower sees exactly the drops the counters report"
    assert jumps[5] == 3 and jumps[13] == 2, "each stall shows up right after the frame before it"
    assert abs(cam.counters.measured_rate - 25) < 3, "measured over the last ~1.5 s, past the stalls"
    newest = cam.latest()
    assert newest is sink.frames[-1]
    clock.advance_to(clock.now() + 0.2)
    assert cam.latest(max_age_s=0.1) is None, "an old frame is never served as current"


def test_gray_frames_become_bgr_and_requests_are_applied(video):
    made = []
    sink = Collector()
    cam = CameraSource(SessionClock(), sink, device=1, fps=30, size=(320, 240),
                       capture_factory=lambda d: made.append(PacedCapture(video, gray=True)) or made[-1])
    cam.start()
    assert wait_for(lambda: len(sink.frames) >= 2)
    cam.stop()
    img = sink.frames[0].image
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], img[..., 2])
    assert (cv2.CAP_PROP_FRAME_WIDTH, 320.0) in made[0].sets and (cv2.CAP_PROP_FRAME_HEIGHT, 240.0) in made[0].sets
    assert (cv2.CAP_PROP_FPS, 30.0) in made[0].sets


def test_to_bgr_handles_odd_frame_formats():
    assert to_bgr(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert to_bgr(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5, 3)
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 2] = 200
    assert to_bgr(bgra).shape == (4, 5, 3) and to_bgr(bgra)[0, 0, 2] == 200
    assert to_bgr(np.full((2, 2), 65535, np.uint16)).max() == 255
    out = to_bgr(np.full((2, 2, 3), 0.5, np.float32))
    assert out.dtype == np.uint8 and out[0, 0, 0] == 127
    assert to_bgr(None) is None and to_bgr(np.zeros((0, 0, 3), np.uint8)) is None


def test_list_cameras_probes_indices_and_reports_what_opens(video):
    from streams.devices import list_cameras

    assert list_cameras(3) == [], "no camera on this machine"  # real cv2.VideoCapture probing
    probed = []

    def factory(i):
        probed.append(i)
        return PacedCapture(video, fps=25.0, opened=i == 1)

    found = list_cameras(3, capture_factory=factory)
    assert probed == [0, 1, 2]
    assert [(c.id, c.width, c.height, c.fps, c.name) for c in found] == [(1, W, H, 25.0, "camera 1")]
