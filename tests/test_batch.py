"""``python -m app analyze``: inputs found and named, outputs complete and atomic, bad inputs recorded, resume.

The inputs are tiny (3 s, 160x120 videos written with PyAV, a 3 s session recorded on a simulated clock) and the
models load once for the module (real weights, real decoding).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.batch.inputs import InputError, discover, output_names
from app.batch.outputs import read_footer
from app.cli import main as cli_main
from app.table import columns, read_table

ROOT = Path(__file__).resolve().parents[1]


def _video(path: Path, **kw) -> Path:
    from streams.files import write_test_video

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_test_video(path, seconds=kw.pop("seconds", 3.0), **kw)


def _session(path: Path, seconds: float = 3.0) -> Path:
    """A session folder with camera, microphone and a transcript line, recorded on a simulated clock."""
    from streams.buffer import WindowConfig
    from streams.clock import SimulatedClock
    from streams.packets import AUDIO_RATE, AudioChunk, TextSegment, VideoFrame
    from streams.recorder import SessionRecorder
    from streams.synthetic import synthetic_audio, synthetic_frame

    clock = SimulatedClock(speed=None)
    meta = {"window_config": WindowConfig(video_fps=15.0).to_json(), "video_fps": 15.0}
    rec = SessionRecorder(path, meta, clock=clock).start()
    packets = [VideoFrame(i / 15, synthetic_frame(i, i / 15, (160, 120)), i) for i in range(int(seconds * 15))]
    n = 512
    packets += [AudioChunk(k * n / AUDIO_RATE, synthetic_audio("speechlike", k * n / AUDIO_RATE, n))
                for k in range(int(seconds * AUDIO_RATE / n))]
    packets.append(TextSegment(0.5, 1.5, "I am so happy today", "test", 1.0))
    for p in sorted(packets, key=lambda p: p.t1 if isinstance(p, TextSegment) else p.t):
        clock.advance_to(p.t1 if isinstance(p, TextSegment) else p.t)
        rec(p)
    rec.close(end_t=seconds)
    return path


@pytest.fixture(scope="module")
def analyzer(torch_one_thread):
    from app.batch.task import TaskOptions, make_analyzer

    a = make_analyzer(TaskOptions(device="cpu"))
    yield a
    a.close()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A folder as researchers have them: same-stem videos in different folders (with a space and unicode in
    the path), a video without audio, an audio-only file, a zero-byte file, a subtitle, notes, a session."""
    root = tmp_path_factory.mktemp("in")
    _video(root / "a.mp4")
    (root / "a.srt").write_text("1\n00:00:00,500 --> 00:00:01,500\nI am so happy today\n\n")
    _video(root / "sub dir" / "ünï" / "a.mp4")
    _video(root / "b" / "silent film.mkv", audio=None)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:a", "aac",
                    "-y", str(root / "b" / "audio only.mp4")], check=True)
    (root / "b" / "empty.mp4").write_bytes(b"")
    (root / "notes.txt").write_text("not a video")
    _session(root / "sessions" / "s1")
    return root


def test_discovery_finds_inputs_ignores_the_rest_and_names_outputs_uniquely(tree):
    found = discover([tree])
    names = {i.path.relative_to(tree).as_posix(): i.name for i in found.inputs}
    assert names == {"a.mp4": "a", "sub dir/ünï/a.mp4": "sub dir__ünï__a", "b/silent film.mkv": "silent film",
                     "b/audio only.mp4": "audio only", "b/empty.mp4": "empty", "sessions/s1": "s1"}
    kinds = {i.name: i.kind for i in found.inputs}
    assert kinds["s1"] == "session"
    # the subtitle is the transcript of a.mp4, not a skipped file; the notes are skipped with a reason
    assert [(p.name, "not a media file" in why) for p, why in found.ignored] == [("notes.txt", True)]
    # nothing inside a session folder is an input of its own
    assert not any("s1/" in i.path.as_posix() for i in found.inputs)


