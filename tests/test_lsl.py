"""LSL outlets (app/lsl.py) read back by real LSL inlets in this process (pylsl opens local sockets; no network)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pylsl
import pytest

from app.lsl import LslPublisher, emotion_channels, quality_channels
from umq.labels import EMOTIONS
from umq.result import ModalityReport, Result

ROOT = Path(__file__).resolve().parents[1]


def _result(i: int, video_state: str = "ok", lab: dict | None = None, no_evidence: bool = False) -> Result:
    probs = {e: (0.4 if e == "happy" else 0.1) for e in EMOTIONS}
    q = {"ok": 0.9, "low": 0.3, "missing": 0.0, "idle": 0.0}[video_state]
    mods = {"video": ModalityReport(q, video_state, "" if video_state == "ok" else "too dark"),
            "audio": ModalityReport(0.8, "ok"), "text": ModalityReport(0.0, "missing", "no transcript")}
    return Result(index=i, t0=i * 0.5, t1=i * 0.5 + 2.0, probs=probs, label="" if no_evidence else "happy",
                  confidence=0.4, modalities=mods, no_evidence=no_evidence, lab=lab or {})


def _inlet(name: str, timeout: float = 10.0):
    found = pylsl.resolve_byprop("name", name, timeout=timeout)
    assert found, f"no LSL stream named {name} within {timeout} s"
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(timeout=timeout)
    return inlet


def _labels(inlet) -> list[str]:
    ch = inlet.info(timeout=5).desc().child("channels").child("channel")
    out = []
    while not ch.empty():
        out.append(ch.child_value("label"))
        ch = ch.next_sibling()
    return out


def _pull(inlet, n: int, timeout: float = 10.0) -> list[tuple[list, float]]:
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        sample, ts = inlet.pull_sample(timeout=0.2)
        if sample is not None:
            out.append((sample, ts))
    return out


def test_results_reach_an_inlet_with_labels_rates_markers_and_mapped_timestamps():
    name = f"umq-test-{uuid.uuid4().hex[:8]}"
    pub = LslPublisher(name, hop_s=0.5)
    emo, qual, mark = _inlet(f"{name}-emotion"), _inlet(f"{name}-quality"), _inlet(f"{name}-markers")
    time.sleep(0.5)  # let the inlets' data connections settle before the first sample
    assert emo.info().type() == "Emotion" and qual.info().type() == "Quality" and mark.info().type() == "Markers"
    assert emo.info().nominal_srate() == pytest.approx(2.0) and mark.info().nominal_srate() == 0.0
    assert _labels(emo) == emotion_channels() and _labels(qual) == quality_channels()
    session_now = 10.0
    pub._now = lambda: session_now  # the engine's clock: session time 10 s when the first result arrives
    results = [_result(0), _result(1), _result(2, "low", lab={"dark": "0.8"}), _result(3, "missing", no_evidence=True)]
    t_before = pylsl.local_clock()
    for r in results:
        pub.push(r)
    emotions, qualities, markers = _pull(emo, 4), _pull(qual, 4), _pull(mark, 8)
    assert len(emotions) == 4 and len(qualities) == 4
    first, ts0 = emotions[0]
    assert first[EMOTIONS.index("happy")] == pytest.approx(0.4) and first[-1] == 0.0
    assert emotions[3][0][-1] == 1.0  # no_evidence
    # stamps: session t1 mapped by one offset, anchored at the clock reading when the first result came
    assert [ts - ts0 for _, ts in emotions] == pytest.approx([r.t1 - results[0].t1 for r in results], abs=1e-6)
    assert ts0 == pytest.approx(t_before + (results[0].t1 - session_now), abs=0.5)
    assert qualities[2][0][:3] == pytest.approx([0.3, 0.8, 0.0]) and qualities[2][0][3:] == [1.0, 0.0, 2.0]
    texts = [s[0] for s, _ in markers]
    assert "video: ok -> low (too dark)" in texts and "lab: dark=0.8" in texts
    assert "video: low -> missing (too dark)" in texts and "lab: off" in texts and "evidence: none" in texts
    assert not any(t.startswith("audio: ok") for t in texts)  # no marker without a change


def test_a_new_run_reanchors_the_clock():
    pub = LslPublisher(f"umq-test-{uuid.uuid4().hex[:8]}", hop_s=0.5)
    pub.push(_result(5))
    first = pub.lsl_time(0.0)
    time.sleep(0.2)
    pub.push(_result(0))  # session time went backwards: a new replay started
    assert pub.lsl_time(0.0) - first > 0.15


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_headless_replay_publishes_with_lsl(tmp_path):
    """``python -m app replay VIDEO --headless --speed 1 --lsl NAME`` in a subprocess, read here."""
    from streams.files import write_test_video

    video = write_test_video(tmp_path / "v.mp4", seconds=8.0)
    name = f"umq-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "-q", "replay", str(video), "--headless", "--speed", "1",
                             "--out", str(tmp_path / "r.jsonl"), "--lsl", name], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        emo = _inlet(f"{name}-emotion", timeout=180)
        got = _pull(emo, 3, timeout=60)
        assert len(got) >= 3, "fewer than 3 results reached the inlet"
        assert all(len(s) == len(emotion_channels()) for s, _ in got)
        assert all(abs(sum(s[:len(EMOTIONS)]) - 1.0) < 1e-3 for s, _ in got)
        stamps = [ts for _, ts in got]
        assert all(0.4 < b - a < 0.6 for a, b in zip(stamps, stamps[1:]))  # one window per hop on LSL's clock
    finally:
        proc.wait(120)
    assert proc.returncode == 0, proc.stderr.read().decode()
