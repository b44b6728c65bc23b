"""One benchmark run (every measurement in one process) and its table."""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .config import TARGETS, BenchConfig
from .measure import (
    measure_live,
    measure_live_forward,
    measure_naive,
    measure_parallel_face,
    measure_soak,
    measure_umq_throughput,
    measure_vad,
    peak_rss_mb,
    replay_once,
)
from .session import generated_session

log = logging.getLogger(__name__)


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

    from umq.device import pick_device
    from umq.runtime import Analyzer

    pick_device(cfg.device)  # DeviceError before anything runs: a GPU run must not silently become a CPU run
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
    report["umq_live_forward"] = measure_live_forward(analyzer, cfg.forward_iters)

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
    opt = report["optimisations"] = {"parallel_face": measure_parallel_face(analyzer, cfg.demo_path,
                                                                            cfg.ab_windows)}
    progress("silero-vad: all chunks at once vs its own per-chunk loop (A/B)")
    opt["vad_batched"] = measure_vad(cfg.demo_path, cfg.ab_windows)
    progress(f"replay of a {cfg.ab_replay_s:g} s generated session: frames decoded on first use vs all (A/B)")
    ab_path = generated_session(cfg.ab_replay_s, cfg.long_size, cfg.long_fps, cfg.cache_dir)
    arms = {"decode_all": [], "deferred": []}
    for arm in ("decode_all", "deferred") * 2:
        arms[arm].append(replay_once(analyzer, ab_path, decode_all=arm == "decode_all")["rtf"])
    opt["deferred_decode"] = {"session_s": cfg.ab_replay_s, "size": list(cfg.long_size), "fps": cfg.long_fps,
                              "rtf_decode_all": max(arms["decode_all"]), "rtf_deferred": max(arms["deferred"]),
                              "runs": arms}
    progress(f"live capture with windows cut only after the grace, {cfg.ab_live_s:g} s (A/B with the live run)")
    before = measure_live(analyzer, cfg, seconds=cfg.ab_live_s, cut_on_arrival=False)
    opt["cut_on_arrival"] = {
        "grace_only": {k: before["stage_ms"][k] for k in ("capture_to_window", "processing", "end_to_end")},
        "cut_on_arrival": {k: report["live"]["stage_ms"][k] for k in ("capture_to_window", "processing",
                                                                      "end_to_end")},
        "grace_only_seconds": cfg.ab_live_s}

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
        _target("  (window -> result p95, the stages alone)", live["stage_ms"]["processing"]["p95"], "ms",
                TARGETS["end_to_end_p95_ms"], "<="),
        _target(f"UMQ forward, batch 1, live path ({report['umq_live_forward']['mode']}, p50)",
                report["umq_live_forward"]["live_ms"]["p50"], "ms", TARGETS["umq_forward_b1_ms"], "<="),
        _target("UMQ forward, batch 1, eager (p50)", b1["ms"]["p50"], "ms", TARGETS["umq_forward_b1_ms"], "<="),
        _target("replay real-time factor, demo", demo["rtf"], "x", TARGETS["replay_rtf"], ">="),
        _target("replay real-time factor, generated", long["rtf"], "x", TARGETS["replay_rtf"], ">="),
        _target("RSS growth per hour of session", soak["growth_mb_per_hour"], "MB/h",
                TARGETS["rss_growth_mb_per_hour"], "<=",
                judged=soak["session_s"] >= 1800.0, why="soak < 30 min: extrapolation is noise"),
        _target("dropped audio samples", dropped_audio, "", TARGETS["dropped_audio_samples"], "<="),
    ]
    if cfg.batch:
        from .batch import measure_batch

        report["batch"] = measure_batch(cfg, progress)
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
    names = [("capture_to_window", "capture -> window cut"), ("face", "face front-end"),
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
    lf = r["umq_live_forward"]
    lines.append(f"UMQ forward at batch 1 on the live path: {lf['mode']} p50 {_f(lf['live_ms']['p50'], 3)} ms "
                 f"(p95 {_f(lf['live_ms']['p95'], 3)}) vs eager {_f(lf['eager_ms']['p50'], 3)} ms "
                 f"(p95 {_f(lf['eager_ms']['p95'], 3)})")
    chosen = lf.get("chosen_on_load") or {}
    if chosen:
        lines.append("  chosen on load among: " + ", ".join(
            f"{k} {_f(v, 3)} ms" if isinstance(v, (int, float)) else f"{k} ({v})" for k, v in chosen.items()))
    lines.append("UMQ forward, eager, by batch size (inference_mode)")
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
    opt = r.get("optimisations", {})
    vad = opt.get("vad_batched")
    if vad:
        lines.append(f"silero-vad per window (A/B, {vad['windows']} demo windows): per-chunk loop p50 "
                     f"{_f(vad['loop_ms']['p50'])} ms -> all chunks at once {_f(vad['batched_ms']['p50'])} ms "
                     f"(x{_f(vad['p50_speedup'], 2)}; max difference {vad['max_abs_difference']:.1e})")
    dd = opt.get("deferred_decode")
    if dd:
        lines.append(f"Replay of a {dd['session_s']:g} s {dd['size'][0]}x{dd['size'][1]} @ {dd['fps']:g} fps "
                     f"session (A/B, best of 2): every frame decoded {_f(dd['rtf_decode_all'], 2)}x -> decoded on "
                     f"first use {_f(dd['rtf_deferred'], 2)}x")
    co = opt.get("cut_on_arrival")
    if co:
        g, c = co["grace_only"], co["cut_on_arrival"]
        lines.append(f"Window cut (A/B: {co['grace_only_seconds']:g} s live with grace-only cuts vs the live run "
                     f"above): capture -> window p50 {_f(g['capture_to_window']['p50'])} -> "
                     f"{_f(c['capture_to_window']['p50'])} ms, end to end p95 {_f(g['end_to_end']['p95'])} -> "
                     f"{_f(c['end_to_end']['p95'])} ms")
    lines.append(f"GPU: {r['gpu']['status']} ({r['gpu'].get('reason') or r['gpu'].get('name')})")
    if r.get("batch"):
        from .batch import format_batch

        lines += format_batch(r["batch"])
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
