"""Train and validate the runtime model: ``python -m umq.training.runtime.train [--data DIR] [--out assets/runtime]``.

Trains UMQ over (face, voice, text) on label-consistent triples drawn from the training splits (FER2013
``train``, RAVDESS actors 1-16, MELD ``train``) with signal-level corruptions (:mod:`.triples`), plus the
quality-unaware MoE the dashboard's quality lab shows beside it and a late-fusion reference. The validation
triples come only from FER2013 ``public_test``, RAVDESS actors 17-20 and MELD ``dev``. The faces are those FER
images as the live detector + crop cut them from camera-like frames (:class:`FaceSource`; made once and cached).

The quality ladder of the rank-guided estimator is made of real corrupted versions of each sample
(clean > severity 0.35 > severity 0.8 > switched off) instead of feature noise. Fixed number of steps, no model
selection on the validation split; every number written is measured once, after training.

Measured on an idle 2-core CPU: the live-path face crops ~13 min and the vector caches ~35 min (once each),
training the three models with three seeds ~16 min (about 1.5 min per model and seed, 1 torch thread).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from umq.checkpoint import save_checkpoint
from umq.device import pick_device
from umq.labels import EMOTIONS
from umq.model import UMQ, UMQConfig, compute_losses, variant_config
from umq.model.config import ModalitySpec
from umq.model.norm import NormStats
from umq.runtime.analyzer import ASSETS
from umq.runtime.features import DIMS, FEATURE_RECIPE, MODALITIES, encoder_weights_digest
from umq.training.data import data_root_or_explain
from umq.training.runtime.evaluation import (
    degraded_vs_removed,
    encoder_reference,
    evaluate_model,
    quality_ordering,
    summary,
    validation_triples,
)
from umq.training.runtime.sampling import TripleSampler
from umq.training.runtime.triples import (
    SEVERITIES,
    VAL_SEVERITIES,
    ModalityCache,
    build_face_cache,
    build_text_cache,
    build_voice_cache,
    encoder_digest,
    live_path_crops,
    version_names,
)

log = logging.getLogger(__name__)

LICENCE = ("research / non-commercial use only: trained on FER2013 (research use), RAVDESS (CC BY-NC-SA 4.0) and "
           "MELD (GPL-3.0) features")
VARIANTS = ("umq", "moe_unaware", "late_fusion")  # shipped; umq_no_enhancer: the ablation, trained on request
TRAINABLE = (*VARIANTS, "umq_no_enhancer")


Caches = dict  # modality -> ModalityCache


# Items per split: per class (face, text; all of a smaller class) / clips per actor (voice, None = all 60).
# On an idle 2-core machine the six caches build in about 20 min (the voice front-end runs silero-vad and pitch
# tracking per corrupted version, ~20 ms a window; MiniLM reads every corrupted text; the face net is ~1 ms).
TRAIN_SIZES: dict[str, int | None] = {"video": 600, "audio": None, "text": 200}
VAL_SIZES: dict[str, int | None] = {"video": 100, "audio": None, "text": 60}
TRAIN_ACTORS, VAL_ACTORS = list(range(1, 17)), list(range(17, 21))
VOICE_TRAIN_DRAWS = (0,)  # with every clip of every actor one draw holds them all


def concat(parts: list[ModalityCache]) -> ModalityCache:
    return ModalityCache(parts[0].modality, np.concatenate([c.x for c in parts]), np.concatenate([c.y for c in parts]),
                         parts[0].versions, " + ".join(c.source for c in parts))


FACE_FILES = {"train": "train.npz", "val": "public_test.npz"}
FACE_CROP_SEEDS = {"train": 1, "val": 0}  # the shipped recipe (docs/face-encoder.md)
FACE_FROM_FER, FACE_FROM_CROPS = "FER2013 images", "live-path crops"


@dataclass(frozen=True)
class FaceSource:
    """Where the runtime model's face vectors come from; recorded in the checkpoint (``data["face_vectors_from"]``).

    By default the FER2013 faces as the live detector + crop cut them from camera-like frames, made once by
    :func:`~umq.training.runtime.triples.live_path_crops` and cached. Why: the app's face head then learns from
    the framing the app produces, the same train/runtime parity the face encoder was trained for; through the
    app the fused label is equal or better in all six ``app-triples`` conditions (+1.5 on their mean,
    docs/results.md section 4).
    ``images``: FER2013's own 48x48 images instead (the recipe before 2026-12-01). ``crops_dir``: crops already
    made with ``python -m umq.training.face.crops`` (``train.npz`` and ``public_test.npz`` in that folder)."""

    images: bool = False
    crops_dir: Path | None = None

    @property
    def kind(self) -> str:
        return FACE_FROM_FER if self.images else FACE_FROM_CROPS

    def path(self, root: Path, split: str) -> Path:
        """The FER-layout file whose faces become the ``split`` (``train``/``val``) face vectors."""
        fer = root / "fer2013" / FACE_FILES[split]
        if self.images:
            return fer
        if self.crops_dir is None:
            return live_path_crops(fer, FACE_CROP_SEEDS[split])
        path = Path(self.crops_dir) / FACE_FILES[split]
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no live-path face crops for the {split} split; make them with `python -m "
                f"umq.training.face.crops --data {fer} --out {path} --seed {FACE_CROP_SEEDS[split]}`, or leave "
                f"out --face-crops to have them made and cached")
        return path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FaceSource:
        if args.face_images and args.face_crops:
            raise SystemExit("--face-images and --face-crops exclude each other")
        return cls(images=args.face_images, crops_dir=args.face_crops)


def add_face_source_args(ap: argparse.ArgumentParser) -> None:
    """The same two options on train, calibrate and gate: they must agree with the checkpoint they work on."""
    ap.add_argument("--face-images", action="store_true",
                    help="face vectors from FER2013's own 48x48 images instead of the live-path crops")
    ap.add_argument("--face-crops", type=Path, default=None, metavar="DIR",
                    help="live-path crops already made (train.npz and public_test.npz from `python -m "
                         "umq.training.face.crops`) instead of the ones made once and cached")


def check_face_source(checkpoint: Path, face: FaceSource) -> str | None:
    """None when ``face`` gives the kind of face vectors ``checkpoint`` was trained on, else the reason it does not.
    Why: calibration and the gate are fitted on the model's outputs over the validation face vectors; fitted on
    vectors of the other kind they would be silently wrong for the shipped model. A checkpoint that records no
    source predates the live-path crops and was trained on FER2013's own images."""
    from umq.checkpoint import load_checkpoint

    trained = load_checkpoint(checkpoint, map_location="cpu").get("data", {}).get("face_vectors_from", FACE_FROM_FER)
    if trained == face.kind:
        return None
    fix = "drop --face-images" if trained == FACE_FROM_CROPS else "give --face-images"
    return f"{checkpoint} was trained on face vectors from {trained}, this run would use {face.kind}: {fix}"


