"""Training material and calibration of the runtime fusion model, on small synthetic vector caches.

The caches here are random vectors whose "encoder probabilities" get worse with the version (clean best,
``null`` useless) — enough to check what the sampler, the loss terms and the calibration fit do with them,
without ../shared/data.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from umq.model import UMQ, compute_losses
from umq.runtime.calibration import QualityCalibration
from umq.runtime.features import DIMS, EMBED, MODALITIES
from umq.training.runtime.calibrate import fit_modality, ladder_spearman
from umq.training.runtime.sampling import TripleSampler, degrading_kinds, usefulness
from umq.training.runtime.train import fit_norm, model_config
from umq.training.runtime.triples import KINDS, ModalityCache, version_names


def _cache(m: str, n: int = 70, seed: int = 0, harmless: str | None = None) -> ModalityCache:
    """Versions get noisier along the list; ``harmless`` (a kind) keeps the clean probabilities."""
    rng = np.random.default_rng(seed)
    names = version_names(m)
    y = np.arange(n) % 7
    x = rng.normal(size=(n, len(names), DIMS[m])).astype(np.float32)
    for v, name in enumerate(names):
        noise = 0.0 if name == "clean" or (harmless and name.startswith(harmless)) else (
            1.0 if name == "null" else (0.3 if name.endswith("0.35") else 0.9))
        mix = np.eye(7)[y] * (1 - noise) + rng.dirichlet(np.ones(7), n) * noise
        x[:, v, EMBED:EMBED + 7] = mix
    return ModalityCache(m, x, y, names, "synthetic")


@pytest.fixture(scope="module")
def sampler():
    caches = {m: _cache(m, harmless="drop" if m == "video" else None) for m in MODALITIES}
    return TripleSampler(caches, fit_norm(caches), torch.device("cpu")), caches


def test_usefulness_is_one_for_clean_zero_for_off_and_falls_with_severity(sampler):
    _, caches = sampler
    u = usefulness(caches["audio"])
    names = caches["audio"].versions
    assert u[0] == 1.0 and u[names.index("null")] == 0.0
    assert u[names.index("white@0.35")] > u[names.index("white@0.8")]


def test_ladder_leaves_out_a_kind_that_does_not_hurt_the_encoder(sampler):
    _, caches = sampler
    face_kinds = [KINDS["video"][k] for k in degrading_kinds(caches["video"])]
    assert "drop" not in face_kinds and "blur" in face_kinds


def test_removed_twin_flags_exactly_the_corrupted_modalities(sampler):
    s, _ = sampler
    d = s.draw(256, torch.Generator().manual_seed(0))
    twin = d.extras.twin
    assert not (twin.present & ~d.batch.present).any()  # the twin only removes
    removed = d.batch.present & ~twin.present
    for i, m in enumerate(MODALITIES):
        assert torch.all(twin.inputs[m].x[~twin.present[:, i]] == 0)
        clean_kept = twin.present[:, i]
        assert torch.equal(twin.inputs[m].x[clean_kept], d.batch.inputs[m].x[clean_kept])
    assert torch.equal(d.extras.twin_valid, removed.any(1) & twin.present.any(1))
    t = d.extras.main_targets
    assert t.min() >= 0 and t.max() <= 1 and torch.all(t[~d.batch.present] == 0)


def test_quality_terms_enter_the_loss_and_train(sampler):
    s, _ = sampler
    torch.manual_seed(0)
    model = UMQ(model_config("umq"))
    g = torch.Generator().manual_seed(1)
    d = s.draw(64, g)
    total, parts = compute_losses(model, d.batch, d.clean, g, d.ladders, d.extras)
    assert {"q_target", "twin", "twin_task"} <= set(parts) and torch.isfinite(total)
    total.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_calibration_fit_maps_raw_scores_to_relative_accuracy():
    rng = np.random.default_rng(0)
    # 4 versions: clean (q ~ 0.9, right 80 %), mild (q ~ 0.6, 50 %), strong (q ~ 0.3, chance), off (q ~ 0.05)
    q = np.stack([rng.normal(mu, 0.05, 2000) for mu in (0.9, 0.6, 0.3, 0.05)], 1).clip(0, 1)
    correct = np.stack([rng.random(2000) < p for p in (0.8, 0.5, 1 / 7, 1 / 7)], 1)
    x, y = fit_modality(q, correct)
    cal = QualityCalibration({"audio": (x, y)})
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0) and len(x) <= 8
    assert cal("audio", 0.9) > 0.9 and cal("audio", 0.3) < 0.1 and cal("audio", 0.05) < 0.05
    assert abs(cal("audio", 0.6) - (0.5 - 1 / 7) / (0.8 - 1 / 7)) < 0.1


def _versions(seed: int, n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic scores/hits: clean (easier items score higher, as on real data), mild, strong, off."""
    rng = np.random.default_rng(seed)
    lows, highs = (0.5, 0.3, 0.1, 0.0), (1.0, 0.7, 0.45, 0.05)
    q = np.stack([rng.uniform(lo, hi, n) for lo, hi in zip(lows, highs)], 1)
    p = np.stack([0.35 + 0.6 * (q[:, 0] - 0.5) / 0.5, np.full(n, 0.45), np.full(n, 1 / 7), np.full(n, 1 / 7)], 1)
    return q, rng.random(q.shape) < p


