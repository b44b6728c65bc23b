"""Engine plumbing: latest-wins hand-offs keep live analysis current under a slow stage, replay at maximum
speed analyses every window, and a camera stop reaches the results within one hop."""
from __future__ import annotations

import json
import threading
import time

import pytest

from app.capture import Capture
from app.engine import Engine, EngineConfig
from app.pipeline import Mailbox, Pipeline
from streams.buffer import WindowConfig
from streams.clock import SessionClock
from streams.packets import Modality
from streams.replay import Replay
from streams.synthetic import SyntheticCamera, SyntheticMicrophone
from umq.result import FaceReport, ModalityReport, Prediction, Result

LABELS = ("neutral", "happy")


def health_result(window) -> Result:
    """Stands in for the model in plumbing tests: a Result that only reflects capture health."""
    h = window.healths
    return Result(index=window.index, t0=window.t0, t1=window.t1, probs={"neutral": 0.5, "happy": 0.5},
                  label="neutral", confidence=0.5,
                  modalities={m.value: ModalityReport(float(h[m].present), "ok" if h[m].present else "missing",
                                                      h[m].reason) for m in Modality}, health=window.to_json())


def synthetic_capture(off=()):
    clock = SessionClock()
    cam = SyntheticCamera(clock, fps=15, size=(64, 48), off=off)
    mic = SyntheticMicrophone(clock)
    return clock, Capture(sources=[cam, mic], info={
        Modality.VIDEO: {"present": True, "reason": ""}, Modality.AUDIO: {"present": True, "reason": ""},
        Modality.TEXT: {"present": False, "reason": "no transcript source"}})


def test_mailbox_latest_wins_counts_overwrites():
    box = Mailbox("latest")
    for i in range(5):
        box.put(i)
    assert len(box) == 1 and box.get(0.1) == 4 and box.dropped == 4
    assert box.get(0.01) is None


def test_mailbox_block_waits_for_the_consumer():
    box = Mailbox("block")
    box.put(1)
    done = threading.Event()
    threading.Thread(target=lambda: (box.put(2), done.set()), daemon=True).start()
    assert not done.wait(0.2)  # producer waits while the slot is full
    assert box.get(1.0) == 1 and done.wait(1.0) and box.get(1.0) == 2 and box.dropped == 0


def test_mailbox_merge_decides_what_replaces_an_untaken_item():
    box = Mailbox("latest", merge=lambda old, new: old + new)
    for i in (1, 2, 3):
        box.put(i)
    assert box.get(0.1) == 6 and box.dropped == 2
    box.put(4)
    assert box.get(0.1) == 4  # nothing was replaced: no merge


def test_a_window_skipped_live_hands_its_late_transcript_line_to_the_next():
    """A late ASR line is in one window only; when the latest-wins hand-off skips that window, the engine's
    pipeline moves the line into the window that replaced it (deterministic: the stage is held on an event)."""
    from streams.buffer import TimeAlignedBuffer, Windower
    from streams.packets import SourceState, TextSegment
    from streams.windows import carry_dropped
    from tests.helpers import audio_packets, status

    buf = TimeAlignedBuffer()
    for m in (Modality.AUDIO, Modality.TEXT):
        buf.push(status(m, SourceState.RUNNING, 0.0))
    windower = Windower(buf, WindowConfig())
    said = TextSegment(1.0, 1.6, "good morning everybody", "asr", 0.9)
    for p in audio_packets(0.0, 4.05):
        buf.push(p)
    first = windower.due(4.05)  # [0, 2) ... [2, 4)
    buf.push(said)  # ASR hands the line over now: it ends before every window still to come
    for p in audio_packets(4.05, 5.05):
        buf.push(p)
    w45, w50 = windower.due(5.05)
    assert w45.text.late == (said,) and w50.text.segments == ()

    gate, taken, seen = threading.Event(), threading.Event(), []

    def perception(w):
        seen.append(w)
        taken.set()
        gate.wait(5.0)
        return w

    p = Pipeline([("perception", perception)], lambda v, lat: None, policy="latest", merge_dropped=carry_dropped)
    p.start()
    try:
        p.submit(first[-1])
        assert taken.wait(5.0)  # the stage is busy with [2, 4): the next two meet in the mailbox
        p.submit(w45)
        p.submit(w50)  # replaces [2.5, 4.5), which nobody took
        gate.set()
        assert p.drain(5.0)
    finally:
        p.stop()
    assert [w.t1 for w in seen] == [4.0, 5.0] and p.dropped() == {"perception": 1}
    assert seen[1].text.segments == (said,) and seen[1].text.late == (said,) and seen[1].text.health.present


def test_pipeline_survives_a_failing_stage():
    out = []

    def flaky(x):
        if x == 2:
            raise RuntimeError("bad window")
        return x

    p = Pipeline([("flaky", flaky)], lambda v, lat: out.append(v), policy="block")
    p.start()
    for i in range(4):
        p.submit(i)
    assert p.drain(5.0)
    p.stop()
    assert out == [0, 1, 3] and p.errors["flaky"] == 1 and "bad window" in p.last_error


