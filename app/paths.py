"""Where the app's bundled material lives (one definition for the CLI, the dashboard, the benchmark and the
demo builder)."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_SESSION = REPO_ROOT / "assets" / "demo_session"
