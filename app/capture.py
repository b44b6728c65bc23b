"""Build the set of capture sources a command asked for, and describe them for ``meta.json``.

A modality the user switched off (``--camera none``) or that has no source gets a *reason* instead of a source;
the live windower and the recorded meta both carry that reason, so a replay shows the same "missing" marks the
live session showed. Devices that exist in the options but fail (no camera plugged in, no PortAudio) are still
built: their sources report ``unavailable`` with their own explanation and keep retrying, which is a missing
modality in the windows, never a failed command.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from streams.clock import Clock
from streams.packets import Modality, SourceState
from streams.source import Sink, Source

log = logging.getLogger(__name__)

Span = tuple[float, float]
OFF = ("none", "off", "no", "")


@dataclass
class CaptureOptions:
    """What to capture. ``source`` is ``"synthetic"`` (generated test signals) or ``"devices"`` (camera, mic).

    The ``*_off``/``*_gaps``/``mic_silent`` spans script failures into the synthetic sources (seconds of session
    time), so a demo or test can show every missing-modality path without unplugging anything.
    """

    source: str = "devices"
    camera: str | None = None
    mic: str | None = None
    transcript: str | None = None
    fps: float = 15.0
    size: tuple[int, int] = (320, 240)
    camera_off: tuple[Span, ...] = ()
    camera_frozen: tuple[Span, ...] = ()
    mic_off: tuple[Span, ...] = ()
    mic_silent: tuple[Span, ...] = ()
    transcript_gaps: tuple[Span, ...] = ()


@dataclass
class Capture:
    """The built sources plus, per modality, either the source's description or the reason it has none."""

    sources: list[Source]
    info: dict[Modality, dict] = field(default_factory=dict)
    video_fps: float | None = None

    @property
    def absent_reasons(self) -> dict[Modality, str]:
        return {m: d["reason"] for m, d in self.info.items() if not d["present"]}

    def meta(self) -> dict:
        """``meta.json``'s ``sources`` entry: ``{"video": {"present", "name", "kind", "device", "reason"}, ...}``."""
        return {m.value: dict(d) for m, d in self.info.items()}

    def connect(self, sink: Sink) -> None:
        for s in self.sources:
            s.connect(sink)

    def start(self) -> None:
        for s in self.sources:
            s.start()

    def missing_inputs(self, wait_s: float = 3.0) -> dict[Modality, str]:
        """Per modality that is not delivering, why: switched off or without a source (the recorded reason), or
        a source that reported ``unavailable``/``ended``/... (its own reason: "camera 0 could not be opened:
        ..."). Waits up to ``wait_s`` for sources still ``starting``, so a start-up message never reads like a
        healthy start when a device is missing."""
        deadline = time.monotonic() + wait_s
        while True:
            out, starting = {}, False
            for m in (Modality.VIDEO, Modality.AUDIO, Modality.TEXT):
                d = self.info.get(m)
                if d is None or not d.get("present"):
                    out[m] = (d or {}).get("reason") or f"no {m.value} source"
                    continue
                src = next((s for s in self.sources if s.name == d.get("name")), None)
                st = src.status if src is not None else None
                if st is None or st.state is SourceState.STARTING:
                    starting = starting or st is not None
                elif not st.state.delivers:
                    out[m] = st.reason or f"{d.get('name') or m.value} {st.state.value}"
            if not starting or time.monotonic() >= deadline:
                return out
            time.sleep(0.05)

    def stop(self) -> None:
        for s in self.sources:
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - stopping one source must not prevent stopping the others
                log.exception("stopping %s failed", s.name)


_INPUT = {Modality.VIDEO: "camera", Modality.AUDIO: "microphone", Modality.TEXT: "transcript"}


def missing_input_lines(capture: Capture, wait_s: float = 3.0) -> list[str]:
    """``warning: camera missing: <reason>`` for each input of ``capture`` that is not delivering (empty when
    everything works): what ``live`` prints under its start-up status line."""
    return [f"warning: {_INPUT[m]} missing: {why}" for m, why in capture.missing_inputs(wait_s).items()]


def _off(value: str | None) -> bool:
    return value is not None and value.strip().lower() in OFF


def build_capture(opts: CaptureOptions, clock: Clock) -> Capture:
    """Sources for ``opts`` on ``clock`` (not yet connected or started)."""
    if opts.source not in ("synthetic", "devices"):
        raise ValueError(f"unknown --source {opts.source!r}: use synthetic or devices")
    cap = Capture([])

    def add(modality: Modality, source: Source, kind: str, device: str | None) -> None:
        cap.sources.append(source)
        cap.info[modality] = {"present": True, "name": source.name, "kind": kind, "device": device, "reason": ""}

    def absent(modality: Modality, reason: str) -> None:
        cap.info[modality] = {"present": False, "name": "", "kind": "", "device": None, "reason": reason}

    synthetic = opts.source == "synthetic"
    # video
    if _off(opts.camera):
        absent(Modality.VIDEO, "camera switched off (--camera none)")
    elif synthetic:
        from streams.synthetic import SyntheticCamera

        add(Modality.VIDEO, SyntheticCamera(clock, fps=opts.fps, size=opts.size, off=opts.camera_off,
                                            frozen=opts.camera_frozen), "synthetic", None)
        cap.video_fps = opts.fps
    else:
        from streams.camera import CameraSource

        device = opts.camera if opts.camera is not None else "0"
        cam = CameraSource(clock, device=device)
        add(Modality.VIDEO, cam, "camera", device)
        cap.video_fps = getattr(cam, "fps", None) or None
    # audio
    if _off(opts.mic):
        absent(Modality.AUDIO, "microphone switched off (--mic none)")
    elif synthetic:
        from streams.synthetic import SyntheticMicrophone

        add(Modality.AUDIO, SyntheticMicrophone(clock, kind="speechlike", off=opts.mic_off, silent=opts.mic_silent),
            "synthetic", None)
    else:
        from streams.microphone import MicrophoneSource

        add(Modality.AUDIO, MicrophoneSource(clock, device=opts.mic), "microphone", opts.mic)
    # text
    if _off(opts.transcript) or (opts.transcript is None and not synthetic):
        absent(Modality.TEXT, "no transcript source")
    elif opts.transcript in (None, "synthetic"):
        from streams.synthetic import SyntheticTranscript

        add(Modality.TEXT, SyntheticTranscript(clock, gaps=opts.transcript_gaps), "synthetic", None)
    else:
        from streams.transcript import open_transcript_source

        add(Modality.TEXT, open_transcript_source(opts.transcript, clock), "transcript", opts.transcript)
    scripted = opts.camera_off or opts.camera_frozen or opts.mic_off or opts.mic_silent or opts.transcript_gaps
    if scripted and not synthetic:
        log.warning("scripted failures (--camera-off, --mic-off, ...) only apply to --source synthetic; ignored")
    return cap
