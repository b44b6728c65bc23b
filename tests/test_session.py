"""Session recorder and reader: round trip, crash leftovers, drops instead of blocking, disk errors."""
from __future__ import annotations

import json
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from streams.clock import SimulatedClock
from streams.packets import AUDIO_RATE, AudioChunk, Modality, SourceState, SourceStatus, TextSegment, VideoFrame
from streams.recorder import RecorderError, SessionRecorder
from streams.session import (
    AUDIO,
    AUDIO_INDEX,
    EVENTS,
    META,
    VIDEO,
    VIDEO_INDEX,
    SessionError,
    SessionReader,
    wav_header,
)
from streams.synthetic import synthetic_audio, synthetic_frame
from tests.helpers import fill_disk_under


def _frames(n: int, skip: set[int] = frozenset(), fps: float = 15.0) -> list[VideoFrame]:
    return [VideoFrame(k / fps, synthetic_frame(k, k / fps, (96, 64)), k) for k in range(n) if k not in skip]


def _audio(t0: float, t1: float, chunk: int = 512) -> list[AudioChunk]:
    out, t = [], t0
    while t < t1 - 1e-9:
        out.append(AudioChunk(t, synthetic_audio("speechlike", t, chunk)))
        t += chunk / AUDIO_RATE
    return out


def _record(path: Path, packets, meta=None, **kw) -> SessionRecorder:
    """Feed packets in time order on a simulated clock, so arrival times are exactly the packet times."""
    clock = SimulatedClock(speed=None)
    rec = SessionRecorder(path, meta or {}, clock=clock, **kw).start()
    for p in sorted(packets, key=lambda p: getattr(p, "t", None) if not isinstance(p, TextSegment) else p.t1):
        clock.advance_to(p.t1 if isinstance(p, TextSegment) else p.t)
        rec(p)
    rec.close()
    return rec


def _packets():
    frames = _frames(30, skip={7, 8})
    audio = _audio(0.0, 0.8) + _audio(1.2, 2.0)  # a 0.4 s hole: the mic delivered nothing
    text = [TextSegment(0.1, 0.9, "hello there", "synthetic", 0.75), TextSegment(1.0, 1.9, "second line", "srt")]
    statuses = [SourceStatus(SourceState.RUNNING, "", 0.0, m, f"test-{m.value}") for m in Modality]
    statuses.append(SourceStatus(SourceState.RECONNECTING, "camera disconnected (scripted)", 1.5, Modality.VIDEO,
                                 "cam"))
    return frames, audio, text, statuses


def test_round_trip_keeps_frames_samples_gaps_text_and_statuses(tmp_path):
    frames, audio, text, statuses = _packets()
    rec = _record(tmp_path / "s", frames + audio + text + statuses, meta={"sources": {"video": {"present": True}}})
    assert rec.error is None and rec.stats()["dropped"]["video"] == 0
    r = SessionReader(tmp_path / "s")
    assert r.complete and r.meta["format_version"] == 1 and r.meta["counts"]["frames"] == len(frames)

    got = list(r.frames())
    assert [f.index for f in got] == [f.index for f in frames]  # the lost frames 7 and 8 stay lost
    assert [f.t for f in got] == [f.t for f in frames]  # capture timestamps survive exactly
    for a, b in zip(got, frames):
        assert a.image.shape == b.image.shape
        assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 4  # JPEG q85

    chunks = list(r.audio_chunks())
    assert [c.t for c in chunks] == [c.t for c in audio]  # the hole is still there
    assert all(np.abs(a.samples - b.samples).max() <= 1.0 / 32767 + 1e-7 for a, b in zip(chunks, audio))

    segs = list(r.text_segments())
    assert [(s.t0, s.t1, s.text, s.source, s.confidence) for s in segs] == \
        [(s.t0, s.t1, s.text, s.source, s.confidence) for s in text]
    assert list(r.statuses()) == statuses
    # arrival times were recorded from the clock
    assert [ta for ta, _ in r.timed_frames()] == [f.t for f in frames]

    # the WAV is a normal file other tools read
    data, rate = soundfile.read(tmp_path / "s" / AUDIO, dtype="float32")
    assert rate == AUDIO_RATE and len(data) == sum(len(c.samples) for c in audio)


