"""Window -> Result: the perception front-ends and the runtime UMQ model, as two engine stages.

:meth:`Analyzer.perceive` (perception thread) applies the quality lab, runs the face, voice and text front-ends
and builds the model's input vectors on the model's device; :meth:`Analyzer.predict` (model thread) runs UMQ and
the quality-unaware baseline and builds the :class:`~umq.result.Result`. Only the final numbers cross back to
the host, once per window.

The state of each modality, the "no usable input" decision and their thresholds are one rule in
:mod:`umq.runtime.states`; the gauge number is the estimator's score through the quality calibration
(:mod:`umq.runtime.calibration`). Cue findings travel as flags beside the state.
"""
from __future__ import annotations

import concurrent.futures
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import torch

from streams.windows import Window
from umq import paths
from umq.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from umq.device import pick_device, to_device, to_host
from umq.labels import EMOTIONS
from umq.perception.text.cues import cues_from_slice
from umq.result import FaceReport, ModalityReport, Prediction, Result
from umq.runtime.calibration import QualityCalibration
from umq.runtime.features import (
    DIMS,
    FEATURE_RECIPE,
    MODALITIES,
    encoder_digest,
    encoder_weights_digest,
    face_vector,
    masked_mean,
    text_vector,
    voice_vector,
)
from umq.runtime.lab import QualityLab
from umq.runtime.perceived import ModalityPerception, Perceived
from umq.runtime.states import LOW_QUALITY, has_evidence, modality_state, state_reason

if TYPE_CHECKING:
    from umq.perception.face.frontend import FaceFrontEnd
    from umq.perception.text.context import TranscriptContext

log = logging.getLogger(__name__)

ASSETS = paths.ASSETS / "runtime"
__all__ = ["ASSETS", "LOW_QUALITY", "Analyzer", "AnalyzerConfig", "ModalityPerception", "Perceived",
           "load_runtime_model"]
# the modality names of results (what capture calls them) for the model's face / voice / text inputs


def load_runtime_model(path: str | Path, device: torch.device | str = "cpu"):
    """Load a runtime checkpoint; :class:`CheckpointError` names the file and what was expected."""
    ckpt = load_checkpoint(path, map_location="cpu")
    data = ckpt.get("data", {})
    if data.get("kind") != "runtime" or data.get("feature_recipe") != FEATURE_RECIPE:
        raise CheckpointError(f"checkpoint {path} is not a runtime model with feature recipe {FEATURE_RECIPE} "
                              f"(it says kind={data.get('kind')!r}, feature_recipe={data.get('feature_recipe')!r}); "
                              f"retrain it with `python -m umq.training.runtime.train`")
    model, norm = model_from_checkpoint(ckpt, device)
    _check_encoders(path, data)
    dims = {s.name: s.dim for s in model.config.modalities}
    if dims != DIMS:
        raise CheckpointError(f"checkpoint {path} expects inputs {dims}, this code builds {DIMS}")
    mean = {m: torch.as_tensor(norm.mean[m], device=device) for m in MODALITIES}
    std = {m: torch.as_tensor(norm.std[m], device=device) for m in MODALITIES}
    return model, mean, std, ckpt


def _check_encoders(path, data: dict) -> None:
    """Warn when the checkpoint was trained on vectors of other encoder weights than the installed ones: the
    model still runs, but its inputs mean something else (retrain it, then refit the calibration). A change of
    front-end code alone is only noted at debug level (most are refactors; one that changes the vectors bumps the
    recipe); for an older file that does not record its weights the note stays at info."""
    retrain = ("retrain with `python -m umq.training.runtime.train`, then `python -m umq.training.runtime.calibrate`")
    weights = data.get("encoder_weights") or {}
    stale = [m for m, d in weights.items() if m in MODALITIES and encoder_weights_digest(m) != d]
    if stale:
        log.warning("runtime checkpoint %s was trained on other %s encoder weights than the installed ones: %s",
                    path, "/".join(stale), retrain)
    code = [m for m, d in (data.get("encoders") or {}).items()
            if m in MODALITIES and m not in stale and encoder_digest(m) != d]
    if code:
        unsure = "" if weights else " (or the encoder weights: the file does not record them)"
        # debug, not info: a user cannot act on it, and most such changes are refactors (the weights check above
        # is the guard; a change of the vectors bumps FEATURE_RECIPE, which refuses the checkpoint)
        (log.info if not weights else log.debug)(
            "runtime checkpoint %s: the %s front-end code changed since it was trained%s; if the input vectors "
            "changed, %s", path, "/".join(code), unsure, retrain)


