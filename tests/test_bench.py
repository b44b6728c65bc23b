"""The benchmark runs end to end at tiny sizes and writes every section with sane values (no timing thresholds)."""
from __future__ import annotations

import argparse
import json
import math

import pytest

from app import bench


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    cache = tmp / "cache"
    # a tiny generated session stands in for the demo too, so the test does not replay 45 s of video
    small = bench.generated_session(4.0, (160, 120), 10.0, cache)
    cfg = bench.BenchConfig.quick_config(device="cpu", live_s=3.0, live_size=(160, 120), live_fps=10.0,
                                         long_s=4.0, long_size=(160, 120), long_fps=10.0, soak_s=8.0,
                                         batch_sizes=(1, 8), forward_iters=5, naive_windows=3, ab_windows=3,
                                         ab_replay_s=4.0, ab_live_s=3.0,
                                         demo_path=small,
                                         cache_dir=cache)
    r = bench.run_bench(cfg)
    out = tmp / "bench.json"
    out.write_text(json.dumps(bench._json_safe(r)))
    return json.loads(out.read_text()), r


def test_generated_session_is_cached_and_readable(tmp_path):
    from streams.replay import Replay

    a = bench.generated_session(2.0, (64, 48), 10.0, tmp_path)
    mtime = (a / "meta.json").stat().st_mtime
    b = bench.generated_session(2.0, (64, 48), 10.0, tmp_path)
    assert a == b and (b / "meta.json").stat().st_mtime == mtime  # built once
    windows = list(Replay(a, speed=None).windows())
    assert windows and all(w.video.health.present and w.audio.health.present for w in windows)
    assert sum(w.audio.health.missing for w in windows) == 0


@pytest.mark.slow  # the module's bench run measures seconds of live capture in real time
def test_every_section_present(report):
    js, _ = report
    for key in ("config", "machine", "device", "umq_throughput", "live", "replay", "naive", "memory", "audio",
                "gpu", "targets", "optimisations"):
        assert key in js, key
    assert set(js["replay"]) == {"demo", "generated"}
    for stage in ("capture_to_window", "face", "voice", "text", "umq_forward", "perception_stage", "model_stage",
                  "processing", "end_to_end"):
        p = js["live"]["stage_ms"][stage]
        assert p["n"] > 0, stage
        assert all(_finite_positive(p[q]) or p[q] == 0 for q in ("p50", "p95", "p99")), (stage, p)
        assert p["p50"] <= p["p95"] <= p["p99"]


@pytest.mark.slow  # the module's bench run measures seconds of live capture in real time
def test_values_are_sane(report):
    js, _ = report
    assert js["live"]["results"] > 0
    for key in ("demo", "generated"):
        x = js["replay"][key]
        assert x["finished"] and x["results"] > 0
        assert _finite_positive(x["rtf"]) and _finite_positive(x["session_s"]) and _finite_positive(x["wall_s"])
    assert [t["batch"] for t in js["umq_throughput"]] == [1, 8]
    assert all(_finite_positive(t["ms"]["p50"]) and _finite_positive(t["samples_per_s"]) for t in js["umq_throughput"])
    lf = js["umq_live_forward"]
    assert lf["mode"] in ("traced", "eager") or lf["mode"].startswith("eager (")
    assert _finite_positive(lf["live_ms"]["p50"]) and _finite_positive(lf["eager_ms"]["p50"])
    assert _finite_positive(js["memory"]["peak_rss_mb"])
    soak = js["memory"]["soak"]
    assert soak["passes"] >= 2 and _finite_positive(soak["session_s"])
    assert math.isfinite(soak["growth_mb_per_hour"])
    assert js["naive"]["windows"] == 3 and _finite_positive(js["naive"]["rtf"])
    assert _finite_positive(js["naive"]["rtf_ratio_engine_over_naive"])
    pf = js["optimisations"]["parallel_face"]
    assert pf["windows"] == 3
    vad = js["optimisations"]["vad_batched"]
    assert vad["windows"] == 3 and vad["available"] and vad["max_abs_difference"] < 1e-4
    assert _finite_positive(vad["loop_ms"]["p50"]) and _finite_positive(vad["batched_ms"]["p50"])
    dd = js["optimisations"]["deferred_decode"]
    assert _finite_positive(dd["rtf_decode_all"]) and _finite_positive(dd["rtf_deferred"]) and dd["session_s"] == 4.0
    co = js["optimisations"]["cut_on_arrival"]
    for arm in ("grace_only", "cut_on_arrival"):
        assert co[arm]["end_to_end"]["n"] > 0 and _finite_positive(co[arm]["capture_to_window"]["p50"])
    # the grace-only arm waits the whole grace for every window; cutting on arrival does not (a behaviour of
    # the windower, not a timing target: the grace is 250 ms, a cut on arrival waits for one packet)
    g, c = co["grace_only"]["capture_to_window"]["p50"], co["cut_on_arrival"]["capture_to_window"]["p50"]
    assert g >= 250.0 and c < g
    assert _finite_positive(pf["sequential_ms"]["p50"]) and _finite_positive(pf["parallel_ms"]["p50"])
    assert js["audio"]["dropped_samples"] >= 0
    assert js["gpu"]["status"] in ("measured", "not measured")
    assert all({"name", "value", "target", "met", "status"} <= set(t) for t in js["targets"])
    assert "not judged" in next(t["status"] for t in js["targets"] if t["name"].startswith("RSS growth"))


@pytest.mark.slow  # the module's bench run measures seconds of live capture in real time
def test_table_and_cli_options(report, tmp_path):
    _, r = report
    table = bench.format_table(r)
    assert "end to end" in table and "UMQ forward" in table and ("NOT met" in table or " met" in table)
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--quick", "--out", str(tmp_path / "x.json"), "--long-minutes", "0.5",
                              "--soak-minutes", "2", "--device", "cpu", "--sequential-face"])
    cfg = bench.config_from_args(args)
    assert cfg.quick and cfg.long_s == 30.0 and cfg.soak_s == 120.0 and cfg.device == "cpu" and not cfg.parallel_face
    assert args.func is bench.main
    default = bench.config_from_args(parser.parse_args(["bench"]))
    assert default.long_s == 600.0 and default.soak_s == 3600.0 and not default.quick and default.parallel_face
