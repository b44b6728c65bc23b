"""The dashboard's framework-neutral core: replay paths are confined, uploads checked, results exported."""
from __future__ import annotations

import csv
import io
import time

import numpy as np
import pytest

from app.dashboard import DashboardController, ReplayPathError, render
from app.dashboard.controller import DEMO_SESSION
from umq.runtime.analyzer import Analyzer

from .helpers import wait_for


@pytest.fixture(scope="module")
def ctl(tmp_path_factory):
    c = DashboardController(lambda: Analyzer(), allowed_roots=[DEMO_SESSION.parent], loop_demo=False,
                            record_dir=tmp_path_factory.mktemp("rec"))
    yield c
    c.close()


def test_replay_paths_outside_the_allowed_folders_are_refused(ctl, tmp_path):
    assert ctl.check_replay_path(DEMO_SESSION) == DEMO_SESSION.resolve()
    with pytest.raises(ReplayPathError, match="outside the folders"):
        ctl.check_replay_path(DEMO_SESSION / ".." / ".." / "README.md")
    with pytest.raises(ReplayPathError, match="outside the folders"):
        ctl.check_replay_path("/etc/passwd")
    with pytest.raises(ReplayPathError, match="no such"):
        ctl.check_replay_path(DEMO_SESSION.parent / "nope")
    with pytest.raises(ReplayPathError, match="neither a session folder"):
        ctl.check_replay_path(DEMO_SESSION / "meta.json")


def test_uploads_are_checked_for_type_and_size(ctl, tmp_path):
    from .test_dashboard_render import _video

    big = _video(tmp_path / "clip.avi")
    with pytest.raises(ReplayPathError, match="limit"):
        ctl.accept_upload(big, max_bytes=1024)
    assert not big.exists()  # refused uploads are deleted
    bad = tmp_path / "notes.exe"
    bad.write_bytes(b"MZ")
    with pytest.raises(ReplayPathError, match="only video files"):
        ctl.accept_upload(bad, max_bytes=10**6)
    data = _video(tmp_path / "clip2.avi").read_bytes()
    kept = ctl.accept_upload(tmp_path / "clip2.avi", max_bytes=10**6)
    assert kept.parent == ctl.upload_dir and kept.read_bytes() == data


@pytest.mark.slow  # > 5 s on 2 cores (fast tier: pytest -m 'not slow')
def test_demo_replay_produces_state_history_frames_and_exports(ctl):
    ctl.start_demo("test")
    assert wait_for(lambda: len(ctl.state().history) >= 4, timeout=90)
    s = ctl.state()
    assert s.mode == "replay" and "demo session" in s.message  # (a slow host may finish)
    off = s.script["camera_off"]  # the demo's camera is off 15-21 s: then the preview says "no video"
    assert s.frame is not None or off[0] <= s.telemetry.session_t <= off[1] + 1.5, s.telemetry.session_t
    assert s.telemetry.results >= 4 and s.telemetry.sources
    img = render.overlay(s.frame, s.result)
    assert img.shape[2] == 3 and img.dtype == np.uint8
    html = render.gauges_html(s.result)
    assert html.count("data-modality=") == 3 and f"data-index='{s.result.index}'" in html
    frame = ctl.frame_at(5.0)
    assert frame is not None and frame.shape == (240, 320, 3)
    rows = list(csv.DictReader(io.StringIO(render.results_csv(ctl.full_history()))))
    assert len(rows) == len(ctl.full_history()) and {"t1", "label", "quality_audio", "state_video"} <= set(rows[0])
    h = ctl.full_history()
    t = h[1].t1  # the old pairing showed the window *ending* at t
    hit = ctl.window_at(t)
    best = min(abs((r.t0 + r.t1) / 2 - t) for r in h)  # windows may be missing: latest wins on a slow host
    assert abs((hit.t0 + hit.t1) / 2 - t) == best and (best > 0.25 or hit.index != h[1].index)
    in_off = off[0] <= s.telemetry.session_t <= off[1] + 2.5
    assert s.finished or in_off or s.telemetry.video_fps > 0  # frames are arriving: measured, not 0.0
    ctl.stop()
    s = ctl.state()
    assert s.mode == "idle" and s.phase == "idle" and s.stale and s.stopped_at == s.result.t1
    assert "stopped at" in s.status and "Replaying" not in s.status
    time.sleep(2.2)
    assert ctl.state().telemetry.video_fps == 0.0  # nothing arrives after Stop


