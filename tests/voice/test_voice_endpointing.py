"""The unfinished-thought hint and the VAD's per-pause silence extension."""

from __future__ import annotations

import numpy as np
import pytest

from peripherals.vad import SpeechEnded, SpeechPaused, VadSegmenter
from voice_agent.voice.endpointing import likely_unfinished


@pytest.mark.parametrize(
    ("text", "unfinished"),
    [
        ("Thank you,", True),
        ("My order number is", True),
        ("I want to check on my", True),
        ("Well...", True),
        ("So the thing is -", True),
        ("Thank you.", False),
        ("Where is my order?", False),
        ("Hello there", False),
        ("", False),
    ],
)
def test_unfinished_thoughts_are_told_from_finished_ones(text, unfinished):
    assert likely_unfinished(text) is unfinished


class ScriptedVad:
    """A VAD whose probability per 512-sample frame comes from a script."""

    sample_rate = 16000
    frame_size = 512

    def __init__(self, probabilities: list[float]) -> None:
        self._p = iter(probabilities)

    def probability(self, frame: np.ndarray) -> float:
        return next(self._p, 0.0)

    def reset(self) -> None:
        pass


def run(seg: VadSegmenter, frames: int, extend_at_pause: float | None) -> tuple[list, int]:
    """All events, and the frame index at which SpeechEnded was emitted."""
    events, ended_at = [], -1
    for i in range(frames):
        new = seg.process(np.zeros(512, dtype=np.float32))
        events += new
        if any(isinstance(e, SpeechEnded) for e in new):
            ended_at = i
        if extend_at_pause is not None and any(isinstance(e, SpeechPaused) for e in new):
            seg.extend_pause(extend_at_pause)
    return events, ended_at


def test_extending_a_pause_delays_the_end_of_the_segment_by_that_much():
    speech = [0.9] * 20 + [0.0] * 80  # 0.64 s of speech, then 2.56 s of silence
    plain, plain_at = run(VadSegmenter(ScriptedVad(speech), min_silence_s=0.5), 100, None)
    longer, longer_at = run(VadSegmenter(ScriptedVad(speech), min_silence_s=0.5), 100, 0.7)
    end_plain = next(e for e in plain if isinstance(e, SpeechEnded))
    end_longer = next(e for e in longer if isinstance(e, SpeechEnded))
    assert end_plain.t == end_longer.t  # the segment still ends where the speech stopped
    delay_s = (longer_at - plain_at) * 512 / 16000  # ... but is declared 0.7 s of stream later
    assert delay_s == pytest.approx(0.7, abs=0.033)


def test_the_extension_applies_to_one_pause_only():
    speech = [0.9] * 20 + [0.0] * 10 + [0.9] * 20 + [0.0] * 40
    seg = VadSegmenter(ScriptedVad(speech), min_silence_s=0.5)
    events, ended_at = [], -1
    for i in range(90):
        new = seg.process(np.zeros(512, dtype=np.float32))
        if i < 25 and any(isinstance(e, SpeechPaused) for e in new):
            seg.extend_pause(5.0)  # the first pause only; the speech resumes after it
        if any(isinstance(e, SpeechEnded) for e in new):
            ended_at = i
        events += new
    # The second pause starts at frame 50 and ends the segment after the plain 0.5 s.
    assert ended_at == pytest.approx(50 + 0.5 * 16000 / 512, abs=2)


# ---------------------------------------------------------------- the end-of-turn decision
from voice_agent.voice.endpointing import (  # noqa: E402
    EndpointingRules,
    decide,
    is_backchannel,
    reading_number,
    transcript_cue,
)

RULES = EndpointingRules()
BANDS = EndpointingRules(mode="bands")  # session 4's decision, kept as an option


