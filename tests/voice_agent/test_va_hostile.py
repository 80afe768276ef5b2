"""Faults found by a hostile review of issues 8 and 10 (shapes the earlier suites did not try).

Each test drives the whole agent (FSM, ledger, scheduler, the real OpenAI
client over HTTP to a misbehaving server on 127.0.0.1) on ``AutojumpClock``:
nothing sleeps in real time.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_va_llm_reliability import APOLOGY, HOLDS, run_call, then_answer

from ledger import check_protocol
from voice_agent.bench.fault_server import answer, words
from voice_agent.tools import ToolRegistry


def _same_id_every_time(call_id: str, tool: str, arguments: str, final: str):
    """A server that names every tool call ``call_id`` (some local servers number calls
    per response), then answers once it has seen two outcomes."""

    def plan(index: int, body: dict) -> list:
        outcomes = [m for m in body["messages"] if m["role"] == "tool"]
        if len(outcomes) >= 2:
            return answer(final)
        call = ("call", 0, call_id, tool, arguments)
        return [("headers",), ("role",), call, ("finish", "tool_calls"), ("done",)]

    return plan


def test_a_tool_call_id_the_server_reuses_across_responses_is_renamed_not_fatal():
    tools = ToolRegistry()
    runs: list[str] = []

    @tools.tool(name="lookup", description="Look an order up.", kind="read")
    async def lookup(order: str) -> dict[str, str]:
        runs.append(order)
        return {"status": "shipped"}

    call = run_call(
        _same_id_every_time("call_0", "lookup", '{"order": "4417"}', "It has shipped."),
        ["Where is order 4417?"],
        tools=tools,
    )
    started = [e.call_id for e in call.entries("ToolCallStarted")]
    assert len(started) == 2 and len(set(started)) == 2 and started[0] == "call_0"
    assert runs and set(runs) == {"4417"}  # a repeated read may be answered from the first
    assert not [e for e in call.entries("Note") if "failed" in e.text]
    heard = [text for _, text in call.heard(0)]
    assert heard[-1] == "It has shipped." and APOLOGY not in heard
    # the rendered history pairs every tool result with its (renamed) call
    check_protocol(call.ledger.render_messages("sys"))


# ------------------------------------------- one write, the number formatted differently


def test_a_spoken_number_argument_is_one_intent_however_it_is_formatted():
    from voice_agent.phone.tools import registry

    for name in ("cancel_order", "open_ticket"):
        spec = registry.get(name)
        forms = ["4417", "4,417", "four four one seven", " 44-17 ", "forty-four seventeen"]
        extra = {"summary": "call me back"} if name == "open_ticket" else {}
        canon = {
            spec.canonical_arguments(spec.parse_arguments(json.dumps({"order_number": f, **extra})))
            for f in forms
        }
        assert len(canon) == 1, canon
    # a number that is not the same stays apart
    spec = registry.get("cancel_order")
    a, b = (spec.canonical_arguments({"order_number": n}) for n in ("4417", "4418"))
    assert a != b


async def test_the_same_phone_write_with_the_number_in_other_words_is_applied_once(
    tmp_path, monkeypatch
):
    import sqlite3

    from test_va_tool_faults import Harness

    monkeypatch.setenv("VOICE_AGENT_PHONE_DB", str(tmp_path / "shop.sqlite"))
    from voice_agent.phone import tools as phone

    db = sqlite3.connect(phone.database_path()) if phone.store() else None
    assert db is not None
    order = db.execute("SELECT id FROM orders WHERE status = 'processing' LIMIT 1").fetchone()[0]
    words = " ".join(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"][int(c)]
        for c in order
    )
    h = Harness(phone.registry)

    def answered() -> int:
        return len(
            [e for e in h.ledger.entries if e.type in ("ToolCallResolved", "ToolCallFailed")]
        )

    for n, number in enumerate((order, f"{order[:-3]},{order[-3:]}", words), 1):
        h.call("open_ticket", {"summary": "The caller wants a call back.", "order_number": number})
        # the tool runs SQLite on a worker thread: wait (real time, generous) for its outcome;
        # the tool's timeout is on the ManualClock, which never moves here
        for _ in range(3000):
            if answered() == n:
                break
            await asyncio.sleep(0.01)
    tickets = db.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
    audit = db.execute("SELECT COUNT(*) FROM audit WHERE action = 'open_ticket'").fetchone()[0]
    assert (tickets, audit) == (1, 1)
    results = [e for e in h.ledger.entries if e.type == "ToolCallResolved"]
    assert len(results) == 3  # every call answered, with the one ticket


# ------------------------------------------------------------------ tools that misbehave


class _Boom(BaseException):
    """Not an Exception: what a careless library might raise."""


def _misbehaving_tools() -> ToolRegistry:
    import sys

    reg = ToolRegistry()

    @reg.tool(timeout_s=2)
    async def exits() -> dict:
        """Calls sys.exit (a library's idea of error handling)."""
        sys.exit(3)

    @reg.tool(timeout_s=2)
    async def interrupts() -> dict:
        """Raises KeyboardInterrupt."""
        raise KeyboardInterrupt

    @reg.tool(timeout_s=2)
    async def booms() -> dict:
        """Raises a BaseException of its own."""
        raise _Boom("boom")

    @reg.tool(timeout_s=2)
    async def self_referencing() -> dict:
        """A result that contains itself."""
        d: dict = {"ok": True}
        d["self"] = d
        return d

    @reg.tool(timeout_s=2)
    async def unprintable_error() -> dict:
        """An exception whose __str__ raises."""

        class Weird(Exception):
            def __str__(self) -> str:
                raise ValueError("no text")

        raise Weird()

    @reg.tool(timeout_s=2)
    async def returns_a_coroutine() -> object:
        """An async tool returning another coroutine instead of its value."""

        async def inner() -> dict:
            return {"status": "shipped"}

        return inner()

    return reg


@pytest.mark.parametrize(
    ("tool", "outcome"),
    [
        ("exits", "SystemExit"),
        ("interrupts", "KeyboardInterrupt"),
        ("booms", "boom"),
        ("self_referencing", "..."),
        ("unprintable_error", "Weird"),
        ("returns_a_coroutine", "shipped"),
    ],
)
async def test_a_tool_that_misbehaves_is_one_outcome_and_the_engine_goes_on(tool, outcome, caplog):
    from test_va_tool_faults import Harness

    h = Harness(_misbehaving_tools())
    call_id = h.call(tool, {})
    for _ in range(50):
        await asyncio.sleep(0)
    outcomes = [
        e
        for e in h.ledger.entries
        if getattr(e, "call_id", "") == call_id and e.type != "ToolCallStarted"
    ]
    assert len(outcomes) == 1, outcomes
    assert outcome in json.dumps(getattr(outcomes[0], "result", None)) + str(
        getattr(outcomes[0], "error", "")
    )
    assert not [r for r in caplog.records if r.exc_info]  # no traceback in the log
    # the engine still runs calls afterwards
    later = h.call("returns_a_coroutine", {})
    for _ in range(50):
        await asyncio.sleep(0)
    assert any(
        getattr(e, "call_id", "") == later and e.type == "ToolCallResolved"
        for e in h.ledger.entries
    )


def test_a_generator_is_refused_as_a_tool_when_it_is_registered():
    reg = ToolRegistry()
    with pytest.raises(TypeError, match="generator cannot be a tool"):

        @reg.tool()
        async def streams() -> Any:
            """Yields."""
            yield 1


# ----------------------------------------------------- card numbers in forms not tried before


@pytest.mark.parametrize(
    "text",
    [
        "card 4111\u20131111\u20131111\u20131111",  # en dashes (Whisper's typography)
        "card 4111_1111_1111_1111",
        "IBAN DE89370400440532013000",  # glued: 20 digits after the letters
        "IBAN GB82 WEST 1234 5698 7654 32",
        "my social is 123-45-6789",
        "card 4111, uh, 1111 1111 1111",  # a hesitation inside the number
    ],
)
def test_account_numbers_in_other_forms_are_masked(text):
    from ledger import redact

    masked = redact(text)
    assert "[redacted" in masked
    assert not re.search(r"\d{5,}|\d{3,}\D{1,3}\d{2,}\D{1,3}\d{3,}", masked), masked


def test_dates_times_and_short_numbers_stay_readable():
    from ledger import redact

    for text in ("on 2024-01-15 at 10", "order 4417 on 12/05/2024", "AB12 PLEASE CALL ME",
                 "call CA00000000000000000000000000000001"):  # a call SID is no IBAN  # fmt: skip
        assert redact(text) == text


_WORDS = "zero one two three four five six seven eight nine".split()


@st.composite
def _card_read_in_pieces(draw: st.DrawFn) -> tuple[str, list[str]]:
    card = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=16, max_size=16)))
    cuts = sorted(draw(st.sets(st.integers(1, 15), max_size=6)))
    pieces = [card[a:b] for a, b in zip([0, *cuts], [*cuts, 16], strict=False)]
    said = []
    for i, piece in enumerate(pieces):
        spelled = draw(st.booleans())
        body = " ".join(_WORDS[int(c)] for c in piece) if spelled else piece
        lead = draw(st.sampled_from(["", "and ", "uh, ", "then "])) if i else "my card is "
        said.append(lead + body + draw(st.sampled_from(["", ".", ","])))
    return card, said


