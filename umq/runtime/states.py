"""The one rule that turns numbers into what a person reads: a modality's state and whether there is evidence.

Every threshold the dashboard, the exports and the CLI summaries depend on lives here, so that the badge and the
gauge can never disagree: the state comes from the (calibrated) quality number alone; a cue finding ("too dark",
"noisy: SNR -3 dB") is shown beside it as a flag (:attr:`umq.result.ModalityReport.flags`) that explains the
number, never as a second verdict (see :func:`modality_state`).

* ``missing``: capture delivered nothing or there is nothing to read (no face in view, mic silent, no
  transcript source). The model is told.
* ``idle``: the source is there but had nothing to say in this window (a transcript source with nobody
  speaking). The model is told exactly as for ``missing``; the person sees the difference.
* ``low``: quality below :data:`LOW_QUALITY`. Below the quality
  gate (:attr:`umq.runtime.calibration.QualityCalibration.gate`, at most :data:`LOW_QUALITY`, fitted with the
  calibration) a low modality is also left out of the fusion, and its reason says so first.
* ``ok``: otherwise.

No evidence (label withheld, "no usable input"): no modality is ``ok`` or ``low`` and used by the fusion, or the
fused distribution is near uniform (its top probability within :data:`NEAR_UNIFORM_MARGIN` of ``1 / classes``).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

LOW_QUALITY = 0.5
"""Below this calibrated quality a modality is ``low``: it keeps less than half of its clean usefulness."""

NEAR_UNIFORM_MARGIN = 0.05
"""A fused distribution whose top class is less than this above chance (1/7 for seven classes) names no class."""

NO_INPUT_REASON = "no usable input"


def modality_state(present: bool, quality: float, idle: bool = False) -> str:
    """``missing``/``idle``/``low``/``ok`` for one modality (see the module docstring).

    Cue flags do not enter: until the ninth session a flag also made the modality ``low``, and the screen then
    showed "voice 0.89 LOW noisy" - two verdicts that disagree, the complaint of issue 17. The calibrated number
    is the modality's measured usefulness relative to clean (docs/results.md, section 1): on the validation
    ladder, in white noise at 2 dB SNR the voice ensemble keeps 0.90 of its clean accuracy and the gauge reads
    0.77, so the voice is ``ok``, flagged "noisy"; 15 dB under a noise floor it keeps 0.14 and reads 0.18,
    ``low``. The fusion uses the voice either way."""
    if not present:
        return "idle" if idle else "missing"
    return "low" if quality < LOW_QUALITY else "ok"


def state_reason(state: str, reason: str, flags: Iterable[str], quality: float,
                 left_out_below: float | None = None) -> str:
    """The sentence shown with the badge: the capture/cue reason when missing or idle, the flags or the number
    when low, nothing when ok. ``left_out_below``: the quality gate, when the modality was left out of the
    fusion for reading below it (:attr:`umq.runtime.calibration.QualityCalibration.gate`); said first, because
    it changes what the fused answer rests on."""
    if state in ("missing", "idle"):
        return reason or ("nobody spoke" if state == "idle" else "missing")
    if state == "low":
        found = "; ".join(flags) or f"low quality ({quality:.2f})"
        if left_out_below is not None:
            return f"left out of the fusion (quality {quality:.2f} < {left_out_below:.2f}); {found}"
        return found
    return ""


def has_evidence(states: Mapping[str, str], probs: Mapping[str, float]) -> bool:
    """True when at least one modality is usable and the fused distribution names a class."""
    if not any(s in ("ok", "low") for s in states.values()):
        return False
    return max(probs.values()) - 1.0 / len(probs) >= NEAR_UNIFORM_MARGIN