@pytest.mark.parametrize(
    ("text", "cue"),
    [
        ("My order number is 427", "number"),
        ("My order number is 4-2-7,", "number"),
        ("The code is four two seven", "number"),
        ("It's 5 5 5", "number"),  # three digit groups in a row, no lead word needed
        ("I ordered it in 2024.", "statement"),  # a year in a sentence is not a number read
        ("My order number is", "unfinished"),
        ("I ordered a blue jacket and", "unfinished"),
        ("So the thing is,", "unfinished"),
        ("Where is my order?", "question"),
        # a whole question that ends in digits is finished; a rising "427?" alone is not
        ("Can you check the status of order 5180?", "question"),
        ("Hi, where's my order number 427?", "question"),
        ("So, could you look up booking 904?", "question"),
        ("My order number is 4 2 7?", "number"),
        ("The code is 338?", "number"),
        ("I ordered shoes.", "statement"),
        # no end punctuation (Whisper tiny drops it on voices and lines it hears badly):
        # the words decide whether it is a whole clause
        ("I ordered shoes", "complete"),
        ("I think somebody else used my account", "complete"),
        ("I forgot my password and cannot login...", "complete"),  # "..." after a clause
        ("There's no fee for cancelling my subscription", "complete"),
        ("I would like to change", "none"),  # a wish whose object is still to come
        ("Right, so yesterday", "none"),  # no verb: a fragment
        ("About my order number", "none"),  # "order" after "my" is a noun
        ("Thank you", "none"),  # too short to tell
        ("If I return the boots...", "unfinished"),  # a subordinate clause alone
        ("If I return the boots", "none"),
        ("I wonder if you...", "unfinished"),  # the "if" clause has no verb yet
        ("I'll call back if it breaks", "complete"),
        ("My phone is very...", "unfinished"),
        ("The thing I wanted to ask was...", "unfinished"),
        ("Can you tell me when the store opens tomorrow...", "question_form"),
        ("Have the refunds gone from order 3,320", "question_form"),
        # a number after a thing that has one names it; after "is" it is being read out
        ("The refund has gone from order 3,320.", "statement"),
        ("I'm calling about account 8190", "none"),  # a reference, but digits may go on
        ("The order is 4 4", "number"),
        # a lone digit word far from its lead word is a word, not a number being read
        ("The email on the account is my work one.", "statement"),
        ("My account number is one", "number"),
        # floor-holding phrases, questions without their "?", fragments punctuated
        ("I know that I can't go that way, can't...", "unfinished"),  # ends in an auxiliary
        ("Call me back on 415", "none"),  # digits may go on in groups
        ("Call me back on 415.", "statement"),
        ("Hang on, let me see.", "holding"),
        ("What I need is", "unfinished"),
        ("I was wondering.", "holding"),
        ("That's what I need.", "statement"),
        ("Can you check whether?", "unfinished"),
        ("Can you kick the state of the order of i'm 101.", "question_form"),
        ("What time do you close today", "question_form"),
        ("When I called yesterday.", "statement"),
        ("It is order 3 9 9.", "number"),
        ("The parcel came on Monday?", "rising"),
        # the comma inside a number is no clause break, digits no filler
        ("Can you kick the status of all the 5,100 and 80?", "question"),
        ("", "none"),
        (None, "none"),
    ],
)
def test_the_transcript_tells_unfinished_thoughts_and_numbers_being_read(text, cue):
    assert transcript_cue(text) == cue


def test_reading_number_needs_digits_at_the_end():
    assert reading_number("card number 4111 1111")
    assert not reading_number("number 4 please")


@pytest.mark.parametrize(
    ("p", "text", "reason", "silence"),
    [
        (0.9, "Where is my order?", "model_done", RULES.done_silence_s),
        # a statement may go on after a comma pause the model hears as an end
        (0.95, "I paid 45 dollars for express delivery.", "model_done", 0.4),
        (0.35, "I ordered shoes.", "model_uncertain", RULES.uncertain_silence_s),
        # a whole question: the model's doubt costs at most the plain VAD wait
        (0.35, "Where is my order?", "question", RULES.done_silence_s),
        (0.05, "Where is my order?", "question", RULES.uncertain_silence_s),
        (0.05, "Where is my", "model_incomplete", RULES.incomplete_silence_s),
        # the transcript can only lengthen the wait the model asks for
        (
            0.9,
            "I ordered a blue jacket and",
            "transcript_unfinished",
            RULES.unfinished_text_silence_s,
        ),
        (0.9, "My order number is 427", "number", RULES.number_silence_s),
        # a question that ends in a number does not wait for more digits
        (0.9, "Where's my order number 427?", "model_done", RULES.done_silence_s),
        (0.35, "Can you look up order 5180?", "question", RULES.done_silence_s),
        (0.05, "Can you look up order 5180?", "question", RULES.uncertain_silence_s),
        (0.9, "My order number is 427?", "number", RULES.number_silence_s),
        (None, "Where is my order?", "no_model", RULES.no_model_silence_s),
        (None, "Thank you,", "transcript_unfinished", RULES.unfinished_text_silence_s),
    ],
)
def test_the_decision_combines_the_model_and_the_transcript(p, text, reason, silence):
    d = decide(BANDS, p, text)
    assert (d.reason, d.silence_s) == (reason, silence)
    assert d.probability == p


def test_every_decision_is_capped():
    for mode in ("graded", "bands"):
        rules = EndpointingRules(
            number_silence_s=3.0, incomplete_silence_s=2.5, max_silence_s=1.4, mode=mode
        )
        assert decide(rules, 0.01, "My order number is 4 2").silence_s == 1.4
        assert decide(rules, 0.01, "Where is").silence_s == 1.4


def test_rules_that_contradict_themselves_are_refused():
    with pytest.raises(ValueError):
        EndpointingRules(done_probability=0.3, incomplete_probability=0.5)
    with pytest.raises(ValueError):
        EndpointingRules(candidate_silence_s=0.5, max_silence_s=0.2)


