"""Multi-corpus voice encoder: bad input through the front-end, label spaces and the masked loss, the Whisper
head, the room/device augmentation and the speaker normaliser across a speaker change."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from umq.labels import EMOTIONS
from umq.perception.voice.ensemble import predict
from umq.perception.voice.features import to_mono_16k
from umq.perception.voice.frontend import VoiceFrontEnd, collate_views
from umq.perception.voice.head import WhisperHeadNet
from umq.perception.voice.net import load_voice_net
from umq.perception.voice.normalize import FeatureStats
from umq.perception.voice.whisper import WHISPER_FEATURE_NAMES
from umq.training.data.voice_corpora import CALM, CORPUS_CLASSES, VOICE_LABELS, class_mask
from umq.training.voice import augment as va

SR = 16_000
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def speech_like(seconds: float = 2.0, seed: int = 0, level: float = 0.2, f0: float = 140.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    ph = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 1.3 * t))) / SR
    x = sum(np.sin(k * ph + rng.uniform(0, 6)) / k for k in range(1, 30))
    env = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.7
    env[(t % 0.8) > 0.6] = 0.0
    x = x * env
    return (level * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture(scope="module")
def net():
    return load_voice_net(device="cpu")


@pytest.fixture(scope="module")
def fe(net):
    return VoiceFrontEnd(net, device="cpu")


BAD_INPUTS = {
    "100 ms": (speech_like()[:1600], SR, "too short"),
    "digital silence": (np.zeros(2 * SR, np.float32), SR, "mic silent"),
    "all NaN": (np.full(2 * SR, np.nan, np.float32), SR, "all samples NaN/inf"),
    "some inf": (np.where(np.arange(2 * SR) % 7 == 0, np.inf, speech_like()).astype(np.float32), SR,
                 "bad samples (NaN/inf)"),
    "clipped": (np.clip(speech_like() * 30, -1, 1), SR, "clipping"),
    "empty": (np.zeros(0, np.float32), SR, "no audio received"),
    "10 min": (np.tile(speech_like(), 300), SR, "too long: 600 s"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_audio_gives_a_reason_not_a_crash(net, fe, name):
    x, rate, reason = BAD_INPUTS[name]
    f = fe(x, rate=rate)
    assert reason in f.cues.describe(), f.cues.describe()
    probs, emb = predict(net, collate_views([f]))
    assert torch.isfinite(probs).all() and torch.isfinite(emb).all() and probs.shape == (1, 7)


def test_any_rate_stereo_and_dc_offset_give_the_same_features_as_clean_mono(net):
    x = speech_like(seed=3)
    ref = VoiceFrontEnd(net, device="cpu", normalize=False)(x)
    stereo44 = np.stack([va.speed(x, 1.0)] * 2, 1)  # [N, 2] at 16 kHz, then resampled up to 44.1 kHz
    import soxr

    stereo44 = soxr.resample(stereo44, SR, 44_100)
    for y, rate in ((stereo44, 44_100), (stereo44.T.copy(), 44_100), (x + 0.3, SR)):
        f = VoiceFrontEnd(net, device="cpu", normalize=False)(y, rate=rate)
        assert f.features.shape == ref.features.shape
        cos = torch.nn.functional.cosine_similarity(f.features.flatten(), ref.features.flatten(), dim=0)
        assert cos > 0.9, (rate, float(cos))
        assert "mic silent" not in f.cues.describe()


def test_to_mono_16k_keeps_nan_positions_and_caps_length():
    x = np.ones(48_000, np.float32)
    x[24_000] = np.nan
    y, _, dur = to_mono_16k(x, None, 48_000)
    assert y.shape[0] == 16_000 and dur == pytest.approx(1.0) and np.isnan(y).sum() >= 1
    y, _, dur = to_mono_16k(np.zeros(SR * 40, np.float32), None, SR)
    assert y.shape[0] == SR * 30 and dur == pytest.approx(40.0)


def test_label_space_and_corpus_masks():
    assert VOICE_LABELS[:7] == EMOTIONS and VOICE_LABELS[CALM] == "calm"
    assert sum(class_mask("urdu")) == 4 and not class_mask("urdu")[CALM]
    assert class_mask("turev")[CALM] and not class_mask("turev")[0]  # calm is not neutral
    assert all(class_mask("ravdess")) and set(CORPUS_CLASSES) == {"ravdess", "urdu", "turev"}


def test_masked_loss_scores_only_the_corpus_classes():
    from umq.training.voice.train_multi import masked_loss

    logits = torch.zeros(1, 8, requires_grad=True)
    allowed = torch.tensor([class_mask("turev")])
    loss = masked_loss(logits, torch.tensor([VOICE_LABELS.index("angry")]), allowed, smooth=0.0)
    assert loss.item() == pytest.approx(np.log(4), rel=1e-5)  # uniform over TurEV's 4 classes, not 8
    loss.backward()
    g = logits.grad[0]
    assert torch.all(g[~allowed[0]] == 0) and g[VOICE_LABELS.index("angry")] < 0
    big = logits.detach().clone()
    big[0, VOICE_LABELS.index("disgust")] = 50.0  # a class TurEV does not label cannot cost anything
    assert masked_loss(big, torch.tensor([3]), allowed, 0.0).item() == pytest.approx(np.log(4), rel=1e-5)


def test_whisper_head_merges_calm_into_neutral_and_handles_odd_lengths():
    torch.manual_seed(0)
    net = WhisperHeadNet().eval()
    c = len(WHISPER_FEATURE_NAMES)
    for t in (1, 3, 100):
        x = torch.randn(2, c, t)
        m = torch.ones(2, t, dtype=torch.bool)
        m[1] = False  # nothing valid: no NaN
        z8, e = net.logits8(x, m)
        z7, _ = net(x, m)
        assert z7.shape == (2, 7) and e.shape == (2, 128) and torch.isfinite(z7).all()
        assert torch.allclose(z7[:, 0], torch.logsumexp(z8[:, [0, CALM]], -1), atol=1e-5)
        assert torch.allclose(z7[:, 1:], z8[:, 1:CALM])


def test_augmentation_chain_keeps_length_and_range_and_telephone_band_limits():
    x = speech_like(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(10):
        y = va.random_chain(x, rng)
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 1.0
    noise = np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 0.1
    spec = np.abs(np.fft.rfft(va.telephone(noise))) ** 2
    f = np.fft.rfftfreq(SR, 1 / SR)
    assert spec[f > 5000].mean() < 0.01 * spec[(f > 500) & (f < 3000)].mean()
    assert np.abs(va.mu_law(x) - x).max() < 0.02  # a codec, not a different signal
    assert va.speed(x, 1.05).shape == x.shape


def test_speaker_change_with_reset_matches_a_fresh_session(net):
    """Two people taking turns: resetting at the change gives exactly the fresh-session features for the new
    speaker; without a reset the previous speaker's state leaks into them."""
    a = [speech_like(seed=s, f0=110.0, level=0.05) for s in range(4)]
    b = speech_like(seed=9, f0=240.0, level=0.4)
    # vad=False: the synthetic voice is not speech to silero, and the normaliser learns from speech frames only
    fresh = VoiceFrontEnd(net, device="cpu", vad=False)(b).features
    fe = VoiceFrontEnd(net, device="cpu", vad=False)
    for x in a:
        fe(x)
    leaked = fe(b).features
    fe.reset()
    for x in a:
        fe(x)
    fe.reset()
    assert torch.allclose(fe(b).features, fresh, atol=1e-5)
    assert not torch.allclose(leaked, fresh, atol=1e-3)


