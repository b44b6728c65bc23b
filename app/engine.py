"""The runtime engine: sources -> time-aligned buffer -> windower -> analysis stages -> results.

One engine for live and replay: they differ only in where packets come from (capture threads on the session
clock, or a :class:`~streams.replay.Replay` on a simulated clock). Analysis stages (perception, the UMQ model)
each run in their own thread behind one-slot mailboxes (:mod:`app.pipeline`): live, the newest window wins and a
slow stage never grows a backlog (a skipped window's transcript lines that no later window holds ride on to the
next one: :func:`streams.windows.carry_dropped`); replaying at maximum speed, every window is analysed.

The engine's observable state is one documented dataclass, :class:`Telemetry`, which the dashboard polls.

Failures reach the caller, never only the log. :attr:`Engine.failure` is a one-line reason naming the file (or
the stage) when the current or last run failed, ``None`` otherwise; it is reset when a run starts. A run fails
when the replay's reader raises (a damaged file), when a stage cannot work at all (a model file that does not
load, or :data:`FAILING_IN_A_ROW` windows failing in a row before any succeeded; a replay is then cancelled
instead of logging the same error for every window), when a replay ends with windows whose analysis failed, or
when a replay cuts no window at all (the media is shorter than one window, or nothing decodes).
:attr:`Engine.replay_finished` is True only for a replay that played to its end without failure;
:meth:`Engine.wait_replay` returns once the replay ended (finished or failed): read :attr:`Engine.failure` then.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streams.buffer import TimeAlignedBuffer, WindowConfig, Windower
from streams.clock import Clock, SessionClock
from streams.packets import SourceStatus, VideoFrame
from streams.replay import Replay
from streams.source import Tee
from streams.windows import Window, carry_dropped
from umq.result import Result

from .capture import Capture
from .pipeline import LatencyStats, Pipeline, Stage

log = logging.getLogger(__name__)

FAILING_IN_A_ROW = 3
"""A stage that fails on this many windows in a row without ever succeeding fails the run: it cannot work (a
damaged model file loaded lazily), and the same error for every window of a long replay helps nobody."""


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings.

    Attributes:
        window: window length, hop and grace (see :class:`streams.buffer.WindowConfig`).
        tick_s: the live windower wakes on every packet, and at least this often (for the grace deadline).
        history: results kept in memory for plots and export (bounded: 7200 = one hour at a 0.5 s hop).
        policy: mailbox policy; ``None`` picks ``latest`` for live and paced replay, ``block`` for replay at
            maximum speed.
    """

    window: WindowConfig = WindowConfig()
    tick_s: float = 0.02
    history: int = 7200
    policy: str | None = None


@dataclass
class Telemetry:
    """A snapshot of what the engine is doing, for the dashboard's telemetry panel and the benchmarks.

    Attributes:
        mode: ``idle``, ``live`` or ``replay``.
        session_t: current session time (simulated in replay).
        windows: windows cut so far; results: results produced so far.
        dropped: per stage, windows overwritten before that stage took them (latest-wins).
        stage_ms: per stage, latency percentiles ``{"n", "p50", "p95", "p99"}`` in milliseconds.
        end_to_end_ms: percentiles of capture-to-result latency (session time of the result minus the window end).
        sources: modality -> ``{"state", "reason"}`` as last reported by its source.
        video_fps: frames per second received over the last 2 s of wall time (0 when none arrive).
        buffer: item counts held by the time-aligned buffer.
        errors: per stage, windows that failed (skipped) and the last error message.
    """

    mode: str = "idle"
    session_t: float = 0.0
    windows: int = 0
    results: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    stage_ms: dict[str, dict] = field(default_factory=dict)
    end_to_end_ms: dict = field(default_factory=dict)
    sources: dict[str, dict] = field(default_factory=dict)
    video_fps: float = 0.0
    buffer: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    last_error: str = ""


