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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .packets import (
    AUDIO_RATE,
    AudioChunk,
    Modality,
    SourceState,
    SourceStatus,
    TextSegment,
    VideoFrame,
    cap_frame_size,
    cap_image,
)

# re-exported: readers of sessions import these from here
from .session_files import (  # noqa: F401
    AUDIO,
    AUDIO_INDEX,
    DATA_FILES,
    EVENTS,
    FORMAT_NAME,
    FORMAT_VERSION,
    META,
    META_SCHEMA,
    PCM_SCALE,
    TRANSCRIPT,
    VIDEO,
    VIDEO_INDEX,
    WAV_HEADER_BYTES,
    WINDOW_CONFIG_KEYS,
    WINDOWS,
    SessionError,
    WavInfo,
    is_session_dir,
    json_type,
    read_jsonl,
    read_wav_info,
    validate_meta,
    wav_header,
    window_config_from_meta,
    write_json_atomic,
)

log = logging.getLogger(__name__)

Timed = tuple[float, Any]
"""``(arrival_time, packet)``: what replay merges."""

_JPEG_START = b"\xff\xd8"


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    """Decode one stored JPEG, downscaled to fit :data:`~streams.packets.MAX_FRAME_SIZE` (libjpeg's reduced
    decoding first, so an 8K frame never exists at full size)."""
    import cv2  # lazy: reading statuses or audio must not need OpenCV

    buf = np.frombuffer(data, np.uint8)
    flag = cv2.IMREAD_COLOR
    size = _jpeg_size(data)
    if size is not None:
        target = cap_frame_size(*size)
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if size[0] // factor >= target[0] and size[1] // factor >= target[1]:
                flag = reduced  # the largest reduction that still leaves at least the capped size
                break
    image = cv2.imdecode(buf, flag)
    return None if image is None else cap_image(image)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF marker, or None when the header cannot be walked."""
    i = 2
    while i + 9 < len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


def _ta(row: dict, default: float) -> float:
    """A row's arrival time, or ``default`` for files written without arrival times."""
    ta = row.get("ta")
    return float(default if ta is None else ta)


def _file_problem(path: Path) -> str:
    """"" when ``path`` can be opened for reading, else why not (naming the file by its name)."""
    try:
        with open(path, "rb"):
            return ""
    except FileNotFoundError:
        return f"{path.name} missing"
    except OSError as exc:
        return f"{path.name} unreadable: {exc.strerror or exc}"


