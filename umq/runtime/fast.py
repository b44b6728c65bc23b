"""The batch-1 UMQ forward of the live path: eager, traced (TorchScript) or replayed as a CUDA graph, whichever
is fastest on this machine among those that give eager mode's outputs.

At batch 1 the UMQ forward is ~100 tiny operators; in eager mode Python dispatch dominates (3.4 ms on the
2-core CPU), traced and frozen it takes 1.3 ms with the same numbers. On a GPU the same ~100 operators are ~100
kernel launches; a CUDA graph launches them as one. Tracing records one path through the code, so every
candidate is checked against eager mode on every combination of present modalities (and on zeroed inputs)
before it is used, and dropped when anything differs or building it fails. :func:`choose_forward` then times
the survivors and keeps the fastest. ``python -m app bench`` reports the choice and the timings.
"""
from __future__ import annotations

import itertools
import logging
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from umq.types import ModalityInput

log = logging.getLogger(__name__)

Forward = Callable[[tuple[Tensor, ...], Tensor], tuple[Tensor, Tensor, Tensor | None]]
TOLERANCE = 1e-5


class _Batch1(nn.Module):
    """``(x_1 [1,1,D1], ..., x_M [1,1,DM], present [1,M]) -> (probs, q, routing)``: tensors only, for tracing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(model.names)

    def forward(self, *args: Tensor):
        *xs, present = args
        valid = torch.ones(1, 1, dtype=torch.bool, device=present.device)
        out = self.model({m: ModalityInput(x, valid) for m, x in zip(self.names, xs)}, present)
        routing = out.routing if out.routing is not None else out.q.new_zeros(1, 0)
        return out.probs, out.q, routing


def eager_forward(model: nn.Module) -> Forward:
    wrapped = _Batch1(model).eval()

    def run(xs: tuple[Tensor, ...], present: Tensor):
        return wrapped(*xs, present)

    return run


def _trace(eager: nn.Module, dims: dict[str, int], device: torch.device) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(1, 1, dims[m], generator=gen).to(device) for m in eager.names)
    present = torch.ones(1, len(eager.names), dtype=torch.bool, device=device)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python values: checked against eager mode instead
        return torch.jit.freeze(torch.jit.trace(eager, example + (present,), check_trace=False).eval())


def _mismatch(eager: nn.Module, candidate: Forward, dims: dict[str, int], device: torch.device) -> str | None:
    """The first presence pattern on which ``candidate`` differs from eager mode, or None."""
    gen = torch.Generator().manual_seed(1)
    M = len(eager.names)
    with torch.inference_mode():
        for k, mask in enumerate(itertools.product((True, False), repeat=M)):
            if not any(mask):
                continue
            present = torch.tensor([mask], device=device)
            xs = tuple((torch.randn(1, 1, dims[m], generator=gen) * (k % 3)).to(device) for m in eager.names)
            xs = tuple(x * float(p) for x, p in zip(xs, mask))  # missing modalities arrive as zeros
            for a, b in zip(eager(*xs, present), candidate(xs, present)):
                if a.shape != b.shape or (a - b).abs().max().item() > TOLERANCE:
                    return f"present={mask}"
    return None


class _CudaGraphForward:
    """Replays one captured CUDA graph of ``fn`` on static input buffers (one kernel launch per call).

    The inputs are copied into the captured buffers and the outputs cloned out, because the next replay
    overwrites them. Only called from one thread (the engine's model stage)."""

    def __init__(self, fn: Forward, dims: dict[str, int], names: tuple[str, ...], device: torch.device) -> None:
        self.xs = tuple(torch.zeros(1, 1, dims[m], device=device) for m in names)
        self.present = torch.ones(1, len(names), dtype=torch.bool, device=device)
        with torch.inference_mode():
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):  # warm up outside the capture (allocations, lazy init)
                for _ in range(3):
                    fn(self.xs, self.present)
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = fn(self.xs, self.present)

    def __call__(self, xs: tuple[Tensor, ...], present: Tensor):
        for buf, x in zip(self.xs, xs):
            buf.copy_(x)
        self.present.copy_(present)
        self.graph.replay()
        return tuple(o.clone() for o in self.out)


