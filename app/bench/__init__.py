"""``python -m app bench``: measured latency, throughput and memory of the runtime, with the targets beside them.

What is measured (``docs/performance.md`` explains each number):

* **live**: a synthetic capture (640x480 at 30 fps, 16 kHz audio, scripted transcript) on the session clock
  through the engine with latest-wins mailboxes, for ``live_s`` seconds: capture->window, each perception
  front-end (face, voice, text), the UMQ forward, the two stage threads and end to end (capture timestamp of the
  window's end -> result) as p50/p95/p99; windows dropped by latest-wins; audio continuity (dropped samples).
* **replay**: real-time factor (session seconds / wall seconds) at maximum speed (``block`` policy: every
  window analysed) on the bundled demo session and on a generated session (640x480 at 30 fps, 16 kHz audio,
  transcript; written once and cached under ``~/.cache/umq/bench``).
* **umq_throughput**: the UMQ forward alone on random standardised inputs, per batch size, under
  ``torch.inference_mode()``.
* **memory**: peak RSS of the process, and RSS growth over a long replay (the generated session replayed back
  to back until ``soak_minutes`` of session time have passed), as a slope in MB per hour of session time.
* **naive**: the reference pipeline: synchronous, one window at a time, every frame of the window analysed
  afresh (Haar detection on every frame, one face-net call per frame, no frame cache, no text cache), and its
  ratio to the engine.

Targets are printed beside the measurements with met / NOT met; nothing here asserts them.
"""
from .cli import add_parser, config_from_args, main
from .config import CACHE_DIR, DEMO_SESSION, TARGETS, BenchConfig
from .report import _json_safe, format_table, run_bench
from .session import generated_session

__all__ = ["BenchConfig", "CACHE_DIR", "DEMO_SESSION", "TARGETS", "add_parser", "config_from_args", "format_table",
           "generated_session", "main", "run_bench", "_json_safe"]