class AnalysisStages(NamedTuple):
    """The engine's two stages, typed: a :class:`~streams.windows.Window` -> :class:`Perceived` (front-ends) ->
    :class:`~umq.result.Result` (the UMQ model). Each is ``(name, function)``, so the engine's generic pipeline
    runs them as it runs any stage."""

    perception: tuple[str, Callable[[Window], Perceived]]
    model: tuple[str, Callable[[Perceived], Result]]


@dataclass(frozen=True)
class AnalyzerConfig:
    """Options of :class:`Analyzer`.

    Attributes:
        checkpoint: the runtime UMQ checkpoint (default ``assets/runtime/umq.pt``).
        baseline: the quality-unaware comparison model shown in the lab (``None`` to skip it).
        calibration: the quality calibration (default ``assets/runtime/calibration.json``; identity if absent).
        device: ``cuda``/``cpu``; default CUDA when present.
        vad: use silero-vad in the voice front-end (False only for tests without the model).
        fast: run the UMQ and baseline forwards in the fastest form measured on load among those that match
            eager mode (traced TorchScript: about 2.5x faster at batch 1 on CPU; on CUDA also a CUDA graph);
            ``forward_mode`` and ``forward_timings`` say which and why. False keeps eager mode.
        parallel: run the face front-end in a helper thread while the voice and text front-ends run in the
            perception thread (OpenCV, the face net and silero-vad release the GIL), so a window's perception
            latency is about the slower of face and voice rather than their sum. The outputs are identical
            either way. On by default: on an idle 2-core machine it cut perception p50 from 83 to 67 ms
            (``python -m app bench`` measures both arms every run as ``optimisations.parallel_face``).
    """

    checkpoint: str | Path | None = None
    baseline: str | Path | None = ASSETS / "moe_unaware.pt"
    calibration: str | Path | None = ASSETS / "calibration.json"
    device: str | None = None
    vad: bool = True
    parallel: bool = True
    fast: bool = True


