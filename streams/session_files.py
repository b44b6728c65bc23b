"""The on-disk pieces of a session folder (see ``docs/session-format.md``): file names, the WAV header, tolerant
JSON lines and the ``meta.json`` schema. :mod:`streams.session` reads folders with them and re-exports them;
:mod:`streams.recorder` writes with them.
"""
from __future__ import annotations

import json
import logging
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .packets import AUDIO_RATE, Modality

if TYPE_CHECKING:
    from .buffer import WindowConfig

log = logging.getLogger("streams.session")  # one logger for the reader and its helpers

FORMAT_NAME = "umq-session"
FORMAT_VERSION = 1

META = "meta.json"
VIDEO = "video.mjpeg"
VIDEO_INDEX = "video_frames.jsonl"
AUDIO = "audio.wav"
AUDIO_INDEX = "audio_chunks.jsonl"
TRANSCRIPT = "transcript.jsonl"
EVENTS = "events.jsonl"
WINDOWS = "windows.jsonl"
DATA_FILES = (VIDEO, VIDEO_INDEX, AUDIO, AUDIO_INDEX, TRANSCRIPT, EVENTS)

WAV_HEADER_BYTES = 44
PCM_SCALE = 32767.0


class SessionError(ValueError):
    """A folder that is not a readable session; the message names the folder and what is wrong."""


# -- WAV header --------------------------------------------------------------------------------------------
def wav_header(n_samples: int, rate: int = AUDIO_RATE, channels: int = 1, bits: int = 16) -> bytes:
    """A canonical 44-byte PCM WAV header for ``n_samples`` frames (sizes patched in place as the file grows)."""
    block = channels * bits // 8
    data = n_samples * block
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data, b"WAVE", b"fmt ", 16, 1, channels, rate,
                       rate * block, block, bits, b"data", data)


@dataclass(frozen=True)
class WavInfo:
    rate: int
    channels: int
    bits: int
    data_offset: int
    n_samples: int
    header_ok: bool  # False when the header's sizes disagree with the file size (crashed writer)


def read_wav_info(path: Path) -> WavInfo:
    """Parse a PCM WAV header, trusting the *file size* over the header's sizes when they disagree."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise SessionError(f"{path}: not a WAV file (no RIFF/WAVE header)")
        fmt = None
        pos = 12
        while True:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                raise SessionError(f"{path}: WAV file has no data chunk")
            cid, csize = struct.unpack("<4sI", chunk)
            if cid == b"fmt ":
                raw = f.read(16)
                if len(raw) < 16:
                    raise SessionError(f"{path}: WAV fmt chunk is cut off")
                fmt = struct.unpack("<HHIIHH", raw)
            elif cid == b"data":
                if fmt is None:
                    raise SessionError(f"{path}: WAV data chunk before its fmt chunk")
                fmt_tag, channels, rate, _, block, bits = fmt
                if fmt_tag != 1 or bits != 16 or channels < 1 or block != 2 * channels:
                    raise SessionError(f"{path}: expected 16-bit PCM, got format {fmt_tag} with {bits} bits, "
                                       f"{channels} channels")
                data_offset = pos + 8
                available = (size - data_offset) // block
                declared = csize // block
                ok = declared == available
                return WavInfo(rate, channels, bits, data_offset, available if not ok else declared, ok)
            pos += 8 + csize + (csize & 1)


# -- tolerant JSON lines -----------------------------------------------------------------------------------
def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages ("array", "null", ...)."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_jsonl(path: Path, numeric: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> list[dict]:
    """Complete JSON lines of ``path`` that are JSON objects of the expected shape.

    Skipped with one warning that names the file and counts them, never raised (a damaged line must not hide the
    rest): a trailing line without newline (a write cut by a crash), lines that do not parse, lines that parse
    to something other than an object (``[1,2,3]``, ``null``), objects lacking a key of ``numeric`` or holding a
    value that is not a finite number there or under a present ``optional`` key. Unknown keys are ignored.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("%s is unreadable (%s); ignored", path, exc)
        return []
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail.strip():
        log.warning("%s: ignoring a partial last line (%d bytes): the writer was interrupted", path, len(tail))
    out = []
    bad = shape = 0
    first_shape = ""
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        why = _shape_problem(row, numeric, optional)
        if why:
            shape += 1
            first_shape = first_shape or f"line {no}: {why}"
            continue
        out.append(row)
    if bad:
        log.warning("%s: skipped %d damaged lines", path, bad)
    if shape:
        log.warning("%s: skipped %d lines of the wrong shape (first: %s)", path, shape, first_shape)
    return out


