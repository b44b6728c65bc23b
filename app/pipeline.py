"""Stage threads joined by one-slot mailboxes: the engine's backpressure, in one place.

Each stage (perception, model, ...) runs in its own thread and hands its output to the next through a
:class:`Mailbox` of capacity one. Two policies, chosen per run (as fastrtc lets a caller choose):

- ``latest`` (live): ``put`` replaces an item nobody has taken yet and counts it as dropped, so a stage slower
  than the hop never grows a backlog; the consumer always works on the newest window.
- ``block`` (replay at maximum speed): ``put`` waits until the slot is free, so every window is analysed; the
  producer is a file that can wait.

What a ``latest`` replacement must not lose can be handed on: a mailbox with ``merge`` puts
``merge(replaced, newer)`` in the slot instead of ``newer`` (the engine carries a skipped window's transcript lines
into the next window this way: :func:`streams.windows.carry_dropped`).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")

POLICIES = ("latest", "block")


class Mailbox(Generic[T]):
    """A bounded (one item) hand-off between two threads.

    ``merge(replaced, newer)``: called (under the mailbox's lock: keep it short) when ``put`` replaces an item
    nobody took; what it returns goes in the slot. Without it the newer item simply wins.
    """

    def __init__(self, policy: str = "latest", merge: Callable[[T, T], T] | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.policy = policy
        self.merge = merge
        self._item: T | None = None
        self._full = False
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0
        self.passed = 0

    def put(self, item: T) -> bool:
        """Hand ``item`` over; False only if the mailbox was closed."""
        with self._cond:
            if self.policy == "block":
                while self._full and not self._closed:
                    self._cond.wait(0.1)
            if self._closed:
                return False
            if self._full:
                self.dropped += 1
                if self.merge is not None:
                    try:
                        item = self.merge(self._item, item)  # type: ignore[arg-type]
                    except Exception:  # noqa: BLE001 - a faulty merge must not stop the hand-off
                        log.exception("mailbox merge failed; the newer item wins")
            self._item, self._full = item, True
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The waiting item, or None after ``timeout`` or once closed and empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._full:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining if remaining is not None else 0.1)
            item, self._item, self._full = self._item, None, False
            self.passed += 1
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return int(self._full)


@dataclass
class LatencyStats:
    """A rolling record of one stage's latency (bounded: the last ``keep`` samples)."""

    keep: int = 2048
    samples: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2048))

    def add(self, ms: float) -> None:
        self.samples.append(ms)

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
        a = np.fromiter(self.samples, float)
        p50, p95, p99 = np.percentile(a, [50, 95, 99])
        return {"n": len(a), "p50": float(p50), "p95": float(p95), "p99": float(p99)}


@dataclass
class Envelope:
    """What travels between stages: the current value plus the timings gathered so far."""

    value: Any
    created: float  # perf_counter when the first stage received it
    latency_ms: dict[str, float] = field(default_factory=dict)


Stage = tuple[str, Callable[[Any], Any]]