def face_source_for(args: argparse.Namespace) -> FaceSource | None:
    """The face source ``calibrate``/``gate`` were given, or None (with the reason on stderr) when it is not the
    kind ``args.checkpoint`` was trained on: the one place both tools refuse a mismatch."""
    face = FaceSource.from_args(args)
    mismatch = check_face_source(Path(args.checkpoint), face)
    if mismatch:
        print(mismatch, file=sys.stderr)
        return None
    return face


def build_part(root: Path, part: str, device: str, progress: bool, face: FaceSource = FaceSource()) -> ModalityCache:
    """One cache, ``part`` = ``"<face|voice|text>-<train|val>"`` (the training or validation split)."""
    m, split = part.split("-")
    sizes, sev = (TRAIN_SIZES, SEVERITIES) if split == "train" else (VAL_SIZES, VAL_SEVERITIES)
    if m == "video":
        return build_face_cache(face.path(root, split), sizes["video"], 0, device, progress, sev)
    if m == "audio":
        if split == "val":
            return build_voice_cache(root / "ravdess", VAL_ACTORS, 0, device, progress, sev, sizes["audio"])
        # two draws of clips per actor (seeds 0 and 1), each its own cache: two processes can build them at once
        return concat([build_voice_cache(root / "ravdess", TRAIN_ACTORS, k, device, progress, sev, sizes["audio"])
                       for k in VOICE_TRAIN_DRAWS])
    if m == "text":
        csv = root / "text" / ("meld_train_sent_emo.csv" if split == "train" else "meld_dev_sent_emo.csv")
        return build_text_cache(csv, sizes["text"], 0, device, progress, sev)
    raise ValueError(f"unknown cache part {part!r}")


