"""Audio emotion encoder: a small CRNN on speaker-normalised log-mels + voice descriptors, its loader, and the
folder evaluation used by ``python -m umq.evaluate audio``.

Architecture (:class:`VoiceEmotionNet`, ~0.25 M parameters, ~1 MB of float32 weights):

* mel branch: the 64 log-mel channels as a 1x64xT image through 4 conv blocks (3x3 conv, BatchNorm, ReLU;
  the first with stride 2x2, then max-pool 2x2, 2x2, 2x1) -> 96 channels x 4 mel bands x T/8, flattened per
  time step (80 ms);
* descriptor branch: the 5 descriptor channels (log2 f0, periodicity, RMS dB, log flatness, ZCR) average-pooled
  to T/8;
* both concatenated, a 1x1 conv to 128, a bidirectional GRU (64 per direction);
* attentive statistics pooling over the valid time steps (attention-weighted mean and std) -> linear ->
  **embedding** (128-d, what the fusion model consumes) -> dropout -> linear -> 7 logits in
  :data:`~umq.labels.EMOTIONS` order.

Inputs are the ``[B, 69, T]`` features and ``[B, T]`` mask of :class:`~umq.perception.voice.VoiceFrontEnd`
(any ``T >= 1``, shorter than 16 frames is padded and masked; trained on 2.0 s windows, T = 201).

Checkpoint (``assets/voice/voice_net.pt``, read with ``torch.load(weights_only=True)``): a dict with
``format_version``, ``config``, ``labels``, ``metrics``, ``feature_stats`` (the speaker normaliser's prior) and
``state_dict``. The weights were trained on RAVDESS (CC BY-NC-SA 4.0): research / non-commercial use only.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from umq.labels import EMOTIONS, canonical

from .audio_corrupt import corrupt
from .voice import N_FEATURES, N_MELS, WINDOW_SAMPLES, FeatureStats, VoiceFrontEnd, collate, default_device

FORMAT_VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "voice" / "voice_net.pt"
APP_LABELS: tuple[str, ...] = EMOTIONS

DEFAULT_CONFIG: dict = {
    "arch": "crnn_asp", "n_mels": N_MELS, "n_desc": N_FEATURES - N_MELS, "channels": [16, 32, 64, 96],
    "strides": [[2, 2], [1, 1], [1, 1], [1, 1]], "pools": [[1, 1], [2, 2], [2, 2], [2, 1]], "hidden": 128,
    "rnn": 64, "emb": 128, "num_classes": len(APP_LABELS), "dropout": 0.3,
}


class VoiceEmotionNet(nn.Module):
    """CRNN with attentive statistics pooling; ``forward(x [B,69,T], mask [B,T]) -> (logits [B,7], emb [B,E])``."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config or {})
        self.config = cfg
        self.n_mels, self.n_desc = int(cfg["n_mels"]), int(cfg["n_desc"])
        blocks, c_in, f = [], 1, self.n_mels
        self.time_stride = 1
        for c, st, pl in zip(cfg["channels"], cfg["strides"], cfg["pools"]):
            blocks += [nn.Conv2d(c_in, c, 3, stride=tuple(st), padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True)]
            if tuple(pl) != (1, 1):
                blocks.append(nn.MaxPool2d(tuple(pl)))
            c_in, f = c, ((f - 1) // st[0] + 1) // pl[0]
            self.time_stride *= st[1] * pl[1]
        self.cnn = nn.Sequential(*blocks)
        self.proj = nn.Sequential(nn.Conv1d(c_in * f + self.n_desc, cfg["hidden"], 1, bias=False),
                                  nn.BatchNorm1d(cfg["hidden"]), nn.ReLU(inplace=True))
        self.rnn = nn.GRU(cfg["hidden"], cfg["rnn"], batch_first=True, bidirectional=True)
        d = 2 * cfg["rnn"]
        self.att = nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, 1))
        self.emb = nn.Sequential(nn.Linear(2 * d, cfg["emb"]), nn.BatchNorm1d(cfg["emb"]), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(cfg["dropout"])
        self.head = nn.Linear(cfg["emb"], cfg["num_classes"])
        self.labels: tuple[str, ...] = APP_LABELS
        self.feature_stats: FeatureStats | None = None
        self.metrics: dict = {}

    @property
    def embedding_dim(self) -> int:
        return int(self.config["emb"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, t = x.shape
        if c != self.n_mels + self.n_desc:
            raise ValueError(f"expected {self.n_mels + self.n_desc} feature channels, got {c}")
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        if t < 2 * self.time_stride:  # too short for the pooling: pad (masked)
            x = F.pad(x, (0, 2 * self.time_stride - t))
            mask = F.pad(mask, (0, 2 * self.time_stride - t))
        h = self.cnn(x[:, None, : self.n_mels])  # [B, C, F', T']
        tt = h.shape[-1]
        h = h.flatten(1, 2)
        s = self.time_stride
        d = F.avg_pool1d(x[:, self.n_mels:], s, s, ceil_mode=True) if s > 1 else x[:, self.n_mels:]
        m = (F.avg_pool1d(mask[:, None].float(), s, s, ceil_mode=True)[:, 0] if s > 1 else mask.float()) >= 0.5
        if d.shape[-1] < tt:  # conv/pool rounding can leave the CNN one step longer
            d = F.pad(d, (0, tt - d.shape[-1]))
            m = F.pad(m, (0, tt - m.shape[-1]))
        d, m = d[..., :tt], m[..., :tt]
        h = self.proj(torch.cat([h, d], 1)).transpose(1, 2)  # [B, T', H]
        h, _ = self.rnn(h)
        # rows with no valid step attend everywhere instead of producing NaN
        m = m | ~m.any(dim=1, keepdim=True)
        a = self.att(h).squeeze(-1).masked_fill(~m, float("-inf"))
        w = torch.softmax(a, dim=1).unsqueeze(-1)
        mu = (w * h).sum(1)
        sd = ((w * (h - mu.unsqueeze(1)) ** 2).sum(1) + 1e-5).sqrt()
        e = self.emb(torch.cat([mu, sd], 1))
        return self.head(self.drop(e)), e

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode ``(probabilities [B,7], embedding [B,E])``."""
        was = self.training
        self.eval()
        logits, e = self(x, mask)
        self.train(was)
        return logits.softmax(-1), e


def build_voice_net(config: dict) -> nn.Module:
    """The encoder named by ``config["arch"]``: ``crnn_asp`` (log-mel CRNN) or ``whisper_asp``
    (:class:`~umq.perception.voice_head.WhisperHeadNet` on the Whisper front-end)."""
    arch = config.get("arch", "crnn_asp")
    if arch == "crnn_asp":
        return VoiceEmotionNet(config)
    if arch == "whisper_asp":
        from .voice_head import WhisperHeadNet

        return WhisperHeadNet(config)
    raise ValueError(f"unknown voice encoder arch {arch!r}")


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------------------------- checkpoint
def save_voice_net(net: nn.Module, path: str | Path, metrics: dict | None = None) -> Path:
    if net.feature_stats is None:
        raise ValueError("a voice checkpoint needs the feature stats (speaker normaliser prior)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format_version": FORMAT_VERSION,
        "config": dict(net.config),
        "labels": list(net.labels),
        "metrics": metrics if metrics is not None else net.metrics,
        "feature_stats": net.feature_stats.to_json(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
    }
    torch.save(blob, path)
    return path


def load_voice_net(path: str | Path | None = None, device: torch.device | str | None = None) -> nn.Module:
    """Load the voice encoder (default ``assets/voice/voice_net.pt``, or ``$UMQ_VOICE_WEIGHTS``) in eval mode on
    ``device`` (default: CUDA when available).

    Raises:
        FileNotFoundError: the file is missing (the message names it).
        ValueError: the file is not a voice checkpoint, is corrupt, or has another ``format_version``.
    """
    if path is None:
        path = os.environ.get("UMQ_VOICE_WEIGHTS") or DEFAULT_WEIGHTS  # override: evaluation of other weights
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"voice encoder weights not found: {path} (train them with "
                                f"`python -m umq.perception.train_voice`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated / not a torch file / unsafe pickle
        raise ValueError(f"cannot read voice encoder checkpoint {path}: {type(e).__name__}: {e}") from e
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(f"{path} is not a voice encoder checkpoint (no state_dict)")
    if blob.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {blob.get('format_version')!r}; this code reads "
                         f"{FORMAT_VERSION}")
    if tuple(blob.get("labels", ())) != APP_LABELS:
        raise ValueError(f"{path} has labels {blob.get('labels')}; expected {APP_LABELS}")
    try:
        net = build_voice_net(blob["config"])
        net.load_state_dict(blob["state_dict"])
        net.feature_stats = FeatureStats.from_json(blob["feature_stats"])
    except Exception as e:
        raise ValueError(f"{path}: checkpoint does not match the model: {type(e).__name__}: {e}") from e
    net.metrics = blob.get("metrics", {})
    dev = torch.device(device) if device is not None else default_device()
    return net.to(dev).eval()


# ---------------------------------------------------------------------------------------------- evaluation
def classification_report(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int = len(APP_LABELS)) -> dict:
    """Accuracy, macro / weighted F1, per-class recall and the confusion matrix (rows = truth)."""
    yt, yp = np.asarray(y_true, int), np.asarray(y_pred, int)
    cm = np.zeros((n_classes, n_classes), int)
    np.add.at(cm, (yt, yp), 1)
    support = cm.sum(1)
    tp = np.diag(cm).astype(float)
    recall = np.divide(tp, support, out=np.zeros(n_classes), where=support > 0)
    prec_den = cm.sum(0)
    precision = np.divide(tp, prec_den, out=np.zeros(n_classes), where=prec_den > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n_classes),
                   where=(precision + recall) > 0)
    present = support > 0
    n = int(support.sum())
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / n) if n else 0.0,
        "per_class_recall": {APP_LABELS[i]: float(recall[i]) for i in range(n_classes) if present[i]},
        "confusion": cm.tolist(),
    }


def center_crop(x: np.ndarray, n: int = WINDOW_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The central ``n`` samples, zero-padded (and marked invalid) when the clip is shorter."""
    x = np.asarray(x, np.float32)
    valid = np.ones(n, bool)
    if x.shape[0] >= n:
        a = (x.shape[0] - n) // 2
        return x[a:a + n], valid
    out = np.zeros(n, np.float32)
    a = (n - x.shape[0]) // 2
    out[a:a + x.shape[0]] = x
    valid[:] = False
    valid[a:a + x.shape[0]] = True
    return out, valid


def read_audio(path: str | Path) -> np.ndarray:
    """Mono float32 at 16 kHz (soundfile; other rates are resampled with librosa)."""
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != 16_000:
        import librosa

        x = librosa.resample(x, orig_sr=sr, target_sr=16_000).astype(np.float32)
    return x


def read_labels(data_dir: str | Path, actors: Iterable[int] | None = None) -> tuple[list[dict], int]:
    """Rows of ``DIR/labels.csv`` with an Ekman-7 ``label`` index; returns ``(rows, skipped)`` where
    ``skipped`` counts rows whose emotion is outside the label set (or empty)."""
    data_dir = Path(data_dir)
    path = data_dir / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no labels.csv in {data_dir}")
    keep = None if actors is None else {int(a) for a in actors}
    rows, skipped = [], 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"clip_id", "emotion", "audio"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} lacks columns {sorted(missing)}")
        for r in reader:
            if keep is not None and (not r.get("actor") or int(r["actor"]) not in keep):
                continue
            try:
                lab = APP_LABELS.index(canonical(r["emotion"]))
            except (KeyError, ValueError):
                skipped += 1
                continue
            rows.append({"clip_id": r["clip_id"], "label": lab, "audio": data_dir / r["audio"],
                         "actor": r.get("actor") or None})
    return rows, skipped


def session_order(rows: list[dict], seed: int = 0) -> list[dict]:
    """The clips in the order a live session would meet them: a fixed pseudo-random shuffle (``labels.csv`` of
    RAVDESS is sorted by emotion, which would feed the normaliser all neutral clips first)."""
    perm = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in perm]


def evaluate_audio_folder(data_dir: str | Path, net: VoiceEmotionNet, device: torch.device | str | None = None,
                          actors: Iterable[int] | None = None, mode: str = "crop", normalize: bool = True,
                          enrol: bool = False, seed: int = 0, corruption: tuple[str, float] | None = None,
                          progress: bool = False) -> dict:
    """Score ``net`` on a folder of labelled clips (``DIR/labels.csv``: ``clip_id, emotion, audio`` [, ``actor``]).

    Each clip is read, sanitised and passed through a :class:`VoiceFrontEnd` exactly as the live app would:
    ``mode="crop"`` scores the central 2.0 s window (the app's window; shorter clips are zero-padded and
    masked), ``mode="clip"`` the whole clip in one pass.

    With ``normalize`` the running speaker normaliser is used, one session per ``actor``: the actor's clips are
    met in :func:`session_order` (seeded shuffle) and each clip updates the state before it is scored, so a
    speaker's first clips see little adaptation (what the live app does). ``enrol=True`` instead lets the
    normaliser first listen to all of the actor's clips, then scores them with that state frozen (a speaker
    enrolled for ~3 minutes; an upper bound for long sessions). Without an ``actor`` column every clip is its
    own session. ``normalize=False`` uses the fixed training prior.

    ``corruption=(kind, severity)`` degrades every clip first with :func:`~umq.perception.audio_corrupt.corrupt`
    (seeded per clip; babble is synthetic), for robustness curves.

    Returns ``dict(n, accuracy, macro_f1, weighted_f1, per_class_recall, confusion, skipped)`` plus ``mode``,
    ``normalize``, ``enrol``, ``corruption`` and ``unreadable`` (clips that could not be read, also counted in
    ``skipped``).
    """
    if mode not in ("crop", "clip"):
        raise ValueError("mode is 'crop' or 'clip'")
    device = torch.device(device) if device is not None else next(net.parameters()).device
    rows, skipped = read_labels(data_dir, actors)
    net = net.to(device).eval()
    groups: dict[object, list[dict]] = {}
    for r in rows:
        key = r["actor"] if r["actor"] is not None else r["clip_id"]
        groups.setdefault(key, []).append(r)
    y_true, y_pred, unreadable = [], [], 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc="audio eval")
    for group in groups.values():
        fe = VoiceFrontEnd(net.feature_stats, device=device, normalize=normalize)
        windows = []
        for r in session_order(group, seed):
            try:
                x = read_audio(r["audio"])
            except Exception:
                unreadable += 1
                continue
            xs, v = center_crop(x) if mode == "crop" else (x, None)
            if corruption is not None:
                kind, severity = corruption
                rng = np.random.default_rng([seed, len(y_true) + len(windows), 7])
                xs, v2 = corrupt(xs, kind, severity, rng)
                v = v2 if v is None else (v & v2)
            windows.append((r, (xs, v)))
        if enrol and normalize:
            for _, (xs, v) in windows:
                fe(xs, v)
        for r, (xs, v) in windows:
            feats = fe(xs, v, update=not enrol)
            xb, mb = collate([feats])
            probs, _ = net.predict(xb, mb)
            y_true.append(r["label"])
            y_pred.append(int(probs.argmax(-1).item()))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    out = classification_report(y_true, y_pred)
    out.update(skipped=skipped + unreadable, unreadable=unreadable, mode=mode, normalize=normalize,
               enrol=bool(enrol and normalize), corruption=list(corruption) if corruption else None)
    return out
