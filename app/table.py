"""The results table: one row per analysed window, the shape researchers read with pandas.

One module builds it for every exporter (``python -m app analyze``, the Python API, the dashboard's CSV export),
so a column means the same thing wherever a table comes from. The layout follows OpenFace's CSV where it fits
(one row per time step, ``timestamp``, ``success``, ``face_id``, box columns) and is documented column by column
in ``docs/output-format.md``. :data:`SCHEMA_VERSION` is written in every row; a change of columns bumps it and
the committed snapshot (``tests/data/results_columns.txt``) together, so a change is always deliberate.
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from umq.labels import EMOTIONS
from umq.result import MODALITIES, Result

SCHEMA_VERSION = 1
"""Version of the table's column layout (not of :data:`umq.result.SCHEMA_VERSION`, the JSON lines' shape)."""

STATE_CODES = {"ok": 0, "low": 1, "missing": 2, "idle": 3}
"""Numeric codes of the modality states (for numeric-only consumers such as the LSL quality stream)."""


def _probs(prefix: str) -> list[str]:
    return [f"{prefix}p_{e}" for e in EMOTIONS]


def columns() -> list[str]:
    """Every column, in order. The per-modality block repeats for ``video``, ``audio``, ``text``."""
    cols = ["schema_version", "source", "window", "t0", "t1", "timestamp_unix", "label", "no_evidence",
            "confidence", *_probs("")]
    for m in MODALITIES:
        cols += [f"{m}_quality", f"{m}_state", f"{m}_reason", f"{m}_flags", f"{m}_success", f"{m}_label",
                 *_probs(f"{m}_")]
    cols += ["baseline_label", "baseline_confidence", "face_id", "face_x", "face_y", "face_w", "face_h",
             "face_score", "n_faces", "transcript", "lab"]
    return cols


def result_row(r: Result, source: str, start_unix: float | None = None) -> dict:
    """One row of the table for one result (see :func:`columns` for the order)."""
    row: dict = {"schema_version": SCHEMA_VERSION, "source": source, "window": r.index, "t0": round(r.t0, 4),
                 "t1": round(r.t1, 4),
                 "timestamp_unix": round(start_unix + r.t0, 4) if start_unix is not None else None,
                 "label": r.label, "no_evidence": int(r.no_evidence), "confidence": round(r.confidence, 5)}
    for e in EMOTIONS:
        row[f"p_{e}"] = round(float(r.probs.get(e, 0.0)), 5)
    for m in MODALITIES:
        rep = r.modalities.get(m)
        pred = rep.prediction if rep is not None else None
        row[f"{m}_quality"] = round(rep.quality, 4) if rep is not None else None
        row[f"{m}_state"] = rep.state if rep is not None else "missing"
        row[f"{m}_reason"] = rep.reason if rep is not None else ""
        row[f"{m}_flags"] = "; ".join(rep.flags) if rep is not None else ""
        row[f"{m}_success"] = int(rep is not None and rep.usable)
        row[f"{m}_label"] = pred.label if pred is not None else ""
        for e in EMOTIONS:
            row[f"{m}_p_{e}"] = round(float(pred.probs.get(e, 0.0)), 5) if pred is not None else None
    row["baseline_label"] = r.baseline.label if r.baseline else ""
    row["baseline_confidence"] = round(r.baseline.confidence, 5) if r.baseline else None
    face = r.primary_face
    row["face_id"] = face.track_id if face else None
    x, y, w, h = face.box if face else (None, None, None, None)
    row.update(face_x=x, face_y=y, face_w=w, face_h=h, face_score=round(face.score, 4) if face else None)
    row["n_faces"] = len(r.faces)
    row["transcript"] = r.transcript
    row["lab"] = "; ".join(f"{k}={v}" for k, v in sorted(r.lab.items()))
    return row


_INTS = ["schema_version", "window", "no_evidence", "n_faces", *(f"{m}_success" for m in MODALITIES)]
_NULLABLE_INTS = ["face_id", "face_x", "face_y", "face_w", "face_h"]
_STRINGS = ["source", "label", "baseline_label", "transcript", "lab",
            *(f"{m}_{k}" for m in MODALITIES for k in ("state", "reason", "flags", "label"))]


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Stable dtypes whatever the rows hold (an empty table, a session without faces): ints, nullable ints for
    the face box, strings for text, floats for the rest."""
    for c in df.columns:
        if c in _INTS:
            df[c] = df[c].astype("int64")
        elif c in _NULLABLE_INTS:
            df[c] = df[c].astype("Int64")
        elif c in _STRINGS:
            df[c] = df[c].fillna("").astype(str)
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def results_frame(results: Iterable[Result], source: str = "", start_unix: float | None = None) -> pd.DataFrame:
    """The results table for ``results`` of one input.

    Args:
        results: the windows' results, in order.
        source: what was analysed (a path or a name), repeated in every row so tables can be concatenated.
        start_unix: the session's start time (Unix seconds, from a session's ``meta.json``); gives
            ``timestamp_unix = start_unix + t0``. ``None`` leaves that column empty (a video file has no
            reliable wall-clock start).
    """
    rows = [result_row(r, source, start_unix) for r in results]
    return _typed(pd.DataFrame(rows, columns=columns()))


def read_table(path, **kwargs) -> pd.DataFrame:
    """Read a results CSV written by :func:`write_csv` with the table's dtypes (empty strings stay empty)."""
    df = pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in columns() if c not in _STRINGS},
                     **kwargs)
    return _typed(df)


def to_csv_text(df: pd.DataFrame) -> str:
    """The CSV text of a table (UTF-8, ``.`` decimals, no index): what every exporter writes."""
    return df.to_csv(index=False, lineterminator="\n")


def start_unix_of(meta: dict) -> float | None:
    """The session's start in Unix seconds from its ``meta.json`` (``started_at_unix``), else ``None``."""
    v = meta.get("started_at_unix") if isinstance(meta, dict) else None
    return float(v) if isinstance(v, (int, float)) else None