def load_caches(root: Path, split: str, device: str, progress: bool, face: FaceSource = FaceSource()) -> Caches:
    """The three caches of ``split`` (``train``: FER train, RAVDESS 1-16, MELD train; ``val``: FER
    public_test, RAVDESS 17-20, MELD dev), built once and then read from disk; the faces from ``face``."""
    split = "train" if split == "train" else "val"
    return {m: build_part(root, f"{m}-{split}", device, progress, face) for m in MODALITIES}


def fit_norm(c: Caches) -> NormStats:
    """Mean/std of the clean training vectors per modality (std floored: one-hot-like cue columns)."""
    mean, std = {}, {}
    for m in MODALITIES:
        x = c[m].x[:, 0]
        mean[m] = x.mean(0).astype(np.float32)
        std[m] = np.maximum(x.std(0), 0.05).astype(np.float32)
    return NormStats(mean, std, [])


FUSION_FORMS = ("residual", "expert")


def model_config(variant: str, form: str = "residual") -> UMQConfig:
    """The runtime architecture. Every mixture variant fuses on top of the quality-weighted mean of the unimodal
    heads (for the quality-unaware variants q is the present flag, i.e. plain late fusion), so the variants
    differ only in what they know about quality. ``form``: ``residual`` (shipped) adds the routed experts'
    correction to that mean; ``expert`` (the earlier form) routes to it as one more expert. UMQ alone is trained
    with the usefulness target and the degraded >= removed hinge (:mod:`umq.model.losses`): they need the quality
    estimate."""
    if form not in FUSION_FORMS:
        raise ValueError(f"fusion form must be one of {FUSION_FORMS}, got {form!r}")
    residual = form == "residual" and variant != "late_fusion"
    base = UMQConfig(modalities=[ModalitySpec(m, DIMS[m]) for m in MODALITIES], d=64, dropout=0.2,
                     input_dropout=0.1, experts=4, expert_hidden=128, unimodal_expert=not residual,
                     fusion_residual=residual)
    cfg = variant_config(base, variant)
    if cfg.use_estimator:
        cfg.loss.w_q_target = 1.0
        cfg.loss.w_twin = 1.0
    return cfg


def train_variant(variant: str, s: TripleSampler, steps: int, B: int, seed: int, progress: bool,
                  form: str = "residual") -> UMQ:
    from tqdm import tqdm

    torch.manual_seed(seed)
    model = UMQ(model_config(variant, form)).to(s.dev)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator(device=s.dev).manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc=f"train {variant} seed {seed}", disable=not progress):
        d = s.draw(B, g)
        total, _ = compute_losses(model, d.batch, d.clean, g, d.ladders if model.estimator is not None else None,
                                  d.extras)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
    return model.eval()


def _mean_std(rows: list[dict]) -> dict:
    """Per key: mean and std over seeds of nested ``{"accuracy": ...}`` or plain numbers."""
    out = {}
    for k in rows[0]:
        vals = [r[k]["accuracy"] if isinstance(r[k], dict) else r[k] for r in rows]
        out[k] = {"mean": round(float(np.mean(vals)), 4), "std": round(float(np.std(vals)), 4),
                  "seeds": [round(float(v), 4) for v in vals]}
    return out


def _aggregate(runs: list[dict], seeds: list[int]) -> dict:
    return {"seeds": list(seeds), "runs": runs,
            "conditions": _mean_std([r["conditions"] for r in runs]),
            "summary": _mean_std([r["summary"] for r in runs]),
            "degraded_vs_removed": {m: _mean_std([r["degraded_vs_removed"][m] for r in runs]) for m in MODALITIES}}


def merge_metrics(parts: list[dict]) -> dict:
    """One metrics dict from runs of the same data with other seeds/variants (seeds in the order given)."""
    out = {k: v for k, v in parts[0].items() if k not in ("models", "seeds")}
    runs: dict[str, tuple[list, list]] = {}
    for p in parts:
        for variant, m in p["models"].items():
            r = runs.setdefault(variant, ([], []))
            r[0].extend(m["runs"])
            r[1].extend(m["seeds"])
    out["models"] = {v: _aggregate(r, s) for v, (r, s) in runs.items()}
    out["seeds"] = sorted({seed for _, seeds in runs.values() for seed in seeds})
    return out


