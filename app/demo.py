"""Build the bundled demo session (``assets/demo_session``) from material we may ship.

Picture: scikit-image's ``astronaut`` (NASA photo of Eileen Collins, public domain), gently animated. Speech:
espeak-ng (GPL tool; its output is ours), with the transcript it was made from. The script stages the events the
app exists for: a clean start, darkness, the camera switched off, a silent microphone with a typed line, loud
background noise, speech with no transcript, blur, and the face leaving the view. Deterministic: running it twice
gives the same frames, samples and lines (only the times in ``meta.json`` differ).

    python -m app.demo --out assets/demo_session
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from streams.buffer import WindowConfig
from streams.clock import SimulatedClock
from streams.packets import AUDIO_RATE, AudioChunk, Modality, SourceState, SourceStatus, TextSegment, VideoFrame
from streams.recorder import SessionRecorder

from .paths import DEMO_SESSION

log = logging.getLogger(__name__)

DURATION_S = 45.0
FPS = 10.0
SIZE = (320, 240)
CHUNK_S = 0.032


@dataclass(frozen=True)
class Line:
    t: float
    text: str
    pitch: int = 50
    speed: int = 160
    spoken: bool = True  # False: typed into the transcript only (the mic is silent then)
    captioned: bool = True  # False: spoken but nobody transcribes it


LINES = (
    Line(0.5, "Hello! I am so happy to be here with you today.", 70, 170),
    Line(4.5, "This is wonderful news, I really love it.", 70, 170),
    Line(9.5, "It is getting very dark in here.", 45, 150),
    Line(12.5, "I can barely see anything now.", 45, 150),
    Line(15.5, "The camera just went off. That is so annoying!", 40, 185),
    Line(18.5, "I really hate it when that happens.", 40, 185),
    Line(22.0, "I feel a little sad and tired now.", spoken=False),
    Line(27.5, "There is so much noise around me.", 50, 160),
    Line(30.5, "I can hardly hear myself think.", 50, 160),
    Line(34.5, "Nobody is writing any of this down.", 50, 160, captioned=False),
    Line(37.5, "Oh! I did not expect that at all!", 80, 190, captioned=False),
    Line(40.5, "Everything looks blurry now.", 50, 150),
    Line(43.0, "Goodbye.", 55, 150),
)

# (start, end, what) -- the stretches the dashboard should explain
SCRIPT = {
    "dark": (9.0, 15.0),
    "camera_off": (15.0, 21.0),
    "mic_silent": (21.0, 27.0),
    "noise": (27.0, 34.0),
    "no_transcript": (34.0, 40.0),
    "blur": (40.0, 45.0),
    "face_out": (43.5, 45.0),
}


def _in(name: str, t: float) -> bool:
    a, b = SCRIPT[name]
    return a <= t < b


def speak(text: str, pitch: int, speed: int, workdir: Path) -> np.ndarray:
    """espeak-ng speech at 16 kHz float32 (arguments passed as a list: no shell, no injection)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is needed to build the demo session: apt install espeak-ng")
    wav = workdir / "line.wav"
    subprocess.run([exe, "-v", "en-us", "-p", str(pitch), "-s", str(speed), "-w", str(wav), text],
                   check=True, capture_output=True)
    x, rate = sf.read(wav, dtype="float32")
    if x.ndim > 1:
        x = x.mean(axis=1)
    import soxr  # librosa's resampler dependency

    return soxr.resample(x, rate, AUDIO_RATE).astype(np.float32)


def build_audio(workdir: Path) -> np.ndarray:
    n = int(DURATION_S * AUDIO_RATE)
    audio = np.zeros(n, np.float32)
    for line in LINES:
        if not line.spoken:
            continue
        x = 0.5 * speak(line.text, line.pitch, line.speed, workdir)
        a = int(line.t * AUDIO_RATE)
        b = min(n, a + len(x))
        audio[a:b] += x[: b - a]
    rng = np.random.default_rng(7)
    room = 0.002 * rng.standard_normal(n).astype(np.float32)  # a quiet room is never digital silence
    audio += room
    a, b = (int(t * AUDIO_RATE) for t in SCRIPT["noise"])
    speech_rms = float(np.sqrt(np.mean(audio[a:b] ** 2)))
    audio[a:b] += (speech_rms * rng.standard_normal(b - a)).astype(np.float32)  # about 0 dB SNR
    a, b = (int(t * AUDIO_RATE) for t in SCRIPT["mic_silent"])
    audio[a:b] = 0.0  # muted microphone: present, but digital silence
    return np.clip(audio, -1.0, 1.0)