@pytest.mark.parametrize(
    ("text", "backchannel"),
    [
        ("Mhm.", True),
        ("Yeah.", True),
        ("Right, right.", True),
        ("Okay.", True),
        ("Uh-huh", True),
        ("Yeah, okay.", True),
        ("Stop.", False),
        ("Wait, I have a question.", False),
        ("Yeah, but what about my refund?", False),
        ("No.", False),
        ("", False),
        # Whisper's near-homophones of a backchannel said over the agent (held-out voices)
        ("Uh-oh.", True),
        ("Guard it.", True),
        ("Yap.", True),
        # ... but not words that ask for the floor, nor other short words
        ("Cut it.", False),
        ("Huh?", False),
        ("Wait.", False),
        ("What?", False),
        ("Hold it.", False),
        ("Not yet.", False),
        ("Go on.", False),
        ("I", False),
        ("Uh.", False),  # a hesitation alone: the caller is about to speak
        # a no said as a sound is an answer, though it sounds like "uh-huh" (turn7)
        ("Uh-uh.", False),
        ("Uh uh.", False),
        ("Nuh-uh.", False),
        ("Unh-unh.", False),
        ("Mm-mm.", False),
        ("Mm-hmm.", True),
        ("Mmm.", True),
        ("Got it, but what about my refund?", False),
    ],
)
def test_backchannels_are_told_from_interruptions(text, backchannel):
    assert is_backchannel(text) is backchannel


def test_a_pause_silence_set_during_the_pause_ends_the_segment_then():
    speech = [0.9] * 20 + [0.0] * 80
    for wanted_s in (0.2, 1.2):
        seg = VadSegmenter(ScriptedVad(speech), min_silence_s=0.5)
        ended_at, paused_at = -1, -1
        for i in range(100):
            new = seg.process(np.zeros(512, dtype=np.float32))
            if any(isinstance(e, SpeechPaused) for e in new):
                paused_at = i
            if i == paused_at + 3:  # decided 96 ms into the pause
                seg.set_pause_silence(wanted_s)
            if any(isinstance(e, SpeechEnded) for e in new):
                ended_at = i
        waited_s = (ended_at - 19) * 512 / 16000  # the pause began after frame 19
        assert waited_s == pytest.approx(wanted_s, abs=0.07)


def test_a_shorter_silence_than_already_passed_ends_the_segment_at_the_next_frame():
    seg = VadSegmenter(ScriptedVad([0.9] * 20 + [0.0] * 40), min_silence_s=0.5)
    for _ in range(30):  # 10 frames (0.32 s) into the pause
        seg.process(np.zeros(512, dtype=np.float32))
    assert seg.pause_silence_s == pytest.approx(10 * 512 / 16000, abs=0.04)
    seg.set_pause_silence(0.2)
    assert any(isinstance(e, SpeechEnded) for e in seg.process(np.zeros(512, dtype=np.float32)))


@pytest.mark.parametrize("rules", [RULES, BANDS], ids=["graded", "bands"])
def test_a_turn_that_interrupted_the_agent_is_not_ended_on_its_first_word(rules):
    """ "Wait." sounds complete, but an interruption goes on ("Wait, I have a question")."""
    d = decide(rules, 0.95, "Wait.", interrupting=True)
    assert (d.reason, d.silence_s) == ("interruption", rules.uncertain_silence_s)
    longer = decide(rules, 0.05, "Wait, I", interrupting=True)
    assert longer.silence_s >= rules.unfinished_text_silence_s  # only ever a floor


def test_a_confident_done_waits_longer_after_a_statement_than_after_a_whole_question():
    for mode in ("graded", "bands"):
        rules = EndpointingRules(done_silence_s=0.2, done_statement_silence_s=0.45, mode=mode)
        question = decide(rules, 0.97, "Could you look up booking 904?")
        statement = decide(rules, 0.97, "Booking 318 was for two nights.")
        assert question.silence_s == 0.2
        assert statement.silence_s == 0.45


def test_every_turn_setting_reaches_the_rules_in_its_unit():
    from dataclasses import fields

    from voice_agent.config import TurnConfig
    from voice_agent.voice.build import turn_rules

    base = TurnConfig()
    changed: dict[str, object] = {"decision": "bands"}
    for name, value in base.model_dump().items():
        if isinstance(value, bool) or name == "decision":
            continue
        if name.endswith("_ms") and isinstance(value, int | float):
            changed[name] = value + 7
        elif isinstance(value, float):
            changed[name] = value + 0.01
    cfg = TurnConfig.model_validate({**base.model_dump(), **changed})
    rules, defaults = turn_rules(cfg), EndpointingRules()
    assert rules.mode == "bands"
    for rule in fields(EndpointingRules):
        if rule.name == "mode":
            continue
        setting = rule.name.removesuffix("_s") + "_ms"
        expected = (
            getattr(cfg, setting) / 1000
            if rule.name.endswith("_s") and setting in TurnConfig.model_fields
            else getattr(cfg, rule.name)
        )
        assert getattr(rules, rule.name) == pytest.approx(expected), rule.name
        assert getattr(rules, rule.name) != getattr(defaults, rule.name), rule.name
