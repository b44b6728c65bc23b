"""Fixtures shared by several test modules."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def torch_one_thread():
    """Per-window inference is latency-bound; on a busy 2-core runner 2 torch threads are several times slower.
    Restores the previous thread count after the module."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
