"""The typed result of analysing one window: what the dashboard shows, the recorder stores, headless replay and
batch analysis write. One type, one JSON shape, validated on construction so a NaN or a malformed state never
reaches a user.

One modality vocabulary everywhere: ``video``, ``audio``, ``text`` (what capture delivers; the face and voice
front-ends are *how* the video and audio modalities are read). :data:`MODALITIES` is that list.

Schema history (the ``schema`` field of :meth:`Result.to_json`):

* 1: ``quality``/``state``/``reason`` dicts, comparison model and transcript under ``extra``.
* 2: a typed per-modality report (``modalities``: quality, state, reason, flags, cues, the modality's own
  prediction), ``baseline``, ``transcript``, ``faces``, ``no_evidence``, ``lab``; the state ``idle`` (a source
  that is there but had nothing to say: nobody spoke). The version-1 keys ``quality``, ``state``, ``reason`` are
  still written, so older readers keep working.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

SCHEMA_VERSION = 2
MODALITIES = ("video", "audio", "text")
STATES = ("ok", "low", "missing", "idle")
"""``ok``/``low`` from the calibrated quality; ``missing``: nothing usable arrived; ``idle``: the source is there
but had nothing to say in this window (a transcript with nobody speaking). The model treats ``idle`` as missing."""


def _check_probs(probs: Mapping[str, float], what: str) -> None:
    if not probs:
        raise ValueError(f"{what} needs class probabilities")
    if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probs.values()):
        raise ValueError(f"{what} probabilities must be finite and in [0, 1]: {dict(probs)}")
    if abs(sum(probs.values()) - 1.0) > 1e-3:
        raise ValueError(f"{what} probabilities must sum to 1, got {sum(probs.values()):.4f}")


def _round_probs(probs: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 5) for k, v in probs.items()}


@dataclass(frozen=True)
class Prediction:
    """A class distribution and its top label: a modality encoder's own, or the comparison model's."""

    probs: dict[str, float]

    def __post_init__(self) -> None:
        _check_probs(self.probs, "Prediction")

    @property
    def label(self) -> str:
        return max(self.probs, key=self.probs.__getitem__)

    @property
    def confidence(self) -> float:
        return float(self.probs[self.label])

    def to_json(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 5), "probs": _round_probs(self.probs)}

    @classmethod
    def from_json(cls, d: Mapping | None) -> Prediction | None:
        return cls(dict(d["probs"])) if d else None


@dataclass(frozen=True)
class ModalityReport:
    """What the analysis says about one modality in one window.

    Attributes:
        quality: how much of the modality's usefulness is left, in [0, 1] (0 when missing).
        state: one of :data:`STATES`, decided from ``quality`` alone (thresholds in ``umq.runtime.states``).
        reason: a sentence for a person when the state is not ``ok`` (empty when ``ok``).
        flags: what the quality cues found ("too dark", "noisy: SNR 3 dB"), shown beside the gauge; they
            explain the number, they are not a second verdict.
        cues: the measured cues (name -> value), for the dashboard and exports.
        prediction: the modality encoder's own class distribution, when it made one.
        left_out: the quality gate left it out of the fusion (its quality read below the gate,
            :attr:`umq.runtime.calibration.QualityCalibration.gate`): the fused answer does not use it.
    """

    quality: float
    state: str
    reason: str = ""
    flags: tuple[str, ...] = ()
    cues: dict = field(default_factory=dict)
    prediction: Prediction | None = None
    left_out: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.quality) and 0.0 <= self.quality <= 1.0):
            raise ValueError(f"quality must be in [0, 1], got {self.quality}")
        if self.state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {self.state!r}")

    @property
    def usable(self) -> bool:
        """True when the modality contributed evidence (``ok`` or ``low``, and not left out by the gate)."""
        return self.state in ("ok", "low") and not self.left_out

    def to_json(self) -> dict:
        d = {"quality": round(self.quality, 4), "state": self.state, "reason": self.reason,
             "flags": list(self.flags), "cues": self.cues,
             "prediction": self.prediction.to_json() if self.prediction else None}
        if self.left_out:  # only when it happens: with the gate off (shipped) the exports are unchanged
            d["left_out"] = True
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> ModalityReport:
        return cls(quality=float(d["quality"]), state=d["state"], reason=d.get("reason", ""),
                   flags=tuple(d.get("flags", ())), cues=dict(d.get("cues") or {}),
                   prediction=Prediction.from_json(d.get("prediction")), left_out=bool(d.get("left_out", False)))


@dataclass(frozen=True)
class FaceReport:
    """One face in the window's newest analysed frame.

    Attributes:
        track_id: stable across windows while the tracker keeps the face (survives short occlusions).
        box: ``(x, y, w, h)`` in frame pixels.
        primary: True for the face that drives fusion.
        score: the detector's confidence in [0, 1].
        prediction: that face's expression distribution, when it was analysed.
    """

    track_id: int
    box: tuple[int, int, int, int]
    primary: bool = False
    score: float = 1.0
    prediction: Prediction | None = None

    def to_json(self) -> dict:
        return {"track_id": self.track_id, "box": [int(v) for v in self.box], "primary": self.primary,
                "score": round(float(self.score), 4),
                "prediction": self.prediction.to_json() if self.prediction else None}

    @classmethod
    def from_json(cls, d: Mapping) -> FaceReport:
        return cls(track_id=int(d["track_id"]), box=tuple(int(v) for v in d["box"]),  # type: ignore[arg-type]
                   primary=bool(d.get("primary", False)), score=float(d.get("score", 1.0)),
                   prediction=Prediction.from_json(d.get("prediction")))


@dataclass(frozen=True)
class Result:
    """Emotion and per-modality quality for the window ``[t0, t1)``.

    Attributes:
        index: the window's running number in the session.
        probs: emotion label -> probability (sums to 1), in the model's label order.
        label, confidence: the most probable label and its probability; ``label`` is empty and ``no_evidence``
            True when no modality gave usable input or the fused distribution is near uniform: then the app
            says "no usable input" instead of naming a class.
        modalities: modality (:data:`MODALITIES`) -> :class:`ModalityReport`.
        routing: mixture-of-experts routing weights (one per expert, sum 1).
        latency_ms: stage name -> milliseconds spent on this window (and ``end_to_end`` from capture to result).
        health: the window's capture health summary (``Window.to_json()``).
        baseline: the quality-unaware comparison model's prediction (the quality lab shows it beside UMQ).
        transcript: the transcript text the window's text modality read.
        faces: every face found, the primary one first when there is one.
        lab: the quality-lab corruptions applied to this window (name -> setting), empty when none.
        extra: free-form diagnostics for humans; nothing in the app reads it.
    """

    index: int
    t0: float
    t1: float
    probs: dict[str, float]
    label: str
    confidence: float
    modalities: dict[str, ModalityReport]
    routing: list[float] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    health: dict = field(default_factory=dict)
    no_evidence: bool = False
    baseline: Prediction | None = None
    transcript: str = ""
    faces: tuple[FaceReport, ...] = ()
    lab: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_probs(self.probs, "Result")
        if self.no_evidence:
            if self.label:
                raise ValueError(f"a result without evidence has no label, got {self.label!r}")
        elif self.label not in self.probs:
            raise ValueError(f"label {self.label!r} is not one of {list(self.probs)}")
        if not self.modalities:
            raise ValueError("Result needs a report per modality")
        if self.routing and abs(sum(self.routing) - 1.0) > 1e-3:
            raise ValueError(f"routing weights must sum to 1, got {sum(self.routing):.4f}")

    # version-1 views, kept because they are what most readers want at a glance
    @property
    def quality(self) -> dict[str, float]:
        return {m: r.quality for m, r in self.modalities.items()}

    @property
    def state(self) -> dict[str, str]:
        return {m: r.state for m, r in self.modalities.items()}

    @property
    def reason(self) -> dict[str, str]:
        return {m: r.reason for m, r in self.modalities.items()}

    @property
    def top_label(self) -> str:
        """The most probable class even without evidence (for plots; never shown as a verdict)."""
        return max(self.probs, key=self.probs.__getitem__)

    @property
    def primary_face(self) -> FaceReport | None:
        return next((f for f in self.faces if f.primary), None)

    def to_json(self) -> dict:
        """The headless JSONL line; every float rounded to keep files small and diffable."""
        return {
            "schema": SCHEMA_VERSION,
            "index": self.index,
            "t0": round(self.t0, 4),
            "t1": round(self.t1, 4),
            "probs": _round_probs(self.probs),
            "label": self.label,
            "confidence": round(self.confidence, 5),
            "no_evidence": self.no_evidence,
            "quality": {k: round(v, 4) for k, v in self.quality.items()},
            "state": self.state,
            "reason": self.reason,
            "modalities": {m: r.to_json() for m, r in self.modalities.items()},
            "baseline": self.baseline.to_json() if self.baseline else None,
            "transcript": self.transcript,
            "faces": [f.to_json() for f in self.faces],
            "lab": dict(self.lab),
            "routing": [round(w, 4) for w in self.routing],
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "health": self.health,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, d: Mapping) -> Result:
        """Reads schema 2 and the version-1 lines written before it."""
        if "modalities" in d:
            mods = {m: ModalityReport.from_json(r) for m, r in d["modalities"].items()}
        else:
            mods = {m: ModalityReport(quality=float(d["quality"][m]), state=d["state"][m], reason=d["reason"][m])
                    for m in d["quality"]}
        extra = dict(d.get("extra") or {})
        baseline = Prediction.from_json(d.get("baseline") or extra.get("baseline"))
        return cls(index=d["index"], t0=d["t0"], t1=d["t1"], probs=dict(d["probs"]), label=d["label"],
                   confidence=d["confidence"], modalities=mods, routing=list(d.get("routing", [])),
                   latency_ms=dict(d.get("latency_ms", {})), health=d.get("health", {}),
                   no_evidence=bool(d.get("no_evidence", False)), baseline=baseline,
                   transcript=d.get("transcript", extra.get("text", "")),
                   faces=tuple(FaceReport.from_json(f) for f in d.get("faces", ())), lab=dict(d.get("lab", {})),
                   extra={k: v for k, v in extra.items() if k not in ("baseline", "text", "face_box", "lab")})
