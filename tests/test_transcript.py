"""Transcript parsing (srt, vtt, jsonl) and the live transcript sources (timed file, tailed file, stdin, push)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streams.clock import SessionClock, SimulatedClock
from streams.packets import SourceState, SourceStatus, TextSegment
from streams.transcript import (
    MAX_CHARS,
    TranscriptSource,
    load_transcript_file,
    open_transcript_source,
    read_transcript_file,
)
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]

SRT = (
    "\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello</i> there,\r\n{\\an8}friend\r\n\r\n"
    "2\r\n00:00:03,000 --> 00:00:0x,000\r\nbroken time\r\n\r\n"
    "3\r\nno timing line here\r\n\r\n"
    "4\r\n00:00:05,000 --> 00:00:04,000\r\nends before it starts\r\n\r\n"
    "5\r\n01:00:10,5 --> 01:00:12,250\r\nAT&amp;T <b>rocks</b>\r\n"
)

VTT = """WEBVTT - a caption file
Kind: captions

NOTE this is a comment
that spans lines

STYLE
::cue { color: yellow }

intro
00:01.000 --> 00:02.000 align:start position:10%
<v Roger Bingham>We are in New York City

00:02.500 --> 00:04.000
<c.loud>So</c> <00:03.000>we're <b>here</b>