def test_the_output_folder_inside_an_input_folder_is_not_searched(tree, tmp_path):
    out = tree / "results"
    out.mkdir(exist_ok=True)
    (out / "a.csv").write_text("x")
    try:
        found = discover([tree], exclude=[out])
        assert not any(out in p.parents for p, _ in found.ignored)
        assert any(out in p.parents for p, _ in discover([tree]).ignored)
    finally:
        (out / "a.csv").unlink()
        out.rmdir()


def test_output_names_are_stable_and_never_collide(tmp_path):
    paths = [tmp_path / "x" / "a.mp4", tmp_path / "y" / "A.mkv", tmp_path / "x" / "a.mkv", tmp_path / "summary.mp4"]
    for p in paths:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    names = output_names(paths)
    assert len({n.lower() for n in names.values()}) == len(paths)
    assert names[paths[3]] != "summary"  # would overwrite summary.csv
    assert output_names(list(reversed(paths))) == names


def test_a_missing_path_or_an_unwritable_output_folder_is_a_usage_error_before_any_work(tree, tmp_path, capsys):
    with pytest.raises(InputError, match="nope.mp4"):
        discover([tree / "nope.mp4"])
    assert cli_main(["analyze", str(tree / "nope.mp4"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.mp4: no such file" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli_main(["analyze", str(tree / "a.mp4"), "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert "is not writable" in err and str(blocker / "out") in err


@pytest.fixture(scope="module")
def batch(tree, analyzer, tmp_path_factory):
    from app.batch import TaskOptions, run_batch

    out = tmp_path_factory.mktemp("out")
    items = discover([tree]).inputs
    report = run_batch(items, out, TaskOptions(device="cpu"), analyzer=analyzer, progress=False)
    return out, items, report


def test_batch_writes_a_table_and_a_provenance_jsonl_per_input(batch, tree):
    out, _, report = batch
    assert report["analysed"] == 5 and report["failed"] == 1
    for name in ("a", "sub dir__ünï__a", "silent film", "audio only", "s1"):
        df = read_table(out / f"{name}.csv")
        assert list(df.columns) == columns()
        lines = [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
        head, rows, foot = lines[0], lines[1:-1], lines[-1]
        assert head["type"] == "header" and foot["type"] == "footer"
        assert len(rows) == len(df) == foot["windows"] > 0
        assert [r["index"] for r in rows] == df["window"].tolist()
        np.testing.assert_allclose(df["p_happy"], [r["probs"]["happy"] for r in rows], atol=1e-5)
        path = Path(head["input"])
        if path.is_file():
            assert head["input_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        for rel, digest in head["models"].items():
            if rel.startswith("assets/"):
                assert hashlib.sha256((ROOT / rel).read_bytes()).hexdigest() == digest
        assert head["window_s"] == 2.0 and head["hop_s"] == 0.5 and head["device"] == "cpu"
    assert not list(out.glob(".*.tmp"))


def test_each_modality_is_reported_as_the_input_has_it(batch):
    out, _, _ = batch
    silent = read_table(out / "silent film.csv")
    assert (silent["audio_state"] == "missing").all() and (silent["audio_success"] == 0).all()
    assert (silent["video_success"] == 1).any() and silent["face_w"].notna().any()
    audio_only = read_table(out / "audio only.csv")
    assert (audio_only["video_state"] == "missing").all() and (audio_only["n_faces"] == 0).all()
    assert audio_only["face_id"].isna().all() and (audio_only["video_label"] == "").all()
    a = read_table(out / "a.csv")  # the subtitle beside a.mp4 is its transcript
    assert (a["text_state"] != "missing").any() and a["transcript"].str.contains("happy").any()
    s1 = read_table(out / "s1.csv")  # a session knows its wall-clock start
    meta = json.loads((Path(s1["source"][0]) / "meta.json").read_text())
    np.testing.assert_allclose(s1["timestamp_unix"], meta["started_at_unix"] + s1["t0"], atol=1e-3)
    assert read_table(out / "a.csv")["timestamp_unix"].isna().all()  # a video file has no reliable start


def test_summary_and_errors_have_one_row_per_input(batch):
    out, items, _ = batch
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert summary["input"].tolist() == [str(i.path) for i in items]
    bad = summary[summary["status"] == "failed"]
    assert bad["name"].tolist() == ["empty"] and "empty.mp4" in bad["error"].iloc[0]
    ok = summary[summary["status"] == "ok"]
    for m in ("video", "audio", "text"):
        shares = ok[[f"{m}_{s}" for s in ("ok", "low", "missing", "idle")]].astype(float).sum(axis=1)
        np.testing.assert_allclose(shares, 1.0, atol=1e-3)
    assert float(ok.set_index("name").loc["silent film", "audio_missing"]) == 1.0
    errors = pd.read_csv(out / "errors.csv")
    assert errors["input"].tolist() == [str(i.path) for i in items if i.name == "empty"]
    assert "cannot decode" in errors["error"].iloc[0]


def test_resume_skips_complete_outputs_and_redoes_broken_ones(batch, analyzer):
    from app.batch import TaskOptions, run_batch

    out, items, _ = batch
    done = [i for i in items if i.name != "empty"]
    stamps = {i.name: (out / f"{i.name}.csv").stat().st_mtime_ns for i in done}
    # what a kill mid-write leaves: a temporary file, and an input whose JSONL never got its footer
    (out / ".a.csv.123.tmp").write_text("partial")
    jsonl = out / "audio only.jsonl"
    jsonl.write_text("\n".join(jsonl.read_text().splitlines()[:2]) + "\n")
    assert read_footer(jsonl) is None
    report = run_batch(items, out, TaskOptions(device="cpu"), analyzer=analyzer, progress=False)
    assert (report["analysed"], report["skipped"], report["failed"]) == (1, 4, 1)
    assert read_footer(jsonl) is not None
    assert not (out / ".a.csv.123.tmp").exists()
    for i in done:
        if i.name != "audio only":
            assert (out / f"{i.name}.csv").stat().st_mtime_ns == stamps[i.name]
    summary = pd.read_csv(out / "summary.csv")
    assert summary["input"].tolist() == [str(i.path) for i in items]  # no duplicated rows


def test_force_redoes_everything(tree, analyzer, tmp_path):
    from app.batch import TaskOptions, run_batch

    items = [i for i in discover([tree]).inputs if i.name == "silent film"]
    run_batch(items, tmp_path, TaskOptions(device="cpu"), analyzer=analyzer, progress=False)
    first = read_footer(tmp_path / "silent film.jsonl")
    again = run_batch(items, tmp_path, TaskOptions(device="cpu"), analyzer=analyzer, progress=False)
    assert again["skipped"] == 1 and read_footer(tmp_path / "silent film.jsonl") == first
    forced = run_batch(items, tmp_path, TaskOptions(device="cpu"), analyzer=analyzer, progress=False, force=True)
    assert forced["analysed"] == 1
    assert pd.read_csv(tmp_path / "summary.csv").shape[0] == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_batch_resumes_without_duplicating_rows(tree, tmp_path):
    """A real ``kill -9`` of the command after its first input; the rerun finishes the rest, exit status says a
    file failed."""
    inputs = [str(tree / "b"), str(tree / "a.mp4")]  # audio only, empty, silent film; then a
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "app", "-q", "analyze", *inputs, "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not (out / "audio only.jsonl").exists():
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    first = (out / "audio only.jsonl").stat().st_mtime_ns
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr  # empty.mp4 failed
    assert "skipped 1" in rerun.stdout or "skipped 3" in rerun.stdout, rerun.stdout
    assert (out / "audio only.jsonl").stat().st_mtime_ns == first
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["name"]) == ["a", "audio only", "empty", "silent film"]
    assert not list(out.glob(".*.tmp"))