class Analyzer:
    """The runtime analysis. ``stages()`` gives the engine's ``[("perception", ...), ("model", ...)]``.

    Options are an :class:`AnalyzerConfig` (keyword arguments build one: ``Analyzer(device="cpu")``); ``lab`` is
    the quality lab whose settings are applied before perception (a fresh one by default). :meth:`close` stops
    the helper thread; the analyzer is also a context manager.
    """

    def __init__(self, config: AnalyzerConfig | None = None, *, lab: QualityLab | None = None,
                 **options) -> None:
        from umq.perception.face.frontend import FaceFrontEnd
        from umq.perception.text.frontend import TextFrontEnd
        from umq.perception.text.net import load_text_head
        from umq.perception.voice.frontend import VoiceFrontEnd
        from umq.perception.voice.net import load_voice_net
        from umq.runtime.fast import choose_forward, eager_forward

        cfg = self.config = replace(config or AnalyzerConfig(), **options)
        self.device = pick_device(cfg.device)
        self.model, self.mean, self.std, self.ckpt = load_runtime_model(cfg.checkpoint or ASSETS / "umq.pt",
                                                                        self.device)
        self.baseline, self._baseline_norm = None, None
        if cfg.baseline:
            self.baseline, b_mean, b_std, _ = load_runtime_model(cfg.baseline, self.device)
            # the baseline reads its inputs standardised with its own statistics; the shipped pair shares one
            # normalisation (trained on the same caches), so its vectors are reused and cost nothing more
            if not all(torch.equal(b_mean[m], self.mean[m]) and torch.equal(b_std[m], self.std[m])
                       for m in MODALITIES):
                self._baseline_norm = (b_mean, b_std)
        self.calibration = QualityCalibration.load(cfg.calibration) if cfg.calibration else QualityCalibration()
        gate = self.calibration.raw_thresholds(MODALITIES)
        # the quality gate as raw-score thresholds on the device: the decision needs no host round trip
        self._gate = None if gate is None else torch.as_tensor(gate, dtype=torch.float32, device=self.device)
        self.forward_timings: dict = {}
        if cfg.fast:  # the fastest forward that matches eager mode, measured here (see umq/runtime/fast.py)
            self._forward, self.forward_mode, self.forward_timings = choose_forward(self.model, DIMS, self.device)
            self._baseline_forward = (choose_forward(self.baseline, DIMS, self.device, name="baseline")[0]
                                      if self.baseline else None)
        else:
            self._forward, self.forward_mode = eager_forward(self.model), "eager"
            self._baseline_forward = eager_forward(self.baseline) if self.baseline else None
        self.lab = lab or QualityLab()
        self.face = FaceFrontEnd(device=self.device)
        self.voice_net = load_voice_net(device=self.device).eval()
        self.voice = VoiceFrontEnd(self.voice_net, device=self.device, vad=cfg.vad)
        self.text_head = load_text_head(device=self.device).eval()
        self.text_emb_dim = int(cast(int, self.text_head.emb_dim))
        self.text = TextFrontEnd(head=self.text_head, device=self.device)
        from umq.perception.text.context import TranscriptContext

        # the session's recent transcript lines + per-line caches (overlapping windows do not re-encode)
        self._text_cache = TranscriptContext(self.text_head, self.text)
        self._lab_video: tuple[float, float, float, float] | None = None
        self._face_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.parallel = cfg.parallel
        self._face_job: concurrent.futures.Future | None = None

    @property
    def parallel(self) -> bool:
        """Whether the face front-end runs in its helper thread (settable: the bench measures both arms)."""
        return self._face_pool is not None

    @parallel.setter
    def parallel(self, on: bool) -> None:
        if on and self._face_pool is None:
            self._face_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="perception-face")
        elif not on and self._face_pool is not None:
            if self._face_job is not None:
                concurrent.futures.wait([self._face_job])
                self._face_job = None
            self._face_pool.shutdown(wait=True)
            self._face_pool = None

    def forward(self, xs, present):
        """The live-path UMQ forward (the form chosen on load): ``(probs, quality, routing)``."""
        return self._forward(xs, present)

    def close(self) -> None:
        """Stop the face helper thread; the analyzer must not be used afterwards."""
        self.parallel = False

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def variant(self, *, face: FaceFrontEnd | None = None, transcript: TranscriptContext | None = None,
                parallel: bool | None = None) -> Analyzer:
        """A copy that shares this analyzer's models and lab but uses other front-end parts: how ``python -m app
        bench`` runs the naive reference pipeline on the same weights. Call :meth:`reset` on whichever you use."""
        other = copy.copy(self)
        other._face_pool, other._face_job = None, None
        if face is not None:
            other.face = face
        if transcript is not None:
            other._text_cache = transcript
        other.parallel = self.parallel if parallel is None else parallel
        return other

    def stages(self) -> AnalysisStages:
        return AnalysisStages(("perception", self.perceive), ("model", self.predict))

    def weight_files(self) -> list[Path]:
        """Every weights file this analyzer loaded (runtime model, comparison model, calibration, encoders): what a
        result file's provenance lists with its checksum."""
        from umq.perception.face.net import DEFAULT_WEIGHTS as FACE_WEIGHTS
        from umq.perception.text.net import DEFAULT_WEIGHTS as TEXT_WEIGHTS
        from umq.perception.voice.net import DEFAULT_WEIGHTS as VOICE_WEIGHTS

        cfg = self.config
        files = [cfg.checkpoint or ASSETS / "umq.pt", cfg.baseline, cfg.calibration, FACE_WEIGHTS, VOICE_WEIGHTS,
                 TEXT_WEIGHTS]
        return [Path(p) for p in files if p is not None and Path(p).is_file()]

    def reset(self) -> None:
        """A new session: forget face tracking, cached frames and the speaker."""
        self.face.reset()
        self.voice.reset()

    def warm_up(self) -> float:
        """Load every lazy model (face net, silero-vad, MiniLM) on one synthetic window, so the first live windows
        are not the slow ones; returns the seconds it took."""
        from streams.packets import Modality, TextSegment, VideoFrame
        from streams.windows import AudioSlice, ModalityHealth, TextSlice, VideoSlice

        t = time.perf_counter()
        rng = np.random.default_rng(0)
        img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        n = 32000
        w = Window(-1, 0.0, 2.0,
                   VideoSlice((VideoFrame(1.9, img, -1),),
                              ModalityHealth(Modality.VIDEO, True, expected=1, received=1)),
                   AudioSlice((0.05 * rng.standard_normal(n)).astype(np.float32), np.ones(n, bool),
                              ModalityHealth(Modality.AUDIO, True, expected=n, received=n)),
                   TextSlice((TextSegment(0.5, 1.5, "warming up"),), ModalityHealth(Modality.TEXT, True, received=1)))
        self.predict(self.perceive(w))
        self.reset()
        self._text_cache.clear()
        return time.perf_counter() - t

    # -- perception ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def perceive(self, window: Window) -> Perceived:
        if self._face_job is not None:  # a window that failed in voice/text may have left its face job running
            concurrent.futures.wait([self._face_job])
            self._face_job = None
        settings = self.lab.settings
        video_key = (settings.blur, settings.dark, settings.occlude, settings.image_noise)
        if video_key != self._lab_video:  # cached frame analyses were made under other lab settings
            self.face.clear_cache()
            self._lab_video = video_key
        w = self.lab.apply(window, settings)
        lat: dict[str, float] = {}

        vh = w.video.health
        face_job: concurrent.futures.Future | None = None
        face_done: tuple[Any, float] | None = None
        if vh.present and w.video.frames:
            if self._face_pool is not None:
                face_job = self._face_pool.submit(self._timed_face, w.video.frames)
                self._face_job = face_job
            else:  # sequential: face first, as always
                face_done = self._timed_face(w.video.frames)

        t = time.perf_counter()
        audio = self._perceive_audio(w)
        lat["voice"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        text_p, text = self._perceive_text(w)
        lat["text"] = (time.perf_counter() - t) * 1000

        face_ms = 0.0
        ff = None
        if vh.present and w.video.frames:
            ff, face_ms = face_job.result() if face_job is not None else face_done  # type: ignore[misc]
            self._face_job = None
        t = time.perf_counter()
        video, faces = self._perceive_video(w, ff)
        # the face front-end's own time (it overlapped voice and text when run in the helper thread)
        lat["face"] = face_ms + (time.perf_counter() - t) * 1000
        # fixed key order (video, audio, text) whichever front-end finished first
        mods = {"video": video, "audio": audio, "text": text_p}
        return Perceived(w, mods, faces, text, {k: lat[k] for k in ("face", "voice", "text")})

    def _perceive_audio(self, w: Window) -> ModalityPerception:
        ah = w.audio.health
        if not ah.present:
            return ModalityPerception(torch.zeros(DIMS["audio"], device=self.device), False,
                                      ah.reason or "no audio")
        from umq.perception.voice.ensemble import encode as encode_voice

        vf = self.voice(w.audio.samples, w.audio.valid)
        logits, emb = encode_voice(self.voice_net, [(f.unsqueeze(0), m.unsqueeze(0)) for f, m in vf.views])
        probs = logits.softmax(-1)[0]
        present = vf.cues.valid_ratio > 0 and not vf.cues.silent
        flags = tuple(vf.cues.reasons())
        return ModalityPerception(voice_vector(emb[0], probs, vf.cues), present,
                                  "" if present else vf.cues.describe(), flags, vf.cues.to_json(),
                                  probs if present else None)

    def _perceive_text(self, w: Window) -> tuple[ModalityPerception, str]:
        tc = cues_from_slice(w.text)
        idle = bool(tc.idle)
        if not tc.present:
            x = text_vector(torch.zeros(self.text_emb_dim, device=self.device),
                            torch.zeros(7, device=self.device), tc)
            return ModalityPerception(x, False, tc.describe(), (), tc.to_json(), None, idle), ""
        text = w.text.text
        emb, probs = self._text_features(w)
        flags = tuple(f for f in tc.describe().split("; ") if f)
        return ModalityPerception(text_vector(emb, probs, tc), True, "", flags, tc.to_json(), probs), text

    def _perceive_video(self, w: Window, ff) -> tuple[ModalityPerception, tuple[FaceReport, ...]]:
        """The primary face drives the model input; every face of the newest frame (primary first, at most the
        tracker's ``max_faces``) becomes a :class:`FaceReport` with its own expression prediction."""
        from umq.perception.face.cues import FACE_SEEN

        vh = w.video.health
        if ff is None:
            return ModalityPerception(torch.zeros(DIMS["video"], device=self.device), False,
                                      vh.reason or "no video"), ()
        emb = masked_mean(ff.embeddings, ff.mask)
        probs = masked_mean(ff.probs, ff.mask)
        ratio = vh.received / vh.expected if vh.expected else 1.0
        problems = ff.cues.problems()
        present = ff.cues.frames > 0 and ff.cues.face_ratio >= FACE_SEEN
        faces: tuple[FaceReport, ...] = ()
        if ff.faces:
            analysed = [o.probs for o in ff.faces if o.probs is not None]
            host = to_host(torch.stack(analysed).float()).astype(np.float64) if analysed else None  # one copy
            k, reports = 0, []
            for j, o in enumerate(ff.faces):
                pred = None
                if o.probs is not None and host is not None:
                    pred = Prediction(_distribution(host[k]))
                    k += 1
                reports.append(FaceReport(int(o.track_id), tuple(int(v) for v in o.box),  # type: ignore[arg-type]
                                          primary=j == 0, score=float(o.score), prediction=pred))
            faces = tuple(reports)
        cues = {k: round(float(v), 4) for k, v in ff.cues.__dict__.items()}
        flags = tuple(problems) if present else ()
        return ModalityPerception(face_vector(emb, probs, ff.cues, ratio), present,
                                  "" if present else ff.cues.describe(), flags, cues,
                                  probs if present else None), faces

    @torch.inference_mode()
    def _timed_face(self, frames):
        t = time.perf_counter()
        ff = self.face(frames)
        return ff, (time.perf_counter() - t) * 1000

    def _text_features(self, w: Window) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, probabilities) of the window's lines, each read with its predecessors in the session's
        transcript (:class:`~umq.perception.text.context.TranscriptContext` keeps the history and the caches)."""
        return self._text_cache.window_outputs(w.text.segments, w.t0, w.t1)

    # -- model ---------------------------------------------------------------------------------------------
    def _inputs(self, p: Perceived, mean: dict[str, torch.Tensor] | None = None,
                std: dict[str, torch.Tensor] | None = None) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Standardised ``[1, 1, D]`` vectors in model order (zeros where missing) and ``present [1, M]``;
        ``mean``/``std``: another model's statistics (default the UMQ checkpoint's).

        A vector holding NaN or inf (a front-end that broke on odd input) counts as missing for the model, decided
        on the device (no host sync): its quality becomes 0 and it cannot sway the fused answer."""
        xs, present, finite = [], [], []
        for m in MODALITIES:
            mp = p.modalities[m]
            z = (mp.x - (mean or self.mean)[m]) / (std or self.std)[m]
            if not mp.present:
                z = torch.zeros_like(z)
            ok = torch.isfinite(z).all()
            finite.append(ok)
            xs.append(torch.where(ok, z, torch.zeros_like(z)).view(1, 1, -1))
            present.append(mp.present)
        return tuple(xs), to_device(np.array([present]), self.device) & torch.stack(finite).view(1, -1)

    @torch.inference_mode()
    def predict(self, p: Perceived) -> Result:
        t = time.perf_counter()
        xs, present = self._inputs(p)
        probs_t, q_t, routing_t = self._forward(xs, present)
        C, M = len(EMOTIONS), len(MODALITIES)
        used = present
        if self._gate is not None:
            # quality gate: a present modality whose calibrated quality is below the gate is left out, as if it
            # were missing (the second pass always runs, so there is no host sync; q stays the first pass's)
            used = present & (q_t >= self._gate)
            kept = tuple(x * used[:, i].view(1, 1, 1) for i, x in enumerate(xs))
            probs_t, _, routing_t = self._forward(kept, used)
        parts = [probs_t[0], q_t[0], used[0].to(probs_t.dtype)]
        own = [m for m, mp in p.modalities.items() if mp.probs is not None]
        parts += [p.modalities[m].probs for m in own]  # type: ignore[misc]
        if self._baseline_forward is not None:
            b_xs, b_present = (xs, present) if self._baseline_norm is None else self._inputs(p, *self._baseline_norm)
            parts.append(self._baseline_forward(b_xs, b_present)[0][0])
        if routing_t is not None and routing_t.numel():
            parts.append(routing_t[0])
        host = to_host(torch.cat(parts).float()).astype(np.float64)  # the one device -> host copy
        umq_ms = (time.perf_counter() - t) * 1000
        probs, q, used_h, rest = host[:C], host[C:C + M], host[C + M:C + 2 * M] > 0.5, host[C + 2 * M:]
        own_probs = {m: rest[i * C:(i + 1) * C] for i, m in enumerate(own)}
        rest = rest[len(own) * C:]
        baseline = None
        if self.baseline is not None:
            baseline = Prediction(_distribution(rest[:C]))
            rest = rest[C:]
        routing = rest
        probs = probs / probs.sum()
        reports = {}
        for i, name in enumerate(MODALITIES):
            mp = p.modalities[name]
            quality = self.calibration(name, float(np.clip(q[i], 0.0, 1.0))) if mp.present else 0.0
            left_out = mp.present and not used_h[i]
            state = modality_state(mp.present, quality, mp.idle)
            pred = Prediction(_distribution(own_probs[name])) if name in own_probs else None
            reason = state_reason(state, mp.reason, mp.flags, quality,
                                  self.calibration.gate if left_out else None)
            reports[name] = ModalityReport(quality, state, reason, mp.flags, mp.cues, pred, left_out)
        fused = {e: float(v) for e, v in zip(EMOTIONS, probs)}
        evidence = has_evidence({m: "missing" if r.left_out else r.state for m, r in reports.items()}, fused)
        label = EMOTIONS[int(probs.argmax())] if evidence else ""
        lab = {k: str(v) for k, v in self.lab.settings.describe().items() if v} if self.lab.settings.active else {}
        return Result(index=p.window.index, t0=p.window.t0, t1=p.window.t1, probs=fused, label=label,
                      confidence=float(probs.max()), modalities=reports,
                      routing=[float(r) for r in (routing / routing.sum() if len(routing) else routing)],
                      latency_ms={**{f"{k}_ms": v for k, v in p.latency_ms.items()}, "umq_ms": umq_ms},
                      health=p.window.to_json(), no_evidence=not evidence, baseline=baseline,
                      transcript=p.text, faces=p.faces, lab=lab)


def _distribution(v: np.ndarray) -> dict[str, float]:
    v = np.clip(np.nan_to_num(v, nan=0.0), 0.0, None)
    total = v.sum()
    v = v / total if total > 0 else np.full(len(v), 1.0 / len(v))
    return {e: float(x) for e, x in zip(EMOTIONS, v)}
