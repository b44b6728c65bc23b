"""Text front-end: data readers, label maps, cues, corruptions, MiniLM embeddings, the shipped head, ASR."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from umq.checkpoint import CheckpointError
from umq.labels import EMOTIONS
from umq.metrics import classification_report
from umq.perception.text import corrupt as tc
from umq.perception.text.cues import TextCues, cues_from_segments, garbled_fraction
from umq.perception.text.net import DEFAULT_WEIGHTS, TextEmotionHead, load_text_head, save_text_head
from umq.perception.text.normalize import normalize_text
from umq.training.data.text import read_goemotions, read_meld, read_text_file, text_dir
from umq.training.text.evaluate import evaluate_text_file

torch.set_num_threads(2)

SENTENCE = "I honestly cannot believe how wonderful this evening has been with all of my best friends here"


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def encoder():
    from umq.perception.text.frontend import shared_encoder

    return shared_encoder("cpu")


@pytest.fixture(scope="module")
def frontend(encoder, head):
    from umq.perception.text.frontend import TextFrontEnd

    return TextFrontEnd(head=head, encoder=encoder)


@pytest.fixture(scope="module")
def head():
    return load_text_head(device="cpu")


def _write_goemotions(folder: Path, label_names=("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "goemotions_ekman_labels.txt").write_text("\n".join(label_names) + "\n", encoding="utf-8")
    rows = [
        "I love this so much, best day ever!\t3\tc1",
        "This is disgusting and vile\t1\tc2",
        "I\u2019m so scared of what comes next\t2\tc3",
        "Wow, I did not expect that\t6\tc4",
        "Great, and also terrifying\t3,2\tc5",  # multi-label
        "He is so mad right now\t0\tc6",
        "   \t4\tc7",  # empty text
        "Bad index here\t9\tc8",  # out of range
        "The meeting is at noon\t4\tc9",
        "I miss her every day\t5\tc10",
    ]
    p = folder / "goemotions_ekman_dev.tsv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p


def _write_meld(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "meld_dev_sent_emo.csv"
    p.write_text(
        "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
        '1,"Oh my God, you guys, that\u2019s amazing!",Rachel,joy,positive,0,0,1,1,"00:00:01,000","00:00:02,000"\n'
        "2,Get out of my apartment right now!,Monica,anger,negative,0,1,1,1,a,b\n"
        "3,I just want to go home.,Ross,sadness,negative,1,0,1,1,a,b\n"
        "4,What? You're kidding!,Joey,surprise,positive,1,1,1,1,a,b\n"
        "5,This is a bad word,Joey,contempt,negative,1,2,1,1,a,b\n"  # outside the label set
        "6,Okay.,Chandler,neutral,neutral,2,0,1,1,a,b\n"
        "7,Ew that is so gross,Phoebe,disgust,negative,2,1,1,1,a,b\n"
        "8,I'm scared of the dark.,Phoebe,fear,negative,2,2,1,1,a,b\n",
        encoding="utf-8")
    return p


# ------------------------------------------------------------------------------------------- readers and labels
def test_goemotions_reader_maps_labels_and_counts_skips(tmp_path):
    rows = read_goemotions(_write_goemotions(tmp_path))
    assert len(rows) == 8
    assert rows.skipped == {"empty_text": 1, "label_out_of_range": 1}
    by_text = dict(zip(rows.texts, rows.labels))
    assert by_text["I love this so much, best day ever!"] == (EMOTIONS.index("happy"),)
    assert by_text["He is so mad right now"] == (EMOTIONS.index("angry"),)
    assert by_text["I'm so scared of what comes next"] == (EMOTIONS.index("fearful"),)  # curly quote normalised
    assert by_text["Wow, I did not expect that"] == (EMOTIONS.index("surprised"),)
    assert by_text["I miss her every day"] == (EMOTIONS.index("sad"),)
    assert by_text["Great, and also terrifying"] == (EMOTIONS.index("happy"), EMOTIONS.index("fearful"))
    single = rows.single_label()
    assert len(single) == 7 and single.skipped["multi_label"] == 1
    assert rows.groups[0] == "c1"


def test_goemotions_labels_follow_the_labels_file_beside_the_tsv(tmp_path):
    # same indices, a different labels.txt order: the mapping must follow the file, not a hard-coded order
    p = _write_goemotions(tmp_path, ("joy", "disgust", "fear", "anger", "neutral", "sadness", "surprise"))
    by_text = dict(zip(*[read_goemotions(p).texts, read_goemotions(p).labels]))
    assert by_text["I love this so much, best day ever!"] == (EMOTIONS.index("angry"),)
    assert by_text["He is so mad right now"] == (EMOTIONS.index("happy"),)
    # a labels file naming an emotion outside the set: its rows are skipped, not mis-mapped
    p2 = _write_goemotions(tmp_path / "other", ("anger", "disgust", "fear", "joy", "neutral", "sadness", "boredom"))
    rows = read_goemotions(p2)
    assert rows.skipped.get("emotion_outside_label_set") == 1
    assert "Wow, I did not expect that" not in rows.texts


def test_meld_reader(tmp_path):
    rows = read_text_file(_write_meld(tmp_path))
    assert rows.source == "meld" and len(rows) == 7
    assert rows.skipped == {"emotion_outside_label_set": 1}
    assert rows.y() == [EMOTIONS.index(n) for n in ("happy", "angry", "sad", "surprised", "neutral", "disgust",
                                                     "fearful")]
    assert rows.texts[0] == "Oh my God, you guys, that's amazing!"
    assert rows.groups[:3] == ["dia0", "dia0", "dia1"]
    with pytest.raises(ValueError, match="unsupported"):
        read_text_file(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_meld(tmp_path / "nope.csv")


def test_normalize_text():
    assert normalize_text("  I\u2019m \u201cfine\u201d\u2026  ok ") == 'I\'m "fine"... ok'


def test_classification_report_by_hand():
    m = classification_report([0, 0, 1, 1], [0, 1, 1, 1])
    assert m["accuracy"] == 0.75
    assert m["confusion"][0][:2] == [1, 1] and m["confusion"][1][:2] == [0, 2]
    # class 0: p=1 r=.5 f1=2/3; class 1: p=2/3 r=1 f1=.8
    assert m["weighted_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["per_class_recall"]["neutral"] == 0.5 and m["per_class_recall"]["sad"] is None


# --------------------------------------------------------------------------------------------- cues, corruption
def test_cues_move_the_right_way():
    rng = np.random.default_rng(0)
    clean = TextCues.from_text(SENTENCE)
    assert clean.present and clean.words == len(SENTENCE.split()) and clean.describe() == ""
    assert clean.garbled_fraction == 0.0 and clean.asr_confidence is None
    dropped = TextCues.from_text(tc.drop_words(SENTENCE, 0.5, rng))
    assert 0 < dropped.words < clean.words
    garbled = TextCues.from_text(tc.replace_words(SENTENCE, 0.6, rng, garble=True))
    assert garbled.words == clean.words and garbled.garbled_fraction > 0.3
    assert "garbled text" in garbled.describe()
    assert TextCues.from_text(tc.replace_words(SENTENCE, 0.6, rng)).garbled_fraction < 0.2  # real words
    empty = TextCues.from_text(tc.empty(SENTENCE))
    assert not empty.present and empty.words == 0 and empty.describe() == "no transcript"
    assert TextCues.from_text("oh no").describe() == "2 words"
    assert TextCues.from_text("xqzt vrbl kwwpf gnrr").describe() == "garbled text"


def test_cues_from_asr_segments_and_health():
    from streams.packets import TextSegment

    segs = [TextSegment(0.0, 1.0, "I am not sure", "asr", 0.2), TextSegment(1.0, 2.0, "what you mean", "asr", 0.5)]
    c = cues_from_segments(segs)
    assert c.words == 7 and c.asr_confidence == pytest.approx((0.2 * 4 + 0.5 * 3) / 7)
    assert c.describe() == "low ASR confidence 0.33"
    typed = cues_from_segments([TextSegment(0.0, 1.0, "I am not sure", "stdin")])
    assert typed.asr_confidence is None and typed.describe() == ""
    missing = cues_from_segments(segs, health_present=False, health_reason="transcript file ended")
    assert not missing.present and missing.describe() == "transcript file ended"
    with pytest.raises(ValueError):
        TextCues(True, 3, asr_confidence=1.5)
    with pytest.raises(ValueError):
        TextCues(False, 3)
    assert len(c.as_vector()) == len(TextCues.VECTOR_NAMES)


def test_garbled_fraction_is_low_on_ordinary_speech():
    text = ("Oh my God, you guys! Ross, I'm talkin' to you... Nooooo, that's gonna be the worst, "
            "we were running and shopping and the dogs stopped barking.")
    assert garbled_fraction(text) == 0.0
    assert garbled_fraction("h3ll0 th3re w0rld") == 1.0


def test_corruptions_are_deterministic_and_bounded():
    a = tc.corrupt(SENTENCE, "replace", 0.5, np.random.default_rng(3))
    b = tc.corrupt(SENTENCE, "replace", 0.5, np.random.default_rng(3))
    assert a == b and a != SENTENCE and len(a.split()) == len(SENTENCE.split())
    assert sorted(tc.shuffle_words(SENTENCE, np.random.default_rng(1)).split()) == sorted(SENTENCE.split())
    assert tc.truncate(SENTENCE, 0.25).split() == SENTENCE.split()[:5]
    assert tc.drop_words(SENTENCE, 0.0, np.random.default_rng(0)) == SENTENCE
    assert tc.drop_words(SENTENCE, 1.0, np.random.default_rng(0)) == ""
    assert tc.corrupt(SENTENCE, "empty", 1.0, np.random.default_rng(0)) == ""
    with pytest.raises(ValueError):
        tc.corrupt(SENTENCE, "melt", 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError):
        tc.drop_words(SENTENCE, 1.5, np.random.default_rng(0))


# ----------------------------------------------------------------------------------------- encoder and the head
def test_embeddings_are_finite_384d_and_semantic(encoder):
    e = encoder.encode(["I am so happy today", "I feel really glad and cheerful today",
                    "The train leaves from platform nine at noon"])
    assert e.shape == (3, 384) and torch.isfinite(e).all()
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-4)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[1, 2] + 0.2


def test_frontend_features(frontend):
    from streams.packets import Modality, TextSegment
    from streams.windows import ModalityHealth, TextSlice

    f = frontend("What a wonderful surprise!")
    assert f.present and f.embedding.shape == (384,) and f.x.shape == (frontend.input_dim,)
    assert torch.isfinite(f.x).all() and f.cues.words == 4
    sl = TextSlice((TextSegment(0.0, 1.0, "I am not", "asr", 0.9), TextSegment(1.0, 2.0, "angry at all", "asr", 0.7)),
                   ModalityHealth(Modality.TEXT, True))
    g = frontend(sl)
    assert g.text == "I am not angry at all" and g.cues.asr_confidence == pytest.approx((0.9 * 3 + 0.7 * 3) / 6)
    none = frontend(TextSlice((), ModalityHealth(Modality.TEXT, False, "no transcript")))
    assert not none.present and none.cues.describe() == "no transcript" and float(none.x.abs().sum()) == 0.0
    assert frontend("").cues.present is False


def test_shipped_head_loads_and_predicts(head, frontend):
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 2 * 1024 * 1024
    assert head.metrics["meld_dev"]["weighted_f1"] > 0.5
    texts = ["I love you so much, this is the best day of my life!", "Get out of here, I hate you!",
             "My grandmother passed away last night.", "Wait, what?! You're pregnant?!", "The bus comes at noon."]
    x, _ = frontend.batch(texts)
    with torch.inference_mode():
        logits, emb = head(x)
    assert logits.shape == (5, 7) and emb.shape == (5, head.emb_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(emb).all()
    pred = [EMOTIONS[i] for i in logits.argmax(1).tolist()]
    assert pred[0] == "happy" and pred[1] == "angry" and pred[2] == "sad"


def test_load_text_head_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing_head.pt"):
        load_text_head(tmp_path / "missing_head.pt")
    bad = tmp_path / "bad_head.pt"
    torch.save({"weights": torch.zeros(3)}, bad)
    with pytest.raises(CheckpointError, match="bad_head.pt"):
        load_text_head(bad)
    ok = save_text_head(TextEmotionHead({"hidden": 16, "emb": 8}), tmp_path / "tiny.pt", {"note": "test"})
    h = load_text_head(ok, device="cpu")
    assert h.metrics == {"note": "test"} and h.emb_dim == 8


def test_a_fine_tuned_head_brings_its_minilm_layers_and_bad_ones_name_the_file(tmp_path, encoder):
    """Format 3: the MiniLM layers a head was tuned with travel in its file and the front-end applies them (the
    untuned features would not be what the head was trained on); other heads keep the wheel's encoder."""
    from umq.perception.text.frontend import TextFrontEnd

    base = encoder.model.state_dict()["encoder.layer.5.output.dense.bias"]
    tuned = {"encoder.layer.5.output.dense.bias": (base + torch.linspace(-1, 1, base.numel())).half()}
    head = TextEmotionHead({"hidden": 16, "emb": 8})
    p = save_text_head(head, tmp_path / "tuned.pt", {"note": "t"}, encoder_state=tuned)
    assert torch.load(p, weights_only=True)["format_version"] == 3
    back = load_text_head(p, device="cpu")
    fe_tuned, fe_plain = TextFrontEnd(head=back, device="cpu"), TextFrontEnd(head=head, device="cpu")
    assert fe_plain.encoder is encoder and fe_tuned.encoder is not encoder
    assert TextFrontEnd(head=load_text_head(p, device="cpu"), device="cpu").encoder is fe_tuned.encoder  # shared
    x_t, _ = fe_tuned.batch([SENTENCE])
    x_p, _ = fe_plain.batch([SENTENCE])
    n = 4 * 384  # the means of layers 0, 3, 4 and 5 are below the tuned (last) layer: unchanged; layer 6 moves
    assert torch.equal(x_t[0, :n], x_p[0, :n]) and not torch.allclose(x_t[0, n:], x_p[0, n:], atol=1e-3)
    for bad in ({"embeddings.word_embeddings.weight": torch.zeros(3)}, {}):
        ck = torch.load(p, weights_only=True)
        ck["encoder_state"] = bad
        torch.save(ck, tmp_path / "bad_tuned.pt")
        with pytest.raises(CheckpointError, match="bad_tuned.pt"):
            load_text_head(tmp_path / "bad_tuned.pt")


