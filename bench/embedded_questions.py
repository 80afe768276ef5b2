"""Benchmark: does the embedded model handle a caller's questions? (issue 11)

Usage::

    python bench/embedded_questions.py [--models 1.5b,0.5b] [--split tune,heldout,fresh,unseen|all]
        [--server-code DIR] [--compare DIR] [--repeat N] [--json OUT] [--only ID,ID]
        [--tool-latency-ms MS]

For each model it starts the embedded OpenAI-compatible server
(`LocalLlmServer`), then asks every question of ``bench/questions/questions.yaml``
in a fresh conversation through the product's own streaming client
(`voice_agent.llm.LlmClient`), with the product's system prompt and the
question's tool set (``bench/questions/tools.yaml``; ``demo`` is
`voice_agent.demo_tools`). Tool calls are executed at once (no simulated
latency, so the times are the model's) and their outcomes are given back the
way the engine renders an outcome that arrived before the next request
(``{"status": "resolved", "result": ...}``); the model is asked again until
it answers without calling (at most 4 requests per question).

Scores per question (see `score`):

- ``calls_ok``: the calls made are exactly the expected ones (name and
  normalised arguments; order-free; a repeated identical call is not counted twice);
- ``narration``: the spoken text names a tool or describes a call;
- ``preamble``: the spoken text announces an answer instead of giving it ("Sure,
  here's the answer:", "Here is the information you asked for."): the model echoing
  its own note. Not a narration (no tool or call is named), but a defect the caller
  hears: counted apart (``preambles``) and the answer is not right;
- ``invented``: the spoken text states a number that is in neither the
  caller's words nor a tool result, or states a fact (status, hours, day,
  amount) although no tool result was in the context, or says a quantity of a thing
  a result counts that no result gives it ("3 bookshelf items" for "2 bookshelf":
  `spoken_quantities`) (``invented_facts``);
- ``invented_claim``: the spoken text claims a state no tool result in the context
  supports ("has been sent out" for an order packed and waiting), or tells a write's
  outcome wrongly (a cancel that ran told as "I can cancel it"); see `spoken_claims`
  (``invented_claims``, its own column; such an answer is not right);
- ``ungrounded_write``: a write call ran that the question did not ask for
  with those arguments;
- ``answer_ok``: the answer does what the question needs (carries each
  result's fact; says it cannot; asks for what is missing; says something).

Times per question (ms, from the client): ``first_token_ms`` (request sent
-> first content or tool-call delta of the first request), ``first_speech_ms``
(-> first spoken text of the turn, any request), ``first_audio_ms`` (-> the
product's speech output has its first chunk to synthesise: the text of each
response goes through the same `SentenceChunker`, with the same first-chunk
rule, that `voice_agent.voice.output.AudioSpeechOutput` uses, so a first
chunk may end at a comma), ``first_sentence_ms`` (-> the first sentence is
complete, ``[.!?]`` then a space or the end: the figure sessions 3 and 4
reported as first audio, kept for comparison) and ``answer_ms`` (-> end of
the last request). ``--server-code DIR`` runs the server (and takes the
prompt) from another checkout, e.g. the code before a change; both runs
should happen on the same machine load (compare ratios).

``--compare DIR`` starts a second, "before" server from that checkout (e.g. a
``git worktree add --detach`` of the commit before a change) beside this one
and asks each question of both back to back (the order alternating), so each
pair sees the same load. It reports, per question kind, the median of the
paired after - before differences in ms of each time (first audio is
``first_audio_ms``), and the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import inspect
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # its sibling modules, by name

from spoken_claims import invented_claims  # noqa: E402
from spoken_quantities import misstated_quantities  # noqa: E402

from voice_agent.config import LlmConfig  # noqa: E402
from voice_agent.llm import LlmClient, StreamFinished, TextDelta, ToolCallReady  # noqa: E402

QUESTIONS = ROOT / "bench" / "questions" / "questions.yaml"
TOOLS = ROOT / "bench" / "questions" / "tools.yaml"
MODELS = {
    "1.5b": "qwen2.5-coder-1.5b-instruct-q4_k_m",
    "0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m",
}
#: The question splits: `tune` may be looked at while improving the model path;
#: `heldout` (session 2), `fresh` (committed before session 3 changed anything),
#: `unseen` (committed before any of its results was seen) and `recheck` (session 4,
#: the lead's, never run by whoever tunes the model path) and `recheck5` (session 5, the
#: same) and `recheck6` ... `recheck15` (one per session, the same; session 11 also wrote
#: `recheck11b` after running `recheck11`) are run for figures only; once reported, a
#: session's set is open, and the next session writes its own first. `probe8` (session 8,
#: right8's own phrasings, written before that session's changes) is open like `tune`, and so
#: are `probe9` (session 9) and `probe10` (session 10, decide10's, written first).
SPLITS = (
    "tune",
    "heldout",
    "fresh",
    "unseen",
    "recheck",
    "recheck5",
    "recheck6",
    "recheck7",
    "probe8",
    "recheck8",
    "recheck9",
    "probe9",
    "probe10",
    "probe10a",
    "recheck10",
    "recheck11",
    "recheck11b",
    "recheck12",
    "recheck13",
    "recheck14",
    "errors15",
    "recheck15",
)
#: The lead's blind re-check set of the current session: the step-tracing benches refuse it.
BLIND_SPLIT = "recheck15"
#: Requests per question at most: the question, up to two rounds of results, an answer.
MAX_REQUESTS = 4
#: The demo tools' fact fields (their results are computed by the real functions).
DEMO_FACTS = {"get_order_status": "status", "get_store_hours": "hours", "schedule_callback": "time"}

_NUMBER_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11",
    "twelve": "12",
}  # fmt: skip
_NARRATION = re.compile(
    r"\b(function|tool|api|json|arguments?|call(?:ing)? the|get[_ ]\w+[_ ]\w+|the caller'?s?)\b"
    r"|_|[{}<>]",
    re.IGNORECASE,
)
_CANNOT = re.compile(
    r"\b(can ?not|can't|cannot|unable|not able|don't have|do not have|isn't something|"
    r"not something|no way to|don't know|do not know|not possible|outside)\b",
    re.IGNORECASE,
)
_ASKS = re.compile(
    r"\?|\b(please (provide|give|tell|share|confirm)|could you (give|tell|provide)|"
    r"may i have|i need|i'll need|i will need|let me know)\b",
    re.IGNORECASE,
)
#: A refusal: an answer to a request that needs details must not be one.
_REFUSES = re.compile(
    r"\b(can ?not|can't|unable to|not able to) (help|assist|do that|do this)\b", re.IGNORECASE
)
#: A status that says something is not done yet, and the words that say the same of it
#: without the status word: told a refund is "pending", "The refund for order 2290
#: has not been paid yet." is right (bench b10, h16; session 7). Any such status of
#: any tool, not one question's.
_NOT_DONE_FACT = re.compile(
    r"pending|processing|in progress|awaiting \w+|not (?:yet )?\w+(?: yet)?", re.IGNORECASE
)
_NOT_DONE_YET = re.compile(
    r"\b(?:not|n't|never)\b[^.!?]{0,40}\byet\b|\bstill (?:being )?(?:processed|pending|"
    r"in progress)\b|\bbeing processed\b|\bin progress\b|\bawaiting\b|\bpending\b",
    re.IGNORECASE,
)
#: An answer to a lookup or write that failed says so ("I couldn't find that order", "I
#: can't find a refund for your order 7716"), and is not a refusal to help with the
#: request or a "can't do that here". ("n't" ends a word: ``\bn't`` never matched "can't", bench o08, session 14.)
_TELLS_FAILURE = re.compile(
    r"^(?!.*\b(can ?not|can't|unable to|not able to) (help|assist|do that)\b).*"
    r"(\b(no|not|cannot|unable|invalid|wrong)\b|n't\b)",
    re.IGNORECASE | re.DOTALL,
)
_NOTHING = re.compile(r"\b(nothing|zero|no balance|not owe|don't owe|do not owe)\b", re.I)
_SENTENCE_END = re.compile(r"[.!?](\s|$)")
#: Speech that announces an answer rather than giving it: "here's / here is" the answer,
#: the information, the details, what I found; "the answer (I|you) found"; "I found the
#: answer". What a model writes when it echoes a note telling it to tell "the answer".
_PREAMBLE = re.compile(
    r"\bhere(?:'s| is| are)\b[^.!?]{0,30}?\b(?:answers?|information|info|details|results?|"
    r"updates?|what (?:i|we) found)\b|\bthe answers? (?:i|you|we) found\b|"
    r"\b(?:i|we) (?:have )?found the answers?\b",
    re.IGNORECASE,
)
_CLAIMS_DONE = re.compile(
    r"\b(has|have|'ve|is|was|been|are) (now |successfully |already )?(been )?"
    r"(cancel+ed|refunded|changed|updated|opened|created|processed|issued)\b",
    re.IGNORECASE,
)
_FACT_WORDS = re.compile(
    r"\b(shipped|delivered|out for delivery|processing|delayed|monday|tuesday|wednesday|"
    r"thursday|friday|saturday|sunday|o'clock|\$|dollars?|balance is|paid|pending)"
    # a clock time: "3 pm", "10am", "a.m." (not the word "am": "No, I am not a person."
    # was counted as a stated time until session 9)
    r"|(?<=\d)\s*[ap]\.?m\b|\b[ap]\.m\.",
    re.IGNORECASE,
)
#: The agent says it is a person ("Yes, I am a person.", "I'm a real human"): a false fact
#: about itself, counted as invented (bench f24, session 8). "I'm not a person" is not.
_CLAIMS_PERSON = re.compile(
    r"\b(?:i am|i'm|yes,? i am|this is)\s+(?:a\s+|an\s+)?(?:real\s+|actual\s+|live\s+)?"
    r"(?:person|human(?: being)?|man|woman|people)\b",
    re.IGNORECASE,
)


# --------------------------------------------------------------------- tools


@dataclass
class BenchTool:
    name: str
    kind: str
    schema: dict[str, Any]
    fact: str | None
    run: Any  # async (arguments) -> result


def _fixture_tool(spec: dict[str, Any]) -> BenchTool:
    for name, prop in (spec["parameters"].get("properties") or {}).items():
        # an unquoted YAML flow value with a comma ("{description: a, b}") becomes a
        # cut description plus a key without a value: a schema nobody meant
        broken = [key for key, value in prop.items() if value is None]
        if broken:
            raise ValueError(f"{TOOLS}: {spec['name']}.{name} has keys without a value: {broken}")
    results = {str(k): v for k, v in (spec.get("results") or {}).items()}

    async def run(arguments: dict[str, Any]) -> Any:
        key = next(iter(arguments.values()), "") if arguments else ""
        result = dict(results.get(_digits(str(key)) or str(key), spec.get("default", {})))
        if spec.get("echo"):
            result = {**arguments, **result}
        return result

    schema = {
        "type": "function",
        "function": {
            "name": spec["name"],
            "description": spec["description"],
            "parameters": spec["parameters"],
        },
    }
    return BenchTool(spec["name"], spec["kind"], schema, spec.get("fact"), run)


def held_for_confirmation(spec: Any, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The engine's answer to a call of a write that waits for the caller's yes (nothing
    runs: `PendingWrite.answer`, "awaiting confirmation" with the read-back), or None
    when the tool runs at once. Invalid arguments raise, as the engine fails them."""
    from voice_agent.confirmations import Confirmations

    if not spec.needs_confirmation:
        return None
    return Confirmations().hold("bench", spec, json.dumps(arguments), turn_id=0).answer()


