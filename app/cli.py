"""Command line: ``python -m app {record,replay,devices}``.

``record`` captures (devices or synthetic signals) into a session folder while cutting live windows on the
session clock, so ``windows.jsonl`` shows what a live user saw; ``replay`` turns a session folder or a video file
into the same windows again (headless: one JSON line per window). Library code logs; this module prints the short
summaries a person reads at the end of a command.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

log = logging.getLogger("app.cli")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_SESSION = REPO_ROOT / "assets" / "demo_session"

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
    if speed <= 0:
        raise argparse.ArgumentTypeError(f"--speed must be positive, got {value!r}")
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
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app", description="Real-time multimodal affect analysis (UMQ).")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", metavar="{record,replay,devices}")

    r = sub.add_parser("record", help="record a session folder (camera, microphone, transcript)")
    r.add_argument("--out", required=True, type=Path, help="session folder to create")
    r.add_argument("--seconds", type=positive, help="stop after this many seconds (default: until Ctrl-C)")
    r.add_argument("--source", choices=("synthetic", "devices"), default="devices",
                   help="real devices (default) or generated test signals")
    r.add_argument("--camera", help="camera index, device path or video file; 'none' to record without video")
    r.add_argument("--mic", help="microphone id or name fragment (default: system input); 'none' for no audio")
    r.add_argument("--transcript", help="'-' (stdin), a .srt/.vtt/.jsonl file, a file to tail, or 'none'")
    r.add_argument("--window", type=positive, default=2.0, help="analysis window in seconds (default 2.0)")
    r.add_argument("--hop", type=positive, default=0.5, help="time between windows in seconds (default 0.5)")
    g = r.add_argument_group("scripted failures (--source synthetic only)")
    g.add_argument("--camera-off", type=parse_span, action="append", default=[], metavar="A:B")
    g.add_argument("--camera-frozen", type=parse_span, action="append", default=[], metavar="A:B")
    g.add_argument("--mic-off", type=parse_span, action="append", default=[], metavar="A:B")
    g.add_argument("--mic-silent", type=parse_span, action="append", default=[], metavar="A:B")
    g.add_argument("--transcript-gap", type=parse_span, action="append", default=[], metavar="A:B")

    rp = sub.add_parser("replay", help="replay a session folder or a video file")
    rp.add_argument("path", type=Path, help="session folder (from `record`) or a video file (mp4, mkv, webm, avi)")
    rp.add_argument("--headless", action="store_true", help="no dashboard: write windows as JSON lines")
    rp.add_argument("--out", default="-", help="JSON lines file for --headless (default: stdout)")
    rp.add_argument("--speed", type=parse_speed, default=None,
                    help="'max' (default with --headless) or a real-time factor such as 1 or 2.5")
    rp.add_argument("--window", type=positive, help="override the recorded window length (s)")
    rp.add_argument("--hop", type=positive, help="override the recorded hop (s)")

    sub.add_parser("devices", help="list cameras and microphones")
    return p


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
    config = WindowConfig(window_s=config.window_s, hop_s=config.hop_s, video_fps=capture.video_fps)
    buffer = TimeAlignedBuffer()
    windower = Windower(buffer, config, absent_reasons=capture.absent_reasons)
    meta = {"command": "record", "source": args.source, "sources": capture.meta(), "video_fps": capture.video_fps,
            "window_config": config.to_json(), "seconds_requested": args.seconds}
    recorder = SessionRecorder(args.out, meta, clock=clock)
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
        while True:
            now = clock.now()
            if args.seconds is not None and now >= args.seconds:
                break
            # sleep until the next window is due (t1 + grace), so windows are cut on time like a live UI would
            next_cut = windower.t1_of(windows) + config.grace_s
            limit = args.seconds if args.seconds is not None else float("inf")
            if stop.event.wait(max(0.0, min(next_cut, limit) - now)):
                break
            emit(windower.due(clock.now()))
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
    from streams.files import MediaFileError
    from streams.replay import Replay
    from streams.session import SessionError

    if not args.headless:
        print("the dashboard is not built yet: use --headless --out FILE.jsonl to write the windows", file=sys.stderr)
        return EXIT_USAGE
    speed = args.speed
    try:
        replay = Replay(args.path, speed=speed)
        config = replay.window_config(args.window, args.hop)
    except (SessionError, MediaFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    to_stdout = args.out == "-"
    out = sys.stdout if to_stdout else open(args.out, "w", encoding="utf-8")
    report = sys.stderr if to_stdout else sys.stdout
    n = 0
    present = {"video": 0, "audio": 0, "text": 0}
    reasons: dict[str, dict[str, int]] = {m: {} for m in present}
    try:
        for w in replay.windows(config):
            js = w.to_json()
            out.write(json.dumps(js) + "\n")
            n += 1
            for m in present:
                if js[m]["present"]:
                    present[m] += 1
                else:
                    reasons[m][js[m]["reason"]] = reasons[m].get(js[m]["reason"], 0) + 1
    except (SessionError, MediaFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if not to_stdout:
            out.close()
    st = replay.stats
    speed_txt = "max" if speed is None else f"{speed:g}x"
    print(f"replayed {args.path} ({replay.kind}, {st.get('sim_s', 0):.1f} s of session time) in "
          f"{st.get('wall_s', 0):.2f} s at speed {speed_txt} ({st.get('speedup', 0):.0f}x real time)", file=report)
    print(f"  windows {n} -> {'stdout' if to_stdout else args.out}; present: video {present['video']}, "
          f"audio {present['audio']}, text {present['text']}", file=report)
    for m, rs in reasons.items():
        for reason, count in sorted(rs.items(), key=lambda kv: -kv[1])[:3]:
            print(f"  {m} missing in {count}: {reason}", file=report)
    return EXIT_OK


# -- devices / default ---------------------------------------------------------------------------------------
def cmd_devices(_: argparse.Namespace) -> int:
    from streams.devices import describe_devices

    print(describe_devices())
    return EXIT_OK


def cmd_default() -> int:
    """No subcommand: say what the app would do here, and how to do it for real."""
    from streams.devices import list_cameras, list_microphones

    cams = list_cameras(max_index=2)
    mics = list_microphones()
    have_mic = not isinstance(mics, str) and bool(mics)
    if cams or have_mic:
        what = ", ".join(filter(None, [f"camera {cams[0].id}" if cams else "", "microphone" if have_mic else ""]))
        print(f"Would start live analysis with {what} (the live dashboard is not built yet).")
    else:
        demo = DEMO_SESSION.relative_to(REPO_ROOT) if DEMO_SESSION.exists() else f"{DEMO_SESSION} (missing)"
        print(f"No working camera or microphone found: the dashboard will replay the demo session {demo}"
              " (the dashboard is not built yet).")
    print("Try:\n"
          f"  python -m app replay {DEMO_SESSION.relative_to(REPO_ROOT)} --headless --out /tmp/demo.jsonl\n"
          "  python -m app devices                                   list cameras and microphones\n"
          "  python -m app record --source synthetic --seconds 5 --out /tmp/s\n"
          "  python -m app replay /tmp/s --headless --out /tmp/w.jsonl   (a session folder or a video file)")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if args.command == "record":
        return cmd_record(args)
    if args.command == "replay":
        return cmd_replay(args)
    if args.command == "devices":
        return cmd_devices(args)
    return cmd_default()
