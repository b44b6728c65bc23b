"""Perception: raw signals -> per-modality evidence (embedding, the encoder's own probabilities, quality cues).

One package per front-end, each with the same parts: ``frontend.py`` (what runs live), ``cues.py`` (quality
cues from the signal), ``net.py`` (the encoder's architecture and loader), ``corrupt.py`` (the signal corruptions
the quality lab and training use):

* :mod:`.face` perceives the **video** modality (detector, alignment, tracker, expression net);
* :mod:`.voice` perceives the **audio** modality (features, voice activity, speaker normaliser, CRNN or Whisper
  head);
* :mod:`.text` perceives the **text** modality (MiniLM sentence features, context-aware head, transcript context).

Shared: :mod:`.packaged` (models shipped inside pip packages) and :mod:`.digests` (their pinned SHA-256),
:mod:`.asr` (speech -> transcript lines, a text source). Training, porting and evaluation of the encoders live in
:mod:`umq.training`; nothing here imports it. The names below are the public surface the app imports; they load
on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "FaceFrontEnd": "face.frontend", "FaceTracker": "face.frontend",
    "VoiceFrontEnd": "voice.frontend", "SileroVAD": "voice.vad",
    "TextFrontEnd": "text.frontend", "TranscriptContext": "text.context",
    "StreamingTranscriber": "asr",
    "PACKAGED_MODELS": "digests",
}
__all__ = ["FaceFrontEnd", "FaceTracker", "PACKAGED_MODELS", "SileroVAD", "StreamingTranscriber", "TextFrontEnd",
           "TranscriptContext", "VoiceFrontEnd"]

if TYPE_CHECKING:
    from umq.perception.asr import StreamingTranscriber
    from umq.perception.digests import MODELS as PACKAGED_MODELS
    from umq.perception.face.frontend import FaceFrontEnd, FaceTracker
    from umq.perception.text.context import TranscriptContext
    from umq.perception.text.frontend import TextFrontEnd
    from umq.perception.voice.frontend import VoiceFrontEnd
    from umq.perception.voice.vad import SileroVAD


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'umq.perception' has no attribute {name!r}")
    module = importlib.import_module(f"umq.perception.{_PUBLIC[name]}")
    return getattr(module, "MODELS" if name == "PACKAGED_MODELS" else name)
