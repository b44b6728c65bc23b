"""app-text scoring reads the text head's own prediction from schema-2 result lines."""
from __future__ import annotations

import json

from umq.labels import EMOTIONS
from umq.training.text.appcheck import CheckLine, score_replay


def _probs(label: str) -> dict:
    return {e: (0.8 if e == label else 0.2 / 6) for e in EMOTIONS}


def test_text_head_and_fused_scores_come_from_overlapping_windows(tmp_path):
    lines = [CheckLine(1.0, 2.0, "yay", EMOTIONS.index("happy")), CheckLine(5.0, 6.0, "oh no", EMOTIONS.index("sad"))]
    rows = [{"t0": 0.5, "t1": 2.5, "probs": _probs("happy"), "state": {"text": "ok"},
             "modalities": {"text": {"prediction": {"probs": _probs("happy")}}}},
            {"t0": 4.5, "t1": 6.5, "probs": _probs("neutral"), "state": {"text": "ok"},
             "modalities": {"text": {"prediction": {"probs": _probs("sad")}}}},
            {"t0": 8.0, "t1": 10.0, "probs": _probs("neutral"), "state": {"text": "idle"}, "modalities": {}}]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    rep = score_replay(lines, path)
    assert rep["scored"] == 2
    assert rep["text_head"]["accuracy"] == 1.0 and rep["fused"]["accuracy"] == 0.5
    assert rep["text_states"] == {"ok": 2, "idle": 1}
