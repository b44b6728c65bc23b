"""Running the face front-end beside voice and text (``Analyzer(parallel=True)``) changes no output."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from streams.replay import Replay

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo_session"


@pytest.fixture(scope="module")
def analyzer():
    from umq.runtime.analyzer import Analyzer

    return Analyzer(device="cpu", parallel=True)


def _run(analyzer, windows, parallel: bool):
    analyzer.reset()
    analyzer._text_cache.clear()
    pool = analyzer._face_pool
    if not parallel:
        analyzer._face_pool = None
    try:
        out = []
        for w in windows:
            p = analyzer.perceive(w)
            r = analyzer.predict(p)
            out.append((p, r))
        return out
    finally:
        analyzer._face_pool = pool


def test_parallel_face_gives_identical_outputs(analyzer):
    assert analyzer._face_pool is not None
    # windows 0-13 and 30-35 of the demo: face found, dark, camera off (missing video), speech and text
    windows = list(itertools.islice(Replay(DEMO, speed=None).windows(), 36))
    windows = windows[:14] + windows[30:36]
    seq = _run(analyzer, windows, parallel=False)
    par = _run(analyzer, windows, parallel=True)
    assert any(p.present["face"] for p, _ in seq) and any(not p.present["face"] for p, _ in seq)
    for (ps, rs), (pp, rp) in zip(seq, par):
        assert list(pp.x) == list(ps.x) == ["face", "voice", "text"]
        for m in ps.x:
            assert torch.equal(ps.x[m], pp.x[m]), m
        assert ps.present == pp.present and ps.reason == pp.reason and ps.cues == pp.cues
        assert ps.cue_problem == pp.cue_problem and ps.face_box == pp.face_box and ps.text == pp.text
        assert list(ps.reason) == list(pp.reason) and list(pp.latency_ms) == ["face", "voice", "text"]
        assert rs.probs == rp.probs and rs.quality == rp.quality and rs.state == rp.state
        assert rs.reason == rp.reason and rs.routing == rp.routing and rs.extra == rp.extra
