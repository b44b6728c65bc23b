"""Audio quality cues for one analysis window: how usable is the voice evidence, and why not.

The cues are cheap, model-free measurements on the raw window (host numpy), so they stay meaningful exactly when
the emotion encoder does not: a silent, clipped, noisy or half-missing window. :class:`VoiceCues` is what the
fusion model and the dashboard read; :meth:`VoiceCues.describe` is the short human reason shown when a window is
poor ("mic silent", "noisy: SNR 3 dB", "clipping 12%", "no speech").

Estimators (all over the window's *valid* samples only, i.e. where audio actually arrived):

* ``level_dbfs``: RMS level, ``10*log10(mean(x^2))`` re. full scale 1.0, floored at -120 dB.
* ``snr_db``: a percentile noise-floor estimator (minimum statistics on one window). The valid samples are cut
  into non-overlapping 20 ms frames; the noise power is the 10th percentile of the frame powers divided by 0.9
  (the 10th percentile of a stationary Gaussian noise's 20 ms frame power is about 0.9 of its mean), the signal
  power is the mean frame power minus that noise power, ``snr = 10*log10(signal/noise)``, clamped to
  [-10, 60] dB. It needs no VAD, so it keeps working when noise fools the VAD; it assumes at least ~10 % of the
  window is a speech pause or a quiet phoneme. Known biases: continuous loud speech with no pause reads lower
  than its true SNR (quiet phonemes count as noise), non-stationary noise (babble) reads higher (its quiet
  moments look like the floor). A window without enough valid frames, or a silent one, gets the floor -10 dB.
* ``clipping_ratio``: fraction of valid samples sitting on a plateau at the window's peak magnitude: ``|x|`` within
  0.1 % of ``max|x|`` in a run of at least 2 consecutive samples (clean audio touches its peak in isolated
  samples; a saturated converter or a limiter holds it). Samples at digital full scale (>= 0.999) always count.
  Windows whose peak is below -60 dBFS count as unclipped.
* ``speech_ratio``: fraction of the valid 32 ms frames whose silero-vad speech probability is >= 0.5.
* ``valid_ratio``: fraction of the window's samples that arrived (``AudioSlice.valid``) and were finite.
* ``pitch_fraction``: fraction of valid 10 ms frames with a voice pitch: librosa ``yin`` f0 in 60-600 Hz whose
  normalised autocorrelation at the yin period (the periodicity) is >= 0.5.
* ``nonfinite_ratio``: fraction of the window's samples that were NaN or +-inf (sanitised to 0 and treated as
  invalid before anything else ran).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

LEVEL_FLOOR_DB = -120.0
SNR_MIN_DB, SNR_MAX_DB = -10.0, 60.0
SNR_FRAME = 320  # 20 ms at 16 kHz
SNR_PERCENTILE = 10.0
SNR_PERCENTILE_BIAS = 0.9  # E[10th pct of 20 ms frame power] / mean power for Gaussian noise (chi2, 320 dof)
CLIP_REL_TOL = 1e-3
CLIP_FULL_SCALE = 0.999
CLIP_MIN_PEAK = 1e-3  # -60 dBFS


@dataclass(frozen=True)
class VoiceCues:
    """Quality cues of one audio window (see the module docstring for the estimators).

    Attributes:
        level_dbfs: RMS level of the valid samples, dB re. full scale (-120 .. 0).
        snr_db: estimated speech-to-noise ratio, dB (-10 .. 60).
        clipping_ratio: fraction of valid samples that are clipped (0 .. 1).
        speech_ratio: fraction of valid 32 ms frames the VAD calls speech (0 .. 1).
        valid_ratio: fraction of the window's samples that arrived and were finite (0 .. 1).
        pitch_fraction: fraction of valid 10 ms frames with a detectable voice pitch (0 .. 1).
        nonfinite_ratio: fraction of the window's samples that were NaN/inf before sanitising (0 .. 1).
    """

    level_dbfs: float
    snr_db: float
    clipping_ratio: float
    speech_ratio: float
    valid_ratio: float
    pitch_fraction: float
    nonfinite_ratio: float = 0.0
    duration_s: float = 2.0  # seconds of audio handed to the front-end (not in vector(): fixed-size fusion input)

    # thresholds of describe(); class attributes so the UI and the docs can quote them
    SILENT_DBFS = -60.0
    NOISY_SNR_DB = 10.0
    CLIPPING = 0.01
    NO_SPEECH = 0.1
    GAPS = 0.5
    TOO_SHORT_S = 0.5
    LONGEST_S = 30.0  # the front-end scores at most the last 30 s of a longer input

    def __post_init__(self) -> None:
        for name in ("level_dbfs", "snr_db", "clipping_ratio", "speech_ratio", "valid_ratio", "pitch_fraction",
                     "nonfinite_ratio", "duration_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"VoiceCues.{name} must be a finite number, got {v!r}")
        for name in ("clipping_ratio", "speech_ratio", "valid_ratio", "pitch_fraction", "nonfinite_ratio"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"VoiceCues.{name} is a ratio in [0, 1], got {v}")
        if not LEVEL_FLOOR_DB <= self.level_dbfs <= 0.5:
            raise ValueError(f"VoiceCues.level_dbfs must be in [{LEVEL_FLOOR_DB}, 0] dBFS, got {self.level_dbfs}")
        if not SNR_MIN_DB <= self.snr_db <= SNR_MAX_DB:
            raise ValueError(f"VoiceCues.snr_db must be in [{SNR_MIN_DB}, {SNR_MAX_DB}], got {self.snr_db}")

    @property
    def silent(self) -> bool:
        return self.valid_ratio > 0 and self.level_dbfs < self.SILENT_DBFS

    @property
    def usable(self) -> bool:
        """Worth feeding to the emotion encoder: audio arrived, not silent, some speech."""
        return self.valid_ratio > 0 and not self.silent and self.speech_ratio > 0

    def reasons(self) -> list[str]:
        """Short human reasons this window's audio is poor, worst first; empty when it is fine."""
        out: list[str] = []
        if self.duration_s <= 0.0:
            return ["no audio received"]
        if self.valid_ratio <= 0.0:
            return ["no audio received" if self.nonfinite_ratio == 0 else "all samples NaN/inf"]
        if self.duration_s < self.TOO_SHORT_S:
            out.append(f"too short: {self.duration_s:.2f} s")
        elif self.duration_s > self.LONGEST_S:
            out.append(f"too long: {self.duration_s:.0f} s (scored the last {self.LONGEST_S:.0f} s)")
        if self.nonfinite_ratio > 0.0:
            out.append(f"bad samples (NaN/inf) {_pct(self.nonfinite_ratio)}")
        if self.silent:
            out.append("mic silent")
        else:
            if self.clipping_ratio >= self.CLIPPING:
                out.append(f"clipping {_pct(self.clipping_ratio)}")
            if self.snr_db < self.NOISY_SNR_DB:
                out.append(f"noisy: SNR {self.snr_db:.0f} dB")
            if self.speech_ratio < self.NO_SPEECH:
                out.append("no speech")
        if self.valid_ratio < self.GAPS:
            out.append(f"audio gaps: {_pct(1.0 - self.valid_ratio)} missing")
        return out

    def describe(self) -> str:
        """One line: the reasons joined by "; ", or "" when the window is fine."""
        return "; ".join(self.reasons())

    def to_json(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}

    NAMES = ("level", "snr", "clipping", "speech", "valid", "pitch", "nonfinite")

    def vector(self) -> np.ndarray:
        """The cues scaled to about [0, 1] in :attr:`NAMES` order (a fixed-size input for a fusion model)."""
        return np.array([
            np.clip((self.level_dbfs + 80.0) / 80.0, 0.0, 1.0),
            (self.snr_db - SNR_MIN_DB) / (SNR_MAX_DB - SNR_MIN_DB),
            self.clipping_ratio, self.speech_ratio, self.valid_ratio, self.pitch_fraction, self.nonfinite_ratio,
        ], dtype=np.float32)


