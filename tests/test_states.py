"""The one rule from numbers to what a person reads: states and the "no usable input" decision."""
from __future__ import annotations

from umq.runtime.states import LOW_QUALITY, NEAR_UNIFORM_MARGIN, has_evidence, modality_state, state_reason

UNIFORM = {e: 1 / 7 for e in "abcdefg"}
PEAKED = {**{e: 0.1 for e in "abcdef"}, "g": 0.4}


def test_state_comes_from_the_number_alone():
    assert modality_state(True, LOW_QUALITY + 0.01) == "ok"
    assert modality_state(True, LOW_QUALITY - 0.01) == "low"
    assert modality_state(False, 0.9) == "missing" and modality_state(False, 0.0, idle=True) == "idle"


def test_reason_names_flags_when_low_and_nothing_when_ok():
    assert state_reason("ok", "", ("blurred",), 0.9) == ""
    assert state_reason("low", "", ("too dark", "blurred"), 0.2) == "too dark; blurred"
    assert state_reason("low", "", (), 0.31) == "low quality (0.31)"
    assert state_reason("idle", "", (), 0.0) == "nobody spoke"
    # left out of the fusion by the quality gate: said first, with the number and the gate
    assert state_reason("low", "", ("too dark",), 0.08, left_out_below=0.15) == (
        "left out of the fusion (quality 0.08 < 0.15); too dark")


def test_no_evidence_when_nothing_usable_or_near_uniform():
    assert not has_evidence({"video": "missing", "audio": "missing", "text": "idle"}, PEAKED)
    assert not has_evidence({"video": "ok"}, UNIFORM)
    near = {**{e: (1 - (1 / 7 + NEAR_UNIFORM_MARGIN / 2)) / 6 for e in "abcdef"}, "g": 1 / 7 + NEAR_UNIFORM_MARGIN / 2}
    assert not has_evidence({"video": "ok"}, near)
    assert has_evidence({"video": "low", "audio": "missing"}, PEAKED)
