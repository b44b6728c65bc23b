"""Feature cache for training the Whisper-front-end voice encoder (built once, outside the repository).

Every clip becomes 2.0 s windows (the app's window): one clean central window and ``variants`` augmented
windows (a random crop, or a random placement for clips under 2 s, through
:func:`umq.training.voice.augment.random_chain`). Each window is featurised with the live front-end's own
functions (:func:`umq.perception.voice.whisper.whisper_frame_features`), so training and use cannot drift apart.
VAD speech masks come from the clean version of the same crop. Stored per window: features ``[389, 100]``
(float16), the 20 ms masks and the speaker normaliser's moments (count, sum, sum of squares per channel).

Cache: ``~/.cache/umq/voice_multi/shard{k}of{n}.npz`` (``UMQ_CACHE`` overrides the root). Run
``python -m umq.training.voice.cache --shard K --shards N`` in N processes to build it in parallel.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np

from umq.perception.voice.features import (
    WINDOW_SAMPLES,
    descriptor_matrix,
    descriptor_tracks,
    frame_valid,
    n_frames,
    sanitize,
)
from umq.perception.voice.vad import SileroVAD, speech_frames
from umq.perception.voice.whisper import WHISPER_FEATURE_NAMES, whisper_frame_features
from umq.training.data.voice_corpora import load_all, load_ravdess
from umq.training.voice.augment import SNR_RANGE_DB, random_chain

log = logging.getLogger(__name__)
F0 = WHISPER_FEATURE_NAMES.index("log2_f0")


def cache_dir() -> Path:
    return Path(os.environ.get("UMQ_CACHE", Path.home() / ".cache" / "umq")) / "voice_multi"


def place(x: np.ndarray, rng: np.random.Generator | None, n: int = WINDOW_SAMPLES) -> np.ndarray:
    """A 2 s window of ``x``: the centre (``rng`` None) or a random crop; shorter clips sit in silence."""
    x = np.asarray(x, np.float32)
    if x.shape[0] >= n:
        a = (x.shape[0] - n) // 2 if rng is None else int(rng.integers(0, x.shape[0] - n + 1))
        return x[a:a + n].copy()
    out = np.zeros(n, np.float32)
    a = (n - x.shape[0]) // 2 if rng is None else int(rng.integers(0, n - x.shape[0] + 1))
    out[a:a + x.shape[0]] = x
    return out


def speech10(x: np.ndarray) -> np.ndarray:
    xs, v, _ = sanitize(x)
    return speech_frames(SileroVAD.probs(xs), n_frames(xs.shape[0])) & frame_valid(v)


def featurize_window(x: np.ndarray, speech: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Features, masks and normaliser moments of one window (``speech``: 10 ms VAD mask of the clean audio)."""
    xs, v, _ = sanitize(x)
    tracks = descriptor_tracks(xs)
    desc = descriptor_matrix(tracks)
    fv = frame_valid(v)
    if speech is None:
        speech = speech_frames(SileroVAD.probs(xs), n_frames(xs.shape[0])) & fv
    f = whisper_frame_features(xs, tracks, desc, speech, fv)
    w = (f["speech"] & f["fvalid"]).astype(np.float64)
    w = np.repeat(w[None], f["feats"].shape[0], 0)
    w[F0] *= f["pitched"]
    a = f["feats"].astype(np.float64)
    f["mom"] = np.stack([w.sum(-1), (w * a).sum(-1), (w * a * a).sum(-1)]).astype(np.float32)
    return f


def build_shard(data: Path, shard: int, shards: int, variants: int, seed: int = 1234,
                snr_db: tuple[float, float] = SNR_RANGE_DB) -> Path:
    clips = load_all(data, set(range(1, 17)))
    rng = np.random.default_rng([seed, shard])
    from umq.training.voice.clips import read_audio

    talker_rows = [c for c in load_ravdess(data, set(range(1, 13)))]
    pick = np.random.default_rng(seed).choice(len(talker_rows), 40, replace=False)
    talkers = [read_audio(talker_rows[i].audio) for i in pick]
    keys = ("feats", "speech", "pitched", "fvalid", "mom")
    out: dict[str, list] = {k: [] for k in keys}
    meta = []
    t0 = time.time()
    mine = [i for i in range(len(clips)) if i % shards == shard]
    for j, i in enumerate(mine):
        c = clips[i]
        x = read_audio(c.audio)
        for k in range(1 + variants):
            w = place(x, None if k == 0 else rng)
            f = featurize_window(w if k == 0 else random_chain(w, rng, talkers, snr_db), speech10(w))
            for key in keys:
                out[key].append(f[key].astype(np.float16) if key == "feats" else f[key])
            meta.append((i, k))
        if j % 100 == 0:
            log.info("shard %d: %d/%d clips, %.0f s", shard, j, len(mine), time.time() - t0)
    path = cache_dir() / f"shard{shard}of{shards}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, meta=np.asarray(meta, np.int32), **{k: np.stack(v) for k, v in out.items()})
    log.info("shard %d done: %d windows in %.0f s -> %s", shard, len(meta), time.time() - t0, path)
    return path


def main(argv: list[str] | None = None) -> None:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path(os.environ.get("UMQ_DATA", "../shared/data")))
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--variants", type=int, default=3)
    p.add_argument("--snr-db", type=float, nargs=2, default=list(SNR_RANGE_DB), metavar=("LOW", "HIGH"),
                   help="SNR range of the augmentation's noise step (default: the shipped 0 30)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    build_shard(a.data, a.shard, a.shards, a.variants, snr_db=(a.snr_db[0], a.snr_db[1]))


if __name__ == "__main__":
    main()
