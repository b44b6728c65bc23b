"""The dashboard's pure parts: what it draws for a result (no evidence, idle, escaping, fixed class order),
timelines, the event log, control, uploads, device and path checks, login throttling, measured fps."""
from __future__ import annotations

import asyncio
import csv
import io

import numpy as np
import pytest

from app.dashboard import render
from app.dashboard.access import DeviceChoiceError, ReplayPathError, check_devices, check_replay_path
from app.dashboard.control import ControlLease, NotInControl
from app.dashboard.events import EventLog, log_html
from app.dashboard.plots import timeline_svg
from app.dashboard.throttle import LoginThrottle
from app.dashboard.uploads import UploadError, UploadStore
from app.engine import arrival_rate
from umq.labels import EMOTIONS
from umq.result import ModalityReport, Prediction, Result

EVIL = "<img src=x onerror=alert(1)>"


def _probs(top: str, p: float = 0.6) -> dict[str, float]:
    rest = (1.0 - p) / (len(EMOTIONS) - 1)
    return {e: (p if e == top else rest) for e in EMOTIONS}


def _result(index=0, t0=0.0, t1=2.0, top="happy", no_evidence=False, states=("ok", "ok", "idle"),
            reason="", baseline="happy") -> Result:
    mods = {m: ModalityReport(quality=0.0 if st in ("missing", "idle") else 0.8, state=st, reason=reason,
                              flags=(reason,) if reason and st == "low" else (),
                              prediction=Prediction(_probs("sad")) if st in ("ok", "low") else None)
            for m, st in zip(("video", "audio", "text"), states)}
    probs = {e: 1 / 7 for e in EMOTIONS} if no_evidence else _probs(top)
    probs = {e: v / sum(probs.values()) for e, v in probs.items()}
    return Result(index=index, t0=t0, t1=t1, probs=probs, label="" if no_evidence else top,
                  confidence=max(probs.values()), modalities=mods, no_evidence=no_evidence,
                  baseline=Prediction(_probs(baseline)), routing=[0.25] * 4, lab={})


def test_no_evidence_is_shown_as_no_usable_input_everywhere():
    r = _result(no_evidence=True, states=("missing", "missing", "missing"), reason="camera disconnected")
    head = render.headline_html(r)
    assert "no usable input" in head and "data-label=''" in head and "data-no-evidence='1'" in head
    assert not any(f">{e} " in head for e in EMOTIONS)  # no class is named as the verdict
    assert "data-no-evidence='1'" in render.probs_html(r) and "no usable input" in render.probs_html(r)
    cmp_ = render.compare_html(r)
    assert "no usable input" in cmp_ and "data-disagree='1'" in cmp_  # the MoE still names a class
    row = next(csv.DictReader(io.StringIO(render.results_csv([r]))))
    assert row["label"] == "" and row["no_evidence"] == "1" and row["label_video"] == ""
    svg = timeline_svg([r, _result(1, 2, 4, no_evidence=True, states=("missing",) * 3)], "emotion")
    assert "class='no-evidence'" in svg and "<polyline" not in svg  # no emotion line without evidence


def test_gauges_show_per_modality_predictions_flags_and_idle_apart_from_missing():
    r = _result(states=("low", "ok", "idle"), reason="too dark")
    g = render.gauges_html(r)
    assert "data-state='idle'" in g and "IDLE" in g and "data-state='low'" in g
    assert "<span class='umq-flag'>too dark</span>" in g and "face says <b>sad" in g
    assert "data-says='sad'" in g
    assert "face says sad" in render.headline_html(r) and "fused: happy" in render.headline_html(r)
    assert render.STATE_COLOURS["idle"] != render.STATE_COLOURS["missing"]


def test_classes_are_drawn_in_the_fixed_order_whatever_their_probability():
    for top in ("surprised", "neutral", "angry"):
        html = render.probs_html(_result(top=top))
        order = [html.index(f"data-emotion='{e}'") for e in EMOTIONS]
        assert order == sorted(order)


