"""What the perception stage hands the model stage: per-modality findings for one window, typed.

Kept apart from :mod:`umq.runtime.analyzer` (which builds and reads them) so the analyzer stays one job: running
the front-ends and the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from streams.windows import Window
from umq.result import FaceReport


@dataclass
class ModalityPerception:
    """What perception found for one modality of one window.

    Attributes:
        x: the model's raw (unstandardised) input vector ``[D]`` on the model's device.
        present: False when the model must treat the modality as missing.
        reason: why it is missing (capture's or the cue's sentence); empty when present.
        flags: what the quality cues found ("too dark", "noisy: SNR 3 dB"), empty when nothing.
        cues: the cues as JSON, for the dashboard and exports.
        probs: the modality encoder's own class probabilities ``[7]`` on the device, None when it made none.
        idle: the source is there but had nothing to say (nobody spoke); the model sees it as missing.
    """

    x: torch.Tensor
    present: bool
    reason: str = ""
    flags: tuple[str, ...] = ()
    cues: dict = field(default_factory=dict)
    probs: torch.Tensor | None = None
    idle: bool = False


@dataclass
class Perceived:
    """What perception hands the model stage for one window.

    Attributes:
        modalities: result modality (``video``/``audio``/``text``) -> :class:`ModalityPerception`.
        faces: every face found in the newest analysed frame, the primary one first.
        text: the transcript text the text modality read.
        latency_ms: front-end name -> milliseconds.
    """

    window: Window
    modalities: dict[str, ModalityPerception]
    faces: tuple[FaceReport, ...] = ()
    text: str = ""
    latency_ms: dict[str, float] = field(default_factory=dict)
