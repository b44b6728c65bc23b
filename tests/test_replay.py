"""Replay of video files and recorded sessions: decoding, presence and reasons, determinism, pacing, threads."""
from __future__ import annotations

import time

import pytest

from streams.buffer import WindowConfig
from streams.clock import SimulatedClock
from streams.files import MediaFile, MediaFileError, write_test_video
from streams.packets import AudioChunk, Modality, SourceState, SourceStatus, TextSegment, VideoFrame
from streams.recorder import SessionRecorder
from streams.replay import Replay
from streams.session import SessionError, SessionReader
from streams.source import Tee
from streams.synthetic import SyntheticCamera, SyntheticMicrophone, SyntheticTranscript

V, A, T = Modality.VIDEO, Modality.AUDIO, Modality.TEXT


class FastClock:
    """Session time running ``factor`` times faster than the wall clock: a 6 s scripted session in 1.5 s."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._t0 = time.monotonic()
        self.started_at_unix = time.time()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.factor


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    """3 s, 15 fps H.264 with a *silent* AAC track: silence is data, so audio must be present."""
    return write_test_video(tmp_path_factory.mktemp("media") / "talk.mp4", seconds=3.0, audio="silence")


def _by_t1(windows):
    return {round(w.t1, 3): w for w in windows}


def test_mp4_with_audio_decodes_both_streams_and_audio_is_present_everywhere(mp4):
    replay = Replay(mp4, speed=None)
    packets = [p for _, p in replay.packets()]
    frames = [p for p in packets if isinstance(p, VideoFrame)]
    chunks = [p for p in packets if isinstance(p, AudioChunk)]
    assert len(frames) == 45 and frames[0].t == 0.0 and frames[1].t == pytest.approx(1 / 15)
    assert frames[0].image.shape == (120, 160, 3)
    assert sum(len(c.samples) for c in chunks) / 16000 == pytest.approx(3.0, abs=0.05)
    assert all(b.t == pytest.approx(a.t_end) for a, b in zip(chunks, chunks[1:]))  # chunks tile exactly
    statuses = [p for p in packets if isinstance(p, SourceStatus)]
    assert [(s.modality, s.state) for s in statuses if s.modality is V] == [(V, SourceState.RUNNING),
                                                                             (V, SourceState.ENDED)]
    windows = list(replay.windows())
    assert [w.t1 for w in windows] == [2.0, 2.5, 3.0]
    assert replay.window_config().video_fps == 15.0
    for w in windows:
        assert w.audio.health.present, w.to_json()
        assert w.video.health.present, w.to_json()
        assert w.text.health.reason == "no transcript source"


def test_video_without_audio_track_marks_audio_missing_with_a_reason(tmp_path):
    path = write_test_video(tmp_path / "mute.avi", seconds=2.5, audio=None, video_codec="mpeg4")
    windows = list(Replay(path, speed=None).windows())
    assert len(windows) == 2
    for w in windows:
        assert w.video.health.present
        assert not w.audio.health.present and w.audio.health.reason == "no audio track in mute.avi"


def test_missing_or_corrupt_file_gives_a_clear_error_naming_it(tmp_path):
    with pytest.raises(MediaFileError, match="video file not found: .*gone.mp4"):
        Replay(tmp_path / "gone.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(MediaFileError, match=r"cannot decode junk.mp4: .*; is it a video file\?"):
        Replay(junk)
    with pytest.raises(SessionError, match=r"not a session folder: .*\(meta.json missing\)"):
        Replay(tmp_path)


def test_truncated_file_yields_what_decodes_then_ended_with_the_reason(tmp_path):
    full = write_test_video(tmp_path / "long.mkv", seconds=4.0, audio="tone")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 5])
    packets = [p for _, p in Replay(cut, speed=None).packets()]
    frames = [p for p in packets if isinstance(p, VideoFrame)]
    assert 5 < len(frames) < 55
    ended = [p for p in packets if isinstance(p, SourceStatus) and p.state is SourceState.ENDED]
    assert {s.modality for s in ended} == {V, A}
    assert all("cut.mkv" in s.reason and "truncated" in s.reason for s in ended), ended


def test_transcript_beside_the_video_becomes_text(tmp_path, mp4):
    video = tmp_path / "clip.mp4"
    video.write_bytes(mp4.read_bytes())
    video.with_suffix(".srt").write_text("1\n00:00:00,200 --> 00:00:00,900\nI am so happy today\n")
    media = MediaFile(video)
    assert media.transcript_path == video.with_suffix(".srt")
    windows = _by_t1(Replay(video, speed=None).windows())
    assert windows[2.0].text.health.present and "happy" in windows[2.0].text.text
    assert not windows[3.0].text.health.present and windows[3.0].text.health.reason == "no transcript"


def _record_scripted(path, seconds=6.0, factor=4.0, meta_sources=None):
    """Record synthetic sources with a camera-off span and a transcript gap, on a fast clock."""
    clock = FastClock(factor)
    cam = SyntheticCamera(clock, off=((2.0, 3.5),))
    mic = SyntheticMicrophone(clock)
    txt = SyntheticTranscript(clock, gaps=((1.4, 4.4),))
    meta = {"window_config": WindowConfig(video_fps=15.0).to_json(), "video_fps": 15.0}
    if meta_sources:
        meta["sources"] = meta_sources
    rec = SessionRecorder(path, meta, clock=clock).start()
    for s in (cam, mic, txt):
        s.connect(Tee(rec))
        s.start()
    while clock.now() < seconds:
        time.sleep(0.01)
    end = clock.now()
    for s in (cam, mic, txt):
        s.stop()
    rec.close(end_t=end)
    return rec


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    path = tmp_path_factory.mktemp("sessions") / "scripted"
    rec = _record_scripted(path)
    assert rec.error is None
    return path


def test_scripted_camera_off_and_transcript_gap_show_up_in_replayed_windows(scripted):
    windows = _by_t1(Replay(scripted, speed=None).windows())
    assert len(windows) >= 8
    for t1 in (2.5, 3.0):  # camera unplugged 2.0-3.5
        h = windows[t1].video.health
        assert not h.present and h.reason.startswith("camera disconnected"), h
    for t1 in (5.0, 5.5):
        assert windows[t1].video.health.present
    for t1 in (2.0, 2.5, 3.0):  # the first line (0-1.35 s) still overlaps
        assert windows[t1].text.health.present
    # lines starting inside the 1.4-4.4 gap were never said; the first line starts when the source's thread first
    # ran (about 0.1-0.25 s on a loaded host at 4x), so it may still reach into [1.5, 3.5)
    first = next(SessionReader(scripted).text_segments())
    for t1 in (3.5, 4.0, 4.5):
        h = windows[t1].text.health
        if first.t1 >= t1 - 2.0:
            assert h.present and windows[t1].text.late == (), h
        else:
            assert not h.present and h.reason == "no transcript", h
    assert all(w.audio.health.present for w in windows.values())


def test_replay_is_deterministic_and_threaded_mode_gives_the_same_windows(scripted):
    first = [w.to_json() for w in Replay(scripted, speed=None).windows()]
    second = [w.to_json() for w in Replay(scripted, speed=None).windows()]
    assert first == second
    got, fed = [], []
    replay = Replay(scripted, speed=None)
    replay.start(sink=fed.append, on_window=lambda w: got.append(w.to_json()))
    assert replay.join(30) and replay.error is None
    assert got == first
    assert sum(isinstance(p, VideoFrame) for p in fed) == replay.stats["counts"]["video"] > 50


def test_paced_replay_follows_the_clock_and_stops_promptly(scripted):
    replay = Replay(scripted, speed=4.0)
    t = time.perf_counter()
    windows = list(replay.windows())
    wall = time.perf_counter() - t
    assert wall >= 0.8 * windows[-1].t1 / 4.0, wall
    replay = Replay(scripted, speed=1.0)
    replay.start(sink=lambda p: None)
    time.sleep(0.3)
    t = time.perf_counter()
    replay.stop()
    assert time.perf_counter() - t < 1.0 and not replay.running
    assert replay.clock.now() < 2.0


def test_recorded_absent_sources_replay_with_their_live_reasons(tmp_path):
    sources = {"video": {"present": False, "reason": "camera switched off (--camera none)"},
               "audio": {"present": True, "reason": ""}}
    clock = FastClock(8.0)
    rec = SessionRecorder(tmp_path / "s", {"sources": sources}, clock=clock).start()
    mic = SyntheticMicrophone(clock)
    mic.connect(rec)
    mic.start()
    while clock.now() < 3.0:
        time.sleep(0.01)
    mic.stop()
    rec.close()
    windows = list(Replay(tmp_path / "s", speed=None).windows())
    assert len(windows) == 3
    for w in windows:
        assert w.video.health.reason == "camera switched off (--camera none)"
        assert w.text.health.reason == "no transcript source"  # no transcript source was recorded
        assert w.audio.health.present


def test_text_segments_keep_their_recorded_arrival(tmp_path):
    """A line that reached the live buffer late (slow ASR) must be late in replay too, or windows differ."""
    sim = SimulatedClock(speed=None)
    rec = SessionRecorder(tmp_path / "s", {}, clock=sim).start()
    rec(SourceStatus(SourceState.RUNNING, "", 0.0, T, "asr"))
    # said at 1.0-2.2 s, delivered at 2.4 s: after the [0, 2) window was cut (with no camera or microphone to
    # wait for, at 2.0 s), before the [0.5, 2.5) one
    sim.advance_to(2.4)
    rec(TextSegment(1.0, 2.2, "late words", "asr"))
    rec.close(end_t=3.0)
    windows = _by_t1(Replay(tmp_path / "s", speed=None).windows())
    assert not windows[2.0].text.health.present
    assert windows[2.5].text.health.present and windows[3.0].text.health.present


def test_a_line_recorded_long_after_its_speech_replays_once_in_the_next_window(tmp_path):
    """Live ASR handed a line over 3 s after it ended, when no window overlapping it was left to cut: replay
    (like the live windower) analyses it in the first window cut after its arrival, once, marked late."""
    sim = SimulatedClock(speed=None)
    rec = SessionRecorder(tmp_path / "s", {}, clock=sim).start()
    rec(SourceStatus(SourceState.RUNNING, "", 0.0, T, "asr"))
    sim.advance_to(1.5)
    rec(TextSegment(0.2, 1.1, "on time", "asr"))
    sim.advance_to(5.0)  # windows up to [3, 5) are cut by now; the next one is [3.5, 5.5)
    rec(TextSegment(1.2, 2.0, "said at two", "asr", 0.8))
    rec.close(end_t=6.5)
    for _ in range(2):  # deterministic
        windows = _by_t1(Replay(tmp_path / "s", speed=None).windows())
        holding = [t1 for t1, w in windows.items() if "said at two" in w.text.text]
        assert holding == [5.5]
        w = windows[5.5]
        assert [(s.t0, s.t1) for s in w.text.late] == [(1.2, 2.0)] and w.text.health.present
        assert w.to_json()["text"]["late"] == 1
        assert [t1 for t1, w in windows.items() if "on time" in w.text.text] == [2.0, 2.5, 3.0]
        assert not any(w.text.late for t1, w in windows.items() if t1 != 5.5)
        assert windows[6.0].text.health.reason == "no transcript"  # idle again, not missing