def test_calibrated_gauge_matches_each_versions_relative_accuracy_on_new_items():
    """The reliability criterion of issue 17 on a fresh draw: per version, mean gauge within 0.1 of the
    measured relative accuracy. A per-item isotonic fit reads clean about 0.17 low here (easy clean items are
    clipped at 1, hard ones pull the mean down)."""
    from umq.training.runtime.sampling import relative

    cal = QualityCalibration({"audio": fit_modality(*_versions(0))})
    q, correct = _versions(1)
    acc = correct.mean(0)
    target = relative(acc, float(acc[0]))
    target[0] = 1.0
    gauge = np.vectorize(lambda v: cal("audio", float(v)))(q).mean(0)
    assert np.all(np.abs(gauge - target) <= 0.1), (gauge, target)
    assert np.all(np.diff(gauge) < 0)  # clean > mild > strong > off


def test_ladder_spearman_reads_a_falling_gauge_as_minus_one():
    rows = [{"version": "clean", "mean_gauge": 0.9}, {"version": "blur@0.2", "mean_gauge": 0.8},
            {"version": "blur@0.8", "mean_gauge": 0.2}, {"version": "drop@0.2", "mean_gauge": 0.9},
            {"version": "drop@0.8", "mean_gauge": 0.9}, {"version": "null", "mean_gauge": 0.0}]
    rho = ladder_spearman(rows)
    assert rho["blur"] == -1.0 and rho["drop"] > -0.9


def test_raw_threshold_inverts_the_calibration_so_the_gate_can_run_on_the_device():
    rng = np.random.default_rng(3)
    x = np.sort(rng.random(12))
    y = np.sort(rng.random(12))
    cal = QualityCalibration({"audio": (tuple(x), tuple(y))}, gate=0.3)
    for tau in (0.05, 0.3, float(y[4]), 0.99):
        thr = cal.raw_threshold("audio", tau)
        raw = rng.random(500)
        below = np.array([cal("audio", r) < tau for r in raw])
        assert np.array_equal(below, raw < thr), tau
    assert cal.raw_thresholds(("audio", "video"))[1] == 0.3  # uncalibrated modality: identity map
    assert QualityCalibration({"audio": (tuple(x), tuple(y))}).raw_thresholds(("audio",)) is None
    with pytest.raises(ValueError, match="gate"):
        QualityCalibration(gate=1.5)


def test_gate_leaves_a_modality_out_exactly_as_if_it_were_removed(sampler):
    from umq.training.runtime.evaluation import run, validation_triples

    s, caches = sampler
    torch.manual_seed(0)
    model = UMQ(model_config("umq")).eval()
    trip = validation_triples(caches, 3, 0)
    never = np.full(len(MODALITIES), -np.inf)
    always_video = np.array([np.inf, -np.inf, -np.inf])
    plain = run(model, s, trip, {"video": "blur@0.8"}, {})[0]
    removed = run(model, s, trip, {"video": "blur@0.8"}, {"video": False})[0]
    assert not np.allclose(plain, removed)
    assert np.allclose(run(model, s, trip, {"video": "blur@0.8"}, {}, never)[0], plain)
    assert np.allclose(run(model, s, trip, {"video": "blur@0.8"}, {}, always_video)[0], removed, atol=1e-6)
    # the quality reported is still the first pass's: the gauge shows what the input was like
    assert np.allclose(run(model, s, trip, {}, {}, always_video)[1], run(model, s, trip, {}, {})[1])
    # a per-item gate: items whose raw video quality is below the threshold get the removed answer, others not
    q_video = run(model, s, trip, {"video": "blur@0.8"}, {})[1][:, 0]
    cut = np.array([np.median(q_video), -np.inf, -np.inf])
    mixed = run(model, s, trip, {"video": "blur@0.8"}, {}, cut)[0]
    low = q_video < cut[0]
    assert low.any() and (~low).any()
    assert np.allclose(mixed[low], removed[low], atol=1e-6) and np.allclose(mixed[~low], plain[~low], atol=1e-6)


