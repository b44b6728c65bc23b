"""The dashboard's framework-neutral core: one engine, one analyzer, the quality lab, recording and replay.

The Gradio layer (:mod:`app.dashboard.ui`) only calls these methods and renders :class:`DashboardState`;
everything here is testable without a browser. What the dashboard *says* is derived from the engine's state on
every read (:meth:`DashboardController.phase`), never from text written once and left standing; messages a
person must read (refusals, saved recordings, failures) go to an :class:`~.events.EventLog`. Changing anything
needs control (:mod:`.control`): one browser session at a time, the others watch read-only.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from streams.clock import SessionClock
from streams.packets import FrameDecodeError, Modality, VideoFrame
from streams.replay import Replay
from umq.result import Result

from ..capture import Capture, CaptureOptions, build_capture
from ..engine import Engine, EngineConfig
from ..paths import DEMO_SESSION
from .access import DeviceChoiceError, ReplayPathError, check_devices, check_replay_path
from .control import ControlLease, NotInControl
from .events import EventLog
from .state import DashboardState, demo_script
from .uploads import VIDEO_SUFFIXES, UploadError, UploadStore

log = logging.getLogger(__name__)

__all__ = [
    "VIDEO_SUFFIXES",
    "DashboardController",
    "DashboardState",
    "DeviceChoiceError",
    "NotInControl",
    "ReplayPathError",
]
PREVIEW_MAX_AGE_S = 1.0  # a running preview older than this (session time) is not shown as the current picture
FRAME_GAP_S = 0.5  # a recorded frame older than this at the scrubbed time is not "the frame at that time"



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
        max_upload_bytes: the largest uploaded video; the upload folder holds at most twice that.

    Every method that changes what runs takes ``session`` (the browser session's id; ``None`` = the operator,
    e.g. the command line) and raises :class:`~.control.NotInControl` when another session holds control.
    """

    def __init__(self, analyzer_factory: Callable, allowed_roots: list[Path] | None = None,
                 record_dir: Path | None = None, loop_demo: bool = True,
                 engine_config: EngineConfig | None = None, max_upload_bytes: int = 200 * 2**20) -> None:
        self._factory = analyzer_factory
        self._analyzer = None
        self._engine: Engine | None = None
        self._engine_config = engine_config or EngineConfig()
        self.uploads = UploadStore(max_upload_bytes)
        self.allowed_roots = [p.resolve() for p in (allowed_roots or [DEMO_SESSION.parent, Path.cwd()])]
        self.allowed_roots.append(self.uploads.dir.resolve())
        self.record_dir = Path(record_dir or Path.cwd() / "recordings")
        self.loop_demo = loop_demo
        self.events = EventLog()
        self.control = ControlLease()
        self.operator_camera: str | None = None
        self._lock = threading.RLock()
        self._capture: Capture | None = None
        self._text_source = None
        self._browser: dict[str, object] = {}
        self._record_switch = _Switch()
        self._recorder = None
        self._record_windows: _RecordWindows | None = None
        self._replay_path: Path | None = None
        self._last_path: Path | None = None
        self._replay_speed: float | None = 1.0
        self.source = ""
        self._demo = False
        self._stopped = False
        self._watch: threading.Thread | None = None
        self._asr = None
        self._devices: tuple[list, list | str] | None = None
        self.browser_token = ""  # handed to the session that started browser capture (see browser_routes)

    @property
    def upload_dir(self) -> Path:
        return self.uploads.dir

    def say(self, text: str, level: str = "info") -> str:
        """Log a message for the person (toast + event log) and return it."""
        self.events.add(text, level)
        return text

    # -- devices ------------------------------------------------------------------------------------------
    def devices(self) -> tuple[list, list | str]:
        """``(cameras, microphones or the reason there are none)``, probed once per process: opening cameras to
        find them takes time, and both the start-up decision and the pickers need the answer."""
        if self._devices is None:
            from streams.devices import list_cameras, list_microphones

            self._devices = (list_cameras(max_index=2), list_microphones())
        return self._devices

    def camera_choices(self) -> list[str]:
        """What the camera picker may offer: ``none``, probed indices, and the operator's ``--camera``."""
        out = ["none"] + [str(c.id) for c in self.devices()[0]]
        return out + (["command line"] if self.operator_camera else [])

    def check_devices(self, camera: str | None, mic: str | None) -> tuple[str, str | None]:
        """Map picker values to capture options (:func:`.access.check_devices`)."""
        return check_devices(camera, mic, self.camera_choices(), self.devices()[1], self.operator_camera)

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

    def set_lab(self, settings, session: str | None = None) -> None:
        """Apply quality-lab settings (needs control: another session's lab is not silently undone)."""
        self.control.claim(session)
        self.lab.set(settings)

    def reset_lab(self, session: str | None = None) -> None:
        self.control.claim(session)
        self.lab.reset()

    # -- starting and stopping ---------------------------------------------------------------------------
    def start_live(self, opts: CaptureOptions | None = None, browser: bool = False, asr: bool = False,
                   session: str | None = None) -> str:
        """Capture from devices (or the browser's camera and microphone); returns the status message.

        ``asr``: transcribe the microphone with Whisper tiny.en (faster-whisper) into the transcript stream.
        """
        from streams.transcript import TranscriptSource

        self.control.claim(session)
        with self._lock:
            self.stop()
            clock = SessionClock()
            opts = opts or CaptureOptions(source="devices")
            if session is None and opts.camera not in (None, "none") and not str(opts.camera).isdigit():
                self.operator_camera = str(opts.camera)  # the operator's file/URL: offered as "command line"
            if browser:
                from streams.browser import BrowserCamera, BrowserMicrophone

                cam, mic = BrowserCamera(clock), BrowserMicrophone(clock)
                info = {"present": True, "kind": "browser", "device": None, "reason": ""}
                cap = Capture([cam, mic], {Modality.VIDEO: {**info, "name": cam.name},
                                           Modality.AUDIO: {**info, "name": mic.name}})
                self._browser = {"video": cam, "audio": mic}
                self.browser_token = secrets.token_urlsafe(24)
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
            self._demo, self._stopped, self._last_path = False, False, None  # scrubbing shows no old file's frames
            self.source = "browser camera + microphone" if browser else _describe_capture(cap)
            return self.say(f"Live analysis started: {self.source}.")

    def start_replay(self, path: str | os.PathLike, speed: float | None = 1.0, demo: bool = False,
                     message: str | None = None, session: str | None = None) -> str:
        """Replay a session folder or a video file through the same engine (``speed=None``: as fast as possible)."""
        self.control.claim(session)
        p = self.check_replay_path(path)
        with self._lock:
            self.stop()
            self.analyzer.reset()
            replay = Replay(p, speed=speed)
            self.engine.start_replay(replay)
            self._replay_path, self._replay_speed, self._demo, self._stopped = p, speed, demo, False
            self._last_path = p
            self.source = "demo session" if demo else self._display_name(p)
            self._start_watch()
            return self.say(message or f"Replaying {self.source} at {_speed(speed)}.")

    def start_demo(self, reason: str = "", session: str | None = None) -> str:
        msg = "Playing the bundled demo session (assets/demo_session)"
        return self.start_replay(DEMO_SESSION, 1.0, demo=True, message=f"{msg}{': ' + reason if reason else ''}.",
                                 session=session)

    def _display_name(self, p: Path) -> str:
        """Uploads are named "uploaded video", not by their private temporary path."""
        return "uploaded video" if self.uploads.dir.resolve() in p.parents else str(p)

    def _start_asr(self, text_source):
        """Feed microphone chunks to a streaming Whisper transcriber whose segments join the transcript."""
        from streams.packets import AudioChunk
        from umq.perception import StreamingTranscriber

        st = StreamingTranscriber(on_segments=lambda segs: [text_source.push_segment(s) for s in segs]).start()
        self._asr = st

        def tap(packet) -> None:
            if isinstance(packet, AudioChunk):
                st.feed(packet.samples, packet.t, packet.rate)

        return tap

    def stop(self, session: str | None = None) -> None:
        """Stop whatever runs; the last result and frame stay, marked stale ("stopped at t = ...")."""
        self.control.claim(session)
        with self._lock:
            if self._asr is not None:
                self._asr.stop()
                self._asr = None
            saved = self.stop_recording()
            if saved:
                self.say(f"Recording saved to {saved}.")
            if self._engine is not None and self._engine.mode != "idle":
                self._engine.stop()
                self._stopped = True
            self._capture, self._text_source, self._browser = None, None, {}
            self._replay_path, self.browser_token = None, ""

    def close(self) -> None:
        self.stop()
        self.uploads.close()

    def _start_watch(self) -> None:
        """Loop the demo when it ends; log "finished" (or the failure) for other replays."""
        if self._watch is not None and self._watch.is_alive():
            return

        def watch() -> None:
            while True:
                time.sleep(0.5)
                with self._lock:
                    eng = self._engine
                    if self._replay_path is None or eng is None or eng.mode != "replay":
                        return
                    failure = getattr(eng, "failure", None)
                    if failure:
                        self.say(f"Replay of {self.source} failed: {failure}", "error")
                        return
                    if not eng.replay_finished:
                        continue
                    if self._demo and self.loop_demo:
                        log.info("demo session ended: starting it again")
                        self._watch = None
                        self.start_replay(DEMO_SESSION, 1.0, demo=True, message="The demo session starts again.")
                        return
                    self.say(f"Replay of {self.source} finished.")
                    return

        self._watch = threading.Thread(target=watch, name="replay-watch", daemon=True)
        self._watch.start()

    # -- replay paths -------------------------------------------------------------------------------------
    def check_replay_path(self, path: str | os.PathLike) -> Path:
        """Resolve ``path`` and refuse anything outside :attr:`allowed_roots` (:func:`.access.check_replay_path`)."""
        return check_replay_path(path, self.allowed_roots, hidden=[self.uploads.dir.resolve()])

    def accept_upload(self, tmp_path: str | os.PathLike, max_bytes: int | None = None,
                      transcript: str | os.PathLike | None = None) -> Path:
        """Check an uploaded video (and optional .srt/.vtt) and move it into the private upload folder, replacing
        the previous upload; refused files are deleted. Raises :class:`ReplayPathError` with the reason."""
        if max_bytes is not None:
            self.uploads.max_bytes = max_bytes
        try:
            return self.uploads.accept(tmp_path, transcript)[0]
        except (UploadError, OSError) as exc:
            raise ReplayPathError(str(exc)) from None

    # -- live extras ----------------------------------------------------------------------------------------
    def type_line(self, text: str) -> bool:
        """Add a transcript line typed in the UI (live only)."""
        src = self._text_source
        return src is not None and src.push(text) is not None

    def browser_token_ok(self, token: str) -> bool:
        return bool(self.browser_token) and secrets.compare_digest(token, self.browser_token)

    def push_browser_frame(self, rgb) -> bool:
        cam = self._browser.get("video")
        return bool(cam and cam.push(rgb))

    def push_browser_audio(self, rate: int, samples) -> bool:
        mic = self._browser.get("audio")
        return bool(mic and mic.push(rate, samples))

    def browser_stats(self) -> dict:
        """What this browser's capture delivered: audio seconds, coverage (1 = no gaps), restarts, frames."""
        mic, cam = self._browser.get("audio"), self._browser.get("video")
        if mic is None:
            return {}
        return {"audio_s": round(mic.received_s, 3), "audio_coverage": round(mic.coverage, 4),
                "audio_restarts": mic.restarts, "frames": getattr(cam, "_index", 0)}

    def start_recording(self, session: str | None = None) -> str:
        from streams.recorder import SessionRecorder

        self.control.claim(session)
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

    def stop_recording(self, session: str | None = None) -> str | None:
        self.control.claim(session)
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
    def phase(self) -> tuple[str, str]:
        """``(phase, status sentence)`` from the engine's state right now (see :data:`PHASES`)."""
        eng = self.engine
        failure = getattr(eng, "failure", None)
        last = eng.latest_result()
        at = f" at t = {last.t1:.1f} s" if last is not None else ""
        if failure:
            return "failed", f"Failed: {failure}"
        if eng.mode == "live":
            if self._recorder is not None:
                return "recording", f"Live analysis: {self.source}; recording to {self._recorder.path}."
            return "live", f"Live analysis: {self.source}."
        if eng.mode == "replay":
            if eng.replay_finished:
                return "finished", f"Replay of {self.source} finished{at}."
            return "replay", f"Replaying {self.source} at {_speed(self._replay_speed)}, t = {eng.now():.1f} s."
        if self._stopped and last is not None:
            return "idle", f"Idle: stopped{at} ({self.source}); the results shown are from then."
        if self._stopped:
            return "idle", f"Idle: stopped ({self.source}) before its first result."
        return "idle", "Idle: nothing is playing. Start live analysis, play the demo or open a replay."

    def status(self) -> str:
        return self.phase()[1]

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
        phase, status = self.phase()
        stale = phase in ("idle", "failed") and latest is not None
        if frame is not None and not stale and eng.now() - frame.t > PREVIEW_MAX_AGE_S:
            frame = None  # the camera stopped delivering: show "no video", not the last face as if live
        return DashboardState(eng.mode, self.source, status, latest, _pixels(frame), recent, eng.telemetry(),
                              recording, lines[-8:], eng.replay_finished, phase=phase, stale=stale,
                              stopped_at=latest.t1 if stale else None, failure=getattr(eng, "failure", None),
                              script=self.script())

    def script(self) -> dict[str, tuple[float, float]]:
        """The demo's scripted stretches (``meta.json`` ``script``) when the demo is what was last played."""
        p = self._last_path
        if p is None or p.resolve() != DEMO_SESSION.resolve():
            return {}
        return demo_script()

    def lab_view(self):
        """The newest frame (BGR) as perception sees it under the quality lab's settings; None when the lab has the
        camera off or there is no frame. A frame the lab drops is shown as the others would look."""
        frame = self.engine.latest_frame()
        if frame is not None and self.engine.mode != "idle" and self.engine.now() - frame.t > PREVIEW_MAX_AGE_S:
            return None
        s = self.lab.settings
        if frame is None or not s.video_active:
            return _pixels(frame)
        if s.camera_off:
            return None
        seen = self.lab.corrupt_frame(frame, s) or self.lab.corrupt_frame(frame, dataclasses.replace(s, frame_drop=0.0))
        return _pixels(seen)

    def full_history(self) -> list[Result]:
        return self.engine.history()

    def window_at(self, t: float) -> Result | None:
        """The window *centred* nearest to ``t`` (the frame at ``t`` lies in its middle, not at its end)."""
        h = self.full_history()
        return min(h, key=lambda r: abs((r.t0 + r.t1) / 2 - t), default=None)

    def frame_at(self, t: float):
        """The replayed (or last replayed) session's frame at session time ``t`` (BGR) for scrubbing, or None."""
        p = self._replay_path or self._last_path
        if p is None or not p.exists():
            return None
        if p.is_dir():
            from streams.session import SessionReader

            f = SessionReader(p).frame_at(t)
            return _pixels(f) if f is not None and t - f.t <= FRAME_GAP_S else None  # camera off: no old face
        import cv2

        cap = cv2.VideoCapture(str(p))
        try:
            cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, t) * 1000.0)
            ok, img = cap.read()
            return img if ok else None
        finally:
            cap.release()


def _speed(speed: float | None) -> str:
    return "max speed" if speed is None else f"{speed:g}x"


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
