"""Feature-level corruptions, the training sampler, the ladder and the raw-signal corruption registry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from umq import corrupt as C
from umq.types import Batch, ModalityInput

torch.set_num_threads(1)


def batch(b: int = 200, m: int = 3) -> Batch:
    names = tuple(f"m{i}" for i in range(m))
    mask = torch.ones(b, 4, dtype=torch.bool)
    mask[:, 3] = False
    inputs = {n: ModalityInput(torch.ones(b, 4, 5) * mask.unsqueeze(-1), mask) for n in names}
    return Batch(names, inputs, torch.ones(b, m, dtype=torch.bool), torch.zeros(b, dtype=torch.long))


def test_drop_keeps_at_least_one_and_matches_rate():
    g = torch.Generator().manual_seed(0)
    present = torch.ones(4000, 3, dtype=torch.bool)
    kept = C.drop_modalities(present, 0.3, g)
    assert kept.any(1).all()
    assert abs((~kept).float().mean().item() - 0.3) < 0.02  # rarely all three dropped at 0.3
    heavy = C.drop_modalities(present, 0.99, g)
    assert (heavy.sum(1) == 1).all()
    partial = present.clone()
    partial[:, 0] = False  # an already-absent modality is never "restored"
    assert not C.drop_modalities(partial, 0.9, g)[:, 0].any()


def test_missing_zeroes_and_clears_flags():
    b = batch()
    g = torch.Generator().manual_seed(1)
    new = C.drop_modalities(b.present, 0.5, g)
    out = C.set_missing(b, new)
    assert torch.equal(out.present, new)
    for i, m in enumerate(b.modalities):
        assert (out.inputs[m].x[~new[:, i]] == 0).all() and (out.inputs[m].x[new[:, i]].abs().sum() > 0)
    unflagged = C.set_missing(b, new, flagged=torch.zeros_like(new))
    assert unflagged.present.all() and (unflagged.inputs["m0"].x[~new[:, 0]] == 0).all()


def test_noise_only_on_valid_steps_and_selected_modalities():
    b = batch()
    g = torch.Generator().manual_seed(2)
    sigma = torch.zeros(200, 3)
    sigma[:, 1] = 2.0
    out = C.add_noise(b, sigma, g)
    assert torch.equal(out.inputs["m0"].x, b.inputs["m0"].x)
    d = out.inputs["m1"].x - b.inputs["m1"].x
    assert (d[:, 3] == 0).all() and abs(d[:, :3].std().item() - 2.0) < 0.1


def test_condition_is_deterministic_and_noises_at_least_one():
    b = batch()
    cond = C.Condition("noise", 1.0, noise_frac=0.5)
    a1 = C.apply_condition(b, cond, torch.Generator().manual_seed(3))
    a2 = C.apply_condition(b, cond, torch.Generator().manual_seed(3))
    assert all(torch.equal(a1.inputs[m].x, a2.inputs[m].x) for m in b.modalities)
    changed = torch.stack([(a1.inputs[m].x != b.inputs[m].x).any(2).any(1) for m in b.modalities], 1)
    assert changed.any(1).all() and not changed.all(1).all()
    labels = [c.label for c in C.protocol_conditions()]
    assert labels[0] == "complete" and "missing 0.7" in labels and "noise σ=4" in labels


def test_training_sampler_mixes_conditions():
    b = batch(2000)
    g = torch.Generator().manual_seed(4)
    out, corrupted = C.sample_training_corruption(b, C.TrainCorruption(), g)
    clean_rows = ~corrupted.any(1)
    assert 0.15 < clean_rows.float().mean().item() < 0.4  # p_complete = 0.25 (+ rows where nothing was drawn)
    assert (out.present.any(1)).all()
    assert (~out.present).any() and (out.present & corrupted).any()  # missing and noisy entries both occur


def test_ladder_stacks_rungs_with_bottom_pure_noise_or_zeros():
    b = batch(64, 1)
    lad = C.corruption_ladder(b.inputs["m0"], (0.5, 2.0), torch.Generator().manual_seed(5))
    assert lad.x.shape == (4 * 64, 4, 5) and lad.mask.shape == (4 * 64, 4)
    rungs = lad.x.view(4, 64, 4, 5)
    assert torch.equal(rungs[0], b.inputs["m0"].x)
    dev = [(rungs[i] - rungs[0])[:, :3].std().item() for i in (1, 2)]
    assert abs(dev[0] - 0.5) < 0.05 and abs(dev[1] - 2.0) < 0.2
    bottom_zero = (rungs[3] == 0).all(2).all(1)
    assert 0 < bottom_zero.sum() < 32 and (rungs[3][:, 3] == 0).all()  # p_zeros = 0.25
    scales = rungs[3][~bottom_zero][:, :3].std((1, 2))
    assert scales.min() > 0.2 and scales.max() < 3.5 and scales.std() > 0.2  # random scale: energy is no cue


def test_signal_corruption_registry_and_contract():
    assert "audio_white_noise" in C.available_corruptions("audio")
    with pytest.raises(ValueError, match="severity"):
        C.make_corruption("audio_white_noise", 1.5)
    with pytest.raises(KeyError, match="unknown signal corruption"):
        C.make_corruption("nope", 0.5)
    sig = np.sin(np.linspace(0, 100, 16000)).astype(np.float32)
    rng = np.random.default_rng(0)
    assert np.array_equal(C.make_corruption("audio_white_noise", 0.0).apply(sig, rng), sig)
    errs = [np.mean((C.make_corruption("audio_white_noise", s).apply(sig, rng) - sig) ** 2) for s in (0.2, 0.6, 1.0)]
    assert errs[0] < errs[1] < errs[2]

    class Dup(C.SignalCorruption):
        name = "audio_white_noise"
        modality = "audio"

        def apply(self, signal, rng):
            return signal

    with pytest.raises(ValueError, match="already registered"):
        C.register(Dup)
