"""``python -m app replay assets/demo_session --headless``: one Result line per window, corrupted stretches marked.

The demo session's script (app/demo.py): darkness 9-15 s, camera off 15-21 s, muted microphone 21-27 s,
noise 27-34 s, no transcript 34-40 s, blur 40-45 s.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"t0", "t1", "probs", "label", "quality", "state", "reason", "routing", "latency_ms"}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "results.jsonl"
    r = subprocess.run([sys.executable, "-m", "app", "-q", "replay", "assets/demo_session", "--headless", "--speed",
                        "max", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=280,
                       env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "UMQ_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "results" in r.stdout and "replayed" in r.stdout
    return [json.loads(line) for line in out.read_text().splitlines()]


def _inside(rows, a, b):
    return [r for r in rows if r["t0"] >= a - 1e-6 and r["t1"] <= b + 1e-6]


def test_one_line_per_window_with_every_field(demo_results):
    from streams.replay import Replay

    windows = list(Replay(ROOT / "assets" / "demo_session", speed=None).windows())
    assert len(demo_results) == len(windows) >= 80
    assert [r["t1"] for r in demo_results] == [round(w.t1, 4) for w in windows]
    for r in demo_results:
        assert set(r) >= FIELDS
        assert abs(sum(r["probs"].values()) - 1) < 1e-3
        assert r["label"] == ("" if r["no_evidence"] else max(r["probs"], key=r["probs"].get))
        assert set(r["quality"]) == set(r["state"]) == set(r["reason"]) == {"video", "audio", "text"}
        assert all(0 <= q <= 1 for q in r["quality"].values()) and {"perception", "model"} <= set(r["latency_ms"])


def test_corrupted_stretches_are_marked(demo_results):
    rows = demo_results
    off = _inside(rows, 15.0, 21.0)
    assert off and all(r["state"]["video"] == "missing" for r in off)
    dark = _inside(rows, 9.5, 15.0)
    assert sum(r["state"]["video"] != "ok" for r in dark) >= 0.8 * len(dark)
    muted = _inside(rows, 21.0, 27.0)
    assert all(r["state"]["audio"] == "missing" and "silent" in r["reason"]["audio"] for r in muted)
    noisy = _inside(rows, 27.5, 34.0)  # ~0 dB white noise: flagged with its SNR; the badge follows the gauge
    flagged = [r for r in noisy if any("SNR" in f for f in r["modalities"]["audio"]["flags"])]
    assert len(flagged) >= 0.8 * len(noisy), [r["modalities"]["audio"]["flags"] for r in noisy]
    no_text = _inside(rows, 34.5, 40.0)
    assert all(r["state"]["text"] == "missing" for r in no_text)
    clean = _inside(rows, 2.0, 9.0)
    assert sum(r["state"]["video"] == "ok" for r in clean) >= 0.8 * len(clean)
    # quality follows: the camera-off stretch has lower face quality than the clean start
    mean = lambda rs, m: sum(r["quality"][m] for r in rs) / len(rs)  # noqa: E731
    assert mean(off, "video") < mean(clean, "video") and mean(muted, "audio") < mean(_inside(rows, 2, 9), "audio")
    assert mean(noisy, "audio") < mean(clean, "audio")
    # one rule on every window of the session: a present modality is low exactly when its gauge is below 0.5
    from umq.runtime.states import LOW_QUALITY

    for r in rows:
        for m, rep in r["modalities"].items():
            if rep["state"] in ("ok", "low") and abs(rep["quality"] - LOW_QUALITY) > 1e-3:  # exports round
                assert (rep["state"] == "low") == (rep["quality"] < LOW_QUALITY), (r["t0"], m, rep)
