"""The traced batch-1 UMQ forward gives the eager model's outputs for every present/missing pattern."""
from __future__ import annotations

import itertools

import torch

from umq.runtime.analyzer import ASSETS, load_runtime_model
from umq.runtime.fast import choose_forward, eager_forward, traced_forward
from umq.runtime.features import DIMS, MODALITIES


def test_traced_forward_matches_eager_on_every_presence_pattern():
    for name in ("umq.pt", "moe_unaware.pt"):
        model = load_runtime_model(ASSETS / name)[0]
        fast, mode = traced_forward(model, DIMS, torch.device("cpu"))
        assert mode == "traced", mode  # these shipped models trace cleanly
        eager = eager_forward(model)
        g = torch.Generator().manual_seed(7)
        with torch.inference_mode():
            for mask in itertools.product((True, False), repeat=len(MODALITIES)):
                if not any(mask):
                    continue
                xs = tuple(torch.randn(1, 1, DIMS[m], generator=g) * 3 * float(p) for m, p in zip(MODALITIES, mask))
                present = torch.tensor([mask])
                for a, b in zip(eager(xs, present), fast(xs, present)):
                    assert torch.allclose(a, b, atol=1e-6), (name, mask)
            nan = tuple(torch.full((1, 1, DIMS[m]), float("nan")) for m in MODALITIES)  # sanitised in both
            a, b = eager(nan, torch.ones(1, 3, dtype=torch.bool)), fast(nan, torch.ones(1, 3, dtype=torch.bool))
            assert torch.isfinite(b[0]).all() and torch.allclose(a[0], b[0], atol=1e-6)


def test_a_model_that_cannot_be_traced_falls_back_to_eager():
    class Broken(torch.nn.Module):
        names = MODALITIES

        def forward(self, inputs, present):
            raise RuntimeError("no tracing here")

    forward, mode = traced_forward(Broken(), DIMS, torch.device("cpu"))
    assert mode.startswith("eager (trace failed")


def test_the_live_forward_is_chosen_by_measurement_among_forms_that_match_eager():
    model = load_runtime_model(ASSETS / "umq.pt")[0]
    forward, mode, timings = choose_forward(model, DIMS, torch.device("cpu"), iters=10)
    assert set(timings) == {"eager", "traced"}  # no CUDA here: no graph candidate
    assert all(isinstance(v, float) and v > 0 for v in timings.values())
    assert mode == min(timings, key=timings.get)  # the faster of the two, as measured
    xs = tuple(torch.randn(1, 1, DIMS[m]) for m in MODALITIES)
    present = torch.tensor([[True, False, True]])
    with torch.inference_mode():
        for a, b in zip(eager_forward(model)(xs, present), forward(xs, present)):
            assert torch.allclose(a, b, atol=1e-6)


def test_a_candidate_that_differs_from_eager_is_not_chosen(monkeypatch):
    import umq.runtime.fast as fast

    model = load_runtime_model(ASSETS / "umq.pt")[0]
    real = fast._trace

    def skewed(eager, dims, device):  # a "traced" module that is fast but wrong
        traced = real(eager, dims, device)
        return lambda *a: tuple(t + 0.01 for t in traced(*a))

    monkeypatch.setattr(fast, "_trace", skewed)
    forward, mode, timings = choose_forward(model, DIMS, torch.device("cpu"), iters=5)
    assert mode == "eager" and str(timings["traced"]).startswith("differed from eager")