def _train_and_score(variant: str, seed: int, args, s_train: TripleSampler, s_val: TripleSampler,
                     trip: dict) -> tuple[UMQ, dict]:
    t1 = time.time()
    model = train_variant(variant, s_train, args.steps, args.batch_size, seed, not args.quiet, args.fusion_form)
    conds = evaluate_model(model, s_val, trip)
    res = {"train_seconds": round(time.time() - t1, 1), "conditions": conds, "summary": summary(conds),
           "degraded_vs_removed": degraded_vs_removed(model, s_val, trip)}
    if model.estimator is not None:
        res["quality"] = quality_ordering(model, s_val, trip)
    log.info("%s seed %d: %s", variant, seed, res["summary"])
    return model, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umq.training.runtime.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="data root in the ../shared/data layout (default $UMQ_DATA)")
    ap.add_argument("--out", default=str(ASSETS), help="folder for the checkpoints and metrics.json")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="training seeds; every number is the mean over them, the checkpoints are the first seed's")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=TRAINABLE)
    ap.add_argument("--merge", nargs="+", default=None, metavar="METRICS",
                    help="only merge the metrics.json of runs made with other --seeds/--variants into --out")
    ap.add_argument("--fusion-form", choices=FUSION_FORMS, default="residual",
                    help="residual (shipped): experts add a correction to quality-weighted late fusion; expert: late "
                         "fusion is one routed expert (the earlier form, for the comparison in docs/results.md)")
    add_face_source_args(ap)
    ap.add_argument("--device", default=None)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.merge:
        merged = merge_metrics([json.loads(Path(f).read_text()) for f in args.merge])
        (Path(args.out) / "metrics.json").write_text(json.dumps(merged, indent=1))
        print(f"merged {len(args.merge)} runs into {Path(args.out) / 'metrics.json'}")
        return 0
    torch.set_num_threads(1)
    root = data_root_or_explain(args.data)
    if root is None:
        return 2
    dev = pick_device(args.device)
    t0 = time.time()
    face = FaceSource.from_args(args)
    train_c = load_caches(root, "train", "cpu", not args.quiet, face)
    val_c = load_caches(root, "val", "cpu", not args.quiet, face)
    t_cache = time.time() - t0
    norm = fit_norm(train_c)
    s_train, s_val = TripleSampler(train_c, norm, dev), TripleSampler(val_c, norm, dev)
    trip = validation_triples(val_c, 100, 1, part="report")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict = {"n_train_items": {m: len(train_c[m].y) for m in MODALITIES},
                     "n_val_items": {m: len(val_c[m].y) for m in MODALITIES},
                     "val_triples": {"n": len(trip["y"]), "drawn_from": "report half of the validation caches"},
                     "steps": args.steps, "batch_size": args.batch_size, "seeds": args.seeds,
                     "fusion_form": args.fusion_form,
                     "face_vectors_from": face.kind,
                     "cache_seconds": round(t_cache, 1), "encoders": encoder_reference(val_c, trip), "models": {}}
    for variant in args.variants:
        runs = []
        for k, seed in enumerate(args.seeds):
            model, res = _train_and_score(variant, seed, args, s_train, s_val, trip)
            runs.append(res)
            if k == 0 and variant in TRAINABLE:  # the ablation too, so it can be compared outside the metrics
                data = {"kind": "runtime", "feature_recipe": FEATURE_RECIPE, "modalities": list(MODALITIES),
                        "versions": {m: version_names(m) for m in MODALITIES}, "licence": LICENCE,
                        "encoders": {m: encoder_digest(m) for m in MODALITIES},
                        "encoder_weights": {m: encoder_weights_digest(m) for m in MODALITIES},
                        "face_vectors_from": face.kind}
                save_checkpoint(out / f"{variant}.pt", kind=variant, model=model.cpu(), labels=list(EMOTIONS),
                                norm=norm, data=data, metrics={"seed": seed, **res["summary"]})
        metrics["models"][variant] = _aggregate(runs, args.seeds)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"wrote {', '.join(v + '.pt' for v in args.variants)} and metrics.json to {out} "
          f"in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
