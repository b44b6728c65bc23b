"""The typed result of analysing one window: what the dashboard shows, the recorder stores and headless replay
writes. One type, one JSON shape, validated on construction so a NaN or a malformed state never reaches a user.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

STATES = ("ok", "low", "missing")


@dataclass(frozen=True)
class Result:
    """Emotion and per-modality quality for the window ``[t0, t1)``.

    Attributes:
        index: the window's running number in the session.
        probs: emotion label -> probability (sums to 1), in the model's label order.
        label, confidence: the most probable label and its probability.
        quality: modality -> estimated quality in [0, 1] (the UMQ quality estimator's output).
        state: modality -> ``ok`` / ``low`` / ``missing``.
        reason: modality -> a short explanation when not ``ok`` ("camera disconnected", "too dark",
            "noisy: SNR 3 dB", "no transcript"); empty when ``ok``.
        routing: mixture-of-experts routing weights (one per expert, sum 1).
        latency_ms: stage name -> milliseconds spent on this window (and ``end_to_end`` from capture to result).
        health: the window's capture health summary (``Window.to_json()``).
        extra: optional comparisons, e.g. the quality-unaware baseline's ``probs`` and ``label`` in the lab.
    """

    index: int
    t0: float
    t1: float
    probs: dict[str, float]
    label: str
    confidence: float
    quality: dict[str, float]
    state: dict[str, str]
    reason: dict[str, str]
    routing: list[float] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    health: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.probs:
            raise ValueError("Result needs class probabilities")
        if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in self.probs.values()):
            raise ValueError(f"probabilities must be finite and in [0, 1]: {self.probs}")
        if abs(sum(self.probs.values()) - 1.0) > 1e-3:
            raise ValueError(f"probabilities must sum to 1, got {sum(self.probs.values()):.4f}")
        if self.label not in self.probs:
            raise ValueError(f"label {self.label!r} is not one of {list(self.probs)}")
        if set(self.quality) != set(self.state) or set(self.state) != set(self.reason):
            raise ValueError("quality, state and reason must name the same modalities")
        for m, q in self.quality.items():
            if not (math.isfinite(q) and 0.0 <= q <= 1.0):
                raise ValueError(f"quality of {m} must be in [0, 1], got {q}")
            if self.state[m] not in STATES:
                raise ValueError(f"state of {m} must be one of {STATES}, got {self.state[m]!r}")
        if self.routing and abs(sum(self.routing) - 1.0) > 1e-3:
            raise ValueError(f"routing weights must sum to 1, got {sum(self.routing):.4f}")

    def to_json(self) -> dict:
        """The headless JSONL line; every float rounded to keep files small and diffable."""
        return {
            "index": self.index,
            "t0": round(self.t0, 4),
            "t1": round(self.t1, 4),
            "probs": {k: round(v, 5) for k, v in self.probs.items()},
            "label": self.label,
            "confidence": round(self.confidence, 5),
            "quality": {k: round(v, 4) for k, v in self.quality.items()},
            "state": dict(self.state),
            "reason": dict(self.reason),
            "routing": [round(w, 4) for w in self.routing],
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "health": self.health,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, d: dict) -> "Result":
        return cls(index=d["index"], t0=d["t0"], t1=d["t1"], probs=d["probs"], label=d["label"],
                   confidence=d["confidence"], quality=d["quality"], state=d["state"], reason=d["reason"],
                   routing=d.get("routing", []), latency_ms=d.get("latency_ms", {}), health=d.get("health", {}),
                   extra=d.get("extra", {}))
