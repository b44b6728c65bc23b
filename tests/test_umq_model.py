"""Model shapes, mask handling, known-missing inputs, quality-aware routing, variants and config checks."""
from __future__ import annotations

import pytest
import torch

from umq.corrupt import TrainCorruption, sample_training_corruption
from umq.model import UMQ, VARIANTS, ModalitySpec, UMQConfig, compute_losses, variant_config
from umq.types import Batch, ModalityInput

torch.set_num_threads(1)
NAMES = ("audio", "video", "text")


def make_cfg(**kw) -> UMQConfig:
    mods = [ModalitySpec("audio", 10, "conv"), ModalitySpec("video", 6), ModalitySpec("text", 8, "transformer")]
    return UMQConfig(mods, d=16, d_s=8, experts=3, expert_hidden=24, **kw)


def make_batch(b: int = 6, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths = {"audio": torch.randint(2, 9, (b,), generator=g), "text": torch.randint(1, 6, (b,), generator=g)}
    inputs = {}
    for m, d, t in (("audio", 10, 8), ("video", 6, 1), ("text", 8, 5)):
        mask = (torch.arange(t).unsqueeze(0) < lengths[m].unsqueeze(1) if m in lengths
                else torch.ones(b, 1, dtype=torch.bool))
        inputs[m] = ModalityInput(torch.randn(b, t, d, generator=g) * mask.unsqueeze(-1), mask)
    return Batch(NAMES, inputs, torch.ones(b, 3, dtype=torch.bool), torch.randint(0, 7, (b,), generator=g))


def test_forward_shapes_and_ranges():
    model = UMQ(make_cfg()).eval()
    batch = make_batch()
    out = model(batch.inputs, batch.present)
    assert out.logits.shape == (6, 7) and out.probs.shape == (6, 7)
    assert torch.allclose(out.probs.sum(1), torch.ones(6))
    assert out.q.shape == (6, 3) and bool(((out.q >= 0) & (out.q <= 1)).all())
    assert out.routing.shape == (6, 3) and torch.allclose(out.routing.sum(1), torch.ones(6))
    assert set(out.unimodal_logits) == set(NAMES) and out.unimodal_logits["text"].shape == (6, 7)
    assert out.regression is None and out.aux == {}  # no training-only terms in eval mode


def test_padding_does_not_change_outputs():
    model = UMQ(make_cfg()).eval()
    batch = make_batch()
    ref = model(batch.inputs, batch.present)
    padded = {}
    for m, v in batch.inputs.items():
        extra = 4
        x = torch.cat([v.x, 50 * torch.randn(v.x.shape[0], extra, v.x.shape[2])], 1)  # garbage in the padding
        x[:, :v.x.shape[1]][~v.mask] = 7.0
        mask = torch.cat([v.mask, torch.zeros(v.mask.shape[0], extra, dtype=torch.bool)], 1)
        padded[m] = ModalityInput(x, mask)
    out = model(padded, batch.present)
    assert torch.allclose(ref.logits, out.logits, atol=1e-5)
    assert torch.allclose(ref.q, out.q, atol=1e-6)


def test_single_step_sequence_is_a_clip_vector():
    cfg = UMQConfig([ModalitySpec("a", 5), ModalitySpec("b", 3)], d=8, d_s=4, experts=2, expert_hidden=8)
    model = UMQ(cfg).eval()
    b = Batch(("a", "b"), {"a": ModalityInput(torch.randn(4, 1, 5), torch.ones(4, 1, dtype=torch.bool)),
                           "b": ModalityInput(torch.randn(4, 1, 3), torch.ones(4, 1, dtype=torch.bool))},
              torch.ones(4, 2, dtype=torch.bool))
    assert torch.isfinite(model(b.inputs, b.present).logits).all()


def test_known_missing_forces_zero_quality_and_uses_reconstruction():
    model = UMQ(make_cfg()).eval()
    batch = make_batch()
    present = batch.present.clone()
    present[:3, 1] = False
    out = model(batch.inputs, present)
    assert torch.all(out.q[:3, 1] == 0) and torch.all(out.q[3:, 1] > 0)
    assert torch.allclose(out.h_enh["video"][:3], out.h_hat["video"][:3])  # q = 0 -> fully reconstructed
    off = UMQ(make_cfg(known_missing=False)).eval()
    assert torch.all(off(batch.inputs, present).q[:3, 1] > 0)


def test_routing_follows_the_quality_vector():
    torch.manual_seed(0)
    model = UMQ(make_cfg(router_input="q")).eval()
    batch = make_batch()
    r1 = model(batch.inputs, batch.present).routing
    present = batch.present.clone()
    present[:, 0] = False  # audio flagged missing: q_audio -> 0
    r2 = model(batch.inputs, present).routing
    assert (r1 - r2).abs().max() > 1e-4
    # a quality-unaware router ignores q: identical q-independent features give identical routing
    unaware = UMQ(make_cfg(router_input="feat", use_estimator=False, use_enhancer=False)).eval()
    g = unaware.moe.gate(torch.zeros(6, 3), torch.ones(6, 16))
    assert torch.allclose(g, unaware.moe.gate(torch.ones(6, 3), torch.ones(6, 16)))


def test_top_k_gating_is_sparse():
    model = UMQ(make_cfg(top_k=1)).eval()
    batch = make_batch()
    r = model(batch.inputs, batch.present).routing
    assert torch.all((r > 0).sum(1) == 1)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_trains_one_step(variant):
    torch.manual_seed(0)
    model = UMQ(variant_config(make_cfg(), variant)).train()
    batch = make_batch(8)
    g = torch.Generator().manual_seed(0)
    corrupted, corrupted_mask = sample_training_corruption(batch, TrainCorruption(), g)
    total, parts = compute_losses(model, corrupted, batch, g)
    assert torch.isfinite(total) and "task" in parts
    assert ("q_ladder" in parts) == model.config.use_estimator
    assert ("recon" in parts) == model.config.use_enhancer
    total.backward()
    grads = [p.grad for p in model.encoders.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
    if not model.config.use_estimator:
        out = model.eval()(corrupted.inputs, corrupted.present)
        assert torch.equal(out.q, corrupted.present.float())


def test_regression_head():
    model = UMQ(make_cfg(task="regression")).eval()
    batch = make_batch()
    out = model(batch.inputs, batch.present)
    assert out.logits is None and out.regression.shape == (6,)


def test_config_round_trip_and_validation():
    cfg = make_cfg(top_k=2)
    assert UMQConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="fusion"):
        UMQConfig.from_dict({**cfg.to_dict(), "fusion": "bogus"})
    with pytest.raises(ValueError, match="unknown model config keys"):
        UMQConfig.from_dict({**cfg.to_dict(), "dd": 3})
    with pytest.raises(KeyError):
        variant_config(cfg, "nope")


def test_unimodal_expert_uses_only_usable_modalities():
    model = UMQ(make_cfg(unimodal_expert=True)).eval()
    with torch.no_grad():  # route everything to the unimodal expert (the last routing column)
        model.moe.router[-1].weight.zero_()
        model.moe.router[-1].bias.copy_(torch.tensor([-30.0] * 3 + [30.0]))
    batch = make_batch()
    present = batch.present.clone()
    present[:, 1:] = False  # only audio usable -> its quality weight is 1
    out = model(batch.inputs, present)
    assert torch.allclose(out.routing[:, -1], torch.ones(6))
    assert torch.allclose(out.logits, model.head.bias + out.unimodal_logits["audio"], atol=1e-4)
    off = UMQ(make_cfg()).eval()  # default: no unimodal expert
    assert off(batch.inputs, present).routing.shape == (6, 3)


def test_residual_fusion_starts_at_quality_weighted_late_fusion():
    """Untrained, the residual form's output is exactly the quality-weighted mean of the unimodal logits; a
    modality whose quality is 0 (here: flagged missing) has no say in it."""
    model = UMQ(make_cfg(fusion_residual=True)).eval()
    batch = make_batch()
    present = batch.present.clone()
    present[:, 2] = False
    out = model(batch.inputs, present)
    w = out.q / out.q.sum(1, keepdim=True)
    expected = sum(w[:, i:i + 1] * out.unimodal_logits[m] for i, m in enumerate(NAMES))
    assert torch.allclose(out.logits, expected, atol=1e-5)
    assert torch.all(out.q[:, 2] == 0)
    assert out.routing.shape == (6, 3)  # the experts only: late fusion is not a routed expert here
    with pytest.raises(ValueError, match="fusion_residual"):
        make_cfg(fusion_residual=True, unimodal_expert=True).validate()


@pytest.mark.parametrize("name,dims", [("ravdess_umq", {"audio": 301, "video": 35}),
                                       ("mmsa_umq", {"text": 768, "audio": 5, "video": 20})])
def test_shipped_configs_build(name, dims):
    from pathlib import Path

    from umq.corrupt import TrainCorruption
    from umq.training.train import build_model_config, load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.toml")
    for v in VARIANTS:
        mcfg = build_model_config(cfg, dims, v)
        assert mcfg.names == tuple(dims)
    UMQ(build_model_config(cfg, dims, "umq"))
    TrainCorruption.from_dict(cfg.get("corrupt", {}))
