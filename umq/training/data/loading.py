"""One entry point for every data set kind, used by training and evaluation alike."""
from __future__ import annotations

from pathlib import Path

from umq.training.data import FeatureSet, default_data_root
from umq.training.data.features_audio import AudioFeatureParams


def resolve_data_path(kind: str, path: str | Path | None) -> Path:
    """Explicit ``path`` wins; otherwise ``<data root>/ravdess`` (data root: ``$UMQ_DATA`` or ``../shared/data``)."""
    if path:
        return Path(path)
    root = default_data_root()
    if root is None or kind != "ravdess":
        raise FileNotFoundError(f"no data path given for {kind!r} (pass --data or set UMQ_DATA)")
    return root / "ravdess"


def load_dataset(data_cfg: dict, path: str | Path | None, *, groups: list[int] | None = None,
                 split: str | None = None, progress: bool = True) -> FeatureSet:
    """Load features as described by a ``[data]`` config table (also stored in checkpoints)."""
    kind = data_cfg.get("kind", "ravdess")
    p = resolve_data_path(kind, path)
    if kind == "ravdess":
        from umq.training.data.ravdess import load_ravdess

        params = AudioFeatureParams(**data_cfg.get("audio_params", {}))
        return load_ravdess(p, actors=groups, audio_view=data_cfg.get("audio_view", "stats"), params=params,
                            progress=progress)
    if kind == "mmsa":
        from umq.training.data.mmsa import load_mmsa

        return load_mmsa(p, split or "train")
    raise ValueError(f"unknown data kind {kind!r}")
