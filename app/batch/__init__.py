"""Batch analysis: ``python -m app analyze PATH [PATH ...] --out DIR`` (see :mod:`app.batch.cli`).

:mod:`~app.batch.inputs` finds the inputs and names their outputs, :mod:`~app.batch.task` analyses one input
through the engine (the headless replay path), :mod:`~app.batch.outputs` writes the output folder atomically,
:mod:`~app.batch.local` and :mod:`~app.batch.ray_runner` spread inputs over processes or a Ray cluster.
"""
from .cli import add_parser, main, run_batch
from .inputs import BatchInput, discover
from .task import TaskOptions

__all__ = ["BatchInput", "TaskOptions", "add_parser", "discover", "main", "run_batch"]