def test_evaluate_text_file_counts_and_skips(tmp_path, head, frontend):
    res = evaluate_text_file(_write_goemotions(tmp_path / "ge"), head, frontend)
    assert res["n"] == 7 and res["skipped"] == 3  # empty, out-of-range, multi-label
    assert res["skipped_reasons"]["multi_label"] == 1
    assert sum(map(sum, res["confusion"])) == 7
    m = evaluate_text_file(_write_meld(tmp_path / "meld"), head, frontend)
    assert m["n"] == 7 and m["skipped"] == 1 and 0.0 <= m["weighted_f1"] <= 1.0
    assert set(m["per_class_recall"]) == set(EMOTIONS)
    assert m["accuracy"] >= 4 / 7  # obvious sentences


@pytest.mark.data
@pytest.mark.slow  # > 5 s on 2 cores (fast tier: pytest -m 'not slow')
def test_meld_dev_well_above_majority(head, frontend):
    folder = text_dir()
    if folder is None or not (folder / "meld_dev_sent_emo.csv").is_file():
        pytest.skip("shared data not found (set UMQ_DATA or put it at ../shared/data)")
    res = evaluate_text_file(folder / "meld_dev_sent_emo.csv", head, frontend, limit=300)
    assert res["n"] == 300
    assert res["weighted_f1"] > res["majority_weighted_f1"] + 0.15, res


