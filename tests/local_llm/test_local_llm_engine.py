"""The engine on the real 0.5B model: the low-level decoding path and its fallback."""

import asyncio
import contextlib
import json
from collections.abc import Iterator

import pytest
import pytest_asyncio
from grammar_helpers import grammar_accepts

from voice_agent.local_llm import resolve_model, sampling
from voice_agent.local_llm.chat_format import render_messages
from voice_agent.local_llm.engine import _DRAFT_TOKENS, LlamaEngine, SamplingParams
from voice_agent.local_llm.grammar import build_tool_grammar, calls_grammar, choice_grammar
from voice_agent.local_llm.output_parser import TextDelta, ToolCallFinished, ToolCallStreamParser
from voice_agent.local_llm.sampling import SamplerInitError, TokenSampler

pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")


@contextlib.contextmanager
def _evaluations(engine: LlamaEngine) -> Iterator[list[list[int]]]:
    """Every batch of tokens the model evaluates inside the block, in order."""
    evaluated: list[list[int]] = []
    llama = engine._llama
    real_eval = llama.eval

    def logged_eval(tokens: list[int]) -> None:
        evaluated.append(list(tokens))
        real_eval(tokens)

    llama.eval = logged_eval
    try:
        yield evaluated
    finally:
        del llama.eval


pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Get the status of an order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "set_quantity",
            "description": "Change how many of an item are in the basket",
            "parameters": {
                "type": "object",
                "properties": {"item": {"type": "string"}, "count": {"type": "integer"}},
                "required": ["item", "count"],
            },
        },
    },
]
SYSTEM = {"role": "system", "content": "You are a customer service agent for an online shop."}
QUESTIONS = [
    "What is the status of order 12345?",
    "Please put three blue mugs in my basket.",
    "Do you ship to Canada?",
    "Check orders A-1 and B-2 for me.",
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine():
    engine = LlamaEngine.load(resolve_model("qwen2.5-coder-0.5b-instruct-q4_k_m"), "qwen", 2, 2048)
    engine.force_text = True  # off by default (see LlamaEngine.force_text); tested here
    yield engine
    engine.close()


def _prompt(question: str) -> str:
    return render_messages([SYSTEM, {"role": "user", "content": question}], tools=TOOLS)


async def _generate(engine, prompt, grammar, **sampling):
    pieces: list[str] = []

    async def on_text(piece: str) -> bool:
        pieces.append(piece)
        return True

    stats = await engine.generate(prompt, SamplingParams(**sampling), grammar, on_text)
    return "".join(pieces), stats


def _grammar_accepts(engine, grammar: str, text: str, complete: bool) -> bool:
    return grammar_accepts(engine._llama, grammar, text, complete=complete)


def _calls(text: str) -> tuple[str, list[tuple[str, str]]]:
    parser = ToolCallStreamParser(bare_json_calls=True)
    events = parser.feed(text) + parser.finish()
    said = "".join(e.text for e in events if isinstance(e, TextDelta))
    return said, [(e.name, e.arguments) for e in events if isinstance(e, ToolCallFinished)]


async def test_the_checker_rejects_text_outside_the_grammar(engine):
    grammar = build_tool_grammar(TOOLS)
    assert _grammar_accepts(
        engine, grammar, '{"name": "get_order_status", "arguments": {"order_id": "1"}}', True
    )
    assert not _grammar_accepts(engine, grammar, '{"name": "nope", "arguments": {}}', True)
    assert not _grammar_accepts(engine, grammar, "Sure `x`", False)
    assert not _grammar_accepts(
        engine, grammar, '{"name": "get_order_status", "arguments": {', True
    )


async def test_low_level_path_is_used_and_every_reply_parses_under_the_grammar(engine):
    assert engine.decode_path == "lowlevel"
    grammar = build_tool_grammar(TOOLS)
    checks = resamples = calls_seen = 0
    # A high temperature makes the unconstrained draw stray from the grammar
    # often, so the resampling branch runs too.
    for seed, question in enumerate(QUESTIONS * 2):
        text, stats = await _generate(
            engine, _prompt(question), grammar, temperature=1.2, seed=seed, max_tokens=80
        )
        assert stats.extra["decode_path"] == "lowlevel"
        assert _grammar_accepts(engine, grammar, text, complete=stats.finish_reason == "stop"), text
        said, calls = _calls(text)
        assert not set("{<`") & set(said)
        for name, arguments in calls:
            args = json.loads(arguments)
            if name == "get_order_status":
                assert isinstance(args["order_id"], str)
            else:
                assert name == "set_quantity" and isinstance(args["count"], int)
        calls_seen += len(calls)
        checks += stats.extra["grammar_checks"]
        resamples += stats.extra["grammar_resamples"]
    assert calls_seen > 0
    assert 0 < resamples < checks / 2  # most drawn tokens pass the one-token check


async def test_same_seed_gives_the_same_reply_and_the_prompt_prefix_is_reused(engine):
    grammar = build_tool_grammar(TOOLS)
    prompt = _prompt(QUESTIONS[0])
    first, _ = await _generate(engine, prompt, grammar, temperature=0.7, seed=7, max_tokens=40)
    second, stats = await _generate(engine, prompt, grammar, temperature=0.7, seed=7, max_tokens=40)
    assert first == second
    assert stats.reused_prompt_tokens == stats.prompt_tokens
    other = _prompt(QUESTIONS[2])
    _, stats = await _generate(engine, other, None, temperature=0.7, seed=1, max_tokens=5)
    assert 0 < stats.reused_prompt_tokens < stats.prompt_tokens
    assert stats.completion_tokens == 5 and stats.finish_reason == "length"


async def test_stop_strings_and_caller_stop_end_the_low_level_loop(engine):
    prompt = render_messages(
        [SYSTEM, {"role": "user", "content": "Count from 1 to 20, comma separated."}]
    )
    text, stats = await _generate(engine, prompt, None, temperature=0.0, stop=("5",), max_tokens=80)
    assert "5" not in text and stats.finish_reason == "stop"
    pieces: list[str] = []

    async def two_pieces(piece: str) -> bool:
        pieces.append(piece)
        return len(pieces) < 2

    stats = await engine.generate(
        prompt, SamplingParams(temperature=0.0, max_tokens=80), None, two_pieces
    )
    # Nothing after the stop is passed on. The worker learns of it between two model
    # steps, and one step may keep a whole draft (greedy decoding drafts "3, 4, 5").
    assert len(pieces) == 2 and stats.finish_reason == "stop"
    assert stats.completion_tokens <= 3 + _DRAFT_TOKENS


async def test_falls_back_to_llama_generate_when_the_sampler_cannot_be_built(engine, monkeypatch):
    def broken(**_: object) -> None:
        raise SamplerInitError("simulated")

    monkeypatch.setattr("voice_agent.local_llm.engine.TokenSampler", broken)
    grammar = build_tool_grammar(TOOLS)
    text, stats = await _generate(
        engine, _prompt(QUESTIONS[0]), grammar, temperature=0.2, seed=1, max_tokens=60
    )
    assert stats.extra["decode_path"] == "generate"
    assert _grammar_accepts(engine, grammar, text, complete=stats.finish_reason == "stop")


async def test_generate_path_can_be_chosen_and_agrees_at_temperature_zero(engine):
    grammar = build_tool_grammar(TOOLS)
    prompt = _prompt(QUESTIONS[1])
    fast, _ = await _generate(engine, prompt, grammar, temperature=0.0, max_tokens=60)
    engine.decode_path = "generate"
    try:
        slow, stats = await _generate(engine, prompt, grammar, temperature=0.0, max_tokens=60)
    finally:
        engine.decode_path = "lowlevel"
    assert stats.extra["decode_path"] == "generate"
    assert fast == slow


def _sampler(engine, grammar: str | None, temperature: float = 0.0) -> TokenSampler:
    llama = engine._llama
    return TokenSampler(
        ctx=llama._ctx.ctx,
        vocab=llama._model.vocab,
        n_vocab=llama.n_vocab(),
        temperature=temperature,
        top_k=40,
        top_p=1.0,
        min_p=0.0,
        seed=1,
        grammar=grammar,
        probe=engine._probe,
    )


async def test_a_rejected_draw_is_drawn_again_from_the_top_candidates(engine, monkeypatch):
    # The grammar bans the letter the model's greedy reply starts with: the draw is
    # rejected and drawn again from the few hundred candidates of highest logit, with the
    # token the grammar applied to the whole vocabulary gives (greedy, and sampled with a
    # seed: the chain keeps its top-k either way).
    prompt = render_messages([SYSTEM, {"role": "user", "content": "Say hello to me."}], None)
    await engine.next_token_probability(prompt, "x")  # the prompt's logits are live
    free = _sampler(engine, None)
    try:
        wanted = engine._llama.detokenize([free.sample()]).decode().strip()
    finally:
        free.close()
    assert wanted[:1].isalpha()
    grammar = f"root ::= [^{wanted[0].upper()}{wanted[0].lower()} ] [a-zA-Z ,.!]*"
    for temperature in (0.0, 0.7):
        drawn = {}
        for top in (sampling.RESAMPLE_TOP, engine._llama.n_vocab()):
            monkeypatch.setattr(sampling, "RESAMPLE_TOP", top)
            sampler = _sampler(engine, grammar, temperature=temperature)
            try:
                drawn[top] = sampler.sample()
                assert sampler.grammar_resamples == 1
                checked = sampler.candidates_checked
            finally:
                sampler.close()
            if top < engine._llama.n_vocab():
                assert checked == top  # never the whole vocabulary
        assert len(set(drawn.values())) == 1, temperature
        text = engine._llama.detokenize([next(iter(drawn.values()))]).decode().strip()
        assert not text.lower().startswith(wanted[0].lower())


async def test_forced_text_is_what_the_grammar_alone_admits_next(engine):
    assert engine._probe is not None
    sampler = _sampler(engine, 'root ::= "{\\"city\\": \\"" [a-z]+ "\\"}" ( "\\n<end>" | "!" )')
    try:
        assert sampler.forced_text() == '{"city": "'
        assert sampler.forced_text() == '{"city": "'  # not advanced until accepted
        sampler.accept_text('{"city": "')
        assert sampler.forced_text() == ""  # a letter of the city: the model's choice
        sampler.accept(engine.tokenize("x")[0])
        assert sampler.forced_text() == ""  # another letter or the closing quote
        sampler.accept(engine.tokenize('"')[0])
        assert sampler.forced_text() == "}"  # then a choice: "\n<end>" or "!"
    finally:
        sampler.close()
    for grammar, forced in (
        ('root ::= "order " ( "4417" | "4471" )', "order 44"),
        ('root ::= "ab" "c"?', "ab"),  # the reply may end after "ab"
        ('root ::= "x" ( "y" | "\u00e9" )', "x"),  # a non-ASCII alternative is a choice too
    ):
        sampler = _sampler(engine, grammar)
        try:
            assert sampler.forced_text() == forced, grammar
        finally:
            sampler.close()


async def test_call_arguments_are_laid_out_as_the_template_writes_them(engine):
    grammar = calls_grammar(TOOLS, "set_quantity", 0)
    assert _grammar_accepts(engine, grammar, '{"item": "mug", "count": 3}}\n</tool_call>', True)
    for loose in (
        '{ "item": "mug", "count": 3}}\n</tool_call>',
        '{"item":"mug", "count": 3}}\n</tool_call>',
        '{"item": "mug" , "count": 3}}\n</tool_call>',
        '{"item": "mug", "count": 3 }}\n</tool_call>',
    ):
        assert not _grammar_accepts(engine, grammar, loose, True), loose


async def test_forced_text_is_evaluated_in_batches_and_the_calls_stay_well_formed(engine):
    prompt = _prompt("Please put three blue mugs in my basket, and check order 12345.")
    prompt += '<tool_call>\n{"name": "set_quantity", "arguments": '
    grammar = calls_grammar(TOOLS, "set_quantity", 2)
    probe = engine._probe
    text, stats = await _generate(engine, prompt, grammar, temperature=0.0, max_tokens=120)
    engine._probe = None  # every token sampled, as before forced text
    try:
        plain, plain_stats = await _generate(
            engine, prompt, grammar, temperature=0.0, max_tokens=120
        )
    finally:
        engine._probe = probe
    assert "forced_tokens" not in plain_stats.extra
    assert stats.extra["forced_tokens"] > 0
    # Forced tokens are evaluated, never sampled: fewer draws for the same kind of reply
    # (each run's last token is left to the model, which may join it to its choice).
    assert stats.extra["grammar_checks"] < stats.completion_tokens
    for reply, reply_stats in ((text, stats), (plain, plain_stats)):
        assert _grammar_accepts(
            engine, grammar, reply, complete=reply_stats.finish_reason == "stop"
        )
        _, calls = _calls('<tool_call>\n{"name": "set_quantity", "arguments": ' + reply)
        assert calls and calls[0][0] == "set_quantity"
        assert set(json.loads(calls[0][1])) == {"item", "count"}


async def test_the_next_request_reuses_the_call_the_model_wrote(engine):
    messages = [SYSTEM, {"role": "user", "content": "What is the status of order 12345?"}]
    prompt = render_messages(messages, TOOLS) + (
        '<tool_call>\n{"name": "get_order_status", "arguments": '
    )
    grammar = calls_grammar(TOOLS, "get_order_status", 0)
    text, stats = await _generate(engine, prompt, grammar, temperature=0.0, max_tokens=40)
    arguments = text[: text.rindex("}")]
    follow_up = _with_shipped_result(messages, arguments, content=None)
    _, next_stats = await _generate(engine, follow_up, None, temperature=0.0, max_tokens=1)
    # The cache holds the call as the template's text tokenizes it ('": ' then '{"' would
    # have ended the reuse at the prompt's last space): only what follows is evaluated.
    assert next_stats.reused_prompt_tokens >= stats.prompt_tokens + 3


def _with_shipped_result(messages: list, arguments: str, content: str | None) -> str:
    """The prompt after the model called get_order_status with `arguments` (the
    assistant turn's `content` as a client sends it) and got "shipped" back."""
    called = {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_order_status", "arguments": arguments},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped"}'}
    return render_messages([*messages, called, result], TOOLS)


async def _call_then_follow_up(engine, keep_own_tokens: bool):
    """A call written token by token (the product's default: nothing forced), then the
    request with its result; the follow-up's stats and the call step's."""
    messages = [SYSTEM, {"role": "user", "content": "What is the status of order 12345?"}]
    prompt = render_messages(messages, TOOLS) + (
        '<tool_call>\n{"name": "get_order_status", "arguments": '
    )
    grammar = calls_grammar(TOOLS, "get_order_status", 0)
    force_text, engine.force_text = engine.force_text, False
    keep, engine.keep_own_tokens = engine.keep_own_tokens, keep_own_tokens
    try:
        text, stats = await _generate(engine, prompt, grammar, temperature=0.0, max_tokens=40)
        arguments = text[: text.rindex("}")]
        follow_up = _with_shipped_result(messages, arguments, content="")
        reply, next_stats = await _generate(engine, follow_up, None, temperature=0.0, max_tokens=8)
    finally:
        engine.force_text = force_text
        engine.keep_own_tokens = keep
    return stats, next_stats, follow_up, reply


async def test_a_follow_up_keeps_the_call_as_the_model_wrote_it(engine):
    # Sampled token by token, the call does not tokenize as the template renders it
    # (' ' then '{"' after '"arguments":'; '"}}' then '\n'): by tokens alone the cache
    # ended at the call's first argument, and the call was evaluated again.
    by_tokens, by_tokens_next, _, by_tokens_reply = await _call_then_follow_up(engine, False)
    assert by_tokens_next.reused_prompt_tokens <= by_tokens.prompt_tokens
    stats, next_stats, follow_up, reply = await _call_then_follow_up(engine, True)
    # By text: everything the call step evaluated is kept (its prompt and the tokens it
    # wrote, but the last, which ends the call and is never evaluated).
    assert next_stats.reused_prompt_tokens >= stats.prompt_tokens + stats.completion_tokens - 2
    evaluated = next_stats.prompt_tokens - next_stats.reused_prompt_tokens
    assert evaluated < by_tokens_next.prompt_tokens - by_tokens_next.reused_prompt_tokens
    # The kept tokens spell the prompt's text: the model reads the same words.
    llama = engine._llama
    kept = llama.detokenize(list(llama._input_ids[: next_stats.reused_prompt_tokens]), special=True)
    assert follow_up.startswith(kept.decode("utf-8"))
    assert reply.strip() and by_tokens_reply.strip()


async def test_a_cache_holding_other_text_is_reused_only_where_the_tokens_agree(engine):
    await _generate(engine, _prompt("Check orders A-1 and B-2 for me."), None, max_tokens=1)
    other = _prompt("Check orders A-7 and B-2 for me.")
    expected = 0
    cached = list(engine._llama._input_ids[: engine._llama.n_tokens])
    for x, y in zip(cached, engine.tokenize(other), strict=False):
        if x != y:
            break
        expected += 1
    _, stats = await _generate(engine, other, None, temperature=0.0, max_tokens=1)
    assert stats.reused_prompt_tokens == expected
    assert stats.prompt_tokens == len(engine.tokenize(other))


async def test_a_next_token_probability_leaves_the_prompt_ready_to_decode(engine):
    prompt = _prompt("What is the status of order 12345?")
    p_call = await engine.next_token_probability(prompt, "<tool_call>")
    p_other = await engine.next_token_probability(prompt, "Sure")
    assert 0.0 <= p_other <= 1.0 and 0.0 <= p_call <= 1.0 and p_call + p_other <= 1.0 + 1e-9
    with _evaluations(engine) as evaluated:
        text, stats = await _generate(engine, prompt, None, temperature=0.0, max_tokens=1)
    # The logits the probability was read from give the first draw: nothing evaluated
    # before it (the one evaluation is the drawn token's, if any).
    assert stats.reused_prompt_tokens == stats.prompt_tokens
    assert sum(len(batch) for batch in evaluated) <= 1
    if p_call > 0.5:
        assert text.startswith("<tool_call>")
    if text.startswith("<tool_call>"):
        assert p_call >= p_other


async def test_each_sampled_step_records_its_likeliest_tokens_and_where_it_stood(engine):
    prompt = _prompt("What is the status of order 12345?") + '<tool_call>\n{"name": "'
    grammar = choice_grammar(["get_order_status", "set_quantity"])
    p_get = await engine.next_token_probability(prompt, "get")
    text, stats = await _generate(
        engine, prompt, grammar, temperature=0.0, max_tokens=8, alternatives=5
    )
    steps = stats.extra["alternatives"]
    sampled = stats.completion_tokens - stats.extra.get("forced_tokens", 0)
    assert len(steps) in (sampled, sampled + 1)  # (+1: the draw that ended the reply)
    assert steps[0]["after"] == ""
    assert all(text.startswith(step["after"]) for step in steps)
    for step in steps:
        probabilities = [p for _, p in step["tokens"]]
        assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
        assert 0.0 < sum(probabilities) <= 1.0 + 1e-6
    # the same model probability as `next_token_probability` (temperature 1, no grammar)
    first = dict((t, p) for t, p in steps[0]["tokens"])
    assert first.get("get", 0.0) == pytest.approx(p_get, abs=1e-4) or p_get < min(first.values())
    _, plain = await _generate(engine, prompt, grammar, temperature=0.0, max_tokens=8)
    assert "alternatives" not in plain.extra  # recorded only when asked


async def test_greedy_replies_decoded_with_drafts_are_the_replies_decoded_without(engine):
    # A call (its arguments' names are in the schema), then the answer from its result
    # (which copies the result's words): the same text, and some of it came from kept
    # drafts (fewer model steps).
    messages = [SYSTEM, {"role": "user", "content": "What is the status of order 12345?"}]
    call_prompt = render_messages(messages, TOOLS) + (
        '<tool_call>\n{"name": "get_order_status", "arguments": '
    )
    called = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_order_status", "arguments": '{"order_id": "12345"}'},
            }
        ],
    }
    result = {
        "role": "tool",
        "tool_call_id": "c1",
        "content": '{"status": "shipped", "estimated_delivery": "Friday, November 27"}',
    }
    answer_prompt = render_messages([*messages, called, result], TOOLS)
    grammar = calls_grammar(TOOLS, "get_order_status", 1)
    force_text, engine.force_text = engine.force_text, False
    speculate = engine.speculate
    kept = 0
    try:
        for prompt, step_grammar in ((call_prompt, grammar), (answer_prompt, None)):
            replies = []
            for drafts in (False, True, True):  # the second run may draft from the first
                engine.speculate = drafts
                text, stats = await _generate(
                    engine, prompt, step_grammar, temperature=0.0, max_tokens=40
                )
                replies.append((text, stats.completion_tokens))
                kept += stats.extra.get("drafted_kept", 0)
                assert drafts or "drafted" not in stats.extra
            # The same text; not always in the same tokens: a draft batch's logits differ
            # from a step's in the last bits (`LlamaEngine.speculate`), and in the whole
            # file's order (the module's engine shared, its cache left by the tests before)
            # the call came out in 19 tokens with drafts and 17 without (CI, session 11).
            assert [text for text, _ in replies] == [replies[0][0]] * 3
    finally:
        engine.force_text = force_text
        engine.speculate = speculate
    assert kept > 0


