"""HTTP endpoints that receive this browser's camera frames and microphone audio (one POST per ~100 ms frame /
~250 ms of audio), outside Gradio's event queue.

Why not Gradio's streaming Image/Audio: under load its streaming microphone drops every chunk that arrives
while the previous event is still being processed (55-89 % gaps measured), and each stream needs its own start
button. Here one button starts both (see :mod:`.ui_browser`), the page posts raw 16-bit PCM and JPEG frames,
audio posts are chained (ordered, nothing dropped in the page), and a frame is skipped while the previous one
is still in flight (latest wins).

Access: each POST carries the random token handed to the session that started browser capture (which itself
needed the login, when one is configured); stopping or restarting revokes it (403, and the page stops its
camera and microphone).
"""
from __future__ import annotations

import logging

import numpy as np
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

log = logging.getLogger(__name__)

MAX_AUDIO_BYTES = 1 << 20  # ~16 s of 32 kHz int16: far more than one 250 ms post
MAX_FRAME_BYTES = 4 << 20


def browser_routes(ctl) -> list[Route]:
    async def body_or_error(request: Request, limit: int) -> bytes | PlainTextResponse:
        if not ctl.browser_token_ok(request.headers.get("x-umq-token", "")):
            return PlainTextResponse("browser capture is not running for this token", status_code=403)
        n = int(request.headers.get("content-length") or 0)
        if n > limit:
            return PlainTextResponse(f"too large ({n} bytes; limit {limit})", status_code=413)
        data = await request.body()
        if len(data) > limit:
            return PlainTextResponse(f"too large (limit {limit})", status_code=413)
        return data

    async def audio(request: Request):
        data = await body_or_error(request, MAX_AUDIO_BYTES)
        if isinstance(data, PlainTextResponse):
            return data
        try:
            rate = int(request.headers.get("x-umq-rate", "0"))
        except ValueError:
            rate = 0
        if rate < 8000 or rate > 192000 or len(data) % 2:
            return PlainTextResponse("expected 16-bit PCM and X-UMQ-Rate between 8000 and 192000", status_code=400)
        ok = ctl.push_browser_audio(rate, np.frombuffer(data, "<i2"))
        return PlainTextResponse("ok" if ok else "refused", status_code=200 if ok else 409)

    async def frame(request: Request):
        import cv2

        data = await body_or_error(request, MAX_FRAME_BYTES)
        if isinstance(data, PlainTextResponse):
            return data
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is None:
            return PlainTextResponse("not a JPEG/PNG image", status_code=400)
        ok = ctl.push_browser_frame(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return PlainTextResponse("ok" if ok else "refused", status_code=200 if ok else 409)

    return [Route("/umq/browser/audio", audio, methods=["POST"]),
            Route("/umq/browser/frame", frame, methods=["POST"])]