_FRAME_KEYS = ("t", "index", "offset", "size")


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
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SessionError(f"session folder {self.path}: {META} is unreadable ({exc})") from exc
        self.meta: dict = validate_meta(meta, self.path)
        self._window_config = window_config_from_meta(self.meta.get("window_config"), self.path)
        self._problems: dict[Modality, str] | None = None
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

    def window_config(self):
        """The live window configuration recorded in ``meta.json`` (a ``WindowConfig``), or None."""
        return self._window_config

    def problems(self) -> dict[Modality, str]:
        """Modalities whose data file is missing or unreadable although its index lists data, with the reason
        ("audio.wav unreadable: not a WAV file (no RIFF/WAVE header)"). Replay plays the other modalities and
        marks these missing with the reason, instead of failing the whole session."""
        if self._problems is None:
            self._problems = {}
            if self._size(VIDEO_INDEX) > 0:
                why = _file_problem(self.path / VIDEO)
                if why:
                    self._problems[Modality.VIDEO] = why
            if self._size(AUDIO_INDEX) > 0:
                why = _file_problem(self.path / AUDIO)
                if not why:
                    try:
                        info = read_wav_info(self.path / AUDIO)
                        if info.rate != AUDIO_RATE or info.channels != 1:
                            why = f"expected {AUDIO_RATE} Hz mono, got {info.rate} Hz x{info.channels}"
                    except SessionError as exc:
                        why = str(exc).removeprefix(f"{self.path / AUDIO}: ")
                    why = why and f"{AUDIO} unreadable: {why}"
                if why:
                    self._problems[Modality.AUDIO] = why
            for m, why in self._problems.items():
                log.warning("session %s: %s; replaying without %s", self.path, why, m.value)
        return dict(self._problems)

    def sources(self) -> dict[Modality, dict]:
        """Per modality: ``{"present": bool, "reason": str, ...}`` as recorded; inferred from the data when the
        meta has no ``sources`` entry (sessions written by other tools); not present, with the reason, when the
        modality's data file cannot be read (:meth:`problems`)."""
        recorded = self.meta.get("sources") or {}
        problems = self.problems()
        out: dict[Modality, dict] = {}
        seen = {s.modality for _, s in self.timed_statuses() if s.modality}
        has_data = {Modality.VIDEO: self._size(VIDEO_INDEX) > 0, Modality.AUDIO: self._size(AUDIO_INDEX) > 0,
                    Modality.TEXT: self._size(TRANSCRIPT) > 0}
        for m in Modality:
            if m in problems:
                out[m] = {**recorded.get(m.value, {}), "present": False, "reason": problems[m]}
            elif m.value in recorded:
                out[m] = dict(recorded[m.value])
            else:
                out[m] = {"present": m in seen or has_data[m], "reason": ""}
        return out

    def absent_reasons(self) -> dict[Modality, str]:
        """The reasons live capture gave for modalities that had no source (fed to the replay windower)."""
        return {m: str(s["reason"]) for m, s in self.sources().items()
                if not s.get("present") and s.get("reason")}

    def _size(self, name: str) -> int:
        try:
            return (self.path / name).stat().st_size
        except OSError:
            return 0

    # -- timed iterators (arrival time, packet) --------------------------------------------------------------
    def timed_frames(self) -> Iterator[Timed]:
        """Frames in arrival order; a frame whose bytes were not all written, or are not a JPEG, is skipped.

        Each frame is read here but decoded only when its image is first used (:meth:`VideoFrame.deferred`):
        perception samples a few frames per window, so replay does not pay for decoding the rest. A frame whose
        JPEG is damaged past its header raises :class:`~streams.packets.FrameDecodeError` at that point. Frames
        larger than :data:`~streams.packets.MAX_FRAME_SIZE` are downscaled as they are decoded."""
        if Modality.VIDEO in self.problems():
            return
        index = read_jsonl(self.path / VIDEO_INDEX, _FRAME_KEYS, ("ta",))
        if not index:
            return
        video_path = self.path / VIDEO
        size = self._size(VIDEO)
        index.sort(key=lambda e: _ta(e, e["t"]))
        with open(video_path, "rb") as f:
            for e in index:
                off, n = int(e["offset"]), int(e["size"])
                if off < 0 or n <= 0 or off + n > size:
                    log.warning("%s: frame %s (bytes %d..%d) is not inside the file (%d bytes); skipped",
                                video_path, e.get("index"), off, off + n, size)
                    continue
                f.seek(off)
                data = f.read(n)
                if not data.startswith(_JPEG_START):
                    log.warning("%s: frame %s at byte %d is not a JPEG; skipped", video_path, e.get("index"), off)
                    continue
                yield _ta(e, e["t"]), VideoFrame.deferred(
                    float(e["t"]), int(e["index"]), functools.partial(_decode_jpeg, data),
                    f"{video_path}: frame {e.get('index')} at byte {off}")

    def frame_at(self, t: float) -> VideoFrame | None:
        """The newest frame captured at or before session time ``t`` (for scrubbing), or None before the first."""
        if Modality.VIDEO in self.problems():
            return None
        index = [e for e in read_jsonl(self.path / VIDEO_INDEX, _FRAME_KEYS, ("ta",)) if float(e["t"]) <= t]
        if not index:
            return None
        e = max(index, key=lambda e: float(e["t"]))
        off, n = int(e["offset"]), int(e["size"])
        if off < 0 or n <= 0 or off + n > self._size(VIDEO):
            return None
        with open(self.path / VIDEO, "rb") as f:
            f.seek(off)
            img = _decode_jpeg(f.read(n))
        return None if img is None else VideoFrame(float(e["t"]), img, int(e["index"]))

    def timed_audio(self) -> Iterator[Timed]:
        """Audio chunks as they were captured (one per sidecar line, so gaps between them reappear); nothing
        when ``audio.wav`` is missing or unreadable (:meth:`problems` says why)."""
        if Modality.AUDIO in self.problems():
            return
        index = read_jsonl(self.path / AUDIO_INDEX, ("t", "offset", "n"), ("ta",))
        if not index:
            return
        wav_path = self.path / AUDIO
        info = read_wav_info(wav_path)
        if not info.header_ok:
            log.info("%s: header sizes disagree with the file size (not closed cleanly); using the file size",
                     wav_path)
        index.sort(key=lambda e: _ta(e, e["t"] + e["n"] / AUDIO_RATE))
        with open(wav_path, "rb") as f:
            for e in index:
                off, n = int(e["offset"]), int(e["n"])
                if n <= 0 or off < 0:
                    continue
                if off + n > info.n_samples:
                    log.warning("%s: chunk at sample %d is cut off at the end of the file; skipped", wav_path, off)
                    continue
                f.seek(info.data_offset + 2 * off)
                pcm = np.frombuffer(f.read(2 * n), "<i2")
                samples = (pcm.astype(np.float32) / PCM_SCALE).astype(np.float32)
                t = float(e["t"])
                yield _ta(e, t + n / AUDIO_RATE), AudioChunk(t, samples)

    def timed_text(self) -> Iterator[Timed]:
        rows = read_jsonl(self.path / TRANSCRIPT, ("t0", "t1"), ("ta", "confidence"))
        rows.sort(key=lambda r: _ta(r, r["t1"]))
        for r in rows:
            conf = r.get("confidence")
            try:
                seg = TextSegment(float(r["t0"]), float(r["t1"]), str(r.get("text", "")),
                                  str(r.get("source", "transcript")), None if conf is None else float(conf))
            except (TypeError, ValueError) as exc:
                log.warning("%s: skipping a transcript line (%s)", self.path / TRANSCRIPT, exc)
                continue
            yield _ta(r, seg.t1), seg

    def timed_statuses(self) -> Iterator[Timed]:
        """Recorded statuses in arrival order. For a modality whose data file is unreadable (:meth:`problems`)
        the recorded statuses are replaced by one ``unavailable`` status at 0 s carrying the reason."""
        problems = self.problems()  # reads only file headers: no recursion through sources()
        for m, why in problems.items():
            yield 0.0, SourceStatus(SourceState.UNAVAILABLE, why, 0.0, m, f"session:{self.path.name}")
        rows = [r for r in read_jsonl(self.path / EVENTS, (), ("ta", "t"))
                if r.get("kind", "status") == "status" and "state" in r]
        rows.sort(key=lambda r: _ta(r, r.get("t") or 0.0))
        for r in rows:
            try:
                st = SourceStatus.from_json(r)
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("%s: skipping a status line that does not parse (%s)", self.path / EVENTS, exc)
                continue
            if st.modality in problems:
                continue
            yield _ta(r, st.t), st

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
            for r in read_jsonl(self.path / name, (), ("ta", "t", "t1", "n")):
                if "ta" in r:
                    last = max(last, float(r["ta"]))
                elif key is None and r.get("t") is not None:
                    last = max(last, float(r["t"]) + int(r.get("n") or 0) / AUDIO_RATE)
                elif key and r.get(key) is not None:
                    last = max(last, float(r[key]))
        return last
