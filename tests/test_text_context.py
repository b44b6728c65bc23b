"""Dialogue context for the text branch, the idle (nobody spoke) state, the dialogue corpora readers, and bad
transcript input (1 MB lines, control characters, invalid UTF-8, broken SRT times)."""
from __future__ import annotations

import logging

import pytest
import torch

from streams.packets import Modality, SourceState, TextSegment
from streams.transcript import clean_text, load_transcript_file, parse_cues
from streams.windows import ModalityHealth, TextSlice
from umq.labels import EMOTIONS
from umq.perception.text.context import TranscriptContext
from umq.perception.text.cues import IDLE_REASON, TextCues, cues_from_slice
from umq.perception.text.net import DEFAULT_WEIGHTS, ContextTextHead, load_text_head, save_text_head
from umq.training.data.text import read_dailydialog, read_emorynlp, read_meld_dialogues


@pytest.fixture(scope="module")
def frontend():
    from umq.perception.text.frontend import TextFrontEnd

    return TextFrontEnd(device="cpu")


@pytest.fixture(scope="module")
def head():
    return load_text_head(device="cpu")


class CountingFrontEnd:
    """The real front-end, counting the lines it encodes."""

    def __init__(self, fe) -> None:
        self.fe, self.lines = fe, 0

    def batch(self, texts, batch_size: int = 64):
        self.lines += len(texts)
        return self.fe.batch(texts, batch_size)


# ------------------------------------------------------------------------------------------------ idle state
def _slice(segments, present, reason, state):
    return TextSlice(tuple(segments), ModalityHealth(Modality.TEXT, present, reason, received=len(segments),
                                                     device_state=state))


def test_pause_is_idle_not_missing():
    idle = cues_from_slice(_slice([], False, "no transcript", SourceState.RUNNING))
    assert idle.idle and not idle.present and idle.reason == IDLE_REASON == "nobody spoke"
    assert idle.describe() == "nobody spoke"
    assert idle.as_vector() == TextCues.absent().as_vector()  # the model is told the same: no text to read
    assert idle.to_json()["idle"] is True
    ended = cues_from_slice(_slice([], False, "no transcript", SourceState.ENDED))
    assert ended.idle  # a transcript file that has said everything: nobody speaks, nothing is broken


def test_absent_or_failing_source_is_missing_not_idle():
    none = cues_from_slice(_slice([], False, "no transcript source", SourceState.STOPPED))
    assert not none.idle and none.describe() == "no transcript source"
    broken = cues_from_slice(_slice([], False, "transcript file x.srt could not be read", SourceState.UNAVAILABLE))
    assert not broken.idle and "could not be read" in broken.describe()
    spoken = cues_from_slice(_slice([TextSegment(0.1, 1.0, "hello there you")], True, "", SourceState.RUNNING))
    assert spoken.present and not spoken.idle
    with pytest.raises(ValueError):
        TextCues(True, 2, idle=True)


def test_idle_through_the_window_buffer():
    """Real buffer + windower: a running transcript source with a pause gives idle windows; a session without a
    transcript source gives missing ones."""
    from streams.buffer import TimeAlignedBuffer, WindowConfig, Windower
    from tests.helpers import audio_packets, status, text

    def windows(transcript: bool) -> dict:
        buf = TimeAlignedBuffer()
        buf.push(status(Modality.AUDIO, SourceState.RUNNING, 0.0))
        if transcript:
            buf.push(status(Modality.TEXT, SourceState.RUNNING, 0.0))
            buf.push(text(0.2, 1.0, "we said something here"))
        win = Windower(buf, WindowConfig(window_s=2.0, hop_s=1.0))
        for p in audio_packets(0.0, 6.0):
            buf.push(p)
        return {w.t1: w for w in win.due(6.0, final=True)}

    live = windows(True)
    assert cues_from_slice(live[2.0].text).present
    pause = cues_from_slice(live[5.0].text)
    assert pause.idle and pause.describe() == "nobody spoke"
    gone = cues_from_slice(windows(False)[5.0].text)
    assert not gone.idle and gone.describe() == "no transcript source"


# ------------------------------------------------------------------------------------------------ the head
def _tiny(context: int = 3) -> ContextTextHead:
    torch.manual_seed(0)
    return ContextTextHead({"hidden": 16, "emb": 8, "context": context}).eval()


