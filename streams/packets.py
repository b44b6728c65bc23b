"""Typed packets that sources emit and the buffer stores.

Every timestamp is seconds on the shared session clock (see :mod:`streams.clock`), so packets from different
devices can be aligned without knowing where they came from.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class Modality(str, enum.Enum):
    """The three inputs the model fuses. The string value is what JSON files and the UI use."""

    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"


MODALITIES: tuple[Modality, ...] = (Modality.VIDEO, Modality.AUDIO, Modality.TEXT)

AUDIO_RATE = 16_000
"""Every audio packet inside the app is 16 kHz mono float32; sources resample before they emit."""


@dataclass(frozen=True)
class VideoFrame:
    """One camera or file frame.

    Attributes:
        t: capture time (session clock, seconds) of the frame.
        image: HxWx3 uint8 BGR image (OpenCV's order).
        index: running frame number of the source; a jump larger than one means frames were lost upstream.
    """

    t: float
    image: np.ndarray
    index: int

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"VideoFrame.image must be HxWx3 uint8, got {self.image.shape} {self.image.dtype}")


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
    def from_json(cls, d: dict) -> "SourceStatus":
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
