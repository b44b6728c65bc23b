"""The dashboard's framework-neutral core: one engine, one analyzer, the quality lab, recording and replay.

The Gradio layer (:mod:`app.dashboard.ui`) only calls these methods and renders :class:`DashboardState`;
everything here is testable without a browser. One controller serves one dashboard process (a lab instrument
for one person at a time, not a multi-user service).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from streams.clock import SessionClock
from streams.packets import FrameDecodeError, Modality, VideoFrame
from streams.replay import Replay
from umq.result import Result

from ..capture import Capture, CaptureOptions, build_capture
from ..engine import Engine, EngineConfig, Telemetry
from ..paths import DEMO_SESSION

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


class ReplayPathError(ValueError):
    """A replay path the dashboard refuses: outside the allowed folders, missing, or not a session/video."""


@dataclass
class DashboardState:
    """Everything the dashboard draws, as of one moment.

    Attributes:
        mode: ``idle``, ``live`` or ``replay``.
        source: what is playing ("demo session", "camera 0 + microphone", a replay path).
        message: a sentence for the status line (why the demo is playing, what failed, replay finished).
        result: the newest :class:`~umq.result.Result` (None before the first window).
        frame: the newest camera frame, BGR (None without video).
        history: results of the last ``seconds`` of session time, oldest first.
        telemetry: the engine's :class:`~app.engine.Telemetry`.
        recording: the session folder being recorded, or None.
        transcript: the newest transcript lines seen in results (oldest first).
        finished: True when a replay has played to its end.
    """

    mode: str
    source: str
    message: str
    result: Result | None
    frame: np.ndarray | None
    history: list[Result]
    telemetry: Telemetry
    recording: str | None = None
    transcript: list[str] = field(default_factory=list)
    finished: bool = False


class _Switch:
    """A sink that forwards to the current recorder, or to nothing (recording toggled while capture runs)."""

    def __init__(self) -> None:
        self.target: Callable | None = None

    def __call__(self, packet) -> None:
        t = self.target
        if t is not None:
            t(packet)


class DashboardController:
    """Start/stop live capture or replay, record, type transcript lines, and read the current state.

    Args:
        analyzer_factory: builds the :class:`~umq.runtime.analyzer.Analyzer` (called once, lazily).
        allowed_roots: folders replay paths typed in the UI must lie under (uploads go to a private temp folder
            that is always allowed); default: the demo session's folder and the current directory.
        record_dir: where "Record" writes session folders.
        loop_demo: restart the demo session when it ends (the default screen never goes stale).
    """

    def __init__(self, analyzer_factory: Callable, allowed_roots: list[Path] | None = None,
                 record_dir: Path | None = None, loop_demo: bool = True,
                 engine_config: EngineConfig | None = None) -> None:
        self._factory = analyzer_factory
        self._analyzer = None
        self._engine: Engine | None = None
        self._engine_config = engine_config or EngineConfig()
        self.upload_dir = Path(tempfile.mkdtemp(prefix="umq-uploads-"))
        self.allowed_roots = [p.resolve() for p in (allowed_roots or [DEMO_SESSION.parent, Path.cwd()])]
        self.allowed_roots.append(self.upload_dir.resolve())
        self.record_dir = Path(record_dir or Path.cwd() / "recordings")
        self.loop_demo = loop_demo
        self._lock = threading.RLock()
        self._capture: Capture | None = None
        self._text_source = None
        self._browser: dict[str, object] = {}
        self._record_switch = _Switch()
        self._recorder = None
        self._record_windows: _RecordWindows | None = None
        self._replay_path: Path | None = None
        self._replay_speed: float | None = 1.0
        self.source = ""
        self.message = ""
        self._demo = False
        self._watch: threading.Thread | None = None
        self._asr = None
        self._devices: tuple[list, list | str] | None = None

    # -- devices ------------------------------------------------------------------------------------------
    def devices(self) -> tuple[list, list | str]:
        """``(cameras, microphones or the reason there are none)``, probed once per process: opening cameras to
        find them takes time, and both the start-up decision and the pickers need the answer."""
        if self._devices is None:
            from streams.devices import list_cameras, list_microphones

            self._devices = (list_cameras(max_index=2), list_microphones())
        return self._devices

    # -- engine -------------------------------------------------------------------------------------------
    @property
    def analyzer(self):
        if self._analyzer is None:
            self._analyzer = self._factory()
        return self._analyzer

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine(self.analyzer.stages(), self._engine_config)
        return self._engine

    @property
    def lab(self):
        return self.analyzer.lab

    # -- starting and stopping ---------------------------------------------------------------------------
    def start_live(self, opts: CaptureOptions | None = None, browser: bool = False, asr: bool = False) -> str:
        """Capture from devices (or the browser's camera and microphone); returns the status message.

        ``asr``: transcribe the microphone with Whisper tiny.en (faster-whisper) into the transcript stream.
        """
        from streams.transcript import TranscriptSource

        with self._lock:
            self.stop()
            clock = SessionClock()
            opts = opts or CaptureOptions(source="devices")
            if browser:
                from streams.browser import BrowserCamera, BrowserMicrophone

                cam, mic = BrowserCamera(clock), BrowserMicrophone(clock)
                info = {"present": True, "kind": "browser", "device": None, "reason": ""}
                cap = Capture([cam, mic], {Modality.VIDEO: {**info, "name": cam.name},
                                           Modality.AUDIO: {**info, "name": mic.name}})
                self._browser = {"video": cam, "audio": mic}
            else:
                cap = build_capture(opts, clock)
                self._browser = {}
            if Modality.TEXT not in cap.info or not cap.info[Modality.TEXT]["present"]:
                ui = TranscriptSource(clock)  # lines typed in the dashboard
                cap.sources.append(ui)
                cap.info[Modality.TEXT] = {"present": True, "name": "ui", "kind": "typed", "device": None, "reason": ""}
            self._text_source = next((s for s in cap.sources if isinstance(s, TranscriptSource)), None)
            self._capture = cap
            self.analyzer.reset()
            sinks = [self._record_switch]
            if asr and self._text_source is not None:
                sinks.append(self._start_asr(self._text_source))
            self.engine.start_live(cap, clock, extra_sinks=sinks)
            self._demo = False
            self.source = "browser camera + microphone" if browser else _describe_capture(cap)
            self.message = f"Live analysis: {self.source}."
            return self.message

    def start_replay(self, path: str | os.PathLike, speed: float | None = 1.0, demo: bool = False,
                     message: str | None = None) -> str:
        """Replay a session folder or a video file through the same engine (``speed=None``: as fast as possible)."""
        p = self.check_replay_path(path)
        with self._lock:
            self.stop()
            self.analyzer.reset()
            replay = Replay(p, speed=speed)
            self.engine.start_replay(replay)
            self._replay_path, self._replay_speed, self._demo = p, speed, demo
            self.source = "demo session" if demo else str(p)
            self.message = message or f"Replaying {self.source} at {'max speed' if speed is None else f'{speed:g}x'}."
            self._start_watch()
            return self.message

    def start_demo(self, reason: str = "") -> str:
        msg = "Playing the bundled demo session (assets/demo_session)"
        return self.start_replay(DEMO_SESSION, 1.0, demo=True, message=f"{msg}{': ' + reason if reason else ''}.")

    def _start_asr(self, text_source):
        """Feed microphone chunks to a streaming Whisper transcriber whose segments join the transcript."""
        from streams.packets import AudioChunk
        from umq.perception.asr import StreamingTranscriber

        st = StreamingTranscriber(on_segments=lambda segs: [text_source.push_segment(s) for s in segs]).start()
        self._asr = st

        def tap(packet) -> None:
            if isinstance(packet, AudioChunk):
                st.feed(packet.samples, packet.t, packet.rate)

        return tap

    def stop(self) -> None:
        with self._lock:
            if self._asr is not None:
                self._asr.stop()
                self._asr = None
            self.stop_recording()
            if self._engine is not None and self._engine.mode != "idle":
                self._engine.stop()
            self._capture, self._text_source, self._browser = None, None, {}
            self._replay_path = None

    def close(self) -> None:
        self.stop()
        import shutil

        shutil.rmtree(self.upload_dir, ignore_errors=True)

    def _start_watch(self) -> None:
        """Loop the demo when it ends; say "finished" for other replays."""
        if self._watch is not None and self._watch.is_alive():
            return

        def watch() -> None:
            while True:
                time.sleep(0.5)
                with self._lock:
                    eng = self._engine
                    if self._replay_path is None or eng is None or eng.mode != "replay":
                        return
                    if not eng.replay_finished:
                        continue
                    if self._demo and self.loop_demo:
                        log.info("demo session ended: starting it again")
                        msg = self.message
                        self._watch = None
                        self.start_replay(DEMO_SESSION, 1.0, demo=True, message=msg)
                        return
                    self.message = f"Replay of {self.source} finished."
                    return

        self._watch = threading.Thread(target=watch, name="replay-watch", daemon=True)
        self._watch.start()

    # -- replay paths -------------------------------------------------------------------------------------
    def check_replay_path(self, path: str | os.PathLike) -> Path:
        """Resolve ``path`` and refuse anything outside :attr:`allowed_roots` (no traversal from the UI)."""
        from streams.session import is_session_dir

        p = Path(path).expanduser()
        try:
            p = p.resolve(strict=True)
        except (OSError, RuntimeError):
            raise ReplayPathError(f"{path}: no such session folder or video file") from None
        if not any(p == r or r in p.parents for r in self.allowed_roots):
            roots = ", ".join(str(r) for r in self.allowed_roots)
            raise ReplayPathError(f"{path} is outside the folders the dashboard may read ({roots}); "
                                  "start the app with --allow DIR to add one")
        if not (is_session_dir(p) or (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)):
            raise ReplayPathError(f"{path} is neither a session folder (meta.json) nor a video file "
                                  f"({', '.join(VIDEO_SUFFIXES)})")
        return p

    def accept_upload(self, tmp_path: str | os.PathLike, max_bytes: int) -> Path:
        """Move an uploaded video into the private upload folder after checking its size and type."""
        src = Path(tmp_path)
        if src.suffix.lower() not in VIDEO_SUFFIXES:
            raise ReplayPathError(f"{src.name}: only video files ({', '.join(VIDEO_SUFFIXES)}) can be uploaded")
        size = src.stat().st_size
        if size > max_bytes:
            raise ReplayPathError(f"{src.name} is {size / 2**20:.0f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
        dst = self.upload_dir / f"upload-{int(time.time() * 1000)}{src.suffix.lower()}"
        dst.write_bytes(src.read_bytes())
        return dst

    # -- live extras ----------------------------------------------------------------------------------------
    def type_line(self, text: str) -> bool:
        """Add a transcript line typed in the UI (live only)."""
        src = self._text_source
        return src is not None and src.push(text) is not None

    def push_browser_frame(self, rgb) -> bool:
        cam = self._browser.get("video")
        return bool(cam and cam.push(rgb))

    def push_browser_audio(self, rate: int, samples) -> bool:
        mic = self._browser.get("audio")
        return bool(mic and mic.push(rate, samples))

    def start_recording(self) -> str:
        from streams.recorder import SessionRecorder

        with self._lock:
            if self._capture is None:
                raise RuntimeError("recording needs live capture: start live analysis first")
            if self._recorder is not None:
                return str(self._recorder.path)
            out = self.record_dir / time.strftime("session-%Y%m%d-%H%M%S")
            rec = SessionRecorder(out, {"command": "dashboard", "sources": self._capture.meta(),
                                        "video_fps": self._capture.video_fps}, clock=self.engine.clock)
            rec.start()
            self._recorder = rec
            self._record_switch.target = rec
            self._record_windows = _RecordWindows(rec)
            self.engine.on_window(self._record_windows)
            return str(out)

    def stop_recording(self) -> str | None:
        with self._lock:
            rec, self._recorder = self._recorder, None
            self._record_switch.target = None
            if rec is None:
                return None
            if self._engine is not None and self._record_windows is not None:
                self._engine.off_window(self._record_windows)
                self._record_windows = None
            rec.close(self.engine.clock.now())
            return str(rec.path)

    # -- reading ---------------------------------------------------------------------------------------------
    def state(self, seconds: float = 60.0) -> DashboardState:
        eng = self.engine
        hist = eng.history()
        latest = hist[-1] if hist else None
        recent = [r for r in hist if latest is None or r.t1 >= latest.t1 - seconds]
        lines: list[str] = []
        for r in recent:
            t = r.transcript
            if t and (not lines or lines[-1] != t):
                lines.append(t)
        frame = eng.latest_frame()
        recording = str(self._recorder.path) if self._recorder is not None else None
        return DashboardState(eng.mode, self.source, self.message, latest, _pixels(frame),
                              recent, eng.telemetry(), recording, lines[-8:], eng.replay_finished)

    def lab_view(self):
        """The newest frame (BGR) as perception sees it under the quality lab's settings; None when the lab has the
        camera off or there is no frame. A frame the lab drops is shown as the others would look."""
        frame = self.engine.latest_frame()
        s = self.lab.settings
        if frame is None or not s.video_active:
            return _pixels(frame)
        if s.camera_off:
            return None
        seen = self.lab.corrupt_frame(frame, s) or self.lab.corrupt_frame(frame, dataclasses.replace(s, frame_drop=0.0))
        return _pixels(seen)

    def full_history(self) -> list[Result]:
        return self.engine.history()

    def frame_at(self, t: float):
        """The replayed session's frame at session time ``t`` (BGR) for scrubbing, or None."""
        p = self._replay_path
        if p is None:
            return None
        if p.is_dir():
            from streams.session import SessionReader

            return _pixels(SessionReader(p).frame_at(t))
        import cv2

        cap = cv2.VideoCapture(str(p))
        try:
            cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, t) * 1000.0)
            ok, img = cap.read()
            return img if ok else None
        finally:
            cap.release()


def _pixels(frame: VideoFrame | None):
    """The frame's BGR image for display, or None (no frame, or a replayed frame that does not decode)."""
    if frame is None:
        return None
    try:
        return frame.image
    except FrameDecodeError as exc:
        log.warning("preview: %s", exc)
        return None


class _RecordWindows:
    def __init__(self, rec) -> None:
        self.rec = rec

    def __call__(self, window) -> None:
        self.rec.record_window(window.to_json())


def _describe_capture(cap: Capture) -> str:
    parts = []
    for m, d in cap.info.items():
        if d["present"] and d.get("kind") != "typed":
            parts.append(f"{m.value}: {d['name'] or d['kind']}")
    return ", ".join(parts) or "no devices"