def test_user_controlled_strings_are_escaped():
    r = _result(states=("missing", "low", "ok"), reason=EVIL)
    for html in (render.gauges_html(r), log_html(EventLog().last()), render.demo_banner_html({EVIL: (1, 2)}),
                 render.lab_banner_html({"blur": EVIL}), timeline_svg([r], stretches={EVIL: (0.0, 1.0)})):
        assert "<img" not in html
    log = EventLog()
    log.add(f"Cannot replay: {EVIL}.mp4", "warning")
    assert "&lt;img" in log_html(log.last()) and "<img" not in log_html(log.last())


def test_stale_results_are_greyed_and_say_when_they_stopped():
    r = _result(t1=12.0)
    head = render.headline_html(r, stale=True, stopped_at=12.0)
    assert "stopped at t = 12.0 s" in head and "data-stale='1'" in head
    img = render.overlay(np.full((60, 80, 3), (0, 0, 255), np.uint8), r, stopped_at=12.0)
    assert np.ptp(img.reshape(-1, 3), axis=1).max() == 0  # grey: the old frame is not shown as live


def test_timelines_grow_show_cursor_stretches_disagreements_and_top_classes():
    h = [_result(i, i * 0.5, i * 0.5 + 2, top="angry", baseline="angry" if i % 2 else "sad") for i in range(20)]
    a = timeline_svg(h[:5], "emotion")
    b = timeline_svg(h, "emotion", cursor=4.0, stretches={"dark": (1.0, 3.0)}, disagreements=True)
    def t_end(svg: str) -> float:
        return float(svg.split("data-t-end='")[1].split("'")[0])

    assert t_end(b) > t_end(a)
    assert "class='cursor'" in b and "data-cursor='4.00'" in b and "data-stretch='dark'" in b
    assert "data-disagree='10'" in b
    assert "data-series='angry'" in b and b.count("<polyline") == 3  # top 3 classes only
    long = [_result(i, i * 0.5, i * 0.5 + 2) for i in range(7200)]  # one hour
    assert timeline_svg(long, "quality", bins=300).count(",") < 3 * 320 + 50  # bounded, readable


def test_event_log_keeps_messages_with_sequence_numbers():
    log = EventLog(maxlen=3)
    first = log.add("a")
    for t in "bcd":
        log.add(t, "warning")
    assert [e.text for e in log.last()] == ["b", "c", "d"] and [e.text for e in log.since(first.seq + 1)] == ["c", "d"]
    with pytest.raises(ValueError):
        log.add("x", "loud")


def test_one_session_controls_others_are_read_only_until_it_is_gone():
    now = [0.0]
    lease = ControlLease(timeout_s=10, now=lambda: now[0])
    lease.claim("a")
    with pytest.raises(NotInControl, match="another session"):
        lease.claim("b")
    assert lease.read_only("b") and not lease.read_only("a")
    lease.claim(None)  # the operator is never refused
    now[0] = 8.0
    lease.touch("a")
    now[0] = 16.0
    assert lease.read_only("b")
    now[0] = 30.0
    lease.claim("b")  # "a" is gone
    assert lease.read_only("a")


def test_login_throttle_delays_exponentially_after_five_failures():
    t = LoginThrottle(None, free=5, base_s=1.0, max_s=8.0)
    for _ in range(5):
        assert t.delay_for("1.2.3.4") == 0.0
        t.record("1.2.3.4", ok=False)
    delays = []
    for _ in range(5):
        delays.append(t.delay_for("1.2.3.4"))
        t.record("1.2.3.4", ok=False)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0] and t.delay_for("5.6.7.8") == 0.0
    t.record("1.2.3.4", ok=True)
    assert t.delay_for("1.2.3.4") == 0.0


def test_login_throttle_middleware_counts_failed_posts():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    t = LoginThrottle(app, free=1, base_s=0.01)
    scope = {"type": "http", "method": "POST", "path": "/login", "client": ("9.9.9.9", 1)}

    async def noop(message):
        return None

    for _ in range(3):
        asyncio.run(t(scope, None, noop))
    assert t.delay_for("9.9.9.9") == pytest.approx(0.04)


