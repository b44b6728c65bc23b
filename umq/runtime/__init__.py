"""The runtime model: a :class:`~streams.windows.Window` in, a :class:`~umq.result.Result` out.

* :mod:`.analyzer` runs the perception front-ends and the runtime UMQ model on one window (:class:`Analyzer`,
  configured by :class:`AnalyzerConfig`);
* :mod:`.features` builds the per-modality input vectors (shared with training, so both see the same numbers);
* :mod:`.states` is the one rule that turns a calibrated quality and the cue findings into ok/low/missing/idle;
* :mod:`.calibration` maps the estimator's score to the gauge a person reads;
* :mod:`.lab` is the quality lab: corruptions applied to a window before perception;
* :mod:`.fast` picks the fastest verified forward (eager, traced, CUDA graph).

Training and calibration of these models live in :mod:`umq.training.runtime`. The names below are the public
surface the app imports (``from umq.runtime import Analyzer``); they load on first use, so importing one piece
does not pull in every model.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "Analyzer": "analyzer", "AnalyzerConfig": "analyzer", "ASSETS": "analyzer", "load_runtime_model": "analyzer",
    "Perceived": "analyzer",
    "LabSettings": "lab", "QualityLab": "lab",
    "NO_INPUT_REASON": "states", "modality_state": "states",
    "QualityCalibration": "calibration",
    "DIMS": "features", "MODALITIES": "features", "encoder_digest": "features",
    "eager_forward": "fast",
}
__all__ = ["ASSETS", "Analyzer", "AnalyzerConfig", "DIMS", "LabSettings", "MODALITIES", "NO_INPUT_REASON",
           "Perceived", "QualityCalibration", "QualityLab", "eager_forward", "encoder_digest", "load_runtime_model",
           "modality_state"]

if TYPE_CHECKING:
    from umq.runtime.analyzer import ASSETS, Analyzer, AnalyzerConfig, Perceived, load_runtime_model
    from umq.runtime.calibration import QualityCalibration
    from umq.runtime.fast import eager_forward
    from umq.runtime.features import DIMS, MODALITIES, encoder_digest
    from umq.runtime.lab import LabSettings, QualityLab
    from umq.runtime.states import NO_INPUT_REASON, modality_state


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'umq.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"umq.runtime.{_PUBLIC[name]}"), name)