def test_gate_choice_scores_every_threshold_and_prefers_no_gate_on_a_tie(sampler):
    from umq.training.runtime.evaluation import validation_triples
    from umq.training.runtime.gate import GRID, choose

    s, caches = sampler
    torch.manual_seed(0)
    model = UMQ(model_config("umq")).eval()
    # a calibration that reads every raw score as 1: no threshold can leave anything out, so all tie
    cal = QualityCalibration({m: ((0.0, 1.0), (1.0, 1.0)) for m in MODALITIES})
    chosen, rows = choose(model, s, validation_triples(caches, 2, 0, part="fit"), cal)
    assert [r["gate"] for r in rows] == list(GRID) and chosen == 0.0
    assert len({r["mean_all_columns"] for r in rows}) == 1
    assert all(r["clean_items_left_out"] == {m: 0.0 for m in MODALITIES} for r in rows)
    # reading every score as 0 leaves every modality out at any gate > 0: the answer is the all-missing one
    dead = QualityCalibration({m: ((0.0, 1.0), (0.0, 0.0)) for m in MODALITIES})
    _, rows = choose(model, s, validation_triples(caches, 2, 0, part="fit"), dead)
    assert all(r["clean_items_left_out"] == {m: 1.0 for m in MODALITIES} for r in rows[1:])


def test_app_gate_simulation_takes_the_removed_runs_window_only_where_that_run_exists():
    from umq.training.runtime.gate import gate_app_rows

    def row(t0, q, probs, states=("ok", "ok", "ok")):
        return {"t0": t0, "t1": t0 + 2.0, "probs": probs,
                "modalities": {m: {"quality": qm, "state": st} for m, qm, st in zip(MODALITIES, q, states)}}

    noisy = [row(0.0, (0.9, 0.05, 0.8), {"happy": 1.0}), row(0.5, (0.9, 0.6, 0.8), {"happy": 1.0}),
             row(1.0, (0.05, 0.05, 0.8), {"happy": 1.0})]  # two modalities low: no run removes both
    muted = [row(t, (0.9, 0.0, 0.8), {"sad": 1.0}, ("ok", "missing", "ok")) for t in (0.0, 0.5, 1.0)]
    gated, counts = gate_app_rows({"voice_0db": noisy, "mic_muted": muted}, 0.1)
    assert [r["probs"] for r in gated["voice_0db"]] == [{"sad": 1.0}, {"happy": 1.0}, {"happy": 1.0}]
    assert counts["voice_0db"] == {"windows": 3, "replaced": 1, "not_simulated": 1}
    assert gated["mic_muted"] == muted  # a missing modality is never "below the gate"
    ungated, counts = gate_app_rows({"voice_0db": noisy, "mic_muted": muted}, 0.0)
    assert ungated["voice_0db"] == noisy and counts["voice_0db"]["replaced"] == 0


