"""Time-aligned buffer and windower: window grid, presence and reasons, health counters, bounded memory."""
from __future__ import annotations

import numpy as np
import pytest

from streams.buffer import Cut, TimeAlignedBuffer, WindowConfig, Windower
from streams.packets import AUDIO_RATE, Modality, SourceState
from streams.windows import carry_dropped
from tests.helpers import audio_packets, frame, status, text, video_packets

V, A, T = Modality.VIDEO, Modality.AUDIO, Modality.TEXT


def _arrival(p):
    """When a packet reaches the buffer live: a frame at its time, audio and text once they are complete."""
    return getattr(p, "t_end", None) or getattr(p, "t1", None) or p.t


def run(buffer, packets, config=None, until=None):
    """Push packets in arrival order, stepping the windower as a live session would; windows by ``t1``."""
    windower = Windower(buffer, config)
    out = {}
    packets = sorted(packets, key=_arrival)
    for p in packets:
        for w in windower.due(_arrival(p)):
            out[w.t1] = w
        buffer.push(p)
    end = until if until is not None else max(map(_arrival, packets), default=0.0)
    for w in windower.due(end, final=True):
        out[w.t1] = w
    return out


def session(duration=6.0, fps=15.0, video=True, audio=True, transcript=True, extra=(), config=None):
    packets = list(extra)
    if video:
        packets += [status(V, SourceState.RUNNING, 0.0)] + video_packets(0.0, duration, fps)
    if audio:
        packets += [status(A, SourceState.RUNNING, 0.0)] + audio_packets(0.0, duration)
    if transcript:
        packets += [status(T, SourceState.RUNNING, 0.0)]
    return run(TimeAlignedBuffer(), packets, config, until=duration)


def test_window_grid_every_hop_after_first_full_window():
    windows = session(5.0, config=WindowConfig(window_s=2.0, hop_s=0.5))
    assert [(w.t0, w.t1) for w in windows.values()] == [(t - 2.0, t) for t in (2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)]
    assert [w.index for w in windows.values()] == list(range(7))


def test_grace_only_windows_wait_for_grace_and_are_emitted_once():
    buf = TimeAlignedBuffer()
    win = Windower(buf, WindowConfig(grace_s=0.25, cut_on_arrival=False))
    assert win.due(2.1) == []
    assert [w.t1 for w in win.due(2.25)] == [2.0]
    assert win.due(2.25) == []


def _running(buf, *modalities):
    for m in modalities:
        buf.push(status(m, SourceState.RUNNING, 0.0))


def test_window_is_cut_once_camera_and_microphone_pass_its_end():
    buf = TimeAlignedBuffer()
    _running(buf, V, A, T)
    win = Windower(buf, WindowConfig(grace_s=0.25, video_fps=15.0))
    for p in video_packets(0.0, 2.0, 15.0) + audio_packets(0.0, 1.98):
        buf.push(p)
    assert win.due(2.01) == []  # newest frame 1.93 s, audio ends at 1.984 s: both streams still owe data
    buf.push(frame(2.0, 30))
    assert win.due(2.02) == []  # the camera is through, the microphone is not
    buf.push(audio_packets(1.984, 2.016)[0])
    cut = win.due(2.02)  # long before the 0.25 s grace
    assert [w.t1 for w in cut] == [2.0] and win.due(2.02) == []
    w = cut[0]  # the same data the grace-only windower cuts from the same packets
    assert w.video.health.received == 30 and w.audio.valid.all()


def test_a_stalled_stream_holds_the_window_only_for_the_grace():
    buf = TimeAlignedBuffer()
    _running(buf, V, A)
    win = Windower(buf, WindowConfig(grace_s=0.25, video_fps=15.0))
    for p in video_packets(0.0, 1.4, 15.0) + audio_packets(0.0, 2.1):  # the camera froze at 1.4 s
        buf.push(p)
    assert win.due(2.2) == []
    [w] = win.due(2.25)
    assert not w.video.health.present and w.video.health.reason == "no frames for 0.6 s"
    assert w.audio.health.present


