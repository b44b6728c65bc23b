"""Uploaded videos (and their transcripts): checked early, stored once in a private folder, deleted when replaced
or refused and when the process exits, under a disk cap.

Checks before anything is decoded: the suffix, the byte size, the folder's total size, and (by reading only the
container header with OpenCV) the frame size and duration, so an absurd upload is refused with a sentence naming
the file instead of exhausting memory later.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
TRANSCRIPT_SUFFIXES = (".srt", ".vtt")
MAX_SIDE = 4096  # pixels: larger frames are refused (4K is the largest a webcam/phone session needs)
MAX_DURATION_S = 4 * 3600.0
MAX_TRANSCRIPT_BYTES = 2 * 2**20


class UploadError(ValueError):
    """An upload the dashboard refuses; the message names the file and what to do."""


class UploadStore:
    """One private folder holding at most the current upload (a video and optionally its transcript).

    Args:
        max_bytes: the largest single video.
        disk_cap_bytes: the most the folder may hold at once (exports included).
    """

    def __init__(self, max_bytes: int, disk_cap_bytes: int | None = None, root: Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.disk_cap_bytes = disk_cap_bytes or 2 * max_bytes
        self.dir = Path(root or tempfile.mkdtemp(prefix="umq-uploads-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.current: list[Path] = []
        self._lock = threading.Lock()

    # -- checks -------------------------------------------------------------------------------------------
    def _check_video(self, src: Path, name: str) -> None:
        if src.suffix.lower() not in VIDEO_SUFFIXES:
            raise UploadError(f"{name}: only video files ({', '.join(VIDEO_SUFFIXES)}) can be uploaded")
        size = src.stat().st_size
        if size > self.max_bytes:
            raise UploadError(f"{name} is {size / 2**20:.0f} MiB; the limit is {self.max_bytes / 2**20:.0f} MiB")
        if size + self.used_bytes(exclude=self.current) > self.disk_cap_bytes:
            raise UploadError(f"{name}: the upload folder is full ({self.disk_cap_bytes / 2**20:.0f} MiB cap); "
                              "restart the dashboard or replay from a folder given with --allow")
        _check_header(src, name)

    def used_bytes(self, exclude: Sequence[Path] = ()) -> int:
        skip = {p.resolve() for p in exclude}
        return sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file() and p.resolve() not in skip)

    # -- storing ------------------------------------------------------------------------------------------
    def accept(self, video: str | os.PathLike, transcript: str | os.PathLike | None = None,
               names: tuple[str, str] | None = None) -> tuple[Path, Path | None]:
        """Check and move ``video`` (and ``transcript``) in, replacing the previous upload; the temporary files
        given are removed whether accepted or refused (they are not kept twice)."""
        src, tsrc = Path(video), Path(transcript) if transcript else None
        vname = names[0] if names else src.name
        try:
            self._check_video(src, vname)
            if tsrc is not None:
                tname = names[1] if names else tsrc.name
                if tsrc.suffix.lower() not in TRANSCRIPT_SUFFIXES:
                    raise UploadError(f"{tname}: a transcript must be .srt or .vtt")
                if tsrc.stat().st_size > MAX_TRANSCRIPT_BYTES:
                    raise UploadError(f"{tname} is larger than {MAX_TRANSCRIPT_BYTES // 2**20} MiB")
            with self._lock:
                self.clear()
                stem = f"upload-{int(time.time() * 1000)}"
                dst = self.dir / f"{stem}{src.suffix.lower()}"
                _move(src, dst)
                tdst = None
                if tsrc is not None:  # beside the video with the same stem: how Replay finds a transcript
                    tdst = self.dir / f"{stem}{tsrc.suffix.lower()}"
                    _move(tsrc, tdst)
                self.current = [p for p in (dst, tdst) if p is not None]
                return dst, tdst
        finally:
            for p in (src, tsrc):
                if p is not None and p.exists() and p.parent != self.dir:
                    _unlink(p)

    def clear(self) -> None:
        """Delete the current upload."""
        for p in self.current:
            _unlink(p)
        self.current = []

    def close(self) -> None:
        """Delete everything (called at exit, also on SIGTERM/SIGINT)."""
        self.current = []
        shutil.rmtree(self.dir, ignore_errors=True)


def _check_header(src: Path, name: str) -> None:
    import cv2

    cap = cv2.VideoCapture(str(src))
    try:
        if not cap.isOpened():
            raise UploadError(f"{name} is not a video OpenCV/FFmpeg can open; convert it to mp4 (H.264)")
        w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        fps, n = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise UploadError(f"{name} has no video stream")
    if max(w, h) > MAX_SIDE:
        raise UploadError(f"{name} is {w:.0f}x{h:.0f} pixels; the limit is {MAX_SIDE} pixels on a side: "
                          "scale it down (ffmpeg -vf scale=1280:-2)")
    if fps > 0 and n > 0 and n / fps > MAX_DURATION_S:
        raise UploadError(f"{name} lasts {n / fps / 3600:.1f} h; the limit is {MAX_DURATION_S / 3600:.0f} h")


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)  # same file system: no second copy
    except OSError:
        shutil.copyfile(src, dst)
        _unlink(src)


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except OSError as exc:
        if p.exists():
            log.warning("could not delete %s: %s", p, exc)