@settings(max_examples=150, deadline=None)
@given(_card_read_in_pieces())
def test_a_card_read_over_several_utterances_is_masked_in_the_file(tmp_path_factory, case):
    """Whatever the pieces (digits or words), the session file shows at most MIN_DIGITS - 1
    of the card's digits in the clear, plus the last four that a mask keeps."""
    from fsm import ManualClock
    from ledger import JsonlSink, Ledger, load_jsonl
    from ledger import entries as le
    from ledger.redact import MIN_DIGITS
    from voice_agent.phone.numbers import spoken_digits

    card, said = case
    path = tmp_path_factory.mktemp("s") / "s.jsonl"
    ledger = Ledger("s", ManualClock(), sinks=[JsonlSink(path)])
    for turn, text in enumerate(said, 1):
        ledger.append(le.UserUtterance(turn_id=turn, text=text, final=True))
        rid = f"r{turn}"
        ledger.append(le.LlmRequestStarted(response_id=rid, reason="user_turn", mode="async"))
        ledger.append(le.AgentTextPlanned(response_id=rid, text="Go on."))
        ledger.append(le.LlmResponseFinished(response_id=rid, finish_reason="stop"))
    ledger.close()
    written = [e.text for e in load_jsonl(path) if e.type == "UserUtterance"]
    # digits readable in the file: in the clear, or kept by a mask ("****1111")
    shown = "".join(
        spoken_digits(t.replace("[redacted]", " ").replace("****", " ")) for t in written
    )
    assert len(shown) <= MIN_DIGITS - 1, (said, written)
    assert [e.text for e in ledger.entries if e.type == "UserUtterance"] == said  # memory: raw


