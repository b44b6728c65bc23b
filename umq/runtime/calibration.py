"""Calibrated quality: the estimator's rank-guided score mapped to a number a person can read.

The rank-guided estimator only learns an *order* (clean above mildly corrupted above badly corrupted), so its
raw score has no unit. The gauge shows instead the modality's expected usefulness relative to clean input:
1 = as good as clean, 0.5 = half as reliable, 0 = useless. The mapping is monotone (piecewise linear, fitted
on validation data so that each corruption kind and severity reads, on average, its measured relative accuracy:
``umq.training.runtime.calibrate.fit_modality``) and stored as knots per modality in
``assets/runtime/calibration.json``; between knots it interpolates linearly. Without the file the raw score is
shown unchanged and :attr:`QualityCalibration.fitted` is False.

The same file holds the **quality gate** (:attr:`QualityCalibration.gate`): a present modality whose calibrated
quality reads below it is left out of the fusion, exactly as if capture had flagged it missing. It is chosen
on the fit half of the validation data by ``python -m umq.training.runtime.gate`` (docs/results.md), because a
modality whose encoder is near chance is no evidence, and the fused answer must not be worse with it than
without it. 0 = no gate.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from umq.runtime.states import LOW_QUALITY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QualityCalibration:
    """Monotone maps raw score -> calibrated quality, per result modality (``video``/``audio``/``text``).

    Attributes:
        knots: modality -> ``(x, y)`` with ``x`` increasing raw scores and ``y`` non-decreasing qualities.
        meta: how it was fitted (data, date, sizes) — written by the fitting command, read by nobody at run time.
        gate: calibrated quality below which a present modality is left out of the fusion (0 = never).
    """

    knots: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    gate: float = 0.0

    def __post_init__(self) -> None:
        for m, (x, y) in self.knots.items():
            if len(x) != len(y) or len(x) < 2:
                raise ValueError(f"calibration of {m}: need >= 2 knots with matching x and y")
            if np.any(np.diff(x) < 0) or np.any(np.diff(y) < -1e-9):
                raise ValueError(f"calibration of {m} must be monotone (x increasing, y non-decreasing)")
        if not (0.0 <= self.gate <= LOW_QUALITY):
            # a modality left out must read "low" on screen, never "ok"
            raise ValueError(f"quality gate must be in [0, {LOW_QUALITY}] (the low-quality threshold), got {self.gate}")

    @property
    def fitted(self) -> bool:
        return bool(self.knots)

    def __call__(self, modality: str, raw: float) -> float:
        if modality not in self.knots:
            return float(min(max(raw, 0.0), 1.0))
        x, y = self.knots[modality]
        return float(min(max(np.interp(raw, x, y), 0.0), 1.0))

    def raw_threshold(self, modality: str, quality: float) -> float:
        """The raw score below which the calibrated quality of ``modality`` is below ``quality``: the gate
        compared on the device, where the raw score lives (no host round trip). ``-inf``: never below;
        ``inf``: always below."""
        if quality <= 0.0:
            return -math.inf
        if modality not in self.knots:
            return quality  # identity map (clipped to [0, 1])
        x, y = (np.asarray(v, dtype=np.float64) for v in self.knots[modality])
        above = np.flatnonzero(y >= quality)
        if len(above) == 0:
            return math.inf
        j = int(above[0])
        if j == 0:
            return -math.inf
        return float(x[j - 1] + (quality - y[j - 1]) / (y[j] - y[j - 1]) * (x[j] - x[j - 1]))

    def raw_thresholds(self, modalities: tuple[str, ...] | list[str]) -> np.ndarray | None:
        """:meth:`raw_threshold` of :attr:`gate` per modality, in the order given; None when there is no gate."""
        if self.gate <= 0.0:
            return None
        return np.array([self.raw_threshold(m, self.gate) for m in modalities], dtype=np.float64)

    def with_gate(self, gate: float) -> QualityCalibration:
        return QualityCalibration(self.knots, self.meta, gate)

    def to_json(self) -> dict:
        return {"knots": {m: {"x": list(x), "y": list(y)} for m, (x, y) in self.knots.items()}, "meta": self.meta,
                "gate": self.gate}

    @classmethod
    def from_json(cls, d: dict) -> QualityCalibration:
        knots = {m: (tuple(float(v) for v in k["x"]), tuple(float(v) for v in k["y"]))
                 for m, k in d.get("knots", {}).items()}
        return cls(knots, dict(d.get("meta", {})), float(d.get("gate", 0.0)))

    @classmethod
    def load(cls, path: str | Path) -> QualityCalibration:
        """The calibration at ``path``; identity (with a warning) when it is absent or unreadable."""
        p = Path(path)
        if not p.exists():
            log.warning("no quality calibration at %s: gauges show the estimator's raw score", p)
            return cls()
        try:
            return cls.from_json(json.loads(p.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as e:
            log.warning("quality calibration %s unreadable (%s): gauges show the estimator's raw score", p, e)
            return cls()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
