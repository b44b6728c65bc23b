"""Synthetic multimodal classification data for tests and smoke runs (no files needed).

Each modality lives on a random low-dimensional subspace (``x = A_m (proto_c + noise) + small isotropic
noise``), so it has the kind of correlation structure real features have and pure ``N(0, 1)`` noise does not;
that is what lets a quality estimator tell them apart after standardisation, as on real data.
"""
from __future__ import annotations

import numpy as np

from umq.training.data import FeatureSet


def synthetic_featureset(n: int = 256, dims: dict[str, int] | None = None, classes: int = 7, seq_len: int = 1,
                         rank: int = 4, separation: float = 1.5, groups: int = 4, seed: int = 0) -> FeatureSet:
    """``n`` samples over ``dims`` (name -> feature size); ``seq_len > 1`` gives variable-length sequences."""
    dims = dims or {"audio": 24, "video": 12}
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x, mask = {}, {}
    for name, d in dims.items():
        a = rng.standard_normal((rank, d))
        protos = rng.standard_normal((classes, rank)) * separation
        z = protos[y] + rng.standard_normal((n, rank))
        lengths = rng.integers(max(1, seq_len // 2), seq_len + 1, n) if seq_len > 1 else np.ones(n, int)
        t = int(lengths.max())
        base = (z @ a)[:, None, :] + 0.3 * rng.standard_normal((n, t, rank)) @ a
        xm = base + 0.2 * rng.standard_normal((n, t, d))
        mk = np.arange(t)[None, :] < lengths[:, None]
        x[name] = (xm * mk[..., None]).astype(np.float32)
        mask[name] = mk
    names = tuple(dims)
    return FeatureSet(names, x, mask, np.ones((n, len(names)), bool), rng.integers(0, groups, n) + 1,
                      [f"s{i}" for i in range(n)], y.astype(np.int64), None, {})
