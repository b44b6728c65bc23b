"""Voice front-end, quality cues, raw-audio corruptions and the shipped audio emotion encoder."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from umq.checkpoint import CheckpointError
from umq.perception.voice import corrupt as ac
from umq.perception.voice.cues import VoiceCues
from umq.perception.voice.ensemble import VoiceEnsemble, encode, predict
from umq.perception.voice.features import N_FEATURES, frame_valid, sanitize
from umq.perception.voice.frontend import VoiceFrontEnd, collate, collate_views
from umq.perception.voice.head import WhisperHeadNet
from umq.perception.voice.net import DEFAULT_WEIGHTS, FORMAT_VERSION, VoiceEmotionNet, load_voice_net, save_voice_net
from umq.perception.voice.normalize import FeatureStats, SpeakerNormalizer
from umq.training.voice.evaluate import evaluate_audio_folder

ROOT = Path(__file__).resolve().parents[1]
SR = 16_000
N = 2 * SR


def speech_like(seconds: float = 2.0, seed: int = 0, level: float = 0.2) -> np.ndarray:
    """Voiced harmonic 'syllables' (f0 ~ 140 Hz with vibrato, ~4 Hz envelope) separated by short pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 140 * (1 + 0.1 * np.sin(2 * np.pi * 1.3 * t))
    ph = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * ph + rng.uniform(0, 6)) / k for k in range(1, 30))
    env = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.7
    env[(t % 0.8) > 0.6] = 0.0  # pauses
    x = x * env
    return (level * x / np.max(np.abs(x))).astype(np.float32)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def stats() -> FeatureStats:
    return FeatureStats(np.zeros(N_FEATURES), np.ones(N_FEATURES))


@pytest.fixture(scope="module")
def fe(stats) -> VoiceFrontEnd:
    return VoiceFrontEnd(stats, device="cpu")


# ------------------------------------------------------------------------------------------- corruptions
@pytest.mark.parametrize("snr", [20.0, 5.0, 0.0, -5.0])
def test_noise_corruptions_hit_the_requested_snr(snr):
    x = speech_like(seed=1)
    talkers = [speech_like(3.0, seed=s) for s in range(2, 8)]
    for y in (ac.white_noise(x, snr, 0), ac.babble_noise(x, snr, None, 0), ac.babble_noise(x, snr, talkers, 0),
              ac.mix_at_snr(x, ac.pink_noise(N, 0), snr)):
        assert y.shape == x.shape and y.dtype == np.float32
        assert abs(ac.measured_snr_db(x, y) - snr) < 0.5
    valid = np.ones(N, bool)
    valid[:8000] = False
    y = ac.white_noise(x, snr, 0, valid=valid)
    assert abs(ac.measured_snr_db(x, y, valid) - snr) < 0.5
    assert np.array_equal(y[:8000], x[:8000])


def test_other_corruptions():
    x = speech_like(seed=3)
    assert not ac.silence(x).any()
    y = ac.clip_fraction(x, 0.1)
    assert 0.08 < np.mean(np.abs(y) >= np.abs(y).max() - 1e-7) < 0.12
    r = ac.reverberate(x, 0.6, 0)
    assert r.shape == x.shape and abs(np.std(r) / np.std(x) - 1) < 0.01 and not np.allclose(r, x)
    g = ac.gain(x, -20)
    assert np.allclose(g, x * 0.1, atol=1e-6)
    assert np.abs(ac.gain(x, 40)).max() <= 1.0
    d, v = ac.dropouts(x, 3, 0.1, 0)
    assert 0 < (~v).sum() <= 3 * 1600 and not d[~v].any()
    m = ac.mute(x, 0.5, 0.5)
    assert not m[8000:16000].any() and np.array_equal(m[:8000], x[:8000])
    for kind in ac.CORRUPTIONS:
        y, v = ac.corrupt(x, kind, 0.5, 0)
        assert y.shape == x.shape and v.shape == x.shape and np.isfinite(y).all()
    with pytest.raises(ValueError):
        ac.corrupt(x, "bogus", 0.5)


