"""Video files as packet streams: decode mp4/mkv/webm/avi (anything FFmpeg reads) with PyAV.

A file is treated like a recorded session without arrival times: frames come as BGR ``VideoFrame`` values
stamped from their pts, audio is resampled to 16 kHz mono float32 and cut into ``AudioChunk`` values stamped from
pts, and an ``.srt``/``.vtt`` file with the same stem beside the video supplies text segments. Times are seconds
from the start of the file (the earliest start time of its audio and video streams, so A/V sync is kept).

Each modality's stream carries its own statuses: ``RUNNING`` before the first packet and ``ENDED`` after the
last, with the reason (end of file, truncated file, decode error), so replay shows a file running out exactly
like a device that stopped.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from .packets import (
    AUDIO_RATE,
    AudioChunk,
    Modality,
    SourceState,
    SourceStatus,
    TextSegment,
    VideoFrame,
    cap_frame_size,
)
from .session import Timed

log = logging.getLogger(__name__)

TRANSCRIPT_SUFFIXES = (".srt", ".vtt")
END_EPS_S = 1e-3
"""``ENDED`` is stamped this long after the last frame/sample ends, so a window ending exactly at the end of the
file still sees its source running (the windower takes the status in force *at* ``t1``)."""
TEXT_LEAD_S = 1.0
"""File transcripts reach the buffer up to this long before they end (a live captioner delivers at the end; a
file knows its text in advance). The buffer keeps 1 s of slack beyond a window, so this never loses text."""
DISCONTINUITY_S = 0.1


MAX_BAD_PACKETS = 25
"""Damaged packets a stream skips in a row before decoding gives up (the stream then ends with the reason)."""


class _Decoder:
    """Decode ``stream`` packet by packet, skipping (and counting) packets the decoder rejects, so one damaged
    packet in the middle of a long file costs that packet, not everything after it. Demuxer errors and more than
    :data:`MAX_BAD_PACKETS` bad packets in a row still end the stream (the caller reports the error)."""

    def __init__(self, av, container, stream) -> None:
        self.av, self.container, self.stream = av, container, stream
        self.skipped = 0

    def __iter__(self):
        in_a_row = 0
        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except self.av.InvalidDataError as exc:
                self.skipped += 1
                in_a_row += 1
                log.info("skipping a damaged %s packet: %s", self.stream.type, exc)
                if in_a_row > MAX_BAD_PACKETS:
                    raise
                continue
            in_a_row = 0
            yield from frames


class MediaFileError(ValueError):
    """A missing, unreadable or undecodable media file; the message names the file."""


def _why(exc: BaseException) -> str:
    """FFmpeg's own sentence without the errno and path PyAV wraps around it."""
    return str(getattr(exc, "strerror", None) or exc)


def _av():
    import av  # lazy: PyAV loads FFmpeg, which the live path does not need

    return av


