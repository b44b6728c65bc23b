"""Window -> Result: the perception front-ends and the runtime UMQ model, as two engine stages.

:meth:`Analyzer.perceive` (perception thread) applies the quality lab, runs the face, voice and text front-ends
and builds the model's input vectors on the model's device; :meth:`Analyzer.predict` (model thread) runs UMQ and
the quality-unaware baseline and builds the :class:`~umq.result.Result`. Only the final numbers cross back to
the host, once per window.

State of a modality in the result:

* ``missing``: capture delivered nothing (camera disconnected, no frames, no transcript) or there is nothing to
  read in what arrived (no face in view, mic silent). The model is told (``present = False``).
* ``low``: data arrived but the estimated quality is below :data:`LOW_QUALITY`, or a cue flags a problem
  ("too dark", "noisy: SNR 3 dB", "garbled text"). The reason is the cue's sentence, or the estimate itself.
* ``ok``: otherwise.
"""
from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from streams.windows import Window
from umq.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from umq.device import pick_device, to_device, to_host
from umq.labels import EMOTIONS
from umq.perception.text_cues import cues_from_slice
from umq.result import Result

from .features import DIMS, FEATURE_RECIPE, MODALITIES, face_vector, masked_mean, text_vector, voice_vector
from .lab import QualityLab

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "runtime"
LOW_QUALITY = 0.5
# the modality names of results (what capture calls them) for the model's face / voice / text inputs
RESULT_NAMES = {"face": "video", "voice": "audio", "text": "text"}


def load_runtime_model(path: str | Path, device: torch.device | str = "cpu"):
    """Load a runtime checkpoint; :class:`CheckpointError` names the file and what was expected."""
    ckpt = load_checkpoint(path, map_location="cpu")
    data = ckpt.get("data", {})
    if data.get("kind") != "runtime" or data.get("feature_recipe") != FEATURE_RECIPE:
        raise CheckpointError(f"checkpoint {path} is not a runtime model with feature recipe {FEATURE_RECIPE} "
                              f"(it says kind={data.get('kind')!r}, feature_recipe={data.get('feature_recipe')!r}); "
                              f"retrain it with `python -m umq.runtime.train`")
    model, norm = model_from_checkpoint(ckpt, device)
    dims = {s.name: s.dim for s in model.config.modalities}
    if dims != DIMS:
        raise CheckpointError(f"checkpoint {path} expects inputs {dims}, this code builds {DIMS}")
    mean = {m: torch.as_tensor(norm.mean[m], device=device) for m in MODALITIES}
    std = {m: torch.as_tensor(norm.std[m], device=device) for m in MODALITIES}
    return model, mean, std, ckpt


@dataclass
class Perceived:
    """What perception hands the model stage for one window (vectors on the model's device).

    Attributes:
        x: model modality name -> raw (unstandardised) input vector ``[D]``.
        present: model modality -> False when the model must treat it as missing.
        reason: result modality -> why it is missing or poor (empty when fine).
        cue_problem: result modality -> True when a cue flags a problem although data is present.
        cues: result modality -> the cues as JSON, for the dashboard.
        face_box: the newest frame's face box ``(x, y, w, h)`` or None.
        latency_ms: front-end name -> milliseconds.
    """

    window: Window
    x: dict[str, torch.Tensor]
    present: dict[str, bool]
    reason: dict[str, str]
    cue_problem: dict[str, bool]
    cues: dict[str, dict]
    face_box: tuple | None = None
    text: str = ""
    latency_ms: dict[str, float] = field(default_factory=dict)