def _fer_npz(path, n_per_class=1, seed=0):
    rng = np.random.default_rng(seed)
    classes = np.array(["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=rng.integers(0, 255, (7 * n_per_class, 48, 48), dtype=np.uint8),
             labels=np.tile(np.arange(7), n_per_class), classes=classes)
    return path


def test_face_crops_folder_replaces_fer_images_and_names_the_missing_file(tmp_path, monkeypatch):
    """``--face-crops DIR``: the runtime face vectors come from the crops file there, not ``fer2013/`` (absent
    here), and a missing crops file is an error that says which file and the command that makes it."""
    from umq.training.runtime import triples
    from umq.training.runtime.train import FaceSource, build_part

    monkeypatch.setattr(triples, "CACHE_DIR", tmp_path / "cache")
    crops = tmp_path / "crops"
    _fer_npz(crops / "train.npz")
    root = tmp_path / "data"
    assert FaceSource(images=True).path(root, "train") == root / "fer2013" / "train.npz"
    assert FaceSource(crops_dir=crops).path(root, "train") == crops / "train.npz"
    cache = build_part(root, "video-train", "cpu", False, FaceSource(crops_dir=crops))
    assert cache.source == "train.npz" and cache.x.shape == (7, len(version_names("video")), DIMS["video"])
    assert sorted(cache.y.tolist()) == list(range(7))
    with pytest.raises(FileNotFoundError, match=r"public_test\.npz.*umq\.training\.face\.crops.*--seed 0"):
        build_part(root, "video-val", "cpu", False, FaceSource(crops_dir=crops))


def test_live_path_crops_are_made_once_with_the_recipe_seed_and_cached(tmp_path, monkeypatch):
    """By default the face vectors come from live-path crops made by the real detector + crop (no face is found in
    noise images, so each row keeps its original face), once per source file's bytes: a second call, a touched
    file or a copy elsewhere reads the cache, and changed bytes make new crops."""
    from umq.training.face import crops as crops_mod
    from umq.training.runtime import triples
    from umq.training.runtime.train import FACE_CROP_SEEDS, FaceSource

    monkeypatch.setattr(triples, "CACHE_DIR", tmp_path / "cache" / "runtime")
    calls = []
    real = crops_mod.write_crops
    monkeypatch.setattr(crops_mod, "write_crops", lambda src, out, seed, workers: calls.append(seed) or
                        real(src, out, seed, workers=1))
    root = tmp_path / "data"
    src = _fer_npz(root / "fer2013" / "train.npz")
    first = FaceSource().path(root, "train")
    assert first.parent == tmp_path / "cache" / "face_crops" and calls == [FACE_CROP_SEEDS["train"]]
    with np.load(first) as d, np.load(src) as s:
        assert d["images"].shape == s["images"].shape and list(d["labels"]) == list(s["labels"])
        assert d["found"].dtype == bool and list(d["source"]) == list(range(7))
    assert FaceSource().path(root, "train") == first and len(calls) == 1
    os.utime(src, (1e9, 1e9))  # a remounted or touched data folder: same bytes, same crops
    moved = tmp_path / "elsewhere"
    (moved / "fer2013").mkdir(parents=True)
    shutil.copy(src, moved / "fer2013" / "train.npz")
    assert FaceSource().path(root, "train") == first and FaceSource().path(moved, "train") == first
    assert len(calls) == 1
    _fer_npz(src, seed=1)
    assert FaceSource().path(root, "train") != first and len(calls) == 2


@pytest.mark.parametrize("trained_on_images", [False, True])
def test_calibrate_and_gate_refuse_the_other_face_source(tmp_path, monkeypatch, capsys, trained_on_images):
    """A runtime checkpoint records where its face vectors came from; ``calibrate`` and ``gate`` fitted on the other
    kind would be silently wrong for it, so both stop with exit 2 and say which flag to give (or drop)."""
    from umq.checkpoint import save_checkpoint
    from umq.training.runtime import calibrate, gate
    from umq.training.runtime.train import FaceSource, check_face_source

    trained = FaceSource(images=trained_on_images)
    ckpt = save_checkpoint(tmp_path / "umq.pt", kind="umq", model=UMQ(model_config("umq")), labels=["a"] * 7,
                           norm=None, data={"face_vectors_from": trained.kind}, metrics={})
    assert check_face_source(ckpt, trained) is None
    assert check_face_source(ckpt, FaceSource(images=trained_on_images, crops_dir=tmp_path)) is None
    reason = check_face_source(ckpt, FaceSource(images=not trained_on_images))
    assert reason and str(ckpt) in reason
    assert ("drop --face-images" if not trained_on_images else "give --face-images") in reason
    extra = [] if trained_on_images else ["--face-images"]
    for mod in (calibrate, gate):
        assert mod.main(["--data", str(tmp_path), "--checkpoint", str(ckpt), *extra]) == 2
        assert reason in capsys.readouterr().err


def test_checkpoint_without_a_face_source_counts_as_fer_images(tmp_path):
    """Checkpoints written before the live-path crops were all trained on FER2013's own images."""
    from umq.checkpoint import save_checkpoint
    from umq.training.runtime.train import FaceSource, check_face_source

    ckpt = save_checkpoint(tmp_path / "old.pt", kind="umq", model=UMQ(model_config("umq")), labels=["a"] * 7,
                           norm=None, data={}, metrics={})
    assert check_face_source(ckpt, FaceSource(images=True)) is None
    assert check_face_source(ckpt, FaceSource()) is not None