class Pipeline:
    """Runs ``stages`` in order, one thread each, and calls ``on_output(value, latency_ms)`` with the last
    stage's output. A stage that raises is logged and its item skipped; the pipeline keeps running.

    ``merge_dropped(replaced, newer)``: what the first stage gets when a ``latest`` hand-off replaces an input
    it had not taken yet (see :class:`Mailbox`); the engine passes :func:`streams.windows.carry_dropped`."""

    def __init__(self, stages: Sequence[Stage], on_output: Callable[[Any, dict[str, float]], None],
                 policy: str = "latest", on_error: Callable[[str, Exception, int], None] | None = None,
                 merge_dropped: Callable[[Any, Any], Any] | None = None) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.stages = list(stages)
        self.on_output = on_output
        self.policy = policy
        self.inboxes: list[Mailbox[Envelope]] = [Mailbox(policy) for _ in self.stages]
        if merge_dropped is not None:
            def merge(replaced: Envelope, newer: Envelope) -> Envelope:
                newer.value = merge_dropped(replaced.value, newer.value)
                return newer

            self.inboxes[0].merge = merge
        self.latency = {name: LatencyStats() for name, _ in self.stages}
        self.errors: dict[str, int] = {name: 0 for name, _ in self.stages}
        self.last_error: str = ""
        self.on_error = on_error
        """``on_error(stage, exc, in_a_row)``: told of every failed item with the stage's current run of failures
        (the engine turns a stage that cannot work at all into a run failure)."""
        self.succeeded: dict[str, int] = {name: 0 for name, _ in self.stages}
        self._in_a_row: dict[str, int] = {name: 0 for name, _ in self.stages}
        self._submitted = 0
        self._finished = 0  # left the pipeline as output, error or declined (dropped ones are counted by mailboxes)
        self._count_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def start(self) -> None:
        self._stopping.clear()
        for i, (name, _) in enumerate(self.stages):
            t = threading.Thread(target=self._loop, args=(i,), name=f"stage:{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, value: Any) -> bool:
        """Feed the first stage (latest-wins or blocking, by policy)."""
        with self._count_lock:
            self._submitted += 1
        return self.inboxes[0].put(Envelope(value, time.perf_counter()))

    @property
    def pending(self) -> int:
        """Items submitted that have not yet left the pipeline (as output, error, decline or drop)."""
        with self._count_lock:
            return self._submitted - self._finished - sum(b.dropped for b in self.inboxes)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for box in self.inboxes:
            box.close()
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                log.warning("stage thread %s did not stop within %.0f s", t.name, timeout)
        self._threads.clear()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted item has left the pipeline (used at the end of a replay)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending <= 0:
                return True
            time.sleep(0.005)
        return False

    def waiting(self) -> dict[str, int]:
        """Items sitting in each stage's mailbox right now (at most 1 with one-slot mailboxes)."""
        return {name: len(box) for (name, _), box in zip(self.stages, self.inboxes)}

    def dropped(self) -> dict[str, int]:
        """Items overwritten before the named stage took them."""
        return {name: box.dropped for (name, _), box in zip(self.stages, self.inboxes)}

    def _loop(self, i: int) -> None:
        name, fn = self.stages[i]
        inbox = self.inboxes[i]
        while not self._stopping.is_set():
            env = inbox.get(timeout=0.1)
            if env is None:
                continue
            t = time.perf_counter()
            try:
                env.value = fn(env.value)
            except Exception as exc:  # noqa: BLE001 - one bad window must not stop the analysis
                self.errors[name] += 1
                self._in_a_row[name] += 1
                self.last_error = f"{name}: {' '.join(str(exc).split()) or type(exc).__name__}"
                if self.errors[name] == 1:  # the traceback once per stage; then one line per window
                    log.exception("stage %s failed; skipping this window", name)
                else:
                    log.warning("stage %s failed again (%d so far); skipping this window: %s", name,
                                self.errors[name], self.last_error)
                if self.on_error is not None:
                    try:
                        self.on_error(name, exc, self._in_a_row[name])
                    except Exception:  # noqa: BLE001
                        log.exception("stage error callback failed")
                self._finish()
                continue
            self._in_a_row[name] = 0
            self.succeeded[name] += 1
            ms = (time.perf_counter() - t) * 1000.0
            env.latency_ms[name] = ms
            self.latency[name].add(ms)
            if env.value is None:  # a stage may decline an item
                self._finish()
            elif i + 1 < len(self.stages):
                self.inboxes[i + 1].put(env)
            else:
                try:
                    self.on_output(env.value, dict(env.latency_ms))
                except Exception:  # noqa: BLE001
                    log.exception("result consumer failed")
                finally:
                    self._finish()

    def _finish(self) -> None:
        with self._count_lock:
            self._finished += 1
