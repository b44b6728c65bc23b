"""Host <-> device transfers and the GPU forms of the live forward (the CUDA tests need a GPU; CI has none)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from umq.device import DeviceError, pick_device, to_device, to_host

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on the CI machine)")


def test_cpu_transfers_share_memory_instead_of_copying():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = to_device(a, "cpu")
    assert t.device.type == "cpu" and t.data_ptr() == a.__array_interface__["data"][0]
    assert np.array_equal(to_host(t * 2), a * 2)
    strided = a[:, ::2]  # not contiguous: made contiguous, same values
    assert np.array_equal(to_device(strided, "cpu").numpy(), strided)


def test_a_device_that_is_not_here_is_a_clear_error_not_a_cpu_run():
    for name in ("nonsense", "mps", "cuda:99"):
        with pytest.raises(DeviceError, match=f"device '{name}'"):
            pick_device(name)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available on this machine.*use --device cpu"):
            pick_device("cuda")
    assert pick_device("cpu").type == "cpu"


def test_cli_refuses_a_missing_device_before_doing_anything(capsys, tmp_path):
    from app.cli import main

    out = tmp_path / "r.jsonl"
    assert main(["-q", "replay", "assets/demo_session", "--headless", "--out", str(out), "--device", "cuda:99"]) == 2
    assert "error: device 'cuda:99'" in capsys.readouterr().err and not out.exists()


@cuda
def test_cuda_transfers_round_trip_through_pinned_memory():
    a = np.random.default_rng(0).standard_normal((64, 201)).astype(np.float32)
    t = to_device(a, "cuda")
    assert t.is_cuda and np.array_equal(to_host(t), a)


@cuda
def test_cuda_graph_forward_matches_eager_when_chosen():
    from umq.runtime.analyzer import ASSETS, load_runtime_model
    from umq.runtime.fast import choose_forward, eager_forward
    from umq.runtime.features import DIMS, MODALITIES

    dev = torch.device("cuda")
    model = load_runtime_model(ASSETS / "umq.pt", dev)[0]
    forward, mode, timings = choose_forward(model, DIMS, dev, iters=10)
    assert "cuda-graph" in timings
    xs = tuple(torch.randn(1, 1, DIMS[m], device=dev) for m in MODALITIES)
    present = torch.tensor([[True, True, False]], device=dev)
    with torch.inference_mode():
        for a, b in zip(eager_forward(model)(xs, present), forward(xs, present)):
            assert torch.allclose(a, b, atol=1e-5)
