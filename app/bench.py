"""``python -m app bench``: measured latency, throughput and memory of the runtime, with the targets beside them.

What is measured (``docs/performance.md`` explains each number):

* **live**: a synthetic capture (640x480 at 30 fps, 16 kHz audio, scripted transcript) on the session clock
  through the engine with latest-wins mailboxes, for ``live_s`` seconds: capture->window, each perception
  front-end (face, voice, text), the UMQ forward, the two stage threads and end to end (capture timestamp of the
  window's end -> result) as p50/p95/p99; windows dropped by latest-wins; audio continuity (dropped samples).
* **replay**: real-time factor (session seconds / wall seconds) at maximum speed (``block`` policy: every
  window analysed) on the bundled demo session and on a generated session (640x480 at 30 fps, 16 kHz audio,
  transcript; written once and cached under ``~/.cache/umq/bench``).
* **umq_throughput**: the UMQ forward alone on random standardised inputs, per batch size, under
  ``torch.inference_mode()``.
* **memory**: peak RSS of the process, and RSS growth over a long replay (the generated session replayed back
  to back until ``soak_minutes`` of session time have passed), as a slope in MB per hour of session time.
* **naive**: the reference pipeline: synchronous, one window at a time, every frame of the window analysed
  afresh (Haar detection on every frame, one face-net call per frame, no frame cache, no text cache), and its
  ratio to the engine.

Targets are printed beside the measurements with met / NOT met; nothing here asserts them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEMO_SESSION = ROOT / "assets" / "demo_session"
CACHE_DIR = Path(os.environ.get("UMQ_BENCH_CACHE", Path.home() / ".cache" / "umq" / "bench"))
GENERATOR_VERSION = 1  # bump when the generated session's content changes (invalidates the cache)

# targets on the 2-core CPU machine at default settings (issue 6)
TARGETS = {
    "end_to_end_p95_ms": 150.0,
    "umq_forward_b1_ms": 3.0,
    "replay_rtf": 8.0,
    "rss_growth_mb_per_hour": 50.0,
    "dropped_audio_samples": 0,
}


@dataclass
class BenchConfig:
    """Sizes of one benchmark run (``quick()`` for tests/CI, defaults for the full run)."""

    device: str | None = None
    live_s: float = 60.0
    live_size: tuple[int, int] = (640, 480)
    live_fps: float = 30.0
    long_s: float = 600.0
    long_size: tuple[int, int] = (640, 480)
    long_fps: float = 30.0
    soak_s: float = 3600.0
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    forward_iters: int = 200
    naive_windows: int | None = None  # None: the whole demo session
    ab_windows: int = 87  # demo windows per arm of the parallel-face A/B
    parallel_face: bool = True  # the engine's Analyzer(parallel=...) (default on, chosen by measurement)
    demo_path: Path = DEMO_SESSION
    cache_dir: Path = CACHE_DIR
    quick: bool = False

    @classmethod
    def quick_config(cls, **kw) -> "BenchConfig":
        base = dict(live_s=10.0, long_s=20.0, soak_s=180.0, forward_iters=50, naive_windows=20, ab_windows=30,
                    quick=True)
        base.update(kw)
        return cls(**base)


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
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
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

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2.0)


# -- generated session --------------------------------------------------------------------------------------
def generated_session(seconds: float, size: tuple[int, int] = (640, 480), fps: float = 30.0,
                      cache_dir: Path = CACHE_DIR) -> Path:
    """A session folder of ``seconds`` of synthetic camera (``size`` at ``fps``), speechlike 16 kHz audio and a
    scripted transcript, written directly (no pacing) through :class:`~streams.recorder.SessionRecorder` on a
    simulated clock, so it reads back exactly like a recorded one. Cached by its parameters."""
    from streams.buffer import WindowConfig
    from streams.clock import SimulatedClock
    from streams.packets import AUDIO_RATE, AudioChunk, Modality, SourceState, SourceStatus, TextSegment, VideoFrame
    from streams.recorder import SessionRecorder
    from streams.synthetic import DEFAULT_LINES, synthetic_audio, synthetic_frame

    w, h = size
    name = f"synthetic_{seconds:g}s_{w}x{h}_{fps:g}fps_v{GENERATOR_VERSION}"
    out = Path(cache_dir) / name
    if (out / "meta.json").is_file() and json.loads((out / "meta.json").read_text()).get("complete"):
        return out
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=name + ".", dir=cache_dir))
    shutil.rmtree(tmp)
    t_start = time.perf_counter()
    clock = SimulatedClock(None)
    sources = {m: {"present": True, "name": f"synthetic-{m}", "kind": "synthetic", "device": None, "reason": ""}
               for m in ("video", "audio", "text")}
    meta = {"command": "bench", "source": "synthetic", "sources": sources, "video_fps": fps,
            "window_config": WindowConfig(video_fps=fps).to_json(), "seconds_requested": seconds,
            "description": f"generated by app.bench: {w}x{h} at {fps:g} fps, speechlike 16 kHz audio, transcript"}
    rec = SessionRecorder(tmp, meta, clock=clock, sync_every_s=30.0).start()
    for m, mod in (("video", Modality.VIDEO), ("audio", Modality.AUDIO), ("text", Modality.TEXT)):
        rec(SourceStatus(SourceState.RUNNING, "", 0.0, mod, f"synthetic-{m}"))
    chunk = 512
    n_frames = int(round(seconds * fps))
    n_samples = int(round(seconds * AUDIO_RATE))
    n_chunks = -(-n_samples // chunk)  # the last one shorter, so the audio covers the whole session
    every = 1.5

    def frames():
        for k in range(n_frames):
            t = k / fps
            yield t, 0, ("frame", k, t)

    def chunks():
        for k in range(n_chunks):
            t = k * chunk / AUDIO_RATE
            n = min(chunk, n_samples - k * chunk)
            yield t + n / AUDIO_RATE, 1, ("audio", n, t)

    def lines():
        k = 0
        while k * every + every * 0.9 <= seconds:
            t0 = k * every
            yield t0 + every * 0.9, 2, ("text", k, t0)
            k += 1

    import heapq

    for arrival, _, item in heapq.merge(frames(), chunks(), lines(), key=lambda e: (e[0], e[1])):
        clock.advance_to(arrival)
        kind, k, t = item
        if kind == "frame":
            rec(VideoFrame(t, synthetic_frame(k, t, size), k))
        elif kind == "audio":
            rec(AudioChunk(t, synthetic_audio("speechlike", t, k)))  # k: samples in this chunk
        else:
            rec(TextSegment(t, t + every * 0.9, DEFAULT_LINES[k % len(DEFAULT_LINES)], "synthetic"))
        while rec.stats()["queue_pending"] > 128:  # let the JPEG writer keep up (the recorder drops when full)
            time.sleep(0.002)
    final = rec.close(end_t=seconds)
    if any(final.get("dropped", {}).values()) or final.get("error"):
        raise RuntimeError(f"generating {out} dropped packets or failed: {final.get('dropped')} {final.get('error')}")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log.info("generated %s in %.1f s", out, time.perf_counter() - t_start)
    return out


# -- the measurements ---------------------------------------------------------------------------------------
def _result_latencies(results) -> dict[str, dict]:
    keys = ("face_ms", "voice_ms", "text_ms", "umq_ms", "perception", "model", "end_to_end")
    return {k: pct([r.latency_ms.get(k) for r in results]) for k in keys}


def measure_live(analyzer, cfg: BenchConfig) -> dict:
    """Live synthetic capture at ``cfg.live_size``/``cfg.live_fps`` through the engine (latest-wins)."""
    from streams.buffer import WindowConfig
    from streams.clock import SessionClock
    from streams.packets import AUDIO_RATE, AudioChunk

    from .capture import CaptureOptions, build_capture
    from .engine import Engine, EngineConfig

    analyzer.reset()
    clock = SessionClock()
    capture = build_capture(CaptureOptions(source="synthetic", fps=cfg.live_fps, size=cfg.live_size,
                                           transcript="synthetic"), clock)
    engine = Engine(analyzer.stages(), EngineConfig(window=WindowConfig(video_fps=capture.video_fps),
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
        time.sleep(cfg.live_s)
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
        "seconds": cfg.live_s, "size": list(cfg.live_size), "fps": cfg.live_fps, "policy": "latest",
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


def replay_once(analyzer, path: Path, speed: float | None = None, on_tick: Callable[[Any], None] | None = None
                ) -> dict:
    """Replay ``path`` through the engine (``block`` at maximum speed); real-time factor and latencies."""
    from streams.replay import Replay

    from .engine import Engine, EngineConfig

    analyzer.reset()
    engine = Engine(analyzer.stages(), EngineConfig(policy="block" if speed is None else "latest"))
    results = []
    missing = []
    engine.subscribe(results.append)
    engine.on_window(lambda w: missing.append(w.audio.health.missing if w.audio.health.present else 0))
    replay = Replay(path, speed=speed)
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

    from umq.runtime.features import DIMS, MODALITIES
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


def _naive_face(analyzer):
    """The reference face path: every frame of the window, fresh detection each frame, one net call per frame,
    nothing cached between windows."""
    from umq.perception.face import FaceFrontEnd, FaceTracker

    class NaiveFace(FaceFrontEnd):
        def __call__(self, frames):
            self.reset()  # no cache, no tracking across windows
            for f in frames:
                self._analyse([f])  # one face-net call per frame (no batching)
            results = [self._cache[(f.index, f.t)] for f in frames]
            return self._features(results)

    return NaiveFace(net=analyzer.face.net, device=analyzer.device, frames_per_window=10**9,
                     cache_frames=10**9, tracker=FaceTracker(detect_every=0))


class _NoCache(dict):
    """A text cache that never remembers (the naive pipeline encodes the transcript of every window)."""

    def __setitem__(self, key, value) -> None:
        pass

    def popitem(self, last=True):  # noqa: ARG002
        raise KeyError

    def move_to_end(self, key, last=True) -> None:  # noqa: ARG002
        pass


def measure_naive(analyzer, path: Path, max_windows: int | None) -> dict:
    """Synchronous per-window processing of ``path`` with the naive face and no text cache."""
    import copy

    from streams.replay import Replay

    analyzer.reset()
    naive = copy.copy(analyzer)
    naive.face = _naive_face(analyzer)
    naive._text_cache = _NoCache()
    naive._face_pool, naive._face_job = None, None  # synchronous: face, then voice, then text
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

    import concurrent.futures

    windows = list(itertools.islice(Replay(path, speed=None).windows(), max_windows))
    own = analyzer._face_pool is None
    pool = analyzer._face_pool or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="perception-face")
    default = analyzer._face_pool
    times: dict[str, list[float]] = {"sequential": [], "parallel": []}
    try:
        for mode in ("sequential", "parallel") * 2:  # two passes per arm, interleaved, each from a fresh state
            analyzer._face_pool = pool if mode == "parallel" else None
            analyzer.reset()
            for w in windows:
                t = time.perf_counter()
                analyzer.perceive(w)
                times[mode].append((time.perf_counter() - t) * 1000.0)
    finally:
        analyzer._face_pool = default
        analyzer.reset()
        if own:
            pool.shutdown()
    seq, par = pct(times["sequential"]), pct(times["parallel"])
    return {"windows": len(windows), "engine_default": "parallel" if default is not None else "sequential",
            "sequential_ms": seq, "parallel_ms": par,
            "p50_speedup": seq["p50"] / par["p50"] if par["p50"] else None}


# -- the run ------------------------------------------------------------------------------------------------
def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda_available": torch.cuda.is_available(), "load_avg": list(os.getloadavg())}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] = lambda s: None) -> dict:
    """Every measurement of one run, as a JSON-ready dict."""
    import torch

    from umq.runtime.analyzer import Analyzer

    if cfg.device and cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but CUDA is not available here (GPU numbers: not measured)")
    t_all = time.perf_counter()
    report: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v)
                                         for k, v in dataclasses.asdict(cfg).items()}}
    progress("loading models")
    analyzer = Analyzer(device=cfg.device, parallel=cfg.parallel_face)
    report["machine"] = machine()  # after the analyzer: it sets the CPU thread count
    report["device"] = str(analyzer.device)
    report["warm_up_s"] = analyzer.warm_up()

    progress(f"UMQ forward throughput, batch sizes {list(cfg.batch_sizes)}")
    report["umq_throughput"] = measure_umq_throughput(analyzer, cfg.batch_sizes, cfg.forward_iters)

    progress(f"live synthetic capture {cfg.live_size[0]}x{cfg.live_size[1]} at {cfg.live_fps:g} fps, "
             f"{cfg.live_s:g} s (paced, latest-wins)")
    report["live"] = measure_live(analyzer, cfg)

    progress(f"replay of {cfg.demo_path.name} at maximum speed")
    demo = replay_once(analyzer, cfg.demo_path)
    progress(f"generating / reusing a {cfg.long_s:g} s session under {cfg.cache_dir}")
    t = time.perf_counter()
    long_path = generated_session(cfg.long_s, cfg.long_size, cfg.long_fps, cfg.cache_dir)
    gen_s = time.perf_counter() - t
    progress("replay of the generated session at maximum speed")
    long = replay_once(analyzer, long_path)
    long["prepare_s"] = gen_s
    report["replay"] = {"demo": demo, "generated": long}

    progress(f"naive reference pipeline on {cfg.demo_path.name}")
    naive = measure_naive(analyzer, cfg.demo_path, cfg.naive_windows)
    engine_window = demo["stage_ms"]["perception_stage"]["p50"] + demo["stage_ms"]["model_stage"]["p50"]
    naive["engine_rtf"] = demo["rtf"]
    naive["rtf_ratio_engine_over_naive"] = (demo["rtf"] / naive["rtf"]) if naive["rtf"] else None
    naive["engine_window_ms_p50"] = engine_window
    naive["window_ms_ratio_naive_over_engine"] = (naive["per_window_ms"]["p50"] / engine_window
                                                  if engine_window else None)
    naive["face_ms_ratio_naive_over_engine"] = (naive["face_ms"]["p50"] / demo["stage_ms"]["face"]["p50"]
                                                if demo["stage_ms"]["face"]["p50"] else None)
    report["naive"] = naive

    progress("perception with the face front-end beside voice/text vs one after the other (A/B)")
    report["optimisations"] = {"parallel_face": measure_parallel_face(analyzer, cfg.demo_path, cfg.ab_windows)}

    progress(f"soak: {cfg.soak_s / 60:g} min of session time (generated session back to back)")
    soak = measure_soak(analyzer, long_path, long["session_s"], cfg.soak_s)
    report["memory"] = {"peak_rss_mb": peak_rss_mb(), "soak": soak}

    live = report["live"]
    report["audio"] = {"dropped_samples": live["audio"]["dropped_samples"],
                       "live_windows_with_missing": live["audio"]["windows_with_missing"],
                       "replay_window_missing_samples": long["audio_window_missing_samples"]}
    b1 = next((r for r in report["umq_throughput"] if r["batch"] == 1), report["umq_throughput"][0])
    report["gpu"] = ({"status": "measured", "name": report["machine"].get("gpu", "")}
                     if analyzer.device.type == "cuda" else
                     {"status": "not measured", "reason": "no CUDA device on this machine"
                      if not torch.cuda.is_available() else "run with --device cuda"})
    dropped_audio = (report["audio"]["dropped_samples"] + report["audio"]["replay_window_missing_samples"]
                     + live["audio"]["window_missing_samples"])
    report["targets"] = [
        _target("end to end p95 (capture -> result, live)", live["stage_ms"]["end_to_end"]["p95"], "ms",
                TARGETS["end_to_end_p95_ms"], "<="),
        _target("  (window -> result p95, excl. 250 ms grace)", live["stage_ms"]["processing"]["p95"], "ms",
                TARGETS["end_to_end_p95_ms"], "<="),
        _target("UMQ forward, batch 1 (p50)", b1["ms"]["p50"], "ms", TARGETS["umq_forward_b1_ms"], "<="),
        _target("replay real-time factor, demo", demo["rtf"], "x", TARGETS["replay_rtf"], ">="),
        _target("replay real-time factor, generated", long["rtf"], "x", TARGETS["replay_rtf"], ">="),
        _target("RSS growth per hour of session", soak["growth_mb_per_hour"], "MB/h",
                TARGETS["rss_growth_mb_per_hour"], "<=",
                judged=soak["session_s"] >= 1800.0, why="soak < 30 min: extrapolation is noise"),
        _target("dropped audio samples", dropped_audio, "", TARGETS["dropped_audio_samples"], "<="),
    ]
    report["total_wall_s"] = time.perf_counter() - t_all
    return report


def _target(name: str, value, unit: str, target, op: str, judged: bool = True, why: str = "") -> dict:
    ok = (value is not None and math.isfinite(value)
          and (value <= target if op == "<=" else value >= target))
    status = ("met" if ok else "NOT met") if judged else f"not judged ({why})"
    return {"name": name, "value": value, "unit": unit, "target": f"{op} {target:g}", "met": bool(ok) and judged,
            "status": status}


# -- output -------------------------------------------------------------------------------------------------
def _f(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def format_table(r: dict) -> str:
    """The readable report (what ``docs/performance.md`` shows)."""
    lines = []
    m = r["machine"]
    lines.append(f"device {r['device']} | {m.get('cpu', '')} | {m['cpus']} CPUs | torch {m['torch']} "
                 f"({m['torch_threads']} threads) | load avg {' '.join(_f(x, 2) for x in m['load_avg'])}"
                 f"{' | quick run' if r['config']['quick'] else ''}")
    live = r["live"]
    lines.append("")
    lines.append(f"Latency, live synthetic capture {live['size'][0]}x{live['size'][1]} @ {live['fps']:g} fps, "
                 f"{live['seconds']:g} s, latest-wins ({live['results']} results, windows dropped "
                 f"{live['dropped']})")
    lines.append(f"  {'stage':<34}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'n':>6}")
    names = [("capture_to_window", "capture -> window (incl. grace)"), ("face", "face front-end"),
             ("voice", "voice front-end"), ("text", "text front-end"), ("umq_forward", "UMQ forward (+baseline)"),
             ("perception_stage", "perception stage"), ("model_stage", "model stage"),
             ("processing", "window -> result (stages)"), ("end_to_end", "end to end (capture -> result)")]
    for key, label in names:
        p = live["stage_ms"][key]
        lines.append(f"  {label:<34}{_f(p['p50']):>9}{_f(p['p95']):>9}{_f(p['p99']):>9}{p['n']:>6}")
    lines.append("")
    lines.append("Replay at maximum speed (block policy: every window analysed)")
    lines.append(f"  {'session':<34}{'session s':>10}{'wall s':>9}{'RTF':>8}{'windows':>9}")
    for key, label in (("demo", "demo (320x240 @ 10 fps)"), ("generated", "generated (see config)")):
        x = r["replay"][key]
        lines.append(f"  {label:<34}{_f(x['session_s']):>10}{_f(x['wall_s']):>9}{_f(x['rtf'], 2):>8}"
                     f"{x['results']:>9}")
    lines.append("")
    lines.append("UMQ forward (inference_mode)")
    lines.append(f"  {'batch':<8}{'p50 ms':>9}{'p95 ms':>9}{'samples/s':>12}")
    for t in r["umq_throughput"]:
        lines.append(f"  {t['batch']:<8}{_f(t['ms']['p50'], 3):>9}{_f(t['ms']['p95'], 3):>9}"
                     f"{_f(t['samples_per_s'], 0):>12}")
    mem = r["memory"]
    s = mem["soak"]
    lines.append("")
    lines.append(f"Memory: peak RSS {_f(mem['peak_rss_mb'])} MB; soak {_f(s['session_s'] / 60, 1)} min of session "
                 f"({s['passes']} passes, {_f(s['wall_s'])} s wall): settled RSS {_f(s['rss_after_first_pass_mb'])} -> "
                 f"{_f(s['rss_end_mb'])} MB, slope {_f(s['growth_mb_per_hour'])} MB/h (raw RSS "
                 f"{_f(s['rss_min_mb'])}..{_f(s['rss_max_mb'])} MB)")
    a = r["audio"]
    lines.append(f"Audio: dropped samples at capture {a['dropped_samples']}, live windows with missing audio "
                 f"{a['live_windows_with_missing']}, replay window missing samples "
                 f"{a['replay_window_missing_samples']}")
    n = r["naive"]
    lines.append("")
    lines.append(f"Naive reference (synchronous, every frame, no cache, no batching) on {n['windows']} demo windows:")
    lines.append(f"  per window p50 {_f(n['per_window_ms']['p50'])} ms (engine stages {_f(n['engine_window_ms_p50'])}"
                 f" ms: x{_f(n['window_ms_ratio_naive_over_engine'], 1)}), face p50 {_f(n['face_ms']['p50'])} ms "
                 f"(x{_f(n['face_ms_ratio_naive_over_engine'], 1)}); RTF {_f(n['rtf'], 2)} vs engine "
                 f"{_f(n['engine_rtf'], 2)} (engine x{_f(n['rtf_ratio_engine_over_naive'], 1)})")
    pf = r.get("optimisations", {}).get("parallel_face")
    if pf:
        lines.append(f"Face front-end beside voice/text (A/B, {pf['windows']} demo windows, 2 passes per arm): "
                     f"perception per window p50 {_f(pf['sequential_ms']['p50'])} -> "
                     f"{_f(pf['parallel_ms']['p50'])} ms, p95 {_f(pf['sequential_ms']['p95'])} -> "
                     f"{_f(pf['parallel_ms']['p95'])} ms "
                     f"(x{_f(pf['p50_speedup'], 2)} at p50)")
    lines.append(f"GPU: {r['gpu']['status']} ({r['gpu'].get('reason') or r['gpu'].get('name')})")
    lines.append("")
    lines.append("Targets (2-core CPU, default settings)")
    for t in r["targets"]:
        lines.append(f"  {t['name']:<44}{_f(t['value'], 2):>10} {t['unit']:<5} target {t['target']:<8} "
                     f"{t['status']}")
    lines.append(f"total {_f(r['total_wall_s'])} s")
    return "\n".join(lines)


def _json_safe(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, (np.floating, np.integer)):
        return _json_safe(o.item())
    return o


# -- command line -------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to ``subparsers`` (``python -m app bench``)."""
    b = subparsers.add_parser("bench", help="measure latency, replay speed, UMQ throughput and memory")
    b.add_argument("--out", type=Path, default=Path("bench.json"), help="JSON report (default bench.json)")
    b.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    b.add_argument("--quick", action="store_true",
                   help="small sizes for tests/CI: 10 s live, 20 s generated session, 3 min soak, fewer iterations")
    b.add_argument("--long-minutes", type=float, help="generated session length in minutes (default 10)")
    b.add_argument("--soak-minutes", type=float,
                   help="session time replayed for the RSS growth measurement (default 60; quick 3)")
    b.add_argument("--live-seconds", type=float, help="live synthetic capture length (default 60; quick 10)")
    b.add_argument("--sequential-face", action="store_true",
                   help="run the engine with the face front-end after voice/text instead of beside them (the A/B "
                        "section measures both either way)")
    b.add_argument("--cache-dir", type=Path, help=f"where generated sessions are kept (default {CACHE_DIR})")
    b.set_defaults(func=main)
    return b


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    kw: dict[str, Any] = {"device": getattr(args, "device", None)}
    if getattr(args, "long_minutes", None):
        kw["long_s"] = args.long_minutes * 60.0
    if getattr(args, "soak_minutes", None):
        kw["soak_s"] = args.soak_minutes * 60.0
    if getattr(args, "live_seconds", None):
        kw["live_s"] = args.live_seconds
    if getattr(args, "sequential_face", False):
        kw["parallel_face"] = False
    if getattr(args, "cache_dir", None):
        kw["cache_dir"] = args.cache_dir
    return BenchConfig.quick_config(**kw) if getattr(args, "quick", False) else BenchConfig(**kw)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        report = run_bench(cfg, progress=lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    out = Path(getattr(args, "out", None) or "bench.json")
    out.write_text(json.dumps(_json_safe(report), indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # python -m app.bench ... (the same as python -m app bench ...)
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m app.bench")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    ns = parser.parse_args(["bench", *sys.argv[1:]])
    sys.exit(main(ns))
