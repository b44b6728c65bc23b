"""The typed ``Window`` handed from capture to the model, and the per-modality capture health it carries.

A window holds, for one span ``[t0, t1)`` of session time, each modality's data *and* an account of how well
it was captured. A modality with no usable data is still there, marked ``present=False`` with a reason a
person can read: missing input is a normal, reported event, not an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .packets import AUDIO_RATE, Modality, SourceState, TextSegment, VideoFrame


@dataclass(frozen=True)
class ModalityHealth:
    """How one modality was captured during a window.

    Attributes:
        modality: which input this describes.
        present: False when the window holds no usable data for this modality (the model treats it as missing).
        reason: why it is missing ("camera disconnected", "no frames for 1.2 s", "no transcript"); empty when
            present.
        expected: frames (video) or samples (audio) the span should hold at the nominal rate; 0 for text.
        received: frames or samples actually in the span; text segments for text.
        dropped: frames the source reports lost inside the span (frame-index jumps); 0 for audio and text.
        missing: ``max(0, expected - received)``: for audio, the samples that never arrived.
        gaps: ``(start, end)`` session-time spans inside the window with no data, longer than the gap threshold.
        largest_gap_s: the longest such span (0 when none).
        device_state: the source's state at ``t1`` (``stopped`` when no source of this modality exists).
        device_reason: the source's own explanation of that state, when it gave one.
    """

    modality: Modality
    present: bool
    reason: str = ""
    expected: int = 0
    received: int = 0
    dropped: int = 0
    missing: int = 0
    gaps: tuple[tuple[float, float], ...] = ()
    largest_gap_s: float = 0.0
    device_state: SourceState = SourceState.RUNNING
    device_reason: str = ""

    def __post_init__(self) -> None:
        if self.present and self.reason:
            raise ValueError("a present modality carries no missing reason")
        if not self.present and not self.reason:
            raise ValueError(f"missing {self.modality.value} needs a reason")
        if min(self.expected, self.received, self.dropped, self.missing) < 0:
            raise ValueError("health counters are never negative")

    def to_json(self) -> dict:
        return {
            "present": self.present,
            "reason": self.reason,
            "expected": self.expected,
            "received": self.received,
            "dropped": self.dropped,
            "missing": self.missing,
            "gaps": [[round(a, 3), round(b, 3)] for a, b in self.gaps],
            "largest_gap_s": round(self.largest_gap_s, 3),
            "device_state": self.device_state.value,
            "device_reason": self.device_reason,
        }


@dataclass(frozen=True)
class VideoSlice:
    """The frames captured in a window, oldest first (shared, not copied: treat images as read-only)."""

    frames: tuple[VideoFrame, ...]
    health: ModalityHealth

    @property
    def latest(self) -> VideoFrame | None:
        return self.frames[-1] if self.frames else None


@dataclass(frozen=True)
class AudioSlice:
    """Exactly ``round((t1 - t0) * rate)`` samples; where nothing arrived the samples are 0 and ``valid`` is False."""

    samples: np.ndarray
    valid: np.ndarray
    health: ModalityHealth
    rate: int = AUDIO_RATE


@dataclass(frozen=True)
class TextSlice:
    """Transcript segments of the window, in start order: those that overlap it, and the late ones.

    Attributes:
        segments: every line this window analyses, late ones included.
        health: present when the lines hold words.
        late: the lines of ``segments`` that arrived after every window overlapping them was cut (live speech
            recognition decodes seconds after the speech); they keep their original ``t0``/``t1``, before this
            window's ``t0``, and are in no other window. Empty for lines known up front (files, typed text).
        fresh: the lines of ``segments`` that no earlier window held (late ones included). A consumer that skips
            this window must hand these on (:func:`carry_dropped`), or a line that is in no later window is
            never analysed.
    """

    segments: tuple[TextSegment, ...]
    health: ModalityHealth
    late: tuple[TextSegment, ...] = ()
    fresh: tuple[TextSegment, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class Window:
    """One analysis window: ``[t0, t1)`` on the session clock, emitted every hop."""

    index: int
    t0: float
    t1: float
    video: VideoSlice
    audio: AudioSlice
    text: TextSlice
    meta: dict = field(default_factory=dict)

    def health(self, modality: Modality) -> ModalityHealth:
        parts: dict[Modality, VideoSlice | AudioSlice | TextSlice] = {
            Modality.VIDEO: self.video, Modality.AUDIO: self.audio, Modality.TEXT: self.text}
        return parts[modality].health

    @property
    def healths(self) -> dict[Modality, ModalityHealth]:
        return {m: self.health(m) for m in Modality}

    def to_json(self) -> dict:
        """Summary without raw data: what headless replay writes and what recorded sessions keep."""
        out: dict[str, Any] = {"index": self.index, "t0": round(self.t0, 4), "t1": round(self.t1, 4)}
        for m in Modality:
            out[m.value] = self.health(m).to_json()
        out["text"]["words"] = self.text.words
        if self.text.late:  # only then: windows without late lines keep the summary they always had
            out["text"]["late"] = len(self.text.late)
        return out


MAX_CARRIED_LINES = 4
"""At most this many lines of skipped windows ride on, the newest: a consumer that falls far behind skips text as
latest-wins skips frames, so the work of the window it finally takes stays bounded (measured: without the cap, a
soak replay at 60x carried hundreds of lines into each analysed window and the text stage took seconds)."""


def carry_dropped(dropped: Window, newer: Window) -> Window:
    """``newer`` with the transcript lines it would otherwise lose when a consumer skips ``dropped`` (a live
    latest-wins hand-off replaces a window nobody took yet by the next one).

    Frames and audio of a skipped window are gone by design: the consumer wants the newest. A transcript line is
    not: each line is analysed in the windows that hold it, and one that arrived late (or overlaps few windows)
    may be in ``dropped`` and in no later window. So every line of ``dropped.text.fresh`` that ``newer`` does not
    hold joins ``newer`` as late (it ends before ``newer.t0``), and stays fresh there, so a chain of skipped
    windows hands it on to the window that is finally analysed: once, never twice (lines an analysed window held
    are not fresh). At most :data:`MAX_CARRIED_LINES` ride on (the newest). Only the text changes; ``newer``'s
    index, span, frames and audio are kept."""
    old, new = dropped.text, newer.text
    held = {id(x) for x in new.segments}  # identity: two lines may carry the same words and times
    carried = [x for x in old.fresh if id(x) not in held]
    if len(carried) > MAX_CARRIED_LINES:
        carried = sorted(carried, key=lambda x: x.t1)[-MAX_CARRIED_LINES:]
    new_fresh = {id(x) for x in new.fresh}
    kept = [x for x in old.fresh if id(x) in held] + carried  # still fresh: no analysed window held them
    fresh = new.fresh + tuple(x for x in kept if id(x) not in new_fresh)
    if not carried and len(fresh) == len(new.fresh):
        return newer
    carried_t = tuple(carried)
    segments = tuple(sorted(new.segments + carried_t, key=lambda x: x.t0))
    health = new.health
    if not health.present and any(x.text.strip() for x in carried_t):
        health = replace(health, present=True, reason="")
    health = replace(health, received=len(segments))
    text = TextSlice(segments, health, tuple(sorted(new.late + carried_t, key=lambda x: x.t0)),
                     tuple(sorted(fresh, key=lambda x: x.t0)))
    return replace(newer, text=text)
