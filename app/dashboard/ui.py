"""The Gradio 6 dashboard: Live, Replay and Quality lab tabs over one :class:`DashboardController`.

A thin layer: callbacks call the controller and render with :mod:`.render` / :mod:`.plots`. One timer
(``REFRESH_S``) pulls the controller's state for every tab; nothing here waits on the model. Each tab's widgets
and callbacks live in their own module (:mod:`.ui_live`, :mod:`.ui_replay`, :mod:`.ui_lab`), the named API for
programs in :mod:`.ui_api`. Internal events are ``api_visibility="private"``: the API page lists only the named
endpoints.
"""
from __future__ import annotations

import atexit
import logging
import signal
import threading

import gradio as gr

from . import render
from .browser_routes import browser_routes
from .controller import DashboardController, NotInControl
from .events import log_html
from .throttle import LoginThrottle
from .ui_api import add_api
from .ui_lab import build_lab
from .ui_live import build_live
from .ui_replay import build_replay

log = logging.getLogger(__name__)

REFRESH_S = 0.5
MAX_UPLOAD_BYTES = 200 * 2**20


BROWSER_ID_JS = """
() => {
  // one id per browser (kept across reloads), so that reloading the page keeps control
  let id = localStorage.getItem('umq-browser-id');
  if (!id) { id = 'b-' + Math.random().toString(36).slice(2) + Date.now().toString(36);
             localStorage.setItem('umq-browser-id', id); }
  return id;
}
"""


def session_of(request: gr.Request | None, browser_id: str | None = None) -> str | None:
    """Who is asking: this browser (its id, kept across reloads), else the Gradio session (an API client); None
    outside a request (the operator)."""
    return (browser_id or "").strip() or getattr(request, "session_hash", None) or None


def guarded(ctl: DashboardController, fn, request: gr.Request | None, *args, browser_id: str | None = None):
    """Run ``fn(session, *args)``; a refusal becomes a warning toast and an event, never a crash or a stale line."""
    try:
        return fn(session_of(request, browser_id), *args)
    except NotInControl as exc:
        gr.Warning(str(exc))
        return None
    except (ValueError, OSError, RuntimeError) as exc:
        ctl.say(str(exc), "warning")
        return None


def status_html(ctl: DashboardController, phase: str, status: str, session: str | None) -> str:
    ro = ctl.control.read_only(session)
    colour = {"failed": "#b42318", "idle": "#57606a", "finished": "#57606a"}.get(phase, "#1a7f37")
    note = (" <span class='umq-readonly' style='color:#b35900'>(read-only: controlled by another session)"
            "</span>") if ro else ""
    b = ctl.browser_stats() if phase in ("live", "recording") else {}
    extra = (f" This browser's microphone: {b['audio_s']:.0f} s received, {b['audio_coverage']:.0%} of the time "
             f"covered; camera: {b['frames']} frames." if b else "")
    attrs = (f" data-audio-s='{b['audio_s']}' data-audio-coverage='{b['audio_coverage']}' "
             f"data-frames='{b['frames']}'" if b else "")
    return (f"<div id='umq-status-line' data-phase='{phase}' data-read-only='{int(ro)}'{attrs}>"
            f"<span class='umq-badge' style='background:{colour}'>{phase.upper()}</span> {render.esc(status)}"
            f"{extra}{note}</div>")


def build_ui(ctl: DashboardController, browser_capture: bool = True) -> gr.Blocks:
    with gr.Blocks(title="UMQ live affect analysis") as demo:
        gr.Markdown("## UMQ — multimodal emotion that stays right when inputs go bad")
        seen = gr.State(-1)  # the last event this page has toasted
        bid = gr.Textbox(visible=False, elem_id="umq-browser-id")
        demo_banner = gr.HTML(elem_id="umq-demo-banner")
        status = gr.HTML(elem_id="umq-status")
        with gr.Accordion("Messages (newest first)", open=True):
            events = gr.HTML(elem_id="umq-log")
        with gr.Tabs():
            with gr.Tab("Live", id="live"):
                live = build_live(ctl, browser_capture, bid)
            with gr.Tab("Replay", id="replay"):
                replay = build_replay(ctl, MAX_UPLOAD_BYTES, bid)
            with gr.Tab("Quality lab", id="lab"):
                lab = build_lab(ctl, bid)
        add_api(ctl)

        def tick(who, seen_seq, follow, scrub_t, chosen, request: gr.Request):
            session = session_of(request, who)
            ctl.control.touch(session)
            s = ctl.state()
            new = ctl.events.since(seen_seq) if seen_seq >= 0 else []
            for ev in new[-3:]:
                (gr.Warning if ev.level != "info" else gr.Info)(ev.text, duration=10)
            out = {seen: ctl.events.last_seq, status: status_html(ctl, s.phase, s.status, session),
                   events: log_html(ctl.events.last(20)), demo_banner: render.demo_banner_html(s.script)}
            out.update(live.render(s))
            out.update(replay.render(s, follow, scrub_t, chosen))
            out.update(lab.render(s))
            return out

        outputs = [seen, status, events, demo_banner, *live.outputs, *replay.outputs, *lab.outputs]
        timer = gr.Timer(REFRESH_S)
        inputs = [bid, seen, replay.follow, replay.scrub, replay.classes]
        timer.tick(tick, inputs, outputs, show_progress="hidden", concurrency_limit=None, api_visibility="private")
        first = demo.load(None, None, bid, js=BROWSER_ID_JS, api_visibility="private")
        first.then(tick, inputs, outputs, show_progress="hidden", api_visibility="private")
    return demo


_CLEANUP_LOCK = threading.Lock()


def install_cleanup(ctl: DashboardController) -> None:
    """Delete uploads and stop capture at exit, on SIGTERM and on SIGINT (Gradio's thread keeps serving until
    then; the previous handlers still run afterwards)."""
    done: list[bool] = []

    def cleanup() -> None:
        with _CLEANUP_LOCK:
            if not done:
                done.append(True)
                try:
                    ctl.close()
                except Exception:
                    log.exception("cleanup at exit failed")

    atexit.register(cleanup)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum, frame, previous=previous):
            cleanup()
            if callable(previous):
                previous(signum, frame)
            else:
                raise SystemExit(128 + signum)

        signal.signal(sig, handler)


def launch(ctl: DashboardController, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           auth: tuple[str, str] | None = None, browser_capture: bool = True, block: bool = True):
    """Build and serve the dashboard; returns the Gradio app (``block=False`` for tests). Failed logins are
    throttled per client address (:mod:`.throttle`)."""
    from starlette.middleware import Middleware

    ctl.uploads.max_bytes = MAX_UPLOAD_BYTES
    demo = build_ui(ctl, browser_capture)
    demo.queue(default_concurrency_limit=4)
    install_cleanup(ctl)
    demo.launch(server_name=host, server_port=port, share=share, auth=auth, max_file_size=MAX_UPLOAD_BYTES,
                prevent_thread_lock=not block, css=render.CSS, allowed_paths=[str(ctl.upload_dir)],
                show_error=True, quiet=not block, app_kwargs={"middleware": [Middleware(LoginThrottle)],
                                                         "routes": browser_routes(ctl)})
    return demo