class MediaFile:
    """A video (or audio-only) file opened for replay.

    Args:
        path: the media file.
        transcript: a ``.srt``/``.vtt``/``.jsonl`` transcript to use, ``None`` for none, or ``"auto"`` to pick up
            ``STEM.srt`` / ``STEM.vtt`` beside the file.

    Raises:
        MediaFileError: the file does not exist or FFmpeg cannot read it.
    """

    def __init__(self, path: str | os.PathLike, transcript: str | os.PathLike | None = "auto") -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise MediaFileError(f"video file not found: {self.path}")
        if not self.path.is_file():
            raise MediaFileError(f"not a video file: {self.path} is a folder without meta.json")
        av = _av()
        try:
            with av.open(str(self.path)) as c:
                v = c.streams.video[0] if c.streams.video else None
                a = c.streams.audio[0] if c.streams.audio else None
                if v is None and a is None:
                    raise MediaFileError(f"cannot decode {self.path.name}: no audio or video stream; "
                                         "is it a video file?")
                starts = [float(s.start_time * s.time_base) for s in (v, a)
                          if s is not None and s.start_time is not None]
                self.origin = min(starts) if starts else 0.0
                self.duration = float(c.duration) / 1e6 if c.duration else None
                self.has_video, self.has_audio = v is not None, a is not None
                self.video_fps = float(v.average_rate) if v is not None and v.average_rate else None
                self.size = (v.codec_context.width, v.codec_context.height) if v is not None else None
                self.codecs = {s.type: s.codec_context.name for s in (v, a) if s is not None}
                self.audio_rate_in = a.codec_context.sample_rate if a is not None else None
        except MediaFileError:
            raise
        except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
            raise MediaFileError(f"cannot decode {self.path.name}: {_why(exc)}; is it a video file?") from exc
        self.transcript_path = self._find_transcript(transcript)
        self.name = f"file:{self.path.name}"

    def _find_transcript(self, transcript: str | os.PathLike | None) -> Path | None:
        if transcript is None:
            return None
        if transcript != "auto":
            p = Path(transcript)
            if not p.is_file():
                raise MediaFileError(f"transcript file not found: {p}")
            return p
        for suffix in TRANSCRIPT_SUFFIXES:
            p = self.path.with_suffix(suffix)
            if p.is_file():
                return p
        return None

    # -- description --------------------------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        return {"kind": "file", "path": str(self.path), "duration_s": self.duration, "video_fps": self.video_fps,
                "size": self.size, "codecs": self.codecs, "audio_rate_in": self.audio_rate_in,
                "transcript": str(self.transcript_path) if self.transcript_path else None}

    def sources(self) -> dict[Modality, dict]:
        name = self.path.name
        no_video, no_audio = f"no video track in {name}", f"no audio track in {name}"
        return {
            Modality.VIDEO: {"present": self.has_video, "reason": "" if self.has_video else no_video},
            Modality.AUDIO: {"present": self.has_audio, "reason": "" if self.has_audio else no_audio},
            Modality.TEXT: {"present": self.transcript_path is not None,
                            "reason": "" if self.transcript_path else "no transcript source"},
        }

    def absent_reasons(self) -> dict[Modality, str]:
        return {m: s["reason"] for m, s in self.sources().items() if not s["present"]}

    def timed_streams(self) -> list[Iterator[Timed]]:
        """One ``(arrival, packet)`` iterator per modality present, each in arrival order, statuses included."""
        out = []
        if self.has_video:
            out.append(self.timed_frames())
        if self.has_audio:
            out.append(self.timed_audio())
        if self.transcript_path is not None:
            out.append(self.timed_text())
        return out

    # -- decoding -------------------------------------------------------------------------------------------
    def _status(self, modality: Modality, state: SourceState, t: float, reason: str = "") -> Timed:
        return t, SourceStatus(state, reason, t, modality, self.name)

    def _end_reason(self, modality: Modality, last_end: float | None, error: Exception | None,
                    skipped: int = 0) -> str:
        reason = self._end_reason_text(modality, last_end, error)
        return f"{reason} ({skipped} damaged packet{'s' if skipped != 1 else ''} skipped)" if skipped else reason

    def _end_reason_text(self, modality: Modality, last_end: float | None, error: Exception | None) -> str:
        noun = "video" if modality is Modality.VIDEO else "audio"
        if error is not None:
            at = f" at {last_end:.1f} s" if last_end is not None else ""
            return f"{self.path.name}: {noun} decode error{at} ({error}); the file may be truncated or corrupt"
        if last_end is None:
            return f"{self.path.name}: no {noun} could be decoded"
        if self.duration and last_end < self.duration - 0.5:
            return (f"{self.path.name}: {noun} ends at {last_end:.1f} s but the file should last "
                    f"{self.duration:.1f} s (truncated?)")
        return f"end of {self.path.name}"

    def _open_stream(self, kind: str):
        av = _av()
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as exc:
            raise MediaFileError(f"cannot decode {self.path.name}: {_why(exc)}; is it a video file?") from exc
        stream = (container.streams.video if kind == "video" else container.streams.audio)[0]
        stream.thread_type = "AUTO"
        return av, container, stream

    def timed_frames(self) -> Iterator[Timed]:
        """BGR frames stamped from pts (downscaled to fit :data:`~streams.packets.MAX_FRAME_SIZE`); arrival =
        frame time (a camera delivers a frame as it is taken)."""
        av, container, stream = self._open_stream("video")
        period = 1.0 / self.video_fps if self.video_fps else 0.0
        last_t: float | None = None
        index = 0
        error: Exception | None = None
        started = False
        decoder = _Decoder(av, container, stream)
        try:
            for frame in decoder:
                if frame.pts is not None and frame.time is not None:
                    t = float(frame.time) - self.origin
                else:
                    t = (last_t + period) if last_t is not None else 0.0
                if not started:
                    started = True
                    yield self._status(Modality.VIDEO, SourceState.RUNNING, min(0.0, t))
                yield t, VideoFrame(t, np.ascontiguousarray(self._bgr(frame)), index)
                index += 1
                last_t = t
        except (av.FFmpegError, OSError, ValueError) as exc:
            error = exc
            log.warning("%s: video decoding stopped after %d frames: %s", self.path, index, exc)
        finally:
            container.close()
        if not started:
            yield self._status(Modality.VIDEO, SourceState.RUNNING, 0.0)
        last_end = last_t + period if last_t is not None else None
        t_end = (last_end if last_end is not None else 0.0) + END_EPS_S
        yield self._status(Modality.VIDEO, SourceState.ENDED, t_end,
                           self._end_reason(Modality.VIDEO, last_end, error, decoder.skipped))

    @staticmethod
    def _bgr(frame) -> np.ndarray:
        """The frame as BGR, scaled by FFmpeg to fit :data:`~streams.packets.MAX_FRAME_SIZE` in the same
        conversion (so a full-size 8K image is never made in Python)."""
        width, height = cap_frame_size(frame.width, frame.height)
        if (width, height) == (frame.width, frame.height):
            return frame.to_ndarray(format="bgr24")
        return frame.reformat(width=width, height=height, format="bgr24").to_ndarray()

    def timed_audio(self) -> Iterator[Timed]:
        """16 kHz mono float32 chunks; stamped from the first pts and then by sample count (so chunks tile
        exactly), re-anchored on a pts jump larger than 0.1 s; arrival = chunk end."""
        av, container, stream = self._open_stream("audio")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        base_t: float | None = None
        emitted = 0
        expect: float | None = None
        last_end: float | None = None
        error: Exception | None = None
        started = False

        def chunks(frames, base: float) -> Iterator[Timed]:
            """Chunks of resampled ``frames``, stamped ``base`` + the samples emitted since the last anchor."""
            nonlocal emitted, last_end
            for out in frames:
                samples = np.ascontiguousarray(out.to_ndarray().reshape(-1), dtype=np.float32)
                if not len(samples):
                    continue
                chunk = AudioChunk(base + emitted / AUDIO_RATE, samples)
                emitted += len(samples)
                last_end = chunk.t_end
                yield chunk.t_end, chunk

        decoder = _Decoder(av, container, stream)
        skipped = 0
        try:
            for frame in decoder:
                t_in = float(frame.time) - self.origin if frame.time is not None else expect
                if t_in is None:
                    t_in = 0.0
                if not started:
                    started = True
                    yield self._status(Modality.AUDIO, SourceState.RUNNING, min(0.0, t_in))
                if base_t is None:
                    base_t = t_in
                elif expect is not None and (abs(t_in - expect) > DISCONTINUITY_S or decoder.skipped != skipped):
                    # a pts jump, or a damaged packet was skipped: restamp from pts so audio stays in sync
                    log.info("%s: audio jumps from %.3f s to %.3f s; re-anchoring", self.path, expect, t_in)
                    yield from chunks(resampler.resample(None), base_t)
                    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
                    base_t, emitted = t_in, 0
                skipped = decoder.skipped
                expect = t_in + frame.samples / float(frame.sample_rate or AUDIO_RATE)
                yield from chunks(resampler.resample(frame), base_t)
            if base_t is not None:
                yield from chunks(resampler.resample(None), base_t)
        except (av.FFmpegError, OSError, ValueError) as exc:
            error = exc
            log.warning("%s: audio decoding stopped at %.1f s: %s", self.path, last_end or 0.0, exc)
        finally:
            container.close()
        if not started:
            yield self._status(Modality.AUDIO, SourceState.RUNNING, 0.0)
        t_end = (last_end if last_end is not None else 0.0) + END_EPS_S
        yield self._status(Modality.AUDIO, SourceState.ENDED, t_end,
                           self._end_reason(Modality.AUDIO, last_end, error, decoder.skipped))

    def timed_text(self) -> Iterator[Timed]:
        """Segments of the transcript file beside the video, delivered up to :data:`TEXT_LEAD_S` before they end."""
        assert self.transcript_path is not None
        try:
            from .transcript import read_transcript_file
        except ImportError:
            log.warning("transcript reading is not available in this build; ignoring %s", self.transcript_path)
            segments: list[TextSegment] = []
        else:
            try:
                segments = list(read_transcript_file(self.transcript_path))
            except (OSError, ValueError) as exc:
                raise MediaFileError(f"cannot read transcript {self.transcript_path}: {exc}") from exc
        if self.duration is not None:  # a cue after the end of the media would stretch replay over empty windows
            late = [s for s in segments if s.t0 > self.duration + 1.0]
            if late:
                log.warning("%s: %d transcript segment(s) start after the end of %s (%.1f s); ignored",
                            self.transcript_path, len(late), self.path.name, self.duration)
                segments = [s for s in segments if s.t0 <= self.duration + 1.0]
        yield self._status(Modality.TEXT, SourceState.RUNNING, min([0.0] + [s.t0 for s in segments]))
        for seg in sorted(segments, key=lambda s: max(s.t0, s.t1 - TEXT_LEAD_S)):
            yield max(seg.t0, seg.t1 - TEXT_LEAD_S), seg


