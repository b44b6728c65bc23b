"""UMQ Live's Python API: analyse recordings into a pandas table, or iterate over results as they are produced.

A thin layer over the app (``umq_live`` -> ``app`` -> ``umq`` -> ``streams``): the same engine, models and table
as ``python -m app analyze`` and ``python -m app replay --headless``, so a row here is a row there.

>>> import umq_live
>>> df = umq_live.analyze("session_or_video.mp4")          # one row per window (docs/output-format.md)
>>> for r in umq_live.iter_results("synthetic", seconds=5):  # typed umq.result.Result, as they come
...     print(r.t1, r.label, r.state)
"""
from __future__ import annotations

import contextlib
import io
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from app.table import SCHEMA_VERSION, columns, read_table
from umq.result import Result

__all__ = ["SCHEMA_VERSION", "Result", "analyze", "columns", "iter_results", "load_analyzer", "read_table"]

_END = object()


def load_analyzer(device: str | None = None):
    """Load the models once (a few seconds); pass the result as ``analyzer=`` to reuse them across calls."""
    from app.batch.task import TaskOptions, make_analyzer

    return make_analyzer(TaskOptions(device=device))


def analyze(path: str | os.PathLike, *, window: float | None = None, hop: float | None = None,
            device: str | None = None, analyzer=None, progress: bool = False) -> pd.DataFrame:
    """Analyse a video file, a session folder, or a folder of them; returns the results table.

    Every window of every input is analysed (nothing dropped). Several inputs are concatenated; the ``source``
    column says which row came from which input. An input that cannot be read raises ``ValueError`` naming it
    (the command line records it in ``errors.csv`` and goes on instead).
    """
    from app.batch.inputs import discover
    from app.batch.task import TaskOptions, analyze_input, make_analyzer

    found = discover([path])
    if not found.inputs:
        raise ValueError(f"{path}: no video files or session folders found")
    opts = TaskOptions(window=window, hop=hop, device=device)
    own = analyzer is None
    analyzer = analyzer or make_analyzer(opts)
    frames = []
    try:
        for item in found.inputs:
            outcome = analyze_input(item, analyzer, opts)
            if outcome.error:
                raise ValueError(f"{item.path}: {outcome.error}")
            frames.append(read_table(io.StringIO(outcome.csv)))
    finally:
        if own:
            analyzer.close()
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def iter_results(source: str | os.PathLike = "synthetic", *, seconds: float | None = None,
                 speed: float | None = None, device: str | None = None, analyzer=None,
                 maxsize: int = 256) -> Iterator[Result]:
    """Yield a :class:`~umq.result.Result` per window as the engine produces it.

    Args:
        source: a video file or session folder (replayed), ``"synthetic"`` (generated camera, microphone and
            transcript) or ``"devices"`` (this machine's camera and microphone).
        seconds: stop live sources after this much session time (``None``: until the caller stops iterating).
        speed: replay pace (``None``: as fast as possible, every window; ``1.0``: real time).
        analyzer: an already loaded analyzer (:func:`load_analyzer`) to reuse.
        maxsize: results buffered for a slow consumer; a live source drops the oldest beyond that (live capture
            never waits for the caller), a replay waits for the caller instead.

    Closing the generator (``break``) stops capture and analysis.
    """
    from app.engine import Engine, EngineConfig

    own = analyzer is None
    analyzer = analyzer or load_analyzer(device)
    live = str(source) in ("synthetic", "devices") and not Path(source).exists()
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    closed = threading.Event()

    def put(r: Result) -> None:
        while not live and not closed.is_set():  # a replay waits for the caller (until the caller stops)
            try:
                q.put(r, timeout=0.1)
                return
            except queue.Full:
                continue
        while live:
            try:
                q.put_nowait(r)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    q.get_nowait()

    engine = Engine(analyzer.stages(), EngineConfig(policy=None if live else "block"))
    engine.subscribe(put)
    analyzer.reset()
    if live:
        from app.capture import CaptureOptions, build_capture
        from streams.clock import SessionClock

        clock = SessionClock()
        engine.start_live(build_capture(CaptureOptions(source=str(source)), clock), clock)
    else:
        from streams.replay import Replay

        replay = Replay(source, speed=speed)

        def finish() -> None:
            engine.wait_replay()
            q.put(_END)

        engine.start_replay(replay)
        threading.Thread(target=finish, name="iter-results-end", daemon=True).start()
    try:
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if live and seconds is not None and engine.now() >= seconds:
                    return
                continue
            if item is _END:
                return
            yield item
            if live and seconds is not None and item.t1 >= seconds:
                return
    finally:
        closed.set()
        engine.stop()
        if own:
            analyzer.close()