def test_sources_that_are_off_do_not_hold_windows():
    buf = TimeAlignedBuffer()
    _running(buf, A)
    buf.push(status(V, SourceState.UNAVAILABLE, 0.0, "no camera found"))
    win = Windower(buf, WindowConfig(grace_s=0.25))
    for p in audio_packets(0.0, 2.1):
        buf.push(p)
    assert win.due(1.99) == []  # never before t1
    [w] = win.due(2.05)
    assert w.video.health.reason == "no camera found" and w.audio.health.present


def test_a_late_transcript_line_lands_in_the_next_window():
    """The transcript never holds a window: a line arriving after its window was cut is in the next ones."""
    buf = TimeAlignedBuffer()
    _running(buf, A, T)
    win = Windower(buf, WindowConfig(grace_s=0.25))
    for p in audio_packets(0.0, 2.05):
        buf.push(p)
    [first] = win.due(2.05)
    buf.push(text(1.2, 1.9, "came in late"))  # arrives at 2.1 s, inside what used to be the grace
    for p in audio_packets(2.048, 2.55):
        buf.push(p)
    [second] = win.due(2.55)
    assert not first.text.health.present and second.text.text == "came in late"
    assert second.text.late == ()  # it overlaps [0.5, 2.5): on time for this window, in no way special


def _live_asr(buf, win, lines, until, step=0.1):
    """A live session stepped every ``step`` s: microphone audio through the step, the windows it completes, then
    the transcript lines the recogniser hands over at that moment (``lines`` maps arrival time -> lines): each
    arrives just after the window ending then was cut."""
    chunks = audio_packets(0.0, until)
    windows, t, i = [], 0.0, 0
    while t < until - 1e-9:
        t = round(t + step, 9)
        while i < len(chunks) and chunks[i].t < t - 1e-9:
            buf.push(chunks[i])
            i += 1
        windows += win.due(t)
        for seg in lines.get(t, ()):
            buf.push(seg)
    return windows + win.due(until, final=True)


def test_a_line_older_than_the_next_window_is_analysed_once_marked_late():
    """Live ASR hands a line over seconds after the speech: it must reach exactly one window (the next cut),
    with its own times, rather than none (it ends before that window starts, so no overlap would take it)."""
    buf = TimeAlignedBuffer()
    _running(buf, A, T)
    win = Windower(buf, WindowConfig(grace_s=0.25))
    said = text(1.0, 1.6, "good morning everybody")
    windows = _live_asr(buf, win, {4.0: [said]}, until=7.0)
    by_t1 = {w.t1: w for w in windows}
    assert [w.t1 for w in windows] == [2.0 + 0.5 * k for k in range(11)]  # the grid is untouched
    holding = [w for w in windows if "morning" in w.text.text]
    assert [w.t1 for w in holding] == [4.5]  # the first cut after 4.0 s, and only that one
    late = by_t1[4.5].text
    assert late.late == (said,) and late.segments == (said,)  # original 1.0-1.6 s, before the window's 2.5 s
    assert late.health.present and late.health.received == 1 and late.words == 3
    assert by_t1[4.5].to_json()["text"]["late"] == 1
    for t1 in (4.0, 5.0):  # before and after: idle (source running, nobody spoke), not missing
        h = by_t1[t1].text.health
        assert not h.present and h.reason == "no transcript" and h.device_state is SourceState.RUNNING
        assert "late" not in by_t1[t1].to_json()["text"]
    assert buf.sizes()["text_undelivered"] == 0


