"""Feature standardisation stored with a model: part of the checkpoint format, so it lives beside the model,
not with the training data that fitted it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class NormStats:
    """Feature standardisation fitted on training data (stored in checkpoints).

    ``speaker_norm`` lists modalities that are first standardised per speaker (group) with that speaker's own
    statistics; ``mean``/``std`` are then the global training statistics applied to every sample.
    """

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    speaker_norm: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"mean": {m: torch.from_numpy(v) for m, v in self.mean.items()},
                "std": {m: torch.from_numpy(v) for m, v in self.std.items()}, "speaker_norm": list(self.speaker_norm)}

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        return cls({m: v.numpy() for m, v in d["mean"].items()}, {m: v.numpy() for m, v in d["std"].items()},
                   list(d["speaker_norm"]))
