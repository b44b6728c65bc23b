"""Scale-out of ``python -m app analyze``: worker processes and a Ray actor pool write the same outputs as one
process; Ray absent or unreachable is a clear usage error without a hang."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.batch import TaskOptions, discover, run_batch
from app.batch.ray_runner import INSTALL_HINT, RayOptions, RayUnavailable, check_reachable
from app.cli import main as cli_main
from app.table import read_table


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from streams.files import write_test_video

    root = tmp_path_factory.mktemp("scale-in")
    write_test_video(root / "x.mp4", seconds=3.0)
    write_test_video(root / "y.mp4", seconds=3.0, audio="speechlike")
    return discover([root]).inputs


def test_ray_not_installed_says_how_to_install(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when the package is absent
    assert cli_main(["analyze", str(inputs[0].path), "--out", str(tmp_path / "o"), "--ray"]) == 2
    assert INSTALL_HINT in capsys.readouterr().err
    assert not list((tmp_path / "o").glob("*.csv"))


def test_an_unreachable_ray_head_fails_fast_with_the_address(inputs, tmp_path, capsys):
    t = time.monotonic()
    code = cli_main(["analyze", str(inputs[0].path), "--out", str(tmp_path / "o"), "--ray", "127.0.0.1:9",
                     "--ray-timeout", "2"])
    assert code == 2 and time.monotonic() - t < 15
    assert "Ray head 127.0.0.1:9 is not reachable" in capsys.readouterr().err
    with pytest.raises(RayUnavailable, match="not HOST:PORT"):
        check_reachable("ray://head:port", 1.0)


def _tables(out: Path, items) -> dict:
    return {i.name: read_table(out / f"{i.name}.csv") for i in items}


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        assert x["window"].tolist() == y["window"].tolist()
        assert x["video_state"].tolist() == y["video_state"].tolist()
        assert x["audio_state"].tolist() == y["audio_state"].tolist()
        np.testing.assert_allclose(x["p_happy"], y["p_happy"], atol=2e-3)


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory, torch_one_thread):
    out = tmp_path_factory.mktemp("scale-ref")
    run_batch(inputs, out, TaskOptions(device="cpu"), progress=False)
    return _tables(out, inputs)


@pytest.mark.slow
@pytest.mark.timeout(900)  # three model loads (reference, two workers): minutes on a loaded 2-core runner
def test_two_worker_processes_write_what_one_process_writes(inputs, reference, tmp_path):
    report = run_batch(inputs, tmp_path, TaskOptions(device="cpu"), workers=2, progress=False)
    assert (report["analysed"], report["failed"]) == (2, 0)
    _same(_tables(tmp_path, inputs), reference)


@pytest.mark.slow
@pytest.mark.timeout(900)  # starting Ray and two actors that load the models
def test_ray_on_a_local_two_cpu_instance_writes_what_one_process_writes(inputs, reference, tmp_path):
    import ray
    try:
        report = run_batch(inputs, tmp_path, TaskOptions(device="cpu"), ray=RayOptions(num_cpus=2, workers=2),
                           progress=False)
    finally:
        ray.shutdown()
    assert (report["analysed"], report["failed"]) == (2, 0)
    _same(_tables(tmp_path, inputs), reference)


@pytest.mark.slow  # > 5 s on 2 cores (fast tier: pytest -m 'not slow')
def test_a_port_that_is_not_a_ray_head_fails_within_the_timeout(inputs, tmp_path, capsys):
    """``ray.init`` retries such a port for minutes; the join happens in a child process that is killed."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: held.extend(server.accept() for _ in range(8)), daemon=True).start()
    port = server.getsockname()[1]
    t = time.monotonic()
    try:
        code = cli_main(["analyze", str(inputs[0].path), "--out", str(tmp_path / "o"), "--ray", f"127.0.0.1:{port}",
                         "--ray-timeout", "5"])
    finally:
        server.close()
    assert code == 2 and time.monotonic() - t < 60
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and ("did not answer within 15 s" in err or "could not join Ray" in err)
