"""Fault injection: each fault with what the user sees. Real components (OpenCV and FFmpeg decoding of files
written here, real files, the real buffer/recorder/model); fakes only for absent hardware (camera, sound card).

Faults already covered elsewhere are not repeated here; ``docs/reliability.md`` maps every fault to its test.
"""
from __future__ import annotations

import json
import os
import threading
import time

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch

from streams.buffer import TimeAlignedBuffer, WindowConfig, Windower
from streams.camera import CameraSource
from streams.clock import SessionClock, SimulatedClock
from streams.files import MediaFile, MediaFileError, write_test_video
from streams.microphone import MicrophoneSource
from streams.packets import AUDIO_RATE, AudioChunk, Modality, SourceState, SourceStatus, VideoFrame
from streams.recorder import SessionRecorder
from streams.replay import Replay
from streams.session import EVENTS, VIDEO, SessionReader
from streams.source import Tee
from streams.transcript import MAX_CHARS, MAX_TIME_S, load_transcript_file, parse_jsonl
from tests.helpers import audio_packets, fill_disk_under, status, video_packets, wait_for
from tests.test_microphone import Collector as MicCollector
from tests.test_microphone import FakeStream

V, A = Modality.VIDEO, Modality.AUDIO


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _collect():
    items: list = []
    lock = threading.Lock()

    def sink(p):
        with lock:
            items.append(p)

    sink.items = items  # type: ignore[attr-defined]
    return sink


def _statuses(items) -> list[tuple[str, str]]:
    return [(s.state.value, s.reason) for s in items if isinstance(s, SourceStatus)]


# ------------------------------------------------------------------------------ truncated or corrupt video
def _mjpg(path, n: int = 60, fps: float = 30.0, size=(64, 48)) -> str:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), 20 + 3 * i, np.uint8))
    w.release()
    return str(path)


