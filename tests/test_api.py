"""The Python API (umq_live): the README's example runs as written, and the API's shapes hold."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "README's Python API section has no python code block"
    return blocks[0]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_readme_example_runs():
    """The block is executed as a user would paste it, from the project folder (the 45 s demo session)."""
    code = readme_example()
    assert "umq_live.analyze(" in code and "umq_live.iter_results(" in code
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", **_keep()})
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert any("video_state" in line for line in lines)  # the table's head was printed
    # live results streamed (latest wins: a loaded machine drops windows, so at least one, not all 5)
    assert sum(" s " in line and "{'video'" in line for line in lines) >= 1


def _keep() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "PYTHONPATH", "LANG", "UMQ_DATA")}


@pytest.mark.slow  # > 5 s on 2 cores (fast tier: pytest -m 'not slow')
def test_iter_results_streams_typed_results_from_a_file_and_stops_when_closed(tmp_path, torch_one_thread):
    import umq_live
    from streams.files import write_test_video
    from umq.result import Result

    video = write_test_video(tmp_path / "v.mp4", seconds=4.0)
    analyzer = umq_live.load_analyzer(device="cpu")
    try:
        results = list(umq_live.iter_results(video, analyzer=analyzer))
        assert [r.index for r in results] == list(range(len(results))) and len(results) == 5
        assert all(isinstance(r, Result) for r in results)
        it = umq_live.iter_results(video, analyzer=analyzer, maxsize=1)
        first = next(it)
        it.close()  # the engine stops; nothing hangs on the full queue
        assert first.index == 0
        df = umq_live.analyze(video, analyzer=analyzer)
        assert list(df.columns) == umq_live.columns() and len(df) == len(results)
        assert df["label"].tolist() == [r.label for r in results]
        (tmp_path / "bad.mp4").write_bytes(b"\0" * 100)
        with pytest.raises(ValueError, match="bad.mp4"):
            umq_live.analyze(tmp_path / "bad.mp4", analyzer=analyzer)
    finally:
        analyzer.close()