def _demo_tools() -> list[BenchTool]:
    """The demo tools (voice_agent/demo_tools.py), without their simulated latency: the
    bench times the model alone. The call-back is held for the caller's yes."""
    from voice_agent import demo_tools

    demo_tools.LATENCY_S.update(dict.fromkeys(demo_tools.LATENCY_S, 0.0))
    tools = []
    for spec in demo_tools.registry:

        async def run(arguments: dict[str, Any], spec: Any = spec) -> Any:
            held = held_for_confirmation(spec, arguments)
            if held is not None:
                return held
            result = spec.fn(**spec.parse_arguments(json.dumps(arguments)))
            return await result if inspect.isawaitable(result) else result

        tools.append(
            BenchTool(spec.name, spec.kind, spec.openai_schema(), DEMO_FACTS.get(spec.name), run)
        )
    return tools


#: The phone profile's fact fields (the real tools' results; see voice_agent/phone/tools.py).
PHONE_FACTS = {"lookup_order": "status", "lookup_customer": "name"}
#: Where each tool set's system prompt comes from (the profile that offers those tools).
PROFILES = {"phone": ROOT / "configs" / "customer_service_phone.yaml"}


def _phone_tools() -> list[BenchTool]:
    """The phone profile's real tools on a fresh seeded SQLite database.

    A write that needs the caller's yes is answered as the engine answers it
    (`held_for_confirmation`: nothing runs); call control (transfer, hang-up)
    runs against a real `CallControl` whose requests are only collected.
    """
    import tempfile

    from voice_agent.call_control import CallControl
    from voice_agent.tools import ToolContext

    folder = tempfile.TemporaryDirectory(prefix="embedded-questions-")
    atexit.register(folder.cleanup)  # the database lives as long as the run
    os.environ["VOICE_AGENT_PHONE_DB"] = str(Path(folder.name) / "acme_support.sqlite")
    from voice_agent.phone import tools as phone

    requests: list[Any] = []
    tools = []
    for spec in phone.registry:

        async def run(arguments: dict[str, Any], spec: Any = spec) -> Any:
            held = held_for_confirmation(spec, arguments)
            if held is not None:
                return held
            parsed = spec.parse_arguments(json.dumps(arguments))
            ctx = ToolContext(
                call_id="bench", tool=spec.name, session_id="bench",
                idempotency_key=f"bench:{spec.name}:{json.dumps(parsed, sort_keys=True)}",
                call=CallControl(requests.append, call_id="bench"),
            )  # fmt: skip
            result = spec.fn(**spec.bind(parsed, ctx))
            return await result if inspect.isawaitable(result) else result

        tools.append(
            BenchTool(spec.name, spec.kind, spec.openai_schema(), PHONE_FACTS.get(spec.name), run)
        )
    return tools