def test_context_head_shapes_masking_and_context_effect():
    h = _tiny()
    d = h.input_dim
    x, ctx = torch.randn(2, d), torch.randn(2, 3, d)
    mask = torch.tensor([[False, True, True], [True, True, True]])
    meta = torch.zeros(2, 3, 4)
    logits, emb = h(x, ctx, mask, meta)
    assert logits.shape == (2, 7) and emb.shape == (2, 8)
    alone, _ = h(x)
    assert not torch.allclose(alone, logits)  # the previous lines change the answer
    ctx2 = ctx.clone()
    ctx2[0, 0] = 100.0  # a masked (absent) slot must not matter
    assert torch.allclose(h(x, ctx2, mask, meta)[0][0], logits[0], atol=1e-5)
    with pytest.raises(ValueError):
        h(torch.randn(2, d + 1))


def test_context_head_round_trip_weights_only(tmp_path):
    h = _tiny()
    p = save_text_head(h, tmp_path / "ctx.pt", {"note": "t"})
    ck = torch.load(p, weights_only=True)
    assert ck["format_version"] == 2
    back = load_text_head(p, device="cpu")
    assert isinstance(back, ContextTextHead) and back.context == 3 and back.metrics == {"note": "t"}
    x = torch.randn(1, h.input_dim)
    assert torch.allclose(back(x)[0], h(x)[0])


# ------------------------------------------------------------------------------------------------ runtime context
def test_transcript_context_uses_predecessors_and_encodes_each_line_once(frontend):
    h = _tiny()
    fe = CountingFrontEnd(frontend)
    ctx = TranscriptContext(h, fe, history=4)
    a = TextSegment(0.0, 1.0, "I got the job!")
    b = TextSegment(3.0, 4.0, "Oh really.")
    ctx.window_outputs([a], 0.0, 2.0)
    ctx.window_outputs([a], 0.5, 2.5)  # overlapping window: nothing re-encoded
    assert fe.lines == 1
    emb_b, p_b = ctx.window_outputs([b], 2.5, 4.5)
    assert ctx.previous((3.0, 4.0, "Oh really.")) == ["I got the job!"]
    assert fe.lines == 2 and p_b.shape == (7,) and emb_b.shape == (8,)
    assert abs(float(p_b.sum()) - 1) < 1e-5 and set(ctx.last_probs) == set(EMOTIONS)
    alone = ContextTextHead.forward(h, fe.fe.batch(["Oh really."])[0])[0].softmax(-1)[0]
    assert not torch.allclose(alone, p_b)  # read with its predecessor, not alone
    for k in range(10):  # memory stays flat
        ctx.window_outputs([TextSegment(10.0 + k, 10.5 + k, f"line number {k}")], 9.5 + k, 11.5 + k)
    assert len(ctx) == 4
    ctx.window_outputs([a], 0.0, 2.0)  # the clock went back: a new session, history forgotten
    assert len(ctx) == 1


def test_a_late_line_counts_like_an_on_time_one(head, frontend):
    """A transcript line delivered late (ASR: seconds after the speech) sits in a window it does not overlap; it
    must weigh in by its own length, not vanish next to an on-time line (it is in no other window)."""
    late, now = TextSegment(1.0, 3.0, "I'm so happy, I got the job!"), TextSegment(5.0, 7.0, "My dog died.")
    mixed = TranscriptContext(head, frontend).window_outputs([late, now], 5.0, 7.0)[1]
    alone = [TranscriptContext(head, frontend).window_outputs([s], s.t0, s.t1)[1] for s in (late, now)]
    assert torch.allclose(mixed, (alone[0] + alone[1]) / 2, atol=1e-3)  # equal lengths: equal say


def test_bad_lines_through_the_frontend_do_not_crash(frontend):
    h = _tiny()
    ctx = TranscriptContext(h, frontend)
    lines = ["😀😀😀", "Привет, how are you? 你好", clean_text("x" * 1_000_000), clean_text("a\x00b\x1b[31mc\u202e")]
    for k, text in enumerate(lines):
        seg = TextSegment(float(k), k + 0.5, text)
        emb, p = ctx.window_outputs([seg], float(k), k + 2.0)
        assert torch.isfinite(emb).all() and torch.isfinite(p).all()
        cues = cues_from_slice(_slice([seg], True, "", SourceState.RUNNING))
        assert cues.present
    assert len(lines[2]) == 2000 and "\x00" not in lines[3] and "\u202e" not in lines[3]