def test_status_is_derived_from_the_engine_and_failures_last(ctl):
    ctl.start_demo("test")
    assert ctl.phase()[0] == "replay"
    ctl.engine._fail("video.mjpeg: truncated")  # how Engine records a damaged file (Engine.failure)
    try:
        assert ctl.phase() == ("failed", "Failed: video.mjpeg: truncated")
        assert wait_for(lambda: any("failed" in e.text for e in ctl.events.last()), timeout=10)
    finally:
        ctl.stop()
    assert ctl.phase()[0] == "failed"  # lasting: Stop does not turn a failure into "finished" or "idle"


def test_another_session_cannot_silently_undo_the_controlling_one(ctl):
    from app.dashboard import NotInControl
    from umq.runtime.lab import LabSettings

    ctl.control.release(ctl.control.holder)
    ctl.start_demo(session="alice")
    ctl.set_lab(LabSettings(mute=True), session="alice")
    with pytest.raises(NotInControl):
        ctl.stop(session="bob")
    with pytest.raises(NotInControl):
        ctl.set_lab(LabSettings(), session="bob")
    with pytest.raises(NotInControl):
        ctl.start_replay(DEMO_SESSION, session="bob")
    assert ctl.state().mode == "replay" and ctl.lab.settings.mute
    ctl.reset_lab(session="alice")
    ctl.stop(session="alice")
    ctl.control.release("alice")


def test_messages_are_logged_not_overwritten(ctl):
    n = ctl.events.last_seq
    ctl.say("Cannot replay: /etc/passwd is outside the folders", "warning")
    ctl.start_demo("test")
    ctl.stop()
    texts = [e.text for e in ctl.events.since(n)]
    assert texts[0].startswith("Cannot replay") and len(texts) >= 2


def test_typed_lines_and_recording_need_live_capture(ctl):
    assert not ctl.type_line("hello")  # nothing live: refused, not crashed
    with pytest.raises(RuntimeError, match="live"):
        ctl.start_recording()


def test_synthetic_live_session_records_and_takes_typed_lines(ctl):
    from app.capture import CaptureOptions
    from streams.session import SessionReader

    ctl.start_live(CaptureOptions(source="synthetic", transcript="none"))
    out = ctl.start_recording()
    assert ctl.type_line("this is a typed line")
    assert wait_for(lambda: any("typed line" in r.transcript for r in ctl.state().history), timeout=30)
    time.sleep(0.5)
    saved = ctl.stop_recording()
    ctl.stop()
    reader = SessionReader(saved)
    assert saved == out and reader.complete
    assert any("typed line" in s.text for s in reader.text_segments())
    assert reader.meta["counts"]["frames"] > 10


@pytest.mark.slow  # > 5 s on 2 cores (fast tier: pytest -m 'not slow')
def test_asr_turns_browser_microphone_speech_into_transcript_lines(ctl):
    """``--asr``: microphone audio -> streaming Whisper tiny.en -> transcript stream -> the text modality."""
    import shutil
    import subprocess

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (.ci/run installs it)")
    import soundfile

    wav = subprocess.run(["espeak-ng", "-s", "140", "--stdout", "Good morning everybody. I am very happy today."],
                         capture_output=True, check=True).stdout
    x, sr = soundfile.read(io.BytesIO(wav), dtype="float32")
    ctl.start_live(browser=True, asr=True)
    try:
        chunk = sr // 10
        pad = np.zeros(sr * 2, np.float32)
        for a in range(0, len(x) + len(pad), chunk):  # real time: 100 ms chunks every 100 ms
            ctl.push_browser_audio(sr, np.concatenate([x, pad])[a:a + chunk])
            time.sleep(0.1)
        assert wait_for(lambda: any("happy" in r.transcript.lower() for r in ctl.state().history),
                        timeout=60), [r.transcript for r in ctl.state().history]
        r = next(r for r in ctl.state().history if "happy" in r.transcript.lower())
        assert r.state["text"] != "missing" and r.modalities["text"].cues["asr_confidence"] is not None
    finally:
        ctl.stop()