# ------------------------------------------------------------------------------------------------- cues
def test_snr_estimate_falls_monotonically_with_white_noise(fe):
    x = speech_like(seed=4)
    est = [fe(ac.white_noise(x, snr, 7)).cues.snr_db for snr in (30, 20, 10, 5, 0, -5)]
    assert all(a > b for a, b in zip(est, est[1:])), est
    assert abs(est[2] - 10) < 3 and abs(est[4] - 0) < 3, est  # roughly calibrated where it matters
    assert fe(x).cues.snr_db > 40  # clean (digital silence in the pauses)
    assert "noisy: SNR" in fe(ac.white_noise(x, 3, 7)).cues.describe()
    assert "noisy" not in fe(ac.white_noise(x, 25, 7)).cues.describe()


def test_clipping_ratio_rises_with_clipping(fe):
    x = speech_like(seed=5, level=0.5)
    ratios = [fe(ac.clip_fraction(x, f) if f else x).cues.clipping_ratio for f in (0.0, 0.02, 0.1, 0.3)]
    assert ratios[0] < 0.001
    assert all(a < b for a, b in zip(ratios, ratios[1:])), ratios
    assert abs(ratios[2] - 0.1) < 0.03
    assert "clipping" in fe(ac.clip_fraction(x, 0.12)).cues.describe()
    assert "clipping" not in fe(x).cues.describe()
    assert fe(ac.gain(x, 12)).cues.clipping_ratio > 0.01  # saturating at full scale


def test_silence_is_mic_silent_without_speech(fe):
    for quiet in (np.zeros(N, np.float32), speech_like(seed=6, level=1e-5)):
        c = fe(quiet).cues
        assert c.speech_ratio == 0.0 and c.pitch_fraction == 0.0
        assert c.level_dbfs < -60
        assert "mic silent" in c.describe()
    c = fe(speech_like(seed=6)).cues
    assert c.level_dbfs > -30 and "mic silent" not in c.describe()


def test_level_follows_gain(fe):
    x = speech_like(seed=7, level=0.3)
    a, b = fe(x).cues.level_dbfs, fe(ac.gain(x, -20)).cues.level_dbfs
    assert abs((a - b) - 20) < 0.1


def _espeak(text: str, tmp: Path) -> np.ndarray:
    import librosa
    import soundfile as sf

    wav = tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    x, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    return librosa.resample(x.mean(1), orig_sr=sr, target_sr=SR).astype(np.float32)


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng binary not installed (CI installs it: apt-get install espeak-ng)")
def test_vad_finds_speech_in_speech_only(fe, tmp_path):
    x = _espeak("Kids are talking by the door, and the dogs are sitting by the door all day long.", tmp_path)
    assert x.shape[0] > N
    w = x[:N]
    c = fe(w).cues
    assert c.speech_ratio > 0.4, c
    assert c.pitch_fraction > 0.2, c
    assert "no speech" not in c.describe()
    noise = (0.05 * np.random.default_rng(0).standard_normal(N)).astype(np.float32)
    cn = fe(noise).cues
    assert cn.speech_ratio < 0.1 and "no speech" in cn.describe(), cn
    assert cn.snr_db < 3, cn
    cs = fe(np.zeros(N, np.float32)).cues
    assert cs.speech_ratio == 0.0
    # speech in moderate noise is still speech, and reads noisier than clean speech
    cm = fe(ac.white_noise(w, 10, 1)).cues
    assert cm.speech_ratio > 0.3 and cm.snr_db < c.snr_db