def _time_ms(fn: Forward, dims: dict[str, int], names: tuple[str, ...], device: torch.device,
             iters: int) -> float:
    """Median milliseconds per call at batch 1 (synchronised per call on CUDA, so it is the device's time)."""
    xs = tuple(torch.randn(1, 1, dims[m]).to(device) for m in names)
    present = torch.ones(1, len(names), dtype=torch.bool, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(iters + 5):
            t = time.perf_counter()
            fn(xs, present)
            sync()
            if i >= 5:  # the first calls pay for lazy initialisation
                times.append((time.perf_counter() - t) * 1000)
    return float(sorted(times)[len(times) // 2])


def _verified_trace(eager: nn.Module, dims: dict[str, int], device: torch.device, name: str
                    ) -> tuple[Forward | None, str]:
    """``(traced forward, "")`` when tracing works and matches eager mode on every presence pattern, else
    ``(None, why not)``."""
    try:
        traced = _trace(eager, dims, device)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: not this candidate
        log.info("%s forward not traced (%s: %s)", name, type(exc).__name__, exc)
        return None, f"trace failed: {type(exc).__name__}"

    def run(xs: tuple[Tensor, ...], present: Tensor):
        return traced(*xs, present)

    bad = _mismatch(eager, run, dims, device)
    if bad is not None:
        log.warning("traced %s forward differs from eager mode for %s; not used", name, bad)
        return None, f"differed from eager ({bad})"
    return run, ""


def choose_forward(model: nn.Module, dims: dict[str, int], device: torch.device, iters: int = 30,
                   name: str = "UMQ") -> tuple[Forward, str, dict[str, float | str]]:
    """``(forward, mode, timings)``: the fastest candidate that matches eager mode on every presence pattern.

    Candidates: ``eager``; ``traced`` (TorchScript, frozen); on CUDA also ``cuda-graph`` (the traced forward,
    or eager mode where tracing failed, captured once and replayed). ``timings`` maps each candidate to its
    median milliseconds per call, or to why it was dropped. ``name`` labels the log lines.
    """
    device = torch.device(device)
    eager = _Batch1(model).eval()
    candidates: dict[str, Forward] = {"eager": eager_forward(model)}
    timings: dict[str, float | str] = {}
    traced, why = _verified_trace(eager, dims, device, name)
    if traced is not None:
        candidates["traced"] = traced
    else:
        timings["traced"] = why
    if device.type == "cuda":
        try:
            graph = _CudaGraphForward(candidates.get("traced", candidates["eager"]), dims, eager.names, device)
        except Exception as exc:  # noqa: BLE001
            timings["cuda-graph"] = f"capture failed: {type(exc).__name__}: {exc}"
        else:
            bad = _mismatch(eager, graph, dims, device)
            if bad is None:
                candidates["cuda-graph"] = graph
            else:
                log.warning("cuda-graph %s forward differs from eager mode for %s; not used", name, bad)
                timings["cuda-graph"] = f"differed from eager ({bad})"
    for form, fn in candidates.items():
        timings[form] = _time_ms(fn, dims, eager.names, device, iters)
    best = min(candidates, key=lambda n: timings[n])
    log.info("%s forward: %s (%s)", name, best, ", ".join(f"{n} {timings[n]:.3f} ms" for n in candidates))
    return candidates[best], best, timings


def traced_forward(model: nn.Module, dims: dict[str, int], device: torch.device) -> tuple[Forward, str]:
    """``(forward, "traced" | "eager (<why>)")``: the traced forward when it matches eager mode, else eager;
    no timing (:func:`choose_forward`'s traced candidate on its own)."""
    fn, why = _verified_trace(_Batch1(model).eval(), dims, torch.device(device), "UMQ")
    return (fn, "traced") if fn is not None else (eager_forward(model), f"eager ({why})")