def test_late_and_on_time_lines_share_a_window_in_start_order():
    buf = TimeAlignedBuffer()
    _running(buf, A, T)
    win = Windower(buf, WindowConfig(grace_s=0.25))
    old, new = text(0.4, 0.9, "said long ago"), text(2.6, 3.4, "said just now")
    windows = {w.t1: w for w in _live_asr(buf, win, {3.5: [new, old]}, until=5.0)}
    assert windows[4.0].text.segments == (old, new) and windows[4.0].text.late == (old,)
    assert windows[4.5].text.segments == (new,) and windows[4.5].text.late == ()  # the on-time one stays on
    assert sum(old in w.text.segments for w in windows.values()) == 1


def test_lines_known_up_front_are_never_late_and_windows_are_unchanged():
    """Subtitle files and typed lines arrive by their end time: every window is exactly what the overlap rule
    alone (the rule before late lines) cuts from the same packets."""
    segs = [text(0.2, 1.4, "I am happy"), text(1.5, 2.4, "really"), text(3.0, 3.2, "yes"), text(5.6, 6.0, "again")]
    windows = session(6.0, extra=segs)

    class OverlapOnly(TimeAlignedBuffer):
        def cut(self, t0, t1):
            video, audio, text, status = self.snapshot(t0, t1)
            return Cut(video, audio, text, [], [], status)

    packets = ([status(m, SourceState.RUNNING, 0.0) for m in (V, A, T)] + video_packets(0.0, 6.0, 15.0)
               + audio_packets(0.0, 6.0) + segs)
    before = run(OverlapOnly(), packets, until=6.0)
    assert all(w.text.late == () for w in windows.values())
    assert [w.to_json() for w in windows.values()] == [w.to_json() for w in before.values()]
    assert [w.text.segments for w in windows.values()] == [w.text.segments for w in before.values()]
    assert sum(w.text.words for w in windows.values()) > 10


def test_undelivered_lines_stay_bounded_over_an_hour_of_late_asr():
    buf = TimeAlignedBuffer()
    _running(buf, A, T)
    win = Windower(buf, WindowConfig(grace_s=0.25))
    lines = {}
    for k in range(1800):  # a line every 2 s of an hour, handed over 4 s after it ends
        seg = text(2.0 * k, 2.0 * k + 1.0, f"line {k}")
        lines.setdefault(round(2.0 * k + 5.0, 9), []).append(seg)
    delivered, most = {}, 0
    for second in range(3600):
        t = float(second + 1)
        for seg in lines.get(t, ()):
            buf.push(seg)
        for w in win.due(t, final=True):
            for seg in w.text.segments:
                delivered[seg.text] = delivered.get(seg.text, 0) + 1
        sizes = buf.sizes()
        most = max(most, sizes["text"] + sizes["text_undelivered"])
    assert most <= 4  # the store keeps a few seconds of lines; every cut hands the waiting ones on
    assert len(delivered) == 1798 and set(delivered.values()) == {1}  # each once; 2 more arrive after the hour


def test_complete_window_counts():
    w = session(4.0, config=WindowConfig(video_fps=15.0))[2.0]
    vh, ah, th = w.video.health, w.audio.health, w.text.health
    assert vh.present and vh.expected == 30 and vh.received == 30 and vh.dropped == 0 and vh.gaps == ()
    assert ah.present and ah.expected == 2 * AUDIO_RATE and ah.missing == 0 and w.audio.valid.all()
    assert len(w.audio.samples) == 2 * AUDIO_RATE
    assert not th.present and th.reason == "no transcript"  # source running, nobody spoke


def test_dropped_frames_and_gaps_are_counted():
    frames = video_packets(0.0, 4.0, 15.0, skip=set(range(10, 20)))  # a 0.67 s hole inside [0, 2)
    w = run(TimeAlignedBuffer(), [status(V, SourceState.RUNNING, 0.0)] + frames, WindowConfig(video_fps=15.0))[2.0]
    vh = w.video.health
    assert vh.present
    assert vh.dropped == 10 and vh.received == 20 and vh.missing == 10
    assert len(vh.gaps) == 1 and vh.gaps[0][0] == pytest.approx(10 / 15, abs=0.07)
    assert vh.largest_gap_s == pytest.approx(10 / 15, abs=0.07)