def load_tool_sets() -> dict[str, list[BenchTool]]:
    data = yaml.safe_load(TOOLS.read_text())
    sets = {name: [_fixture_tool(t) for t in specs] for name, specs in data.items()}
    sets["demo"] = _demo_tools()
    sets["phone"] = _phone_tools()
    return sets


# ------------------------------------------------------------------- running


@dataclass
class Outcome:
    id: str
    split: str
    kind: str
    model: str
    spoken: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    #: results of the calls in the question's history (facts the answer may use)
    earlier_results: list[Any] = field(default_factory=list)
    first_token_ms: float | None = None
    first_speech_ms: float | None = None
    first_sentence_ms: float | None = None
    first_audio_ms: float | None = None
    answer_ms: float = 0.0
    requests: int = 0
    error: str | None = None
    calls_ok: bool = False
    narration: bool = False
    preamble: bool = False
    invented: bool = False
    invented_claim: bool = False
    ungrounded_write: bool = False
    answer_ok: bool = False
    why: list[str] = field(default_factory=list)


def _speech_chunker() -> Any:
    """The text chunker the product's speech output makes for each response."""
    from peripherals.text_chunker import SentenceChunker
    from voice_agent.voice.output import FIRST_CHUNK_CHARS

    return SentenceChunker(first_clause_after_chars=FIRST_CHUNK_CHARS)


async def _history(question: dict[str, Any], tools: dict[str, BenchTool]) -> list[dict[str, Any]]:
    """The conversation before the question: ``{user: text}``, ``{assistant: text}``, and
    ``{call: {name, args}}``, an earlier turn's call with its result as the engine renders
    it (the real tool is run: the result is the tool's own)."""
    messages: list[dict[str, Any]] = []
    for number, turn in enumerate(question.get("history") or []):
        ((role, value),) = turn.items()
        if role != "call":
            messages.append({"role": role, "content": value})
            continue
        call_id = f"history-{number}"
        arguments = json.dumps(value.get("args") or {})
        result = await tools[value["name"]].run(json.loads(arguments))
        messages.append({
            "role": "assistant", "content": "",
            "tool_calls": [{"id": call_id, "type": "function",
                            "function": {"name": value["name"], "arguments": arguments}}],
        })  # fmt: skip
        messages.append({
            "role": "tool", "tool_call_id": call_id,
            "content": json.dumps({"status": "resolved", "result": result}),
        })  # fmt: skip
    return messages


async def ask(
    client: LlmClient,
    system_prompt: str,
    tools: list[BenchTool],
    question: dict[str, Any],
    model: str,
    tool_latency_s: float = 0.0,
) -> Outcome:
    out = Outcome(question["id"], question["split"], question["kind"], model)
    by_name = {t.name: t for t in tools}
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
    messages += await _history(question, by_name)
    out.earlier_results = [
        json.loads(m["content"]).get("result") for m in messages if m["role"] == "tool"
    ]
    messages.append({"role": "user", "content": question["say"]})
    schemas = [t.schema for t in tools]
    started = time.monotonic()
    spoken: list[str] = []
    try:
        for _ in range(MAX_REQUESTS):
            out.requests += 1
            text, calls = "", []
            chunker = _speech_chunker()  # one per response, as the speech output makes it
            async for item in client.stream(messages, schemas):
                now = (time.monotonic() - started) * 1e3
                if isinstance(item, TextDelta) and out.first_audio_ms is None:
                    if chunker.push(item.text):
                        out.first_audio_ms = now
                if isinstance(item, TextDelta) and item.text.strip():
                    text += item.text
                    if out.first_speech_ms is None:
                        out.first_speech_ms = now
                    if out.first_token_ms is None:
                        out.first_token_ms = now
                    if out.first_sentence_ms is None and _SENTENCE_END.search(text):
                        out.first_sentence_ms = now
                elif isinstance(item, TextDelta):
                    text += item.text
                elif isinstance(item, ToolCallReady):
                    calls.append(item)
                    if out.first_token_ms is None:
                        out.first_token_ms = now
                elif isinstance(item, StreamFinished):
                    pass
            if out.first_audio_ms is None and chunker.flush():  # the response's end
                out.first_audio_ms = (time.monotonic() - started) * 1e3
            if text.strip():
                spoken.append(" ".join(text.split()))
                if out.first_sentence_ms is None:  # the reply ended without punctuation
                    out.first_sentence_ms = (time.monotonic() - started) * 1e3
            if not calls:
                break
            if tool_latency_s:
                # The calls' round trip (run together, as the engine runs them): the
                # server may use it (it evaluates the follow-up's known head meanwhile).
                await asyncio.sleep(tool_latency_s)
            assistant: dict[str, Any] = {"role": "assistant", "content": text, "tool_calls": []}
            tool_messages = []
            for call in calls:
                try:
                    arguments = json.loads(call.arguments or "{}")
                except json.JSONDecodeError:
                    arguments = {"_raw": call.arguments}
                out.calls.append({"name": call.name, "arguments": arguments})
                tool = by_name.get(call.name)
                if tool is None:
                    payload: dict[str, Any] = {"status": "failed", "error": "unknown tool"}
                else:
                    try:
                        result = await tool.run(arguments)
                        payload = {"status": "resolved", "result": result}
                        out.results.append({"name": call.name, "result": result})
                    except Exception as exc:  # a bad argument is an outcome the model sees
                        payload = {"status": "failed", "error": str(exc)}
                assistant["tool_calls"].append(
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                )
                tool_messages.append(
                    {"role": "tool", "tool_call_id": call.call_id, "content": json.dumps(payload)}
                )
            messages += [assistant, *tool_messages]
            if all(
                json.loads(m["content"]).get("result", {}).get("status") == "awaiting_confirmation"
                for m in tool_messages
            ):
                # The engine answers a held write silently (no follow-up request) and
                # reads it back to the caller itself.
                break
    except Exception as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    out.answer_ms = (time.monotonic() - started) * 1e3
    out.spoken = " ".join(spoken)
    score(out, question, by_name)
    return out


