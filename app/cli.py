"""Command line: ``python -m app [live|replay|record|devices]``.

With no command the dashboard opens: live when a camera or microphone works, otherwise playing the bundled demo
session (and saying why). ``live`` and ``replay PATH`` open the dashboard on that source; ``replay PATH
--headless`` writes one JSON line per window (a :class:`~umq.result.Result`: probabilities, label, quality, state,
reason, routing, latency) without a browser; ``record`` captures a session folder while cutting live windows on
the session clock. Library code logs; this module prints the short summaries a person reads.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .paths import DEMO_SESSION

log = logging.getLogger("app.cli")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


# -- argument types ----------------------------------------------------------------------------------------
def parse_speed(value: str) -> float | None:
    """``max`` (as fast as possible) or a positive real-time factor."""
    if value.strip().lower() in ("max", "fast", "inf"):
        return None
    try:
        speed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--speed must be 'max' or a number, got {value!r}") from None
    if not math.isfinite(speed) or speed <= 0:
        raise argparse.ArgumentTypeError(f"--speed must be 'max' or a positive number, got {value!r}")
    return speed


def parse_span(value: str) -> tuple[float, float]:
    """``A:B`` seconds of session time."""
    try:
        a, b = (float(x) for x in value.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:END in seconds, got {value!r}") from None
    if not b > a >= 0:
        raise argparse.ArgumentTypeError(f"need 0 <= START < END, got {value!r}")
    return a, b


def positive(value: str) -> float:
    """A finite positive number (``nan`` and ``inf`` are refused: they never compare as a person expects)."""
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return v


def window_length(value: str) -> float:
    """``--window``: seconds, at most :data:`streams.buffer.MAX_WINDOW_S`."""
    from streams.buffer import MAX_WINDOW_S

    v = positive(value)
    if v > MAX_WINDOW_S:
        raise argparse.ArgumentTypeError(f"a window of at most {MAX_WINDOW_S:g} s, got {value!r}")
    return v


def hop_length(value: str) -> float:
    """``--hop``: seconds, at least :data:`streams.buffer.MIN_HOP_S` (bounds windows per second of media)."""
    from streams.buffer import MIN_HOP_S

    v = positive(value)
    if v < MIN_HOP_S:
        raise argparse.ArgumentTypeError(f"a hop of at least {MIN_HOP_S:g} s (at most {1 / MIN_HOP_S:g} windows "
                                         f"per second of media), got {value!r}")
    return v


def port_number(value: str) -> int:
    """``--port``: 1-65535, checked before any model loads."""
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"a port between 1 and 65535, got {value!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    prog = "umq-live" if os.path.basename(sys.argv[0] or "") == "umq-live" else "python -m app"
    p = argparse.ArgumentParser(prog=prog, description="Real-time multimodal affect analysis (UMQ).")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", metavar="{live,replay,record,devices,bench,analyze}")
    _server_options(p)

    lv = sub.add_parser("live", help="live analysis from a camera, a microphone and an optional transcript")
    lv.add_argument("--camera", help="camera index, device path or video file; 'none' for no video")
    lv.add_argument("--mic", help="microphone id or name fragment (default: system input); 'none' for no audio")
    lv.add_argument("--transcript", help="'-' (stdin), a .srt/.vtt/.jsonl file, a file to tail, or 'none' "
                                         "(lines can always be typed in the dashboard)")
    lv.add_argument("--browser", action="store_true",
                    help="take camera and microphone from the browser (for an app on a remote machine)")
    _lsl_option(lv)
    _server_options(lv)

    r = sub.add_parser("record", help="record a session folder (camera, microphone, transcript)")
    r.add_argument("--out", required=True, type=Path, help="session folder to create")
    r.add_argument("--seconds", type=positive, help="stop after this many seconds (default: until Ctrl-C)")
    r.add_argument("--source", choices=("synthetic", "devices"), default="devices",
                   help="real devices (default) or generated test signals")
    r.add_argument("--camera", help="camera index, device path or video file; 'none' to record without video")
    r.add_argument("--mic", help="microphone id or name fragment (default: system input); 'none' for no audio")
    r.add_argument("--transcript", help="'-' (stdin), a .srt/.vtt/.jsonl file, a file to tail, or 'none'")
    r.add_argument("--window", type=window_length, default=2.0, help="analysis window in seconds (default 2.0)")
    r.add_argument("--hop", type=hop_length, default=0.5, help="time between windows in seconds (default 0.5)")
    r.add_argument("--force", action="store_true",
                   help="record into a folder that holds other files (never one holding session files)")
    g = r.add_argument_group("scripted failures (--source synthetic only)")
    g.add_argument("--camera-off", type=parse_span, action="append", default=[], metavar="A:B")
    g.add_argument("--camera-frozen", type=parse_span, action="append", default=[], metavar="A:B")
    g.add_argument("--mic-off", type=parse_span, action="append", default=[], metavar="A:B")
    g.add_argument("--mic-silent", type=parse_span, action="append", default=[], metavar="A:B")
    g.add_argument("--transcript-gap", type=parse_span, action="append", default=[], metavar="A:B")

    rp = sub.add_parser("replay", help="replay a session folder or a video file")
    rp.add_argument("path", type=Path, help="session folder (from `record`) or a video file (mp4, mkv, webm, avi)")
    rp.add_argument("--headless", action="store_true", help="no dashboard: write one JSON line per window")
    rp.add_argument("--out", default="-", help="JSON lines file for --headless (default: stdout)")
    rp.add_argument("--windows", action="store_true",
                    help="with --headless: write the windows' capture health only (no models; fast)")
    rp.add_argument("--speed", type=parse_speed, default=None,
                    help="'max' (default with --headless) or a real-time factor such as 1 or 2.5")
    rp.add_argument("--window", type=window_length, help="override the recorded window length (s, at most 60)")
    rp.add_argument("--hop", type=hop_length, help="override the recorded hop (s, at least 0.05)")
    _lsl_option(rp)
    _server_options(rp)

    sub.add_parser("devices", help="list cameras and microphones")
    from . import batch, bench

    bench.add_parser(sub)
    batch.add_parser(sub)
    return p


def _lsl_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lsl", nargs="?", const="umq-live", default=None, metavar="NAME",
                   help="publish each window's result as Lab Streaming Layer streams NAME-emotion, NAME-quality and "
                        "NAME-markers (default NAME umq-live; see app/lsl.py)")


def _attach_lsl(args: argparse.Namespace, engine, hop_s: float) -> None:
    """``--lsl``: raises :class:`app.lsl.LslUnavailable` (a clear message) when pylsl cannot be used."""
    if getattr(args, "lsl", None) is not None:
        from .lsl import attach_lsl

        attach_lsl(engine, args.lsl, hop_s)


def _server_options(p: argparse.ArgumentParser) -> None:
    d = argparse.SUPPRESS  # options may come before or after the command; set once in main()
    g = p.add_argument_group("dashboard and model")
    g.add_argument("--host", default=d, help="address to bind (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=port_number, default=d, help="port (default: 7860 or the next free one)")
    g.add_argument("--share", action="store_true", default=d, help="create a public Gradio share link")
    g.add_argument("--auth", default=d, metavar="USER:PASSWORD",
                   help="require a login (or set UMQ_AUTH=USER:PASSWORD to keep it out of the process list)")
    g.add_argument("--allow", action="append", type=Path, default=d, metavar="DIR",
                   help="extra folder the dashboard may replay from (repeatable)")
    g.add_argument("--device", default=d, help="cuda or cpu (default: cuda when available)")
    g.add_argument("--asr", action="store_true", default=d,
                   help="transcribe the microphone with Whisper tiny.en when there is no transcript")


SERVER_DEFAULTS = {"host": "127.0.0.1", "port": None, "share": False, "auth": None, "allow": [], "device": None,
                   "asr": False}


def setup_logging(verbose: bool, quiet: bool) -> None:
    """INFO to stderr; leaves an already configured root logger alone (an embedding app or pytest owns it)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


