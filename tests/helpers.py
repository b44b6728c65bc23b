"""Small builders shared by tests: deterministic packet streams without threads."""
from __future__ import annotations

import numpy as np

from streams.packets import AUDIO_RATE, AudioChunk, Modality, SourceState, SourceStatus, TextSegment, VideoFrame


def frame(t: float, index: int, size=(32, 24)) -> VideoFrame:
    w, h = size
    return VideoFrame(t, np.full((h, w, 3), index % 255, np.uint8), index)


def video_packets(t_start: float, t_end: float, fps: float = 15.0, skip=(), first_index: int = 0):
    """Frames every 1/fps in [t_start, t_end); frame numbers in ``skip`` are lost (index still advances)."""
    out, k = [], first_index
    t = t_start
    while t < t_end - 1e-9:
        if k not in skip:
            out.append(frame(t, k))
        k += 1
        t = t_start + (k - first_index) / fps
    return out


def audio_packets(t_start: float, t_end: float, chunk_s: float = 0.032, level: float = 0.1):
    n = int(round(chunk_s * AUDIO_RATE))
    out, k = [], 0
    while t_start + k * chunk_s < t_end - 1e-9:
        t = t_start + k * chunk_s
        rng = np.random.default_rng(k)
        out.append(AudioChunk(t, (level * rng.standard_normal(n)).astype(np.float32)))
        k += 1
    return out


def status(modality: Modality, state: SourceState, t: float, reason: str = "") -> SourceStatus:
    return SourceStatus(state, reason, t, modality, f"test-{modality.value}")


def text(t0: float, t1: float, words: str = "hello there") -> TextSegment:
    return TextSegment(t0, t1, words, "test")


def wait_for(pred, timeout: float = 4.0) -> bool:
    """Poll ``pred`` until it holds or ``timeout`` passes (tests never sleep longer than they must)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def window_of(packets, t1: float, config=None):
    """The window ending at ``t1`` cut from ``packets`` (pushed in time order, as a live buffer would get them)."""
    from streams.buffer import TimeAlignedBuffer, Windower

    buf = TimeAlignedBuffer()
    for p in sorted(packets, key=lambda p: getattr(p, "t_end", None) or getattr(p, "t1", None) or p.t):
        buf.push(p)
    wins = [w for w in Windower(buf, config).due(t1 + 1.0, final=True) if abs(w.t1 - t1) < 1e-6]
    assert wins, f"no window ends at {t1}"
    return wins[0]


def fill_disk_under(recorder, name: str) -> None:
    """Make every later write to the recorder's ``name`` fail with ENOSPC, as a disk filling up mid-recording
    does: the open file is swapped for ``/dev/full`` (the recorder refuses a folder that already holds a
    ``video.mjpeg``, so a symlink planted before ``start`` is not an option)."""
    old = recorder._files[name]
    recorder._files[name] = open("/dev/full", "wb", buffering=0)
    old.close()