def write_test_video(path: str | os.PathLike, seconds: float = 3.0, fps: int = 15, size: tuple[int, int] = (160, 120),
                     audio: str | None = "tone", video_codec: str = "libx264", audio_rate: int = 44100,
                     faststart: bool = False) -> Path:
    """Write a small deterministic video (moving synthetic face; ``audio`` = ``tone``/``speechlike``/``silence``
    AAC stereo, or ``None`` for no audio track). For tests and demos: it needs nothing but PyAV."""
    from .synthetic import synthetic_audio, synthetic_frame

    av = _av()
    path = Path(path)
    options = {"movflags": "faststart"} if faststart and path.suffix.lower() in (".mp4", ".mov") else {}
    with av.open(str(path), "w", options=options) as c:
        vs = c.add_stream(video_codec, rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        as_ = None
        if audio:
            as_ = c.add_stream("aac", rate=audio_rate)
            as_.layout = "stereo"
        for i in range(int(round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, i / fps, size), format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if audio and as_ is not None:  # (as_ exists exactly when audio is set; this tells the type checker)
            total, k = int(round(seconds * audio_rate)), 0
            while k < total:
                n = min(1024, total - k)
                x = synthetic_audio(audio, k / audio_rate, n, rate=audio_rate)
                af = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
                af.sample_rate, af.pts = audio_rate, k
                af.time_base = Fraction(1, audio_rate)
                for p in as_.encode(af):
                    c.mux(p)
                k += n
            for p in as_.encode():
                c.mux(p)
    return path
