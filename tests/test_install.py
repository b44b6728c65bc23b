"""``pip install .`` installs the packages, the bundled assets and the ``umq-live`` console command."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "requirements.txt", "app", "umq", "streams", "umq_live", "assets")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pip_install_gives_a_working_console_command(tmp_path):
    src = tmp_path / "src"  # a copy: building in place would leave build/ and egg-info in the checkout
    src.mkdir()
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-compile",
                    "--quiet", "--target", str(target), str(src)], check=True, timeout=600)
    for pkg in ("app", "umq", "streams", "umq_live", "assets/runtime", "assets/demo_session"):
        assert (target / pkg).is_dir(), f"{pkg} was not installed"
    assert (target / "assets" / "runtime" / "umq.pt").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    outside = tmp_path / "elsewhere"  # not the checkout: only the installed copy can be imported
    outside.mkdir()
    helps = {}
    for args in (["--help"], ["analyze", "--help"]):
        r = subprocess.run([str(target / "bin" / "umq-live"), *args], cwd=outside, env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("usage: umq-live")
        helps[args[0]] = r.stdout
    assert "{live,replay,record,devices,bench,analyze}" in helps["--help"]
    assert "--workers N" in helps["analyze"] and "--ray" in helps["analyze"]
    probe = ("import umq_live, app.paths as p, umq.runtime.analyzer as a; "
             "print(a.__file__); assert (a.ASSETS / 'umq.pt').is_file() and p.DEMO_SESSION.is_dir()")
    r = subprocess.run([sys.executable, "-c", probe],
                       cwd=outside, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(target))
