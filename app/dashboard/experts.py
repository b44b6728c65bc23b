"""Names for the mixture-of-experts routing bars, from what each expert is measured to specialise in.

An expert is named by the input-quality pattern (which modalities are usable in the window) on which it gets
the most weight relative to its overall mean, measured by replaying the bundled demo through the app:

    python -m app replay assets/demo_session --headless --out demo.jsonl
    python -m app.dashboard.experts demo.jsonl        # writes app/dashboard/experts.json

The file holds the names and the numbers behind them (shown as the bars' tooltips). Without it the bars are
called "expert N".
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from umq.result import Result

NAMES_FILE = Path(__file__).with_name("experts.json")
SHORT = {"video": "face", "audio": "voice", "text": "text"}


def pattern(result: Result) -> str:
    """"face+voice+text", "voice+text", ... (the usable modalities), or "nothing usable"."""
    used = [SHORT[m] for m in ("video", "audio", "text") if m in result.modalities and result.modalities[m].usable]
    return "+".join(used) or "nothing usable"


def measure(results: list[Result]) -> dict:
    """Mean routing per expert per quality pattern; each expert's name is the pattern of its largest lift."""
    by_pattern: dict[str, list[list[float]]] = defaultdict(list)
    for r in results:
        if r.routing:
            by_pattern[pattern(r)].append(r.routing)
    if not by_pattern:
        raise ValueError("no results with routing weights to measure")
    n = len(next(iter(by_pattern.values()))[0])
    every = [w for ws in by_pattern.values() for w in ws]
    overall = [sum(w[i] for w in every) / len(every) for i in range(n)]
    means = {p: [sum(w[i] for w in ws) / len(ws) for i in range(n)] for p, ws in by_pattern.items() if len(ws) >= 8}
    names = []
    for i in range(n):
        best = max(means, key=lambda p: means[p][i] / max(overall[i], 1e-6))
        names.append(f"E{i + 1} {best}: mean weight {means[best][i]:.2f} on {best} windows "
                     f"({overall[i]:.2f} over all {len(every)} demo windows)")
    return {"names": names, "overall": overall, "by_pattern": means,
            "windows": {p: len(ws) for p, ws in by_pattern.items()}}


@lru_cache(maxsize=4)
def expert_names(n: int) -> list[str]:
    """Names for ``n`` experts: the measured ones when :data:`NAMES_FILE` matches ``n``, else "expert N"."""
    try:
        names = json.loads(NAMES_FILE.read_text(encoding="utf-8"))["names"]
        if len(names) == n:
            return list(names)
    except (OSError, ValueError, KeyError):
        pass
    return [f"E{i + 1}: expert {i + 1} (not yet measured: see app/dashboard/experts.py)" for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m app.dashboard.experts RESULTS.jsonl", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        results = [Result.from_json(json.loads(line)) for line in f if line.strip()]
    out = measure(results)
    NAMES_FILE.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    for name in out["names"]:
        print(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
