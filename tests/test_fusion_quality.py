"""Training material and calibration of the runtime fusion model, on small synthetic vector caches.

The caches here are random vectors whose "encoder probabilities" get worse with the version (clean best,
``null`` useless) — enough to check what the sampler, the loss terms and the calibration fit do with them,
without ../shared/data.
"""
from __future__ import annotations

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
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0) and len(x) <= 48
    assert cal("audio", 0.9) > 0.9 and cal("audio", 0.3) < 0.1 and cal("audio", 0.05) < 0.05
    assert abs(cal("audio", 0.6) - (0.5 - 1 / 7) / (0.8 - 1 / 7)) < 0.1


def test_ladder_spearman_reads_a_falling_gauge_as_minus_one():
    rows = [{"version": "clean", "mean_gauge": 0.9}, {"version": "blur@0.2", "mean_gauge": 0.8},
            {"version": "blur@0.8", "mean_gauge": 0.2}, {"version": "drop@0.2", "mean_gauge": 0.9},
            {"version": "drop@0.8", "mean_gauge": 0.9}, {"version": "null", "mean_gauge": 0.0}]
    rho = ladder_spearman(rows)
    assert rho["blur"] == -1.0 and rho["drop"] > -0.9
