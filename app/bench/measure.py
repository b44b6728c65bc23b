"""The measurements: live latency, replay speed, UMQ throughput, memory, the naive reference, the A/B."""
from __future__ import annotations

import contextlib
import logging
import math
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .config import BenchConfig

log = logging.getLogger(__name__)


# -- small helpers ------------------------------------------------------------------------------------------
def pct(values) -> dict[str, float]:
    """``{"n", "p50", "p95", "p99", "mean"}`` of ``values`` (NaN when empty)."""
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if a.size == 0:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": float("nan")}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(a.mean())}


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def settled_rss_mb() -> float:
    """RSS after a garbage collection and, on glibc, ``malloc_trim(0)``: memory the process still holds, not
    freed memory the allocator keeps cached (which swings by ~100 MB between two points of a replay)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set of this process so far (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class RssSampler:
    """Samples RSS every ``period_s`` in a thread with a caller-supplied session-time function."""

    def __init__(self, session_t: Callable[[], float], period_s: float = 0.5) -> None:
        self.session_t, self.period_s = session_t, period_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.samples.append((self.session_t(), rss_mb()))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2.0)


# -- the measurements ---------------------------------------------------------------------------------------
def _result_latencies(results) -> dict[str, dict]:
    keys = ("face_ms", "voice_ms", "text_ms", "umq_ms", "perception", "model", "end_to_end")
    return {k: pct([r.latency_ms.get(k) for r in results]) for k in keys}


def measure_live(analyzer, cfg: BenchConfig, seconds: float | None = None, cut_on_arrival: bool = True) -> dict:
    """Live synthetic capture at ``cfg.live_size``/``cfg.live_fps`` through the engine (latest-wins), for
    ``seconds`` (default ``cfg.live_s``); ``cut_on_arrival=False`` cuts windows only after the grace (the
    windowing before that optimisation)."""
    from streams.buffer import WindowConfig
    from streams.clock import SessionClock
    from streams.packets import AUDIO_RATE, AudioChunk

    from ..capture import CaptureOptions, build_capture
    from ..engine import Engine, EngineConfig

    analyzer.reset()
    clock = SessionClock()
    capture = build_capture(CaptureOptions(source="synthetic", fps=cfg.live_fps, size=cfg.live_size,
                                           transcript="synthetic"), clock)
    seconds = cfg.live_s if seconds is None else seconds
    engine = Engine(analyzer.stages(), EngineConfig(window=WindowConfig(video_fps=capture.video_fps,
                                                                        cut_on_arrival=cut_on_arrival),
                                                    policy="latest"))
    cut_ms: list[float] = []
    windows = []
    results = []
    audio = {"chunks": 0, "samples": 0, "gaps": 0, "dropped_samples": 0, "_next": None}
    lock = threading.Lock()

    def on_window(w) -> None:
        cut_ms.append((clock.now() - w.t1) * 1000.0)  # capture time of the window's end -> window handed over
        windows.append(w.audio.health)

    def on_packet(p) -> None:  # audio continuity at capture: every sample accounted for
        if isinstance(p, AudioChunk):
            with lock:
                n = len(p.samples)
                if audio["_next"] is not None:
                    missing = int(round((p.t - audio["_next"]) * AUDIO_RATE))
                    if missing > 0:
                        audio["gaps"] += 1
                        audio["dropped_samples"] += missing
                audio["_next"] = p.t + n / AUDIO_RATE
                audio["chunks"] += 1
                audio["samples"] += n

    engine.on_window(on_window)
    engine.subscribe(results.append)
    engine.start_live(capture, clock, extra_sinks=(on_packet,))
    with RssSampler(clock.now) as sampler:
        time.sleep(seconds)
        tel = engine.telemetry()
    engine.stop()
    audio.pop("_next")
    # windows wholly after the first audio sample: the ones whose audio must be complete
    full = [hw for hw in windows[int(math.ceil(2.0 / 0.5)) + 1:]]
    audio["windows_checked"] = len(full)
    audio["windows_with_missing"] = sum(1 for hw in full if hw.missing > 0)
    audio["window_missing_samples"] = int(sum(hw.missing for hw in full))
    lat = _result_latencies(results)
    processing = [r.latency_ms.get("perception", 0.0) + r.latency_ms.get("model", 0.0) for r in results]
    return {
        "seconds": seconds, "size": list(cfg.live_size), "fps": cfg.live_fps, "policy": "latest",
        "cut_on_arrival": cut_on_arrival,
        "windows": tel.windows, "results": tel.results, "dropped": tel.dropped, "errors": tel.errors,
        "video_fps_measured": tel.video_fps,
        "stage_ms": {
            "capture_to_window": pct(cut_ms),
            "face": lat["face_ms"], "voice": lat["voice_ms"], "text": lat["text_ms"], "umq_forward": lat["umq_ms"],
            "perception_stage": lat["perception"], "model_stage": lat["model"],
            "processing": pct(processing),
            "end_to_end": lat["end_to_end"],
        },
        "audio": audio,
        "rss_mb_max": max((s[1] for s in sampler.samples), default=rss_mb()),
    }


def replay_once(analyzer, path: Path, speed: float | None = None, on_tick: Callable[[Any], None] | None = None,
                decode_all: bool = False) -> dict:
    """Replay ``path`` through the engine (``block`` at maximum speed); real-time factor and latencies.

    ``decode_all`` decodes every frame as it is read, in the replay thread, as replay did before frames were
    decoded on first use (the "before" arm of that optimisation)."""
    from streams.packets import VideoFrame
    from streams.replay import Replay

    from ..engine import Engine, EngineConfig

    analyzer.reset()
    engine = Engine(analyzer.stages(), EngineConfig(policy="block" if speed is None else "latest"))
    results = []
    missing = []
    engine.subscribe(results.append)
    engine.on_window(lambda w: missing.append(w.audio.health.missing if w.audio.health.present else 0))
    def decode(packet) -> None:
        if isinstance(packet, VideoFrame):
            packet.image  # noqa: B018 - the access decodes

    replay = Replay(path, speed=speed, sink=decode if decode_all else None)
    t = time.perf_counter()
    engine.start_replay(replay)
    if on_tick is not None:
        while not replay.done.wait(0.5):
            on_tick(engine)
    ok = engine.wait_replay(timeout=24 * 3600)
    wall = time.perf_counter() - t
    tel = engine.telemetry()
    engine.stop()
    session_s = float(replay.stats.get("sim_s") or replay.end_t or 0.0)
    lat = _result_latencies(results)
    return {
        "path": str(path), "session_s": session_s, "wall_s": wall, "rtf": session_s / wall if wall > 0 else None,
        "finished": bool(ok), "windows": tel.windows, "results": tel.results, "dropped": tel.dropped,
        "errors": tel.errors, "audio_window_missing_samples": int(sum(missing)),
        "stage_ms": {"face": lat["face_ms"], "voice": lat["voice_ms"], "text": lat["text_ms"],
                     "umq_forward": lat["umq_ms"], "perception_stage": lat["perception"],
                     "model_stage": lat["model"]},
    }


def measure_soak(analyzer, path: Path, session_s: float, soak_s: float) -> dict:
    """Replay ``path`` back to back until ``soak_s`` of session time; RSS against session time."""
    passes = max(2, int(math.ceil(soak_s / max(session_s, 1e-6))))
    done_s = 0.0
    pass_ends: list[dict] = []
    current = {"engine": None}

    def session_t() -> float:
        e = current["engine"]
        return done_s + (e.now() if e is not None else 0.0)

    with RssSampler(session_t, period_s=0.5) as sampler:
        t = time.perf_counter()
        for i in range(passes):
            r = replay_once(analyzer, path, None, on_tick=lambda e: current.__setitem__("engine", e))
            current["engine"] = None
            done_s += r["session_s"]
            pass_ends.append({"pass": i, "session_s": done_s, "rss_mb": rss_mb(), "settled_rss_mb": settled_rss_mb(),
                              "rtf": r["rtf"]})
        wall = time.perf_counter() - t
    # growth after the first pass (first-pass allocations are warm-up: caches, allocator pools, lazy models),
    # fitted on the settled RSS at the end of each pass: the same point of the session each time, after gc and
    # malloc_trim, so neither the rise and fall inside a pass nor the allocator's free lists read as growth
    pts = [(p["session_s"], p["settled_rss_mb"]) for p in pass_ends]
    if len(pts) >= 3:
        slope = float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0])
    else:
        slope = (pts[-1][1] - pts[0][1]) / max(pts[-1][0] - pts[0][0], 1e-9)
    inside = [m for _, m in sampler.samples]
    return {
        "session_s": done_s, "passes": passes, "wall_s": wall,
        "rss_after_first_pass_mb": pass_ends[0]["settled_rss_mb"], "rss_end_mb": pass_ends[-1]["settled_rss_mb"],
        "growth_mb": pass_ends[-1]["settled_rss_mb"] - pass_ends[0]["settled_rss_mb"],
        "raw_rss_pass_ends_mb": [p["rss_mb"] for p in pass_ends],
        "growth_mb_per_hour": slope * 3600.0,
        "rss_max_mb": max(inside, default=float("nan")), "rss_min_mb": min(inside, default=float("nan")),
        "pass_ends": pass_ends,
    }


def measure_umq_throughput(analyzer, batch_sizes, iters: int) -> list[dict]:
    """UMQ forward alone, random standardised inputs, ``torch.inference_mode()``, per batch size."""
    import torch

    from umq.runtime import DIMS, MODALITIES
    from umq.types import ModalityInput

    dev = analyzer.device
    model = analyzer.model
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    out = []
    g = torch.Generator().manual_seed(0)
    for b in batch_sizes:
        inputs = {m: ModalityInput(torch.randn(b, 1, DIMS[m], generator=g).to(dev),
                                   torch.ones(b, 1, dtype=torch.bool, device=dev)) for m in MODALITIES}
        present = torch.ones(b, len(MODALITIES), dtype=torch.bool, device=dev)
        times = []
        with torch.inference_mode():
            for _ in range(max(3, iters // 10)):
                model(inputs, present)
            sync()
            n = max(5, iters if b <= 8 else iters // 4)
            for _ in range(n):
                t = time.perf_counter()
                model(inputs, present)
                sync()
                times.append((time.perf_counter() - t) * 1000.0)
        p = pct(times)
        out.append({"batch": b, "iters": n, "ms": p, "samples_per_s": b / (p["p50"] / 1000.0)})
    return out


def measure_live_forward(analyzer, iters: int) -> dict:
    """The batch-1 forward the live path runs (UMQ only): eager mode vs the form the analyzer chose on load
    (traced, or a CUDA graph on a GPU), with the load-time timings that decided it."""
    import torch

    from umq.runtime import DIMS, MODALITIES, eager_forward

    dev = analyzer.device
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(1)
    xs = tuple(torch.randn(1, 1, DIMS[m], generator=g).to(dev) for m in MODALITIES)
    present = torch.ones(1, len(MODALITIES), dtype=torch.bool, device=dev)
    arms = {"eager": eager_forward(analyzer.model), "live": analyzer.forward}
    times: dict[str, list[float]] = {k: [] for k in arms}
    with torch.inference_mode():
        for _ in range(max(5, iters // 10)):
            for f in arms.values():
                f(xs, present)
        for _ in range(max(20, iters)):  # interleaved, so background load hits both arms alike
            for k, f in arms.items():
                t = time.perf_counter()
                f(xs, present)
                sync()
                times[k].append((time.perf_counter() - t) * 1000.0)
    return {"mode": analyzer.forward_mode, "eager_ms": pct(times["eager"]), "live_ms": pct(times["live"]),
            "chosen_on_load": analyzer.forward_timings}


def _naive_face(analyzer):
    """The reference face path: every frame of the window, fresh detection each frame, one net call per frame,
    nothing cached between windows."""
    from umq.perception import FaceFrontEnd, FaceTracker

    return FaceFrontEnd(net=analyzer.face.net, device=analyzer.device, frames_per_window=10**9,
                        cache_frames=10**9, tracker=FaceTracker(detect_every=0), batch=False, reuse=False)


def _no_text_cache(analyzer):
    """A transcript context that forgets its encodings every window (the naive pipeline encodes the transcript of
    every window afresh)."""
    from umq.perception import TranscriptContext

    class Forgetful(TranscriptContext):
        def window_outputs(self, segments, t0, t1):
            self.clear()
            return super().window_outputs(segments, t0, t1)

    return Forgetful(analyzer.text_head, analyzer.text)


def measure_naive(analyzer, path: Path, max_windows: int | None) -> dict:
    """Synchronous per-window processing of ``path`` with the naive face and no text cache."""
    from streams.replay import Replay

    analyzer.reset()
    # the same models, synchronously (face, then voice, then text), with the naive face and text paths
    naive = analyzer.variant(face=_naive_face(analyzer), transcript=_no_text_cache(analyzer), parallel=False)
    per_window, face_ms, n, t1 = [], [], 0, 0.0
    t = time.perf_counter()
    for w in Replay(path, speed=None).windows():
        if max_windows is not None and n >= max_windows:
            break
        t0 = time.perf_counter()
        p = naive.perceive(w)
        naive.predict(p)
        per_window.append((time.perf_counter() - t0) * 1000.0)
        face_ms.append(p.latency_ms.get("face"))
        n += 1
        t1 = w.t1
    wall = time.perf_counter() - t
    analyzer.reset()
    return {"path": str(path), "windows": n, "session_s": t1, "wall_s": wall,
            "rtf": t1 / wall if wall > 0 else None, "per_window_ms": pct(per_window), "face_ms": pct(face_ms)}


def measure_parallel_face(analyzer, path: Path, max_windows: int) -> dict:
    """Perception latency per window with ``Analyzer(parallel=True)`` (face front-end in its helper thread beside
    voice and text) against the same analyzer with the helper switched off, alternating blocks of windows so the
    machine's background load hits both alike. Outputs are identical (``tests/test_perception_parallel.py``)."""
    import itertools

    from streams.replay import Replay

    windows = list(itertools.islice(Replay(path, speed=None).windows(), max_windows))
    default = analyzer.parallel
    times: dict[str, list[float]] = {"sequential": [], "parallel": []}
    try:
        for mode in ("sequential", "parallel") * 2:  # two passes per arm, interleaved, each from a fresh state
            analyzer.parallel = mode == "parallel"
            analyzer.reset()
            for w in windows:
                t = time.perf_counter()
                analyzer.perceive(w)
                times[mode].append((time.perf_counter() - t) * 1000.0)
    finally:
        analyzer.parallel = default
        analyzer.reset()
    seq, par = pct(times["sequential"]), pct(times["parallel"])
    return {"windows": len(windows), "engine_default": "parallel" if default else "sequential",
            "sequential_ms": seq, "parallel_ms": par,
            "p50_speedup": seq["p50"] / par["p50"] if par["p50"] else None}


def measure_vad(path: Path, max_windows: int) -> dict:
    """silero-vad per window: all chunks at once (the default) against silero's own per-chunk loop, on the audio
    of ``path``'s windows, alternating windows so background load hits both arms alike."""
    import itertools

    from streams.replay import Replay
    from umq.perception import SileroVAD

    available = SileroVAD.batched_available()
    clips = [w.audio.samples for w in itertools.islice(Replay(path, speed=None).windows(), max_windows)]
    times: dict[str, list[float]] = {"loop": [], "batched": []}
    worst = 0.0
    for x in clips:
        out = {}
        for arm in ("loop", "batched"):
            t = time.perf_counter()
            out[arm] = SileroVAD.probs(x, batched=arm == "batched")
            times[arm].append((time.perf_counter() - t) * 1000.0)
        worst = max(worst, float(np.abs(out["loop"] - out["batched"]).max()))
    loop, fast = pct(times["loop"]), pct(times["batched"])
    return {"windows": len(clips), "available": available, "loop_ms": loop, "batched_ms": fast,
            "p50_speedup": loop["p50"] / fast["p50"] if fast["p50"] else None, "max_abs_difference": worst}