# ------------------------------------------------------------------- scoring


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _norm(value: Any) -> str:
    text = str(value).lower()
    spelled = _words_to_digits(text)  # "nine two eight six zero": the tools read words too
    if re.fullmatch(r"[\d\s,.\-]+", spelled) and len(_digits(spelled)) >= 3:
        return _digits(spelled)
    if _digits(text) and len(_digits(text)) >= 3 and not re.search(r"[a-z]{3,}", text):
        return _digits(text)
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def _words_to_digits(text: str) -> str:
    return re.sub(
        r"\b(" + "|".join(_NUMBER_WORDS) + r")\b",
        lambda m: _NUMBER_WORDS[m.group(1).lower()],
        text,
        flags=re.IGNORECASE,
    )


def _numbers(text: str) -> set[str]:
    """Digit runs (thousands separators removed, leading zeros stripped)."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", _words_to_digits(text))
    return {run.lstrip("0") or "0" for run in re.findall(r"\d+", text)}


def _list_sizes(value: Any) -> set[str]:
    """How many items each list in `value` holds ("two recent orders" for a list of two),
    also a list written as text ("71111 (delivered), 90875 (delivered)": two)."""
    sizes: set[str] = set()
    if isinstance(value, str) and "," in value:
        sizes.add(str(len([part for part in value.split(",") if part.strip()])))
    if isinstance(value, dict):
        for v in value.values():
            sizes |= _list_sizes(v)
    elif isinstance(value, list):
        sizes.add(str(len(value)))
        for v in value:
            sizes |= _list_sizes(v)
    return sizes


#: Capitalised words that name no looked-up thing (days, months, the caller's "I").
_NOT_NAMES = frozenset(
    "i monday tuesday wednesday thursday friday saturday sunday january february march "
    "april may june july august september october november december".split()
)


def _names(text: str) -> set[str]:
    """What `text` names: numbers of three digits or more, and capitalised words that do
    not start a sentence (a city, a street), lower-cased."""
    names = {n for n in _numbers(text) if len(n) >= 3}
    for match in re.finditer(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]+)\b", text.strip()):
        word = match.group(1).lower()
        if word not in _NOT_NAMES:
            names.add(word)
    return names


def named_elsewhere(spoken: str, context: str, looked_up: str) -> set[str]:
    """Names in `spoken` that the conversation (`context`) has but the calls and
    results (`looked_up`) do not: an answer about Orlando's hours that says "the
    Miami store" (the city the caller took back), or "the Boston store" for
    Providence's hours (the city of an earlier turn)."""
    said = {w.lower() for w in re.findall(r"[A-Za-z]+", spoken)} | _numbers(spoken)
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", looked_up)}
    digits = _digits(looked_up)
    return {n for n in _names(context) & said if n not in words and n not in digits}


def _content_words(text: str) -> list[str]:
    stop = {"the", "a", "an", "to", "of", "for", "on", "at", "in", "and", "is", "out", "yes"}
    return [w for w in re.findall(r"[a-z]+", text.lower()) if w not in stop]


def _result_notes(results: list[dict[str, Any]]) -> list[str]:
    """The `note` texts of the results: instructions to the agent, not for the caller."""
    return [
        str(r["result"]["note"])
        for r in results
        if isinstance(r.get("result"), dict) and isinstance(r["result"].get("note"), str)
    ]


def _internal_texts(tools: dict[str, BenchTool]) -> list[str]:
    """Text the agent is given and must never say: the model path's notes to itself
    and the tools' parameter descriptions ("the order number exactly as the caller
    gave it (digits or words)")."""
    from voice_agent.local_llm import respond

    texts = [v for k, v in vars(respond).items() if k.endswith("_NOTE") and isinstance(v, str)]
    for tool in tools.values():
        params = tool.schema.get("function", tool.schema).get("parameters") or {}
        for prop in (params.get("properties") or {}).values():
            if isinstance(prop, dict) and isinstance(prop.get("description"), str):
                texts.append(prop["description"])
    return texts


def _names_a_tool_in_words(spoken: str, tools: dict[str, BenchTool], caller: str) -> bool:
    """Whether `spoken` says a tool's name of two or more words with its underscores as
    spaces or run together ("schedule callback", "getorderstatus"), words the caller did
    not say: "you can use the following command: schedule callback from tomorrow" (spoken
    call s10, session 10) named no tool the other patterns know."""

    def flat(text: str) -> str:
        return " " + " ".join(re.findall(r"[a-z]+", text.lower())) + " "

    said, heard = flat(spoken), flat(caller)
    for name in tools:
        words = [w for w in name.lower().split("_") if w]
        if len(words) < 2:
            continue
        for form in (" ".join(words), "".join(words)):
            if f" {form} " in said and f" {form} " not in heard:
                return True
    return False