def _video(path, w=64, h=48, n=10):
    import cv2

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for k in range(n):
        out.write(np.full((h, w, 3), (k * 20) % 256, np.uint8))
    out.release()
    return path


def test_uploads_are_checked_stored_once_replaced_and_deleted(tmp_path):
    store = UploadStore(max_bytes=10**6, root=tmp_path / "up")
    bad = tmp_path / "notes.exe"
    bad.write_bytes(b"MZ")
    with pytest.raises(UploadError, match="only video files"):
        store.accept(bad)
    assert not bad.exists()  # refused: deleted, not kept
    v, srt = _video(tmp_path / "a.avi"), tmp_path / "a.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n", encoding="utf-8")
    dst, tdst = store.accept(v, srt)
    assert not v.exists() and dst.exists() and tdst.stem == dst.stem and tdst.suffix == ".srt"  # moved, once
    dst2, _ = store.accept(_video(tmp_path / "b.avi"))
    assert dst2.exists() and not dst.exists() and not tdst.exists()  # the previous upload is gone
    with pytest.raises(UploadError, match="pixels"):
        store.accept(_video(tmp_path / "huge.avi", w=4112, h=16, n=2))
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\0" * 2048)
    with pytest.raises(UploadError, match="not a video"):
        store.accept(fake)
    small = UploadStore(max_bytes=100, root=tmp_path / "small")
    with pytest.raises(UploadError, match="limit"):
        small.accept(_video(tmp_path / "c.avi"))
    store.close()
    assert not (tmp_path / "up").exists()


def test_the_disk_cap_refuses_uploads_that_do_not_fit(tmp_path):
    store = UploadStore(max_bytes=10**6, disk_cap_bytes=1500, root=tmp_path / "up")
    (tmp_path / "up" / "umq-results-x.csv").write_bytes(b"x" * 1400)  # an export fills the folder
    with pytest.raises(UploadError, match="full"):
        store.accept(_video(tmp_path / "a.avi"))


def test_cameras_are_only_probed_devices_never_typed_paths_or_urls():
    class Mic:
        id, name = 3, "USB"

    choices = ["none", "0"]
    assert check_devices("0", "3: USB", choices, [Mic()]) == ("0", "3")
    assert check_devices("none", "default", choices, "no PortAudio") == ("none", None)
    for typed in ("/etc/passwd", "/nonexistent/x.mp4", "http://example.com/cam", "rtsp://10.0.0.1/", "1"):
        with pytest.raises(DeviceChoiceError) as exc:
            check_devices(typed, "none", choices, [])
        assert "exist" not in str(exc.value) and typed not in str(exc.value)
    with pytest.raises(DeviceChoiceError):
        check_devices("none", "7: nope", choices, [Mic()])
    assert check_devices("command line", "none", choices + ["command line"], [], "clip.mp4")[0] == "clip.mp4"


def test_paths_outside_the_allowed_folders_get_one_message_whether_they_exist_or_not(tmp_path):
    roots = [tmp_path.resolve()]
    msgs = []
    for p in ("/etc/passwd", "/etc/definitely-not-here", "/root/../etc/hostname"):
        with pytest.raises(ReplayPathError, match="outside the folders") as exc:
            check_replay_path(p, roots)
        msgs.append(str(exc.value).replace(p, "P"))
    assert len(set(msgs)) == 1
    with pytest.raises(ReplayPathError, match="no such"):
        check_replay_path(tmp_path / "nope", roots)


def test_fps_counts_frames_received_in_the_last_two_seconds():
    arrivals = [100.0 + k / 15 for k in range(60)]  # 15 fps for 4 s
    assert arrival_rate(arrivals, 104.0) == pytest.approx(15, abs=1)
    assert arrival_rate(arrivals, 107.0) == 0.0  # nothing for 3 s: 0, not the old rate
    assert arrival_rate([], 5.0) == 0.0
    assert arrival_rate([10.0 + k / 30 for k in range(15)], 10.5) == pytest.approx(30, abs=2)  # young run