def test_truncated_video_file_on_the_camera_path_plays_what_decodes_then_ends(tmp_path):
    """OpenCV (the live video path given a file): frames up to the cut, then ``ended`` saying where it stopped."""
    full = _mjpg(tmp_path / "full.avi")
    cut = tmp_path / "cut.avi"
    data = open(full, "rb").read()
    cut.write_bytes(data[: len(data) // 2])
    sink = _collect()
    cam = CameraSource(SessionClock(), sink, device=str(cut), fps=300.0)
    cam.start()
    cam.join(10.0)
    assert not cam.alive
    frames = [p for p in sink.items if isinstance(p, VideoFrame)]
    assert 5 < len(frames) < 60
    states = _statuses(sink.items)
    assert [s for s, _ in states] == ["starting", "running", "ended"], states
    assert "could not decode past frame" in states[-1][1] and "of 60" in states[-1][1]
    assert cam.counters.reconnects == 0, "a file that ends is not retried like a lost camera"


def test_mp4_cut_before_its_index_is_refused_naming_the_file(tmp_path):
    """An mp4 whose ``moov`` index was at the end and is gone: nothing decodes; both paths say which file."""
    full = write_test_video(tmp_path / "v.mp4", seconds=2.0, audio=None)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(MediaFileError, match=r"cannot decode cut\.mp4: .*is it a video file\?"):
        Replay(cut)
    cam = CameraSource(SessionClock(), None, device=str(cut))
    cam.start()
    cam.join(5.0)
    assert cam.status.state is SourceState.UNAVAILABLE
    assert "cut.mp4 could not be opened" in cam.status.reason and "readable video" in cam.status.reason


def test_video_with_damaged_bytes_in_the_middle_replays_past_the_damage(tmp_path):
    """3 KB of garbage 40 % into a 4 s mp4: the damaged packets are skipped and counted, decoding goes on to the
    end (it used to stop at the first bad packet: 21 of 60 frames, 1.4 s of audio, no window), audio stays in
    sync (restamped from pts after a skipped packet) and each stream's end status says what was skipped."""
    full = write_test_video(tmp_path / "v.mp4", seconds=4.0, audio="tone", faststart=True)
    data = bytearray(full.read_bytes())
    a = len(data) * 2 // 5
    data[a:a + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    packets = [p for _, p in Replay(bad, speed=None).packets()]
    frames = [p for p in packets if isinstance(p, VideoFrame)]
    chunks = [p for p in packets if isinstance(p, AudioChunk)]
    assert len(frames) > 50 and frames[-1].t > 3.8
    assert chunks[-1].t_end > 3.9 and sum(len(c.samples) for c in chunks) / AUDIO_RATE > 3.5
    ended = {s.modality: s.reason for s in packets if isinstance(s, SourceStatus) and s.state is SourceState.ENDED}
    assert set(ended) == {V, A}
    assert any("damaged packet" in r and "skipped" in r for r in ended.values()), ended
    windows = list(Replay(bad, speed=None).windows())
    assert len(windows) >= 4 and all(w.video.health.present and w.audio.health.present for w in windows)


# ------------------------------------------------------------------ audio: odd rate, channels, NaN and inf
@pytest.mark.parametrize("rate,channels", [(8000, 1), (48000, 2), (22050, 6)])
def test_audio_file_with_odd_rate_channels_and_nonfinite_samples(tmp_path, rate, channels):
    """Any rate/channel count becomes 16 kHz mono; NaN/inf samples reach the voice front end, which marks them
    invalid, keeps its features finite and says "NaN/inf" in the cues."""
    from umq.perception.voice.features import N_FEATURES
    from umq.perception.voice.frontend import VoiceFrontEnd
    from umq.perception.voice.normalize import FeatureStats

    n = 2 * rate
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / rate))[:, None].repeat(channels, 1).astype(np.float32)
    x[rate // 2, 0] = np.nan
    x[rate, :] = np.inf
    x[rate + 10, -1] = -np.inf
    path = tmp_path / f"odd_{rate}_{channels}.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    media = MediaFile(path)
    assert media.audio_rate_in == rate and not media.has_video
    packets = [p for _, p in Replay(path, speed=None).packets()]
    chunks = [p for p in packets if isinstance(p, AudioChunk)]
    assert {c.rate for c in chunks} == {AUDIO_RATE} and all(c.samples.ndim == 1 for c in chunks)
    y = np.concatenate([c.samples for c in chunks])
    assert abs(len(y) / AUDIO_RATE - 2.0) < 0.02
    assert 0 < int((~np.isfinite(y)).sum()) < 0.01 * len(y), "the bad samples stay local"
    fe = VoiceFrontEnd(FeatureStats(np.zeros(N_FEATURES), np.ones(N_FEATURES)), device="cpu")
    r = fe(y[: 2 * AUDIO_RATE])
    assert torch.isfinite(r.features).all()
    assert 0 < r.cues.nonfinite_ratio < 0.01 and "NaN/inf" in r.cues.describe()
    assert r.mask.float().mean() > 0.9


class NanStream(FakeStream):
    """A device whose driver delivers NaN/inf in block 3 and, in block ``cfg["bad"]``, a buffer that cannot be read."""

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        inner, k = self.callback, [0]

        def callback(block, n, time_info, status):
            if k[0] == 3:
                block = block.copy()
                block[5, 0], block[6, -1], block[7, :] = np.nan, np.inf, -np.inf
            if k[0] == cfg.get("bad"):
                block = _Unreadable()
            k[0] += 1
            inner(block, n, time_info, status)

        self.callback = callback


class _Unreadable:
    """Indata the driver hands over that cannot be copied (the callback's ``np.array`` raises)."""

    def __array__(self, *a, **k):
        raise RuntimeError("driver buffer vanished")


def test_microphone_at_48k_stereo_with_nonfinite_samples_gives_finite_features():
    from umq.perception.voice.features import N_FEATURES
    from umq.perception.voice.frontend import VoiceFrontEnd
    from umq.perception.voice.normalize import FeatureStats

    cfg: dict = {"accept": lambda r, c: (r, c) == (48000, 2)}
    clock = SessionClock()
    sink = MicCollector(clock)
    mic = MicrophoneSource(clock, sink, stream_factory=lambda **kw: NanStream(cfg, **kw),
                           query_device=lambda d: {"default_samplerate": 48000.0, "max_input_channels": 2})
    mic.start()
    assert wait_for(lambda: sum(len(c.samples) for c in sink.chunks) >= 0.6 * AUDIO_RATE, 5.0)
    mic.stop()
    assert mic.counters.extra["device_rate"] == 48000 and mic.counters.extra["device_channels"] == 2
    y = np.concatenate([c.samples for c in sink.chunks])
    assert {c.rate for c in sink.chunks} == {AUDIO_RATE}
    assert 0 < int((~np.isfinite(y)).sum()) < 2000
    assert sink.states()[:2] == [SourceState.STARTING, SourceState.RUNNING]
    assert SourceState.RECONNECTING not in sink.states(), "bad samples are data, not a device failure"
    r = VoiceFrontEnd(FeatureStats(np.zeros(N_FEATURES), np.ones(N_FEATURES)), device="cpu")(y[:AUDIO_RATE // 2])
    assert torch.isfinite(r.features).all() and "NaN/inf" in r.cues.describe()


def test_microphone_callback_that_fails_is_reported_and_the_stream_reopened():
    """The driver callback must never raise into PortAudio: the failure becomes ``reconnecting`` with the
    reason, the stream is reopened and audio flows again without a restart."""
    opened: list[dict] = []

    def factory(**kw):
        cfg = {"bad": 4} if not opened else {}
        opened.append(cfg)
        return NanStream(cfg, **kw)

    clock = SessionClock()
    sink = MicCollector(clock)
    mic = MicrophoneSource(clock, sink, stream_factory=factory, retry_initial_s=0.05)
    mic.start()
    assert wait_for(lambda: mic.counters.reconnects == 1 and len(sink.chunks) >= 15, 5.0)
    mic.stop()
    states = sink.states()
    assert states[:4] == [SourceState.STARTING, SourceState.RUNNING, SourceState.RECONNECTING, SourceState.RUNNING]
    assert sink.reasons()[2] == ("microphone disconnected: audio callback failed: driver buffer vanished; "
                                 "reconnecting")
    assert len(opened) == 2


def test_microphone_overflow_is_counted_and_the_stream_keeps_running():
    cfg: dict = {"overflow_every": 2}
    clock = SessionClock()
    sink = MicCollector(clock)
    mic = MicrophoneSource(clock, sink, stream_factory=lambda **kw: FakeStream(cfg, **kw))
    mic.start()
    assert wait_for(lambda: mic.counters.overflows >= 5, 5.0)
    mic.stop()
    assert sink.states() == [SourceState.STARTING, SourceState.RUNNING, SourceState.STOPPED]
    assert mic.counters.reconnects == 0
    chunks = sink.chunks
    for a, b in zip(chunks, chunks[1:]):
        assert abs(b.t - a.t_end) < 1e-6, "an overflow flag alone leaves no hole"


# ------------------------------------------------------------------------------- malformed transcripts
def test_jsonl_bad_timestamps_are_skipped_or_clipped_and_counted(tmp_path):
    lines = [
        json.dumps({"t0": -5, "t1": -1, "text": "entirely before the session"}),
        json.dumps({"t0": -1, "t1": 2, "text": "straddles the start"}),
        json.dumps({"t0": 1e300, "t1": 1e301, "text": "absurdly late"}),
        json.dumps({"t0": MAX_TIME_S + 1, "t1": MAX_TIME_S + 2, "text": "past the limit"}),
        json.dumps({"t0": True, "t1": 2, "text": "boolean time"}),
        json.dumps({"t0": [1], "t1": 2, "text": "list time"}),
        json.dumps({"t0": "soon", "t1": 2, "text": "word time"}),
        '{"t0": 1, "t1": Infinity, "text": "inf"}',
        '{"t0": 1, "t1": 2, "text": "ok"',  # truncated JSON
        json.dumps({"t0": 3, "t1": 4, "text": "fine"}),
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    parsed = load_transcript_file(path)
    assert [(s.t0, s.t1, s.text) for s in parsed.segments] == [(0.0, 2.0, "straddles the start"),
                                                                 (3.0, 4.0, "fine")]
    assert parsed.skipped == 8


def test_srt_with_absurd_hours_and_invalid_utf8_in_the_timing_line(tmp_path):
    path = tmp_path / "t.srt"
    path.write_bytes(b"1\n99999:00:00,000 --> 99999:00:01,000\ntypo in the hours\n\n"
                     b"2\n00:00:0\xff,000 --> 00:00:03,000\nbroken byte in the time\n\n"
                     b"3\n00:00:01,000 --> 00:00:02,000\nbad \xff\xfe bytes \xc3\n")
    parsed = load_transcript_file(path)
    assert [(s.t0, s.t1, s.text) for s in parsed.segments] == [(1.0, 2.0, "bad \ufffd\ufffd bytes \ufffd")]
    assert parsed.skipped == 2


def test_lone_surrogates_and_very_long_lines_become_safe_text():
    """JSON may carry ``\\ud800`` (valid JSON, not encodable text): it becomes U+FFFD so the tokenizer, the
    recorder and the UI can encode it; a 100 000-character line is cut to MAX_CHARS."""
    text = "\n".join(['{"t0": 1, "t1": 2, "text": "half \\ud800 a pair"}',
                      json.dumps({"t0": 2, "t1": 3, "text": "x" * 100_000})])
    parsed = parse_jsonl(text)
    assert parsed.segments[0].text == "half \ufffd a pair"
    parsed.segments[0].text.encode("utf-8")
    assert len(parsed.segments[1].text) == MAX_CHARS and parsed.skipped == 0


def test_cue_after_the_end_of_the_video_does_not_stretch_replay(tmp_path):
    """A cue hours after a 2 s video (a typo) used to make replay cut windows for hours of empty session."""
    video = write_test_video(tmp_path / "clip.mp4", seconds=2.0, audio=None)
    (tmp_path / "clip.srt").write_text("1\n00:00:00,500 --> 00:00:01,500\nhello there\n\n"
                                       "2\n10:00:00,000 --> 10:00:01,000\nfar too late\n")
    t = time.perf_counter()
    windows = list(Replay(video, speed=None).windows())
    assert time.perf_counter() - t < 30
    assert 1 <= len(windows) <= 4 and max(w.t1 for w in windows) <= 3.0
    assert "hello there" in " ".join(w.text.text for w in windows)


# ----------------------------------------------------------------------------- NaN/inf reaching the model
def test_nonfinite_features_never_make_nan_probabilities():
    from tests.test_umq_model import make_batch, make_cfg
    from umq.model import UMQ
    from umq.types import FEATURE_LIMIT, ModalityInput

    model = UMQ(make_cfg()).eval()
    batch = make_batch()
    with torch.no_grad():
        ref = model(batch.inputs, batch.present)
    for bad in (float("nan"), float("inf"), -float("inf"), 1e38):
        inputs = {}
        for m, v in batch.inputs.items():
            x = v.x.clone()
            x[0, 0, 0] = bad  # one value
            x[1] = bad  # a whole sample
            raw = x.clone()
            inputs[m] = ModalityInput(x, v.mask)
            assert torch.equal(x, raw) or torch.equal(x.isnan(), raw.isnan()), "the caller's tensor is untouched"
            assert torch.isfinite(inputs[m].x).all() and inputs[m].x.abs().max() <= FEATURE_LIMIT
        with torch.no_grad():
            out = model(inputs, batch.present)
        assert torch.isfinite(out.probs).all() and torch.allclose(out.probs.sum(1), torch.ones(len(out.probs)))
        assert torch.isfinite(out.q).all() and torch.isfinite(out.logits).all()
        assert torch.allclose(out.probs[2:], ref.probs[2:], atol=1e-6), "other samples are unaffected"
    clean = ModalityInput(batch.inputs["audio"].x, batch.inputs["audio"].mask)
    assert torch.equal(clean.x, batch.inputs["audio"].x), "finite features pass bit for bit"


# ------------------------------------------------------------------------- disk full while recording
def test_disk_full_stops_recording_with_an_event_while_analysis_goes_on(tmp_path):
    """The recorder and the buffer share the capture Tee, as in ``record``: when every write to the video file
    fails with ENOSPC the recorder stops with an error event, and windows keep coming with all modalities."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    out = tmp_path / "s"
    rec = SessionRecorder(out, {}, clock=SimulatedClock(speed=None)).start()
    fill_disk_under(rec, VIDEO)
    buffer = TimeAlignedBuffer()
    windower = Windower(buffer, WindowConfig(video_fps=15.0))
    tee = Tee(rec, buffer)
    packets = ([status(V, SourceState.RUNNING, 0.0), status(A, SourceState.RUNNING, 0.0)]
               + video_packets(0.0, 6.0) + audio_packets(0.0, 6.0))
    arrival = lambda p: getattr(p, "t_end", None) or p.t  # noqa: E731
    windows = []
    for p in sorted(packets, key=arrival):
        for w in windower.due(arrival(p)):
            rec.record_window(w.to_json())  # must not raise after the failure either
            windows.append(w)
        tee(p)
    windows += windower.due(6.0, final=True)
    meta = rec.close(end_t=6.0)
    assert rec.error and "video.mjpeg" in rec.error and "No space left" in rec.error and meta["error"] == rec.error
    err = [e for e in SessionReader(out).events() if e.get("event") == "error"]
    assert err and err[0]["disk_full"] is True
    hop = windower.config.hop_s
    assert [w.t1 for w in windows] == pytest.approx(list(np.arange(2.0, 6.0 + 1e-9, hop)))
    assert all(w.video.health.present and w.audio.health.present for w in windows), "analysis went on"
    assert (out / EVENTS).exists()
