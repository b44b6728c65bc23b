"""One action, "Use this browser's camera and microphone": opens both in the page (in the click's user gesture,
so the browser's permission prompt and audio start are allowed), starts live analysis on the server, and posts
frames and audio to :mod:`.browser_routes` with the token the server returns. Stop (or any other start) revokes
the token and the page releases the camera and microphone."""
from __future__ import annotations

import gradio as gr

from .controller import DashboardController

OPEN_JS = """
async (who) => {
  if (window.__umqCap) window.__umqCap.stop();
  const cap = {stopped: false, token: null, pending: [], n: 0};
  window.__umqCap = cap;
  try {
    cap.stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480},
      audio: {channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  } catch (e) { cap.error = String(e); return [who]; }
  cap.video = document.createElement('video');
  cap.video.muted = true; cap.video.playsInline = true; cap.video.srcObject = cap.stream;
  cap.video.play().catch(() => {});
  cap.ctx = new AudioContext();
  cap.ctx.resume().catch(() => {});
  const src = cap.ctx.createMediaStreamSource(cap.stream);
  const proc = cap.ctx.createScriptProcessor(4096, 1, 1);
  proc.onaudioprocess = (e) => {
    if (!cap.token) return;  // nothing is sent before the server has started live analysis
    const x = e.inputBuffer.getChannelData(0);
    cap.pending.push(new Float32Array(x)); cap.n += x.length;
  };
  src.connect(proc); proc.connect(cap.ctx.destination);  // a processor only runs when connected; it outputs silence
  cap.stop = () => {
    if (cap.stopped) return; cap.stopped = true;
    clearInterval(cap.audioTimer); clearInterval(cap.frameTimer);
    cap.stream.getTracks().forEach((t) => t.stop()); cap.ctx.close().catch(() => {});
  };
  return [who];
}
"""

SEND_JS = """
(token) => {
  const cap = window.__umqCap;
  if (!cap || cap.stopped || !token) { if (cap) cap.stop(); return; }
  cap.token = token; cap.sent = {audio: 0, frames: 0, failed: 0};
  const post = (path, body, headers) => fetch(path, {method: 'POST', body,
      headers: Object.assign({'X-UMQ-Token': token}, headers)})
    .then((r) => { if (r.status === 403) cap.stop(); else if (!r.ok) cap.sent.failed++; })
    .catch(() => { cap.sent.failed++; });
  let chain = Promise.resolve();  // audio posts one after another: ordered, never dropped in the page
  cap.audioTimer = setInterval(() => {
    if (!cap.n) return;
    const out = new Int16Array(cap.n); let o = 0;
    for (const c of cap.pending) for (let i = 0; i < c.length; i++) out[o++] = Math.max(-1, Math.min(1, c[i])) * 32767;
    cap.pending = []; cap.n = 0; cap.sent.audio += out.length / cap.ctx.sampleRate;
    chain = chain.then(() => post('umq/browser/audio', out.buffer, {'X-UMQ-Rate': String(cap.ctx.sampleRate)}));
  }, 250);
  const canvas = document.createElement('canvas');
  let inFlight = false;  // frames: latest wins, skip while one is on its way
  cap.frameTimer = setInterval(() => {
    const v = cap.video;
    if (inFlight || !v.videoWidth) return;
    const s = Math.min(1, 640 / Math.max(v.videoWidth, v.videoHeight));
    canvas.width = Math.round(v.videoWidth * s); canvas.height = Math.round(v.videoHeight * s);
    canvas.getContext('2d').drawImage(v, 0, 0, canvas.width, canvas.height);
    inFlight = true;
    canvas.toBlob((b) => {
      if (!b) { inFlight = false; return; }
      post('umq/browser/frame', b, {'Content-Type': 'image/jpeg'})
        .finally(() => { inFlight = false; cap.sent.frames++; });
    }, 'image/jpeg', 0.8);
  }, 100);
}
"""


def build_browser_capture(ctl: DashboardController, bid: gr.Textbox) -> None:
    from .ui import guarded

    with gr.Accordion("This browser's camera and microphone (for an app on a remote machine)", open=False):
        gr.Markdown("Streams this browser's webcam and microphone to the app and analyses them live. Press the "
                    "button and allow access when the browser asks; *Stop* releases both.")
        browser_btn = gr.Button("Use this browser's camera and microphone", elem_id="btn-browser")
        token = gr.Textbox(visible=False)

    def on_browser(who: str, request: gr.Request) -> str:
        ok = guarded(ctl, lambda s: ctl.start_live(browser=True, session=s) or True, request, browser_id=who)
        return ctl.browser_token if ok else ""

    browser_btn.click(on_browser, bid, token, js=OPEN_JS, api_visibility="private").then(
        None, token, None, js=SEND_JS, api_visibility="private")
