"""What capture hardware this machine has, and the retry policy the capture sources share.

``python -m app devices`` prints :func:`describe_devices`, so a user can pick ``--camera`` / ``--mic`` values
without guessing. Listing never raises: a missing PortAudio library or an empty device list becomes a sentence
that says what to do, because this is exactly the command people run when something is not working.

Also here: the two small policies the capture sources share, reopen backoff and rate measurement.
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MIC_HINT = "choose one with --mic (list them with `python -m app devices`)"
PORTAUDIO_MISSING = "PortAudio is not installed: install it (Debian/Ubuntu: apt install libportaudio2) and restart"
SOUNDDEVICE_MISSING = "the sounddevice package is not installed: pip install sounddevice, then restart"


class Backoff:
    """Retry delays for reopening a device: ``initial_s`` doubling up to ``max_s``.

    Sources wait these delays with ``Event.wait`` so that ``stop()`` interrupts them at once.
    """

    def __init__(self, initial_s: float = 0.5, max_s: float = 5.0) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        self.initial_s, self.max_s = initial_s, max_s
        self._next = initial_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2.0, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s


class RateMeter:
    """Frames (or samples) per second over roughly the last ``tau_s`` seconds.

    A plain average until ``tau_s`` has passed, so one early, jittery interval cannot dominate, then a
    time-weighted EMA of ``amount / dt``, which stays unbiased when callback or read times jitter.
    """

    def __init__(self, tau_s: float = 1.5) -> None:
        self.tau_s, self.rate = tau_s, 0.0
        self._t_first: float | None = None
        self._t_last = 0.0
        self._total = self._pending = 0.0

    def update(self, t: float, amount: float = 1.0) -> float:
        """Record ``amount`` arriving at time ``t``; the first call only marks the start."""
        if self._t_first is None:
            self._t_first = self._t_last = t
            return self.rate
        self._pending += amount
        dt = t - self._t_last
        if dt <= 0:
            return self.rate
        if t - self._t_first <= self.tau_s:
            self._total += self._pending
            self.rate = self._total / (t - self._t_first)
        else:
            self.rate += (1.0 - math.exp(-dt / self.tau_s)) * (self._pending / dt - self.rate)
        self._pending, self._t_last = 0.0, t
        return self.rate


@dataclass(frozen=True)
class CameraInfo:
    id: int
    width: int
    height: int
    fps: float
    backend: str = ""

    @property
    def name(self) -> str:
        return f"camera {self.id}"


@dataclass(frozen=True)
class MicrophoneInfo:
    id: int
    name: str
    channels: int
    default_rate: float
    hostapi: str = ""
    is_default: bool = False


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's "can't open camera by index" warnings while we probe on purpose."""
    import cv2

    try:
        old = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except Exception:  # noqa: BLE001 - older builds lack the logging module; probing still works
        yield
        return
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(old)


def list_cameras(max_index: int = 5, capture_factory: Callable[[int], Any] | None = None) -> list[CameraInfo]:
    """Indices ``0..max_index-1`` that open and deliver a frame. Absent indices fail fast, so this is quick."""
    import cv2

    factory = capture_factory or cv2.VideoCapture
    found: list[CameraInfo] = []
    with quiet_opencv():
        for index in range(max_index):
            cap = None
            try:
                cap = factory(index)
                if not cap.isOpened():
                    continue
                ok, frame = cap.read()
                if not ok or frame is None:
                    continue
                h, w = frame.shape[:2]
                try:
                    backend = cap.getBackendName()
                except Exception:  # noqa: BLE001 - informational only
                    backend = ""
                found.append(CameraInfo(index, int(w), int(h), float(cap.get(cv2.CAP_PROP_FPS) or 0.0), backend))
            except Exception as exc:  # noqa: BLE001 - a broken driver must not break the listing
                log.debug("probing camera %d failed: %s", index, exc)
            finally:
                if cap is not None:
                    with contextlib.suppress(Exception):
                        cap.release()
    return found


def list_microphones() -> list[MicrophoneInfo] | str:
    """Input devices PortAudio sees, or a sentence explaining why there are none."""
    try:
        import sounddevice as sd
    except OSError:
        return PORTAUDIO_MISSING
    except ImportError:
        return SOUNDDEVICE_MISSING
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in = sd.default.device[0]
    except Exception as exc:  # noqa: BLE001 - PortAudioError and friends
        return f"could not query audio devices ({exc}): check that a sound card is present"
    mics = []
    for d in devices:
        if int(d.get("max_input_channels", 0)) <= 0:
            continue
        api = d.get("hostapi")
        api_name = hostapis[api]["name"] if isinstance(api, int) and 0 <= api < len(hostapis) else ""
        mics.append(MicrophoneInfo(int(d["index"]), str(d["name"]), int(d["max_input_channels"]),
                                   float(d["default_samplerate"]), api_name, int(d["index"]) == default_in))
    if not mics:
        return "no input device found: connect a microphone (PortAudio lists no device with input channels)"
    return mics


def describe_devices(max_cameras: int = 5) -> str:
    """Human-readable listing for ``python -m app devices``."""
    lines = ["Cameras (use --camera INDEX or a video file path):"]
    cams = list_cameras(max_cameras)
    lines += [f"  {c.id}: {c.width}x{c.height} @ {c.fps:.0f} fps {c.backend}".rstrip() for c in cams] or [
        f"  none found among indices 0-{max_cameras - 1}: connect a camera or pass a video file with --camera"]
    lines.append("Microphones (use --mic ID or a name fragment):")
    mics = list_microphones()
    if isinstance(mics, str):
        lines.append(f"  {mics}")
    else:
        for m in mics:
            api = f", {m.hostapi}" if m.hostapi else ""
            lines.append(f"  {m.id}: {m.name} ({m.channels} ch, {m.default_rate:.0f} Hz{api})"
                         f"{'  [default]' if m.is_default else ''}")
    return "\n".join(lines)
