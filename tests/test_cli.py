"""``python -m app``: record -> replay equality, crash safety under SIGKILL, clean SIGINT, replay of files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli import main
from streams.files import write_test_video
from streams.session import SessionReader

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("video", "audio", "text")


def _app(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    p = _app(*args)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _wait_recording(path: Path, proc: subprocess.Popen, timeout: float = 20.0) -> float:
    """Wait until the recorder has written meta.json; returns the session's start (unix time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (path / "meta.json").exists():
            return json.loads((path / "meta.json").read_text())["started_at_unix"]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"recorder did not start within {timeout} s")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow  # > 5 s on 2 cores (fast tier: pytest -m 'not slow')
def test_record_then_replay_gives_the_live_windows(tmp_path):
    session, out = tmp_path / "s", tmp_path / "w.jsonl"
    rec = _run("record", "--source", "synthetic", "--seconds", "5", "--out", str(session))
    assert rec.returncode == 0, rec.stderr
    assert "frames" in rec.stdout and str(session) in rec.stdout
    rep = _run("replay", str(session), "--headless", "--windows", "--speed", "max", "--out", str(out))
    assert rep.returncode == 0, rep.stderr
    assert "windows" in rep.stdout
    live, replayed = _lines(session / "windows.jsonl"), _lines(out)
    assert len(live) >= 7 and len(replayed) == len(live)
    for a, b in zip(live, replayed):
        assert (a["t0"], a["t1"]) == (b["t0"], b["t1"])
        for m in MODALITIES:
            assert (a[m]["present"], a[m]["reason"]) == (b[m]["present"], b[m]["reason"]), (a, b)
            assert a[m]["present"], a  # synthetic session: everything is there
        assert abs(a["video"]["received"] - b["video"]["received"]) <= 1, (a, b)
        assert abs(a["audio"]["received"] - b["audio"]["received"]) <= 512, (a, b)  # one synthetic chunk
        assert a["text"]["received"] == b["text"]["received"]
    meta = SessionReader(session).meta
    assert meta["complete"] and meta["window_config"]["video_fps"] == 15.0


def test_sigkill_mid_recording_replays_up_to_the_last_second(tmp_path):
    session = tmp_path / "s"
    proc = _app("record", "--source", "synthetic", "--out", str(session))
    started = _wait_recording(session, proc)
    time.sleep(3.0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    killed_at = time.time() - started  # session time of the kill (upper bound)

    reader = SessionReader(session)
    assert not reader.complete
    frames = list(reader.frames())
    chunks = list(reader.audio_chunks())
    assert frames[-1].t >= killed_at - 1.0, (frames[-1].t, killed_at)
    assert chunks[-1].t_end >= killed_at - 1.0, (chunks[-1].t_end, killed_at)
    assert [f.index for f in frames] == list(range(len(frames)))  # nothing lost before the kill
    out = tmp_path / "w.jsonl"
    assert main(["-q", "replay", str(session), "--headless", "--windows", "--out", str(out)]) == 0
    windows = _lines(out)
    assert windows and windows[-1]["t1"] >= killed_at - 1.5, (windows[-1]["t1"], killed_at)
    assert all(w[m]["present"] for w in windows for m in MODALITIES)


def test_sigint_finalises_the_session(tmp_path):
    session = tmp_path / "s"
    proc = _app("record", "--source", "synthetic", "--out", str(session))
    started = _wait_recording(session, proc)
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    stopped_at = time.time() - started
    assert proc.returncode == 0, err
    assert "stopped by SIGINT" in out
    reader = SessionReader(session)
    assert reader.complete and 2.0 < reader.end_t <= stopped_at
    assert reader.meta["counts"]["frames"] > 20
    assert len(reader.live_windows()) >= 1
    # the WAV header was patched on close: other tools read the full length
    import soundfile

    assert soundfile.info(str(session / "audio.wav")).frames == reader.meta["counts"]["audio_samples"]


def test_switched_off_modalities_replay_with_the_live_reasons(tmp_path, capsys):
    session, out = tmp_path / "s", tmp_path / "w.jsonl"
    code = main(["-q", "record", "--source", "synthetic", "--seconds", "2.6", "--camera", "none", "--transcript",
                 "none", "--out", str(session)])
    assert code == 0
    assert main(["-q", "replay", str(session), "--headless", "--windows", "--out", str(out)]) == 0
    live, replayed = _lines(session / "windows.jsonl"), _lines(out)
    assert len(live) == len(replayed) == 2
    for a, b in zip(live, replayed):
        assert a["video"]["reason"] == b["video"]["reason"] == "camera switched off (--camera none)"
        assert a["text"]["reason"] == b["text"]["reason"] == "no transcript source"
        assert a["audio"]["present"] and b["audio"]["present"]


def test_replay_of_an_mp4_via_the_cli(tmp_path, capsys):
    video = write_test_video(tmp_path / "clip.mp4", seconds=3.0, audio="tone")
    out = tmp_path / "w.jsonl"
    assert main(["-q", "replay", str(video), "--headless", "--windows", "--out", str(out)]) == 0
    windows = _lines(out)
    assert [w["t1"] for w in windows] == [2.0, 2.5, 3.0]
    assert all(w["audio"]["present"] and w["video"]["present"] for w in windows)
    assert "replayed" in capsys.readouterr().out


@pytest.mark.slow  # > 5 s on 2 cores (fast tier: pytest -m 'not slow')
def test_cli_errors(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "missing.mp4"), "--headless"]) == 1
    assert "missing.mp4" in capsys.readouterr().err
    assert main(["replay", str(tmp_path), "--headless"]) == 1
    assert "meta.json missing" in capsys.readouterr().err
    video = write_test_video(tmp_path / "clip.mp4", seconds=1.0, audio=None)
    with pytest.raises(SystemExit):
        main(["replay", str(video), "--headless", "--speed", "0"])
    assert main(["replay", str(video), "--auth", "nopassword"]) == 2  # refused before any server starts
    assert "USER:PASSWORD" in capsys.readouterr().err


def test_exposing_the_dashboard_without_a_login_warns():
    from app.cli import security_warnings

    assert security_warnings("127.0.0.1", False, None) == []
    assert security_warnings("0.0.0.0", False, ("u", "p")) == []
    assert "without a login" in security_warnings("0.0.0.0", False, None)[0]
    assert "public share link" in security_warnings("127.0.0.1", True, None)[0]