def _repeats_words_of(text: str, spoken: str, run: int = 6) -> bool:
    """Whether `spoken` holds `run` words in a row of `text`."""
    said = re.findall(r"[a-z']+", spoken.lower())
    told = " " + " ".join(re.findall(r"[a-z']+", text.lower())) + " "
    return any(f" {' '.join(said[i : i + run])} " in told for i in range(len(said) - run + 1))


def _reads_out(note: str, spoken: str) -> bool:
    """Whether `spoken` repeats most of `note` (at least 70 % of its words, 4 or more)."""
    words = re.findall(r"[a-z']+", note.lower())
    heard = set(re.findall(r"[a-z']+", spoken.lower()))
    return len(words) >= 4 and sum(w in heard for w in words) >= 0.7 * len(words)


def _failed(result: Any) -> bool:
    """A tool result that says the lookup or write did not succeed."""
    return isinstance(result, dict) and (bool(result.get("error")) or result.get("found") is False)


#: A negation just before a claim of a change takes it back ("has not yet been refunded").
_NEGATED_BEFORE = re.compile(r"\b(?:not|never|no longer)\b[^.!?]{0,20}$|n't\b[^.!?]{0,20}$")


def claims_done(spoken: str) -> bool:
    """Whether speech says a change was made (`_CLAIMS_DONE`) and does not negate it: "Your
    money has not yet been refunded" says none was (bench b10, session 7)."""
    return any(
        not _NEGATED_BEFORE.search(spoken[max(0, m.start() - 30) : m.start()])
        for m in _CLAIMS_DONE.finditer(spoken)
    )


def fact_heard(fact: Any, spoken: str, field_name: str = "") -> bool:
    """Whether `spoken` carries `fact`: its longest number(s), else most of its words."""
    if isinstance(fact, bool):
        return bool(re.search(field_name[:5], spoken, re.IGNORECASE))
    iso = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", str(fact).strip())
    if iso:  # "2026-11-27": "November 27th", "Friday" or the ISO text itself
        day = date(*map(int, iso.groups()))
        lowered = spoken.lower()
        said_day = str(day.day) in _numbers(spoken) and day.strftime("%B").lower() in lowered
        return said_day or day.strftime("%A").lower() in lowered or str(fact) in spoken
    if _NOT_DONE_FACT.fullmatch(str(fact).strip()) and _NOT_DONE_YET.search(spoken):
        return True  # "pending": "has not been paid yet" says it
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", str(fact))
    runs = [r.lstrip("0") or "0" for r in re.findall(r"\d+", text)]
    if runs and set(runs) == {"0"} and _NOTHING.search(spoken):
        return True  # "$0.00": "you owe nothing" says it
    if runs:
        longest = max(len(r) for r in runs)
        heard = {r for r in runs if len(r) == longest} & _numbers(spoken)
        # The day a number is on, in the same part of the fact, is part of it: a call
        # back booked for "Friday 10 am" told as "at 10 am" is not told (bench x07,
        # session 11); "10 am to 8 pm, Monday to Saturday" told as "10 am to 8 pm" is.
        said = set(re.findall(r"[a-z]+", spoken.lower()))
        days = {
            day
            for part in text.split(",")
            if heard & _numbers(part)
            for day in re.findall(r"[a-z]+", part.lower())
            if day in _DAY_NAMES
        }
        return bool(heard) and days <= said
    words = _content_words(text)
    # A fact word is heard as itself or inflected ("ship" in "shipped", "process" in
    # "processing"), never by a shared stem: "delivered" and "out for delivery" are
    # different statuses.
    stems = {_stem(w) for w in _content_words(spoken)}
    return bool(words) and sum(_stem(w) in stems for w in words) * 2 >= len(words)


#: Words that say which day a number is on.
_DAY_NAMES = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday today tomorrow tonight".split()
)


def _stem(word: str) -> str:
    return re.sub(r"(?<=\w{3})(ing|ed|es|s)$", "", word)


#: Words that carry nothing of a free-text value ("this evening at 6 pm" is
#: "evening 6 pm"): a time or an address taken from a run of the caller's words
#: keeps or drops them as the run falls.
_VALUE_FILLER = frozenset("a an the this at on in of by around about".split())


def _value_matches(expected: Any, actual: Any) -> bool:
    if expected == "*":  # free text (a reason, a summary): any non-empty value
        return bool(str(actual or "").strip())
    e, a = _norm(expected), _norm(actual)
    if e == a:
        return True
    # Free-text values (a time, an address): the expected words all said, in any form.
    ew = set(_words_to_digits(e).split()) - _VALUE_FILLER
    aw = set(_words_to_digits(a).split())
    return bool(ew) and ew <= aw | {"am", "pm"} and not re.fullmatch(r"\d+", e)