def _shape_problem(row: Any, numeric: tuple[str, ...], optional: tuple[str, ...]) -> str:
    """Why ``row`` is not an object with finite numbers under ``numeric`` (and ``optional`` when present)."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {json_type(row)}"
    for k in numeric:
        if k not in row:
            return f"no {k!r}"
    for k in numeric:
        if not _is_number(row[k]):
            return f"{k!r} is {row[k]!r:.40}, not a finite number"
    for k in optional:  # null means "not recorded"
        if row.get(k) is not None and not _is_number(row[k]):
            return f"{k!r} is {row[k]!r:.40}, not a finite number"
    return ""


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` so a reader sees either the old or the new file, never half of one (temp + fsync + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some filesystems refuse fsync on a directory; the rename is still atomic
        pass


def is_session_dir(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / META).is_file()


# -- meta.json schema ---------------------------------------------------------------------------------------
_NUM = (int, float)
META_SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "format": ((str,), "a string"),
    "format_version": ((int,), "an integer"),
    "complete": ((bool,), "true or false"),
    "end_t": ((*_NUM, type(None)), "a number or null"),
    "video_fps": ((*_NUM, type(None)), "a number or null"),
    "window_config": ((dict, type(None)), "an object or null"),
    "sources": ((dict, type(None)), "an object or null"),
    "arrival_times": ((bool,), "true or false"),
    "error": ((str, type(None)), "a string or null"),
}
"""Keys of ``meta.json`` the reader uses, with the JSON types it accepts; any other key is ignored."""

WINDOW_CONFIG_KEYS = ("window_s", "hop_s", "grace_s", "stale_after_s", "gap_s", "video_fps", "cut_on_arrival")


def validate_meta(meta: Any, path: Path) -> dict:
    """``meta`` checked against :data:`META_SCHEMA`: one :class:`SessionError` naming the folder, the key and the
    type it needs for the first thing that cannot be read; unknown keys are ignored (the format promises it)."""
    where = f"session folder {path}: {META}"
    if not isinstance(meta, dict):
        raise SessionError(f"{where} must hold a JSON object, got {json_type(meta)}")
    if meta.get("format") != FORMAT_NAME:
        raise SessionError(f"not a session folder: {path} ({META} has format {meta.get('format')!r}, "
                           f"expected {FORMAT_NAME!r})")
    for key, (types, expected) in META_SCHEMA.items():
        if key not in meta:
            continue
        value = meta[key]
        wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if not wrong and isinstance(value, float) and not math.isfinite(value):
            wrong = True
        if wrong:
            raise SessionError(f"{where}: {key!r} must be {expected}, got {value!r:.60}")
    if meta.get("video_fps") is not None and meta["video_fps"] <= 0:
        raise SessionError(f"{where}: 'video_fps' must be positive, got {meta['video_fps']!r}")
    version = meta.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise SessionError(f"session folder {path} uses format version {version}; this app reads up to "
                           f"{FORMAT_VERSION}: update the app")
    for name, src in (meta.get("sources") or {}).items():
        if name in {m.value for m in Modality} and not isinstance(src, dict):
            raise SessionError(f"{where}: 'sources.{name}' must be an object, got {src!r:.60}")
    return meta


def window_config_from_meta(recorded: dict | None, path: Path) -> WindowConfig | None:
    """The live window configuration of ``meta.json`` (unknown keys ignored), or None when none was recorded."""
    from .buffer import WindowConfig  # buffer imports nothing from here; lazy keeps the module graph flat

    if not recorded:
        return None
    known = {k: v for k, v in recorded.items() if k in WINDOW_CONFIG_KEYS}
    try:
        return WindowConfig(**known)
    except (TypeError, ValueError) as exc:
        raise SessionError(f"session folder {path}: {META} 'window_config' is not usable: {exc}") from exc
