"""Where the repository's files are, in one place: every module that needs a shipped asset or the repository
root asks here, so that moving a module never silently changes which file it reads."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS = REPO_ROOT / "assets"
PERCEPTION_SRC = REPO_ROOT / "umq" / "perception"
