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
    analyzer.parallel = parallel
    try:
        out = []
        for w in windows:
            p = analyzer.perceive(w)
            r = analyzer.predict(p)
            out.append((p, r))
        return out
    finally:
        analyzer.parallel = True


@pytest.mark.slow  # model loads or trains: seconds to minutes on 2 cores
def test_parallel_face_gives_identical_outputs(analyzer):
    assert analyzer.parallel
    # windows 0-13 and 30-35 of the demo: face found, dark, camera off (missing video), speech and text
    windows = list(itertools.islice(Replay(DEMO, speed=None).windows(), 36))
    windows = windows[:14] + windows[30:36]
    seq = _run(analyzer, windows, parallel=False)
    par = _run(analyzer, windows, parallel=True)
    assert any(p.modalities["video"].present for p, _ in seq) and any(not p.modalities["video"].present
                                                                       for p, _ in seq)
    for (ps, rs), (pp, rp) in zip(seq, par):
        assert list(pp.modalities) == list(ps.modalities) == ["video", "audio", "text"]
        for m, a in ps.modalities.items():
            b = pp.modalities[m]
            assert torch.equal(a.x, b.x), m
            assert (a.present, a.reason, a.flags, a.cues, a.idle) == (b.present, b.reason, b.flags, b.cues, b.idle)
            assert (a.probs is None) == (b.probs is None) and (a.probs is None or torch.equal(a.probs, b.probs))
        assert ps.faces == pp.faces and ps.text == pp.text and list(pp.latency_ms) == ["face", "voice", "text"]
        assert rs.probs == rp.probs and rs.quality == rp.quality and rs.state == rp.state
        assert rs.reason == rp.reason and rs.routing == rp.routing and rs.faces == rp.faces
        assert rs.modalities == rp.modalities
