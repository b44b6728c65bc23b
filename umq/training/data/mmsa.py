"""MMSA pickle loader (CMU-MOSI / CMU-MOSEI / CH-SIMS feature files as distributed with the MMSA toolkit).

Format (``unaligned_50.pkl`` / ``aligned_50.pkl``): a dict with splits ``train``, ``valid``, ``test``; each split
is a dict of parallel arrays over ``N`` samples:

* ``text`` ``[N, T_t, 768]`` float BERT features (or GloVe ``[N, T_t, 300]``); ``text_bert`` ``[N, 3, T_t]``
  token ids / attention mask / segment ids (its row 1 is used as the text mask when present);
* ``audio`` ``[N, T_a, D_a]`` (COVAREP 74, librosa 33, or 5 for some releases) with ``audio_lengths`` ``[N]``;
* ``vision`` ``[N, T_v, D_v]`` (Facet 35 / OpenFace 709 / 20) with ``vision_lengths`` ``[N]``;
* ``regression_labels`` ``[N]`` sentiment in [-3, 3]; optionally ``classification_labels``, ``raw_text``, ``id``.

Security: pickles can run arbitrary code on load. :class:`RestrictedUnpickler` only resolves the globals
numpy needs to rebuild arrays (and the codec used for bytes); anything else is refused with an error naming it.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from umq.training.data import FeatureSet

MODALITIES = ("text", "audio", "video")  # the pickle's "vision" is the app's "video"

_ALLOWED: set[tuple[str, str]] = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and builtin containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: the MMSA loader only accepts "
                                     "numpy arrays and builtin containers")


def safe_load_pickle(path: str | Path) -> Any:
    with open(path, "rb") as f:
        return RestrictedUnpickler(io.BytesIO(f.read())).load()


def _mask_from_lengths(lengths: np.ndarray | None, n: int, t: int) -> np.ndarray:
    if lengths is None:
        return np.ones((n, t), bool)
    return np.arange(t)[None, :] < np.minimum(np.asarray(lengths).reshape(-1, 1), t)


def load_mmsa(path: str | Path, split: str = "train") -> FeatureSet:
    """One split of an MMSA pickle as a regression :class:`FeatureSet` (``groups`` are all 0: MMSA has no
    speaker ids in the pickle, so speaker normalisation does not apply)."""
    data = safe_load_pickle(path)
    if not isinstance(data, dict) or split not in data:
        raise ValueError(f"{path}: expected a dict with split {split!r}, got keys {list(data)[:5]}")
    s = data[split]
    for k in ("text", "audio", "vision", "regression_labels"):
        if k not in s:
            raise ValueError(f"{path} [{split}]: missing key {k!r}")
    text = np.asarray(s["text"], np.float32)
    n = len(text)
    if "text_bert" in s and text.shape[1] == np.asarray(s["text_bert"]).shape[2]:
        m_text = np.asarray(s["text_bert"])[:, 1, :] > 0
    else:
        m_text = np.abs(text).sum(-1) > 0
    audio = np.nan_to_num(np.asarray(s["audio"], np.float32), posinf=0.0, neginf=0.0)
    vision = np.nan_to_num(np.asarray(s["vision"], np.float32), posinf=0.0, neginf=0.0)
    m_audio = _mask_from_lengths(s.get("audio_lengths"), n, audio.shape[1])
    m_vision = _mask_from_lengths(s.get("vision_lengths"), n, vision.shape[1])
    masks = {"text": m_text, "audio": m_audio, "video": m_vision}
    for mk in masks.values():  # keep >= 1 valid step so an empty row is "absent", not NaN
        empty = ~mk.any(1)
        mk[empty, 0] = True
    present = np.stack([~(np.abs(x).sum((1, 2)) == 0) for x in (text, audio, vision)], 1)
    ids = [str(i) for i in s.get("id", range(n))]
    y_reg = np.asarray(s["regression_labels"], np.float32).reshape(-1)
    return FeatureSet(MODALITIES, {"text": text, "audio": audio, "video": vision}, masks, present,
                      np.zeros(n, np.int64), ids, None, y_reg, {})