# -- record ------------------------------------------------------------------------------------------------
class _StopFlag:
    """SIGINT/SIGTERM ask for a clean stop (meta marked complete); a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None
        self._old: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]

    def _handle(self, signum: int, _frame: object) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        self.event.set()


def cmd_record(args: argparse.Namespace) -> int:
    from streams.buffer import TimeAlignedBuffer, WindowConfig, Windower
    from streams.clock import SessionClock
    from streams.recorder import RecorderError, SessionRecorder
    from streams.source import Tee

    from .capture import CaptureOptions, build_capture

    try:
        config = WindowConfig(window_s=args.window, hop_s=args.hop)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    clock = SessionClock()
    opts = CaptureOptions(source=args.source, camera=args.camera, mic=args.mic, transcript=args.transcript,
                          camera_off=tuple(args.camera_off), camera_frozen=tuple(args.camera_frozen),
                          mic_off=tuple(args.mic_off), mic_silent=tuple(args.mic_silent),
                          transcript_gaps=tuple(args.transcript_gap))
    try:
        capture = build_capture(opts, clock)
    except (ValueError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    config = dataclasses.replace(config, video_fps=capture.video_fps)
    buffer = TimeAlignedBuffer()
    windower = Windower(buffer, config, absent_reasons=capture.absent_reasons)
    meta = {"command": "record", "source": args.source, "sources": capture.meta(), "video_fps": capture.video_fps,
            "window_config": config.to_json(), "seconds_requested": args.seconds}
    recorder = SessionRecorder(args.out, meta, clock=clock, force=args.force)
    try:
        recorder.start()
    except RecorderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    stop = _StopFlag()
    stop.install()
    capture.connect(Tee(recorder, buffer))
    windows = 0
    present = {"video": 0, "audio": 0, "text": 0}
    t_stop: float | None = None

    def emit(ws) -> None:
        nonlocal windows
        for w in ws:
            js = w.to_json()
            recorder.record_window(js)
            windows += 1
            for m in present:
                present[m] += bool(js[m]["present"])

    try:
        capture.start()
        log.info("recording to %s%s; Ctrl-C stops", args.out, f" for {args.seconds:g} s" if args.seconds else "")
        while not stop.event.is_set():
            now = clock.now()
            if args.seconds is not None and now >= args.seconds:
                break
            # wake on every camera/microphone packet (a window is cut once its streams pass t1) and at least
            # every 20 ms (the grace deadline of a stalled stream), as the live engine does
            limit = args.seconds - now if args.seconds is not None else 0.02
            emit(windower.wait_due(clock.now, max(0.0, min(0.02, limit))))
        t_stop = clock.now()
        emit(windower.due(t_stop, final=True))
    finally:
        capture.stop()
        stop.restore()
        final = recorder.close(end_t=t_stop)
    stats = recorder.stats()
    drops = {k: v for k, v in stats["dropped"].items() if v}
    print(f"recorded {final['end_t']:.1f} s to {args.out}"
          f"{' (stopped by ' + stop.signal + ')' if stop.signal else ''}")
    print(f"  frames {stats['frames']}, audio {stats['audio_samples'] / 16000:.1f} s, text segments {stats['text']}, "
          f"windows {windows} (present: video {present['video']}, audio {present['audio']}, text {present['text']})")
    print(f"  drops {drops or 'none'}; largest sink call {stats['max_put_ms']:.2f} ms, "
          f"largest fsync {stats['max_sync_ms']:.1f} ms")
    if recorder.error:
        print(f"error: recording stopped early: {recorder.error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


# -- replay ------------------------------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    """``replay PATH``: the dashboard, or with ``--headless`` JSON lines (:func:`app.headless.replay_headless`)."""
    if not args.headless:
        return run_dashboard(args, replay=args.path)
    from .headless import replay_headless

    return replay_headless(args.path, out=args.out, windows_only=args.windows, speed=args.speed, window=args.window,
                           hop=args.hop, device=_opt(args, "device"), lsl=getattr(args, "lsl", None))


# -- devices / default ---------------------------------------------------------------------------------------
def cmd_devices(_: argparse.Namespace) -> int:
    from streams.devices import describe_devices

    print(describe_devices())
    return EXIT_OK


def _opt(args: argparse.Namespace, name: str):
    return getattr(args, name, SERVER_DEFAULTS[name])


def _auth(args: argparse.Namespace) -> tuple[str, str] | None:
    spec = _opt(args, "auth") or os.environ.get("UMQ_AUTH")
    if not spec:
        return None
    user, sep, password = spec.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth / UMQ_AUTH must be USER:PASSWORD")
    return user, password


def security_warnings(host: str, share: bool, auth) -> list[str]:
    """What to tell a user who exposes the dashboard beyond this machine without a login."""
    out = []
    exposed = host not in ("127.0.0.1", "localhost", "::1")
    if (exposed or share) and auth is None:
        where = "a public share link" if share else f"{host} (reachable from other machines)"
        out.append(f"WARNING: the dashboard is served on {where} without a login; anyone who can reach it sees "
                   "your camera and microphone analysis. Add --auth USER:PASSWORD (or UMQ_AUTH).")
    return out


def run_dashboard(args: argparse.Namespace, replay: Path | None = None, live: bool | None = None) -> int:
    """Open the dashboard on live capture, a replay, or (no devices) the demo session; blocks until Ctrl-C."""
    from umq.checkpoint import CheckpointError
    from umq.runtime import Analyzer

    from .capture import CaptureOptions, missing_input_lines
    from .dashboard.controller import DashboardController, ReplayPathError
    from .dashboard.ui import launch
    from .outputs import one_line

    host, port, share = _opt(args, "host"), _opt(args, "port"), _opt(args, "share")
    try:
        auth = _auth(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for w in security_warnings(host, share, auth):
        print(w, file=sys.stderr)
    roots = [DEMO_SESSION.parent, Path.cwd(), *(_opt(args, "allow") or [])]
    if replay is not None:
        roots.append(Path(replay).expanduser().resolve().parent)
    device = _opt(args, "device")
    ctl = DashboardController(lambda: Analyzer(device=device), allowed_roots=roots)
    try:
        # load the models now: a broken checkpoint is reported before the server starts, and the first windows
        # are not slowed down by lazy loading
        log.info("models ready in %.1f s", ctl.analyzer.warm_up())
        _attach_lsl(args, ctl.engine, ctl.engine.config.window.hop_s)
        if replay is not None:
            print(ctl.start_replay(replay, 1.0 if args.speed is None else args.speed))
        elif live or live is None:
            opts = CaptureOptions(source="devices", camera=getattr(args, "camera", None),
                                  mic=getattr(args, "mic", None),
                                  transcript=getattr(args, "transcript", None))
            if live is None and not getattr(args, "browser", False):
                why = _no_devices_reason(*ctl.devices())
                if why:
                    print(ctl.start_demo(why))
                else:
                    print(ctl.start_live(opts, asr=_opt(args, "asr")))
            else:
                print(ctl.start_live(opts, browser=getattr(args, "browser", False), asr=_opt(args, "asr")))
            if ctl.engine.capture is not None and not getattr(args, "browser", False):
                for line in missing_input_lines(ctl.engine.capture):
                    print(line, file=sys.stderr)
    except (CheckpointError, ReplayPathError, ValueError, OSError, RuntimeError, ImportError) as exc:
        # a damaged face/voice/text/UMQ weights file included (CheckpointError is a RuntimeError)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        ctl.close()
        return EXIT_ERROR
    where = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}" if port else "the address below"
    print(f"dashboard: open {where} in a browser (Ctrl-C to quit)", flush=True)
    try:
        launch(ctl, host=host, port=port, share=share, auth=auth)
    except KeyboardInterrupt:
        pass
    finally:
        ctl.close()
    return EXIT_OK


def _no_devices_reason(cams: list, mics: list | str) -> str:
    """Why live capture cannot start here ("" when a camera or a microphone works)."""
    if cams or (not isinstance(mics, str) and mics):
        return ""
    mic_why = mics if isinstance(mics, str) else "no microphone found"
    return f"no camera found and {mic_why[0].lower() + mic_why[1:]}"


def cmd_live(args: argparse.Namespace) -> int:
    return run_dashboard(args, live=True)


def cmd_default(args: argparse.Namespace) -> int:
    """No subcommand: the dashboard, live when a device works, else the demo session."""
    return run_dashboard(args, live=None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if getattr(args, "device", None):  # before any work: a GPU run must not become a CPU run, or a traceback
        from umq.device import DeviceError, pick_device

        try:
            pick_device(args.device)
        except DeviceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.command == "record":
        return cmd_record(args)
    if args.command == "replay":
        return cmd_replay(args)
    if args.command == "devices":
        return cmd_devices(args)
    if args.command == "live":
        return cmd_live(args)
    if args.command == "bench":
        from . import bench

        return bench.main(args)
    if args.command == "analyze":
        from . import batch

        return batch.main(args)
    return cmd_default(args)