def _call_matches(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    if expected["name"] != actual["name"]:
        return False
    args = actual["arguments"]
    want = expected.get("args", {})
    # An optional argument left empty is the same as not given.
    given = {k for k, v in args.items() if v not in ("", None)}
    return set(want) == given and all(_value_matches(v, args.get(k)) for k, v in want.items())


def score(out: Outcome, question: dict[str, Any], tools: dict[str, BenchTool]) -> None:
    expected = question.get("calls") or []
    unique: list[dict[str, Any]] = []
    for call in out.calls:
        if call not in unique:
            unique.append(call)
    matched = [any(_call_matches(e, c) for c in unique) for e in expected]
    allowed = set(question.get("allow") or ())
    extra = [
        c
        for c in unique
        if not any(_call_matches(e, c) for e in expected) and c["name"] not in allowed
    ]
    out.calls_ok = all(matched) and not extra and out.error is None
    if not out.calls_ok:
        out.why.append(f"calls {unique} != expected {expected}")

    spoken = out.spoken
    if _NARRATION.search(spoken):
        out.narration = True
        out.why.append("narration")
    elif _names_a_tool_in_words(spoken, tools, question["say"]):
        out.narration = True
        out.why.append("names a tool in words")
    elif any(_reads_out(note, spoken) for note in _result_notes(out.results)):
        out.narration = True  # an instruction to the agent, read to the caller
        out.why.append("reads out a result's note")
    elif any(_repeats_words_of(text, spoken) for text in _internal_texts(tools)):
        out.narration = True  # "There is no answer to tell.", a parameter's description
        out.why.append("repeats the agent's own instructions")
    if _PREAMBLE.search(spoken):
        out.preamble = True
        out.why.append("announces an answer instead of giving it")

    history_texts = [
        t for turn in question.get("history") or [] for t in turn.values() if isinstance(t, str)
    ]
    history_calls = [
        t for turn in question.get("history") or [] for t in turn.values() if not isinstance(t, str)
    ]
    context = (
        question["say"] + " " + " ".join(history_texts) + " " + json.dumps(out.earlier_results)
    )
    grounded_numbers = (
        _numbers(context) | _numbers(json.dumps(out.results)) | _list_sizes(out.results)
    )
    invented_numbers = _numbers(spoken) - grounded_numbers
    if _CLAIMS_PERSON.search(spoken):
        out.invented = True
        out.why.append("says it is a person")
    elif invented_numbers:
        out.invented = True
        out.why.append(f"numbers not from the caller or a result: {sorted(invented_numbers)}")
    elif misstated := misstated_quantities(spoken, [out.results, out.earlier_results]):
        out.invented = True  # "3 bookshelf items" for "2 bookshelf" (recheck14 o15)
        out.why.append(f"quantities no result gives: {misstated}")
    elif (
        not out.results
        and not out.earlier_results
        and _FACT_WORDS.search(spoken)
        and question["answer"] != "ask"
    ):
        out.invented = True
        out.why.append("states a fact without any tool result")
    elif claims_done(spoken) and not any(
        tools.get(r["name"]) is not None
        and tools[r["name"]].kind == "write"
        and not (isinstance(r["result"], dict) and r["result"].get("status"))
        and r["name"] not in ("transfer_to_human", "end_call")
        for r in out.results
    ):
        out.invented = True  # "has been cancelled" when no change to the world was made
        out.why.append("says a change was made that no write made")

    claimed = invented_claims(
        spoken,
        out.results,
        out.earlier_results,
        {name for name, tool in tools.items() if tool.kind == "write"},
        out.calls,
        str(question.get("say", "")),
    )
    if claimed:
        out.invented_claim = True
        out.why += claimed

    for call in unique:
        tool = tools.get(call["name"])
        if tool is not None and tool.kind == "write" and call["name"] not in allowed:
            if not any(_call_matches(e, call) for e in expected):
                out.ungrounded_write = True
                out.why.append(f"write not asked for: {call}")

    answer = question["answer"]
    looked_up = [out.calls, out.results, history_calls, out.earlier_results]
    elsewhere = named_elsewhere(spoken, context, json.dumps(looked_up))
    if answer == "facts" and elsewhere:
        out.why.append(f"speaks of {sorted(elsewhere)}, which was not looked up")
    if answer == "facts":
        facts = question.get("facts")
        if facts is not None:
            ok = all(fact_heard(f, spoken) for f in facts)
        else:
            ok = bool(out.results)
            for result in out.results:
                field_name = tools[result["name"]].fact if result["name"] in tools else None
                field_name = question.get("fact_field", field_name)
                value = (
                    result["result"].get(field_name) if isinstance(result["result"], dict) else None
                )
                if field_name and value is not None and not fact_heard(value, spoken, field_name):
                    ok = False
                if _failed(result["result"]) and not _TELLS_FAILURE.search(spoken):
                    ok = False  # "I can't help with that." for "no account with that number"
        out.answer_ok = ok and out.calls_ok and not elsewhere
    elif answer == "pending":
        # A write waiting for the caller's yes: never said to be done.
        out.answer_ok = out.calls_ok and not claims_done(spoken)
    elif answer == "call":
        # The call is the answer (a transfer); words optional, but never a refusal ("I
        # am sorry, but I cannot help with that." after putting the caller through: f23,
        # session 9).
        out.answer_ok = out.calls_ok and not _REFUSES.search(spoken)
    elif answer == "cannot":
        out.answer_ok = not out.calls and bool(_CANNOT.search(spoken))
    elif answer == "ask":
        # A question, not a refusal with a question after it ("Sorry, I can't help
        # with that here. What else can I do for you?" asks nothing the request needs).
        out.answer_ok = (
            not any(tools[c["name"]].kind == "write" for c in unique if c["name"] in tools)
            and bool(_ASKS.search(spoken))
            and not _REFUSES.search(spoken)
        )
    else:
        # Small talk: said something, and not a refusal ("I can't help with that." to
        # "Lovely weather today, isn't it?").
        out.answer_ok = (
            not [c for c in out.calls if c["name"] not in allowed]
            and bool(spoken.strip())
            and not _REFUSES.search(spoken)
        )
    said = " ".join(re.findall(r"[a-z0-9']+", question["say"].lower()))
    echoed = len(said.split()) >= 4 and said in " ".join(re.findall(r"[a-z0-9']+", spoken.lower()))
    if echoed:
        out.why.append("repeats the caller's words")
    out.answer_ok = (
        out.answer_ok
        and not out.narration
        and not out.preamble
        and not out.invented
        and not out.invented_claim
        and not echoed
    )
    if not out.answer_ok:
        out.why.append("answer not right")


# ------------------------------------------------------------------- summary


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    n = len(outcomes)
    if not n:
        return {}

    def pct(flag: str) -> float:
        return round(100 * sum(getattr(o, flag) for o in outcomes) / n, 1)

    def median(key: str) -> float | None:
        values = [getattr(o, key) for o in outcomes if getattr(o, key) is not None]
        return round(statistics.median(values)) if values else None

    return {
        "questions": n,
        "right_calls_pct": pct("calls_ok"),
        "answers_correct_pct": pct("answer_ok"),
        "narrations": sum(o.narration for o in outcomes),
        "preambles": sum(o.preamble for o in outcomes),
        "invented_facts": sum(o.invented for o in outcomes),
        "invented_claims": sum(o.invented_claim for o in outcomes),
        "ungrounded_writes": sum(o.ungrounded_write for o in outcomes),
        "errors": sum(o.error is not None for o in outcomes),
        "first_token_ms_median": median("first_token_ms"),
        "first_speech_ms_median": median("first_speech_ms"),
        "first_sentence_ms_median": median("first_sentence_ms"),
        "first_audio_ms_median": median("first_audio_ms"),
        "answer_ms_median": median("answer_ms"),
    }


@dataclass
class Variant:
    """One server under test: a label and the checkout its server and prompt come from."""

    label: str
    code: Path


def _system_prompt(code: Path, tool_set: str = "demo") -> str:
    """The system prompt the engine sends for that tool set's profile (mode's note included)."""
    from voice_agent.config import load_config
    from voice_agent.modes import policy_for

    config = load_config(PROFILES.get(tool_set), environ={})
    agent = config.agent
    text = (code / "prompts" / agent.prompt_file).read_text()
    text = text.replace("{persona}", agent.persona).replace("{company}", agent.company)
    return policy_for(agent.mode).system_prompt(text)


async def run_model(
    model: str,
    questions: list[dict[str, Any]],
    variants: list[Variant],
    repeat: int,
    temperature: float | None = None,
    tool_latency_s: float = 0.0,
) -> dict[str, list[Outcome]]:
    """Ask every question on one server per variant, alternating A/B/A/B (same machine load)."""
    from voice_agent.config import load_config
    from voice_agent.local_llm.launcher import LocalLlmServer

    tool_sets = load_tool_sets()
    config = load_config(environ={}).llm
    outcomes: dict[str, list[Outcome]] = {v.label: [] for v in variants}
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for variant in variants:
            # The server child runs that checkout's code: `python -m` puts the working
            # directory first on sys.path, ahead of PYTHONPATH, so both point there.
            # (Until this was set, a --server-code/--compare server ran the code of the
            # directory the bench was started from.)
            os.environ["PYTHONPATH"] = str(variant.code)
            here = Path.cwd()
            os.chdir(variant.code)
            try:
                server = await stack.enter_async_context(
                    LocalLlmServer(model=model, startup_timeout_s=600)
                )
            finally:
                os.chdir(here)
            client = LlmClient(
                LlmConfig(
                    base_url=server.base_url,
                    model=server.model_name,
                    temperature=config.temperature if temperature is None else temperature,
                    max_tokens=config.max_tokens,
                    timeout_s=600,
                    first_token_timeout_s=300,
                    stall_timeout_s=300,
                )
            )
            stack.push_async_callback(client.aclose)
            prompts = {name: _system_prompt(variant.code, name) for name in tool_sets}
            clients[variant.label] = (client, prompts)
        # The server keeps one prompt prefix. A session prewarms its own (one tool set) at
        # start-up, so a question on a tool set the server does not hold yet is asked after
        # an untimed prewarm of that set, as a new session's first question would be.
        warm: dict[str, str] = {}

        async def prewarm(label: str, tools_name: str) -> None:
            if warm.get(label) == tools_name:
                return
            client, prompts = clients[label]
            await client.prewarm(
                [
                    {"role": "system", "content": prompts[tools_name]},
                    {"role": "user", "content": "Hello."},
                ],
                [t.schema for t in tool_sets[tools_name]],
            )
            warm[label] = tools_name

        for _ in range(repeat):
            for number, question in enumerate(questions):
                # Before/after, then after/before: neither side is always the one
                # that runs right after the other's burst of computing.
                for variant in variants if number % 2 == 0 else variants[::-1]:
                    await prewarm(variant.label, question["tools"])
                    client, prompts = clients[variant.label]
                    tools = tool_sets[question["tools"]]
                    outcome = await ask(
                        client, prompts[question["tools"]], tools, question, model, tool_latency_s
                    )
                    outcomes[variant.label].append(outcome)
                    mark = "ok " if outcome.answer_ok and outcome.calls_ok else "BAD"
                    print(
                        f"  {variant.label:>6} {mark} {question['id']} "
                        f"token {outcome.first_token_ms or 0:6.0f} "
                        f"audio {outcome.first_audio_ms or 0:6.0f} "
                        f"answer {outcome.answer_ms:6.0f} ms | "
                        f"{outcome.spoken[:110]!r} "
                        f"{[(c['name'], c['arguments']) for c in outcome.calls]}"
                        + (f" | {'; '.join(outcome.why)}" if outcome.why else ""),
                        file=sys.stderr,
                        flush=True,
                    )
    return outcomes


#: The times compared between a before and an after server. `first_audio_ms` is the
#: time to first audio (the product's first chunk); `first_sentence_ms` the figure
#: sessions 3-4 reported as first audio (the first whole sentence).
TIMES = ("first_token_ms", "first_speech_ms", "first_audio_ms", "first_sentence_ms", "answer_ms")


def _ratios(a: list[Outcome], b: list[Outcome]) -> dict[str, float | None]:
    """Median over questions of b/a per time (paired: the same question, same load)."""
    out: dict[str, float | None] = {}
    for key in TIMES:
        pairs = [
            getattr(y, key) / getattr(x, key)
            for x, y in zip(a, b, strict=True)
            if getattr(x, key) and getattr(y, key)
        ]
        out[f"{key}_ratio_median"] = round(statistics.median(pairs), 3) if pairs else None
    return out


def paired_differences(
    before: list[Outcome], after: list[Outcome]
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Per question kind (and ``all``), per time: the median of after - before in ms.

    Paired question by question (the two answers to one question were asked
    back to back, so they saw the same machine load): a loaded machine slows
    both sides alike and the difference keeps its sign, where two separate
    runs drift by seconds. Also the number of pairs, and how many of them the
    after side was slower on.
    """
    kinds: dict[str, list[tuple[Outcome, Outcome]]] = {}
    for x, y in zip(before, after, strict=True):
        assert x.id == y.id, (x.id, y.id)
        kinds.setdefault(x.kind, []).append((x, y))
        kinds.setdefault("all", []).append((x, y))
    report: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for kind, pairs in sorted(kinds.items()):
        report[kind] = {}
        for key in TIMES:
            deltas = [
                getattr(y, key) - getattr(x, key)
                for x, y in pairs
                if getattr(x, key) is not None and getattr(y, key) is not None
            ]
            report[kind][key] = {
                "pairs": len(deltas),
                "median_diff_ms": round(statistics.median(deltas)) if deltas else None,
                "after_slower": sum(d > 0 for d in deltas),
            }
    return report


def print_differences(model: str, report: dict[str, dict[str, dict[str, Any]]]) -> None:
    """The per-kind table of `paired_differences` on stderr (first audio first)."""
    print(f"{model}: after - before, median of paired differences (ms)", file=sys.stderr)
    print(
        f"  {'kind':<14}{'n':>3}  {'first audio':>11}  {'1st sentence':>12}  "
        f"{'first text':>10}  {'first token':>11}  {'answer':>8}",
        file=sys.stderr,
    )
    for kind, times in report.items():
        cells = [
            times[k]["median_diff_ms"]
            for k in (
                "first_audio_ms",
                "first_sentence_ms",
                "first_speech_ms",
                "first_token_ms",
                "answer_ms",
            )
        ]
        shown = ["-" if c is None else f"{c:+d}" for c in cells]
        print(
            f"  {kind:<14}{times['answer_ms']['pairs']:>3}  {shown[0]:>11}  {shown[1]:>12}  "
            f"{shown[2]:>10}  {shown[3]:>11}  {shown[4]:>8}",
            file=sys.stderr,
        )


def load_questions() -> list[dict[str, Any]]:
    """The question set; an id names one question (``--only`` and ``--rescore`` go by id)."""
    questions: list[dict[str, Any]] = yaml.safe_load(QUESTIONS.read_text())["questions"]
    twice = sorted(i for i, n in Counter(q["id"] for q in questions).items() if n > 1)
    if twice:
        raise ValueError(f"{QUESTIONS}: question ids used twice: {', '.join(twice)}")
    return questions


def rescore(path: Path) -> dict[str, Any]:
    """Score saved outcomes again with the current rules (the spoken text and calls are kept)."""
    questions = {q["id"]: q for q in load_questions()}
    tools = {name: {t.name: t for t in ts} for name, ts in load_tool_sets().items()}
    saved = json.loads(path.read_text())["outcomes"]
    groups: dict[str, list[Outcome]] = {}
    keep = {f for f in Outcome.__dataclass_fields__} - {
        "calls_ok",
        "narration",
        "preamble",
        "invented",
        "invented_claim",
        "ungrounded_write",
        "answer_ok",
        "why",
    }
    verdicts = (
        "calls_ok",
        "answer_ok",
        "narration",
        "preamble",
        "invented",
        "invented_claim",
        "ungrounded_write",
    )
    for row in saved:
        outcome = Outcome(**{k: v for k, v in row.items() if k in keep})
        question = questions[outcome.id]
        score(outcome, question, tools[question["tools"]])
        groups.setdefault(f"{outcome.model} {row.get('variant', '')}".strip(), []).append(outcome)
        changed = [f"{v} {row.get(v)} -> {getattr(outcome, v)}" for v in verdicts
                   if v in row and row[v] != getattr(outcome, v)]  # fmt: skip
        if changed:  # what the current rules judge differently from the saved run's
            print(f"{outcome.id} {row.get('variant', '')}: {', '.join(changed)} | "
                  f"{outcome.spoken[:120]!r} | {'; '.join(outcome.why)}", file=sys.stderr)  # fmt: skip
    return {
        key: {
            split: summarise([o for o in runs if o.split == split])
            for split in SPLITS
            if any(o.split == split for o in runs)
        }
        for key, runs in groups.items()
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="1.5b,0.5b", help="comma list: 1.5b, 0.5b or registry names"
    )
    parser.add_argument(
        "--split",
        help=f"comma list of {', '.join(SPLITS)}, or all (default: tune; all with --only)",
    )
    parser.add_argument(
        "--server-code", type=Path, help="run the server and prompt from this checkout"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help="also run a 'before' server from this checkout, interleaved with this one",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--temperature", type=float, help="the client's temperature (default: the config's)"
    )
    parser.add_argument(
        "--tool-latency-ms",
        type=float,
        default=0.0,
        help="each round of tool calls takes this long (default 0: the times are the model's;"
        " the demo tools take 400-1000 ms)",
    )
    parser.add_argument("--only", help="comma list of question ids")
    parser.add_argument("--kinds", help="comma list of question kinds (lookup, two, nocover, ...)")
    parser.add_argument("--json", type=Path, help="write every outcome and the summaries here")
    parser.add_argument(
        "--rescore", type=Path, help="score the outcomes saved in this --json file again and exit"
    )
    args = parser.parse_args()
    if args.rescore:
        print(json.dumps(rescore(args.rescore), indent=1))
        return
    questions = load_questions()
    if args.split is None:
        args.split = "all" if args.only else "tune"
    if args.split != "all":
        splits = set(args.split.split(","))
        if splits - set(SPLITS):
            parser.error(f"unknown split(s): {', '.join(sorted(splits - set(SPLITS)))}")
        questions = [q for q in questions if q["split"] in splits]
    if args.only:
        wanted = set(args.only.split(","))
        questions = [q for q in questions if q["id"] in wanted]
    if args.kinds:
        kinds = set(args.kinds.split(","))
        questions = [q for q in questions if q["kind"] in kinds]
    if not questions:
        parser.error("no question matches --split, --only and --kinds")
    # One tool set after the other: a switch re-evaluates the whole system turn
    # (tools listed) on the server's single KV cache, ~1,000 tokens.
    order = {name: i for i, name in enumerate(dict.fromkeys(q["tools"] for q in questions))}
    questions.sort(key=lambda q: order[q["tools"]])
    variants = [Variant("after", args.server_code or ROOT)]
    if args.compare:
        variants.insert(0, Variant("before", args.compare))
    report: dict[str, Any] = {
        "split": args.split,
        "variants": {v.label: str(v.code) for v in variants},
    }
    everything = []
    report["tool_latency_ms"] = args.tool_latency_ms
    report["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    for key in args.models.split(","):
        model = MODELS.get(key, key)
        print(f"{model}:", file=sys.stderr, flush=True)
        outcomes = await run_model(
            model, questions, variants, args.repeat, args.temperature, args.tool_latency_ms / 1e3
        )
        model_report: dict[str, Any] = {}
        for label, runs in outcomes.items():
            everything += [{"variant": label, **asdict(o)} for o in runs]
            model_report[label] = {
                split: summarise([o for o in runs if o.split == split])
                for split in SPLITS
                if any(o.split == split for o in runs)
            }
        if args.compare:
            model_report["after_over_before"] = _ratios(outcomes["before"], outcomes["after"])
            differences = paired_differences(outcomes["before"], outcomes["after"])
            model_report["after_minus_before_ms"] = differences
            print_differences(model, differences)
        report[model] = model_report
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": report, "outcomes": everything}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
