"""Transcript input: timed subtitle files, tailed text files, stdin lines and text typed in the UI.

Parsing is deliberately forgiving: transcripts come from captioning tools, hand edits and other programs, so a
malformed cue is skipped, counted and logged, and everything else still loads. Parsing is a pure function
(:func:`read_transcript_file`) so replay uses the same code without a source. :class:`TranscriptSource` turns a
spec (``-``, a timed file, any other text file, or nothing) into live segments, and never raises: a missing file
or a closed stdin is a status.
"""
from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .clock import Clock
from .packets import Modality, SourceState, TextSegment
from .source import Sink, ThreadedSource

log = logging.getLogger(__name__)

MAX_CHARS = 2000
"""Longer transcript lines are truncated (with a warning): nothing downstream needs more per segment."""

TIMED_SUFFIXES = (".srt", ".vtt", ".jsonl")

MAX_TIME_S = 24 * 3600.0
"""Timed entries starting later than this (seconds from session start) are skipped as malformed: a typo such as
``99999:00:00`` would otherwise make replay cut windows for years of empty session."""

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""C0/C1 control characters and bidi overrides: never part of speech, and they garble a terminal or a log."""

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?"
_CUE = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_TAG = re.compile(r"<[^<>]*>|\{\\[^{}]*\}")  # <i>, <v Name>, <c.x>, <00:01.000>, {\an8}


@dataclass
class ParsedTranscript:
    """Segments in file order, and how many entries were skipped as malformed."""

    segments: list[TextSegment] = field(default_factory=list)
    skipped: int = 0


def clean_text(text: str, limit: int = MAX_CHARS, markup: bool = True, where: str = "") -> str:
    """Drop subtitle markup (when ``markup``) and control characters, collapse whitespace and cap the length
    (warning, naming ``where`` - e.g. ``"talk.srt line 12"`` - when it does).

    Work per line is bounded: the text is cut to ``4 * limit`` characters before any pattern runs on it, so a
    1 MB line costs no more than a short one."""
    n = len(text)
    if n > 4 * limit:
        text = text[:4 * limit]
    if markup:
        text = html.unescape(_TAG.sub("", text))
    text = _SURROGATE.sub("\ufffd", text.replace("\ufeff", ""))  # lone surrogates (JSON "\ud800") cannot be encoded
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    if len(text) > limit or n > 4 * limit:
        log.warning("%stranscript line of %d characters truncated to %d", f"{where}: " if where else "", n, limit)
        text = text[:limit]
    return text


def _seconds(groups: tuple[str | None, ...]) -> float:
    h, m, s, frac = groups
    if m is None or s is None:
        raise ValueError("minutes or seconds missing")
    if int(m) >= 60 or int(s) >= 60:
        raise ValueError("minutes/seconds out of range")
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + (int(frac.ljust(3, "0")) / 1000 if frac else 0.0)


def check_times(t0: float, t1: float) -> tuple[float, float]:
    """Validate a timed entry: finite, ``t1 >= t0``, ends at or after 0, starts before :data:`MAX_TIME_S`.

    A start before 0 (a caption of speech before the session began) is clipped to 0. Raises ``ValueError``."""
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise ValueError(f"bad times t0={t0} t1={t1}")
    if t1 < t0:
        raise ValueError(f"ends before it starts ({t0:.3f} > {t1:.3f})")
    if t1 < 0:
        raise ValueError(f"ends before the session starts (t1={t1:.3f})")
    if t0 > MAX_TIME_S:
        raise ValueError(f"starts {t0:.0f} s into the session, beyond the {MAX_TIME_S:.0f} s limit")
    return max(t0, 0.0), t1


def _time_value(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"time {v!r} is not a number")
    return float(v)


def parse_cues(text: str, source: str, name: str = "") -> ParsedTranscript:
    """SRT or WebVTT text: blank-line separated blocks, each with a ``start --> end`` line then text lines.

    ``name`` (the file) is named in warnings with the line a bad cue starts on."""
    out = ParsedTranscript()
    blocks = re.split(r"(\n[ \t]*\n)", text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff"))
    starts, line_no = [], 1
    for k, piece in enumerate(blocks):
        if k % 2 == 0:
            starts.append(line_no + (len(piece) - len(piece.lstrip("\n"))))
        line_no += piece.count("\n")
    blocks = blocks[::2]
    where_file = name or source
    for n, block in enumerate(blocks):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        head = lines[0].strip()
        if n == 0 and head.startswith("WEBVTT") and not any("-->" in ln for ln in lines):
            continue  # the header block
        if head.split()[0] in ("NOTE", "STYLE", "REGION"):
            continue
        timing = next((i for i, ln in enumerate(lines[:3]) if "-->" in ln), None)
        m = _CUE.match(lines[timing]) if timing is not None else None
        try:
            if m is None or timing is None:
                raise ValueError("no 'start --> end' line")
            t0, t1 = check_times(_seconds(m.groups()[:4]), _seconds(m.groups()[4:]))
        except ValueError as exc:
            out.skipped += 1
            log.warning("%s line %d: skipping malformed %s cue %d (%s): %.60r", where_file, starts[n], source, n + 1,
                        exc, block)
            continue
        words = clean_text(" ".join(lines[timing + 1:]), where=f"{where_file} line {starts[n]}")
        if words:
            out.segments.append(TextSegment(t0, t1, words, source))
    return out


def parse_jsonl(text: str, source: str = "jsonl", name: str = "") -> ParsedTranscript:
    """One JSON object per line: ``t0``/``t1`` (or ``start``/``end``) in seconds and ``text``."""
    out = ParsedTranscript()
    for n, line in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            if not isinstance(d, dict):
                raise ValueError("not an object")
            t0, t1 = check_times(_time_value(d["t0"] if "t0" in d else d["start"]),
                                 _time_value(d["t1"] if "t1" in d else d["end"]))
            if not isinstance(d.get("text"), str):
                raise ValueError("no text")
            conf = d.get("confidence")
            conf = float(conf) if isinstance(conf, (int, float)) and 0 <= conf <= 1 else None
            src = d["source"] if isinstance(d.get("source"), str) else source
        except (ValueError, KeyError, TypeError) as exc:
            out.skipped += 1
            log.warning("%s line %d: skipping malformed transcript entry (%s): %.60r", name or source, n, exc, line)
            continue
        words = clean_text(d["text"], where=f"{name or source} line {n}")
        if words:
            out.segments.append(TextSegment(t0, t1, words, src, conf))
    return out


def parse_transcript(text: str, fmt: str, name: str = "") -> ParsedTranscript:
    """Parse ``text`` as ``srt``, ``vtt`` or ``jsonl`` (``name``: the file, for warnings)."""
    if fmt == "jsonl":
        return parse_jsonl(text, name=name)
    if fmt in ("srt", "vtt"):
        return parse_cues(text, fmt, name)
    raise ValueError(f"unknown transcript format {fmt!r}: use srt, vtt or jsonl")


def sniff_format(path: str | os.PathLike, text: str) -> str | None:
    """The format from the extension, else from the content; ``None`` for plain text."""
    suffix = Path(path).suffix.lower()
    if suffix in TIMED_SUFFIXES:
        return suffix[1:]
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("WEBVTT"):
        return "vtt"
    if head.startswith("{"):
        return "jsonl"
    if re.search(r"^\s*" + _TIME + r"\s*-->", head[:1000], re.M):
        return "srt"
    return None


def read_transcript_file(path: str | os.PathLike) -> list[TextSegment]:
    """Timed segments from a ``.srt``, ``.vtt`` or ``.jsonl`` file (times in seconds from session start).

    Malformed entries are skipped with a warning and counted; undecodable bytes become U+FFFD. Raises only
    ``OSError`` when the file cannot be read and ``ValueError`` when it is not in a transcript format at all.
    """
    return load_transcript_file(path).segments


def load_transcript_file(path: str | os.PathLike) -> ParsedTranscript:
    """:func:`read_transcript_file` with the count of skipped entries (same errors)."""
    raw = Path(path).read_bytes()
    text = raw.decode("utf-8", errors="replace")
    if "\ufffd" in text and b"\xef\xbf\xbd" not in raw:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            log.warning("%s line %d: invalid UTF-8 (%s); undecodable bytes were replaced with U+FFFD - save the "
                        "file as UTF-8", path, line, exc.reason)
    fmt = sniff_format(path, text)
    if fmt is None:
        raise ValueError(f"{path} is not an .srt, .vtt or .jsonl transcript")
    parsed = parse_transcript(text, fmt, str(path))
    if parsed.skipped:
        log.warning("%s: skipped %d malformed entr%s, kept %d", path, parsed.skipped,
                    "y" if parsed.skipped == 1 else "ies", len(parsed.segments))
    return parsed


def spoken_span(text: str, t_received: float) -> tuple[float, float]:
    """``[t0, t1]`` for a line received at ``t_received``: 0.4 s per word before it, at most 5 s, not before 0."""
    duration = min(5.0, 0.4 * max(1, len(text.split())))
    return min(t_received, max(0.0, t_received - duration)), t_received


class TranscriptSource(ThreadedSource):
    """Live transcript segments from ``spec`` plus anything :meth:`push`-ed (text typed in the UI).

    Args:
        spec: ``"-"`` reads lines from stdin; a ``.srt``/``.vtt``/``.jsonl`` path emits each segment when the
            session clock passes its end (times are seconds from session start); any other path is tailed like
            ``tail -f`` (only lines appended after start count); ``None`` means push-only.
        stdin: the stream to read for ``"-"`` (defaults to ``sys.stdin``; tests pass a pipe).
        poll_s: how often a tailed file or a timed schedule is checked.
        partial_line_s: a tailed line without its newline is taken as complete after this long.
    """

    modality = Modality.TEXT

    def __init__(self, clock: Clock, sink: Sink | None = None, spec: str | None = None, *, name: str | None = None,
                 stdin: IO[Any] | None = None, poll_s: float = 0.05, partial_line_s: float = 1.0) -> None:
        self.spec = spec or None
        if self.spec is None:
            self.mode = "ui"
        elif self.spec == "-":
            self.mode = "stdin"
        else:
            self.mode = "timed" if Path(self.spec).suffix.lower() in TIMED_SUFFIXES else "tail"
        default = {"ui": "ui", "stdin": "stdin"}.get(self.mode) or os.path.basename(self.spec or "")
        super().__init__(name or default, clock, sink)
        self.stdin, self.poll_s, self.partial_line_s = stdin, poll_s, partial_line_s
        self._emit_lock = threading.Lock()
        self.counters.extra["skipped"] = 0

    def push(self, text: str, t0: float | None = None, t1: float | None = None) -> TextSegment | None:
        """Add a segment now (``t1`` defaults to the clock, ``t0`` to an estimate of speaking time). Never raises;
        returns the segment, or ``None`` when the text is empty."""
        try:
            words = clean_text(str(text), markup=False)
            if not words:
                return None
            t1 = self.clock.now() if t1 is None else float(t1)
            t0 = spoken_span(words, t1)[0] if t0 is None else min(float(t0), t1)
            seg = TextSegment(t0, t1, words, "ui")
        except (TypeError, ValueError) as exc:
            log.warning("ignoring pushed transcript text: %s", exc)
            return None
        self._emit_text(seg)
        return seg

    def push_segment(self, seg: TextSegment) -> None:
        """Add a ready-made segment (e.g. from a speech recogniser, keeping its times and confidence)."""
        if isinstance(seg, TextSegment) and seg.text.strip():
            self._emit_text(seg)

    def _emit_text(self, seg: TextSegment) -> None:
        with self._emit_lock:  # push() comes from UI threads while the reader thread emits too
            self._emit(seg)

    def _line(self, raw: bytes | str, source: str) -> None:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        words = clean_text(text, markup=False)
        if words:
            t0, t1 = spoken_span(words, self.clock.now())
            self._emit_text(TextSegment(t0, t1, words, source))

    def _stop(self) -> None:
        """Return at once even when the reader is blocked in ``stdin.readline`` (a daemon thread; it just ends)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=0.3 if self.mode == "stdin" else 1.0)

    def _run(self) -> None:
        if self.mode == "ui":
            self._set_status(SourceState.RUNNING)
            self._stopping.wait()
        elif self.mode == "stdin":
            self._run_stdin()
        elif self.mode == "timed":
            self._run_timed()
        else:
            self._run_tail()

    def _run_stdin(self) -> None:
        stream = self.stdin if self.stdin is not None else sys.stdin
        if stream is None:
            self._set_status(SourceState.UNAVAILABLE, "no stdin to read the transcript from")
            return
        stream = getattr(stream, "buffer", stream)
        self._set_status(SourceState.RUNNING)
        cap, discarding = MAX_CHARS * 4, False
        while not self._stopping.is_set():
            try:
                line = stream.readline(cap)
            except (OSError, ValueError) as exc:  # ValueError: "I/O operation on closed file"
                self._set_status(SourceState.ENDED, f"stdin closed ({exc})")
                return
            if not line:
                self._set_status(SourceState.ENDED, "stdin closed")
                return
            if self._stopping.is_set():
                return
            complete = line.endswith(b"\n") if isinstance(line, bytes) else line.endswith("\n")
            if not discarding:
                self._line(line, "stdin")
            discarding = not complete  # the rest of an over-long line was already represented, truncated

    def _run_timed(self) -> None:
        path = self.spec or ""
        try:
            parsed = load_transcript_file(path)
            segments = sorted(parsed.segments, key=lambda s: s.t1)
            self.counters.extra["skipped"] = parsed.skipped
        except OSError as exc:
            self._set_status(SourceState.UNAVAILABLE,
                             f"transcript file {path} could not be read ({exc.strerror or exc}): "
                             "check the path given with --transcript")
            return
        except ValueError as exc:
            self._set_status(SourceState.UNAVAILABLE, str(exc))
            return
        self._set_status(SourceState.RUNNING)
        for seg in segments:
            while self.clock.now() < seg.t1:
                if self._stopping.wait(min(self.poll_s, max(0.001, seg.t1 - self.clock.now()))):
                    return
            self._emit_text(seg)
        self._set_status(SourceState.ENDED, f"end of transcript file {path}")

    def _run_tail(self) -> None:
        path = self.spec or ""
        try:
            f = open(path, "rb")  # noqa: SIM115 - reopened on rotation, closed in finally
        except OSError as exc:
            self._set_status(SourceState.UNAVAILABLE, f"transcript file {path} could not be opened "
                                                       f"({exc.strerror or exc}): check the path given with "
                                                       "--transcript")
            return
        f.seek(0, os.SEEK_END)
        self._set_status(SourceState.RUNNING)
        files: list[IO[bytes]] = [f]  # the file currently tailed (replaced on rotation), closed whatever happens
        try:
            self._tail(files, path)
        finally:
            files[0].close()

    def _tail(self, files: list[IO[bytes]], path: str) -> None:
        f = files[0]
        buf, last_data, ino = b"", time.monotonic(), os.fstat(f.fileno()).st_ino
        while not self._stopping.wait(self.poll_s):
            try:
                st = os.stat(path)
            except OSError:
                if buf:
                    self._line(buf, "file")
                self._set_status(SourceState.ENDED, f"transcript file {path} removed")
                return
            if st.st_ino != ino or st.st_size < f.tell():  # replaced (log rotation) or truncated: start over
                log.info("transcript file %s was replaced or truncated; reading it from the start", path)
                try:
                    new = open(path, "rb")  # noqa: SIM115
                except OSError:
                    continue
                f.close()
                f = files[0] = new
                buf, ino = b"", os.fstat(new.fileno()).st_ino
            data = f.read(1 << 20)
            if data:
                buf += data
                last_data = time.monotonic()
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._line(line, "file")
            if buf and (time.monotonic() - last_data > self.partial_line_s or len(buf) > MAX_CHARS * 4):
                self._line(buf, "file")
                buf = b""


def open_transcript_source(spec: str | None, clock: Clock, sink: Sink | None = None) -> TranscriptSource:
    """The transcript source for a ``--transcript`` value (``-``, a path, or ``None`` for UI input only)."""
    return TranscriptSource(clock, sink, spec)