def test_camera_disconnect_marks_video_missing_within_one_hop():
    packets = ([status(V, SourceState.RUNNING, 0.0)] + video_packets(0.0, 3.1, 15.0)
               + [status(V, SourceState.RECONNECTING, 3.1, "camera 0 disconnected: read failed")])
    windows = run(TimeAlignedBuffer(), packets, until=5.0)
    assert windows[3.0].video.health.present
    first_after = windows[3.5].video.health  # the first window ending after the stop
    assert not first_after.present
    assert first_after.reason == "camera 0 disconnected: read failed"
    assert first_after.device_state is SourceState.RECONNECTING
    assert not windows[5.0].video.health.present


def test_status_change_exactly_at_t1_belongs_to_the_next_window():
    packets = ([status(V, SourceState.RUNNING, 0.0)] + video_packets(0.0, 3.0, 15.0)
               + [status(V, SourceState.RECONNECTING, 3.0, "camera 0 disconnected")])
    windows = run(TimeAlignedBuffer(), packets, WindowConfig(video_fps=15.0), until=4.0)
    assert windows[3.0].video.health.present  # [1, 3) had every frame; the stop at 3.0 is not in it
    assert windows[3.5].video.health.reason == "camera 0 disconnected"


def test_device_back_before_its_first_frame_still_explains_the_empty_window():
    packets = ([status(V, SourceState.RUNNING, 0.0)] + video_packets(0.0, 2.9, 15.0)
               + [status(V, SourceState.RECONNECTING, 2.9, "camera 0 disconnected")]
               + [status(V, SourceState.RUNNING, 4.6)]  # reopened, but the first frame comes at 5.2
               + video_packets(5.2, 7.0, 15.0, first_index=78))
    windows = run(TimeAlignedBuffer(), packets, WindowConfig(video_fps=15.0))
    h = windows[5.0].video.health
    assert h.device_state is SourceState.RUNNING and h.received == 0
    assert h.reason == "camera 0 disconnected"
    assert windows[7.0 - 0.5].video.health.present


def test_frozen_camera_is_missing_with_duration_reason_then_recovers():
    packets = ([status(V, SourceState.RUNNING, 0.0)] + video_packets(0.0, 2.0, 15.0)
               + video_packets(3.2, 6.0, 15.0, first_index=48))
    windows = run(TimeAlignedBuffer(), packets, WindowConfig(video_fps=15.0))
    assert windows[2.0].video.health.present
    frozen = windows[3.0].video.health
    assert not frozen.present and frozen.reason == "no frames for 1.0 s"  # last frame 1.93 s, covers 1/15 s
    assert windows[4.0].video.health.present  # recovered without restart


def test_no_source_at_all_gives_absent_reasons():
    w = Windower(TimeAlignedBuffer()).make(0)
    assert [(h.present, h.reason) for h in w.healths.values()] == [
        (False, "no camera"), (False, "no microphone"), (False, "no transcript source")]


def test_unavailable_microphone_reason_is_passed_through():
    windows = session(4.0, audio=False,
                      extra=[status(A, SourceState.UNAVAILABLE, 0.0, "no input device found: connect a microphone")])
    ah = windows[2.0].audio.health
    assert not ah.present and ah.reason == "no input device found: connect a microphone"


def test_silence_is_present_data_not_missing():
    w = run(TimeAlignedBuffer(), [status(A, SourceState.RUNNING, 0.0)] + audio_packets(0.0, 3.0, level=0.0))[2.0]
    assert w.audio.health.present and w.audio.health.missing == 0
    assert np.abs(w.audio.samples).max() == 0.0