def test_chunk_batched_vad_matches_silero_own_loop_on_real_speech(tmp_path):
    """The batched silero-vad path must give silero's own probabilities (it replaces 63 steps per window)."""
    from umq.perception.voice.vad import SileroVAD

    model = SileroVAD.model()
    assert SileroVAD._batched is not None  # verified at load; the per-chunk loop is only a fallback
    x = _espeak("Dogs are sitting by the door, and the kids are talking all day long.", tmp_path)[: 3 * SR + 100]
    for clip in (x, x[:700], ac.white_noise(x, 5, 2)):
        with torch.inference_mode():
            own = model.audio_forward(torch.from_numpy(np.ascontiguousarray(clip))[None], SR)[0].numpy()
        got = SileroVAD.probs(clip)
        assert got.shape == own.shape == (-(-len(clip) // 512),)
        assert np.abs(got - own).max() < 1e-5
    assert (SileroVAD.probs(x) > 0.5).mean() > 0.4  # and it is speech


def test_vad_keeps_silero_own_loop_when_the_batched_path_disagrees(monkeypatch, caplog):
    from umq.perception.voice.vad import SileroVAD

    model = SileroVAD.model()
    monkeypatch.setattr(SileroVAD, "TOLERANCE", -1.0)  # any difference at all is too much
    with caplog.at_level("WARNING"):
        assert SileroVAD._checked_batched(model) is None
    assert "using the loop" in caplog.text


def test_cues_validate_and_describe():
    ok = dict(level_dbfs=-20.0, snr_db=25.0, clipping_ratio=0.0, speech_ratio=0.8, valid_ratio=1.0,
              pitch_fraction=0.5)
    c = VoiceCues(**ok)
    assert c.describe() == "" and c.usable
    assert c.vector().shape == (len(VoiceCues.NAMES),)
    for bad in (dict(clipping_ratio=1.5), dict(speech_ratio=-0.1), dict(snr_db=float("nan")),
                dict(level_dbfs=3.0), dict(valid_ratio=float("inf"))):
        with pytest.raises(ValueError):
            VoiceCues(**{**ok, **bad})
    assert VoiceCues(**{**ok, "snr_db": 3.0}).describe() == "noisy: SNR 3 dB"
    assert VoiceCues(**{**ok, "clipping_ratio": 0.12}).describe() == "clipping 12%"
    assert VoiceCues(**{**ok, "speech_ratio": 0.0}).describe() == "no speech"
    assert VoiceCues(**{**ok, "level_dbfs": -90.0}).describe() == "mic silent"
    assert VoiceCues(**{**ok, "valid_ratio": 0.0}).describe() == "no audio received"


# ------------------------------------------------------------------------------------------- front-end
def test_front_end_shapes_partly_invalid_and_nan(fe):
    x = speech_like(seed=8)
    r = fe(x)
    assert r.features.shape == (N_FEATURES, 201) and r.features.dtype == torch.float32
    assert r.mask.shape == (201,) and r.mask.dtype == torch.bool and bool(r.mask.all())
    valid = np.ones(N, bool)
    valid[N // 2:] = False  # second second never arrived
    y = x.copy()
    y[N // 2:] = 0
    y[1000:1400] = np.nan
    y[5000] = np.inf
    y[6000] = -np.inf
    r = fe(y, valid)
    assert torch.isfinite(r.features).all()
    assert 0.45 < r.mask.float().mean().item() < 0.55
    assert not r.features[:, ~r.mask].any()  # invalid frames carry no values
    assert abs(r.cues.valid_ratio - (0.5 - 402 / N)) < 1e-6
    assert abs(r.cues.nonfinite_ratio - 402 / N) < 1e-6
    assert "NaN/inf" in r.cues.describe()
    # nothing arrived at all / everything NaN
    r = fe(np.zeros(N, np.float32), np.zeros(N, bool))
    assert torch.isfinite(r.features).all() and not r.mask.any() and r.cues.describe() == "no audio received"
    r = fe(np.full(N, np.nan, np.float32))
    assert torch.isfinite(r.features).all() and r.cues.describe() == "all samples NaN/inf"
    # a short window and values beyond full scale
    r = fe(np.full(4000, 3.0, np.float32))
    assert r.features.shape == (N_FEATURES, 26) and r.cues.clipping_ratio == 1.0
    xb, mb = collate([fe(x), fe(x[:8000])])
    assert xb.shape == (2, N_FEATURES, 201) and mb[1, 60:].sum() == 0


def test_sanitize_and_frame_valid():
    x = np.array([0.1, np.nan, 2.0, -np.inf, -0.5], np.float32)
    s, v, n = sanitize(x)
    assert n == 2 and s.tolist() == [pytest.approx(0.1), 0.0, 1.0, 0.0, -0.5]
    assert v.tolist() == [True, False, True, False, True]
    with pytest.raises(ValueError):
        sanitize(x, np.ones(3, bool))
    fv = frame_valid(np.r_[np.ones(16000, bool), np.zeros(16000, bool)])
    assert fv[:99].all() and not fv[102:].any()


def test_speaker_normalizer_adapts_and_resets(stats):
    norm = SpeakerNormalizer(stats, "cpu")
    g = torch.Generator().manual_seed(0)
    feats = 3.0 + 0.5 * torch.randn(N_FEATURES, 201, generator=g)  # a speaker far from the prior (mean 0, var 1)
    w = torch.ones(N_FEATURES, 201)
    on = torch.ones(201, dtype=torch.bool)
    first = norm(feats, on, on).mean().item()
    for _ in range(30):
        norm.update(feats, w)
    adapted = norm(feats, on, on)
    assert first > 2.5 and abs(adapted.mean().item()) < 0.2 * first and 0.75 < adapted.std().item() < 1.1
    norm.reset()
    assert abs(norm(feats, on, on).mean().item() - first) < 1e-5
    fixed = SpeakerNormalizer(stats, "cpu", enabled=False)
    fixed.update(feats, w)
    assert abs(fixed(feats, on, on).mean().item() - first) < 1e-5


def test_front_end_keeps_speaker_state_until_reset(stats):
    fe = VoiceFrontEnd(stats, device="cpu", vad=False)  # the synthetic signal is not speech to silero
    x = speech_like(seed=9)
    a = fe(x).features
    b = fe(x).features
    assert not torch.allclose(a, b)  # the normaliser learned from the first window
    fe.reset()
    assert torch.allclose(fe(x).features, a)
    off = VoiceFrontEnd(stats, device="cpu", normalize=False, vad=False)
    assert torch.allclose(off(x).features, off(x).features)


# ---------------------------------------------------------------------------------------------- encoder
def test_shipped_weights_load_and_give_finite_outputs():
    assert DEFAULT_WEIGHTS.is_file(), f"missing shipped weights {DEFAULT_WEIGHTS}"
    assert DEFAULT_WEIGHTS.stat().st_size < 4e6
    net = load_voice_net(device="cpu")
    assert isinstance(net, (VoiceEmotionNet, WhisperHeadNet, VoiceEnsemble)) and not net.training
    assert sum(p.numel() * p.element_size() for p in net.parameters()) < 4e6
    fe = VoiceFrontEnd(net, device="cpu")
    valid = np.ones(N, bool)
    valid[-5000:] = False
    feats = [fe(speech_like(seed=10)), fe(np.zeros(N, np.float32)), fe(speech_like(seed=11), valid)]
    probs, emb = predict(net, collate_views(feats))
    assert probs.shape == (3, 7) and emb.shape == (3, net.embedding_dim)
    assert torch.isfinite(probs).all() and torch.isfinite(emb).all()
    assert torch.allclose(probs.sum(-1), torch.ones(3), atol=1e-5)
    logits, e = encode(net, collate_views(feats))
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    assert net.metrics.get("eval"), "the checkpoint carries its validation metrics"


def test_loader_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_voice_net(missing)
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_voice_net(bad)
    net = VoiceEmotionNet()
    net.feature_stats = FeatureStats(np.zeros(N_FEATURES), np.ones(N_FEATURES))
    p = save_voice_net(net, tmp_path / "ok.pt")
    assert isinstance(load_voice_net(p, device="cpu"), VoiceEmotionNet)
    blob = torch.load(p, weights_only=True)
    blob["format_version"] = FORMAT_VERSION + 1
    torch.save(blob, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="future.pt.*format_version"):
        load_voice_net(tmp_path / "future.pt")
    blob["format_version"] = FORMAT_VERSION
    blob["state_dict"] = {k: v for k, v in list(blob["state_dict"].items())[2:]}
    torch.save(blob, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="partial.pt"):
        load_voice_net(tmp_path / "partial.pt")


def test_evaluate_audio_folder_counts_and_maps_labels(tmp_path):
    import soundfile as sf

    for i in range(3):
        sf.write(tmp_path / f"c{i}.wav", speech_like(2.5, seed=20 + i), SR)
    (tmp_path / "labels.csv").write_text(
        "clip_id,emotion,audio\n"
        "a,calm,c0.wav\n"  # calm -> neutral
        "b,angry,c1.wav\n"
        "c,bored,c2.wav\n"  # outside the label set: skipped
        "d,sad,missing.wav\n"  # unreadable: skipped
    )
    net = load_voice_net(device="cpu")
    for mode in ("crop", "clip"):
        r = evaluate_audio_folder(tmp_path, net, "cpu", mode=mode)
        assert r["n"] == 2 and r["skipped"] == 2 and r["unreadable"] == 1
        cm = np.asarray(r["confusion"])
        assert cm.shape == (7, 7) and cm[0].sum() == 1 and cm[3].sum() == 1 and cm.sum() == 2
        assert {k for k, v in r["per_class_recall"].items() if v is not None} == {"neutral", "angry"}
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0
    (tmp_path / "labels.csv").write_text("clip_id,label,audio\n")
    with pytest.raises(ValueError, match="emotion"):
        evaluate_audio_folder(tmp_path, net, "cpu")


def _data_dir() -> Path | None:
    env = os.environ.get("UMQ_DATA")
    base = Path(env) if env else ROOT.parent / "shared" / "data"
    d = base / "ravdess"
    return d if (d / "labels.csv").is_file() else None


@pytest.mark.data
@pytest.mark.skipif(_data_dir() is None, reason="RAVDESS not found (set UMQ_DATA or put it at ../shared/data)")
def test_scores_unseen_actors_well_above_chance(tmp_path):
    data = _data_dir()
    with open(data / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["actor"]) >= 17]
    # 10 clips from each of actors 17-20, spread over the emotions (labels.csv is sorted by emotion)
    rows = [r for a in ("17", "18", "19", "20") for r in [q for q in rows if q["actor"] == a][::6]]
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["clip_id", "emotion", "audio", "actor"])
        w.writeheader()
        for r in rows:
            w.writerow({"clip_id": r["clip_id"], "emotion": r["emotion"], "audio": str(data / r["audio"]),
                        "actor": r["actor"]})
        w.writerow({"clip_id": "x", "emotion": "bored", "audio": "none.flac", "actor": "17"})
    net = load_voice_net(device="cpu")
    r = evaluate_audio_folder(tmp_path, net, "cpu")
    assert r["n"] == 40 and r["skipped"] == 1
    assert r["accuracy"] >= 0.4, r  # chance is 1/7; the majority class (neutral) is 0.2
    assert set(r) >= {"n", "accuracy", "macro_f1", "weighted_f1", "per_class_recall", "confusion", "skipped"}


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(_data_dir() is None, reason="RAVDESS not found (set UMQ_DATA or put it at ../shared/data)")
def test_voice_multi_noise_ladder_command_adds_the_noise_it_names(tmp_path):
    """``python -m umq.evaluate voice-multi --snr clean,-10``: one result per SNR, the same clips in each, and
    the noise really is in the -10 dB run (it scores lower than clean)."""
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "umq.evaluate", "voice-multi", "--data", str(_data_dir().parent),
                        "--actors", "20", "--corpora", "ravdess", "--modes", "prior", "--snr", "clean,-10",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert set(rep) == {"ravdess/prior", "ravdess/prior/-10dB"}
    clean, noisy = rep["ravdess/prior"], rep["ravdess/prior/-10dB"]
    assert clean["n"] == noisy["n"] == 60
    assert noisy["accuracy"] < clean["accuracy"] - 0.1, (clean["accuracy"], noisy["accuracy"])
