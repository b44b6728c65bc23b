"""Recorded session folders: the on-disk format (see ``docs/session-format.md``) and the tolerant reader.

A session is a folder of append-only files written by :class:`streams.recorder.SessionRecorder`. Every file is
readable while it is still being written and after the writer was killed: the reader ignores a trailing partial
line or frame, recomputes the WAV size from the file size when the header was never patched, and does not need
``meta.json`` to say ``"complete": true``.

Every packet comes back with its *arrival* time (``ta``: the session-clock time the recorder received it), so
replay can feed packets in the order the live buffer saw them and cut the same windows live did.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .packets import AUDIO_RATE, AudioChunk, Modality, SourceStatus, TextSegment, VideoFrame

log = logging.getLogger(__name__)

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

Timed = tuple[float, Any]
"""``(arrival_time, packet)``: what replay merges."""

_JPEG_START = b"\xff\xd8"


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    import cv2  # lazy: reading statuses or audio must not need OpenCV

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


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
            raise SessionError(f"{path} is not a WAV file (no RIFF/WAVE header)")
        fmt = None
        pos = 12
        while True:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                raise SessionError(f"{path}: WAV file has no data chunk")
            cid, csize = struct.unpack("<4sI", chunk)
            if cid == b"fmt ":
                fmt = struct.unpack("<HHIIHH", f.read(16))
            elif cid == b"data":
                if fmt is None:
                    raise SessionError(f"{path}: WAV data chunk before its fmt chunk")
                fmt_tag, channels, rate, _, block, bits = fmt
                if fmt_tag != 1 or bits != 16:
                    raise SessionError(f"{path}: expected 16-bit PCM, got format {fmt_tag} with {bits} bits")
                data_offset = pos + 8
                available = (size - data_offset) // block
                declared = csize // block
                ok = declared == available
                return WavInfo(rate, channels, bits, data_offset, available if not ok else declared, ok)
            pos += 8 + csize + (csize & 1)


# -- tolerant JSON lines -----------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    """Complete JSON lines of ``path``; a trailing line without newline (a write cut by a crash) and lines that
    do not parse are skipped with a warning, never raised: a damaged tail must not hide the rest."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail.strip():
        log.warning("%s: ignoring a partial last line (%d bytes): the writer was interrupted", path, len(tail))
    out = []
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            bad += 1
    if bad:
        log.warning("%s: skipped %d damaged lines", path, bad)
    return out


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