def _pct(r: float) -> str:
    p = 100.0 * r
    return f"{p:.0f}%" if p >= 1.0 else f"{p:.1f}%"


# ------------------------------------------------------------------------------------------------ estimators
def level_dbfs(x: np.ndarray, valid: np.ndarray) -> float:
    v = x[valid].astype(np.float64)
    if v.size == 0:
        return LEVEL_FLOOR_DB
    return float(max(LEVEL_FLOOR_DB, 10.0 * np.log10(np.mean(v * v) + 1e-30)))


def snr_db(x: np.ndarray, valid: np.ndarray, frame: int = SNR_FRAME) -> float:
    """Percentile noise-floor SNR estimate (see the module docstring)."""
    n = (x.shape[0] // frame) * frame
    if n == 0:
        return SNR_MIN_DB
    fr = x[:n].astype(np.float64).reshape(-1, frame)
    ok = valid[:n].reshape(-1, frame).all(axis=1)
    p = np.mean(fr[ok] ** 2, axis=1)
    if p.size < 10 or p.mean() <= 1e-12:  # under 0.2 s of audio, or silence (< -120 dBFS)
        return SNR_MIN_DB
    noise = np.percentile(p, SNR_PERCENTILE) / SNR_PERCENTILE_BIAS
    signal = p.mean() - noise
    if noise <= 0.0:
        return SNR_MAX_DB
    if signal <= 0.0:
        return SNR_MIN_DB
    return float(np.clip(10.0 * np.log10(signal / noise), SNR_MIN_DB, SNR_MAX_DB))


def clipping_ratio(x: np.ndarray, valid: np.ndarray) -> float:
    v = np.abs(x[valid])
    if v.size == 0:
        return 0.0
    peak = float(v.max())
    if peak < CLIP_MIN_PEAK:
        return 0.0
    at = np.abs(x) >= peak * (1.0 - CLIP_REL_TOL)
    at &= valid
    # keep samples whose left or right neighbour is also at the peak (runs of length >= 2)
    left = np.r_[False, at[:-1]]
    right = np.r_[at[1:], False]
    run = (at & (left | right)) | ((np.abs(x) >= CLIP_FULL_SCALE) & valid)
    return float(run.sum() / v.size)


def speech_ratio(vad_probs: np.ndarray, chunk_valid: np.ndarray, threshold: float = 0.5) -> float:
    p = np.asarray(vad_probs)[np.asarray(chunk_valid, bool)]
    return float(np.mean(p >= threshold)) if p.size else 0.0


def compute_cues(x: np.ndarray, valid: np.ndarray, n_nonfinite: int, vad_probs: np.ndarray,
                 chunk_valid: np.ndarray, pitched: np.ndarray, frame_valid: np.ndarray,
                 duration_s: float | None = None) -> VoiceCues:
    """All cues of one sanitised window.

    Args:
        x: float32 samples, finite, NaN/inf already replaced by 0.
        valid: bool per sample (arrived and finite).
        n_nonfinite: how many samples were NaN/inf before sanitising.
        vad_probs: silero speech probability per 512-sample chunk; ``chunk_valid`` marks chunks that are mostly
            valid.
        pitched: bool per 10 ms frame (yin pitch with periodicity >= 0.5); ``frame_valid`` marks valid frames.
        duration_s: seconds of audio the caller handed in (default: ``len(x)`` at 16 kHz).
    """
    n = max(1, x.shape[0])
    fv = np.asarray(frame_valid, bool)
    return VoiceCues(
        level_dbfs=level_dbfs(x, valid),
        snr_db=snr_db(x, valid),
        clipping_ratio=clipping_ratio(x, valid),
        speech_ratio=speech_ratio(vad_probs, chunk_valid),
        valid_ratio=float(valid.sum() / n),
        pitch_fraction=float(np.asarray(pitched, bool)[fv].mean()) if fv.any() else 0.0,
        nonfinite_ratio=float(n_nonfinite / n),
        duration_s=float(x.shape[0] / 16_000 if duration_s is None else duration_s),
    )
