"""``python -m umq.evaluate face|audio|text`` on tiny subsets of ../shared/data in its own layout."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from umq.training.data import default_data_root

ROOT = Path(__file__).resolve().parents[1]
DATA = default_data_root()
pytestmark = [pytest.mark.data, pytest.mark.skipif(DATA is None, reason="../shared/data not found (set UMQ_DATA)")]
KEYS = {"n", "accuracy", "macro_f1", "weighted_f1", "per_class_recall", "confusion", "skipped"}


def _evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "umq.evaluate", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def _check(out: Path, n: int, skipped: int) -> dict:
    rep = json.loads(out.read_text())
    assert set(rep) >= KEYS, rep.keys()
    assert rep["n"] == n and rep["skipped"] == skipped
    assert 0.0 <= rep["accuracy"] <= 1.0 and np.array(rep["confusion"]).sum() == n
    return rep


@pytest.mark.slow  # model loads or trains: seconds to minutes on 2 cores
def test_face_on_a_public_test_subset(tmp_path):
    d = np.load(DATA / "fer2013" / "public_test.npz")
    np.savez(tmp_path / "tiny.npz", images=d["images"][::120], labels=d["labels"][::120], classes=d["classes"])
    r = _evaluate("face", "--data", str(tmp_path / "tiny.npz"), "--out", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    assert "accuracy=" in r.stdout and "confusion" in r.stdout
    rep = _check(tmp_path / "m.json", 30, 0)
    assert rep["accuracy"] > 0.3  # far above chance (0.14) for the shipped encoder


@pytest.mark.slow  # model loads or trains: seconds to minutes on 2 cores
def test_audio_folder_skips_and_counts_unknown_emotions(tmp_path):
    rows = list(csv.DictReader(open(DATA / "ravdess" / "labels.csv")))
    pick = [r for r in rows if r["actor"] == "20"][::6][:8]
    (tmp_path / "clips").mkdir()
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["clip_id", "emotion", "audio"])
        w.writeheader()
        for r in pick:
            shutil.copy(DATA / "ravdess" / r["audio"], tmp_path / "clips" / Path(r["audio"]).name)
            w.writerow({"clip_id": r["clip_id"], "emotion": r["emotion"], "audio": f"clips/{Path(r['audio']).name}"})
        w.writerow({"clip_id": "x", "emotion": "boredom", "audio": f"clips/{Path(pick[0]['audio']).name}"})
    r = _evaluate("audio", "--data", str(tmp_path), "--out", str(tmp_path / "m.json"), "--quiet")
    assert r.returncode == 0, r.stderr
    _check(tmp_path / "m.json", 8, 1)


@pytest.mark.slow  # model loads or trains: seconds to minutes on 2 cores
def test_text_on_meld_rows(tmp_path):
    src = DATA / "text" / "meld_dev_sent_emo.csv"
    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [next(reader) for _ in range(20)]
    rows[0] = {**rows[0], "Emotion": "contempt"}  # outside the label set: skipped and counted
    with open(tmp_path / "meld.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = _evaluate("text", "--data", str(tmp_path / "meld.csv"), "--out", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    _check(tmp_path / "m.json", 19, 1)


@pytest.mark.slow  # model loads or trains: seconds to minutes on 2 cores
def test_missing_data_is_a_clear_error(tmp_path):
    r = _evaluate("face", "--data", str(tmp_path / "nope.npz"))
    assert r.returncode == 2 and "nope.npz" in r.stderr