# ------------------------------------------------------- an answer cut at max_tokens


@pytest.mark.parametrize(
    "script",
    [
        # the server stops at its token limit mid-sentence (and never sends [DONE])
        [("headers",), ("role",), *words("Your order has shipped and"), ("finish", "length"),
         ("eof",)],
        # one gigantic token: the client's own cap cuts it
        [("headers",), ("role",), ("text", "A" * 200_000), ("finish", "stop"), ("done",)],
    ],
    ids=["server-length", "client-cap"],
)  # fmt: skip
def test_an_answer_cut_mid_sentence_is_closed_for_the_caller(script):
    from voice_agent.config import AgentConfig

    call = run_call(then_answer(script), ["Where is my order?", "When do you open?"])
    heard = [text for _, text in call.heard(0)]
    assert heard[-1] == AgentConfig().cut_off_phrase
    assert any("cut at max_tokens" in e.text for e in call.entries("Note"))
    assert call.heard(1)[-1][1] == "We open at nine."


def test_an_answer_cut_after_a_whole_sentence_needs_no_closing():
    from voice_agent.config import AgentConfig

    script = [("headers",), ("role",), *words("It has shipped."), ("finish", "length"), ("done",)]
    call = run_call(then_answer(script), ["Where is my order?"])
    assert AgentConfig().cut_off_phrase not in [text for _, text in call.heard(0)]


# --------------------------------------------------------- secrets in configuration errors


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("VOICE_AGENT__LLM__BASE_URL", "ftp://bob:Hunter2Secret@llm.example/v1"),
        ("VOICE_AGENT__LLM__BASE_URL", "grpc://llm.example/v1?api-key=Hunter2Secret"),
        ("VOICE_AGENT__LLM__BASE_URL", "llm.example/v1?token=Hunter2Secret&x=1"),
    ],
)
def test_a_configuration_error_never_echoes_a_secret(monkeypatch, capsys, env, value):
    from voice_agent.cli import main

    monkeypatch.setenv(env, value)
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration" in err
    assert "Hunter2Secret" not in err


# -------------------------------------------- a model that trickles words, never a sentence


def test_a_model_trickling_words_without_a_sentence_is_apologised_for_at_its_patience():
    # A word every 1.9 s is a sign of life (a model slowed by a busy machine looks the
    # same), so the 8 s deadline of a dead endpoint does not apply; the patience does:
    # nothing speakable for llm_patience_s (30 s) is apologised for. The text output has
    # printed the words, so no hold phrase may go inside their sentence (hold9: the speech
    # output takes such words back and holds the line before them, see
    # test_va_hold_phrases.test_a_model_trickling_words_gets_holds_before_its_words).
    from voice_agent.config import AgentConfig

    trickle: list = []
    text = "Your order with the blue kettle and the two mugs and the red toaster and the"
    for step in words(text + " green lamp and the grey rug and the white clock is"):
        trickle += [("sleep", 1.9), step]  # a word every 1.9 s: alive, but nothing to say
    script = [("headers",), ("role",), *trickle, ("finish", "stop"), ("done",)]
    call = run_call(then_answer(script), ["Where is my order?", "When do you open?"])
    heard = call.heard(0)
    assert heard[-1] == (AgentConfig().llm_patience_s, APOLOGY)  # was: at the 8 s deadline
    # one hold before the first word (at 1.9 s), none inside the sentence after it
    assert [t for t, text in heard if text in HOLDS] == [1.5]
    assert call.heard(1)[-1][1] == "We open at nine."