def test_feature_stats_carry_their_layout():
    st = FeatureStats(np.zeros(len(WHISPER_FEATURE_NAMES)), np.ones(len(WHISPER_FEATURE_NAMES)),
                      names=WHISPER_FEATURE_NAMES)
    assert st.whisper and st.f0_channel == 384
    assert FeatureStats.from_json(st.to_json()).names == WHISPER_FEATURE_NAMES
    with pytest.raises(ValueError):
        FeatureStats.from_json({**st.to_json(), "names": ["a"] * len(WHISPER_FEATURE_NAMES)})


@pytest.fixture(scope="module")
def two_front_ends(net, tmp_path_factory):
    """The shipped encoder's first member (or the encoder itself) + an untrained Whisper head, as a saved ensemble."""
    from umq.perception.voice.ensemble import VoiceEnsemble
    from umq.perception.voice.net import save_voice_net

    mel = net.members[0] if isinstance(net, VoiceEnsemble) else net
    if mel.feature_stats.whisper:
        pytest.fail("the first voice member is expected to be the log-mel CRNN")
    torch.manual_seed(0)
    head = WhisperHeadNet().eval()
    rng = np.random.default_rng(0)
    n = len(WHISPER_FEATURE_NAMES)
    head.feature_stats = FeatureStats(rng.normal(0, 0.1, n), rng.uniform(0.5, 2.0, n), names=WHISPER_FEATURE_NAMES)
    path = tmp_path_factory.mktemp("ens") / "voice_ens.pt"
    save_voice_net(VoiceEnsemble([mel, head]), path)
    return mel, head, path


