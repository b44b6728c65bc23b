"""``python -m app.bench ...``: the same as ``python -m app bench ...``."""
from __future__ import annotations

import argparse
import logging
import sys

from .cli import add_parser, main

if __name__ == "__main__":  # python -m app.bench ... (the same as python -m app bench ...)
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m app.bench")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    ns = parser.parse_args(["bench", *sys.argv[1:]])
    sys.exit(main(ns))
