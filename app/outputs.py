"""Output files that never pretend: written under a temporary name and renamed only when the run succeeded.

Shared by the commands that write results (``replay --headless --out``, ``analyze``). A run that fails keeps
what it wrote as ``NAME.partial`` (named in the error) and never replaces a previous good ``NAME``; a run that
succeeds replaces ``NAME`` atomically (a reader sees the old file or the new one, never half of one).
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


class RunFailed(RuntimeError):
    """A run that must not be reported as success; the message is the one-line reason (naming the file)."""


def partial_path(path: str | os.PathLike) -> Path:
    """Where :func:`atomic_output` writes ``path`` until the run succeeds (``r.jsonl`` -> ``r.jsonl.partial``)."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open ``path.partial`` for writing; on a normal exit fsync it and rename it to ``path``.

    When the body raises (:class:`RunFailed` for a failure the caller detected, or any error), the partial file
    is kept under its ``.partial`` name (the caller names it in its error), the exception propagates, and ``path`` (a
    previous good result, if any) is left untouched.

    Raises:
        OSError: ``path.partial`` cannot be created (the caller says "cannot write ...").
    """
    path = Path(path)
    partial = partial_path(path)
    f = open(partial, mode, encoding=None if "b" in mode else encoding)
    try:
        yield f
    except BaseException:
        f.close()
        log.info("the run failed: what it wrote is kept in %s (%s was not changed)", partial, path.name)
        raise
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(partial, path)


def one_line(exc: BaseException) -> str:
    """A message for ``error: ...``: whitespace collapsed to one line, and torch's "retry with
    weights_only=False" advice replaced by what it means (a file that may carry code was refused)."""
    text = str(exc)
    if "Weights only load failed" in text:
        from umq.checkpoint import describe_load_error

        head = text.split("Weights only load failed")[0].rstrip(" :(")
        text = f"{head}: {describe_load_error(exc)}" if head else describe_load_error(exc)
    return " ".join(text.split()) or type(exc).__name__
