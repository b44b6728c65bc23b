"""What a batch analyses: the inputs found under the paths given, and the output name of each.

An input is a video file (:data:`MEDIA_SUFFIXES`) or a session folder written by the recorder. Folders that are
not sessions are searched recursively (a session folder is an input and is not searched further). Subtitles
beside a video are its transcript, not inputs; anything else is ignored with a note, so a researcher sees why a
file was skipped. Output names are the input's stem, made unique when two inputs share a stem (``a/x.mp4`` and
``b/x.mp4`` become ``a__x`` and ``b__x``), and stable from run to run for the same inputs (``--resume`` relies
on that).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from streams.session import is_session_dir

MEDIA_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
SIDECAR_SUFFIXES = (".srt", ".vtt")  # read by the replay as the transcript of the same-stem video


@dataclass(frozen=True)
class BatchInput:
    """One input of a batch.

    Attributes:
        path: the video file or session folder (absolute).
        name: the output name: ``DIR/<name>.csv`` and ``DIR/<name>.jsonl``.
        kind: ``file`` or ``session``.
    """

    path: Path
    name: str
    kind: str


@dataclass
class Discovery:
    """The inputs found, and the notes about what was skipped (path, why)."""

    inputs: list[BatchInput]
    ignored: list[tuple[Path, str]]


class InputError(ValueError):
    """A path given on the command line does not exist: said before any work starts."""


def _walk(folder: Path, found: list[tuple[Path, str]], ignored: list[tuple[Path, str]],
          exclude: frozenset[Path] = frozenset()) -> None:
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        ignored.append((folder, f"folder cannot be read: {exc.strerror or exc}"))
        return
    for p in entries:
        if p.name.startswith("."):
            continue
        if p.is_dir():
            if p.resolve() in exclude:
                continue  # the batch's own output folder inside an input folder
            if is_session_dir(p):
                found.append((p, "session"))
            else:
                _walk(p, found, ignored, exclude)
        elif p.suffix.lower() in MEDIA_SUFFIXES:
            found.append((p, "file"))
        elif p.suffix.lower() in SIDECAR_SUFFIXES and any(p.with_suffix(s).exists() for s in _all_cases()):
            continue  # the transcript of a video beside it
        else:
            ignored.append((p, (f"not a media file or session folder (inputs are {', '.join(MEDIA_SUFFIXES)} "
                               f"files and session folders)")))


def _all_cases() -> list[str]:
    return [*MEDIA_SUFFIXES, *(s.upper() for s in MEDIA_SUFFIXES)]


def discover(paths: list[str | os.PathLike], exclude: list[str | os.PathLike] = ()) -> Discovery:
    """The inputs under ``paths`` in a stable order (as given; folders sorted by name), without duplicates;
    folders in ``exclude`` (the output folder) are not searched.

    Raises:
        InputError: a path does not exist.
    """
    found: list[tuple[Path, str]] = []
    ignored: list[tuple[Path, str]] = []
    skip = frozenset(Path(e).expanduser().resolve() for e in exclude)
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise InputError(f"{raw}: no such file or folder")
        p = p.resolve()
        if p.is_dir():
            if is_session_dir(p):
                found.append((p, "session"))
            else:
                _walk(p, found, ignored, skip)
        else:
            # a file named explicitly is analysed whatever its suffix: the user asked for it, the decoder decides
            found.append((p, "file"))
    seen: set[Path] = set()
    unique = [(p, k) for p, k in found if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]
    names = output_names([p for p, _ in unique])
    return Discovery([BatchInput(p, names[p], k) for p, k in unique], ignored)


_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name).strip() or "input"


def output_names(paths: list[Path]) -> dict[Path, str]:
    """Output name per input: its stem; inputs sharing a stem (case-insensitively: macOS and Windows folders
    ignore case) get their path below the inputs' common folder, joined with ``__``; a name still shared (or
    reserved: ``summary``, ``errors``) gets a short hash of the absolute path."""
    stems = {p: _safe(p.stem if p.is_file() else p.name) for p in paths}
    counts: dict[str, int] = {}
    for s in stems.values():
        counts[s.lower()] = counts.get(s.lower(), 0) + 1
    common = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path("/")
    names: dict[Path, str] = {}
    for p, s in stems.items():
        if counts[s.lower()] > 1:
            rel = p.relative_to(common) if p.is_relative_to(common) else Path(*p.parts[1:])
            s = _safe("__".join((*rel.parts[:-1], s)))
        names[p] = s
    taken: dict[str, int] = {}
    for n in names.values():
        taken[n.lower()] = taken.get(n.lower(), 0) + 1
    for p, n in names.items():
        if taken[n.lower()] > 1 or n.lower() in ("summary", "errors"):
            names[p] = f"{n}-{hashlib.sha256(str(p).encode()).hexdigest()[:8]}"
    return names


def input_sha256(item: BatchInput | Path) -> str:
    """SHA-256 of a file, or of a session folder (each file's name and content, in name order)."""
    path = item.path if isinstance(item, BatchInput) else Path(item)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
