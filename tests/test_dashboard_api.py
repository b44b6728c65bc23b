"""The dashboard's API for programs, exercised with gradio_client against a running app (127.0.0.1, with a login):
named endpoints only, JSON results, one controlling session, refused uploads deleted, login throttling, and the
upload folder removed on SIGTERM and SIGINT. This is also the README's gradio_client example, run."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.dashboard.controller import DEMO_SESSION, DashboardController
from umq.runtime.analyzer import Analyzer

from .test_dashboard_browser import _free_port
from .test_dashboard_render import _video

pytestmark = pytest.mark.slow
AUTH = ("umq", "s3cret-test")
PUBLIC = {"/analyze_video", "/latest_result", "/start_replay", "/set_lab", "/export", "/status"}


@pytest.fixture(scope="module")
def app_url(torch_one_thread):
    from app.dashboard.ui import launch

    ctl = DashboardController(lambda: Analyzer(), allowed_roots=[DEMO_SESSION.parent], loop_demo=False)
    port = _free_port()
    demo = launch(ctl, port=port, auth=AUTH, block=False, browser_capture=True)
    yield f"http://127.0.0.1:{port}/", ctl
    demo.close()
    ctl.close()


def _client(url):
    from gradio_client import Client

    return Client(url, auth=AUTH, verbose=False)


def test_only_the_named_endpoints_are_listed_and_the_login_page_hides_the_rest(app_url):
    url, _ = app_url
    info = _client(url).view_api(return_format="dict", print_info=False)
    assert set(info["named_endpoints"]) == PUBLIC and not info["unnamed_endpoints"]
    page = httpx.get(url).text  # not logged in: the login page
    assert "/lambda" not in page and "on_lab" not in page and "/tick" not in page


def test_analyze_video_with_its_transcript_returns_json_results(app_url, tmp_path):
    from gradio_client import handle_file

    url, ctl = app_url
    video = _video(tmp_path / "talk.avi", w=320, h=240, n=40)  # 4 s
    srt = tmp_path / "talk.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:03,500\nI am really happy today\n", encoding="utf-8")
    c = _client(url)
    results = c.predict(handle_file(str(video)), handle_file(str(srt)), api_name="/analyze_video")
    assert len(results) >= 2 and all(r["schema"] == 2 for r in results)
    assert any("happy today" in r["transcript"] for r in results)
    assert all((r["label"] == "") == r["no_evidence"] for r in results)
    latest = c.predict(api_name="/latest_result")
    assert latest["index"] == results[-1]["index"]
    status = c.predict(api_name="/status")
    assert status["phase"] == "finished" and "uploaded video" in status["status"]
    exported = Path(c.predict("csv", api_name="/export"))
    assert "no_evidence" in exported.read_text(encoding="utf-8").splitlines()[0]
    uploads = [p.name for p in ctl.upload_dir.iterdir() if not p.name.startswith("umq-results-")]
    assert len(uploads) == 2  # the video and its transcript, stored once


def test_a_refused_upload_is_deleted_and_explained(app_url, tmp_path):
    from gradio_client import handle_file

    url, ctl = app_url
    bad = tmp_path / "notes.txt"
    bad.write_text("not a video", encoding="utf-8")
    ctl.control.release(ctl.control.holder)
    before = sorted(p.name for p in ctl.upload_dir.iterdir())
    with pytest.raises(Exception, match="video"):
        _client(url).predict(handle_file(str(bad)), None, api_name="/analyze_video")
    assert sorted(p.name for p in ctl.upload_dir.iterdir()) == before


def test_a_second_client_cannot_undo_the_first(app_url):
    url, ctl = app_url
    a, b = _client(url), _client(url)
    ctl.control.release(ctl.control.holder)
    assert "demo" in a.predict(str(DEMO_SESSION), "1x", api_name="/start_replay")
    assert a.predict({"mute": True}, api_name="/set_lab")["mute"]
    with pytest.raises(Exception, match="controlled by another session"):
        b.predict({}, api_name="/set_lab")
    with pytest.raises(Exception, match="controlled by another session"):
        b.predict(str(DEMO_SESSION), "max", api_name="/start_replay")
    assert ctl.lab.settings.mute and ctl.state().phase == "replay"
    a.predict({}, api_name="/set_lab")
    ctl.stop()


def test_paths_outside_the_allowed_folders_do_not_reveal_whether_they_exist(app_url):
    url, ctl = app_url
    ctl.control.release(ctl.control.holder)
    c = _client(url)
    errors = []
    for p in ("/etc/passwd", "/etc/no-such-file-here"):
        with pytest.raises(Exception, match="outside the folders") as exc:
            c.predict(p, "1x", api_name="/start_replay")
        errors.append(str(exc.value).replace(p, "P"))
    assert errors[0] == errors[1]


def test_repeated_failed_logins_are_slowed_down(app_url):
    url, _ = app_url
    with httpx.Client(base_url=url) as h:
        for _ in range(5):
            assert h.post("login", data={"username": "umq", "password": "wrong"}).status_code == 400
        t = time.monotonic()
        assert h.post("login", data={"username": "umq", "password": "wrong"}).status_code == 400
        assert time.monotonic() - t >= 0.9  # the sixth waits (1 s, then 2, 4, ...)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_uploads_are_deleted_when_the_dashboard_is_stopped(sig):
    code = ("import time; from app.dashboard.controller import DashboardController; "
            "from app.dashboard.ui import install_cleanup; c = DashboardController(lambda: None); "
            "install_cleanup(c); (c.upload_dir / 'x.mp4').write_bytes(b'1'); print(c.upload_dir, flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    folder = Path(proc.stdout.readline().strip())
    assert folder.is_dir()
    proc.send_signal(sig)
    proc.wait(30)
    assert not folder.exists()


def test_browser_audio_route_needs_the_token(app_url):
    url, _ = app_url
    pcm = (np.sin(np.arange(4000) / 5) * 8000).astype("<i2").tobytes()
    r = httpx.post(url + "umq/browser/audio", content=pcm, headers={"X-UMQ-Token": "guess", "X-UMQ-Rate": "16000"})
    assert r.status_code == 403
