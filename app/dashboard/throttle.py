"""Login throttling: after ``free`` failed logins from one client address, each further attempt waits
``base_s * 2 ** (failures - free)`` seconds (capped) before it is even checked, so guessing a password over the
network becomes impractically slow. A success resets that client's count.

An ASGI middleware (passed to Gradio's FastAPI app at launch): it only looks at ``POST /login``.
"""
from __future__ import annotations

import asyncio
import threading
import time


class LoginThrottle:
    def __init__(self, app, free: int = 5, base_s: float = 1.0, max_s: float = 60.0, forget_s: float = 3600.0):
        self.app = app
        self.free, self.base_s, self.max_s, self.forget_s = free, base_s, max_s, forget_s
        self._fails: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def delay_for(self, client: str) -> float:
        with self._lock:
            n, last = self._fails.get(client, (0, 0.0))
            if time.monotonic() - last > self.forget_s:
                return 0.0
        return 0.0 if n < self.free else min(self.max_s, self.base_s * 2 ** (n - self.free))

    def record(self, client: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._fails.pop(client, None)
            else:
                n, _ = self._fails.get(client, (0, 0.0))
                self._fails[client] = (n + 1, time.monotonic())

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("method") != "POST" or \
                scope.get("path", "").rstrip("/") not in ("/login", "/gradio_api/login"):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.delay_for(client)
        if wait:
            await asyncio.sleep(wait)
        status: dict[str, int] = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        code = status.get("code", 500)
        if code in (200, 400, 401):
            self.record(client, code == 200)