def test_reader_tolerates_a_crashed_session(tmp_path):
    frames, audio, text, statuses = _packets()
    _record(tmp_path / "s", frames + audio + text + statuses)
    s = tmp_path / "s"
    # what a kill -9 leaves: meta not complete, WAV header never patched, half-written frame and lines
    meta = json.loads((s / META).read_text())
    meta.update(complete=False, end_t=None)
    (s / META).write_text(json.dumps(meta))
    with open(s / AUDIO, "r+b") as f:
        f.write(wav_header(0))
    size = (s / VIDEO).stat().st_size
    with open(s / VIDEO, "ab") as f:
        f.write(b"\xff\xd8\xff\xe0 half a jpeg")
    with open(s / VIDEO_INDEX, "ab") as f:
        f.write(json.dumps({"index": 99, "t": 9.0, "offset": size, "size": 5000, "w": 96, "h": 64}).encode() + b"\n")
        f.write(b'{"index": 100, "t": 9.1, "off')
    with open(s / AUDIO_INDEX, "ab") as f:
        f.write(b'{"t": 3.0, "offset": 99999999, "n": 512}\n{"t": 3.1, "off')
    with open(s / EVENTS, "ab") as f:
        f.write(b"not json at all\n{\"kind\": \"status\", \"t\": 2.0")

    r = SessionReader(s)
    assert not r.complete and r.end_t is None
    assert [f.index for f in r.frames()] == [f.index for f in frames]
    chunks = list(r.audio_chunks())
    assert len(chunks) == len(audio) and np.allclose(chunks[-1].samples, audio[-1].samples, atol=1e-4)
    assert list(r.statuses()) == statuses


def test_reader_errors_name_the_folder_and_the_problem(tmp_path):
    with pytest.raises(SessionError, match="session folder not found: .*nope"):
        SessionReader(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SessionError, match=r"not a session folder: .*empty \(meta.json missing\)"):
        SessionReader(tmp_path / "empty")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(SessionError, match="is a file"):
        SessionReader(tmp_path / "f.txt")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / META).write_text('{"format": "something-else"}')
    with pytest.raises(SessionError, match="expected 'umq-session'"):
        SessionReader(tmp_path / "other")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / META).write_text('{"format": ')
    with pytest.raises(SessionError, match="meta.json is unreadable"):
        SessionReader(tmp_path / "broken")


class _SlowRecorder(SessionRecorder):
    """A writer stuck behind a slow disk."""

    def _write_video(self, frame, ta):
        time.sleep(0.05)
        super()._write_video(frame, ta)


def test_recorder_drops_and_counts_instead_of_blocking(tmp_path):
    clock = SimulatedClock(speed=None)
    rec = _SlowRecorder(tmp_path / "s", {}, clock=clock, queue_size=3).start()
    frames = _frames(60)
    t = time.perf_counter()
    for k, f in enumerate(frames):
        rec(f)
        if k % 10 == 0:
            rec(SourceStatus(SourceState.RUNNING, f"tick {k}", f.t, Modality.VIDEO, "cam"))
    pushed_s = time.perf_counter() - t
    rec.close()
    stats = rec.stats()
    assert pushed_s < 0.5, f"pushing 60 frames took {pushed_s:.2f} s: the sink blocked on the writer"
    assert stats["max_put_ms"] < 50
    assert stats["dropped"]["video"] > 30
    assert stats["frames"] + stats["dropped"]["video"] == len(frames)
    r = SessionReader(tmp_path / "s")
    assert len(list(r.frames())) == stats["frames"]
    assert r.meta["dropped"]["video"] == stats["dropped"]["video"]
    assert len(list(r.statuses())) == 6  # statuses are never dropped
    drops = [e for e in r.events() if e.get("event") == "drops"]
    assert drops and drops[-1]["total"]["video"] == stats["dropped"]["video"]


