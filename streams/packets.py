"""Typed packets that sources emit and the buffer stores.

Every timestamp is seconds on the shared session clock (see :mod:`streams.clock`), so packets from different
devices can be aligned without knowing where they came from.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np


class Modality(str, enum.Enum):
    """The three inputs the model fuses. The string value is what JSON files and the UI use."""

    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"


MODALITIES: tuple[Modality, ...] = (Modality.VIDEO, Modality.AUDIO, Modality.TEXT)

AUDIO_RATE = 16_000
"""Every audio packet inside the app is 16 kHz mono float32; sources resample before they emit."""


MAX_FRAME_SIZE: tuple[int, int] = (1920, 1080)
"""The largest frame (width, height) inside the app. Files, recorded sessions and cameras deliver larger frames
downscaled at decode (aspect kept), so memory is bounded by this size whatever the input: an 8K file would
otherwise hold ~100 MB per buffered frame. Perception works on faces far smaller than 1080p."""


def cap_frame_size(width: int, height: int, cap: tuple[int, int] = MAX_FRAME_SIZE) -> tuple[int, int]:
    """``(width, height)`` scaled down (aspect kept, even sizes for video scalers) to fit inside ``cap``
    (either orientation: a portrait 1080x1920 frame is as large as a landscape one); unchanged when it fits."""
    long_cap, short_cap = max(cap), min(cap)
    long_side, short_side = max(width, height), min(width, height)
    if long_side <= long_cap and short_side <= short_cap:
        return width, height
    scale = min(long_cap / long_side, short_cap / short_side)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def cap_image(image: np.ndarray, cap: tuple[int, int] = MAX_FRAME_SIZE) -> np.ndarray:
    """``image`` (HxWxC) downscaled with area averaging to fit ``cap``; the same array when it already fits."""
    h, w = image.shape[:2]
    size = cap_frame_size(w, h, cap)
    if size == (w, h):
        return image
    import cv2  # lazy: packets are used where OpenCV is not needed

    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class FrameDecodeError(ValueError):
    """A frame whose image was stored encoded (a recorded session's JPEG) could not be decoded when needed."""


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        what = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"VideoFrame.image must be HxWx3 uint8, got {what}")
    return image


class VideoFrame:
    """One camera or file frame (immutable).

    Attributes:
        t: capture time (session clock, seconds) of the frame.
        image: HxWx3 uint8 BGR image (OpenCV's order).
        index: running frame number of the source; a jump larger than one means frames were lost upstream.

    A frame made with :meth:`deferred` holds a way to produce its image instead of the image, and makes it on
    first access (then keeps it). Replay uses this so that only the frames perception actually samples (about
    two new ones per window) are decoded from JPEG, not every frame of a 30 fps session.
    """

    __slots__ = ("t", "index", "_image", "_make", "_what")
    # Declarations for type checkers only: bare annotations create no class attributes, so the slots stay the
    # storage and attribute access costs the same.
    t: float
    index: int
    _image: np.ndarray | None
    _make: Callable[[], np.ndarray | None] | None
    _what: str

    def __init__(self, t: float, image: np.ndarray, index: int) -> None:
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "_image", _check_image(image))
        object.__setattr__(self, "_make", None)
        object.__setattr__(self, "_what", "")

    @classmethod
    def deferred(cls, t: float, index: int, make: Callable[[], np.ndarray | None], what: str = "") -> VideoFrame:
        """A frame whose image ``make()`` produces on first access; ``what`` names it in errors (file, frame).

        ``make`` returning ``None`` or raising becomes :class:`FrameDecodeError` at the access."""
        frame = cls.__new__(cls)
        for name, value in (("t", t), ("index", index), ("_image", None), ("_make", make), ("_what", what)):
            object.__setattr__(frame, name, value)
        return frame

    @property
    def image(self) -> np.ndarray:
        image = self._image
        if image is None:
            make = self._make
            if make is None:  # another thread finished it between the two reads (it sets _image before _make)
                return cast(np.ndarray, self._image)
            what = self._what or f"frame {self.index} at {self.t:.3f} s"
            try:
                image = make()
            except FrameDecodeError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to produce pixels is a decode failure
                raise FrameDecodeError(f"{what}: cannot decode the image ({exc})") from exc
            if image is None:
                raise FrameDecodeError(f"{what}: the stored image does not decode")
            _check_image(image)
            object.__setattr__(self, "_image", image)
            object.__setattr__(self, "_make", None)  # let go of the encoded bytes
        return image

    @property
    def decoded(self) -> bool:
        """Whether the image exists in memory (always for frames made from an image)."""
        return self._image is not None

    def __setattr__(self, name, value):
        raise AttributeError(f"VideoFrame is immutable (cannot set {name})")

    def __delattr__(self, name):
        raise AttributeError(f"VideoFrame is immutable (cannot delete {name})")

    def __repr__(self) -> str:
        shape = "deferred" if self._image is None else "x".join(map(str, self._image.shape))
        return f"VideoFrame(t={self.t!r}, index={self.index!r}, image={shape})"