async def test_a_greedy_reply_is_decoded_without_drafts_by_default(engine):
    # Drafts cost more than they save on a CPU (a batch with every position's logits
    # against ~1 kept token in 3), so an engine as loaded decodes token by token, even
    # where the reply could copy its prompt.
    assert not engine.speculate
    prompt = _prompt("Please repeat exactly: one two three four five six seven eight.")
    _, stats = await _generate(engine, prompt, None, temperature=0.0, max_tokens=30)
    assert stats.completion_tokens > 3
    assert "drafted" not in stats.extra


async def test_drafts_never_run_past_the_context(engine):
    # A repeating prompt (drafts all the way) that leaves a few tokens of room.
    unit = "one two three four five six seven eight. "
    per_unit = len(engine.tokenize(unit * 10)) / 10
    prompt = unit * int((engine.n_ctx - 12) / per_unit)
    room = engine.n_ctx - len(engine.tokenize(prompt))
    assert 0 < room < 80
    speculate, engine.speculate = engine.speculate, True
    try:
        _, stats = await _generate(engine, prompt, None, temperature=0.0)
    finally:
        engine.speculate = speculate
    assert stats.completion_tokens <= room
    assert stats.extra.get("drafted", 0) > 0


async def test_a_sampled_reply_is_never_drafted(engine):
    prompt = _prompt("What is the status of order 12345?")
    _, stats = await _generate(engine, prompt, None, temperature=0.7, max_tokens=20, seed=3)
    assert "drafted" not in stats.extra


