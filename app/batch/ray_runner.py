"""Running the same per-input task on a Ray cluster (``python -m app analyze ... --ray [ADDRESS]``).

A pool of actors, each holding one warm :class:`~umq.runtime.analyzer.Analyzer` (models load once per actor),
takes inputs one at a time. Inputs are read by the actors at the path the driver gives, so on a multi-machine
cluster they must sit on storage every node mounts at the same path; the outputs travel back to the driver as
text and are written into the driver's output folder, so ``--out`` needs no shared storage.
``docs/scale.md`` says how to point this at a real cluster.

Without an address a local Ray instance is started. A given address is checked with a plain TCP connection first
(``--ray-timeout`` seconds), then joined from a child process killed when late, so an unreachable head or a port
that is not Ray's fails with a clear message instead of hanging in ``ray.init``.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from .inputs import BatchInput
from .local import OnOutcome, Progress
from .task import Outcome, TaskOptions

log = logging.getLogger(__name__)

PROBE_FACTOR = 3  # joining takes longer than a TCP connect: the probe imports Ray and talks to the head
INSTALL_HINT = "Ray is not installed: pip install 'ray[default]' (or run without --ray)"


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached: said before any work starts."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how to run on Ray.

    Attributes:
        address: ``None`` to start a local instance; ``auto``, ``HOST:PORT`` (the head's GCS port, 6379 by default)
            or ``ray://HOST:10001`` (Ray Client) for an existing cluster.
        workers: actors (each loads its own models); default: one per CPU Ray reports, at most one per input.
        cpus_per_worker, gpus_per_worker: resources each actor reserves (a fractional GPU lets several actors
            share one device).
        timeout_s: how long to wait for the head's port to answer; joining the cluster (from a child process that
            is killed when late) may take ``PROBE_FACTOR`` times as long.
        num_cpus: CPUs of a *local* instance (``None``: all of this machine's).
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    timeout_s: float = 10.0
    num_cpus: int | None = None


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(INSTALL_HINT) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    if address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep:
        return rest, 6379
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise RayUnavailable(f"--ray address {address!r} is not HOST:PORT or ray://HOST:PORT") from None


def check_reachable(address: str, timeout_s: float) -> None:
    """A TCP connection to the head within ``timeout_s``, or :class:`RayUnavailable` naming the address."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            pass
    except OSError as exc:
        raise RayUnavailable(f"Ray head {address} is not reachable ({exc.strerror or exc}) within {timeout_s:g} s: "
                             f"check the address (the head prints it on `ray start --head`) and that its port is "
                             f"open from this machine") from None


_PROBE = ("import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR'); "
          "print(ray.cluster_resources().get('CPU', 0)); ray.shutdown()")


def probe(address: str, timeout_s: float) -> None:
    """Join the cluster from a child process that is killed after ``timeout_s``: ``ray.init`` against a port that
    accepts connections but is not a Ray head retries for minutes, and must not hang this process."""
    import subprocess
    import sys

    try:
        r = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                           timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RayUnavailable(f"Ray at {address} did not answer within {timeout_s:g} s: the port is open, but is it "
                             f"the head's GCS port (`ray status` on the head prints the address)? Raise "
                             f"--ray-timeout for a slow network") from None
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise RayUnavailable(f"could not join Ray at {address}: {last}")


def connect(opts: RayOptions):
    """``ray.init`` for ``opts`` (a no-op when this process is already connected); returns the module."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if opts.address:
        check_reachable(opts.address, opts.timeout_s)
        probe(opts.address, PROBE_FACTOR * opts.timeout_s)
    kwargs: dict = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False}
    if opts.address:
        kwargs = {"address": opts.address, "ignore_reinit_error": True, "log_to_driver": False}
    else:
        kwargs["num_cpus"] = opts.num_cpus
    env = {"OMP_NUM_THREADS": str(max(1, int(opts.cpus_per_worker)))}
    if not opts.address:  # local workers import this project from where the driver does (a cluster installs it)
        from app.paths import REPO_ROOT

        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    kwargs["runtime_env"] = {"env_vars": env}
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, TimeoutError... say it plainly
        raise RayUnavailable(f"could not start or join Ray{' at ' + opts.address if opts.address else ''}: "
                             f"{exc}") from None
    return ray


class _Worker:
    """A Ray actor: one warm analyzer, one input per call."""

    def __init__(self, options: TaskOptions, threads: int) -> None:
        import torch

        from .task import make_analyzer

        torch.set_num_threads(max(1, threads))
        self.options = options
        self.analyzer = make_analyzer(options)

    def analyze(self, item: BatchInput) -> Outcome:
        from .task import analyze_input

        return analyze_input(item, self.analyzer, self.options)

    def ready(self) -> str:
        return f"{os.uname().nodename}:{os.getpid()}"


def run_on_ray(items: list[BatchInput], options: TaskOptions, ray_opts: RayOptions, progress: Progress,
               on_outcome: OnOutcome) -> dict:
    """Analyse ``items`` on an actor pool; returns ``{"workers", "nodes"}`` for the report."""
    ray = connect(ray_opts)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    n = ray_opts.workers or max(1, int(cpus // max(ray_opts.cpus_per_worker, 1e-3)))
    n = max(1, min(n, len(items)))
    actor_cls = ray.remote(num_cpus=ray_opts.cpus_per_worker, num_gpus=ray_opts.gpus_per_worker)(_Worker)
    actors = [actor_cls.remote(options, int(ray_opts.cpus_per_worker)) for _ in range(n)]
    try:
        where = ray.get([a.ready.remote() for a in actors])
        log.info("ray: %d workers on %s", n, ", ".join(sorted({w.split(":")[0] for w in where})))
        free = list(actors)
        queue = list(items)
        running: dict = {}
        while queue or running:
            while free and queue:
                a, item = free.pop(), queue.pop(0)
                running[a.analyze.remote(item)] = (a, item)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                a, item = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - an actor that died: record, replace it, go on
                    outcome = Outcome(item, error=f"Ray worker failed: {exc}")
                    a = actor_cls.remote(options, int(ray_opts.cpus_per_worker))
                progress.add_total(outcome.summary.get("windows"))
                progress.window(outcome.summary.get("windows", 0))
                on_outcome(outcome)
                free.append(a)
        return {"workers": n, "nodes": sorted({w.split(":")[0] for w in where})}
    finally:
        for a in actors:
            ray.kill(a)
