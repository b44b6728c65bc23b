"""Stage 1: rank losses and the estimator learning to order a corruption ladder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from umq.corrupt import TrainCorruption, corruption_ladder, sample_training_corruption
from umq.model import UMQ, ModalitySpec, UMQConfig, compute_losses
from umq.model.quality import anchor_losses, cross_rank_loss, input_energy, ladder_rank_loss
from umq.training.data import apply_norm, fit_norm
from umq.training.data.synthetic import synthetic_featureset

torch.set_num_threads(1)  # tiny models: more threads only contend on shared CI hosts


def test_ladder_rank_loss_zero_iff_ordered_with_margin():
    good = torch.tensor([[0.95, 0.9], [0.7, 0.6], [0.4, 0.3], [0.05, 0.0]])
    assert ladder_rank_loss(good, margin=0.1).item() == 0.0
    swapped = good[[0, 2, 1, 3]]
    assert ladder_rank_loss(swapped, margin=0.1).item() > 0.0
    too_close = torch.tensor([[0.9], [0.85], [0.4], [0.0]])  # ordered, but one gap < margin
    assert ladder_rank_loss(too_close, margin=0.1).item() == pytest.approx(0.05 / 3, abs=1e-6)
    # a sample excluded by ``valid`` cannot add loss
    mixed = torch.tensor([[0.9, 0.0], [0.5, 1.0]])
    assert ladder_rank_loss(mixed, 0.1, valid=torch.tensor([True, False])).item() == 0.0


def test_cross_rank_loss_orders_by_unimodal_loss_beyond_gap():
    loss = torch.tensor([0.1, 1.0, 2.0])
    assert cross_rank_loss(torch.tensor([0.9, 0.6, 0.2]), loss, margin=0.1, gap=0.3).item() == 0.0
    assert cross_rank_loss(torch.tensor([0.2, 0.6, 0.9]), loss, margin=0.1, gap=0.3).item() > 0.0
    # losses within the gap impose nothing, whatever the order
    assert cross_rank_loss(torch.tensor([0.1, 0.9]), torch.tensor([0.5, 0.6]), 0.1, 0.3).item() == 0.0


def test_anchor_losses():
    low, high = anchor_losses(torch.tensor([-8.0, -9.0]), torch.tensor([0.99, 0.5]), torch.tensor([0.1, 3.0]),
                              threshold=0.5, target_high=0.95)
    assert low.item() < 1e-3 and high.item() == 0.0  # the 0.5 has a high loss: not anchored
    low, high = anchor_losses(torch.tensor([3.0]), torch.tensor([0.5]), torch.tensor([0.1]), 0.5, 0.95)
    assert low.item() > 1.0 and high.item() == pytest.approx(0.45)


STEPS = 150


@pytest.mark.slow  # model loads or trains: seconds to minutes on 2 cores
def test_estimator_learns_to_order_a_corruption_ladder():
    torch.manual_seed(0)
    raw = synthetic_featureset(n=384, dims={"audio": 24, "video": 12}, seed=1)
    norm = fit_norm(raw, [])
    fs = apply_norm(raw, norm)
    train, test = fs.subset(np.arange(256)).to_batch(), fs.subset(np.arange(256, 384)).to_batch()
    cfg = UMQConfig([ModalitySpec("audio", 24), ModalitySpec("video", 12)], d=32, d_s=16, experts=2,
                    expert_hidden=32, dropout=0.1)
    assert cfg.loss.rank_space == "logit"
    model = UMQ(cfg)
    opt = torch.optim.AdamW(model.parameters(), 5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        idx = torch.randint(0, 256, (64,), generator=g)
        clean = train.index(idx)
        corrupted, _ = sample_training_corruption(clean, TrainCorruption(), g)
        total, _ = compute_losses(model, corrupted, clean, g)
        opt.zero_grad()
        total.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for m in ("audio", "video"):
            lad = corruption_ladder(test.inputs[m], (0.7, 2.5), torch.Generator().manual_seed(5))
            q = torch.sigmoid(model.quality_logit(m, model.encode(m, lad), lad)).view(4, -1)
            means = q.mean(1)
            assert torch.all(means[:-1] > means[1:]), f"{m}: ladder means not decreasing: {means.tolist()}"
            pairwise = (q[:-1] > q[1:]).float().mean().item()
            # clean vs mild (sigma 0.7) overlaps per sample, so perfect pairwise order is not attainable
            assert pairwise > 0.75, f"{m}: only {pairwise:.2f} of adjacent rungs ordered"
            assert means[0] > 0.75 and means[-1] < 0.35, means.tolist()


def test_input_energy_separates_noise_levels_but_not_pure_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, 8, generator=g)
    mask = torch.ones(16, 5, dtype=torch.bool)
    mask[:, 3:] = False
    clean = input_energy(x, mask)
    noisy = input_energy(x + 3 * torch.randn(16, 5, 8, generator=g), mask)
    assert torch.all(noisy > clean + 1.0)
    x2 = x.clone()
    x2[:, 3:] = 100.0  # padding must not count
    assert torch.allclose(input_energy(x2, mask), clean)
    assert torch.all(input_energy(torch.zeros_like(x), mask) < -6)
