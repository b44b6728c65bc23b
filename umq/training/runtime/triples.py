"""Training material for the runtime model: per-modality vectors of real signals under raw-signal corruptions.

For every item (a FER face, a RAVDESS voice clip cut to one 2 s window, a MELD utterance) the cache holds its
vector (:mod:`.features`) for a list of *versions*: ``clean``, each corruption kind at two severities, and
``null`` (the modality switched off in a way capture does not notice: a black frame with no face, a silent mic,
an empty transcript). Training draws label-consistent triples from the three caches — a face, a voice and an
utterance sharing an emotion label — which is what the data allow: no corpus here has all three for one person.

Computing vectors is the slow part (the voice front-end runs silero-vad and pitch tracking, ~45 ms per window
on one core), so every cache is written once to ``$UMQ_CACHE/runtime`` (default ``~/.cache/umq/runtime``),
keyed by a digest of the source file's bytes (not its path or time: a remounted data folder keeps its caches),
:data:`CACHE_VERSION`, the feature recipe and a digest of the modality's encoder weights and front-end code
(:func:`encoder_digest`): a new encoder or front-end rebuilds its cache instead of silently reusing vectors of
the old one. Cached vectors are derived from the datasets: they stay outside the repository.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from umq import paths
from umq.labels import EMOTIONS
from umq.perception.digests import sha256_file
from umq.runtime.features import DIMS, encoder_digest, face_vector, text_vector, voice_vector

log = logging.getLogger(__name__)

CACHE_VERSION = 2
CACHE_DIR = Path(os.environ.get("UMQ_CACHE", Path.home() / ".cache" / "umq")) / "runtime"
SEVERITIES = (0.35, 0.8)  # training caches: the rungs of the estimator's ranking ladder
# validation caches: a finer ladder (a superset of SEVERITIES) for the calibration and its reliability tables
VAL_SEVERITIES = (0.2, 0.35, 0.6, 0.8)
FACE_KINDS = ("blur", "dark", "occlude", "noise", "lowres", "drop")
VOICE_KINDS = ("white", "babble", "clip", "reverb", "dropout", "floor")
FLOOR_DB_PER_SEVERITY = -25.0
"""``floor``: white noise at ``-25 * s`` dB SNR for the clip (-8.75 and -20 dB on the training rungs). Soft speech
under a room's steady noise floor sits far below the 2 dB that ``white`` reaches at its strongest: in the
through-the-app check a track at 0 dB puts its median clip at about -15 dB. Without these rungs the estimator never
saw such speech and rated it like mild noise (docs/results.md, runtime section 1)."""
TEXT_KINDS = ("drop", "replace", "garble", "truncate")
KINDS = {"video": FACE_KINDS, "audio": VOICE_KINDS, "text": TEXT_KINDS}


def version_names(modality: str, severities: tuple[float, ...] = SEVERITIES) -> list[str]:
    """``["clean", "<kind>@0.35", "<kind>@0.8", ..., "null"]`` (one entry per kind and severity)."""
    return ["clean"] + [f"{k}@{s:g}" for k in KINDS[modality] for s in severities] + ["null"]


@dataclass
class ModalityCache:
    """Vectors ``x [N, V, D]`` of ``N`` items in ``V`` versions (:func:`version_names`), labels ``y [N]``."""

    modality: str
    x: np.ndarray
    y: np.ndarray
    versions: list[str]
    source: str

    def __post_init__(self) -> None:
        if self.x.shape[:2] != (len(self.y), len(self.versions)) or self.x.shape[2] != DIMS[self.modality]:
            raise ValueError(f"{self.modality} cache has shape {self.x.shape}, expected "
                             f"({len(self.y)}, {len(self.versions)}, {DIMS[self.modality]})")
        if not np.isfinite(self.x).all():
            raise ValueError(f"{self.modality} cache holds non-finite values")


def _key(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _file_id(p: Path) -> str:
    """What a cache depends on in a data file: its bytes, not its path or time, so a remounted, copied or
    touched data folder keeps its caches (hashing FER2013 ``train.npz``, 63 MB, takes ~0.1 s, once per process)."""
    return f"{p.name}:{sha256_file(p)}"


def _cached(name: str, key: str, build) -> ModalityCache:
    path = CACHE_DIR / f"{name}-{key}.npz"
    if path.is_file():
        d = np.load(path, allow_pickle=False)
        return ModalityCache(str(d["modality"]), d["x"], d["y"], [str(v) for v in d["versions"]], str(d["source"]))
    cache = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, modality=cache.modality, x=cache.x, y=cache.y, versions=np.array(cache.versions),
             source=cache.source)
    tmp.replace(path)
    log.info("cached %s vectors %s -> %s", name, cache.x.shape, path)
    return cache


CROP_CODE = ("training/face/crops.py", "perception/face/align.py", "perception/face/detect.py")
"""Sources whose edit changes what the live-path crops look like (relative to ``umq/``)."""


def live_path_crops(src: Path, seed: int, workers: int = 2) -> Path:
    """FER faces of ``src`` as the live detector + crop cut them from camera-like frames
    (:func:`umq.training.face.crops.write_crops`), made once and then read from the cache (FER2013 ``train``:
    about 11 min on 2 idle cores, ``public_test`` about 2 min). Keyed by the source file, the seed, the placement
    and the crop code, like the vector caches."""
    from umq.training.face.crops import Placement, write_crops

    code = hashlib.sha256(b"".join((paths.REPO_ROOT / "umq" / f).read_bytes() for f in CROP_CODE)).hexdigest()[:16]
    out = CACHE_DIR.parent / "face_crops" / f"{src.stem}-{_key(_file_id(src), seed, Placement(), code)}.npz"
    if not out.is_file():
        log.info("making the live-path crops of %s (seed %d) once -> %s", src, seed, out)
        write_crops(src, out, seed, workers)
    return out


def balanced_subset(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Up to ``per_class`` random indices of every class (all of a smaller class), sorted."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(len(EMOTIONS))]
    return np.sort(np.concatenate(keep))


# ----------------------------------------------------------------------------------------------------- face
def _face_versions(img48: np.ndarray, rng: np.random.Generator,
                   severities: tuple[float, ...]) -> list[tuple[np.ndarray, float, bool]]:
    """``(face region, frames received ratio, face found)`` per version of one FER crop."""
    import cv2

    from umq.perception.face.corrupt import corrupt

    region = cv2.resize(img48, (96, 96), interpolation=cv2.INTER_LINEAR)  # a webcam face box is ~100 px
    out = [(region, 1.0, True)]
    for kind in FACE_KINDS:
        for s in severities:
            if kind == "drop":  # frames lost: the faces that arrive are fine, there are fewer of them
                out.append((region, 1.0 - s, True))
            else:
                out.append((corrupt(region, kind, s, rng), 1.0, True))
    out.append((np.full_like(region, int(rng.integers(0, 40))), 1.0, False))
    return out


def build_face_cache(npz: Path, per_class: int, seed: int, device: str = "cpu", progress: bool = True,
                     severities: tuple[float, ...] = SEVERITIES) -> ModalityCache:
    from umq.perception.face.cues import FaceCues, FrameCues, sharpness
    from umq.perception.face.net import load_face_net, preprocess_batch, to_app_index

    def build() -> ModalityCache:
        with np.load(npz, allow_pickle=False) as d:  # read each member once: NpzFile re-reads on every access
            images, labels, classes = d["images"], d["labels"], [str(c) for c in d["classes"]]
        y_all = to_app_index(classes)[labels.astype(int)]
        idx = balanced_subset(y_all, per_class, seed)
        net = load_face_net(device=device).eval()
        rng = np.random.default_rng(seed)
        names = version_names("video", severities)
        V = len(names)
        x = np.zeros((len(idx), V, DIMS["video"]), np.float32)
        for n, i in enumerate(tqdm(idx, desc=f"face vectors {npz.name}", disable=not progress)):
            versions = _face_versions(images[i], rng, severities)
            crops = [r for r, _, found in versions if found]
            with torch.inference_mode():
                logits, emb = net(preprocess_batch(crops, net.input_size).to(device))
                probs = logits.softmax(-1)
            k = 0
            box, stab, motion = rng.uniform(0.2, 0.6), rng.uniform(0.5, 0.95), rng.uniform(0.0, 0.04)
            for v, (region, received, found) in enumerate(versions):
                fc = FrameCues(found, box if found else 0.0, stab if found else 0.0, sharpness(region),
                               float(region.mean()) / 255.0, float(region.std()) / 255.0, motion)
                cues = FaceCues.from_frames([fc] * 6)
                if found:
                    e, p = emb[k], probs[k]
                    k += 1
                else:
                    e, p = torch.zeros(emb.shape[1]), torch.zeros(7)
                x[n, v] = face_vector(e.cpu(), p.cpu(), cues, received).numpy()
        return ModalityCache("video", x, y_all[idx], names, npz.name)

    key = _key(CACHE_VERSION, encoder_digest("video"), _file_id(npz), per_class, seed, severities)
    return _cached("video", key, build)


# ---------------------------------------------------------------------------------------------------- voice
def build_voice_cache(ravdess: Path, actors: list[int], seed: int, device: str = "cpu",
                      progress: bool = True, severities: tuple[float, ...] = SEVERITIES,
                      per_actor: int | None = None) -> ModalityCache:
    """``per_actor``: a random subset of that many clips of every actor (all when None)."""
    from umq.perception.voice.corrupt import corrupt, mix_at_snr, synthetic_babble, white_noise
    from umq.perception.voice.ensemble import encode
    from umq.perception.voice.frontend import VoiceFrontEnd, collate_views
    from umq.perception.voice.net import load_voice_net
    from umq.training.voice.clips import center_crop, read_audio, read_labels

    def build() -> ModalityCache:
        rows, _ = read_labels(ravdess, actors=actors)
        rows = sorted(rows, key=lambda r: r["actor"])  # actor by actor: the validation halves split by actor
        net = load_voice_net(device=device).eval()
        rng = np.random.default_rng(seed)
        if per_actor is not None:
            keep = []
            for a in sorted({r["actor"] for r in rows}):
                mine = [i for i, r in enumerate(rows) if r["actor"] == a]
                keep += sorted(rng.permutation(mine)[:per_actor].tolist())
            rows = [rows[i] for i in keep]
        babble = synthetic_babble(16_000 * 30, rng)  # one bank, sliced per clip (synthesis is slow)
        names = version_names("audio", severities)
        V = len(names)
        x = np.zeros((len(rows), V, DIMS["audio"]), np.float32)
        by_actor: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            by_actor.setdefault(r["actor"], []).append(i)
        bar = tqdm(total=len(rows), desc="voice vectors", disable=not progress)
        for items in by_actor.values():
            fe = VoiceFrontEnd(net, device=device)  # one session per speaker: the running normaliser adapts
            clips = [center_crop(read_audio(rows[i]["audio"])) for i in items]
            for clip, valid in clips:  # warm the normaliser on the speaker's clean speech, as a session would
                fe(clip, valid)
            for i, (clip, valid) in zip(items, clips):
                feats = []
                for name in names:
                    if name == "clean":
                        sig, vv = clip, valid
                    elif name == "null":
                        sig, vv = np.zeros_like(clip), valid
                    else:
                        kind, s = name.split("@")
                        if kind == "babble":
                            a = int(rng.integers(0, babble.shape[0] - clip.shape[0]))
                            sig, vv = mix_at_snr(clip, babble[a:a + clip.shape[0]], 30.0 - 35.0 * float(s)), valid
                        elif kind == "floor":
                            sig, vv = white_noise(clip, FLOOR_DB_PER_SEVERITY * float(s), rng), valid
                        else:
                            sig, vv = corrupt(clip, kind, float(s), rng)
                            vv = vv & valid
                    feats.append(fe(sig, vv, update=False))
                with torch.inference_mode():
                    logits, emb = encode(net, collate_views(feats))
                    probs = logits.softmax(-1)
                for v, f in enumerate(feats):
                    x[i, v] = voice_vector(emb[v].cpu(), probs[v].cpu(), f.cues).numpy()
                bar.update(1)
        bar.close()
        y = np.array([r["label"] for r in rows], np.int64)
        return ModalityCache("audio", x, y, names, f"ravdess actors {actors[0]}-{actors[-1]}")

    key = _key(CACHE_VERSION, encoder_digest("audio"), _file_id(ravdess / "labels.csv"), tuple(actors), seed,
               severities, per_actor, VOICE_KINDS, FLOOR_DB_PER_SEVERITY)
    return _cached("audio", key, build)


# ----------------------------------------------------------------------------------------------------- text
def build_text_cache(path: Path, per_class: int, seed: int, device: str = "cpu", progress: bool = True,
                     severities: tuple[float, ...] = SEVERITIES) -> ModalityCache:
    from umq.perception.text.corrupt import corrupt
    from umq.perception.text.cues import TextCues
    from umq.perception.text.frontend import TextFrontEnd
    from umq.perception.text.net import load_text_head
    from umq.training.data.text import read_text_file

    def build() -> ModalityCache:
        rows = read_text_file(path).single_label()
        y_all = np.array(rows.y(), np.int64)
        idx = balanced_subset(y_all, per_class, seed)
        head = load_text_head(device=device).eval()
        fe = TextFrontEnd(head=head, device=device)
        rng = np.random.default_rng(seed)
        names = version_names("text", severities)
        texts: list[str] = []
        for i in idx:
            t = rows.texts[i]
            for name in names:
                if name == "clean":
                    texts.append(t)
                elif name == "null":
                    texts.append("")
                else:
                    kind, s = name.split("@")
                    texts.append(corrupt(t, kind, float(s), rng))
        x = np.zeros((len(idx) * len(names), DIMS["text"]), np.float32)
        todo = [j for j, t in enumerate(texts) if t.split()]
        bs = 256
        for a in tqdm(range(0, len(todo), bs), desc=f"text vectors {path.name}", disable=not progress):
            chunk = todo[a:a + bs]
            with torch.inference_mode():
                hx, _ = fe.batch([texts[j] for j in chunk])
                logits, emb = head(hx)
                probs = logits.softmax(-1)
            for r, j in enumerate(chunk):
                x[j] = text_vector(emb[r].cpu(), probs[r].cpu(), TextCues.from_text(texts[j])).numpy()
        for j, t in enumerate(texts):
            if not t.split():
                x[j] = text_vector(torch.zeros(head.emb_dim), torch.zeros(7), TextCues.absent()).numpy()
        return ModalityCache("text", x.reshape(len(idx), len(names), -1), y_all[idx], names, path.name)

    key = _key(CACHE_VERSION, encoder_digest("text"), _file_id(path), per_class, seed, severities)
    return _cached("text", key, build)