def test_slow_perception_drops_old_windows_instead_of_queueing():
    def slow_perception(window):
        time.sleep(0.9)  # slower than the 0.25 s hop
        return window

    clock, capture = synthetic_capture()
    engine = Engine([("perception", slow_perception), ("model", health_result)],
                    EngineConfig(window=WindowConfig(window_s=1.0, hop_s=0.25)))
    engine.start_live(capture, clock)
    sizes = []
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:
        sizes.append(max(len(b) for b in engine._pipeline.inboxes))
        time.sleep(0.05)
    tel = engine.telemetry()
    results = engine.history()
    engine.stop()
    assert max(sizes) <= 1  # no stage ever holds more than one waiting window
    assert tel.dropped["perception"] >= 3 and tel.windows >= 10
    assert 2 <= len(results) <= 5
    # the newest result is about the newest window, not a backlog: at most one stage time + a hop behind
    assert tel.session_t - results[-1].t1 < 0.9 * 2 + 0.25 + 0.5
    assert not any(t.name.startswith("stage:") and t.is_alive() for t in threading.enumerate())


def test_camera_stop_reaches_results_within_one_hop():
    clock, capture = synthetic_capture(off=((2.6, 60.0),))
    engine = Engine([("model", health_result)])
    engine.start_live(capture, clock)
    time.sleep(3.9)
    results = {round(r.t1, 2): r for r in engine.history()}
    engine.stop()
    assert results[2.5].state["video"] == "ok"
    assert results[3.0].state["video"] == "missing"  # the first window ending after the stop
    assert results[3.0].reason["video"].startswith("camera disconnected")
    assert results[3.0].state["audio"] == "ok" and results[3.0].reason["text"] == "no transcript source"
    assert all("end_to_end" in r.latency_ms and "model" in r.latency_ms for r in results.values())


@pytest.mark.slow
def test_replay_at_max_speed_analyses_every_window(tmp_path):
    from app.cli import main

    out = tmp_path / "s"
    assert main(["-q", "record", "--source", "synthetic", "--seconds", "4", "--out", str(out)]) == 0
    live = (out / "windows.jsonl").read_text().splitlines()

    def slow(window):
        time.sleep(0.05)
        return health_result(window)

    engine = Engine([("model", slow)])
    engine.start_replay(Replay(out, speed=None))
    assert engine.wait_replay(30)
    results = engine.history()
    tel = engine.telemetry()
    engine.stop()
    assert len(results) == len(live) >= 5
    assert [r.index for r in results] == list(range(len(live)))
    assert tel.dropped == {"model": 0}


def test_result_rejects_bad_values():
    ok = dict(index=0, t0=0.0, t1=2.0, probs={"neutral": 0.4, "happy": 0.6}, label="happy", confidence=0.6,
              modalities={"video": ModalityReport(1.0, "ok")})
    assert Result(**ok).to_json()["label"] == "happy"
    with pytest.raises(ValueError, match="sum to 1"):
        Result(**{**ok, "probs": {"neutral": 0.4, "happy": 0.4}})
    with pytest.raises(ValueError, match="finite"):
        Result(**{**ok, "probs": {"neutral": float("nan"), "happy": 0.6}})
    with pytest.raises(ValueError, match="quality must be in"):
        ModalityReport(1.5, "ok")
    with pytest.raises(ValueError, match="state must be one of"):
        ModalityReport(1.0, "great")
    with pytest.raises(ValueError, match="no label"):
        Result(**{**ok, "no_evidence": True})
    with pytest.raises(ValueError, match="not one of"):
        Result(**{**ok, "label": ""})
    r = Result(**{**ok, "baseline": Prediction({"neutral": 0.7, "happy": 0.3}), "transcript": "hi",
                  "faces": (FaceReport(3, (1, 2, 30, 40), True, 0.9, Prediction({"neutral": 0.1, "happy": 0.9})),),
                  "modalities": {"video": ModalityReport(0.4, "low", "too dark", ("too dark",), {"brightness": 0.05},
                                                         Prediction({"neutral": 0.2, "happy": 0.8}))}})
    assert Result.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert r.baseline.label == "neutral" and r.primary_face.prediction.label == "happy"
    old = {"index": 0, "t0": 0.0, "t1": 2.0, "probs": {"neutral": 0.4, "happy": 0.6}, "label": "happy",
           "confidence": 0.6, "quality": {"video": 0.9}, "state": {"video": "ok"}, "reason": {"video": ""},
           "extra": {"baseline": {"probs": {"neutral": 1.0, "happy": 0.0}, "label": "neutral"}, "text": "x"}}
    v1 = Result.from_json(old)  # schema-1 lines (written before the typed report) still read
    assert v1.quality == {"video": 0.9} and v1.baseline.label == "neutral" and v1.transcript == "x"
    assert Result.from_json(r.to_json()) == r
