"""The Quality lab tab: corrupt the inputs before perception and compare UMQ with the quality-unaware MoE; the
windows where they disagree are highlighted. Changing a setting needs control (no silent undo by another
session): a refused change is put back to the settings in force."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from umq.runtime import LabSettings

from . import render
from .controller import DashboardController, DashboardState
from .plots import timeline_svg


def settings_values(s: LabSettings) -> list:
    """A LabSettings as the 13 widget values, in the order of the widgets."""
    return [s.blur, s.dark, s.occlude, s.image_noise, s.frame_drop, s.camera_off, s.noise_snr_db is not None,
            10 if s.noise_snr_db is None else s.noise_snr_db, s.mute, s.clipping, s.word_drop, s.word_replace,
            s.no_transcript]


def settings_from(b, d, o, n, fd, co, son, sn, mu, cl, wd, wr, nt) -> LabSettings:
    return LabSettings(blur=b, dark=d, occlude=o, image_noise=n, frame_drop=fd, camera_off=co,
                       noise_snr_db=float(sn) if son else None, mute=mu, clipping=cl, word_drop=wd,
                       word_replace=wr, no_transcript=nt)


@dataclass
class TabView:
    outputs: list
    render: Callable[..., dict]


def build_lab(ctl: DashboardController, bid: gr.Textbox) -> TabView:
    from .ui import guarded

    gr.Markdown("Degrade the inputs before perception and compare UMQ with the quality-unaware mixture of experts. "
                "Works on whatever is playing (live or replay). Windows where the two disagree are marked red on "
                "the timeline.")
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
                lab_umq = gr.HTML(elem_id="lab-umq")
                lab_base = gr.HTML(elem_id="lab-baseline")
    lab_gauges = gr.HTML(elem_id="lab-gauges")
    lab_q_plot = gr.HTML(elem_id="lab-timeline")
    inputs = [blur, dark, occl, inoise, fdrop, cam_off, snr_on, snr, mute, clip, wdrop, wrep, no_tx]

    def on_lab(who, b, d, o, n, fd, co, son, sn, mu, cl, wd, wr, nt, request: gr.Request):
        values = (b, d, o, n, fd, co, son, sn, mu, cl, wd, wr, nt)
        ok = guarded(ctl, lambda s: ctl.set_lab(settings_from(*values), session=s) or True, request,
                     browser_id=who)
        return [gr.update()] * len(inputs) if ok else settings_values(ctl.lab.settings)

    for c in inputs:
        c.change(on_lab, [bid, *inputs], inputs, show_progress="hidden", api_visibility="private")

    def on_reset(who, request: gr.Request):
        guarded(ctl, lambda s: ctl.reset_lab(session=s), request, browser_id=who)
        return settings_values(ctl.lab.settings)

    reset_btn.click(on_reset, bid, inputs, api_visibility="private")

    def draw(s: DashboardState) -> dict:
        r = s.result
        frame = render.overlay(ctl.lab_view(), r) if s.frame is not None else render.overlay(None, r)
        base = None
        if r is not None and r.baseline is not None:
            import dataclasses

            base = dataclasses.replace(r, probs=r.baseline.probs, label=r.baseline.label,
                                       confidence=r.baseline.confidence, no_evidence=False)
        return {lab_preview: frame, compare: render.compare_html(r),
                lab_umq: render.probs_html(r, s.stale, "UMQ"),
                lab_base: render.probs_html(base, s.stale, "Quality-unaware MoE"),
                lab_gauges: render.gauges_html(r, s.stale),
                lab_q_plot: timeline_svg(s.history, "quality", disagreements=True,
                                                   title="Quality, last 60 s (red: UMQ and the MoE disagree)")}

    return TabView([lab_preview, compare, lab_umq, lab_base, lab_gauges, lab_q_plot], draw)