# ------------------------------------------------------------------------------------------------------- ASR
def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.fixture(scope="module")
def espeak_audio(tmp_path_factory):
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); CI installs it")
    import soundfile as sf

    from umq.perception.asr import to_asr_audio

    sentence = "The weather is lovely today and I am going for a long walk in the park with my sister."
    wav = tmp_path_factory.mktemp("espeak") / "speech.wav"
    subprocess.run([exe, "-s", "150", "-w", str(wav), sentence], check=True, capture_output=True, timeout=30)
    x, sr = sf.read(str(wav), dtype="float32")
    return sentence, to_asr_audio(x, sr)


@pytest.fixture(scope="module")
def transcriber():
    from umq.perception.asr import Transcriber

    return Transcriber(device="cpu", cpu_threads=2)


def test_asr_transcribes_espeak_speech(espeak_audio, transcriber):
    sentence, audio = espeak_audio
    segs = transcriber.transcribe(audio, t0=100.0)
    hyp = set(_words(" ".join(s.text for s in segs)))
    ref = _words(sentence)
    recall = sum(w in hyp for w in ref) / len(ref)
    assert recall >= 0.7, (recall, segs)
    assert all(s.source == "asr" and 0.0 < s.confidence <= 1.0 for s in segs)
    assert segs[0].t0 >= 100.0 and segs[-1].t1 <= 100.0 + audio.size / 16000 + 0.5
    assert transcriber.transcribe(np.zeros(32000, np.float32)) == []  # digital silence is not decoded


