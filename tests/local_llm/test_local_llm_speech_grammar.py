"""What speech can never say: the decision's options, the agent's functions, "the caller".

The speech grammar is checked with llama.cpp's own grammar matcher on the real
0.5B model's vocabulary (loaded without weights), and once on the real 0.5B
generating: asked to say a forbidden word, it cannot.
"""

from __future__ import annotations

import re

import pytest
from grammar_helpers import grammar_accepts

from voice_agent.local_llm import resolve_model
from voice_agent.local_llm.grammar import UNSPEAKABLE_WORDS, check_grammar, speech_grammar
from voice_agent.local_llm.respond import _SPEECH_OPTIONS, CANNOT, REPLY

llama_cpp = pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


def _accepts(llama, grammar: str, text: str) -> bool:
    return grammar_accepts(llama, grammar, text)


def test_the_decision_options_can_never_be_spoken(vocab):
    names = [str(o["function"]["name"]) for o in _SPEECH_OPTIONS]
    assert set(names) == {REPLY, CANNOT}
    for grammar in (speech_grammar({"58213"}), speech_grammar(set(), continuing=True)):
        for name in names:
            for text in (name, f'You can call the "{name}" option.', f" use {name} now"):
                assert not _accepts(vocab, grammar, text), (name, text)


@pytest.mark.parametrize(
    "text",
    [
        'You can call the "reply" function to speak to them.',
        "Functions are not for you.",
        "I'll use my FUNCTION now.",
        "The caller just asked about order 58213.",
        "Could you tell me the caller's phone number?",
        "Callers often ask that.",
        "I will use 'reply' now.",
        "Reply: your order shipped.",
        "Thecaller can call the return.",  # glued (the 0.5B at seed 4, before session 9)
        "Use thefunction or thereply.",
        "Sorry about the malfunction.",  # the price of the above
    ],
)
def test_speech_never_says_a_word_of_the_agents_machinery(vocab, text):
    assert {"function", "caller", REPLY} <= set(UNSPEAKABLE_WORDS)
    assert not _accepts(vocab, speech_grammar({"58213"}), text)
    assert not _accepts(vocab, speech_grammar({"58213"}, continuing=True), " " + text)


@pytest.mark.parametrize(
    "text",
    [
        "Order 58213 has shipped.",
        "That was fun, and funny too!",
        "I can call you back; a callback at 9 works.",
        "A rep will repeat it.",
        "We open at 9 am.",
        "9",
        "Hello!",
    ],
)
def test_speech_that_only_starts_like_such_a_word_is_free(vocab, text):
    grammar = speech_grammar({"58213", "9"})
    check_grammar(grammar)
    assert _accepts(vocab, grammar, text)


@pytest.mark.parametrize(
    ("text", "continuing"),
    [
        ("Order 58214 has shipped.", False),  # a number nobody gave
        ("99 of them", False),  # two allowed numbers written together
        ("9 58213", False),  # ... but apart they are two
        (" Hello", False),  # a fresh reply starts with a word
        (" hello", True),  # ... one that goes on after a lead may start with a space
        ("", False),  # speech says something
        ("Here: {json} <b> `code`", False),  # no markup
    ],
)
def test_numbers_and_markup_are_held_as_before(vocab, text, continuing):
    expected = text in ("9 58213", " hello")
    assert _accepts(vocab, speech_grammar({"58213", "9"}, continuing=continuing), text) is expected


@pytest.mark.slow
async def test_the_real_model_asked_to_say_them_cannot():
    """The 0.5B, told to repeat a narration word for word, under the speech grammar at a
    high temperature, over several seeds: no sample says a forbidden word or an option,
    not even glued to the word before it (before session 9, when the words were banned
    only at a word's start, seed 4 said "Thecaller can call ...")."""
    from voice_agent.local_llm.chat_format import render_messages
    from voice_agent.local_llm.engine import LlamaEngine, SamplingParams

    engine = LlamaEngine.load(resolve_model(MODEL), "qwen", 2, 1024)
    try:
        prompt = render_messages(
            [
                {"role": "system", "content": "Repeat the user's sentence exactly."},
                {
                    "role": "user",
                    "content": f'The caller can call the "{REPLY}" function or "{CANNOT}".',
                },
            ]
        )
        said: list[str] = []
        for seed in range(6):
            pieces: list[str] = []

            async def on_text(piece: str, pieces: list[str] = pieces) -> bool:
                pieces.append(piece)
                return True

            await engine.generate(
                prompt,
                SamplingParams(temperature=0.8, seed=seed, max_tokens=24),
                speech_grammar(set()),
                on_text,
            )
            said.append("".join(pieces))
    finally:
        engine.close()
    for text in said:
        assert text.strip(), said
        assert not re.search(r"function|caller|reply", text, re.IGNORECASE), said
        assert REPLY not in text and CANNOT not in text, said


async def test_an_answer_that_leaves_out_the_callers_words_still_cannot_say_them(vocab):
    """The answer from results has a grammar of its own when it leaves out words only the
    caller said (`answer_words`); the unspeakable words are kept out of it too."""
    from test_local_llm_respond import (
        ScriptedEngine,
        _after_call,
        _decision_then,
        _respond,
    )

    messages = _after_call({"status": "resolved", "result": {"status": "shipped"}})
    messages[1] = {"role": "user", "content": "Has order 58213 been dispatched?"}
    engine = ScriptedEngine(_decision_then("reply", "Order 58213 has shipped."), p_next=0.01)
    responder, _, _ = await _respond(engine, messages)
    ((_, grammar, _),) = engine.steps
    assert grammar is not None and responder.plan.caller_only_words == ["dispatch"]
    assert _accepts(vocab, grammar, "Order 58213 has shipped.")
    for text in ("The function says it shipped.", "The caller's order 58213 has shipped."):
        assert not _accepts(vocab, grammar, text), text
    assert not _accepts(vocab, grammar, "It was dispatched.")  # answer_words' own rule
