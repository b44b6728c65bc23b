"""The batch's output folder: per-input CSV and JSONL, ``summary.csv`` and ``errors.csv``, all written atomically.

Every file is written under a temporary name in the same folder and renamed over its final name once complete,
so a batch killed at any moment leaves only whole files (and stray ``.tmp`` files, which a rerun removes). An
input counts as done when both its files exist and the JSONL ends with its footer for the same input SHA-256;
``summary.csv`` is rewritten after every input from one row per input (rows of inputs done in an earlier run are
read back from their CSV), so a resumed batch never duplicates rows.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from umq.labels import EMOTIONS
from umq.result import MODALITIES, STATES

from ..table import read_table, to_csv_text
from .inputs import BatchInput

_UMASK = os.umask(0)
os.umask(_UMASK)
SUMMARY = "summary.csv"
ERRORS = "errors.csv"


class OutputError(OSError):
    """The output folder cannot be created or written: said before any work starts."""


def check_writable(out: Path) -> None:
    """Create ``out`` and prove a file can be written and renamed there; raises :class:`OutputError`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.replace(tmp, tmp + ".ok")
        os.unlink(tmp + ".ok")
    except OSError as exc:
        raise OutputError(f"output folder {out} is not writable ({exc.strerror or exc}); choose another with "
                          f"--out or fix its permissions") from None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder, fsync'd, then renamed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are ordinary files
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(out: Path) -> int:
    """Delete temporary files left by a killed batch; returns how many."""
    n = 0
    for p in out.glob(".*.tmp"):
        try:
            p.unlink()
            n += 1
        except OSError:
            pass
    return n


def paths_of(out: Path, item: BatchInput) -> tuple[Path, Path]:
    return out / f"{item.name}.csv", out / f"{item.name}.jsonl"


def read_footer(jsonl: Path) -> dict | None:
    """The footer of a complete results JSONL (its last line), else ``None``."""
    try:
        with open(jsonl, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        d = json.loads(last)
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and d.get("type") == "footer" else None


def completed(out: Path, item: BatchInput, sha: str | None) -> dict | None:
    """The footer when ``item``'s outputs are complete (and, given ``sha``, belong to that exact input)."""
    csv, jsonl = paths_of(out, item)
    if not csv.is_file():
        return None
    footer = read_footer(jsonl)
    if footer is None or (sha is not None and footer.get("input_sha256") != sha):
        return None
    return footer


def summary_row(item: BatchInput, df: pd.DataFrame | None, footer: dict | None, error: str | None) -> dict:
    """One row of summary.csv: duration, windows, share of each modality state, dominant emotion, mean
    probabilities, failed windows and the input's error."""
    row: dict = {"input": str(item.path), "name": item.name, "kind": item.kind,
                 "status": "failed" if error else "ok", "duration_s": None, "windows": 0}
    footer = footer or {}
    if df is not None and len(df):
        row["duration_s"] = footer.get("duration_s")
        row["windows"] = len(df)
        for m in MODALITIES:
            shares = df[f"{m}_state"].value_counts(normalize=True)
            for s in STATES:
                row[f"{m}_{s}"] = round(float(shares.get(s, 0.0)), 4)
        labelled = df["label"][df["label"] != ""]
        row["no_evidence"] = round(float(df["no_evidence"].mean()), 4)
        row["dominant_emotion"] = labelled.value_counts().idxmax() if len(labelled) else ""
        for e in EMOTIONS:
            row[f"mean_p_{e}"] = round(float(df[f"p_{e}"].mean()), 5)
    row["failed_windows"] = footer.get("failed_windows", 0)
    row["error"] = error or footer.get("last_error", "") or ""
    return row


def summary_columns() -> list[str]:
    cols = ["input", "name", "kind", "status", "duration_s", "windows"]
    cols += [f"{m}_{s}" for m in MODALITIES for s in STATES]
    cols += ["no_evidence", "dominant_emotion", *(f"mean_p_{e}" for e in EMOTIONS), "failed_windows", "error"]
    return cols


def done_row(out: Path, item: BatchInput, footer: dict) -> dict:
    """The summary row of an input whose outputs are complete on disk (read back from its CSV)."""
    return summary_row(item, read_table(paths_of(out, item)[0]), footer, None)


def write_summary(out: Path, items: list[BatchInput], rows: dict[Path, dict]) -> pd.DataFrame:
    """Write ``summary.csv``: one row per input that has one (done or failed), in input order."""
    df = pd.DataFrame([rows[i.path] for i in items if i.path in rows], columns=summary_columns())
    write_atomic(out / SUMMARY, to_csv_text(df))
    return df


def write_errors(out: Path, items: list[BatchInput], errors: dict[Path, str]) -> None:
    """``errors.csv``: every input that failed in this run, with the reason (a header only when none did)."""
    rows = [{"input": str(i.path), "name": i.name, "error": errors[i.path]} for i in items if i.path in errors]
    write_atomic(out / ERRORS, to_csv_text(pd.DataFrame(rows, columns=["input", "name", "error"])))