async def test_nothing_inside_a_tag_is_forced(engine):
    # A call that may be followed by another: the closing and opening tags are the
    # model's own tokens (forced as '<' '/tool' '_call', the 1.5B went on with calls it
    # was never asked for), the JSON between them is forced.
    prompt = _prompt("Check orders A-1 and B-2 for me.")
    prompt += '<tool_call>\n{"name": "get_order_status", "arguments": '
    grammar = calls_grammar(TOOLS, "get_order_status", 2)
    llama = engine._llama
    with _evaluations(engine) as evaluated:
        text, stats = await _generate(engine, prompt, grammar, temperature=0.0, max_tokens=80)
    assert stats.extra["forced_tokens"] > 0
    pieces = [llama.detokenize(batch).decode("utf-8", "replace") for batch in evaluated[1:]]
    for piece in pieces:
        if "<" in piece:  # a tag's first character is always a batch of its own
            assert piece.startswith("<") and len(evaluated[pieces.index(piece) + 1]) == 1
    assert any(p.startswith("<") for p in pieces)  # the model did write a tag
    assert _grammar_accepts(engine, grammar, text, complete=stats.finish_reason == "stop")


async def test_a_prefill_leaves_only_the_rest_of_the_next_prompt_to_evaluate(engine):
    from voice_agent.local_llm.chat_format import tool_results_head

    messages = [SYSTEM, {"role": "user", "content": "What is the status of order 12345?"}]
    calls = [("c1", "get_order_status", '{"order_id": "12345"}')]
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_order_status", "arguments": calls[0][2]},
            }
        ],
    }
    result = {
        "role": "tool",
        "tool_call_id": "c1",
        "content": json.dumps({"status": "resolved", "result": {"status": "shipped"}}),
    }
    follow_up = render_messages([*messages, assistant, result], TOOLS, readable_results=True)
    head = tool_results_head(messages, TOOLS, calls)
    head_tokens = len(engine.tokenize(head))
    # Something else in the cache first: the prefill's work is the conversation's new part.
    await _generate(engine, _prompt(QUESTIONS[2]), None, temperature=0.0, max_tokens=1)
    engine.prefill_soon(head)
    await asyncio.sleep(0)  # the reply has ended: the prefill starts (takes the lock)
    # A request that comes while the prefill runs waits for it, then reuses it.
    _, stats = await _generate(engine, follow_up, None, temperature=0.0, max_tokens=1)
    assert stats.reused_prompt_tokens >= head_tokens - 2
    assert stats.prompt_tokens - stats.reused_prompt_tokens < stats.prompt_tokens - head_tokens + 3
    assert await engine.prefill(head) <= 1  # already there: nothing (or the last token) again