# -- reader ------------------------------------------------------------------------------------------------
class SessionReader:
    """Read a session folder, complete or crashed.

    Iterators are lazy (frames are decoded from their byte offsets only when reached) and restartable: each call
    re-reads the small sidecar files, so a reader can also follow a session that is still being recorded.

    Raises:
        SessionError: the folder is missing, is not a session (``meta.json`` missing or unreadable), or has an
            unsupported format version.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise SessionError(f"session folder not found: {self.path}")
        if not self.path.is_dir():
            raise SessionError(f"not a session folder: {self.path} is a file")
        meta_path = self.path / META
        if not meta_path.is_file():
            raise SessionError(f"not a session folder: {self.path} ({META} missing)")
        try:
            self.meta: dict = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SessionError(f"session folder {self.path}: {META} is unreadable ({exc})") from exc
        if self.meta.get("format") != FORMAT_NAME:
            raise SessionError(f"not a session folder: {self.path} ({META} has format "
                               f"{self.meta.get('format')!r}, expected {FORMAT_NAME!r})")
        version = int(self.meta.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise SessionError(f"session folder {self.path} uses format version {version}; this app reads up to "
                               f"{FORMAT_VERSION}: update the app")
        if not self.complete:
            log.info("session %s was not closed cleanly (crash or kill): reading what was written", self.path)
        if self.meta.get("error"):
            log.warning("session %s recorded an error: %s", self.path, self.meta["error"])

    # -- summary --------------------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    @property
    def end_t(self) -> float | None:
        """Session time at which a cleanly closed recording stopped (``None`` after a crash)."""
        end = self.meta.get("end_t")
        return float(end) if self.complete and end is not None else None

    @property
    def video_fps(self) -> float | None:
        fps = self.meta.get("video_fps")
        return float(fps) if fps else None

    def sources(self) -> dict[Modality, dict]:
        """Per modality: ``{"present": bool, "reason": str, ...}`` as recorded; inferred from the data when the
        meta has no ``sources`` entry (sessions written by other tools)."""
        recorded = self.meta.get("sources") or {}
        out: dict[Modality, dict] = {}
        seen = {s.modality for _, s in self.timed_statuses() if s.modality}
        has_data = {Modality.VIDEO: self._size(VIDEO_INDEX) > 0, Modality.AUDIO: self._size(AUDIO_INDEX) > 0,
                    Modality.TEXT: self._size(TRANSCRIPT) > 0}
        for m in Modality:
            if m.value in recorded:
                out[m] = dict(recorded[m.value])
            else:
                out[m] = {"present": m in seen or has_data[m], "reason": ""}
        return out

    def absent_reasons(self) -> dict[Modality, str]:
        """The reasons live capture gave for modalities that had no source (fed to the replay windower)."""
        return {m: s["reason"] for m, s in self.sources().items() if not s.get("present") and s.get("reason")}

    def _size(self, name: str) -> int:
        try:
            return (self.path / name).stat().st_size
        except FileNotFoundError:
            return 0

    # -- timed iterators (arrival time, packet) --------------------------------------------------------------
    def timed_frames(self) -> Iterator[Timed]:
        """Frames in arrival order; a frame whose bytes were not all written, or are not a JPEG, is skipped.

        Each frame is read here but decoded only when its image is first used (:meth:`VideoFrame.deferred`):
        perception samples a few frames per window, so replay does not pay for decoding the rest. A frame whose
        JPEG is damaged past its header raises :class:`~streams.packets.FrameDecodeError` at that point."""
        index = read_jsonl(self.path / VIDEO_INDEX)
        if not index:
            return
        video_path = self.path / VIDEO
        size = self._size(VIDEO)
        index.sort(key=lambda e: float(e.get("ta", e["t"])))
        with open(video_path, "rb") as f:
            for e in index:
                off, n = int(e["offset"]), int(e["size"])
                if off + n > size:
                    log.warning("%s: frame %s is cut off at the end of the file; stopping there", video_path,
                                e.get("index"))
                    continue
                f.seek(off)
                data = f.read(n)
                if not data.startswith(_JPEG_START):
                    log.warning("%s: frame %s at byte %d is not a JPEG; skipped", video_path, e.get("index"), off)
                    continue
                yield float(e.get("ta", e["t"])), VideoFrame.deferred(
                    float(e["t"]), int(e["index"]), functools.partial(_decode_jpeg, data),
                    f"{video_path}: frame {e.get('index')} at byte {off}")

    def frame_at(self, t: float) -> VideoFrame | None:
        """The newest frame captured at or before session time ``t`` (for scrubbing), or None before the first."""
        index = [e for e in read_jsonl(self.path / VIDEO_INDEX) if float(e["t"]) <= t]
        if not index:
            return None
        e = max(index, key=lambda e: float(e["t"]))
        off, n = int(e["offset"]), int(e["size"])
        if off + n > self._size(VIDEO):
            return None
        import cv2

        with open(self.path / VIDEO, "rb") as f:
            f.seek(off)
            img = cv2.imdecode(np.frombuffer(f.read(n), np.uint8), cv2.IMREAD_COLOR)
        return None if img is None else VideoFrame(float(e["t"]), img, int(e["index"]))

    def timed_audio(self) -> Iterator[Timed]:
        """Audio chunks as they were captured (one per sidecar line, so gaps between them reappear)."""
        index = read_jsonl(self.path / AUDIO_INDEX)
        if not index:
            return
        wav_path = self.path / AUDIO
        info = read_wav_info(wav_path)
        if not info.header_ok:
            log.info("%s: header sizes disagree with the file size (not closed cleanly); using the file size",
                     wav_path)
        if info.rate != AUDIO_RATE or info.channels != 1:
            raise SessionError(f"{wav_path}: expected {AUDIO_RATE} Hz mono, got {info.rate} Hz x{info.channels}")
        index.sort(key=lambda e: float(e.get("ta", e["t"] + e["n"] / AUDIO_RATE)))
        with open(wav_path, "rb") as f:
            for e in index:
                off, n = int(e["offset"]), int(e["n"])
                if n <= 0:
                    continue
                if off + n > info.n_samples:
                    log.warning("%s: chunk at sample %d is cut off at the end of the file; skipped", wav_path, off)
                    continue
                f.seek(info.data_offset + 2 * off)
                pcm = np.frombuffer(f.read(2 * n), "<i2")
                samples = (pcm.astype(np.float32) / PCM_SCALE).astype(np.float32)
                t = float(e["t"])
                yield float(e.get("ta", t + n / AUDIO_RATE)), AudioChunk(t, samples)

    def timed_text(self) -> Iterator[Timed]:
        rows = read_jsonl(self.path / TRANSCRIPT)
        rows.sort(key=lambda r: float(r.get("ta", r["t1"])))
        for r in rows:
            conf = r.get("confidence")
            seg = TextSegment(float(r["t0"]), float(r["t1"]), str(r.get("text", "")),
                              str(r.get("source", "transcript")),
                              None if conf is None else float(conf))
            yield float(r.get("ta", seg.t1)), seg

    def timed_statuses(self) -> Iterator[Timed]:
        rows = [r for r in read_jsonl(self.path / EVENTS) if r.get("kind", "status") == "status" and "state" in r]
        rows.sort(key=lambda r: float(r.get("ta", r.get("t", 0.0))))
        for r in rows:
            try:
                st = SourceStatus.from_json(r)
            except (KeyError, ValueError) as exc:
                log.warning("%s: skipping a status line that does not parse (%s)", self.path / EVENTS, exc)
                continue
            yield float(r.get("ta", st.t)), st

    # -- plain iterators --------------------------------------------------------------------------------------
    def frames(self) -> Iterator[VideoFrame]:
        return (p for _, p in self.timed_frames())

    def audio_chunks(self) -> Iterator[AudioChunk]:
        return (p for _, p in self.timed_audio())

    def text_segments(self) -> Iterator[TextSegment]:
        return (p for _, p in self.timed_text())

    def statuses(self) -> Iterator[SourceStatus]:
        return (p for _, p in self.timed_statuses())

    def events(self) -> list[dict]:
        """Every line of ``events.jsonl`` (statuses and recorder events such as drops and errors)."""
        return read_jsonl(self.path / EVENTS)

    def live_windows(self) -> list[dict]:
        """The windows the recording process cut live (``windows.jsonl``), for comparison with a replay."""
        return read_jsonl(self.path / WINDOWS)

    def last_arrival(self) -> float:
        """Latest arrival time over all streams (from the sidecars only: nothing is decoded)."""
        last = 0.0
        for name, key in ((VIDEO_INDEX, "t"), (AUDIO_INDEX, None), (TRANSCRIPT, "t1"), (EVENTS, "t")):
            for r in read_jsonl(self.path / name):
                if "ta" in r:
                    last = max(last, float(r["ta"]))
                elif key is None and "t" in r:
                    last = max(last, float(r["t"]) + int(r.get("n", 0)) / AUDIO_RATE)
                elif key and r.get(key) is not None:
                    last = max(last, float(r[key]))
        return last
