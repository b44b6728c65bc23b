"""Per-modality input vectors of the runtime UMQ model.

Each modality becomes one vector (``T = 1``): the encoder's embedding, its own 7-class probabilities and the
modality's quality cues. The cues are side information the quality estimator may use (brightness, blur, SNR,
speech ratio, garbled words); the estimator is still trained by ranking, not on cue thresholds. The same
functions build vectors for the training cache and for live windows, so training and use cannot drift apart.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from umq import paths
from umq.perception.face.cues import FaceCues
from umq.perception.text.cues import TextCues
from umq.perception.voice.cues import VoiceCues

FEATURE_RECIPE = 1  # bump with any change to this module: runtime checkpoints record it and are checked on load
EMBED = 128  # face, voice and text encoders all give 128-d embeddings
N_CLASSES = 7
FACE_DIM = EMBED + N_CLASSES + 7 + 1  # + FaceCues.vector() + frames received / expected
VOICE_DIM = EMBED + N_CLASSES + len(VoiceCues.NAMES)
TEXT_DIM = EMBED + N_CLASSES + len(TextCues.VECTOR_NAMES)
DIMS = {"video": FACE_DIM, "audio": VOICE_DIM, "text": TEXT_DIM}
MODALITIES = ("video", "audio", "text")


def _cat(parts: list[torch.Tensor], device) -> torch.Tensor:
    return torch.cat([p.to(device=device, dtype=torch.float32).reshape(-1) for p in parts])


def face_vector(emb: torch.Tensor, probs: torch.Tensor, cues: FaceCues, received_ratio: float) -> torch.Tensor:
    """``emb [E]`` and ``probs [7]``: means over the window's frames with a face (zeros when none)."""
    dev = emb.device
    side = torch.from_numpy(np.append(cues.vector(), np.float32(min(max(received_ratio, 0.0), 1.0))))
    return _cat([emb, probs, side], dev)


def voice_vector(emb: torch.Tensor, probs: torch.Tensor, cues: VoiceCues) -> torch.Tensor:
    return _cat([emb, probs, torch.from_numpy(cues.vector())], emb.device)


def text_vector(emb: torch.Tensor, probs: torch.Tensor, cues: TextCues) -> torch.Tensor:
    return _cat([emb, probs, torch.tensor(cues.as_vector())], emb.device)


def masked_mean(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``rows [K, D]`` where ``mask [K]``; zeros when no row is valid (no host sync)."""
    w = mask.to(rows.dtype).unsqueeze(-1)
    return (rows * w).sum(0) / w.sum().clamp_min(1.0)


# The code that turns one item into a vector, per modality (paths under umq/perception): a change to any of these
# changes the vectors, so training caches are keyed by it and a runtime checkpoint records it.
FRONT_END_SOURCES = {
    "video": ("face/net.py", "face/cues.py", "face/corrupt.py"),
    "audio": ("voice/net.py", "voice/ensemble.py", "voice/head.py", "voice/whisper.py", "voice/frontend.py",
              "voice/features.py", "voice/normalize.py", "voice/vad.py", "voice/cues.py", "voice/corrupt.py"),
    "text": ("text/net.py", "text/frontend.py", "text/normalize.py", "text/cues.py", "text/corrupt.py"),
}


def _weights_path(modality: str) -> Path:
    if modality == "video":
        from umq.perception.face.net import DEFAULT_WEIGHTS
    elif modality == "audio":
        from umq.perception.voice.net import DEFAULT_WEIGHTS
    else:
        from umq.perception.text.net import DEFAULT_WEIGHTS
    return Path(DEFAULT_WEIGHTS)


def encoder_weights_digest(modality: str) -> str:
    """SHA-256 (16 hex) of the modality's encoder weight file and the feature recipe: what a runtime checkpoint
    must match live (other weights mean other input vectors). Front-end *code* is left out on purpose: a
    refactor must not flag a checkpoint, and a code change that does change the vectors bumps
    :data:`FEATURE_RECIPE`."""
    h = hashlib.sha256(f"recipe={FEATURE_RECIPE}".encode())
    h.update(_weights_path(modality).read_bytes())
    return h.hexdigest()[:16]


def encoder_digest(modality: str) -> str:
    """SHA-256 (16 hex) of the modality's encoder weight file, its front-end sources and the feature recipe: the
    training caches' key (conservative: any edit of a front-end source rebuilds them)."""
    h = hashlib.sha256(f"recipe={FEATURE_RECIPE}".encode())
    h.update(_weights_path(modality).read_bytes())
    for name in FRONT_END_SOURCES[modality]:
        src = paths.PERCEPTION_SRC / name
        h.update(name.encode())
        h.update(src.read_bytes() if src.is_file() else b"-")
    return h.hexdigest()[:16]