@dataclass(frozen=True)
class AudioChunk:
    """A run of contiguous audio samples.

    Attributes:
        t: session time of the first sample.
        samples: 1-D float32 mono samples in [-1, 1] (clipping is kept, not repaired: it is a quality cue).
        rate: sample rate in Hz; always :data:`AUDIO_RATE` once past a source.
    """

    t: float
    samples: np.ndarray
    rate: int = AUDIO_RATE

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or self.samples.dtype != np.float32:
            raise ValueError(f"AudioChunk.samples must be 1-D float32, got {self.samples.shape} {self.samples.dtype}")
        if self.rate <= 0:
            raise ValueError(f"AudioChunk.rate must be positive, got {self.rate}")

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate

    @property
    def t_end(self) -> float:
        return self.t + self.duration


@dataclass(frozen=True)
class TextSegment:
    """A piece of transcript covering ``[t0, t1]`` on the session clock.

    Attributes:
        source: where it came from, e.g. ``"stdin"``, ``"file"``, ``"srt"``, ``"ui"``, ``"asr"``.
        confidence: recogniser confidence in [0, 1] when the text came from speech recognition, else ``None``.
    """

    t0: float
    t1: float
    text: str
    source: str = "transcript"
    confidence: float | None = None

    def __post_init__(self) -> None:
        if not self.t1 >= self.t0:
            raise ValueError(f"TextSegment needs t1 >= t0, got t0={self.t0} t1={self.t1}")


class SourceState(str, enum.Enum):
    """Lifecycle of a source as the user sees it."""

    STARTING = "starting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    UNAVAILABLE = "unavailable"
    ENDED = "ended"  # a file or finite source reached its end
    STOPPED = "stopped"  # stopped on request

    @property
    def delivers(self) -> bool:
        """Whether a source in this state can be producing packets."""
        return self in (SourceState.STARTING, SourceState.RUNNING)


@dataclass(frozen=True)
class SourceStatus:
    """A source's state at session time ``t`` with a sentence a user can act on when something is wrong."""

    state: SourceState
    reason: str = ""
    t: float = 0.0
    modality: Modality | None = None
    source: str = ""

    def to_json(self) -> dict:
        return {
            "t": self.t,
            "modality": self.modality.value if self.modality else None,
            "source": self.source,
            "state": self.state.value,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, d: dict) -> SourceStatus:
        mod = d.get("modality")
        return cls(
            state=SourceState(d["state"]),
            reason=d.get("reason", ""),
            t=float(d.get("t", 0.0)),
            modality=Modality(mod) if mod else None,
            source=d.get("source", ""),
        )


@dataclass
class SourceCounters:
    """Running capture counters a source keeps; read by the windower, telemetry and ``meta.json``."""

    packets: int = 0
    dropped: int = 0  # frames/samples known lost (index jumps, latest-wins overwrites, full queues)
    failed_reads: int = 0
    overflows: int = 0  # driver-reported input overflows (microphone)
    reconnects: int = 0
    measured_rate: float = 0.0  # frames/s for video, samples/s for audio, over the last seconds
    extra: dict = field(default_factory=dict)
