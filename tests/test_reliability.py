"""Issue 13: failures reach the caller (never a silent success), damaged sessions degrade instead of failing,
outputs are written atomically, ``record`` never overwrites, and resources stay bounded.

Real components throughout: sessions written by the real recorder, videos encoded by FFmpeg (PyAV), the real
replay, engine and CLI; a trivial stage stands in for the models only where the test is about plumbing.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.engine import FAILING_IN_A_ROW, Engine, EngineConfig
from app.outputs import RunFailed, atomic_output, one_line, partial_path
from streams.buffer import MAX_WINDOW_S, MIN_HOP_S, WindowConfig
from streams.clock import SimulatedClock
from streams.files import MediaFile, write_test_video
from streams.packets import MAX_FRAME_SIZE, Modality, SourceState, VideoFrame, cap_frame_size, cap_image
from streams.recorder import RecorderError, SessionRecorder
from streams.replay import Replay
from streams.session import (
    AUDIO,
    AUDIO_INDEX,
    META,
    TRANSCRIPT,
    VIDEO,
    VIDEO_INDEX,
    SessionError,
    SessionReader,
    read_jsonl,
)
from streams.synthetic import synthetic_frame
from tests.helpers import audio_packets, status, text, video_packets
from tests.test_engine import health_result

V, A, T = Modality.VIDEO, Modality.AUDIO, Modality.TEXT


def _session(path: Path, seconds: float = 4.0, size=(32, 24)) -> Path:
    """A closed session of ``seconds`` with all three modalities, written by the real recorder."""
    clock = SimulatedClock(speed=None)
    meta = {"window_config": WindowConfig(video_fps=15.0).to_json(), "video_fps": 15.0}
    rec = SessionRecorder(path, meta, clock=clock).start()
    frames = [VideoFrame(f.t, synthetic_frame(f.index, f.t, size), f.index) for f in video_packets(0.0, seconds)]
    packets = ([status(m, SourceState.RUNNING, 0.0) for m in Modality] + frames + audio_packets(0.0, seconds)
               + [text(0.5, 1.5), text(2.2, 3.4, "second line")])
    key = lambda p: getattr(p, "t1", None) if hasattr(p, "text") else getattr(p, "t_end", None) or p.t  # noqa: E731
    for p in sorted(packets, key=key):
        clock.advance_to(key(p))
        rec(p)
    rec.close(end_t=seconds)
    assert rec.error is None
    return path


@pytest.fixture()
def session(tmp_path) -> Path:
    return _session(tmp_path / "s")


def _run_engine(replay: Replay, stages=None, timeout: float = 30.0) -> Engine:
    """Replay through ``stages``; ``engine.finished`` keeps :attr:`Engine.replay_finished` as it was before
    the stop (which returns the engine to idle)."""
    engine = Engine(stages or [("model", health_result)], EngineConfig(policy="block"))
    engine.start_replay(replay)
    try:
        assert engine.wait_replay(timeout)
        engine.finished = engine.replay_finished
    finally:
        engine.stop()
    return engine


# ------------------------------------------------------------------ damaged sessions degrade, never fail whole
@pytest.mark.parametrize("damage", ["missing", "riff"])
def test_session_with_missing_or_damaged_audio_replays_video_and_text_with_the_reason(session, damage):
    if damage == "missing":
        (session / AUDIO).unlink()
        why = "audio.wav missing"
    else:
        with open(session / AUDIO, "r+b") as f:
            f.write(b"JUNK")  # the RIFF magic
        why = "audio.wav unreadable: not a WAV file (no RIFF/WAVE header)"
    windows = list(Replay(session, speed=None).windows())
    assert len(windows) == 5  # t1 = 2.0 ... 4.0: every window of the intact session
    for w in windows:
        assert w.video.health.present and w.video.health.received > 0, "the intact video is not lost"
        assert not w.audio.health.present and w.audio.health.reason == why
    assert any(w.text.health.present for w in windows), "the intact text is not lost"
    engine = _run_engine(Replay(session, speed=None))
    assert engine.failure is None and engine.finished
    assert all(r.reason["audio"] == why for r in engine.history())
    first = next(SessionReader(session).timed_statuses())[1]  # a reader used on its own says it too
    assert (first.modality, first.state, first.reason) == (A, SourceState.UNAVAILABLE, why)


def test_lines_of_the_wrong_shape_are_skipped_counted_and_named(session, caplog):
    for name, junk in ((VIDEO_INDEX, "[1,2,3]"), (AUDIO_INDEX, '{"t": "soon", "offset": 0, "n": 5}'),
                       (TRANSCRIPT, "null"), ("events.jsonl", '"just a string"')):
        with open(session / name, "a") as f:
            f.write(junk + "\n")
    with caplog.at_level(logging.WARNING, logger="streams.session"):
        windows = list(Replay(session, speed=None).windows())
    assert len(windows) == 5 and all(w.video.health.present and w.audio.health.present for w in windows)
    shape = [r.getMessage() for r in caplog.records if "wrong shape" in r.getMessage()]
    for name in (VIDEO_INDEX, AUDIO_INDEX, TRANSCRIPT):
        assert any(name in m and "skipped 1 lines" in m for m in shape), (name, shape)
    assert any("expected a JSON object, got array" in m for m in shape)
    assert any("'t' is 'soon', not a finite number" in m for m in shape)


def test_read_jsonl_keeps_good_rows_around_bad_ones(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"t": 1}\n[1]\n{"t": NaN}\nnot json\n{"t": 2, "extra": "ignored"}\n{"t": 3')
    assert [r["t"] for r in read_jsonl(p, ("t",))] == [1, 2]


@pytest.mark.parametrize("meta, message", [
    ([1, 2], "meta.json must hold a JSON object, got array"),
    (None, "meta.json must hold a JSON object, got null"),
    ({"window_config": "2s"}, "'window_config' must be an object or null, got '2s'"),
    ({"complete": "yes"}, "'complete' must be true or false"),
    ({"video_fps": -15}, "'video_fps' must be positive"),
    ({"sources": {"video": 3}}, "'sources.video' must be an object"),
    ({"window_config": {"window_s": 2.0, "hop_s": -1}}, "'window_config' is not usable"),
])
def test_meta_json_of_the_wrong_shape_is_one_clear_error(session, meta, message):
    good = json.loads((session / META).read_text())
    bad = meta if not isinstance(meta, dict) else {**good, **meta}
    (session / META).write_text(json.dumps(bad))
    with pytest.raises(SessionError) as err:
        SessionReader(session)
    assert message in str(err.value) and str(session) in str(err.value)


def test_unknown_keys_in_meta_and_window_config_are_ignored(session):
    meta = json.loads((session / META).read_text())
    meta["window_config"]["future_knob"] = 3
    meta["future_section"] = {"anything": [1, 2]}
    (session / META).write_text(json.dumps(meta))
    replay = Replay(session, speed=None)
    assert replay.window_config().window_s == 2.0 and len(list(replay.windows())) == 5


# ------------------------------------------------------------------ failures reach the caller (engine)
def test_a_reader_error_mid_replay_is_the_engines_failure(tmp_path):
    video = write_test_video(tmp_path / "clip.mkv", seconds=3.0, size=(64, 48), audio=None)
    srt = video.with_suffix(".srt")
    srt.write_text("1\n00:00:00,500 --> 00:00:01,500\nhello\n")
    replay = Replay(video, speed=None)  # finds the transcript ...
    srt.unlink()  # ... which is gone by the time the replay reads it
    engine = _run_engine(replay)
    assert engine.failure and "clip.srt" in engine.failure and "\n" not in engine.failure
    assert not engine.finished


def test_a_stage_that_never_works_fails_the_run_and_stops_the_replay(session):
    calls = []

    def broken(window):
        calls.append(window.index)
        raise ValueError("weights are garbage")

    engine = _run_engine(Replay(session, speed=None), [("perception", broken), ("model", health_result)])
    assert engine.failure == "perception stage failed on every window: weights are garbage"
    assert not engine.finished and engine.telemetry().results == 0
    assert len(calls) <= FAILING_IN_A_ROW + 2  # cancelled, not one traceback per window of the whole replay


def test_a_model_file_that_does_not_load_fails_at_the_first_window(session):
    from umq.checkpoint import CheckpointError

    def face(window):
        raise CheckpointError("face-net weights unreadable (corrupt or not a torch checkpoint): face_net.pt")

    engine = _run_engine(Replay(session, speed=None), [("perception", face), ("model", health_result)])
    assert engine.failure and "face_net.pt" in engine.failure and engine.telemetry().windows <= 3


def test_windows_that_failed_analysis_make_the_replay_a_failure(session):
    def sometimes(window):
        if window.index == 2:
            raise RuntimeError("window 2 is cursed")
        return health_result(window)

    engine = _run_engine(Replay(session, speed=None), [("model", sometimes)])
    assert engine.failure and "analysis failed on 1 of 5 windows" in engine.failure and "cursed" in engine.failure
    assert len(engine.history()) == 4 and not engine.finished


def test_media_shorter_than_a_window_is_a_failure_that_says_so(tmp_path):
    clip = write_test_video(tmp_path / "short.mp4", seconds=1.5, size=(64, 48))
    engine = _run_engine(Replay(clip, speed=None))
    assert engine.failure and engine.failure.startswith("short.mp4: no analysis window: 1.5 s of media")
    assert "2 s window" in engine.failure


def test_failure_is_reset_when_a_new_run_starts(tmp_path, session):
    clip = write_test_video(tmp_path / "short.mp4", seconds=1.0, size=(64, 48), audio=None)
    engine = Engine([("model", health_result)], EngineConfig(policy="block"))
    for path, failed in ((clip, True), (session, False)):
        engine.start_replay(Replay(path, speed=None))
        assert engine.wait_replay(30.0)
        assert bool(engine.failure) is failed and engine.replay_finished is not failed
        engine.stop()


# ------------------------------------------------------------------ atomic outputs
def test_atomic_output_renames_on_success_and_keeps_partial_on_failure(tmp_path):
    out = tmp_path / "r.jsonl"
    with atomic_output(out) as f:
        f.write("good\n")
    assert out.read_text() == "good\n" and not partial_path(out).exists()
    with pytest.raises(RunFailed), atomic_output(out) as f:
        f.write("half\n")
        raise RunFailed("x.mp4: broken")
    assert out.read_text() == "good\n", "a previous good file is never overwritten by a failed run"
    assert partial_path(out).read_text() == "half\n" and partial_path(out).name == "r.jsonl.partial"


def test_headless_replay_failure_exits_1_with_one_line_and_keeps_the_old_output(tmp_path, capsys):
    clip = write_test_video(tmp_path / "short.mp4", seconds=1.5, size=(64, 48))
    out = tmp_path / "w.jsonl"
    out.write_text("previous good result\n")
    assert main(["replay", str(clip), "--headless", "--windows", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: short.mp4: no analysis window") and "w.jsonl.partial" in err[0]
    assert out.read_text() == "previous good result\n" and partial_path(out).exists()


def test_headless_replay_of_a_bad_session_names_the_file(session, capsys):
    (session / META).write_text("[1, 2]")
    assert main(["replay", str(session), "--headless", "--windows"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: session folder") and "meta.json must hold a JSON object" in err
    assert "Traceback" not in err


def test_truncated_file_is_named_in_the_summary(tmp_path, capsys):
    full = write_test_video(tmp_path / "full.mkv", seconds=8.0, size=(64, 48))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.4)])
    assert main(["replay", str(cut), "--headless", "--windows", "--out", str(tmp_path / "w.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "warning: video: cut.mkv: video ends at" in out and "(truncated?)" in out
    assert "microphone input ended" not in out


# ------------------------------------------------------------------ bad CLI values: usage errors, before any work
@pytest.mark.parametrize("args, message", [
    (["replay", "x.mp4", "--headless", "--hop", "0.000001"], "a hop of at least 0.05 s"),
    (["replay", "x.mp4", "--headless", "--window", "inf"], "expected a positive number, got 'inf'"),
    (["replay", "x.mp4", "--headless", "--window", "61"], "a window of at most 60 s"),
    (["replay", "x.mp4", "--headless", "--speed", "nan"], "--speed must be 'max' or a positive number"),
    (["--port", "99999", "replay", "x.mp4"], "a port between 1 and 65535"),
    (["replay", "x.mp4", "--port", "0"], "a port between 1 and 65535"),
    (["record", "--out", "x", "--seconds", "nan"], "expected a positive number, got 'nan'"),
])
def test_bad_values_are_usage_errors(args, message, capsys):
    t = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert time.perf_counter() - t < 5.0, "refused before any model loads"


def test_window_config_bounds_the_windows_per_second():
    with pytest.raises(ValueError, match="below the minimum"):
        WindowConfig(window_s=2.0, hop_s=MIN_HOP_S / 10)
    with pytest.raises(ValueError, match="longer than the maximum"):
        WindowConfig(window_s=MAX_WINDOW_S * 2, hop_s=0.5)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            WindowConfig(window_s=bad)
    WindowConfig(window_s=MAX_WINDOW_S, hop_s=MIN_HOP_S)  # the limits themselves are allowed


# ------------------------------------------------------------------ record never overwrites
def test_record_refuses_a_folder_holding_session_files_even_without_meta(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / VIDEO).write_bytes(b"precious frames")
    (out / AUDIO).write_bytes(b"precious audio")
    for force in (False, True):
        with pytest.raises(RecorderError, match="already holds session files"):
            SessionRecorder(out, {}, force=force).start()
    assert (out / VIDEO).read_bytes() == b"precious frames" and (out / AUDIO).read_bytes() == b"precious audio"


def test_record_into_a_non_empty_folder_needs_force_and_warns(tmp_path, caplog, capsys):
    out = tmp_path / "s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["record", "--source", "synthetic", "--seconds", "0.5", "--out", str(out)]
    assert main(args) == 1
    assert "is not empty" in capsys.readouterr().err and not (out / META).exists()
    with caplog.at_level(logging.WARNING, logger="streams.recorder"):
        assert main([*args, "--force"]) == 0
    assert any("--force" in r.getMessage() for r in caplog.records)
    assert (out / "notes.txt").read_text() == "mine" and SessionReader(out).complete
    assert main([*args, "--force"]) == 1, "a second recording never lands on the first"
    assert "already holds session files" in capsys.readouterr().err


# ------------------------------------------------------------------ bounded resources: frame size cap
def test_cap_frame_size_keeps_aspect_and_small_frames():
    assert cap_frame_size(7680, 4320) == MAX_FRAME_SIZE
    assert cap_frame_size(1080, 1920) == (1080, 1920)  # portrait 1080p fits
    assert cap_frame_size(640, 480) == (640, 480)
    img = np.zeros((2160, 3840, 3), np.uint8)
    assert cap_image(img).shape == (1080, 1920, 3)
    small = np.zeros((48, 64, 3), np.uint8)
    assert cap_image(small) is small


def test_large_video_files_are_downscaled_at_decode(tmp_path):
    clip = write_test_video(tmp_path / "4k.mp4", seconds=0.4, fps=5, size=(3840, 2160), audio=None)
    frames = [p for _, p in MediaFile(clip).timed_frames() if isinstance(p, VideoFrame)]
    assert frames and all(f.image.shape == (1080, 1920, 3) for f in frames)


def test_large_frames_in_a_session_are_downscaled_at_decode(tmp_path):
    path = tmp_path / "s"
    clock = SimulatedClock(speed=None)
    rec = SessionRecorder(path, {"video_fps": 5.0}, clock=clock).start()
    for i in range(2):
        clock.advance_to(i * 0.2)
        rec(VideoFrame(i * 0.2, np.full((2160, 3840, 3), 40 * i, np.uint8), i))
    rec.close()
    reader = SessionReader(path)
    assert [f.image.shape for f in reader.frames()] == [(1080, 1920, 3)] * 2
    assert reader.frame_at(1.0).image.shape == (1080, 1920, 3)


def test_camera_frames_are_capped(tmp_path):
    """The camera path (OpenCV; a video file stands in for the device) delivers capped frames."""
    from streams.camera import CameraSource
    from streams.clock import SessionClock

    clip = write_test_video(tmp_path / "4k.mp4", seconds=0.6, fps=5, size=(3840, 2160), audio=None)
    got: list[VideoFrame] = []
    cam = CameraSource(SessionClock(), device=str(clip))
    cam.connect(lambda p: got.append(p) if isinstance(p, VideoFrame) else None)
    cam.start()
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    cam.stop()
    assert got and all(f.image.shape == (1080, 1920, 3) for f in got)


# ------------------------------------------------------------------ pickles and damaged weights
def _evil_pickle(path: Path) -> Path:
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    torch.save({"format_version": 1, "x": Evil()}, path)
    return path


def test_a_checkpoint_carrying_code_is_refused_without_torchs_retry_advice(tmp_path):
    from umq.checkpoint import CheckpointError, load_checkpoint

    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_evil_pickle(tmp_path / "umq.pt"))
    msg = str(err.value)
    assert "may carry code" in msg and "umq.pt" in msg
    assert "weights_only" not in msg and "Re-running" not in msg and "\n" not in msg


def test_one_line_rewrites_torchs_advice_anywhere(tmp_path):
    import torch

    try:
        torch.load(_evil_pickle(tmp_path / "voice_net.pt"), weights_only=True)
    except Exception as exc:  # noqa: BLE001
        wrapped = ValueError(f"cannot read voice encoder checkpoint voice_net.pt: {type(exc).__name__}: {exc}")
    line = one_line(wrapped)
    assert line.startswith("cannot read voice encoder checkpoint voice_net.pt") and "may carry code" in line
    assert "weights_only" not in line and "\n" not in line


@pytest.mark.slow
def test_damaged_voice_weights_are_one_error_line_before_any_work(tmp_path, monkeypatch, capsys):
    import umq.perception.voice.net as voice_net

    bad = tmp_path / "voice_net.pt"
    bad.write_bytes(voice_net.DEFAULT_WEIGHTS.read_bytes()[:5000])
    monkeypatch.setattr(voice_net, "DEFAULT_WEIGHTS", bad)
    clip = write_test_video(tmp_path / "clip.mp4", seconds=2.5, size=(64, 48))
    out = tmp_path / "r.jsonl"
    assert main(["replay", str(clip), "--headless", "--out", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot load the models:") and "voice_net.pt" in err[0]
    assert not out.exists() and not partial_path(out).exists(), "nothing written before the models loaded"


# ------------------------------------------------------------------ live start-up names each missing input
def test_live_start_up_names_each_missing_input(tmp_path):
    from app.capture import CaptureOptions, build_capture, missing_input_lines
    from streams.clock import SessionClock

    opts = CaptureOptions(source="devices", camera=str(tmp_path / "no-such-camera.mp4"), mic="none",
                          transcript=str(tmp_path / "no-such.srt"))
    cap = build_capture(opts, SessionClock())
    cap.start()
    try:
        lines = missing_input_lines(cap, wait_s=10.0)
    finally:
        cap.stop()
    text = "\n".join(lines)
    assert len(lines) == 3, text
    assert "warning: camera missing:" in text and "no-such-camera.mp4" in text
    assert "warning: microphone missing: microphone switched off (--mic none)" in text
    assert "warning: transcript missing:" in text and "no-such.srt" in text


def test_live_start_up_says_nothing_when_every_input_works():
    from app.capture import CaptureOptions, build_capture, missing_input_lines
    from streams.clock import SessionClock

    cap = build_capture(CaptureOptions(source="synthetic"), SessionClock())
    cap.start()
    try:
        assert missing_input_lines(cap, wait_s=10.0) == []
    finally:
        cap.stop()


@pytest.mark.slow
def test_full_analysis_degrades_on_missing_audio_and_fails_cleanly_on_damaged_face_weights(
        session, tmp_path, monkeypatch, capsys):
    """The issue's repros through the real models: a session without ``audio.wav`` is analysed (audio missing
    with the reason, exit 0); a damaged ``face_net.pt`` is one error line and exit 1, not a log line per window
    with exit 0 and an emptied ``--out``."""
    import umq.perception.face.net as face_net

    (session / AUDIO).unlink()
    out = tmp_path / "r.jsonl"
    assert main(["replay", str(session), "--headless", "--out", str(out), "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and all(r["state"]["audio"] == "missing" for r in rows)
    assert all(r["reason"]["audio"] == "audio.wav missing" for r in rows)
    assert all(r["health"]["video"]["present"] and r["health"]["text"]["present"] for r in rows), "video, text kept"
    capsys.readouterr()

    bad = tmp_path / "face_net.pt"
    bad.write_bytes(face_net.DEFAULT_WEIGHTS.read_bytes()[:4000])
    monkeypatch.setattr(face_net, "DEFAULT_WEIGHTS", bad)
    assert main(["replay", str(session), "--headless", "--out", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot load the models:") and "face_net.pt" in err[0]
    assert len(out.read_text().splitlines()) == 5, "the previous good output is untouched"