00:05.000 --> garbage
lost cue
"""


class LateClock(SessionClock):
    """A session already 100 s old, so estimated speaking spans are not clipped at session start."""

    def now(self) -> float:
        return super().now() + 100.0


def collect():
    items, lock = [], threading.Lock()

    def sink(p):
        with lock:
            items.append(p)
    sink.items = items  # type: ignore[attr-defined]
    return sink


def segs(sink) -> list[TextSegment]:
    return [p for p in list(sink.items) if isinstance(p, TextSegment)]


def states(sink) -> list[SourceStatus]:
    return [p for p in list(sink.items) if isinstance(p, SourceStatus)]


# -- parsing ---------------------------------------------------------------------------------------------------
def test_srt_with_bom_crlf_tags_and_malformed_cues(tmp_path, caplog):
    path = tmp_path / "talk.srt"
    path.write_bytes(SRT.encode("utf-8"))
    with caplog.at_level(logging.WARNING, logger="streams.transcript"):
        parsed = load_transcript_file(path)
    assert [(s.t0, s.t1, s.text, s.source) for s in parsed.segments] == [
        (1.0, 2.5, "Hello there, friend", "srt"), (3610.5, 3612.25, "AT&T rocks", "srt")]
    assert parsed.skipped == 3
    assert "skipped 3 malformed entries" in caplog.text
    assert read_transcript_file(path) == parsed.segments


def test_vtt_header_notes_styles_voice_and_inline_tags(tmp_path):
    path = tmp_path / "talk.vtt"
    path.write_text(VTT, encoding="utf-8")
    parsed = load_transcript_file(path)
    assert [(s.t0, s.t1, s.text) for s in parsed.segments] == [
        (1.0, 2.0, "We are in New York City"), (2.5, 4.0, "So we're here")]
    assert parsed.skipped == 1


def test_jsonl_accepts_both_key_styles_and_skips_bad_lines(tmp_path):
    lines = [json.dumps({"t0": 0.5, "t1": 1.25, "text": "first", "confidence": 0.8}),
             "",
             json.dumps({"start": 2, "end": 3, "text": "second <b>bold</b>", "source": "asr"}),
             "{not json",
             json.dumps({"t0": 4, "t1": 3, "text": "backwards"}),
             json.dumps({"t0": 4, "text": "no end"}),
             json.dumps({"t0": 4, "t1": 5}),
             json.dumps([1, 2, 3]),
             '{"t0": NaN, "t1": 1, "text": "nan"}',
             json.dumps({"t0": "6", "t1": "7", "text": "string times are fine"})]
    path = tmp_path / "t.jsonl"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode() + b'{"t0": 8, "t1": 9, "text": "caf\xe9"}\n')
    parsed = load_transcript_file(path)
    assert [(s.t0, s.t1, s.text, s.source, s.confidence) for s in parsed.segments] == [
        (0.5, 1.25, "first", "jsonl", 0.8), (2.0, 3.0, "second bold", "asr", None),
        (6.0, 7.0, "string times are fine", "jsonl", None), (8.0, 9.0, "caf\ufffd", "jsonl", None)]
    assert parsed.skipped == 6


def test_format_is_sniffed_and_errors_are_clear(tmp_path):
    odd = tmp_path / "captions.txt"
    odd.write_text("1\n00:00:01,000 --> 00:00:02,000\nsniffed\n")
    assert [s.text for s in read_transcript_file(odd)] == ["sniffed"]
    plain = tmp_path / "notes.txt"
    plain.write_text("just some notes\n")
    with pytest.raises(ValueError, match="not an .srt"):
        read_transcript_file(plain)
    with pytest.raises(OSError):
        read_transcript_file(tmp_path / "missing.srt")


# -- sources ---------------------------------------------------------------------------------------------------
def test_timed_file_emits_each_segment_when_the_clock_passes_its_end(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"t0": 0.0, "t1": 0.5, "text": "one"}\n{"t0": 1.0, "t1": 2.0, "text": "two"}\nbad\n')
    clock = SimulatedClock(speed=None)
    sink = collect()
    src = open_transcript_source(str(path), clock, sink)
    src.poll_s = 0.01
    src.start()
    assert wait_for(lambda: src.status.state is SourceState.RUNNING)
    time.sleep(0.05)
    assert segs(sink) == []
    clock.advance_to(1.0)
    assert wait_for(lambda: len(segs(sink)) == 1)
    time.sleep(0.05)
    assert [s.text for s in segs(sink)] == ["one"], "'two' ends at 2.0 and must wait"
    clock.advance_to(2.0)
    assert wait_for(lambda: src.status.state is SourceState.ENDED)
    assert [(s.t0, s.t1, s.text) for s in segs(sink)] == [(0.0, 0.5, "one"), (1.0, 2.0, "two")]
    assert src.counters.extra["skipped"] == 1
    src.stop()


def test_missing_files_are_unavailable(tmp_path):
    for spec in (str(tmp_path / "gone.srt"), str(tmp_path / "gone.txt")):
        src = TranscriptSource(SessionClock(), None, spec)
        src.start()
        src.join(2.0)
        assert src.status.state is SourceState.UNAVAILABLE and spec in src.status.reason


def test_tailed_file_turns_appended_lines_into_segments(tmp_path, caplog):
    path = tmp_path / "live.txt"
    path.write_text("written before the session\n")
    clock = LateClock()
    sink = collect()
    src = TranscriptSource(clock, sink, str(path), poll_s=0.01, partial_line_s=0.2)
    src.start()
    assert wait_for(lambda: src.status.state is SourceState.RUNNING)
    with open(path, "ab") as f:
        f.write(b"hello there my friend\r\n")
        f.flush()
        assert wait_for(lambda: len(segs(sink)) == 1)
        s = segs(sink)[0]
        assert (s.text, s.source) == ("hello there my friend", "file")
        assert abs(s.t1 - clock.now()) < 0.5 and abs((s.t1 - s.t0) - 1.6) < 1e-9  # 4 words x 0.4 s
        f.write(b"a <3 b \xff and half a line")  # no newline yet: taken after partial_line_s
        f.flush()
        time.sleep(0.1)
        assert len(segs(sink)) == 1
        assert wait_for(lambda: len(segs(sink)) == 2)
        assert segs(sink)[1].text == "a <3 b \ufffd and half a line"
        with caplog.at_level(logging.WARNING, logger="streams.transcript"):
            f.write(("word " * 1000).encode() + b"\n")
            f.flush()
            assert wait_for(lambda: len(segs(sink)) == 3)
    long = segs(sink)[2]
    assert len(long.text) == MAX_CHARS and "truncated" in caplog.text
    assert long.t1 - long.t0 == 5.0, "estimated speaking time is capped at 5 s"
    path.unlink()
    assert wait_for(lambda: src.status.state is SourceState.ENDED)
    assert src.status.reason == f"transcript file {path} removed"
    src.stop()
    assert src.status.state is SourceState.ENDED


def test_tailed_file_that_is_replaced_is_read_from_the_start(tmp_path):
    path = tmp_path / "live.log"
    path.write_text("")
    sink = collect()
    src = TranscriptSource(SessionClock(), sink, str(path), poll_s=0.01)
    src.start()
    assert wait_for(lambda: src.status.state is SourceState.RUNNING)
    new = tmp_path / "rotated"
    new.write_text("fresh line\n")
    os.replace(new, path)
    assert wait_for(lambda: [s.text for s in segs(sink)] == ["fresh line"])
    src.stop()


def test_push_from_the_ui(tmp_path):
    clock = LateClock()
    sink = collect()
    src = open_transcript_source(None, clock, sink)
    src.start()
    assert wait_for(lambda: src.status.state is SourceState.RUNNING)
    seg = src.push("  I   am <b>happy</b> ")
    assert seg is not None and seg.text == "I am <b>happy</b>" and seg.source == "ui"
    assert abs(seg.t1 - clock.now()) < 0.2 and abs(seg.t1 - seg.t0 - 1.2) < 1e-9
    assert src.push("later", t0=3.0, t1=4.0).t0 == 3.0
    assert src.push("   ") is None and src.push("x", t0=9.0, t1=1.0).t0 == 1.0
    early = TranscriptSource(SessionClock()).push("one two three")
    assert early is not None and early.t0 == 0.0 and early.t1 < 0.5, "never before the session started"
    assert [s.text for s in segs(sink)] == ["I am <b>happy</b>", "later", "x"]
    t = time.monotonic()
    src.stop()
    assert time.monotonic() - t < 0.5 and src.status.state is SourceState.STOPPED


def test_stdin_pipe_lines_then_close_ends(tmp_path):
    r, w = os.pipe()
    sink = collect()
    src = TranscriptSource(SessionClock(), sink, "-", stdin=os.fdopen(r, "rb"))
    src.start()
    os.write(w, b"first line\nsecond \xfe line\n\n")
    assert wait_for(lambda: len(segs(sink)) == 2)
    assert [(s.text, s.source) for s in segs(sink)] == [("first line", "stdin"), ("second \ufffd line", "stdin")]
    os.close(w)
    assert wait_for(lambda: src.status.state is SourceState.ENDED)
    assert src.status.reason == "stdin closed"
    src.stop()


def test_stop_is_prompt_while_stdin_blocks():
    r, w = os.pipe()
    try:
        src = TranscriptSource(SessionClock(), None, "-", stdin=os.fdopen(r, "rb"))
        src.start()
        assert wait_for(lambda: src.status.state is SourceState.RUNNING)
        t = time.monotonic()
        src.stop()
        assert time.monotonic() - t < 0.6 and src.status.state is SourceState.STOPPED
    finally:
        os.close(w)


def test_real_stdin_of_a_subprocess():
    code = (
        "import json, sys\n"
        "from streams.clock import SessionClock\n"
        "from streams.packets import TextSegment\n"
        "from streams.transcript import open_transcript_source\n"
        "out = []\n"
        "src = open_transcript_source('-', SessionClock(), out.append)\n"
        "src.start(); src.join(10)\n"
        "print(json.dumps([[p.text, p.source] if isinstance(p, TextSegment) else [p.state.value, p.reason]"
        " for p in out]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], input=b"hello from a pipe\nbye\n", cwd=ROOT,
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout) == [["starting", ""], ["running", ""], ["hello from a pipe", "stdin"],
                                       ["bye", "stdin"], ["ended", "stdin closed"]]