def test_audio_hole_is_zero_filled_and_counted():
    chunks = [c for c in audio_packets(0.0, 4.0) if not 0.5 <= c.t < 1.0]
    w = run(TimeAlignedBuffer(), [status(A, SourceState.RUNNING, 0.0)] + chunks)[2.0]
    ah = w.audio.health
    assert ah.present
    assert 0.45 < ah.missing / AUDIO_RATE < 0.6
    assert len(ah.gaps) == 1
    a, b = (int(x * AUDIO_RATE) for x in ah.gaps[0])
    assert not w.audio.valid[a + 10:b - 10].any() and np.all(w.audio.samples[a + 10:b - 10] == 0)
    assert w.audio.valid[:a - 10].all() and w.audio.valid[b + 10:].all()


def test_silent_mic_stop_without_status_is_missing_once_stale():
    # no status change: the stream just stops delivering at ~2.9 s
    windows = run(TimeAlignedBuffer(), [status(A, SourceState.RUNNING, 0.0)] + audio_packets(0.0, 2.9), until=5.0)
    assert windows[3.0].audio.health.present  # 0.1 s without audio at the end is jitter, not a dropout
    assert not windows[3.5].audio.health.present
    assert windows[3.5].audio.health.reason == "no audio for 0.6 s"
    assert windows[5.0].audio.health.reason == "no audio for 2.0 s"


def test_unplugged_mic_with_status_is_missing_in_the_next_window():
    packets = ([status(A, SourceState.RUNNING, 0.0)] + audio_packets(0.0, 3.3)
               + [status(A, SourceState.RECONNECTING, 3.3)])
    windows = run(TimeAlignedBuffer(), packets, until=4.0)
    assert windows[3.0].audio.health.present
    assert windows[3.5].audio.health.reason == "microphone disconnected"


def test_transcript_gap_marks_text_missing_only_in_the_gap():
    segs = [text(0.2, 1.4, "I am happy"), text(1.5, 2.4, "really"), text(5.6, 6.0, "back again")]
    windows = session(6.0, extra=segs)
    # a line reaches the buffer when it is complete (t1): "really" ends at 2.4 s, after window 2.0 was cut
    assert windows[2.0].text.health.present and windows[2.0].text.text == "I am happy"
    assert windows[2.5].text.text == "I am happy really" and windows[2.5].text.words == 4
    assert not windows[5.0].text.health.present and windows[5.0].text.health.reason == "no transcript"
    assert windows[6.0].text.health.present and windows[6.0].text.text == "back again"


def test_window_json_summary_has_every_modality():
    d = session(3.0)[2.0].to_json()
    assert set(d) == {"index", "t0", "t1", "video", "audio", "text"}
    assert d["video"]["present"] is True and d["text"]["present"] is False and d["text"]["words"] == 0
    assert d["audio"]["device_state"] == "running"


def test_memory_stays_bounded_over_an_hour():
    buf = TimeAlignedBuffer()
    windower = Windower(buf)
    buf.push(status(V, SourceState.RUNNING, 0.0))
    sizes = []
    for second in range(3600):
        for f in video_packets(second, second + 1.0, 15.0, first_index=second * 15):
            buf.push(f)
        if second % 60 == 0:  # a flapping status every minute
            buf.push(status(V, SourceState.RECONNECTING, second + 0.5, "flap"))
            buf.push(status(V, SourceState.RUNNING, second + 0.6))
        windower.due(second + 1.0)
        sizes.append(buf.sizes())
    assert max(s["video"] for s in sizes) <= 15 * (buf.horizon_s + 1)
    assert max(s["status"] for s in sizes) <= 4
    assert windower.t1_of(windower._next_index) > 3599


def test_config_rejects_hop_longer_than_window():
    with pytest.raises(ValueError, match="skip data"):
        WindowConfig(window_s=1.0, hop_s=2.0)