# ------------------------------------------------------------------------------------------------ bad transcript files
def test_srt_with_broken_and_overlapping_times_names_file_and_line(tmp_path, caplog):
    srt = tmp_path / "talk.srt"
    srt.write_bytes(b"1\n00:00:01,000 --> 00:00:03,000\nfirst line\n\n"
                    b"2\n00:00:02,000 --> 00:00:04,000\noverlapping line\n\n"
                    b"3\n00:00:0x --> 00:00:05,000\nbroken time\n\n"
                    b"4\n00:00:06,000 --> 00:00:05,000\nends before it starts\n\n"
                    b"5\n00:00:07,000 --> 00:00:08,000\n" + b"y" * 1_000_000 + b"\n\n"
                    b"6\n00:00:09,000 --> 00:00:10,000\nbad \xff\xfe bytes\n")
    with caplog.at_level(logging.WARNING):
        parsed = load_transcript_file(srt)
    texts = [s.text for s in parsed.segments]
    assert texts[:2] == ["first line", "overlapping line"] and parsed.skipped == 2
    assert len(texts[2]) == 2000 and "\ufffd" in texts[3]
    log = caplog.text
    assert "talk.srt line 9" in log and "talk.srt line 13" in log  # the broken cues, by file and line
    assert "talk.srt line 17" in log and "truncated" in log  # the 1 MB line
    assert "talk.srt line 23: invalid UTF-8" in log


def test_parse_cues_bounded_work_on_huge_block():
    parsed = parse_cues("1\n00:00:01,000 --> 00:00:02,000\n" + "<i>" * 300_000 + "\n", "srt", "huge.srt")
    assert len(parsed.segments) <= 1 and all(len(s.text) <= 2000 for s in parsed.segments)


# ------------------------------------------------------------------------------------------------ corpora readers
def test_dialogue_readers(tmp_path):
    emory = tmp_path / "emorynlp_train.csv"
    emory.write_text("Utterance,Speaker,Emotion,Scene_ID,Utterance_ID,Season,Episode,Start_Time,End_Time\n"
                     "second,['Ross Geller'],Mad,1,2,1,1,0,0\n"
                     "first,['Rachel Green'],Joyful,1,1,1,1,0,0\n"
                     "calm,['Ross Geller'],Peaceful,1,3,1,1,0,0\n"
                     "held out,['Joey'],Sad,1,1,2,5,0,0\n", encoding="utf-8")
    e = read_emorynlp(emory, exclude_episodes={(2, 5)})
    assert e.texts == ["first", "second", "calm"]  # scene order, held-out episode gone
    assert e.labels == [EMOTIONS.index("happy"), EMOTIONS.index("angry"), -1]  # Peaceful: context only
    assert e.speaker[:2] == ["Rachel Green", "Ross Geller"] and e.previous(2, 5) == [0, 1]
    assert e.skipped == {"held_out_episode": 1, "unlabelled_peaceful": 1}
    dd = tmp_path / "dd.csv"
    dd.write_text("dialogue_id,turn,speaker,utterance,emotion\nd1,2,B,\"Sure , why not ?\",happiness\n"
                  "d1,1,A,\"Hey , you wanna go ?\",neutral\nd2,1,A,Oh no .,sadness\n", encoding="utf-8")
    d = read_dailydialog(dd)
    assert d.texts[:2] == ["Hey, you wanna go?", "Sure, why not?"] and d.previous(2, 3) == []
    meld = tmp_path / "meld.csv"
    meld.write_text("Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode\n"
                    "1,b,Joey,joy,positive,0,1,1,2\n2,a,Ross,anger,negative,0,0,1,2\n3,c,Ross,fear,negative,1,0,1,2\n",
                    encoding="utf-8")
    m = read_meld_dialogues(meld)
    assert m.texts == ["a", "b", "c"] and m.previous(1, 4) == [0] and m.previous(2, 4) == []
    assert m.group == ["friends-s1e2"] * 3


# ------------------------------------------------------------------------------------------------ shipped weights
def test_shipped_single_line_head_runs_through_the_context_path(head, frontend):
    """The shipped head is the single-line one (the context head did not beat it; docs/text-encoder.md): the
    transcript context must serve it unchanged, giving the same answer for a line whatever came before."""
    assert DEFAULT_WEIGHTS.stat().st_size < 25 * 1024 * 1024
    assert int(getattr(head, "context", 0)) == 0
    ctx = TranscriptContext(head, frontend)
    _, p_happy = ctx.window_outputs([TextSegment(0, 1, "I'm so happy, I got the job!")], 0, 2)
    assert p_happy.argmax() == EMOTIONS.index("happy"), p_happy
    _, after_good = ctx.window_outputs([TextSegment(1.5, 2, "Oh my God.")], 1.4, 3.4)
    ctx.clear()
    ctx.window_outputs([TextSegment(0, 1, "My dog died this morning.")], 0, 2)
    _, after_bad = ctx.window_outputs([TextSegment(1.5, 2, "Oh my God.")], 1.4, 3.4)
    assert torch.allclose(after_good, after_bad), "a single-line head must ignore the previous lines"
    x, _ = frontend.batch(["Get out of here, I hate you!"])
    logits, emb = head(x)
    assert emb.shape == (1, head.emb_dim) and abs(float(logits.softmax(-1).sum()) - 1) < 1e-4