def test_header_and_fsync_are_kept_current_while_recording(tmp_path):
    clock = SimulatedClock(speed=None)
    rec = SessionRecorder(tmp_path / "s", {}, clock=clock, sync_every_s=0.05).start()
    chunks = _audio(0.0, 1.0)
    for c in chunks:
        rec(c)
    deadline = time.monotonic() + 3.0
    expected = sum(len(c.samples) for c in chunks)
    while time.monotonic() < deadline:  # without close(): what a crash would leave
        with open(tmp_path / "s" / AUDIO, "rb") as f:
            riff, data = struct.unpack("<4xI32xI", f.read(44))
        if data == 2 * expected and rec.syncs >= 1:
            break
        time.sleep(0.02)
    assert data == 2 * expected and riff == 36 + data
    assert rec.syncs >= 1
    rec.close()


def test_disk_full_stops_recording_without_raising(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    out = tmp_path / "s"
    rec = SessionRecorder(out, {}, clock=SimulatedClock(speed=None)).start()
    fill_disk_under(rec, VIDEO)  # every write to video.mjpeg from now on fails with ENOSPC
    for f in _frames(10):
        rec(f)  # must not raise
    for c in _audio(0.0, 0.5):
        rec(c)
    meta = rec.close()
    assert rec.error and "video.mjpeg" in rec.error and "No space left" in rec.error
    assert meta["error"] == rec.error
    events = SessionReader(out).events()
    err = [e for e in events if e.get("event") == "error"]
    assert err and err[0]["file"] == VIDEO and err[0]["disk_full"] is True
    assert sum(rec.dropped.values()) > 0  # what came after the failure is counted, not written


def test_refuses_to_overwrite_a_session(tmp_path):
    _record(tmp_path / "s", _frames(3))
    with pytest.raises(RecorderError, match="already holds session files"):
        SessionRecorder(tmp_path / "s", {}).start()


def test_sink_calls_from_many_threads_all_land(tmp_path):
    rec = SessionRecorder(tmp_path / "s", {}, clock=SimulatedClock(speed=None)).start()
    frames, audio = _frames(40), _audio(0.0, 1.0)
    threads = [threading.Thread(target=lambda ps=ps: [rec(p) for p in ps]) for ps in (frames, audio)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    rec.close()
    r = SessionReader(tmp_path / "s")
    assert len(list(r.frames())) == 40 and len(list(r.audio_chunks())) == len(audio)


def test_frames_are_read_encoded_and_decoded_on_first_use(tmp_path):
    frames = _frames(10)
    _record(tmp_path / "s", frames)
    got = list(SessionReader(tmp_path / "s").frames())
    assert len(got) == 10 and not any(f.decoded for f in got)
    assert np.abs(got[3].image.astype(int) - frames[3].image.astype(int)).mean() < 4
    assert got[3].decoded and not got[4].decoded
    assert got[3].image is got[3].image  # decoded once, then kept


def test_damaged_frames_are_skipped_or_reported_with_the_file_and_frame(tmp_path, caplog):
    from streams.packets import FrameDecodeError

    s = tmp_path / "s"
    _record(s, _frames(6))
    index = [json.loads(line) for line in (s / VIDEO_INDEX).read_text().splitlines()]
    with open(s / VIDEO, "r+b") as f:
        f.seek(index[2]["offset"])  # frame 2: not a JPEG at all
        f.write(b"garbage!")
        f.seek(index[4]["offset"] + 2)  # frame 4: a JPEG start, then zeros
        f.write(bytes(index[4]["size"] - 2))
    with caplog.at_level("WARNING"):
        got = list(SessionReader(s).frames())
    assert [f.index for f in got] == [0, 1, 3, 4, 5]
    assert any("frame 2" in r.getMessage() and "not a JPEG" in r.getMessage() for r in caplog.records)
    assert got[1].image.shape == (64, 96, 3)
    with pytest.raises(FrameDecodeError, match=r"video\.mjpeg: frame 4 at byte \d+: the stored image does not decode"):
        _ = got[3].image  # the access decodes
