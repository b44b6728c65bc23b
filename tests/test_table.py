"""The results table (app/table.py): a deliberate column list, one row per result, stable dtypes, a round trip."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest

from app.table import SCHEMA_VERSION, columns, read_table, result_row, results_frame, to_csv_text
from umq.labels import EMOTIONS
from umq.result import FaceReport, ModalityReport, Prediction, Result

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "data" / "results_columns.txt"


def _probs(top: str) -> dict[str, float]:
    return {e: (0.4 if e == top else 0.1) for e in EMOTIONS}


def _result(i: int, *, face: bool = True, evidence: bool = True) -> Result:
    mods = {"video": ModalityReport(0.9, "ok", prediction=Prediction(_probs("happy"))),
            "audio": ModalityReport(0.3, "low", "noisy: SNR 3 dB", ("noisy: SNR 3 dB",), {"snr_db": 3.0},
                                    Prediction(_probs("sad"))),
            "text": ModalityReport(0.0, "idle", "nobody spoke")}
    faces = (FaceReport(7, (10, 20, 30, 40), primary=True, score=0.9), FaceReport(8, (1, 2, 3, 4))) if face else ()
    return Result(index=i, t0=i * 0.5, t1=i * 0.5 + 2.0, probs=_probs("happy"), label="happy" if evidence else "",
                  confidence=0.4, modalities=mods, no_evidence=not evidence, baseline=Prediction(_probs("angry")),
                  transcript="", faces=faces, lab={"blur": "0.5"})


def test_columns_match_the_committed_snapshot():
    """A change of columns must be deliberate: update tests/data/results_columns.txt, SCHEMA_VERSION and
    docs/output-format.md together."""
    lines = SNAPSHOT.read_text().splitlines()
    assert int(re.search(r"schema_version (\d+)", lines[0]).group(1)) == SCHEMA_VERSION
    assert columns() == lines[1:]


def test_every_column_is_documented():
    doc = (ROOT / "docs" / "output-format.md").read_text()
    generic = {c.replace("video_", "<m>_").replace("audio_", "<m>_").replace("text_", "<m>_") for c in columns()}
    generic = {re.sub(r"p_(" + "|".join(EMOTIONS) + ")$", "p_<emotion>", c) for c in generic}
    missing = [c for c in sorted(generic) if f"`{c}`" not in doc]
    assert not missing, f"docs/output-format.md does not document {missing}"


def test_one_row_per_result_with_the_values_of_the_result():
    rs = [_result(0), _result(1, face=False, evidence=False)]
    df = results_frame(rs, source="x.mp4", start_unix=1000.0)
    assert list(df.columns) == columns() and len(df) == 2
    first, second = df.iloc[0], df.iloc[1]
    assert first["label"] == "happy" and second["label"] == "" and second["no_evidence"] == 1
    assert first["timestamp_unix"] == 1000.0 and second["timestamp_unix"] == 1000.5
    assert (first["video_success"], first["audio_success"], first["text_success"]) == (1, 1, 0)
    assert first["audio_state"] == "low" and first["audio_flags"] == "noisy: SNR 3 dB"
    assert first["audio_label"] == "sad" and first["video_label"] == "happy" and first["text_label"] == ""
    assert pd.isna(first["text_p_happy"]) and first["video_p_happy"] == 0.4
    assert first["baseline_label"] == "angry" and first["n_faces"] == 2
    assert (first["face_id"], first["face_x"], first["face_y"], first["face_w"], first["face_h"]) == (7, 10, 20, 30, 40)
    assert pd.isna(second["face_id"]) and second["n_faces"] == 0
    assert first["lab"] == "blur=0.5"
    assert sum(first[f"p_{e}"] for e in EMOTIONS) == pytest.approx(1.0)


def test_csv_round_trip_keeps_values_and_dtypes():
    df = results_frame([_result(0), _result(1, face=False, evidence=False)], source="s")
    back = read_table(io.StringIO(to_csv_text(df)))
    pd.testing.assert_frame_equal(back, df)
    assert str(back["face_id"].dtype) == "Int64" and back["label"].tolist() == ["happy", ""]


def test_an_empty_table_has_the_columns_and_types():
    df = results_frame([], source="s")
    assert list(df.columns) == columns() and len(df) == 0
    assert str(df["window"].dtype) == "int64" and str(df["p_happy"].dtype) == "float64"


def test_a_row_is_plain_python_for_json_consumers():
    row = result_row(_result(0), "s")
    assert row["schema_version"] == SCHEMA_VERSION and row["window"] == 0 and row["timestamp_unix"] is None