def arrival_rate(arrivals: list[float], now: float, span: float = 2.0) -> float:
    """Frames per second actually received over the last ``span`` seconds of wall time (0 when none arrived);
    over a shorter span while the run is younger than ``span``."""
    recent = [a for a in arrivals if now - a <= span]
    if not recent:
        return 0.0
    first = arrivals[0]
    return len(recent) / max(min(span, now - first), 1e-3) if now - first >= 0.25 else 0.0


class Engine:
    """Wires a packet source (live capture or replay) to analysis ``stages`` that turn a Window into a Result.

    ``stages`` is a sequence of ``(name, fn)``; the first takes a :class:`~streams.windows.Window`, the last
    returns a :class:`~umq.result.Result` (e.g. ``[("perception", front_ends), ("model", umq_runtime)]``).
    """

    def __init__(self, stages: Sequence[Stage], config: EngineConfig | None = None) -> None:
        self.stages = list(stages)
        self.config = config or EngineConfig()
        self.results: collections.deque[Result] = collections.deque(maxlen=self.config.history)
        self._subscribers: list[Callable[[Result], None]] = []
        self._lock = threading.Lock()
        self._pipeline: Pipeline | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._capture: Capture | None = None
        self._replay: Replay | None = None
        self._window_sinks: list[Callable[[Window], None]] = []
        self.clock: Clock = SessionClock()
        self.buffer = TimeAlignedBuffer()
        self._frame_times: collections.deque[float] = collections.deque(maxlen=600)
        self._latest_frame: VideoFrame | None = None
        self._statuses: dict[str, dict] = {}
        self._e2e: LatencyStats | None = None
        self._windows = 0
        self._produced = 0
        self._failure: str | None = None
        self._replay_over = False
        self.mode = "idle"

    # -- observers ------------------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Result], None]) -> None:
        """Call ``callback(result)`` for every result (from the model thread: keep it short, never block)."""
        self._subscribers.append(callback)

    def on_window(self, callback: Callable[[Window], None]) -> None:
        """Call ``callback(window)`` for every window cut (e.g. the recorder's ``windows.jsonl``)."""
        self._window_sinks.append(callback)

    def off_window(self, callback: Callable[[Window], None]) -> None:
        """Stop calling a callback registered with :meth:`on_window`."""
        self._window_sinks = [s for s in self._window_sinks if s is not callback]

    @property
    def replay_finished(self) -> bool:
        """True once a replay has fed its last packet and nothing failed (False while live, idle, still
        replaying, or after a failure: see :attr:`failure`)."""
        return (self.mode == "replay" and self._replay is not None and not self._replay.running
                and self._replay_over and self.failure is None)

    @property
    def failure(self) -> str | None:
        """Why the current or last run failed, in one line naming the file or stage; None when it did not.

        Reset when a run starts. Set by the replay's reader raising ("session folder ...: meta.json ..."), by a
        stage that cannot work ("perception stage failed on every window: face-net weights unreadable ..."), by
        a replay whose windows failed analysis, and by a replay that cut no window at all."""
        p = self._pipeline
        if self._failure is None and self._replay_over and p is not None and p.pending <= 0:
            self._check_replay_errors()  # the replay is over and its last windows are analysed
        return self._failure

    def _fail(self, reason: str) -> None:
        """Record the first failure of this run; a replay stops at once (its remaining windows would fail too)."""
        with self._lock:
            if self._failure is not None:
                return
            self._failure = reason
        log.info("run failed: %s", reason)  # the caller reports it (CLI error line, dashboard status)
        if self.mode == "replay" and self._replay is not None:
            self._replay.cancel()

    @property
    def capture(self) -> Capture | None:
        """The live capture being analysed (None in replay or before the first live run)."""
        return self._capture if self.mode == "live" else None

    def latest_frame(self) -> VideoFrame | None:
        """The newest captured frame (latest wins), for previews."""
        return self._latest_frame

    def latest_result(self) -> Result | None:
        with self._lock:
            return self.results[-1] if self.results else None

    def history(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start_live(self, capture: Capture, clock: Clock | None = None, extra_sinks: Sequence = ()) -> None:
        """Start capture and analysis on the session clock; ``extra_sinks`` (e.g. a recorder) see every packet."""
        self._begin("live", clock or SessionClock(), self.config.policy or "latest")
        self._capture = capture
        windower = Windower(self.buffer, self.config.window, absent_reasons=capture.absent_reasons)
        capture.connect(Tee(self._observe, self.buffer, *extra_sinks))
        capture.start()
        t = threading.Thread(target=self._window_loop, args=(windower,), name="windower", daemon=True)
        t.start()
        self._threads.append(t)

    def start_replay(self, replay: Replay, config: WindowConfig | None = None) -> None:
        """Replay a session folder or video file through the same stages."""
        policy = self.config.policy or ("block" if replay.speed is None else "latest")
        self._begin("replay", replay.clock, policy)
        self._replay = replay
        config = config or replay.window_config()
        replay.start(sink=self._observe, config=config, on_window=self._submit,
                     on_done=lambda exc: self._replay_done(replay, config, exc))
        self.clock = replay.clock

    def stop(self) -> None:
        """Stop sources, replay and stage threads; safe to call twice. Nothing captured is lost by stopping."""
        self._stop.set()
        if self._capture is not None:
            self._capture.stop()
        if self._replay is not None:
            self._replay.stop()
        for t in self._threads:
            t.join(5.0)
        self._threads.clear()
        if self._pipeline is not None:
            self._pipeline.stop()
        self.mode = "idle"

    def wait_replay(self, timeout: float | None = None) -> bool:
        """Block until a replay has ended (fed every window, or failed) and the stages have finished what they
        were given; False only on timeout. Then :attr:`failure` says whether the replay failed and why."""
        if self._replay is None:
            return True
        if not self._replay.join(timeout):
            return False
        drained = self._pipeline.drain(timeout or 60.0) if self._pipeline else True
        if drained:
            self._check_replay_errors()
        return drained

    def _replay_done(self, replay: Replay, config: WindowConfig, exc: BaseException | None) -> None:
        """The replay thread ended: a reader error, or no window at all, fails the run."""
        self._replay_over = True
        if exc is not None:
            self._fail(replay.failure or f"replay of {replay.path} failed: {exc}")
        elif self._windows == 0 and not replay.cancelled:
            sim = float(replay.stats.get("sim_s", 0.0))
            notes = [s["reason"] for s in self._statuses.values()
                     if s.get("reason") and not s["reason"].startswith("end of ")]
            self._fail(f"{replay.path.name}: no analysis window: {sim:.1f} s of media is shorter than one "
                       f"{config.window_s:g} s window" + (f" ({'; '.join(notes)})" if notes else "")
                       + "; nothing was analysed")

    def _check_replay_errors(self) -> None:
        """After a replay drained: windows whose analysis failed make it a failed run (never a silent gap)."""
        p, replay = self._pipeline, self._replay
        if p is None or replay is None:
            return
        failed = sum(p.errors.values())
        if failed and self._failure is None:
            self._fail(f"replay of {replay.path}: analysis failed on {failed} of {self._windows} windows "
                       f"({p.last_error})")

    def _on_stage_error(self, stage: str, exc: Exception, in_a_row: int) -> None:
        p = self._pipeline
        never_worked = p is not None and p.succeeded.get(stage, 0) == 0
        if _cannot_load(exc) or (never_worked and in_a_row >= FAILING_IN_A_ROW):
            what = " ".join(str(exc).split()) or type(exc).__name__
            self._fail(f"{stage} stage failed on every window: {what}")

    # -- internals ------------------------------------------------------------------------------------------
    def _begin(self, mode: str, clock: Clock, policy: str) -> None:
        if self.mode != "idle":
            raise RuntimeError(f"engine already running ({self.mode}); stop it first")
        self._stop.clear()
        self.mode, self.clock = mode, clock
        self.buffer = TimeAlignedBuffer()
        with self._lock:
            self.results.clear()
        self._windows, self._statuses, self._latest_frame = 0, {}, None
        self._frame_times.clear()
        self._e2e = LatencyStats()
        self._produced = 0
        self._failure, self._replay_over = None, False
        # live, a skipped window hands its transcript lines on: a late ASR line is in that window only
        self._pipeline = Pipeline(self.stages, self._on_output, policy, on_error=self._on_stage_error,
                                  merge_dropped=carry_dropped)
        self._pipeline.start()

    def _observe(self, packet) -> None:
        """Side sink: latest frame for previews, measured fps, source states. Cheap and non-blocking."""
        if isinstance(packet, VideoFrame):
            self._latest_frame = packet
            self._frame_times.append(time.monotonic())  # arrivals, not stamps: true in every mode
        elif isinstance(packet, SourceStatus) and packet.modality is not None:
            self._statuses[packet.modality.value] = {"state": packet.state.value, "reason": packet.reason}

    def _window_loop(self, windower: Windower) -> None:
        """Cut windows as soon as they are complete: woken by every camera/microphone packet (a window is cut
        the moment its streams pass ``t1``), and every ``tick_s`` for the grace deadline of a stalled stream."""
        while not self._stop.is_set():
            for w in windower.wait_due(self.clock.now, self.config.tick_s):
                self._submit(w)

    def _submit(self, window: Window) -> None:
        self._windows += 1
        for sink in self._window_sinks:
            try:
                sink(window)
            except Exception:  # noqa: BLE001
                log.exception("window consumer failed")
        if self._pipeline is not None:
            self._pipeline.submit(window)

    def _on_output(self, result: Result, latency_ms: dict[str, float]) -> None:
        e2e = max(0.0, (self.now() - result.t1) * 1000.0)
        if self._e2e is not None:  # set by _begin, before the pipeline that calls this exists
            self._e2e.add(e2e)
        result = dataclasses.replace(result, latency_ms={**result.latency_ms, **latency_ms, "end_to_end": e2e})
        with self._lock:
            self.results.append(result)
            self._produced += 1
        for cb in list(self._subscribers):
            try:
                cb(result)
            except Exception:  # noqa: BLE001 - a UI bug must not stop the analysis
                log.exception("result subscriber failed")

    def pending(self) -> dict[str, int]:
        """Windows waiting in front of each stage right now (the backlog; bounded by the one-slot mailboxes)."""
        return self._pipeline.waiting() if self._pipeline is not None else {}

    def now(self) -> float:
        """Current session time: the capture clock live, the replay's simulated clock (which the replay thread
        replaces when it starts driving) in replay."""
        replay = self._replay
        return replay.clock.now() if self.mode == "replay" and replay is not None else self.clock.now()

    def telemetry(self) -> Telemetry:
        p = self._pipeline
        fps = arrival_rate(list(self._frame_times), time.monotonic())
        return Telemetry(
            mode=self.mode,
            session_t=self.now(),
            windows=self._windows,
            results=self._produced,
            dropped=p.dropped() if p else {},
            stage_ms={k: v.summary() for k, v in p.latency.items()} if p else {},
            end_to_end_ms=self._e2e.summary() if self._e2e else {},
            sources=dict(self._statuses),
            video_fps=fps,
            buffer=self.buffer.sizes(),
            errors=dict(p.errors) if p else {},
            last_error=p.last_error if p else "",
        )



def _cannot_load(exc: BaseException) -> bool:
    """A model or file that will not load on the next window either (a damaged checkpoint, changed weights)."""
    if isinstance(exc, (FileNotFoundError, ImportError, MemoryError)):
        return True
    names = {c.__name__ for c in type(exc).__mro__}  # by name: importing the model packages here costs seconds
    return bool(names & {"CheckpointError", "ModelDigestError"})
