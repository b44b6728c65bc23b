"""The quality lab: corruptions applied to a window's raw signals before perception.

The dashboard's sliders set a :class:`LabSettings`; :class:`QualityLab` holds the current one (replaced
atomically, read by the perception thread without locks) and :meth:`QualityLab.apply` returns a corrupted copy
of a :class:`~streams.windows.Window`. Corruptions of a frame are seeded by the frame's index, so the same frame
is corrupted the same way in every overlapping window (the face front-end's per-frame cache stays valid).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from streams.packets import SourceState, VideoFrame
from streams.windows import AudioSlice, ModalityHealth, TextSlice, VideoSlice, Window
from umq.perception.face import corrupt as video_corrupt
from umq.perception.text import corrupt as text_corrupt
from umq.perception.voice.corrupt import clip_fraction

REFERENCE_SPEECH_RMS = 10 ** (-26 / 20)  # noise level for windows without speech: typical speech at -26 dBFS


@dataclass(frozen=True)
class LabSettings:
    """What the quality lab does to the inputs; the defaults change nothing.

    Attributes:
        blur, dark, occlude, image_noise: image corruption severities in [0, 1] (see video_corrupt).
        frame_drop: fraction of frames removed before perception (0-1).
        camera_off: remove all frames and mark video missing, as an unplugged camera would.
        noise_snr_db: add white noise at this SNR (dB) relative to the window's speech; ``None`` = off.
        mute: zero the audio (a muted microphone: samples arrive, but they are silent).
        clipping: fraction of samples clipped (0-0.5).
        word_drop, word_replace: fraction of transcript words dropped or replaced by random words.
        no_transcript: remove the transcript and mark text missing.
    """

    blur: float = 0.0
    dark: float = 0.0
    occlude: float = 0.0
    image_noise: float = 0.0
    frame_drop: float = 0.0
    camera_off: bool = False
    noise_snr_db: float | None = None
    mute: bool = False
    clipping: float = 0.0
    word_drop: float = 0.0
    word_replace: float = 0.0
    no_transcript: bool = False

    def __post_init__(self) -> None:
        for name in ("blur", "dark", "occlude", "image_noise", "frame_drop", "word_drop", "word_replace"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"LabSettings.{name} must be in [0, 1], got {v!r}")
        if not 0.0 <= self.clipping <= 0.5:
            raise ValueError(f"LabSettings.clipping must be in [0, 0.5], got {self.clipping!r}")
        if self.noise_snr_db is not None and not (math.isfinite(self.noise_snr_db) and -20 <= self.noise_snr_db <= 60):
            raise ValueError(f"LabSettings.noise_snr_db must be None or in [-20, 60] dB, got {self.noise_snr_db!r}")

    @property
    def video_active(self) -> bool:
        return bool(self.blur or self.dark or self.occlude or self.image_noise or self.frame_drop or self.camera_off)

    @property
    def audio_active(self) -> bool:
        return self.noise_snr_db is not None or self.mute or self.clipping > 0

    @property
    def text_active(self) -> bool:
        return bool(self.word_drop or self.word_replace or self.no_transcript)

    @property
    def active(self) -> bool:
        return self.video_active or self.audio_active or self.text_active

    def describe(self) -> dict[str, str]:
        """modality -> what the lab is doing to it (empty when nothing), for the dashboard's reasons."""
        video_names = (("blur", "blur"), ("dark", "darkness"), ("occlude", "occlusion"), ("image_noise", "noise"),
                       ("frame_drop", "frame drop"))
        v = [f"{n} {getattr(self, k):.0%}" for k, n in video_names if getattr(self, k)]
        a = []
        if self.mute:
            a.append("muted")
        if self.noise_snr_db is not None:
            a.append(f"noise at {self.noise_snr_db:.0f} dB SNR")
        if self.clipping:
            a.append(f"clipping {self.clipping:.0%}")
        text_names = (("word_drop", "words dropped"), ("word_replace", "words replaced"))
        t = [f"{n} {getattr(self, k):.0%}" for k, n in text_names if getattr(self, k)]
        return {"video": "camera off" if self.camera_off else ", ".join(v), "audio": ", ".join(a),
                "text": "transcript removed" if self.no_transcript else ", ".join(t)}


def _missing(health: ModalityHealth, reason: str) -> ModalityHealth:
    return dataclasses.replace(health, present=False, reason=reason, received=0, device_state=SourceState.UNAVAILABLE,
                               device_reason=reason)


