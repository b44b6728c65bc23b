"""Live camera (or video file) capture with OpenCV in its own thread.

Why a dedicated reader thread: OpenCV drivers queue a few frames, so a consumer that reads only when it is ready
gets frames that are already old. Reading continuously keeps the driver queue empty; the newest frame wins
(:meth:`CameraSource.latest`) and every frame is also handed to the sink with the clock time at which it was read.

Failures are statuses, never exceptions: a camera missing at start is ``unavailable`` and retried in the
background, a camera that stops delivering is ``reconnecting`` and reopened with backoff, and a video file that
runs out is ``ended``.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from .clock import Clock
from .devices import Backoff, RateMeter, quiet_opencv
from .packets import Modality, SourceState, VideoFrame, cap_image
from .source import Sink, ThreadedSource

log = logging.getLogger(__name__)

CAMERA_HINT = "check it is connected and not used by another program, or pick another with --camera"
_SANE_FPS = (1.0, 240.0)


def to_bgr(frame: Any) -> np.ndarray | None:
    """Any OpenCV frame (gray, HxWx1, BGRA, 16-bit, float) as contiguous HxWx3 uint8 BGR; ``None`` if unusable."""
    if not isinstance(frame, np.ndarray) or frame.size == 0 or frame.ndim not in (2, 3):
        return None
    if frame.dtype != np.uint8:
        if frame.dtype == np.uint16:
            frame = (frame >> 8).astype(np.uint8)
        elif np.issubdtype(frame.dtype, np.floating):
            scale = 255.0 if float(np.nanmax(frame)) <= 1.0 else 1.0
            frame = np.clip(np.nan_to_num(frame) * scale, 0, 255).astype(np.uint8)
        else:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return np.ascontiguousarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3:  # 1 channel, or 2 (raw YUYV planes): the first plane is luminance
        frame = frame[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_GRAY2BGR)


def _is_file(device: int | str) -> bool:
    return isinstance(device, str) and os.path.isfile(device)


class CameraSource(ThreadedSource):
    """A webcam index, a device path / stream URL, or a video file, read by ``capture_factory`` in a thread.

    Args:
        device: camera index (``0``), a device path or URL, or a video file path (played at its own frame rate,
            or at ``fps`` when given; the end of the file is status ``ended``).
        fps, size: requested frame rate and ``(width, height)``, applied with ``cap.set`` (cameras may ignore
            them; what was negotiated is logged).
        capture_factory: ``cv2.VideoCapture`` or a stand-in with the same methods (tests wrap real captures).
        reconnect: keep retrying a camera that is absent or lost; without it the source just becomes
            ``unavailable``.
        max_failed_reads, fail_after_s: a camera is declared lost after this many consecutive failed reads, or
            after this long without a good frame, whichever comes first.
        retry_initial_s, retry_max_s: reopen backoff.
    """

    modality = Modality.VIDEO

    def __init__(self, clock: Clock, sink: Sink | None = None, device: int | str = 0, fps: float | None = None,
                 size: tuple[int, int] | None = None, capture_factory: Callable[..., Any] = cv2.VideoCapture,
                 reconnect: bool = True, *, name: str | None = None, max_failed_reads: int = 10,
                 fail_after_s: float = 1.0, retry_initial_s: float = 0.5, retry_max_s: float = 5.0) -> None:
        if isinstance(device, str) and device.strip().isdigit():
            device = int(device)
        self.device = device
        self.is_file = _is_file(device)
        label = f"camera {device}" if isinstance(device, int) else (os.path.basename(device) if self.is_file
                                                                     else f"camera {device}")
        super().__init__(name or label, clock, sink)
        self.label = f"video file {device}" if self.is_file else f"camera {device}"
        self.fps, self.size = fps, size
        self.capture_factory, self.reconnect = capture_factory, reconnect
        self.max_failed_reads, self.fail_after_s = max_failed_reads, fail_after_s
        self._backoff = Backoff(retry_initial_s, retry_max_s)
        self._latest: VideoFrame | None = None
        self._index = 0
        self.counters.extra["nominal_fps"] = 0.0

    # -- public ---------------------------------------------------------------------------------------------
    def latest(self, max_age_s: float | None = 1.0) -> VideoFrame | None:
        """The newest frame, or ``None`` when there is none or it is older than ``max_age_s`` on the clock."""
        frame = self._latest
        if frame is None or (max_age_s is not None and self.clock.now() - frame.t > max_age_s):
            return None
        return frame

    def _stop(self) -> None:
        """Stop within ~1 s even if the driver is stuck inside ``read()``; the daemon thread exits after it."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=0.8)
            if self._thread.is_alive():
                log.warning("%s is blocked in the driver; it will be released when the read returns", self.label)

    # -- thread ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        lost_reason = ""  # non-empty once a running camera was lost
        while not self._stopping.is_set():
            cap, err = self._open()
            if cap is None:
                if lost_reason:
                    self._set_status(SourceState.RECONNECTING, lost_reason)
                else:
                    self._set_status(SourceState.UNAVAILABLE, err)
                if self.is_file or not self.reconnect:
                    return
                if self._stopping.wait(self._backoff.next()):
                    return
                continue
            if lost_reason:
                self.counters.reconnects += 1
            self._backoff.reset()
            self._set_status(SourceState.RUNNING)
            try:
                outcome = self._read_loop(cap)
            finally:
                with contextlib.suppress(Exception):
                    cap.release()
            if outcome == "stopped":
                return
            if outcome.startswith("ended"):
                self._set_status(SourceState.ENDED, outcome.removeprefix("ended:"))
                return
            lost_reason = f"{self.label} disconnected: {outcome}"
            self.counters.measured_rate = 0.0
            if not self.reconnect:
                self._set_status(SourceState.UNAVAILABLE, f"{lost_reason} (reconnect disabled)")
                return
            lost_reason += "; reconnecting"
            self._set_status(SourceState.RECONNECTING, lost_reason)
            if self._stopping.wait(self._backoff.next()):
                return

    def _open(self) -> tuple[Any | None, str]:
        """Open and configure the capture; ``(None, reason)`` when that is not possible."""
        if self.is_file:
            hint = "check the file is a readable video (e.g. .mp4, .avi)"
        elif isinstance(self.device, str) and not os.path.exists(self.device) and "://" not in self.device:
            hint = "no such device or file: check the path, or pick a camera index with --camera"
        else:
            hint = CAMERA_HINT
        cap = None
        try:
            with quiet_opencv():
                cap = self.capture_factory(self.device)
                if not cap.isOpened():
                    raise RuntimeError("")
            self._configure(cap)
            return cap, ""
        except Exception as exc:  # noqa: BLE001 - cv2.error, driver bugs: all mean "not usable now"
            if cap is not None:
                with contextlib.suppress(Exception):
                    cap.release()
            detail = f" ({exc})" if str(exc) else ""
            return None, f"{self.label} could not be opened{detail}: {hint}"

    def _configure(self, cap: Any) -> None:
        if not self.is_file:
            if self.size:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(self.size[0]))
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(self.size[1]))
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, float(self.fps))
        reported = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        sane = _SANE_FPS[0] <= reported <= _SANE_FPS[1]
        nominal = (self.fps or (reported if sane else 0.0)) if self.is_file else (reported if sane else self.fps or 0.0)
        self.counters.extra["nominal_fps"] = nominal
        log.info("%s opened: %sx%s at %.1f fps (requested size %s, fps %s)", self.label,
                 int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
                 reported, self.size, self.fps)

    def _read_loop(self, cap: Any) -> str:
        """Read until stopped (``"stopped"``), the file ends (``"ended:..."``) or the camera is lost (its reason)."""
        nominal = float(self.counters.extra.get("nominal_fps") or 0.0)
        if self.is_file and not nominal:
            nominal = 25.0  # a file without a frame rate: play it at a common one rather than all at once
        period = 1.0 / nominal if nominal else 0.0
        intervals: collections.deque[float] = collections.deque(maxlen=30)
        fails, prev_t, last_ok, meter = 0, None, self.clock.now(), RateMeter()
        file_start, file_pos = self.clock.now(), 0
        while not self._stopping.is_set():
            if self.is_file:  # pace like a camera; when late, skip frames and count them as dropped
                late = self.clock.now() - (file_start + file_pos * period)
                if late < 0 and self._stopping.wait(-late):
                    return "stopped"
                for _ in range(min(int(late / period), 100) if late > period else 0):
                    if not cap.grab():
                        return self._file_end(cap, file_pos)
                    file_pos += 1
                    self._index += 1
                    self.counters.dropped += 1
            ok, raw = cap.read()
            t = self.clock.now()
            image = to_bgr(raw) if ok else None
            if image is None:
                self.counters.failed_reads += 1
                fails += 1
                if self.is_file:
                    return self._file_end(cap, file_pos)
                if fails >= self.max_failed_reads or t - last_ok >= self.fail_after_s:
                    return f"{fails} reads failed in a row ({t - last_ok:.1f} s without a frame)"
                if self._stopping.wait(min(0.02, period or 0.02)):
                    return "stopped"
                continue
            fails, last_ok = 0, t
            if prev_t is not None:
                dt = t - prev_t
                if not self.is_file:
                    missed = self._missed_frames(dt, period, intervals)
                    self.counters.dropped += missed
                    self._index += missed
                    if dt > 0:
                        intervals.append(dt)
            self.counters.measured_rate = meter.update(t)
            prev_t = t
            frame = VideoFrame(t, cap_image(image), self._index)  # bounded memory whatever the camera sends
            self._index += 1
            file_pos += 1
            self._latest = frame
            self._emit(frame)
        return "stopped"

    def _file_end(self, cap: Any, pos: int) -> str:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if count and pos < count - 1:
            return f"ended:end of file (could not decode past frame {pos} of {count})"
        return "ended:end of file"

    @staticmethod
    def _missed_frames(dt: float, nominal_period: float, intervals: collections.deque[float]) -> int:
        """Frames lost in a gap of ``dt``: a gap over 1.5 periods counts ``round(dt / period) - 1``.

        The period is the nominal one, or the typical (25th percentile) recent interval when the camera really
        runs slower than it claims (auto-exposure in low light), so a slow camera is not reported as dropping.
        """
        period = nominal_period
        if len(intervals) >= 5:
            period = max(period, float(np.percentile(intervals, 25)))
        if period <= 0 or dt <= 1.5 * period:
            return 0
        return max(0, int(round(dt / period)) - 1)
