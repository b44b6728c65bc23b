"""The Replay tab: open a session folder or upload a video with its transcript, timelines of the whole session
that grow while it plays (scripted stretches shaded, a cursor at the current or scrubbed time), the frame at
that time beside the window centred on it, and exports."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from umq.labels import EMOTIONS

from . import render
from .controller import DashboardController, DashboardState
from .plots import timeline_svg
from .uploads import TRANSCRIPT_SUFFIXES, VIDEO_SUFFIXES


@dataclass
class ReplayView:
    outputs: list
    render: Callable[..., dict]
    follow: gr.Checkbox
    scrub: gr.Slider
    classes: gr.CheckboxGroup


def upload_and_play(ctl: DashboardController, session: str | None, files, speed: float | None) -> str:
    """Accept one video and at most one .srt/.vtt from an upload and replay them (refusals raise ValueError;
    refused files are deleted)."""
    paths = [Path(getattr(f, "name", f)) for f in (files if isinstance(files, list) else [files]) if f]
    videos = [p for p in paths if p.suffix.lower() not in TRANSCRIPT_SUFFIXES]
    subs = [p for p in paths if p.suffix.lower() in TRANSCRIPT_SUFFIXES]
    try:
        ctl.control.claim(session)
        if len(videos) != 1 or len(subs) > 1:
            raise ValueError(f"upload one video ({', '.join(VIDEO_SUFFIXES)}) and at most one transcript "
                             f"(.srt or .vtt); got {len(videos)} video(s) and {len(subs)} transcript(s)")
        p = ctl.accept_upload(videos[0], transcript=subs[0] if subs else None)
    finally:
        for q in paths:  # whatever was not moved into the upload folder is not kept in Gradio's cache
            if q.exists() and q.parent != ctl.upload_dir:
                q.unlink(missing_ok=True)
    return ctl.start_replay(p, speed, session=session)


def write_export(ctl: DashboardController, kind: str) -> str:
    """The session's results as CSV or JSONL in the private folder (the previous export is replaced)."""
    if kind not in ("csv", "jsonl"):
        raise ValueError(f"export kind must be csv or jsonl, got {kind!r}")
    for old in ctl.upload_dir.glob("umq-results-*"):
        old.unlink(missing_ok=True)
    h = ctl.full_history()
    with tempfile.NamedTemporaryFile("w", suffix=f".{kind}", prefix="umq-results-", delete=False,
                                     dir=ctl.upload_dir, encoding="utf-8") as fd:
        if kind == "csv":
            fd.write(render.results_csv(h))
        else:
            fd.writelines(json.dumps(r.to_json()) + "\n" for r in h)
    return fd.name


def build_replay(ctl: DashboardController, max_upload: int, bid: gr.Textbox) -> ReplayView:
    from .ui import guarded

    with gr.Row():
        path_in = gr.Textbox(label="Session folder or video file", scale=3, placeholder="assets/demo_session",
                             elem_id="replay-path")
        speed = gr.Radio(["1x", "max"], value="1x", label="Speed", scale=1)
        open_btn = gr.Button("Open and play", variant="primary", elem_id="btn-replay")
    upload = gr.File(label=f"…or upload a video (≤ {max_upload // 2**20} MiB) and optionally its transcript "
                           "(.srt/.vtt) together", file_count="multiple",
                     file_types=[*VIDEO_SUFFIXES, *TRANSCRIPT_SUFFIXES], type="filepath", elem_id="replay-upload")
    classes = gr.CheckboxGroup(list(EMOTIONS), value=[], label="Classes on the emotion timeline (none ticked: the "
                               "3 most probable)", elem_id="replay-classes")
    tl_emo = gr.HTML(elem_id="replay-emotion-timeline")
    tl_q = gr.HTML(elem_id="replay-quality-timeline")
    with gr.Row():
        follow = gr.Checkbox(value=True, label="Follow playback", scale=1, elem_id="replay-follow")
        scrub = gr.Slider(0, 60, value=0, step=0.5, label="Scrub to time (s)", scale=4, elem_id="replay-scrub")
    with gr.Row():
        scrub_img = gr.Image(label="Frame at that time", type="numpy", interactive=False, height=300)
        with gr.Column():
            scrub_head = gr.HTML(elem_id="replay-window")
            scrub_json = gr.JSON(label="The window centred on that time")
    with gr.Row():
        csv_btn = gr.Button("Export CSV")
        jsonl_btn = gr.Button("Export JSONL")
        export_file = gr.File(label="Download", interactive=False)

    def on_open(who, path, spd, request: gr.Request):
        guarded(ctl, lambda s: ctl.start_replay((path or "").strip(), None if spd == "max" else 1.0, session=s),
                request, browser_id=who)

    open_btn.click(on_open, [bid, path_in, speed], None, api_visibility="private")

    def on_upload(who, files, spd, request: gr.Request):
        guarded(ctl, lambda s: upload_and_play(ctl, s, files, None if spd == "max" else 1.0), request,
                browser_id=who)

    upload.upload(on_upload, [bid, upload, speed], upload, api_visibility="private")
    scrub.release(lambda t: False, scrub, follow, api_visibility="private")  # scrubbing stops following
    csv_btn.click(lambda: write_export(ctl, "csv"), None, export_file, api_visibility="private")
    jsonl_btn.click(lambda: write_export(ctl, "jsonl"), None, export_file, api_visibility="private")
    cache: dict = {}

    def at(t: float):
        """Frame and centred window at ``t``, recomputed only when ``t`` or the history length changed."""
        key = (round(t, 2), len(ctl.full_history()), str(ctl.source))
        if cache.get("key") != key:
            hit = ctl.window_at(t)
            cache.update(key=key, img=ctl.frame_at(t), hit=hit)
        return cache["img"], cache["hit"]

    def draw(s: DashboardState, following: bool, scrub_t: float, chosen=None) -> dict:
        h = ctl.full_history()
        end = max((r.t1 for r in h), default=0.0)
        latest = h[-1] if h else None
        t = ((latest.t0 + latest.t1) / 2 if latest else 0.0) if following else float(scrub_t or 0.0)
        img, hit = at(t) if h else (None, None)
        out = {tl_emo: timeline_svg(h, "emotion", cursor=t if h else None, stretches=s.script,
                                    classes=list(chosen or []) or None, title="Emotion over the session"),
               tl_q: timeline_svg(h, "quality", cursor=t if h else None, stretches=s.script,
                                  title="Quality over the session"),
               scrub: (gr.update(maximum=max(1.0, round(end + 0.5, 1)), value=round(t, 1)) if following
                       else gr.update(maximum=max(1.0, round(end + 0.5, 1)))),
               scrub_head: render.headline_html(hit) + (f"<div data-t='{t:.2f}'>frame at t = {t:.1f} s; window "
                                                       f"{hit.t0:.1f}–{hit.t1:.1f} s</div>" if hit else ""),
               scrub_json: hit.to_json() if hit else {}}
        out[scrub_img] = render.overlay(img, hit)
        return out

    return ReplayView([tl_emo, tl_q, scrub, scrub_head, scrub_json, scrub_img], draw, follow, scrub, classes)
