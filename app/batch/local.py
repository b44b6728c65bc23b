"""Running per-input tasks on this machine: in this process, or spread over worker processes.

Each worker process loads the models once (in its initializer) and analyses one input after another; inputs are
handed out one at a time, so a long session does not hold up the short ones queued behind it. Workers report
each analysed window through a queue for the progress bar, and return the rendered outputs to this process,
which alone writes the output folder.
"""
from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import queue as queue_mod
from collections.abc import Callable

from .inputs import BatchInput
from .task import Outcome, TaskOptions, analyze_input, make_analyzer

log = logging.getLogger(__name__)

_WORKER: dict = {}


class Progress:
    """Two tqdm bars (inputs, windows); ``disable`` turns both off."""

    def __init__(self, n_inputs: int, disable: bool | None = None) -> None:
        from tqdm import tqdm

        self.inputs = tqdm(total=n_inputs, desc="inputs", unit="input", position=0, disable=disable)
        self.windows = tqdm(total=0, desc="windows", unit="win", position=1, disable=disable)

    def add_total(self, n: int | None) -> None:
        if n:
            self.windows.total = (self.windows.total or 0) + n
            self.windows.refresh()

    def window(self, n: int = 1) -> None:
        self.windows.update(n)

    def input_done(self, name: str = "") -> None:
        self.inputs.set_postfix_str(name[-40:], refresh=False)
        self.inputs.update(1)

    def close(self) -> None:
        self.windows.close()
        self.inputs.close()


OnOutcome = Callable[[Outcome], None]


def run_in_process(items: list[BatchInput], options: TaskOptions, progress: Progress, on_outcome: OnOutcome,
                   analyzer=None) -> None:
    """One analyzer in this process, inputs one after another."""
    own = analyzer is None
    analyzer = analyzer or make_analyzer(options)
    try:
        for item in items:
            on_outcome(analyze_input(item, analyzer, options, on_window=progress.window, on_total=progress.add_total))
    finally:
        if own:
            analyzer.close()


def _init_worker(options: TaskOptions, events, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["events"] = events
    _WORKER["options"] = options
    _WORKER["analyzer"] = make_analyzer(options)


def _worker_task(item: BatchInput) -> Outcome:
    events = _WORKER["events"]
    return analyze_input(item, _WORKER["analyzer"], _WORKER["options"],
                         on_window=lambda n: events.put(("window", n)),
                         on_total=lambda n: events.put(("total", n)))


def run_in_processes(items: list[BatchInput], options: TaskOptions, workers: int, progress: Progress,
                     on_outcome: OnOutcome) -> None:
    """``workers`` processes (spawned: no forked torch state), each with its own models.

    A worker that dies (killed, out of memory) breaks the pool: the inputs still unfinished are recorded as
    failed with that reason rather than lost silently.
    """
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                                  initargs=(options, events, threads))
    try:
        pending = {pool.submit(_worker_task, item): item for item in items}
        while pending:
            done, _ = concurrent.futures.wait(pending, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
            _drain(events, progress)
            for fut in done:
                item = pending.pop(fut)
                try:
                    outcome = fut.result()
                except concurrent.futures.process.BrokenProcessPool as exc:
                    outcome = Outcome(item, error=f"worker process died ({exc}); rerun to retry this input")
                on_outcome(outcome)
        _drain(events, progress)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        events.close()


def _drain(events, progress: Progress) -> None:
    while True:
        try:
            kind, n = events.get_nowait()
        except (queue_mod.Empty, OSError, ValueError):
            return
        if kind == "window":
            progress.window(n)
        else:
            progress.add_total(n)