class QualityLab:
    """Holds the current :class:`LabSettings`; :meth:`apply` corrupts windows accordingly."""

    def __init__(self, settings: LabSettings | None = None) -> None:
        self._settings = settings or LabSettings()

    @property
    def settings(self) -> LabSettings:
        return self._settings

    def set(self, settings: LabSettings | None = None, **changes) -> LabSettings:
        """Replace the settings (whole, or some fields); returns the new value. Thread-safe (one assignment)."""
        new = settings if settings is not None else dataclasses.replace(self._settings, **changes)
        self._settings = new
        return new

    def reset(self) -> None:
        self._settings = LabSettings()

    def apply(self, window: Window, settings: LabSettings | None = None) -> Window:
        s = settings or self._settings
        if not s.active:
            return window
        return dataclasses.replace(window, video=self._video(window.video, s), audio=self._audio(window, s),
                                   text=self._text(window, s), meta={**window.meta, "lab": s.describe()})

    @staticmethod
    def corrupt_frame(frame: VideoFrame, s: LabSettings) -> VideoFrame | None:
        """One frame as perception sees it under ``s``: ``None`` when the lab drops it (camera off is the
        window's business). Seeded by the frame's index, so a frame looks the same in every window and in the
        dashboard's preview."""
        rng = np.random.default_rng(frame.index)
        if s.frame_drop and rng.random() < s.frame_drop:
            return None
        steps = [(kind, sev) for kind, sev in (("dark", s.dark), ("blur", s.blur), ("occlude", s.occlude),
                                               ("noise", s.image_noise)) if sev]
        if not steps:
            return frame

        def make() -> np.ndarray:  # deferred: only the frames perception samples are corrupted (and decoded)
            rng = np.random.default_rng(frame.index)  # the same draws as above, whenever this runs
            if s.frame_drop:
                rng.random()
            img = frame.image
            for kind, sev in steps:
                img = video_corrupt.corrupt(img, kind, sev, rng)
            return img

        return VideoFrame.deferred(frame.t, frame.index, make)

    # -- per modality -------------------------------------------------------------------------------------
    @staticmethod
    def _video(v: VideoSlice, s: LabSettings) -> VideoSlice:
        if not s.video_active:
            return v
        if s.camera_off:
            return VideoSlice((), _missing(v.health, "camera off (quality lab)"))
        frames = [g for g in (QualityLab.corrupt_frame(f, s) for f in v.frames) if g is not None]
        health = v.health
        if v.health.present and not frames:
            health = _missing(v.health, f"all frames dropped (quality lab, {s.frame_drop:.0%})")
        elif frames:
            health = dataclasses.replace(health, received=len(frames),
                                         dropped=health.dropped + max(0, len(v.frames) - len(frames)))
        return VideoSlice(tuple(frames), health)

    @staticmethod
    def _audio(w: Window, s: LabSettings) -> AudioSlice:
        a = w.audio
        if not s.audio_active or not a.health.present:
            return a
        x = a.samples.astype(np.float32, copy=True)
        if s.mute:
            x[:] = 0.0
        else:
            if s.noise_snr_db is not None:
                valid = a.valid & np.isfinite(x)
                rms = float(np.sqrt(np.mean(np.square(x[valid], dtype=np.float64)))) if valid.any() else 0.0
                ref = rms if rms > 10 ** (-50 / 20) else REFERENCE_SPEECH_RMS
                rng = np.random.default_rng(w.index)
                noise_rms = np.float32(ref / 10 ** (s.noise_snr_db / 20))
                x = x + rng.standard_normal(x.shape[0]).astype(np.float32) * noise_rms
                x[~a.valid] = 0.0
            if s.clipping > 0:
                x = clip_fraction(x, max(1e-3, min(s.clipping, 0.5)))
        return dataclasses.replace(a, samples=x)

    @staticmethod
    def _text(w: Window, s: LabSettings) -> TextSlice:
        t = w.text
        if not s.text_active:
            return t
        if s.no_transcript:
            return TextSlice((), _missing(t.health, "transcript removed (quality lab)"))
        segs = []
        for k, seg in enumerate(t.segments):
            rng = np.random.default_rng(int(seg.t0 * 1000) + k)
            text = seg.text
            if s.word_drop:
                text = text_corrupt.drop_words(text, s.word_drop, rng)
            if s.word_replace:
                text = text_corrupt.replace_words(text, s.word_replace, rng)
            segs.append(dataclasses.replace(seg, text=text))
        return TextSlice(tuple(segs), t.health)