def test_health_values_are_plain_python_types():
    # numpy scalars leak into JSON writers and fail there; the health record must hold plain types
    chunks = [c for c in audio_packets(0.0, 4.0) if not 1.0 <= c.t < 1.9]
    w = run(TimeAlignedBuffer(), [status(A, SourceState.RUNNING, 0.0)] + chunks)[2.0]
    import json

    for h in w.healths.values():
        assert type(h.present) is bool and type(h.largest_gap_s) is float
        assert all(type(x) is float for gap in h.gaps for x in gap)
    json.dumps(w.to_json())


def test_a_skipped_window_hands_its_lines_on_to_the_next_analysed_one():
    """Live, a latest-wins hand-off may skip the one window that holds a late line: carry_dropped moves the line
    into the window that replaces it (through a chain of skips), and never a line an analysed window held."""
    buf = TimeAlignedBuffer()
    _running(buf, A, T)
    win = Windower(buf, WindowConfig(grace_s=0.25))
    said, short = text(1.0, 1.6, "good morning everybody"), text(2.9, 3.0, "yes")
    w = {x.t1: x for x in _live_asr(buf, win, {4.4: [said], 4.9: [short]}, until=6.5)}
    assert w[4.5].text.late == (said,) and w[5.0].text.segments == (short,) and w[5.0].text.fresh == (short,)
    assert w[5.5].text.segments == ()  # "yes" (2.9-3.0 s) was only in [3, 5): the window cut when it arrived
    merged = carry_dropped(carry_dropped(w[4.5], w[5.0]), w[5.5])  # 4.5 and 5.0 skipped, 5.5 analysed
    assert merged.text.segments == (said, short) and merged.text.late == (said, short)
    assert merged.text.health.present and merged.text.health.received == 2 and merged.text.text.endswith("yes")
    assert (merged.index, merged.t0, merged.t1) == (w[5.5].index, 3.5, 5.5) and merged.audio is w[5.5].audio
    assert carry_dropped(w[5.0], w[5.5]).text.late == (short,)  # 4.5 was analysed: "said" is not carried again
    assert carry_dropped(w[4.0], w[4.5]) is w[4.5]  # nothing fresh to hand on
    happy = text(0.2, 1.4, "I am happy")  # on time: in [0, 2), [0.5, 2.5) and [1, 3)
    on_time = session(4.0, extra=[happy])
    chain = carry_dropped(carry_dropped(on_time[2.0], on_time[2.5]), on_time[3.0])  # three skipped in a row
    assert chain.text.segments == (happy,) and chain.text.late == () and chain.text.fresh == (happy,)
    assert carry_dropped(chain, on_time[3.5]).text.late == (happy,)  # and the fourth: it rides on, once
    assert carry_dropped(on_time[2.5], on_time[3.0]) is on_time[3.0]  # [0, 2) was analysed: nothing to carry


def test_a_long_chain_of_skipped_windows_carries_only_the_newest_lines():
    """A consumer far behind (latest-wins skipping for minutes) must not be handed every line it skipped: the
    window it finally takes holds at most MAX_CARRIED_LINES carried lines, the newest, and what rides on along
    the chain stays bounded (it is merged under the mailbox lock, once per window)."""
    from streams.windows import MAX_CARRIED_LINES

    lines = [text(4.0 * k + 0.2, 4.0 * k + 1.0, f"line {k}") for k in range(150)]  # each in a few windows only
    w = session(600.0, extra=lines)
    ends = sorted(w)
    merged, biggest = w[ends[0]], 0
    for t1 in ends[1:]:  # every window skipped until the last
        merged = carry_dropped(merged, w[t1])
        biggest = max(biggest, len(merged.text.fresh))
    assert len(merged.text.late) <= MAX_CARRIED_LINES
    assert biggest <= MAX_CARRIED_LINES + 4  # what rides on stays bounded all along (a few lines overlap a window)
    held = {x.text for x in merged.text.segments}
    assert held >= {f"line {k}" for k in range(150 - MAX_CARRIED_LINES + 1, 150) if 4.0 * k + 1.0 < merged.t0}
    assert "line 0" not in held
