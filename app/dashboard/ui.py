"""The Gradio 6 dashboard: Live, Replay and Quality lab tabs over one :class:`DashboardController`.

A thin layer: every callback calls the controller and renders with :mod:`app.dashboard.render`. One timer
(``REFRESH_S``) pulls the controller's state; nothing here waits on the model.
"""
from __future__ import annotations

import json
import logging
import tempfile

import gradio as gr

from umq.runtime.lab import LabSettings

from . import render
from .controller import DashboardController, ReplayPathError

log = logging.getLogger(__name__)

REFRESH_S = 0.5
MAX_UPLOAD_BYTES = 200 * 2**20
PLOT_POINTS = 1500  # results drawn on a replay timeline (downsampled beyond)
EMOTION_LINES = dict(color="emotion", y_lim=[0, 1], color_map=render.EMOTION_COLOURS,
                     colors_in_legend=list(render.EMOTION_COLOURS))
QUALITY_LINES = dict(color="modality", y_lim=[0, 1], color_map=render.MODALITY_COLOURS,
                     colors_in_legend=list(render.MODALITY_COLOURS))


def build_ui(ctl: DashboardController, browser_capture: bool = True) -> gr.Blocks:
    found_cams, found_mics = ctl.devices()
    cams = [str(c.id) for c in found_cams]
    mics = [] if isinstance(found_mics, str) else [f"{m.id}: {m.name}" for m in found_mics]
    with gr.Blocks(title="UMQ live affect analysis") as demo:
        gr.Markdown("## UMQ — multimodal emotion that stays right when inputs go bad")
        status = gr.Markdown(elem_id="umq-status")
        with gr.Tabs():
            # ------------------------------------------------------------------------------------- live
            with gr.Tab("Live", id="live"):
                with gr.Row():
                    cam_dd = gr.Dropdown(["none"] + cams, value=cams[0] if cams else "none", label="Camera",
                                         allow_custom_value=True, scale=1)
                    mic_dd = gr.Dropdown(["none", "default"] + mics, value="default" if mics else "none",
                                         label="Microphone", allow_custom_value=True, scale=2)
                    start_btn = gr.Button("Start live", variant="primary", elem_id="btn-live")
                    demo_btn = gr.Button("Play demo", elem_id="btn-demo")
                    stop_btn = gr.Button("Stop", elem_id="btn-stop")
                    rec_btn = gr.Button("Record", elem_id="btn-record")
                with gr.Row():
                    with gr.Column(scale=3):
                        preview = gr.Image(label="Camera", type="numpy", interactive=False, elem_id="live-preview",
                                           height=360)
                    with gr.Column(scale=2):
                        headline = gr.HTML(elem_id="live-headline")
                        probs = gr.Label(label="Emotion", num_top_classes=7, elem_id="live-probs")
                gauges = gr.HTML(elem_id="live-gauges")
                with gr.Row():
                    emo_plot = gr.LinePlot(x="t", y="probability", **EMOTION_LINES,
                                           label="Emotion, last 60 s", height=240, elem_id="live-emotion-plot")
                    q_plot = gr.LinePlot(x="t", y="quality", **QUALITY_LINES,
                                         label="Quality, last 60 s", height=240, elem_id="live-quality-plot")
                gr.HTML(render.legend_html())
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
                if browser_capture:
                    with gr.Accordion("Browser capture (camera and microphone of this browser)", open=False):
                        gr.Markdown("For an app running on a remote machine: stream this browser's webcam and "
                                    "microphone to it. Press *Use browser capture*, then allow access.")
                        browser_btn = gr.Button("Use browser capture")
                        with gr.Row():
                            web_cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam")
                            web_mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone")
            # ------------------------------------------------------------------------------------ replay
            with gr.Tab("Replay", id="replay"):
                with gr.Row():
                    path_in = gr.Textbox(label="Session folder or video file", scale=3,
                                         placeholder="assets/demo_session", elem_id="replay-path")
                    speed = gr.Radio(["1x", "max"], value="1x", label="Speed", scale=1)
                    open_btn = gr.Button("Open and play", variant="primary", elem_id="btn-replay")
                upload = gr.File(label=f"…or upload a video (≤ {MAX_UPLOAD_BYTES // 2**20} MiB)",
                                 file_types=[".mp4", ".mkv", ".webm", ".avi", ".mov"], type="filepath")
                with gr.Row():
                    tl_emo = gr.LinePlot(x="t", y="probability", **EMOTION_LINES,
                                         label="Emotion over the session", height=240)
                    tl_q = gr.LinePlot(x="t", y="quality", **QUALITY_LINES,
                                       label="Quality over the session", height=240)
                gr.HTML(render.legend_html())
                with gr.Row():
                    scrub = gr.Slider(0, 60, value=0, step=0.5, label="Scrub to time (s)", scale=3)
                    refresh_tl = gr.Button("Refresh timeline", scale=1)
                with gr.Row():
                    scrub_img = gr.Image(label="Frame at that time", type="numpy", interactive=False, height=300)
                    scrub_json = gr.JSON(label="Window result at that time")
                with gr.Row():
                    csv_btn = gr.Button("Export CSV")
                    jsonl_btn = gr.Button("Export JSONL")
                    export_file = gr.File(label="Download", interactive=False)
            # ------------------------------------------------------------------------------------- lab
            with gr.Tab("Quality lab", id="lab"):
                gr.Markdown("Degrade the inputs before perception and compare UMQ with the quality-unaware "
                            "mixture of experts. Works on whatever is playing (live or replay).")
                with gr.Row():
                    with gr.Column():
                        gr.Markdown("**Video**")
                        blur = gr.Slider(0, 1, 0, step=0.05, label="Blur", elem_id="lab-blur")
                        dark = gr.Slider(0, 1, 0, step=0.05, label="Darkness", elem_id="lab-dark")
                        occl = gr.Slider(0, 1, 0, step=0.05, label="Occlusion", elem_id="lab-occlude")
                        inoise = gr.Slider(0, 1, 0, step=0.05, label="Image noise", elem_id="lab-image-noise")
                        fdrop = gr.Slider(0, 1, 0, step=0.05, label="Frame drop rate", elem_id="lab-frame-drop")
                        cam_off = gr.Checkbox(label="Camera off", elem_id="lab-camera-off")
                    with gr.Column():
                        gr.Markdown("**Audio**")
                        snr_on = gr.Checkbox(label="Add noise", elem_id="lab-noise-on")
                        snr = gr.Slider(-10, 40, 10, step=1, label="Noise SNR (dB)", elem_id="lab-snr")
                        mute = gr.Checkbox(label="Mute microphone", elem_id="lab-mute")
                        clip = gr.Slider(0, 0.5, 0, step=0.01, label="Clipping (fraction)", elem_id="lab-clip")
                    with gr.Column():
                        gr.Markdown("**Text**")
                        wdrop = gr.Slider(0, 1, 0, step=0.05, label="Drop words", elem_id="lab-word-drop")
                        wrep = gr.Slider(0, 1, 0, step=0.05, label="Replace words", elem_id="lab-word-replace")
                        no_tx = gr.Checkbox(label="No transcript", elem_id="lab-no-transcript")
                        reset_btn = gr.Button("Reset lab")
                with gr.Row():
                    lab_preview = gr.Image(label="What perception sees", type="numpy", interactive=False, height=300)
                    with gr.Column():
                        compare = gr.HTML(elem_id="lab-compare")
                        with gr.Row():
                            lab_umq = gr.Label(label="UMQ", num_top_classes=3, elem_id="lab-umq")
                            lab_base = gr.Label(label="Quality-unaware MoE", num_top_classes=3, elem_id="lab-baseline")
                lab_gauges = gr.HTML(elem_id="lab-gauges")
                lab_q_plot = gr.LinePlot(x="t", y="quality", **QUALITY_LINES,
                                         label="Quality, last 60 s", height=220)
                gr.HTML(render.legend_html())

        # ------------------------------------------------------------------------------------ callbacks
        def tick():
            s = ctl.state()
            r = s.result
            frame = render.overlay(s.frame, r)
            lab_frame = render.overlay(ctl.lab_view(), r) if s.frame is not None else frame
            msg = s.message + (f" Recording to {s.recording}." if s.recording else "")
            # drawn on both the live and the lab tab: computed once per tick
            probs_now, gauges_now = render.emotion_label(r), render.gauges_html(r)
            quality_plot = render.quality_frame(s.history)
            return (msg, frame, render.headline_html(r), probs_now, gauges_now, render.emotion_frame(s.history),
                    quality_plot, render.routing_html(r), render.telemetry_md(s.telemetry, r), "\n".join(s.transcript),
                    lab_frame, render.compare_html(r), probs_now, render.baseline_label(r), gauges_now, quality_plot)

        timer = gr.Timer(REFRESH_S)
        timer.tick(tick, outputs=[status, preview, headline, probs, gauges, emo_plot, q_plot, routing, telemetry,
                                  transcript, lab_preview, compare, lab_umq, lab_base, lab_gauges, lab_q_plot],
                   show_progress="hidden", queue=False)

        def on_live(cam, mic):
            from ..capture import CaptureOptions

            mic_id = None if mic in ("default", None) else ("none" if mic == "none" else mic.split(":")[0])
            try:
                return ctl.start_live(CaptureOptions(source="devices", camera=cam, mic=mic_id))
            except Exception as exc:  # noqa: BLE001 - show, do not crash the UI
                return f"Could not start live capture: {exc}"

        start_btn.click(on_live, [cam_dd, mic_dd], status)
        demo_btn.click(lambda: ctl.start_demo(), None, status)

        def on_stop():
            ctl.stop()
            return "Stopped."

        stop_btn.click(on_stop, None, status)

        def on_record():
            try:
                if ctl.state().recording:
                    return f"Recording saved to {ctl.stop_recording()}."
                return f"Recording to {ctl.start_recording()}."
            except Exception as exc:  # noqa: BLE001
                return f"Cannot record: {exc}"

        rec_btn.click(on_record, None, status)

        def on_send(text):
            ok = ctl.type_line(text or "")
            return ("", "Line added to the transcript." if ok else
                    "Typed lines go into live sessions: start live analysis first.")

        send_btn.click(on_send, line_in, [line_in, status])
        line_in.submit(on_send, line_in, [line_in, status])

        if browser_capture:
            browser_btn.click(lambda: ctl.start_live(browser=True), None, status)
            web_cam.stream(lambda img: ctl.push_browser_frame(img) and None, web_cam, None, stream_every=0.1,
                           time_limit=None, show_progress="hidden")
            web_mic.stream(lambda a: (a is not None and ctl.push_browser_audio(a[0], a[1])) and None, web_mic, None,
                           stream_every=0.25, time_limit=None, show_progress="hidden")

        def on_open(path, spd):
            try:
                return ctl.start_replay(path.strip(), None if spd == "max" else 1.0)
            except (ReplayPathError, ValueError, OSError) as exc:
                return f"Cannot replay: {exc}"

        open_btn.click(on_open, [path_in, speed], status)

        def on_upload(f, spd):
            if not f:
                return gr.update()
            try:
                p = ctl.accept_upload(f, MAX_UPLOAD_BYTES)
                return ctl.start_replay(p, None if spd == "max" else 1.0)
            except (ReplayPathError, ValueError, OSError) as exc:
                return f"Cannot replay the upload: {exc}"

        upload.upload(on_upload, [upload, speed], status)

        def timeline():
            h = ctl.full_history()
            step = max(1, len(h) // PLOT_POINTS)
            h = h[::step]
            end = h[-1].t1 if h else 60.0
            return render.emotion_frame(h), render.quality_frame(h), gr.update(maximum=max(1.0, round(end, 1)))

        refresh_tl.click(timeline, None, [tl_emo, tl_q, scrub])
        open_btn.click(timeline, None, [tl_emo, tl_q, scrub])

        def on_scrub(t):
            h = ctl.full_history()
            hit = min(h, key=lambda r: abs(r.t1 - t), default=None)
            img = ctl.frame_at(t)
            return render.overlay(img, hit), (hit.to_json() if hit else {})

        scrub.release(on_scrub, scrub, [scrub_img, scrub_json])

        def export(kind):
            h = ctl.full_history()
            fd = tempfile.NamedTemporaryFile("w", suffix=f".{kind}", prefix="umq-results-", delete=False,
                                             dir=ctl.upload_dir, encoding="utf-8")
            with fd:
                if kind == "csv":
                    fd.write(render.results_csv(h))
                else:
                    fd.writelines(json.dumps(r.to_json()) + "\n" for r in h)
            return fd.name

        csv_btn.click(lambda: export("csv"), None, export_file)
        jsonl_btn.click(lambda: export("jsonl"), None, export_file)

        lab_inputs = [blur, dark, occl, inoise, fdrop, cam_off, snr_on, snr, mute, clip, wdrop, wrep, no_tx]

        def on_lab(b, d, o, n, fd, co, son, sn, mu, cl, wd, wr, nt):
            ctl.lab.set(LabSettings(blur=b, dark=d, occlude=o, image_noise=n, frame_drop=fd, camera_off=co,
                                    noise_snr_db=float(sn) if son else None, mute=mu, clipping=cl, word_drop=wd,
                                    word_replace=wr, no_transcript=nt))

        for c in lab_inputs:
            c.change(on_lab, lab_inputs, None, show_progress="hidden", queue=False)

        def on_reset():
            ctl.lab.reset()
            return [0, 0, 0, 0, 0, False, False, 10, False, 0, 0, 0, False]

        reset_btn.click(on_reset, None, lab_inputs)
    return demo


def launch(ctl: DashboardController, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           auth: tuple[str, str] | None = None, browser_capture: bool = True, block: bool = True):
    """Build and serve the dashboard; returns the Gradio app (``block=False`` for tests)."""
    demo = build_ui(ctl, browser_capture)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=host, server_port=port, share=share, auth=auth, max_file_size=MAX_UPLOAD_BYTES,
                prevent_thread_lock=not block, css=render.CSS, allowed_paths=[str(ctl.upload_dir)],
                show_error=True, quiet=not block)
    return demo