def test_ensemble_reads_each_member_its_own_view_and_averages_log_probs(two_front_ends):
    """One front-end pass makes exactly the features each member's own front-end would; the ensemble's output is
    the mean of the members' log-probabilities on them (and survives a save/load round trip)."""
    from umq.perception.voice.ensemble import VoiceEnsemble

    mel, head, path = two_front_ends
    ens = load_voice_net(path, device="cpu")
    assert isinstance(ens, VoiceEnsemble) and [s.whisper for s in ens.feature_stats] == [False, True]
    x = speech_like(seed=5)
    shared = VoiceFrontEnd(ens, device="cpu", vad=False)
    own = [VoiceFrontEnd(m, device="cpu", vad=False) for m in (mel, head)]
    for _ in range(3):  # the running normalisers advance together
        f = shared(x)
        singles = [fe(x) for fe in own]
    assert len(f.views) == 2
    for (z, m), s in zip(f.views, singles):
        assert torch.allclose(z, s.features, atol=1e-5) and torch.equal(m, s.mask)
    probs, emb = predict(ens, collate_views([f]))
    want = torch.stack([predict(n, collate_views([s]))[0].log() for n, s in zip((mel, head), singles)])
    want = want.mean(0).softmax(-1)
    assert torch.allclose(probs, want, atol=1e-4) and emb.shape == (1, 128)
    shared.reset()
    fresh = VoiceFrontEnd(ens, device="cpu", vad=False)(x)
    assert all(torch.allclose(a[0], b[0], atol=1e-5) for a, b in zip(shared(x).views, fresh.views))


def test_ensemble_checkpoint_errors_name_the_file(two_front_ends, tmp_path):
    from umq.checkpoint import CheckpointError

    mel, _, path = two_front_ends
    blob = torch.load(path, weights_only=True)
    blob["feature_stats"] = blob["feature_stats"][:1]  # one prior for two members
    bad = tmp_path / "one_prior.pt"
    torch.save(blob, bad)
    with pytest.raises((CheckpointError, ValueError), match="one_prior.pt"):
        load_voice_net(bad, device="cpu")


def test_whisper_log_mel_equals_faster_whispers_feature_extractor():
    """The live path computes Whisper's log-mel with torch.stft; the heads were trained on faster-whisper's."""
    from faster_whisper.feature_extractor import FeatureExtractor

    from umq.perception.voice.whisper import log_mel

    fe = FeatureExtractor(80)
    rng = np.random.default_rng(0)
    for n in (640, 16000, 32000, 32160 + 37):
        x = (rng.standard_normal(n) * rng.uniform(0.001, 0.5)).astype(np.float32)
        ref = fe(x, padding=0)
        got = log_mel(x, fe.mel_filters)
        assert got.shape == ref.shape and got.dtype == np.float32
        assert np.abs(got - ref).max() < 1e-5, n
    silence = np.zeros(32000, np.float32)
    assert np.allclose(log_mel(silence, fe.mel_filters), fe(silence, padding=0))
