"""The Live tab: device pickers (probed devices only), start/stop/demo/record, the preview, the verdict, the
gauges, the last 60 s, routing, telemetry, transcript, and this browser's camera and microphone."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from ..capture import CaptureOptions
from . import render
from .controller import DashboardController, DashboardState
from .plots import timeline_svg
from .ui_browser import build_browser_capture


@dataclass
class TabView:
    outputs: list
    render: Callable[..., dict]


def build_live(ctl: DashboardController, browser_capture: bool, bid: gr.Textbox) -> TabView:
    from .ui import guarded

    found_mics = ctl.devices()[1]
    mics = [] if isinstance(found_mics, str) else [f"{m.id}: {m.name}" for m in found_mics]
    cams = ctl.camera_choices()
    with gr.Row():
        cam_dd = gr.Dropdown(cams, value=cams[1] if len(cams) > 1 else "none", label="Camera (found on this machine)",
                             allow_custom_value=False, scale=1, elem_id="cam-picker")
        mic_dd = gr.Dropdown(["none", "default"] + mics, value="default" if mics else "none",
                             label="Microphone", allow_custom_value=False, scale=2)
        start_btn = gr.Button("Start live", variant="primary", elem_id="btn-live")
        demo_btn = gr.Button("Play demo", elem_id="btn-demo")
        stop_btn = gr.Button("Stop", elem_id="btn-stop")
        rec_btn = gr.Button("Record session / save", elem_id="btn-record")
    lab_banner = gr.HTML(elem_id="live-lab-banner")
    with gr.Row():
        with gr.Column(scale=3):
            preview = gr.Image(label="Camera", type="numpy", interactive=False, elem_id="live-preview", height=360)
        with gr.Column(scale=2):
            headline = gr.HTML(elem_id="live-headline")
            probs = gr.HTML(elem_id="live-probs")
    gauges = gr.HTML(elem_id="live-gauges")
    with gr.Row():
        emo_plot = gr.HTML(elem_id="live-emotion-plot", label="Emotion, last 60 s")
        q_plot = gr.HTML(elem_id="live-quality-plot", label="Quality, last 60 s")
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("**Mixture-of-experts routing**")
            routing = gr.HTML(elem_id="live-routing")
        with gr.Column(scale=3):
            telemetry = gr.Markdown(elem_id="live-telemetry")
    with gr.Row():
        transcript = gr.Textbox(label="Transcript (newest last)", lines=4, interactive=False, scale=3)
        with gr.Column(scale=2):
            line_in = gr.Textbox(label="Type a transcript line (live)", elem_id="line-in")
            send_btn = gr.Button("Send line")

    def on_live(who, cam, mic, request: gr.Request):
        def go(session, cam, mic):
            camera, mic_id = ctl.check_devices(cam, mic)
            ctl.start_live(CaptureOptions(source="devices", camera=camera, mic=mic_id), session=session)
        guarded(ctl, go, request, cam, mic, browser_id=who)

    start_btn.click(on_live, [bid, cam_dd, mic_dd], None, api_visibility="private")
    def on_demo(who, request: gr.Request):
        guarded(ctl, lambda s: ctl.start_demo(session=s), request, browser_id=who)

    def on_stop(who, request: gr.Request):
        guarded(ctl, lambda s: ctl.stop(session=s), request, browser_id=who)

    demo_btn.click(on_demo, bid, None, api_visibility="private")
    stop_btn.click(on_stop, bid, None, api_visibility="private")

    def on_record(who, request: gr.Request):
        def go(session):
            if ctl.state().recording:
                ctl.say(f"Recording saved to {ctl.stop_recording(session=session)}.")
            else:
                ctl.say(f"Recording to {ctl.start_recording(session=session)}.")
        guarded(ctl, go, request, browser_id=who)

    rec_btn.click(on_record, bid, None, api_visibility="private")

    def on_send(text):
        if not ctl.type_line(text or ""):
            ctl.say("Typed lines go into live sessions: start live analysis first.", "warning")
        return ""

    send_btn.click(on_send, line_in, line_in, api_visibility="private")
    line_in.submit(on_send, line_in, line_in, api_visibility="private")
    if browser_capture:
        build_browser_capture(ctl, bid)

    def draw(s: DashboardState) -> dict:
        r = s.result
        stopped = s.stopped_at if s.stale else None
        return {lab_banner: render.lab_banner_html(r.lab if r is not None and not s.stale else None),
                preview: render.overlay(s.frame, r, stopped_at=stopped),
                headline: render.headline_html(r, s.stale, s.stopped_at),
                probs: render.probs_html(r, s.stale), gauges: render.gauges_html(r, s.stale),
                emo_plot: timeline_svg(s.history, "emotion", stretches=s.script, title="Emotion, last 60 s"),
                q_plot: timeline_svg(s.history, "quality", stretches=s.script, title="Quality, last 60 s"),
                routing: render.routing_html(r), telemetry: render.telemetry_md(s.telemetry, r),
                transcript: "\n".join(s.transcript)}

    return TabView([lab_banner, preview, headline, probs, gauges, emo_plot, q_plot, routing, telemetry,
                    transcript], draw)