def test_streaming_transcriber_on_speech(espeak_audio, transcriber):
    from umq.perception.asr import StreamingTranscriber

    sentence, audio = espeak_audio
    x = np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(8000, np.float32)])
    st = StreamingTranscriber(transcriber, window_s=8.0, every_s=2.0).start()
    try:
        for i in range(0, x.size, 3200):  # 0.2 s chunks, faster than real time
            st.feed(x[i:i + 3200], 50.0 + i / 16000)
        segs = st.flush(timeout=60)
    finally:
        st.stop()
    words = _words(" ".join(s.text for s in segs))
    ref = _words(sentence)
    assert sum(w in set(words) for w in ref) / len(ref) >= 0.6, segs
    assert len(words) <= len(ref) + 3  # nothing transcribed twice
    assert all(50.0 <= s.t0 <= s.t1 <= 50.0 + x.size / 16000 + 0.5 for s in segs)


class _SlowFake:
    """Stands in for Transcriber: 0.3 s per pass, one word per second of audio at its session time."""

    def __init__(self):
        self.calls = 0

    def transcribe_words(self, samples, t0, rate):
        from umq.perception.asr import AsrWord

        self.calls += 1
        time.sleep(0.3)
        t_end = t0 + samples.size / rate
        return [AsrWord(float(k), k + 0.5, f" w{k}", 0.9, 0.8)
                for k in range(int(np.ceil(t0)), int(np.floor(t_end)) + 1) if k + 0.5 <= t_end]


def test_streaming_feed_never_blocks_and_emits_each_word_once():
    from umq.perception.asr import StreamingTranscriber

    fake = _SlowFake()
    st = StreamingTranscriber(fake, window_s=4.0, every_s=0.5, holdback_s=0.2).start()
    chunk = np.full(1600, 0.1, np.float32)  # 0.1 s
    worst = 0.0
    try:
        for k in range(120):  # 12 s of audio fed in ~0.6 s
            t = time.perf_counter()
            st.feed(chunk, k * 0.1)
            worst = max(worst, time.perf_counter() - t)
            time.sleep(0.005)
        segs = st.flush(timeout=10)
    finally:
        st.stop()
    assert worst < 0.05  # the caller never waits for a 0.3 s recognition pass
    assert st.dropped_snapshots > 0 and fake.calls < 24  # latest wins, passes are rate limited
    words = " ".join(s.text for s in segs).split()
    assert len(words) == len(set(words))  # no word emitted twice
    assert "w11" in words  # the tail arrives with flush
    assert all(s.source == "asr" and s.confidence == pytest.approx(0.8) for s in segs)