class Analyzer:
    """The runtime analysis. ``stages()`` gives the engine's ``[("perception", ...), ("model", ...)]``.

    Args:
        checkpoint: the runtime UMQ checkpoint (default ``assets/runtime/umq.pt``).
        baseline: the quality-unaware comparison model shown in the lab (``None`` to skip it).
        device: ``cuda``/``cpu``; default CUDA when present.
        lab: the quality lab whose settings are applied before perception (a fresh one by default).
        vad: use silero-vad in the voice front-end (False only for tests without the model).
        fast: run the UMQ and baseline forwards in the fastest form measured on load among those that match
            eager mode (traced TorchScript: about 2.5x faster at batch 1 on CPU; on CUDA also a CUDA graph);
            ``forward_mode`` and ``forward_timings`` say which and why. False keeps eager mode.
        parallel: run the face front-end in a helper thread while the voice and text front-ends run in the
            perception thread (OpenCV, the face net and silero-vad release the GIL), so a window's perception
            latency is about the slower of face and voice rather than their sum. The outputs are identical
            either way: each front-end still sees its windows in order and computes the same thing. On by
            default: on an idle 2-core machine it cut perception p50 from 83 to 67 ms (``python -m app bench``
            measures both arms every run as ``optimisations.parallel_face``; ``docs/performance.md``).
    """

    def __init__(self, checkpoint: str | Path | None = None, baseline: str | Path | None = ASSETS / "moe_unaware.pt",
                 device: str | None = None, lab: QualityLab | None = None, vad: bool = True,
                 parallel: bool = True, fast: bool = True) -> None:
        from umq.perception.face import FaceFrontEnd
        from umq.perception.text import TextFrontEnd
        from umq.perception.text_net import load_text_head
        from umq.perception.voice import VoiceFrontEnd
        from umq.perception.voice_net import load_voice_net

        self.device = pick_device(device)
        self.model, self.mean, self.std, self.ckpt = load_runtime_model(checkpoint or ASSETS / "umq.pt", self.device)
        self.baseline = load_runtime_model(baseline, self.device)[0] if baseline else None
        from .fast import choose_forward, eager_forward

        self.forward_timings: dict = {}
        if fast:  # the fastest forward that matches eager mode, measured here (see umq/runtime/fast.py)
            self._forward, self.forward_mode, self.forward_timings = choose_forward(self.model, DIMS, self.device)
            self._baseline_forward = (choose_forward(self.baseline, DIMS, self.device, name="baseline")[0]
                                      if self.baseline else None)
        else:
            self._forward, self.forward_mode = eager_forward(self.model), "eager"
            self._baseline_forward = eager_forward(self.baseline) if self.baseline else None
        self.lab = lab or QualityLab()
        self.face = FaceFrontEnd(device=self.device)
        self.voice_net = load_voice_net(device=self.device).eval()
        self.voice = VoiceFrontEnd(self.voice_net, device=self.device, vad=vad)
        self.text_head = load_text_head(device=self.device).eval()
        self.text = TextFrontEnd(head=self.text_head, device=self.device)
        from umq.perception.text_context import TranscriptContext

        # the session's recent transcript lines + per-line caches (overlapping windows do not re-encode)
        self._text_cache = TranscriptContext(self.text_head, self.text)
        self._lab_video = None
        self._face_pool = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="perception-face")
                           if parallel else None)
        self._face_job: concurrent.futures.Future | None = None

    def stages(self):
        return [("perception", self.perceive), ("model", self.predict)]

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
                   VideoSlice((VideoFrame(1.9, img, -1),), ModalityHealth(Modality.VIDEO, True, expected=1, received=1)),
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
        lab_says = w.meta.get("lab", {})
        x, present, reason, problem, cues, lat = {}, {}, {}, {}, {}, {}
        box, text = None, ""

        vh = w.video.health
        face_job = face_done = None
        if vh.present and w.video.frames:
            if self._face_pool is not None:
                face_job = self._face_pool.submit(self._timed_face, w.video.frames)
                self._face_job = face_job
            else:  # sequential: face first, as always
                face_done = self._timed_face(w.video.frames)
        # fixed key order (face, voice, text) whichever front-end finishes first
        for d in (x, present):
            d.update(dict.fromkeys(("face", "voice", "text")))
        for d in (reason, problem, cues):
            d.update(dict.fromkeys(("video", "audio", "text")))
        lat.update(dict.fromkeys(("face", "voice", "text")))

        t = time.perf_counter()
        ah = w.audio.health
        if ah.present:
            vf = self.voice(w.audio.samples, w.audio.valid)
            logits, emb = self.voice_net(vf.features.unsqueeze(0), vf.mask.unsqueeze(0))
            x["voice"] = voice_vector(emb[0], logits.softmax(-1)[0], vf.cues)
            present["voice"] = vf.cues.valid_ratio > 0 and not vf.cues.silent
            reason["audio"] = vf.cues.describe()
            problem["audio"] = bool(vf.cues.reasons())
            cues["audio"] = vf.cues.to_json()
        else:
            x["voice"] = torch.zeros(DIMS["voice"], device=self.device)
            present["voice"], problem["audio"] = False, False
            reason["audio"] = ah.reason or "no audio"
            cues["audio"] = {}
        lat["voice"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        tc = cues_from_slice(w.text)
        if tc.present:
            text = w.text.text
            emb, probs = self._text_features(w)
            x["text"] = text_vector(emb, probs, tc)
            present["text"] = True
        else:
            x["text"] = text_vector(torch.zeros(self.text_head.emb_dim, device=self.device),
                                    torch.zeros(7, device=self.device), tc)
            present["text"] = False
        reason["text"] = tc.describe()
        problem["text"] = tc.present and tc.poor
        cues["text"] = tc.to_json()
        if tc.present:  # the text head's own answer (read with the line's predecessors), beside the fused one
            cues["text"]["probs"] = dict(self._text_cache.last_probs)
        lat["text"] = (time.perf_counter() - t) * 1000

        face_ms = 0.0
        if vh.present and w.video.frames:
            ff, face_ms = face_job.result() if face_job is not None else face_done
        t = time.perf_counter()
        if vh.present and w.video.frames:
            emb = masked_mean(ff.embeddings, ff.mask)
            probs = masked_mean(ff.probs, ff.mask)
            ratio = vh.received / vh.expected if vh.expected else 1.0
            x["face"] = face_vector(emb, probs, ff.cues, ratio)
            problems = ff.cues.problems()
            present["face"] = "no face in view" not in problems and "no video" not in problems
            reason["video"] = ff.cues.describe()
            problem["video"] = bool(problems)
            cues["video"] = {k: round(float(v), 4) for k, v in ff.cues.__dict__.items()}
            box = ff.box
        else:
            x["face"] = torch.zeros(DIMS["face"], device=self.device)
            present["face"], problem["video"] = False, False
            reason["video"] = vh.reason or "no video"
            cues["video"] = {}
        # the face front-end's own time (it overlapped voice and text when run in the helper thread)
        lat["face"] = face_ms + (time.perf_counter() - t) * 1000

        for m, said in lab_says.items():  # say what the lab is doing, beside what the cues measured
            if said and reason.get(m) and said not in reason[m]:
                reason[m] = f"{reason[m]} ({said})"
        return Perceived(window, x, present, reason, problem, cues, box, text, lat)

    @torch.inference_mode()
    def _timed_face(self, frames):
        t = time.perf_counter()
        ff = self.face(frames)
        return ff, (time.perf_counter() - t) * 1000

    def _text_features(self, w: Window) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, probabilities) of the window's lines, each read with its predecessors in the session's
        transcript (:class:`~umq.perception.text_context.TranscriptContext` keeps the history and the caches)."""
        return self._text_cache.window_outputs(w.text.segments, w.t0, w.t1)

    # -- model ---------------------------------------------------------------------------------------------
    def _inputs(self, p: Perceived) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Standardised ``[1, 1, D]`` vectors in model order (zeros where missing) and ``present [1, M]``."""
        xs = []
        for m in MODALITIES:
            z = (p.x[m] - self.mean[m]) / self.std[m]
            if not p.present[m]:
                z = torch.zeros_like(z)
            xs.append(z.view(1, 1, -1))
        present = to_device(np.array([[p.present[m] for m in MODALITIES]]), self.device)
        return tuple(xs), present

    @torch.inference_mode()
    def predict(self, p: Perceived) -> Result:
        t = time.perf_counter()
        xs, present = self._inputs(p)
        probs_t, q_t, routing_t = self._forward(xs, present)
        parts = [probs_t[0], q_t[0]]
        if routing_t.numel():
            parts.append(routing_t[0])
        if self._baseline_forward is not None:
            parts.append(self._baseline_forward(xs, present)[0][0])
        host = to_host(torch.cat(parts).float()).astype(np.float64)  # the one device -> host copy
        umq_ms = (time.perf_counter() - t) * 1000
        C, M = len(EMOTIONS), len(MODALITIES)
        probs, q = host[:C], host[C:C + M]
        rest = host[C + M:]
        routing = rest[:-C] if self.baseline is not None else rest
        probs = probs / probs.sum()
        label = EMOTIONS[int(probs.argmax())]
        quality, state, reason = {}, {}, {}
        for i, m in enumerate(MODALITIES):
            name = RESULT_NAMES[m]
            quality[name] = float(np.clip(q[i], 0.0, 1.0))
            if not p.present[m]:
                state[name] = "missing"
                reason[name] = p.reason[name] or "missing"
            elif quality[name] < LOW_QUALITY or p.cue_problem[name]:
                state[name] = "low"
                reason[name] = p.reason[name] or f"low estimated quality ({quality[name]:.2f})"
            else:
                state[name], reason[name] = "ok", ""
        extra: dict = {"cues": p.cues, "text": p.text}
        if p.face_box is not None:
            extra["face_box"] = [int(v) for v in p.face_box]
        if self.baseline is not None:
            bp = rest[-C:] / rest[-C:].sum()
            extra["baseline"] = {"probs": {e: float(v) for e, v in zip(EMOTIONS, bp)},
                                 "label": EMOTIONS[int(bp.argmax())]}
        if self.lab.settings.active:
            extra["lab"] = {k: v for k, v in self.lab.settings.describe().items() if v}
        return Result(index=p.window.index, t0=p.window.t0, t1=p.window.t1,
                      probs={e: float(v) for e, v in zip(EMOTIONS, probs)}, label=label,
                      confidence=float(probs.max()), quality=quality, state=state, reason=reason,
                      routing=[float(r) for r in (routing / routing.sum() if len(routing) else routing)],
                      latency_ms={**{f"{k}_ms": v for k, v in p.latency_ms.items()}, "umq_ms": umq_ms},
                      health=p.window.to_json(), extra=extra)