def base_image() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def render_frame(img: np.ndarray, t: float) -> np.ndarray:
    """A 4:3 view around the face that drifts and breathes; darkness, blur and a pan out of view by script."""
    cx, cy = 224 + 10 * np.sin(0.5 * t), 118 + 6 * np.sin(0.37 * t + 1.0)
    if _in("face_out", t):
        cx += 260 * (t - SCRIPT["face_out"][0]) / (SCRIPT["face_out"][1] - SCRIPT["face_out"][0]) + 60
    half_w = 128 * (1.0 + 0.05 * np.sin(0.6 * t))
    m = np.float32([[SIZE[0] / (2 * half_w), 0, 0], [0, SIZE[0] / (2 * half_w), 0]])
    m[0, 2] = SIZE[0] / 2 - m[0, 0] * cx
    m[1, 2] = SIZE[1] / 2 - m[1, 1] * cy
    frame = cv2.warpAffine(img, m, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if _in("dark", t):
        frame = (frame.astype(np.float32) * 0.08).astype(np.uint8)
    if _in("blur", t):
        frame = cv2.GaussianBlur(frame, (0, 0), 6.0)
    return frame


def build(out: Path) -> dict:
    clock = SimulatedClock(speed=None)
    meta = {
        "command": "demo", "source": "demo",
        "description": "Bundled demo: astronaut photo (public domain) animated, espeak-ng speech; see app/demo.py",
        "script": {k: list(v) for k, v in SCRIPT.items()},
        "sources": {
            "video": {"present": True, "name": "demo-camera", "kind": "demo", "device": None, "reason": ""},
            "audio": {"present": True, "name": "demo-mic", "kind": "demo", "device": None, "reason": ""},
            "text": {"present": True, "name": "demo-transcript", "kind": "demo", "device": None, "reason": ""},
        },
        "video_fps": FPS,
        "window_config": WindowConfig(video_fps=FPS).to_json(),
    }
    rec = SessionRecorder(out, meta, clock=clock, queue_size=10**6, max_queue_bytes=2**31, jpeg_quality=80).start()
    with tempfile.TemporaryDirectory() as tmp:
        audio = build_audio(Path(tmp))
    img = base_image()

    events: list[tuple[float, object]] = []  # (arrival, packet)
    for m in Modality:
        events.append((0.0, SourceStatus(SourceState.RUNNING, "", 0.0, m, f"demo-{m.value}")))
    off0, off1 = SCRIPT["camera_off"]
    events.append((off0, SourceStatus(SourceState.RECONNECTING, "camera disconnected (demo: unplugged)", off0,
                                      Modality.VIDEO, "demo-video")))
    events.append((off1, SourceStatus(SourceState.RUNNING, "", off1, Modality.VIDEO, "demo-video")))
    # the scripted no-transcript stretch is a transcript source that stops, not a pause in the talk ("idle")
    nt0, nt1 = SCRIPT["no_transcript"]
    events.append((nt0, SourceStatus(SourceState.UNAVAILABLE, "transcript source stopped (demo: no transcript)", nt0,
                                     Modality.TEXT, "demo-text")))
    events.append((nt1, SourceStatus(SourceState.RUNNING, "", nt1, Modality.TEXT, "demo-text")))
    for k in range(int(DURATION_S * FPS)):
        t = k / FPS
        if not _in("camera_off", t):
            events.append((t, VideoFrame(t, render_frame(img, t), k)))
    chunk = int(CHUNK_S * AUDIO_RATE)
    for a in range(0, len(audio) - chunk + 1, chunk):
        t = a / AUDIO_RATE
        events.append((t + CHUNK_S, AudioChunk(t, audio[a:a + chunk].copy())))
    for line in LINES:
        if not line.captioned:
            continue
        dur = 0.35 * len(line.text.split()) + 0.4
        source = "typed" if not line.spoken else "demo"
        events.append((line.t + dur, TextSegment(line.t, line.t + dur, line.text, source)))
    events.sort(key=lambda e: e[0])
    for arrival, packet in events:
        clock.advance_to(arrival)
        rec(packet)
    clock.advance_to(DURATION_S)
    return rec.close(end_t=DURATION_S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEMO_SESSION)
    p.add_argument("--force", action="store_true", help="replace an existing demo session folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.out.exists():
        if not args.force:
            print(f"error: {args.out} exists; pass --force to rebuild it", file=sys.stderr)
            return 2
        shutil.rmtree(args.out)
    meta = build(args.out)
    size = sum(f.stat().st_size for f in args.out.iterdir()) / 2**20
    print(f"demo session: {args.out} ({meta['counts']['frames']} frames, {DURATION_S:.0f} s, {size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
