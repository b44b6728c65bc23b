"""Record a live session to a folder without ever slowing capture down, and so that a crash loses at most ~1 s.

The recorder is a *sink*: calling it only stamps the arrival time and does a non-blocking put into a bounded
queue (dropping and counting per modality when it is full). A writer thread encodes JPEGs and does all file
I/O. Every record is appended with one unbuffered ``write`` (data first, then its sidecar line), so after a
``kill -9`` the files hold everything the writer had reached; ``os.fsync`` and the WAV header patch run at most
once a second, on the writer thread, which bounds what a power cut can lose. The format is in
``docs/session-format.md``; :class:`streams.session.SessionReader` reads it back.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import queue
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .clock import Clock
from .packets import AUDIO_RATE, AudioChunk, SourceStatus, TextSegment, VideoFrame
from .session_files import (
    AUDIO,
    AUDIO_INDEX,
    DATA_FILES,
    EVENTS,
    FORMAT_NAME,
    FORMAT_VERSION,
    META,
    PCM_SCALE,
    TRANSCRIPT,
    VIDEO,
    VIDEO_INDEX,
    WINDOWS,
    wav_header,
    write_json_atomic,
)

log = logging.getLogger(__name__)

_STOP = object()
_KINDS = ("video", "audio", "text", "status", "window")


def _iso(unix: float) -> str:
    return _dt.datetime.fromtimestamp(unix, _dt.UTC).astimezone().isoformat(timespec="milliseconds")


def package_versions() -> dict[str, str]:
    """Versions that affect what a session contains (JPEG encoder, decoder, numerics), stored in ``meta.json``."""
    out = {"python": platform.python_version()}
    for dist in ("umq-live", "numpy", "opencv-python-headless", "av", "soundfile"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if "umq-live" not in out:
        try:  # running from a source checkout that is not pip-installed
            import tomllib

            pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
            out["umq-live"] = tomllib.loads(pyproject.read_text())["project"]["version"] + "+source"
        except Exception:  # noqa: BLE001 - informational only
            pass
    return out


class RecorderError(OSError):
    """Raised only by :meth:`SessionRecorder.start` (the folder cannot be created, already holds session files,
    or holds other files without ``force``); errors while recording are reported through
    :attr:`SessionRecorder.error`, never raised into capture."""


SESSION_FILES = frozenset((META, META + ".tmp", WINDOWS, *DATA_FILES))
"""Names a recorder writes: a folder holding any of them is refused whatever ``force`` says (never overwritten)."""


class SessionRecorder:
    """Sink that writes every packet it receives to a session folder.

    Args:
        out_dir: folder to create. It may exist, but never holding any session file (:data:`SESSION_FILES`: not
            even ``video.mjpeg`` without ``meta.json``), and only empty unless ``force``.
        meta: caller's description, merged into ``meta.json`` (sources, devices, window config, ``video_fps``).
        queue_size: most data packets waiting for the writer; beyond it packets are dropped and counted.
        max_queue_bytes: the same bound in bytes of raw frames/samples (keeps memory flat with large frames).
        clock: session clock used to stamp arrival times (``ta``) and events; without one, arrival is not stored
            and replay falls back to packet timestamps.
        jpeg_quality: OpenCV JPEG quality for ``video.mjpeg``.
        sync_every_s: how often the writer fsyncs and patches the WAV header.
    """

    def __init__(self, out_dir: str | os.PathLike, meta: dict | None = None, queue_size: int = 256,
                 max_queue_bytes: int = 128 * 2**20, clock: Clock | None = None, jpeg_quality: int = 85,
                 sync_every_s: float = 1.0, force: bool = False) -> None:
        self.path = Path(out_dir)
        self.force = force
        self.user_meta = dict(meta or {})
        self.queue_size = queue_size
        self.max_queue_bytes = max_queue_bytes
        self.clock = clock
        self.jpeg_quality = jpeg_quality
        self.sync_every_s = sync_every_s
        self.error: str | None = None
        self.dropped: dict[str, int] = {k: 0 for k in _KINDS}
        self.counts: dict[str, int] = {"frames": 0, "audio_samples": 0, "audio_chunks": 0, "text": 0,
                                       "statuses": 0, "windows": 0, "video_bytes": 0}
        self.max_put_s = 0.0  # longest time a capture thread spent inside the sink call
        self.max_sync_s = 0.0  # longest fsync + header patch, on the writer thread
        self.syncs = 0
        self._queue: queue.Queue = queue.Queue()  # unbounded; the bound is enforced in _put so statuses never drop
        self._lock = threading.Lock()
        self._pending = 0
        self._pending_bytes = 0
        self._accepting = False
        self._failed = False
        self._files: dict[str, Any] = {}
        self._video_off = 0
        self._audio_n = 0
        self._thread: threading.Thread | None = None
        self._meta: dict = {}
        self._t_wall0 = time.monotonic()
        self._last_sync = 0.0
        self._reported_drops: dict[str, int] = dict(self.dropped)
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> SessionRecorder:
        """Create the folder and files, write ``meta.json`` (``complete: false``) and start the writer thread."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecorderError(f"cannot create session folder {self.path}: {exc}") from exc
        self._check_folder()
        try:  # "x": created here, never an existing file truncated (another recorder racing us included)
            for name in (VIDEO, VIDEO_INDEX, AUDIO_INDEX, TRANSCRIPT, EVENTS, WINDOWS):
                self._files[name] = open(self.path / name, "xb", buffering=0)
            self._files[AUDIO] = open(self.path / AUDIO, "xb", buffering=0)
            self._files[AUDIO].write(wav_header(0))
        except FileExistsError as exc:
            self._close_files()
            raise RecorderError(f"{self.path} already holds {Path(exc.filename).name}: choose another --out "
                                "folder (nothing was overwritten)") from exc
        except OSError as exc:
            self._close_files()
            raise RecorderError(f"cannot create session files in {self.path}: {exc}") from exc
        started_unix = float(getattr(self.clock, "started_at_unix", time.time()))
        self._meta = {
            **self.user_meta,
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "versions": package_versions(),
            "started_at": _iso(started_unix), "started_at_unix": started_unix,
            "audio": {"rate": AUDIO_RATE, "channels": 1, "subtype": "PCM_16"},
            "video": {"codec": "mjpeg", "jpeg_quality": self.jpeg_quality},
            "arrival_times": self.clock is not None,
            "complete": False,
        }
        try:
            write_json_atomic(self.path / META, self._meta)
        except OSError as exc:
            self._close_files()
            raise RecorderError(f"cannot write {self.path / META}: {exc}") from exc
        self._accepting = True
        self._last_sync = time.monotonic()
        self._thread = threading.Thread(target=self._writer, name="session-recorder", daemon=True)
        self._thread.start()
        self._event("start", path=self.path.name)  # the folder name only: sessions move, absolute paths leak
        log.info("recording session to %s", self.path)
        return self

    def _check_folder(self) -> None:
        """Refuse a folder holding session files (always) or anything else (unless ``force``, with a warning)."""
        try:
            entries = sorted(p.name for p in self.path.iterdir())
        except OSError as exc:
            raise RecorderError(f"cannot read session folder {self.path}: {exc}") from exc
        ours = [n for n in entries if n in SESSION_FILES]
        if ours:
            raise RecorderError(f"{self.path} already holds session files ({', '.join(ours)}): choose another "
                                "--out folder (nothing was overwritten)")
        if entries and not self.force:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise RecorderError(f"{self.path} is not empty ({len(entries)} entries: {shown}): choose a new or "
                                "empty --out folder, or add --force to record beside those files")
        if entries:
            log.warning("recording into %s, which already holds %d other entries (--force); they are left as "
                        "they are", self.path, len(entries))

    def close(self, end_t: float | None = None, timeout: float = 30.0) -> dict:
        """Drain the queue, patch the WAV header, fsync and mark ``meta.json`` complete. Returns the final meta.

        Args:
            end_t: session time the recording stopped (the CLI passes the time it cut its final windows);
                defaults to the clock's ``now()``.
        """
        if self._closed or self._thread is None:
            return self._meta
        self._closed = True
        end_t = end_t if end_t is not None else self._now()
        self._event("stop", end_t=end_t)
        self._accepting = False
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._fail(EVENTS, TimeoutError(f"writer did not drain within {timeout:.0f} s"))
        self._sync()
        self._close_files()
        end_unix = time.time()
        self._meta.update({
            "complete": True, "end_t": end_t, "duration_s": end_t,
            "ended_at": _iso(end_unix), "ended_at_unix": end_unix,
            "counts": dict(self.counts), "dropped": dict(self.dropped),
            "error": self.error,
        })
        try:
            write_json_atomic(self.path / META, self._meta)
        except OSError as exc:
            log.error("cannot finalise %s: %s", self.path / META, exc)
            self.error = self.error or f"cannot write {self.path / META}: {exc}"
        log.info("session %s closed: %d frames, %.1f s audio, %d text, drops %s", self.path, self.counts["frames"],
                 self.counts["audio_samples"] / AUDIO_RATE, self.counts["text"],
                 {k: v for k, v in self.dropped.items() if v} or "none")
        return self._meta

    def __enter__(self) -> SessionRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def meta(self) -> dict:
        return dict(self._meta)

    # -- sink -------------------------------------------------------------------------------------------------
    def __call__(self, packet: VideoFrame | AudioChunk | TextSegment | SourceStatus) -> None:
        """Queue a packet for writing. Never blocks and never raises (a full queue or a failed disk drops it)."""
        t_in = time.perf_counter()
        if isinstance(packet, VideoFrame):
            self._put("video", packet, packet.image.nbytes)
        elif isinstance(packet, AudioChunk):
            self._put("audio", packet, packet.samples.nbytes)
        elif isinstance(packet, TextSegment):
            self._put("text", packet, 0)
        elif isinstance(packet, SourceStatus):
            self._put("status", packet, 0)
        else:
            log.error("recorder got an unknown packet type %s; ignored", type(packet).__name__)
        dt = time.perf_counter() - t_in
        if dt > self.max_put_s:
            self.max_put_s = dt

    def record_window(self, window_json: dict) -> None:
        """Queue one live window summary (``Window.to_json()``) for ``windows.jsonl``."""
        self._put("window", window_json, 0)

    def _put(self, kind: str, item: Any, nbytes: int) -> None:
        if not self._accepting or self._failed:
            if self._failed:
                self.dropped[kind] += 1
            return
        ta = self._now() if self.clock is not None else None
        bounded = kind in ("video", "audio")  # statuses, text and windows are tiny and must not be lost
        with self._lock:
            if bounded and (self._pending >= self.queue_size or self._pending_bytes + nbytes > self.max_queue_bytes):
                self.dropped[kind] += 1
                return
            if bounded:
                self._pending += 1
                self._pending_bytes += nbytes
        self._queue.put_nowait((kind, item, ta, nbytes if bounded else -1))

    # -- writer thread ----------------------------------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                job = None
            if job is _STOP:
                self._note_drops()
                return
            if job is not None:
                kind, item, ta, nbytes = job
                if nbytes >= 0:
                    with self._lock:
                        self._pending -= 1
                        self._pending_bytes -= nbytes
                if not self._failed:
                    self._write(kind, item, ta)
                elif kind in self.dropped:  # queued before the failure, never written: a loss like any other
                    self.dropped[kind] += 1
            if not self._failed and time.monotonic() - self._last_sync >= self.sync_every_s:
                self._note_drops()
                self._sync()

    def _write(self, kind: str, item: Any, ta: float | None) -> None:
        name = {"video": VIDEO, "audio": AUDIO, "text": TRANSCRIPT, "status": EVENTS, "event": EVENTS,
                "window": WINDOWS}[kind]
        try:
            if kind == "video":
                self._write_video(item, ta)
            elif kind == "audio":
                self._write_audio(item, ta)
            elif kind == "text":
                row = {"t0": item.t0, "t1": item.t1, "text": item.text, "source": item.source,
                       "confidence": item.confidence}
                self._line(TRANSCRIPT, row, ta)
                self.counts["text"] += 1
            elif kind == "status":
                self._line(EVENTS, {"kind": "status", **item.to_json()}, ta)
                self.counts["statuses"] += 1
            elif kind == "event":
                self._line(EVENTS, item, None)
            else:
                self._line(WINDOWS, item, None)
                self.counts["windows"] += 1
        except Exception as exc:  # noqa: BLE001 - disk full, bad frame, anything: stop recording, keep capturing
            self._fail(name, exc)

    def _write_video(self, frame: VideoFrame, ta: float | None) -> None:
        import cv2

        ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ValueError(f"JPEG encoding failed for frame {frame.index}")
        data = buf.tobytes()
        self._write_all(VIDEO, data)
        h, w = frame.image.shape[:2]
        self._line(VIDEO_INDEX, {"index": frame.index, "t": frame.t, "offset": self._video_off, "size": len(data),
                                 "w": w, "h": h}, ta)
        self._video_off += len(data)
        self.counts["frames"] += 1
        self.counts["video_bytes"] = self._video_off

    def _write_audio(self, chunk: AudioChunk, ta: float | None) -> None:
        if chunk.rate != AUDIO_RATE:
            raise ValueError(f"audio must be {AUDIO_RATE} Hz before the recorder, got {chunk.rate}")
        pcm = np.round(np.clip(chunk.samples, -1.0, 1.0) * PCM_SCALE).astype("<i2")
        self._write_all(AUDIO, pcm.tobytes())
        self._line(AUDIO_INDEX, {"t": chunk.t, "offset": self._audio_n, "n": len(pcm)}, ta)
        self._audio_n += len(pcm)
        self.counts["audio_samples"] = self._audio_n
        self.counts["audio_chunks"] += 1

    def _line(self, name: str, row: dict, ta: float | None) -> None:
        if ta is not None:
            row = {**row, "ta": ta}
        self._write_all(name, (json.dumps(row, separators=(",", ":")) + "\n").encode())

    def _write_all(self, name: str, data: bytes) -> None:
        f = self._files[name]
        view = memoryview(data)
        while view:  # raw files may write partially
            n = f.write(view)
            if n is None or n <= 0:
                raise OSError(f"short write to {self.path / name}")
            view = view[n:]

    def _sync(self) -> None:
        """Patch the WAV sizes and fsync every file (writer thread only, or after it stopped)."""
        t = time.perf_counter()
        self._last_sync = time.monotonic()
        for name, f in list(self._files.items()):
            try:
                if name == AUDIO:
                    os.pwrite(f.fileno(), wav_header(self._audio_n), 0)
                os.fsync(f.fileno())
            except (OSError, ValueError) as exc:
                if not self._failed:
                    self._fail(name, exc)
        self.syncs += 1
        self.max_sync_s = max(self.max_sync_s, time.perf_counter() - t)

    def _note_drops(self) -> None:
        if self.dropped != self._reported_drops:
            new = {k: v - self._reported_drops[k] for k, v in self.dropped.items() if v != self._reported_drops[k]}
            self._reported_drops = dict(self.dropped)
            log.warning("recorder queue full: dropped %s (writer too slow for the capture rate)", new)
            self._event("drops", new=new, total=dict(self.dropped))

    def _event(self, event: str, **fields: Any) -> None:
        """Queue a recorder event for ``events.jsonl`` (written in order with the statuses by the writer)."""
        row = {"kind": "recorder", "event": event, "t": self._now(), **fields}
        if threading.current_thread() is self._thread:
            self._write("event", row, None)
        else:
            self._queue.put_nowait(("event", row, None, -1))

    def _fail(self, name: str, exc: BaseException) -> None:
        """Stop recording after an I/O error: note it, tell the user which file, never raise into capture."""
        if self._failed:
            return
        msg = f"cannot write {self.path / name}: {exc}"
        self.error = msg
        log.error("recording stopped: %s", msg)
        if name != EVENTS:
            try:
                row = {"kind": "recorder", "event": "error", "t": self._now(), "file": name, "error": str(exc),
                       "disk_full": getattr(exc, "errno", None) == 28}
                self._write_all(EVENTS, (json.dumps(row) + "\n").encode())
            except Exception:  # noqa: BLE001 - the disk may be full for this file too
                pass
        self._failed = True
        self._meta["error"] = msg

    def _close_files(self) -> None:
        for f in self._files.values():
            with contextlib.suppress(OSError):
                f.close()
        self._files.clear()

    def _now(self) -> float:
        return self.clock.now() if self.clock is not None else time.monotonic() - self._t_wall0

    def stats(self) -> dict:
        """Counters for summaries and tests."""
        return {**self.counts, "dropped": dict(self.dropped), "max_put_ms": round(self.max_put_s * 1e3, 3),
                "max_sync_ms": round(self.max_sync_s * 1e3, 3), "syncs": self.syncs, "error": self.error,
                "queue_pending": self._pending}


__all__ = ["SessionRecorder", "RecorderError", "package_versions"]
