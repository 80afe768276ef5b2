"""Decide, then call or speak: how the local server answers a request with tools.

A small model is weak at *deciding* to call a tool in free text (it describes
the call, promises to check and does not, or answers from nowhere), but good
at choosing from a short list and at filling a schema under a grammar. So a
reply is made in explicit steps, all on one KV cache:

1. **Decision.** The prompt is continued with ``<tool_call>\\n{"name": "`` and
   the grammar allows only the tool names and `REPLY` (a pseudo-tool listed
   with the tools in the system turn, described as "speak to the caller").
   Decoding is greedy and stops as soon as the name is unambiguous (usually
   the first token), so the decision costs the few tokens of that prefix,
   evaluated with the new part of the prompt. A tool that ends the call
   (`ends_the_call`: no arguments to ground) stands only when the caller's last
   words close the conversation (`call_control.caller_closes`); otherwise the
   decision is made again without it (`Responder._unless_unwanted`). `CANNOT` on
   small talk the caller's words show (`caller_asks`: a question what the agent is,
   small talk about the call, the day or the weather) is `REPLY`: no model step
   decides it, so a true "can't" is not delayed. `REPLY` on a request by its form
   ("Can you change the email on my account?") with no result to answer from is
   decided again without `REPLY` (`Responder._request_not_reply`): a tool or an
   honest "can't". A caller who only asks the agent to wait hears `WAIT_REPLY`,
   with no step at all. A tool chosen by a low margin (`decision_margin`: the
   runner-up's probability, read off the decision's own steps, is at least
   `decision_margin.LOW_MARGIN_RATIO` of the choice's) is checked with the quoted
   yes/no (`WANTED_QUESTION`), and a runner-up the model says yes to after its no
   to the choice is called instead (`Responder._checked_choice`).
2. **Call(s).** For a tool, the call is continued under that tool's
   JSON-schema grammar, greedily; up to `MAX_CALLS_PER_REPLY` - 1 further
   calls may follow, then the turn ends. No text can follow. Each call is
   checked (`grounding.ungrounded_arguments`) before it is sent: one whose
   arguments the caller never gave is not sent, nor one that only reuses
   values an earlier call of this turn used (`_only_reuses`). A call dropped
   only because the model reworded a free-text argument whose numbers the
   caller did say ("today at 18:00" for "this evening at 6 pm") is decoded
   once more with that argument limited to runs of the caller's own words
   (`grounding.caller_spans`); one dropped for a number the caller took back
   ("78342, oh no, 78324") is decoded once more on the number they corrected
   it to (`grounding.corrected_numbers`). A summary argument (a ticket's) must
   carry something the caller said beyond the request itself
   (`grounding.summary_grounded`), else the agent asks what it is about. A call
   that puts a caller's number in an argument it does not fit (what the caller
   called it, its digit count: `number_labels`, "My number's 555 808 6261" as an
   order number) is not sent; the tool whose argument it fits is called instead
   (`Responder._to_the_fitting_tool`).
3. **Speech.** For `REPLY` (or when every call was dropped), the reply is
   generated from the plain prompt under `grammar.speech_grammar`: no markup,
   no tool names, no number the conversation does not contain. When calls
   were dropped as ungrounded, and the caller gave none of their arguments,
   the model is first asked a yes/no question: does the caller ask for what
   the dropped tool does (`WANTED_QUESTION`)? Its "yes" counts only when it is also
   likelier than to the same question negated (`NOT_WANTED_QUESTION`), which
   cancels the model's leaning to "yes" (`Responder._wanted`). A catch-all (`catch_all`:
   a ticket "for a problem the agent cannot solve") is never asked about: that question
   fits every request no tool serves; without an argument the caller gave or words that
   name it, the reply is "can't" and the offer, which names it. Yes, or an argument the caller
   did give: a system note asks it to ask the caller for what is missing and the
   reply starts with `ASK_LEAD`, unless only details the tool's schema leaves optional
   are missing: the call is then sent without them (`Responder._without_optional_details`);
   no (the tool was picked for a request it
   does not serve): the reply is `CANNOT_LEAD` and an offer. A call dropped for a
   caller who asks to be put through to a person (`caller_asks.asks_for_a_person`) is
   made on the tool that hands them to one instead (`Responder._to_a_person`). For
   `CANNOT`, `CANNOT_LEAD` is sent at once (the caller hears it right after
   the decision) and the model continues after it with an offer of what the tools do
   (`what_the_tools_do`, in the note; it starts `OFFER_LEAD`), held whole and replaced by `CANNOT_OFFER` when
   it only repeats the caller's words, names a tool or refuses again. No speech starts
   a word with "tool" (`MACHINERY_STARTS`) unless a tool result does. A
   `CANNOT` on a follow-up that asks for what a tool gives ("When is that
   due?" after a balance) calls that tool instead, or answers from its result
   already in the conversation (`Responder._follow_up`). After
   results, `ANSWER_NOTE` tells the model to answer from them, and the answer's
   opening is the answer (`openings.AnswerOpening`: "Sure, here's the answer:" and
   a bare "Yes," before the result are left out; a value it said only in part is
   told whole after it, `answer_words.half_said_values`, and so is the fact the
   caller asked for or the tool's main fact left out, `answer_words.untold_facts`,
   and a change a write made that it did not tell as done ("I can cancel it" after the
   cancel ran), `write_outcomes.untold_outcomes`;
   a count the results contradict ("3 bookshelf items" for "2 bookshelf") is
   corrected, `spoken_counts`, and a number told
   about one result's thing that only another result holds, `spoken_values`). A result
   that reports a failure (an error, nothing found, a false outcome flag) is told first in
   its own words, with no model step (`failed_results`: "Sorry, there is no account with
   that number."), and the model goes on only for the outcomes that did not fail or the
   next step the result asks for (`NEXT_STEP_NOTE`); when every outcome failed, no step
   reads the prompt before it is said. When the
   results carry no fact, only a tool's guidance (call control: "the call
   ends after your goodbye"), `GUIDANCE_NOTE` tells it to follow that and
   state nothing (the 1.5B, told to "tell the answer" after ending a call,
   said "The order has been canceled."); guidance whose tool asked for nothing more to be said
   (a transfer: the engine says its own words; the result's flag,
   `voice_agent.guidance.SAY_NOTHING_MORE`) is followed without a model step, and a
   reply to guidance that refuses (`openings.refuses`) is never said. When the only
   outcomes since the caller spoke are
   writes held for their yes (the engine's ``awaiting_confirmation``), nothing
   is decided or said: the engine reads the write back itself.

Everything leaves as standard streamed ``tool_calls`` or content deltas;
the client sees an ordinary OpenAI server. ``tool_choice="none"`` goes
straight to speech, ``"required"`` decides among the tools only, a named
function skips the decision; without tools the model speaks unconstrained.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from voice_agent.call_control import caller_closes
from voice_agent.guidance import says_nothing_more
from voice_agent.local_llm.answer_words import (
    DAY_WORDS,
    READING_VERBS,
    answer_bans,
    caller_only_words,
    half_said_values,
    untold_facts,
)
from voice_agent.local_llm.argument_watch import ArgumentWatch, FurtherCalls
from voice_agent.local_llm.caller_asks import (
    asks_for_a_person,
    asks_nothing_of_a_tool,
    asks_something_of_the_agent,
    holds_the_line,
)
from voice_agent.local_llm.chat_format import content_text, render_messages, tool_results_head
from voice_agent.local_llm.decision_margin import DecisionMargin, decision_margin
from voice_agent.local_llm.engine import GenerationStats, LlamaEngine, SamplingParams
from voice_agent.local_llm.failed_results import Failure, only_failures, untold_failures
from voice_agent.local_llm.grammar import (
    calls_grammar,
    check_grammar,
    choice_grammar,
    forced_tool_name,
    speech_grammar,
    tool_names,
)
from voice_agent.local_llm.grounding import (
    as_corrected,
    caller_spans,
    conversation_numbers,
    corrected_numbers,
    corrects_itself,
    grounding_sources,
    invented_arguments,
    names_in,
    numbers_in,
    retracted_arguments,
    summary_kind,
    taken_back_numbers,
    tool_words,
    ungrounded_arguments,
    value_grounded,
    with_callers_day,
)
from voice_agent.local_llm.number_labels import (
    MisplacedNumber,
    fitting_arguments,
    misplaced_number,
    said_numbers,
)
from voice_agent.local_llm.openings import (
    AnswerOpening,
    PersonClaim,
    RefusalStart,
    refuses,
)
from voice_agent.local_llm.output_parser import ToolCallStreamParser
from voice_agent.local_llm.protocol import ChatRequest
from voice_agent.local_llm.reply import ReplyAssembler, answered_calls
from voice_agent.local_llm.spoken_counts import CountCheck, result_counts
from voice_agent.local_llm.spoken_values import ValueCheck, caller_numbers, result_values
from voice_agent.local_llm.turn_history import (
    argument_values,
    calls_this_turn,
    calls_to_tell,
    guidance_notes,
    guidance_results,
    latest_caller_words,
    latest_request_sources,
    looks_up_again,
    only_awaiting_confirmation,
    only_reuses,
    outcomes_to_tell,
    result_fields,
    results_note_kind,
    told_this_turn,
    values_used_this_turn,
)
from voice_agent.local_llm.write_outcomes import untold_outcomes

#: What a reply to small talk says instead of a refusal (`Responder._small_talk`).
SMALL_TALK_OFFER = "How can I help you today?"
#: The whole reply to a caller who only asks the agent to wait (`caller_asks.holds_the_line`),
#: said without a model step: told "Sorry, my dog is barking, give me a second.", the 1.5B
#: picked a tool and asked "Could you tell me the order number?" (bench m24, session 10).
WAIT_REPLY = "Of course, take your time."
#: Asked after a reply to a turn judged small talk began as a refusal.
ASKS_SOMETHING_QUESTION = (
    "Answer only yes or no: in their last words, does the caller ask you to do or find "
    "out something for them?"
)
#: The decision's option for "no tool: speak to the caller". No speech can say it: the
#: speech grammar lets no word start with "reply" (`grammar.UNSPEAKABLE_WORDS`); the 0.5B
#: said 'You can call the "reply" function ...' (bench r19, session 6). (Renamed
#: "reply_to_caller", the option would be unspeakable by its "_" alone, but every prompt's
#: tool list would change, and the 1.5B's decisions could not be re-measured in session 8.)
REPLY = "reply"
#: The decision's option for "no tool does what the caller asks" (its "_" keeps it out of
#: speech, as every snake_case tool name).
CANNOT = "cannot_do"
_SPEECH_OPTIONS: tuple[dict[str, Any], ...] = (
    {
        "type": "function",
        "function": {
            "name": REPLY,
            "description": (
                "Speak to the caller without looking anything up: greetings and small talk, "
                "answering from the function results already in this conversation, or asking "
                "for details the caller has not given yet."
            ),
            "parameters": {"type": "object", "properties": {}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": CANNOT,
            "description": (
                "The caller asks about something that none of the other functions can look "
                "up or do."
            ),
            "parameters": {"type": "object", "properties": {}},
        },
    },
)
#: How the question for missing details starts; the model completes it from the
#: note. Left to start on its own after that note, the 0.5B and 1.5B read the note
#: out ("To refund an order, you need the order number exactly as the caller gave
#: it ...") instead of asking.
ASK_LEAD = "Could you tell me"
#: The plan's decision when the only outcomes are writes held for the caller's yes:
#: nothing is said (see `turn_history.only_awaiting_confirmation`).
AWAIT_CONFIRMATION = "await_confirmation"
#: What is said at once after `CANNOT`, before the model runs again: the caller
#: hears the honest answer as soon as the decision is made (a system note the model
#: had to read first cost +1.7 s to the first word on the 1.5B, and the 0.5B read
#: the note out). English, like the prompts shipped with the product.
CANNOT_LEAD = "Sorry, I can't help with that here."
#: How the offer after `CANNOT_LEAD` starts: what the agent can do, said as such. Left to
#: start on its own, told what the tools do, the 1.5B said "You can look up the shipping
#: status of an order by its order number, get the ..." (bench h05, session 10).
OFFER_LEAD = "I can"
#: An offer that is no clean spoken clause: a colon or semicolon copied from the note's
#: list ("I can help with: look up an order.": bench m22, session 10), or a second refusal
#: after `OFFER_LEAD` ("I can't schedule a call back."). Replaced by `CANNOT_OFFER`.
_NOT_AN_OFFER = re.compile(r"[:;]|^I can(?:not\b|'t\b|\u2019t\b)", re.IGNORECASE)
#: Tokens the offer may take: one short sentence; one cut off is not said (`CANNOT_OFFER`).
_OFFER_MAX_TOKENS = 32
#: What is said after `CANNOT_LEAD` instead of an offer that only repeats the caller's
#: words (`echoes_caller`).
CANNOT_OFFER = "Is there anything else I can help you with?"
#: What the speech step is told after `CANNOT_LEAD` (facts it lacks are never guessed);
#: `{can}` is what the tools do, in words for the caller (`what_the_tools_do`). Told only
#: to "offer what you can help with", the 1.5B offered what no tool does ('you can use
#: the "update email" tool.', spoken call s10, session 9) or repeated the caller.
CANNOT_NOTE = (
    "None of your functions can do what the caller just asked. You can help with: {can}. "
    "In one short sentence, offer one or two of those instead. Do not guess."
)
#: `CANNOT_NOTE` when no tool does anything to offer (every one ends the call).
CANNOT_NOTE_BARE = (
    "None of your functions can do what the caller just asked. In one short sentence, "
    "ask whether there is anything else. Do not guess."
)
#: What the speech step is told when results arrived since the caller spoke. Tool
#: results render inside a user turn (Qwen's format), and the 1.5B, given an order's
#: details there, thanked the caller "for providing the order details" instead of
#: telling them; 23 tokens after the results, evaluated before the answer's first
#: word. (Said once in the system turn instead, where the KV cache keeps it, the 1.5B
#: answered worse on the same questions: "Thank you for the order status.", "I'm
#: sorry, but I can't assist with that." after store hours, a call-back's time left
#: out; session 4, docs/results.md.) Worded without "function" or "result": the model
#: repeats a note's words, and "the function results say ..." is a narration.
ANSWER_NOTE = "Now tell the caller the answer you found above, in your own words. Add nothing."
#: `ANSWER_NOTE` when this turn looked up again what an earlier turn was about
#: (`turn_history.looks_up_again`: "When is that due?" after a balance): the caller
#: heard that answer already and asks for something else in it. Told to "tell the
#: answer you found", the 1.5B said the balance again (bench h18, session 6).
ANSWER_AGAIN_NOTE = (
    "Now answer what the caller just asked from what you found above, in your own words. "
    "Add nothing."
)
#: `ANSWER_NOTE` when two or more outcomes arrived since the caller spoke: each told on
#: its own. Told "the answer", the 1.5B merged two orders into one ("The orders 3141
#: and 2718 are both delivered"; 2718 had shipped). Four tokens more, only then.
ANSWER_EACH_NOTE = (
    "Now tell the caller each answer you found above in a sentence of its own, "
    "in your own words. Add nothing."
)
#: The notes after which the reply is an answer from results (its opening filtered).
_ANSWER_NOTES = (ANSWER_NOTE, ANSWER_AGAIN_NOTE, ANSWER_EACH_NOTE)
#: What the speech step is told when the results since the caller spoke carry no fact,
#: only a tool's guidance (call control: a transfer, the end of the call). "Tell the
#: answer you found" then made the 1.5B invent one ("The order has been canceled."
#: after `end_call`).
GUIDANCE_NOTE = (
    "There is no answer to tell. Follow the guidance above in one short sentence, "
    "and state no fact."
)
#: What the speech step is told after the sentences that tell a failure
#: (`failed_results`), when the failed result asks for a next step and no other outcome
#: is to be told; ``{step}`` is the results' ``next_step`` ("ask the caller for the order
#: number"). Without a next step (and with nothing else to tell) no model step runs.
NEXT_STEP_NOTE = "Now tell the caller what failed above, then {step}. Add nothing."
#: Word starts speech never says unless a tool result of the conversation does (a shop's
#: "tools"): the agent's machinery. "tool": 'you can use the "update email" tool.' (spoken
#: call s10, session 9), for a request no tool covers. A word start, not anywhere in a
#: word as `grammar.UNSPEAKABLE_WORDS`: "stool" stays speakable.
MACHINERY_STARTS = ("tool",)
#: The yes/no question that decides, after a call was dropped for details the caller
#: has not given, between asking for them and saying no function can do it; `{purpose}`
#: is what the dropped tool(s) do. Asked of the caller's last words, with nothing else
#: to read: ranking "Could you tell me" against "Sorry, I can't" after the note asking
#: for the details, the 1.5B asked "what's the weather in Denver tomorrow?" for an
#: order number. `{said}` is the caller's last words, quoted (`quoted_caller`): asked
#: "in their last words, does the caller ask you to schedule a call back from a human
#: agent?", the 1.5B said no to "Can somebody phone me tomorrow?" and four more
#: call-back requests in other words (bench f06, k06, session 9); asked of the quoted
#: words, yes to all 8 call-back requests of the open splits and still no to the 10
#: requests no tool serves (session 10, decide10).
WANTED_QUESTION = 'Answer only yes or no: the caller said "{said}". Is that a request to {purpose}?'
#: `WANTED_QUESTION` negated, read after its "yes" so that the model's leaning to "yes"
#: cancels out (`Responder._wanted`). To `WANTED_QUESTION` the 1.5B said "yes" (odds of
#: yes over no 1.06-1.71) for requests no tool serves: "Could you recommend a good laptop
#: for me?" and "Can you give me a discount code?" as requests to look up an order, "I
#: need to update the email on my online profile." as one to change a delivery address
#: (bench y15, u13, v09); to this question it said "yes" to them at higher odds. On the
#: 102 open nocover and write_missing questions (session 12, decision and odds only):
#: of the 48 requests a tool serves whose details were missing, each had odds of 1.8-18
#: to `WANTED_QUESTION` and lower odds to this one (by a factor of 1.39 or more); of
#: the 32 requests no tool serves that the decision gave a tool, 8 had a "yes", and 6 of
#: them higher odds to this question (r20, s22, "new iPhone in stock", "jobs at the
#: warehouse", did not).
NOT_WANTED_QUESTION = (
    'Answer only yes or no: the caller said "{said}". Is that a request for something '
    "other than to {purpose}?"
)
#: The longest quote of the caller in a yes/no question (characters, its end kept).
_QUOTE_MAX_CHARS = 300
#: What the decision step continues the prompt with (Qwen's call format up to the name).
DECISION_PREFIX = '<tool_call>\n{"name": "'
#: A caller asks for a few things in one breath, never more: bounds a model
#: that keeps adding calls (the 1.5B once looked up two cities nobody named).
MAX_CALLS_PER_REPLY = 4
#: Tokens the decision may take (tool names are a few tokens; greedy, so it is deterministic).
_DECISION_MAX_TOKENS = 24
#: The most likely tokens each decision step records (`decision_margin`): enough to
#: find the best token that parts from the chosen name (k11: the 2nd of 3 listed).
_DECISION_ALTERNATIVES = 8
#: Runners-up of a low-margin decision asked about after the chosen tool's "no"
#: (`Responder._checked_choice`): each costs a yes/no step.
_RUNNERS_UP_CHECKED = 2
#: After results, a reply starts with a call (its first token ``<tool_call>``) or with
#: words. When the model, given the answer note, puts less than this probability on
#: a call as its first token, it answers at once: the decision step (its prefix, a
#: draw, and the answer note evaluated after it) does not run. Above it, the decision
#: runs as on a fresh turn. (quick7, issue 11: the request with results evaluated
#: ~8 tokens and one model step more than before 04500c0's answer, before the first
#: word; the decision after results named a tool only to repeat an answered call in
#: the traces of bench/embedded_steps.py.)
CALL_AFTER_RESULTS_MIN_P = 0.05

OnText = Callable[[str], Awaitable[bool]]


@dataclass
class ResponsePlan:
    """What the steps decided and what they cost (reported in the server's timings)."""

    decision: str | None = None
    decision_s: float | None = None
    dropped_ungrounded: list[tuple[str, list[str]]] | None = None
    asked: bool = False  # a dropped call turned into a reply (a question, or "can't do")
    asked_or_cannot: str | None = None  # which: "ask" or `CANNOT`
    #: calls decoded again with free-text arguments in the caller's words: (name, arguments)
    in_callers_words: list[tuple[str, list[str]]] | None = None
    #: a reply to guidance that only repeated a tool's note, never spoken
    echoed_guidance: str | None = None
    #: a reply to guidance that refused (`openings.refuses`), never spoken
    refused_guidance: str | None = None
    #: the tools' guidance asked to say nothing more: no step ran, nothing was said
    said_nothing: bool = False
    #: an offer after "can't" that only repeated the caller's words, never spoken
    echoed_caller: str | None = None
    #: calls decoded again on the number the caller corrected to: (name, arguments)
    on_the_correction: list[tuple[str, list[str]]] | None = None
    #: tools a "cannot do" follow-up asked for what they give (see `_follow_up`)
    follow_up: list[str] | None = None
    #: a tool without arguments the decision chose but the caller did not ask for
    #: (`Responder._unless_unwanted`): not called, the decision made again without it
    unwanted: str | None = None
    #: the caller's latest words as the answer step saw them, a name they took back
    #: replaced by the one looked up (`grounding.as_corrected`)
    as_corrected: str | None = None
    #: calls written again with a time's day the caller named and the model left out
    #: (`grounding.with_callers_day`): (name, arguments)
    with_the_day: list[tuple[str, list[str]]] | None = None
    #: after results: the probability of a call as the answer's first token
    #: (`CALL_AFTER_RESULTS_MIN_P`)
    call_after_results_p: float | None = None
    #: clauses left out of the answer's opening (`openings.AnswerOpening`)
    left_out: list[str] | None = None
    #: a reply to small talk began as a refusal: what was said instead ("cannot", "offer")
    refused_small_talk: str | None = None
    #: a reply to small talk claimed the agent is a person (`openings.PersonClaim`): the
    #: claim was not said, `AUTOMATED_DISCLOSURE` was
    claimed_person: bool = False
    #: a "cannot do" decision on small talk (`caller_asks.asks_nothing_of_a_tool`): the
    #: reply was small talk instead
    small_talk_not_cannot: bool = False
    #: a `REPLY` decision on a request (`Responder._asks_for_a_service`): decided again
    #: without `REPLY`
    reply_to_request: bool = False
    #: the caller only asked the agent to wait: `WAIT_REPLY` was said, no model step ran
    held_the_line: bool = False
    #: a further call that could bring nothing ended the call step early
    #: (`argument_watch.FurtherCalls`): "repeat" or "invented"
    further_call_stopped: str | None = None
    #: stems of the caller's words the answer from results could not use (`answer_words`)
    caller_only_words: list[str] | None = None
    #: sentences added after an answer that said a result's value only in part
    #: (`answer_words.half_said_values`)
    half_said: list[str] | None = None
    #: sentences added after an answer that left out the fact asked for, or the tool's
    #: main fact (`answer_words.untold_facts`)
    untold: list[str] | None = None
    #: sentences added after an answer that did not tell a write's outcome as it happened
    #: (`write_outcomes.untold_outcomes`)
    outcomes_told: list[str] | None = None
    #: the tools whose results reported a failure, told in the results' own words before
    #: anything else (`failed_results`)
    failures_told: list[str] | None = None
    #: counts an answer said that its results contradict: (what was said, what replaced
    #: it) (`spoken_counts.CountCheck`)
    counts_corrected: list[tuple[str, str]] | None = None
    #: numbers an answer told about one result's thing that only another result holds:
    #: (what was said, what replaced it; "" when left out) (`spoken_values.ValueCheck`)
    values_corrected: list[tuple[str, str]] | None = None
    #: the decision's margin: its runner-up's probability over its choice's where they
    #: part (`decision_margin`); None when not measured
    margin: float | None = None
    #: after a dropped call, the model's odds of "yes" to `WANTED_QUESTION` and to
    #: `NOT_WANTED_QUESTION` (`Responder._wanted`; None when not read, after a "no"): it
    #: asked for details when the first was at least 1 and at least the second
    wanted_odds: tuple[float, float | None] | None = None
    #: a low-margin tool decision checked (`Responder._checked_choice`): each tool asked
    #: about and the model's yes (True) or no, in order; `decision` is what it picked
    margin_check: list[tuple[str, bool]] | None = None
    #: after results, a call on a number the caller named and no call used
    #: (`Responder._call_on_an_unused_number`): (tool, argument)
    unused_number_call: tuple[str, str] | None = None
    #: after results, a call on a name the caller said and no call used
    #: (`Responder._call_on_an_unused_name`): (tool, argument)
    unused_name_call: tuple[str, str] | None = None
    #: a call not sent for a caller's number in an argument it does not fit
    #: (`number_labels`): (tool, argument, the tool called instead or None)
    misplaced: tuple[str, str, str | None] | None = None
    #: a call dropped for a caller who asks for a person, made on the tool that puts
    #: them through to one instead (`Responder._to_a_person`): (dropped tool, that tool)
    to_a_person: tuple[str, str] | None = None
    #: a call dropped only for optional details the caller did not give, sent without
    #: them (`Responder._without_optional_details`): (tool, the arguments left out)
    without_optional: tuple[str, list[str]] | None = None


def _greedy(sampling: SamplingParams, max_tokens: int | None) -> SamplingParams:
    return replace(sampling, temperature=0.0, top_p=1.0, max_tokens=max_tokens, stop=())


def _free_string(prop: object) -> bool:
    """A string argument its schema does not restrict (no enum, const, pattern or format)."""
    return (
        isinstance(prop, Mapping)
        and prop.get("type") == "string"
        and not {"enum", "const", "pattern", "format"} & set(prop)
    )


#: Words of an argument's name or description that say it takes a number, not a name.
_NUMBERING = re.compile(r"\b(?:number|id|digits?|phone|code|zip|amount|date|time)\b", re.I)


def _takes_a_name(function: Mapping[str, Any], argument: str) -> bool:
    """Whether an argument is free text (`_free_string`) that numbers nothing: neither its
    name nor its description says a number, an id, digits, a phone, a code, a date or a
    time ("city": "the city of the store")."""
    prop = ((function.get("parameters") or {}).get("properties") or {}).get(argument)
    described = f"{argument.replace('_', ' ')} {(prop or {}).get('description', '')}"
    return _free_string(prop) and not _NUMBERING.search(described)


def _required(function: Mapping[str, Any]) -> list[str]:
    """The names of a function's required arguments."""
    return [str(a) for a in (function.get("parameters") or {}).get("required") or ()]


def _schemas(tools: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {
        str(t["function"]["name"]): t["function"].get("parameters") or {}
        for t in tools
        if isinstance(t.get("function"), Mapping)
    }


#: A clause of an argument's description that tells the model how to fill it in
#: ("... the caller gives", "... exactly as the caller gave it"): not for the caller's ears.
_HOW_TO_FILL_RE = re.compile(
    r"\s+(?:exactly\s+)?(?:as\s+)?(?:the caller|they)\s+(?:gives?|gave|says?|said)\b.*$",
    re.IGNORECASE,
)


def caller_facing(description: str) -> str:
    """An argument's description as words said to the caller: its first clause, with
    how to fill it in left out and the caller addressed as "you" ("the caller's phone
    number as they said it" -> "your phone number", "the order number the caller
    gives, digits only" -> "the order number", "what the caller needs" -> "what you
    need").

    Descriptions are written for the model and speak of "the caller"; the 1.5B,
    asking for a missing value, copied them ("Could you tell me the caller's phone
    number?").
    """
    text = description.split(",")[0].split("(")[0].strip()
    text = _HOW_TO_FILL_RE.sub("", text)
    text = re.sub(r"\bthe caller's\b", "your", text, flags=re.IGNORECASE)
    text = re.sub(
        r"\bthe caller (\w+?)s\b", lambda m: f"you {m.group(1)}", text, flags=re.IGNORECASE
    )
    text = re.sub(r"\bthe caller\b", "you", text, flags=re.IGNORECASE)
    return re.sub(r"\btheir\b", "your", text).strip()


def _describe_missing(tool: Mapping[str, Any] | None, names: list[str]) -> str:
    props = ((tool or {}).get("parameters") or {}).get("properties") or {}
    parts = []
    for name in names:
        description = caller_facing(str((props.get(name) or {}).get("description") or ""))
        parts.append(description or name.replace("_", " "))
    return " and ".join(parts)


def ask_note(dropped: list[tuple[str, list[str]]], tools: Sequence[Mapping[str, Any]]) -> str:
    """The system note that turns a dropped call into a question for the caller.

    Used once the caller is known to want what the tool does (`Responder.run`:
    an argument they gave, the tool named, or the yes/no question); the reply
    starts with `ASK_LEAD`. It names what the tool does and what is missing,
    in words for the caller (`caller_facing`), and ends with the question as
    an example the model completes after the lead.
    """
    by_name = {str(t["function"]["name"]): t["function"] for t in tools}
    needs, asked = [], []
    for name, missing in dropped:
        function = by_name.get(name) or {}
        purpose = str(function.get("description") or name.replace("_", " ")).rstrip(".")
        wanted = _describe_missing(function, missing)
        needs.append(f"to {purpose[:1].lower()}{purpose[1:]}, you need {wanted}")
        asked.append(wanted)
    joined = "; ".join(needs)
    question = " and ".join(dict.fromkeys(asked))
    return (
        f"{joined[:1].upper()}{joined[1:]}. The caller has not told you that yet, and you must "
        f'never guess it. Ask for it in one short question, like "{ASK_LEAD} {question}?"'
    )


def _purpose(function: Mapping[str, Any], name: str) -> str:
    """What a tool does, from its description's first sentence ("look up an order")."""
    text = str(function.get("description") or name.replace("_", " ")).strip()
    text = text.split(". ")[0].rstrip(".").strip()
    return f"{text[:1].lower()}{text[1:]}"


#: A clause of a tool's description that makes it the tool for what the agent cannot do
#: otherwise: a catch-all's condition ("Open a support ticket | for a problem the agent
#: cannot solve on the call", "Transfer the caller to a human agent | (when they ask for
#: one or you cannot help)").
_FALLBACK_CLAUSE = re.compile(
    r"\s*\([^()]*\b(?:cannot|can't|can not|unable to)\b[^()]*\)"
    r"|\s+(?:for|when|whenever|if)\b[^().;]*\b(?:cannot|can't|can not|unable to)\b[^().;]*",
    re.IGNORECASE,
)


def catch_all(function: Mapping[str, Any]) -> bool:
    """Whether a tool is a catch-all: its description's first sentence makes it the tool
    for what the agent cannot do otherwise (`_FALLBACK_CLAUSE`). Every request no tool
    serves fits it, so whether the caller asks for it is never a yes/no question to the
    model (`Responder.run`): asked whether "Do you have any job openings?" is a request
    to open a support ticket, the 1.5B's odds of yes were 1.9 over 1.4 negated with the
    clause (bench z16, session 12) and 2.8 over 1.0 without it (session 13)."""
    name = str(function.get("name", ""))
    return _FALLBACK_CLAUSE.search(_purpose(function, name)) is not None


def quoted_caller(words: str) -> str:
    """The caller's words for a quote in a note: on one line, their double quotes made
    single, at most `_QUOTE_MAX_CHARS` (the end kept: the request is usually last)."""
    text = " ".join(words.replace('"', "'").split())
    return text[-_QUOTE_MAX_CHARS:]


def wanted_question(
    dropped: list[tuple[str, list[str]]],
    tools: Sequence[Mapping[str, Any]],
    said: str,
    template: str = WANTED_QUESTION,
) -> str:
    """`WANTED_QUESTION` (or `template`: `NOT_WANTED_QUESTION`) for the tools of the
    dropped calls and the caller's last words."""
    by_name = {str(t["function"]["name"]): t["function"] for t in tools}
    names = list(dict.fromkeys(name for name, _ in dropped))
    return template.format(
        said=quoted_caller(said),
        purpose=" or ".join(_purpose(by_name.get(n) or {}, n) for n in names),
    )


#: Where a tool's purpose goes on to how or when it is done ("look up the shipping status
#: of an order | by its order number", "cancel an order | that has not shipped yet"): the
#: offer names what, in few words.
_HOW_IT_IS_DONE = re.compile(r"\s+(?:by|that|when|after|from|using)\s+")


def what_the_tools_do(tools: Sequence[Mapping[str, Any]]) -> str:
    """What the tools do, in words for the caller, for the offer after "can't"
    (`CANNOT_NOTE`): each tool's description's first clause (`caller_facing`, cut at a
    colon and where it says how or when, `_HOW_IT_IS_DONE`), "; " between them; a tool
    that ends the call is no offer. "" when none."""
    done: list[str] = []
    for tool in tools:
        function = tool.get("function")
        if not isinstance(function, Mapping) or ends_the_call(function):
            continue
        text = caller_facing(_purpose(function, str(function.get("name", ""))))
        text = _HOW_IT_IS_DONE.split(text.split(":")[0])[0]
        if text.strip() and text.strip() not in done:
            done.append(text.strip())
    return "; ".join(done)


#: Words that say nothing about which tool a caller wants.
_GENERIC_WORDS = frozenset(
    "a an the and or of to in on for by with from at is are be been has have had do does "
    "did can could would will shall should may might must i me my we our you your it its "
    "this that these those what which who when where how why please get got want need "
    "like some someone something thing anything just also yet not no yes hi hello thanks".split()
)


def _content_words(text: str) -> set[str]:
    return {
        w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 3 and w not in _GENERIC_WORDS
    }


#: Verbs that say what is done to a thing, not which thing: "Can I change the size of
#: the shoes I ordered?" named `update_delivery_address` ("Change the delivery address
#: of an order") by "change" and "ordered", and the agent asked for a new address
#: (bench b14, session 6).
_ACTION_WORDS = frozenset(
    "change changed changing update updated modify edit check look find see show tell "
    "give send make set put take help know".split()
)


def _same_word(a: str, b: str) -> bool:
    return a == b or (len(a) >= 5 and len(b) >= 5 and a[:5] == b[:5])


def _tool_words(function: Mapping[str, Any]) -> set[str]:
    name = str(function.get("name", "")).replace("_", " ")
    return _content_words(name) | _content_words(_purpose(function, name))


def names_the_tool(
    caller_words: str,
    function: Mapping[str, Any],
    others: Sequence[Mapping[str, Any]] = (),
) -> bool:
    """Whether the caller's words name what a tool does: a content word of its name
    or of its description's first sentence said, as itself or with the same first
    five letters ("callback" for ``schedule_callback``, "cancel" for "Cancel an
    order", "opening" for "open"). A verb that says only what is done
    (`_ACTION_WORDS`: "change", "update") does not name a tool, nor a word of
    the `others` tools' names ("order", for a shop whose tools are
    ``get_order_status``, ``cancel_order``, ...), nor a word the caller says of
    another kind of thing than the tool's (`_another_kind`: "Can you change the
    email address on my account?" does not name "Change the delivery address of an
    order": the 1.5B's call was dropped for its missing order and the agent asked
    for an order number and an address, bench c11, session 7).

    Evidence that a request lacking details is for that tool, beside the yes/no
    question (`WANTED_QUESTION`), which the 1.5B answered "no" for "Can I get a
    callback tomorrow?". A request no tool serves rarely names one ("what's
    the weather in Denver tomorrow?" against "look up an order: its status,
    items, total and estimated delivery date").
    """
    shared = {
        w
        for other in others
        if other is not function
        for w in _content_words(str(other.get("name", "")).replace("_", " "))
    }
    every = _tool_words(function)
    tool = {
        t for t in every if t not in _ACTION_WORDS and not any(_same_word(t, o) for o in shared)
    }
    name = str(function.get("name", "")).replace("_", " ")
    tool_modifiers = _modifiers(f"{name}. {_purpose(function, name)}")
    said_modifiers = _modifiers(caller_words)
    said = _content_words(caller_words)
    return any(
        _same_word(w, t)
        and not _another_kind(said_modifiers.get(w, set()), tool_modifiers.get(t, set()), every)
        for w in said
        for t in tool
    )


#: Words before a noun that do not say which kind of thing it is ("my new address").
_NEUTRAL_MODIFIERS = frozenset(
    "new old different other another correct wrong right current whole full same".split()
)


def _modifiers(text: str) -> dict[str, set[str]]:
    """Content word -> the content words said right before it ("email address":
    {"address": {"email"}}); a generic or neutral word before it is no modifier."""
    words = re.findall(r"[a-z]+", text.lower())
    found: dict[str, set[str]] = {}
    for before, word in zip(words, words[1:], strict=False):
        if (
            len(before) >= 3
            and before not in _GENERIC_WORDS
            and before not in _NEUTRAL_MODIFIERS
            and before not in _ACTION_WORDS
        ):
            found.setdefault(word, set()).add(before)
    return found


def _another_kind(said: set[str], tools: set[str], vocabulary: set[str]) -> bool:
    """Whether the caller's word names another kind of the tool's thing: both are said
    with a modifier, and none of the caller's is a word of the tool ("the email address
    on my account" is not `update_delivery_address`'s "delivery address")."""
    return bool(said and tools) and not any(
        _same_word(m, v) for m in said for v in (vocabulary | tools)
    )


#: What a tool that ends the call is named or described as ("end_call", "Hang up").
_ENDS_THE_CALL = re.compile(
    r"\b(?:end|ends|ending|hang up|hangs up|hang_up|hangup|terminate|disconnect)\b"
    r"(?:\W+\w+){0,2}?\W+(?:call|line|conversation)\b|\bhang[ _]?up\b",
    re.IGNORECASE,
)


def ends_the_call(function: Mapping[str, Any]) -> bool:
    """Whether a tool ends the call: it takes no arguments, and its name or its
    description's first sentence says it ends, hangs up or disconnects the call
    ("end_call": "End the call after saying goodbye, ..."). Such a call has no
    argument the caller's words could ground (`Responder._unless_unwanted`)."""
    properties = (function.get("parameters") or {}).get("properties")
    if properties:
        return False
    name = str(function.get("name", "")).replace("_", " ")
    return bool(_ENDS_THE_CALL.search(name) or _ENDS_THE_CALL.search(_purpose(function, name)))


#: What a tool that puts the caller through to a person says it does ("Transfer the caller
#: to a human agent", "Schedule a call back from a human agent"). Not "agent" alone: a
#: tool's description calls the voice agent itself that ("a problem the agent cannot
#: solve").
_HANDS_TO_A_PERSON = re.compile(
    r"\b(?:human|person|people|staff|representative|operator|manager|supervisor|colleague)s?\b",
    re.IGNORECASE,
)


def hands_to_a_person(function: Mapping[str, Any]) -> bool:
    """Whether a tool puts the caller in touch with a person: its name or its
    description's first sentence names one (`_HANDS_TO_A_PERSON`), and it does not
    end the call."""
    name = str(function.get("name", "")).replace("_", " ")
    text = f"{name}. {_purpose(function, name)}"
    return bool(_HANDS_TO_A_PERSON.search(text)) and not ends_the_call(function)


def _argument_words(function: Mapping[str, Any]) -> set[str]:
    """The content words of a tool's arguments' names and descriptions."""
    properties = (function.get("parameters") or {}).get("properties") or {}
    words: set[str] = set()
    for arg, prop in properties.items() if isinstance(properties, Mapping) else ():
        words |= _content_words(str(arg).replace("_", " "))
        if isinstance(prop, Mapping):
            words |= _content_words(str(prop.get("description", "")))
    return words


def asks_what_it_gives(
    caller_words: str, function: Mapping[str, Any], fields: Sequence[str] | None = None
) -> bool:
    """Whether the caller's words name something a tool gives: a content word of its
    description that is not a word of its arguments ("due" of "The current balance
    of a customer account and the date it is due"; not "order" of "Look up an order
    by its order number"), or of a field its result carried in this conversation
    (``due_date``). Matched as itself or by its first five letters."""
    gives = _content_words(str(function.get("description", "")))
    for field_name in fields or ():
        gives |= _content_words(field_name.replace("_", " "))
    gives -= _argument_words(function)
    said = _content_words(caller_words)
    return any(
        w == t or (len(w) >= 5 and len(t) >= 5 and w[:5] == t[:5]) for w in said for t in gives
    )


def echoes_guidance(text: str, notes: Sequence[str]) -> bool:
    """Whether a reply only repeats a tool's guidance note: at least three content
    words, two thirds of them the note's. Told to follow "the caller is told and
    transferred; say nothing more", the 1.5B said "The caller is told and
    transferred; say nothing more." (session 4, the lead's re-check); the engine says
    its own transfer phrase. A two-word reply ("The call ends.") is spoken: nothing
    would be said before the hang-up otherwise."""
    words = _content_words(text)
    return len(words) >= 3 and any(
        len(words & _content_words(note)) * 3 >= len(words) * 2 for note in notes
    )


#: Speech about "the caller" is the agent's instructions said aloud, never words to
#: the caller ("Transfer the caller to a human agent.", "The caller is transferred to
#: a human agent.": the 1.5B after a transfer, session 5's quiet re-check).
#: Speech about "the guidance" answers the agent's instructions, not the caller ("Thank
#: you for the guidance.": the 1.5B after a transfer, bench s23, session 6).
_OF_THE_CALLER = re.compile(r"\bthe caller\b|\bguidance\b", re.IGNORECASE)


def names_a_function(text: str, names: Sequence[str]) -> bool:
    """Whether speech speaks of the agent's functions: the word "function", or a tool's or
    a speech option's name in quotes ("You can call the "reply" function ...": the 0.5B
    after a transfer, bench r19, session 6). The speech grammar keeps out every name with
    an underscore and the word "function" (`grammar.UNSPEAKABLE_WORDS`); this check is
    for a tool name that is one English word ("refund")."""
    if re.search(r"\b(?:functions?|tools?)\b", text, re.IGNORECASE):
        return True
    quoted = {
        q.strip().lower() for q in re.findall(r"[\"'`\u201c\u2018]([^\"'`\u201d\u2019]+)", text)
    }
    return any(name.lower() in quoted for name in names)


#: Words in a row of the caller's that make a reply an echo of them.
_ECHO_RUN = 4


def echoes_caller(text: str, caller_words: str) -> bool:
    """Whether a reply repeats the caller's words back: `_ECHO_RUN` of them in a row, or
    two or more content words, all of them the caller's ("Can you tell me if the new
    iPhone is in stock?" for that question; "Is the new iPhone in stock?")."""
    said = re.findall(r"[a-z0-9']+", text.lower())
    heard = " ".join(re.findall(r"[a-z0-9']+", caller_words.lower()))
    if any(
        f" {' '.join(said[i : i + _ECHO_RUN])} " in f" {heard} "
        for i in range(len(said) - _ECHO_RUN + 1)
    ):
        return True
    words = _content_words(text)
    return len(words) >= 2 and words <= _content_words(caller_words)


def repeats_instruction(text: str, instruction: str) -> bool:
    """Whether a reply repeats the agent's own instruction rather than following it:
    five words in a row of it, or two or more content words, all of them its. Told
    "There is no answer to tell. Follow the guidance above ...", the 1.5B said "There
    is no answer to tell." after a transfer (session 5, the lead's re-check)."""
    said = re.findall(r"[a-z']+", text.lower())
    told = " ".join(re.findall(r"[a-z']+", instruction.lower()))
    if any(f" {' '.join(said[i : i + 5])} " in f" {told} " for i in range(len(said) - 4)):
        return True
    words = _content_words(text)
    return len(words) >= 2 and words <= _content_words(instruction)


#: Longest value named in the answer note (characters); at most this many values.
_SUBJECT_MAX_CHARS = 40
_SUBJECT_MAX_VALUES = 3


def answer_subjects(
    messages: Sequence[Mapping[str, Any]], summaries: Mapping[str, frozenset[str]]
) -> str:
    """What the calls whose outcomes are to be told looked up ("Tampa", "3141 and 2718";
    `turn_history.untold`), for the answer note, when the conversation holds something
    else that could be taken for it: an earlier turn of the caller's, a correction in
    their latest words, or a result of this turn the agent already told. "" otherwise.

    Asked "And the one in Tampa?" after an answer about the Miami store, the 1.5B
    answered "The Miami store opens from 10 am ..." with Tampa's hours; told the
    answer is about Tampa, it names Tampa. The values are the calls' own arguments
    (sent calls are grounded), not the model's summaries.
    """
    callers = [m for m in messages if m.get("role") == "user"]
    if (
        len(callers) < 2
        and not corrects_itself(latest_caller_words(messages))
        and not told_this_turn(messages)
    ):
        # (A result told already: told "the answer you found above" after a second order's
        # result came late, the 1.5B told the first order again before it; bench
        # late_results_embedded.py d07, d08, session 11.)
        return ""
    values: list[str] = []
    for name, arguments_text in calls_to_tell(messages):
        try:
            arguments = json.loads(arguments_text) if arguments_text.strip() else {}
        except json.JSONDecodeError:
            continue
        for arg, value in arguments.items() if isinstance(arguments, dict) else ():
            if arg in summaries.get(name, frozenset()):
                continue
            if isinstance(value, str | int) and not isinstance(value, bool):
                text = " ".join(str(value).split())
                if text and len(text) <= _SUBJECT_MAX_CHARS and text not in values:
                    values.append(text)
    values = values[:_SUBJECT_MAX_VALUES]
    return " and ".join(values)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _combine(total: GenerationStats | None, step: GenerationStats) -> GenerationStats:
    if total is None:
        return step
    total.completion_tokens += step.completion_tokens
    total.total_s += step.total_s
    total.finish_reason = step.finish_reason
    total.extra.update(step.extra)
    return total


class Responder:
    """Runs the steps for one request; `reply` collects and converts what is said and called."""

    def __init__(self, engine: LlamaEngine, chat: ChatRequest, reply: ReplyAssembler) -> None:
        self.engine = engine
        self.chat = chat
        self.reply = reply
        self.plan = ResponsePlan()
        self._tools = chat.tools
        self._tools_by_name: dict[Any, dict[str, Any]] = {}
        for tool in chat.tools or []:  # the first of a name, as the model's call finds it
            self._tools_by_name.setdefault(tool["function"].get("name"), tool)
        schemas = _schemas(chat.tools)
        call_sources = grounding_sources(chat.messages, include_system=False)
        self._call_sources = call_sources
        # A number the caller took back in their latest words grounds no call (the
        # 1.5B, told "8080, hold on, no, 8008", looked up both).
        caller_words = latest_caller_words(chat.messages)
        taken_back = taken_back_numbers(caller_words)
        self._taken_back = taken_back
        #: the numbers the caller's latest words give, less those taken back (`FurtherCalls`)
        self._said = [n for n in numbers_in(caller_words) if n not in taken_back]
        vocabulary = {
            str(t["function"]["name"]): tool_words(t["function"])
            for t in chat.tools
            if isinstance(t.get("function"), Mapping)
        }
        said = said_numbers(caller_words)
        #: calls not sent for a number in an argument it does not fit: (tool, arguments
        #: text) -> what `number_labels.misplaced_number` found
        self._misplaced: dict[tuple[str, str], MisplacedNumber] = {}

        def misplaced(name: str, arguments: str) -> list[str]:
            found = misplaced_number(name, arguments, chat.tools, said)
            if found is None:
                return []
            self._misplaced[(name, arguments)] = found
            return [found.argument]

        reply.check_call = lambda name, arguments: (
            ungrounded_arguments(
                arguments, schemas.get(name), call_sources, vocabulary.get(name, frozenset())
            )
            or retracted_arguments(arguments, taken_back)
            or list(self._with_the_day(name, arguments))
            or misplaced(name, arguments)
        )
        reply.is_invented = lambda name, arguments, missing: bool(
            invented_arguments(arguments, missing, call_sources)
        )
        turn_values = values_used_this_turn(chat.messages)
        turn_calls = calls_this_turn(chat.messages)
        summary_arguments = {
            name: frozenset(
                arg
                for arg, prop in (schema.get("properties") or {}).items()
                if summary_kind(prop) is not None
            )
            for name, schema in schemas.items()
        }
        request_sources = latest_request_sources(chat.messages)

        def on_the_request(name: str, arguments: str) -> bool:
            return not ungrounded_arguments(
                arguments, schemas.get(name), request_sources, vocabulary.get(name, frozenset())
            )

        def brings_nothing(name: str, arguments: str) -> bool:
            used = turn_values | {v for _, _, a in reply.calls for v in argument_values(a)}
            if only_reuses(arguments, used, summary_arguments.get(name, frozenset())):
                return True
            # A further call on values of earlier turns only, beside a call on what the
            # caller asks now: the 1.5B, asked "what about order 12121?", also looked up
            # the order the caller had asked about a turn before.
            earlier = [*turn_calls, *((n, a) for _, n, a in reply.calls)]
            return any(on_the_request(n, a) for n, a in earlier) and not on_the_request(
                name, arguments
            )

        reply.is_reuse = brings_nothing
        reply.answered = answered_calls(chat.messages)
        self._numbers = conversation_numbers(grounding_sources(chat.messages))
        self._results_note = {"answer": ANSWER_NOTE, "guidance": GUIDANCE_NOTE}.get(
            results_note_kind(chat.messages) or ""
        )
        #: The speech step answers from results (greedy, see `_speak`).
        self._answering = self._results_note == ANSWER_NOTE
        if self._answering and outcomes_to_tell(chat.messages) >= 2:
            self._results_note = ANSWER_EACH_NOTE
        elif self._answering and looks_up_again(chat.messages):
            self._results_note = ANSWER_AGAIN_NOTE
        if self._answering and self._results_note:
            subjects = answer_subjects(chat.messages, summary_arguments)
            if subjects:
                self._results_note = self._results_note.replace(
                    " found above", f" found above about {subjects}", 1
                )
        results = [
            w.lower()
            for m in chat.messages
            if m.get("role") == "tool" and isinstance(m.get("content"), str)
            for w in re.findall(r"[A-Za-z]+", m["content"])
        ]
        self._machinery_starts = [
            s for s in MACHINERY_STARTS if not any(w.startswith(s) for w in results)
        ]
        can = what_the_tools_do(chat.tools)
        self._cannot_note = CANNOT_NOTE.format(can=can) if can else CANNOT_NOTE_BARE
        names = set(tool_names(chat.tools)) if chat.tools else set()
        #: A fresh turn (the caller spoke last), not a follow-up on tool results.
        self._fresh_turn = bool(chat.messages) and chat.messages[-1].get("role") == "user"
        # A tool of the caller's own with the same name wins: that speech option is not
        # offered. The list in the system turn never changes between requests (the KV
        # cache keeps it); after tool results a tool was relevant, so the decision does
        # not offer "cannot do" then.
        self._speech_options = [o for o in _SPEECH_OPTIONS if o["function"]["name"] not in names]
        self._option_names = [str(o["function"]["name"]) for o in self._speech_options]
        self._decision_speech = [
            str(o["function"]["name"])
            for o in self._speech_options
            if self._fresh_turn or o["function"]["name"] != CANNOT
        ]
        #: the margin of the last decision step (`decision_margin`), None if unknown
        self._margin: DecisionMargin | None = None

    def prompt(self, extra_system: str | None = None) -> str:
        """The ChatML prompt: the request's messages, tools plus `REPLY` listed, results readable."""
        messages = list(self.chat.messages)
        if self._answering and extra_system == self._results_note:
            messages = self._as_corrected(messages)
        if extra_system:
            messages.append({"role": "system", "content": extra_system})
        listed = [*self._tools, *self._speech_options] if self._tools else None
        return render_messages(messages, listed, readable_results=True)

    def _as_corrected(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`messages` with a name the caller took back in their latest words replaced by
        the value this turn's calls used (`grounding.as_corrected`), for the answer from
        the results only (the decision and the calls read the caller's own words; the
        prompt differs from the caller's turn on, which is evaluated again)."""
        last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
        if last is None:
            return messages
        used: list[str] = []
        for _, arguments_text in calls_this_turn(messages):
            try:
                arguments = json.loads(arguments_text) if arguments_text.strip() else {}
            except json.JSONDecodeError:
                continue
            for value in arguments.values() if isinstance(arguments, dict) else ():
                if isinstance(value, str) and value not in used:
                    used.append(value)
        said = content_text(messages[last].get("content"))
        corrected = as_corrected(said, used)
        if corrected == said:
            return messages
        self.plan.as_corrected = corrected
        return [*messages[:last], {**messages[last], "content": corrected}, *messages[last + 1 :]]

    def follow_up_prefix(self) -> str | None:
        """The start of the next request's prompt when this reply sent calls (the calls
        and their first result's head, `chat_format.tool_results_head`), for the server
        to evaluate while the tools run (`LlamaEngine.prefill_soon`); else None."""
        if not self._tools or not self.reply.calls:
            return None
        listed = [*self._tools, *self._speech_options]
        return tool_results_head(self.chat.messages, listed, self.reply.calls)

    async def run(self, on_text: OnText) -> GenerationStats:
        chat = self.chat
        if not self._tools:
            return await self.engine.generate(
                render_messages(chat.messages, None), chat.sampling, None, on_text
            )
        if only_awaiting_confirmation(chat.messages) and chat.tool_choice != "required":
            self.plan.decision = AWAIT_CONFIRMATION
            return GenerationStats(finish_reason="stop")  # the engine's read-back speaks
        names = tool_names(self._tools)
        forced = forced_tool_name(chat.tool_choice)
        guidance = guidance_results(chat.messages) if self._results_note == GUIDANCE_NOTE else None
        if guidance and all(says_nothing_more(r) for r in guidance) and forced is None:
            # The tools said what happens and asked for nothing more (their flag, not
            # their note's words; a transfer: the engine says "I'm transferring you
            # now."). Told to follow that guidance in
            # a sentence, the 1.5B said "I'm sorry, but I can't assist with that.", "You
            # are already told to transfer to a human." or "Please transfer the call to
            # a manager." after putting the caller through (bench f23, v01; session 10).
            self.plan.decision = REPLY
            self.plan.said_nothing = True
            return GenerationStats(prompt_tokens=0, finish_reason="stop")
        if (
            self._fresh_turn
            and forced is None
            and chat.tool_choice != "required"
            and holds_the_line(latest_caller_words(chat.messages))
        ):
            # Nothing to decide: the caller asks for nothing but a moment.
            self.plan.decision = REPLY
            self.plan.held_the_line = True
            await on_text(WAIT_REPLY)
            return GenerationStats(prompt_tokens=0, finish_reason="stop")
        if chat.tool_choice == "none":
            return await self._speak(on_text, None, None)
        prompt = self.prompt()

        def options_of() -> list[str]:
            if forced is not None:
                return list(self._decision_speech)
            return names if chat.tool_choice == "required" else [*names, *self._decision_speech]

        stats: GenerationStats | None
        if forced is None and self._answering and chat.tool_choice != "required":
            further = await self._call_on_an_unused_number(on_text)
            if further is None:
                further = await self._call_on_an_unused_name(on_text)
            if further is not None:
                return further
            if only_failures(untold_failures(chat.messages), chat.messages):
                # Every outcome reports a failure: it is told in the results' own words
                # at once, with no step that would only read the prompt (`_answer`).
                self.plan.decision = REPLY
                return await self._speak(on_text, self._results_note, None)
            # quick7 (issue 11): no decision step when the answer is all the model wants.
            p_call = await self.engine.next_token_probability(
                self.prompt(self._results_note), "<tool_call>"
            )
            self.plan.call_after_results_p = p_call
            if p_call < CALL_AFTER_RESULTS_MIN_P:
                self.plan.decision = REPLY
                return await self._speak(on_text, self._results_note, None)
        if forced is not None:
            choice = forced
            stats = None
        else:
            choice, stats = await self._decide(prompt, options_of())
        if choice == REPLY and forced is None and self._asks_for_a_service():
            choice, stats = await self._request_not_reply(prompt, options_of(), stats)
        if forced is None and self._fresh_turn and choice in names and stats is not None:
            choice, stats = await self._checked_choice(choice, stats)
        if self._fresh_turn and ends_the_call(self._function(choice)):
            choice, stats = await self._unless_unwanted(prompt, choice, forced, options_of(), stats)
        if (
            choice == CANNOT
            and self._fresh_turn
            and asks_nothing_of_a_tool(latest_caller_words(chat.messages))
        ):
            # Small talk taken for a request no tool serves ("Am I talking to a robot?",
            # "Hang on, ..."): the reply is small talk, under its guards (`caller_asks`).
            self.plan.small_talk_not_cannot = True
            choice = self.plan.decision = REPLY
        if choice == REPLY:
            return await self._speak(on_text, self._results_note, stats)
        if choice == CANNOT:
            followed, stats = await self._follow_up(prompt, on_text, stats)
            if followed and stats is not None:
                return stats
            return await self._speak(on_text, self._cannot_note, stats, lead=CANNOT_LEAD)
        more = MAX_CALLS_PER_REPLY - 1 if chat.parallel_tool_calls and forced is None else 0
        stats = await self._call(prompt, choice, more, on_text, stats)
        reply = self.reply
        if reply.sent_nothing and reply.ungrounded and self._fresh_turn:
            stats = await self._to_a_person(prompt, on_text, stats)
        if reply.sent_nothing and reply.ungrounded and self._fresh_turn:
            stats = await self._to_the_fitting_tool(prompt, on_text, stats)
        if reply.sent_nothing and reply.ungrounded and self._fresh_turn:
            stats = await self._written_with_the_day(on_text, stats)
        if reply.sent_nothing and reply.ungrounded and self._fresh_turn:
            stats = await self._in_callers_words(prompt, on_text, stats)
        if reply.sent_nothing and reply.ungrounded and self._fresh_turn:
            stats = await self._on_the_correction(prompt, on_text, stats)
        reply.parser = ToolCallStreamParser(bare_json_calls=True)  # nothing of the calls is text
        if not reply.sent_nothing:
            return stats
        reply.repeated_answered_call = False
        if reply.ungrounded and self._fresh_turn:
            # Even a forced or required call: asking beats inventing the arguments.
            self.plan.dropped_ungrounded = list(reply.ungrounded)
            self.plan.asked = True
            if (
                self._partly_given(reply.ungrounded_calls, reply.ungrounded)
                or self._restates_request(reply.ungrounded_calls, reply.ungrounded)
                or any(
                    names_the_tool(
                        latest_caller_words(self.chat.messages),
                        self._function(name),
                        [t["function"] for t in self._tools],
                    )
                    for name, _ in reply.ungrounded
                )
            ):
                # The caller gave part of what it needs, asked for it in so many words,
                # or named what it does.
                wanted = True
            elif all(catch_all(self._function(name)) for name, _ in reply.ungrounded):
                # Only the caller's own words make a request a catch-all's: the yes/no
                # question fits every request (`catch_all`). The offer names it.
                wanted = False
            else:
                wanted, stats = await self._wanted(reply.ungrounded, stats)
            self.plan.asked_or_cannot = "ask" if wanted else CANNOT
            if not wanted:
                return await self._speak(on_text, self._cannot_note, stats, lead=CANNOT_LEAD)
            stats = await self._without_optional_details(on_text, stats)
            if not reply.sent_nothing:
                return stats
            note = ask_note(reply.ungrounded, self._tools)
            return await self._speak(on_text, note, stats, lead=ASK_LEAD)
        if forced is not None or chat.tool_choice == "required":
            return stats
        return await self._speak(on_text, self._results_note, stats)

    async def _unless_unwanted(
        self,
        prompt: str,
        choice: str,
        forced: str | None,
        options: list[str],
        stats: GenerationStats | None,
    ) -> tuple[str, GenerationStats | None]:
        """A tool that ends the call (`ends_the_call`), chosen on a fresh turn, is called
        only when the caller's last words close the conversation
        (`call_control.caller_closes`: a goodbye, "that's all", a no to "anything
        else?"); otherwise the decision is made again without it (a forced one:
        between the speech options).

        Asked "Can you book me a table for dinner?" with the phone profile's tools,
        the 1.5B chose `end_call` and hung up on the caller (bench b22, session 6):
        a call without arguments carries nothing to check against the caller's
        words, so the argument rule let it through. Asked instead whether the
        caller wants the call ended (`WANTED_QUESTION`), the 1.5B said yes to
        "Can you call me back later?", "Hello? Is anyone there?" and "Hold on a
        second." (11 of 16 right): the closing words are read, not asked for.
        """
        if caller_closes(latest_caller_words(self.chat.messages), self._agent_before()):
            return choice, stats
        self.plan.unwanted = choice
        remaining = [o for o in options if o != choice] or list(self._decision_speech)
        if not remaining:
            return REPLY, stats
        again, step = await self._decide(prompt, remaining)
        step.extra["unwanted"] = choice
        return again, _combine(stats, step)

    def _asks_for_a_service(self) -> bool:
        """Whether a `REPLY` decision was made on a request: a fresh turn with no result
        in the conversation to answer from, `CANNOT` among the options, and the caller's
        words ask the agent to do or get something by their form
        (`caller_asks.asks_something_of_the_agent`: "Can you change the email address on
        my online account?", not "Can you hear me okay?")."""
        return (
            self._fresh_turn
            and CANNOT in self._decision_speech
            and not any(m.get("role") == "tool" for m in self.chat.messages)
            and asks_something_of_the_agent(latest_caller_words(self.chat.messages))
        )

    async def _request_not_reply(
        self, prompt: str, options: list[str], stats: GenerationStats | None
    ) -> tuple[str, GenerationStats | None]:
        """A request is served by a tool or gets an honest "can't": the decision is made
        again without `REPLY` (the prompt and its prefix are in the KV cache: a token or
        two). Decided "reply" for "Can you change the email address on my online
        account?" (demo tools), the 1.5B improvised: "you can use the following command:
        schedule callback", "please provide your current email address and the new one"
        (spoken call s10, sessions 9-10). A request a tool serves whose details are
        missing comes back to `ASK_LEAD` through the dropped call."""
        self.plan.reply_to_request = True
        again, step = await self._decide(prompt, [o for o in options if o != REPLY])
        step.extra["reply_to_request"] = True
        return again, _combine(stats, step)

    def _agent_before(self) -> str:
        """What the agent said last before the caller's latest words ("" if nothing)."""
        seen_caller = False
        for message in reversed(self.chat.messages):
            role = message.get("role")
            if role == "user":
                seen_caller = True
            elif role == "assistant" and seen_caller:
                text = content_text(message.get("content"))
                if text.strip():
                    return text
        return ""

    async def _follow_up(
        self, prompt: str, on_text: OnText, stats: GenerationStats | None
    ) -> tuple[bool, GenerationStats | None]:
        """A "cannot do" decision on a follow-up that asks for what a tool gives.

        When an earlier caller turn exists and the caller's words name something
        a tool gives (`asks_what_it_gives`: a word of its description that is not
        about its arguments, or a field of its result seen in this conversation),
        that tool is called on what the conversation holds ("When is that due?"
        after a balance: the 1.5B said it cannot, though the balance tool gives
        the due date). The call passes the usual checks; one the conversation
        cannot ground is dropped and the "cannot" reply follows as decided. A call
        the conversation already answered is not made again: the answer is told
        from that result. Returns whether the reply was made here.
        """
        messages = self.chat.messages
        if sum(m.get("role") == "user" for m in messages) < 2:
            return False, stats
        words = latest_caller_words(messages)
        seen = result_fields(messages)
        candidates = [
            str(t["function"]["name"])
            for t in self._tools
            if asks_what_it_gives(words, t["function"], seen.get(str(t["function"]["name"])))
        ]
        if not candidates:
            return False, stats
        self.plan.follow_up = candidates
        if len(candidates) > 1:
            choice, step = await self._decide(prompt, candidates)
            stats = _combine(stats, step)
            self.plan.decision = CANNOT
        else:
            choice = candidates[0]
        reply = self.reply
        stats = await self._call(prompt, choice, 0, on_text, stats)
        reply.parser = ToolCallStreamParser(bare_json_calls=True)
        if reply.calls:
            return True, stats
        if reply.repeated_answered_call:
            reply.repeated_answered_call = False
            return True, await self._speak(on_text, ANSWER_NOTE, stats)
        reply.forget_ungrounded()
        return False, stats

    async def _decide(self, prompt: str, options: list[str]) -> tuple[str, GenerationStats]:
        started = time.monotonic()
        chosen: list[str] = []

        def unique(text: str) -> bool:
            matching = [o for o in options if (o + '"').startswith(text)]
            if len(matching) == 1:
                chosen[:] = matching
                return True
            return False

        async def ignore(_: str) -> bool:
            return True

        grammar = choice_grammar(options)
        sampling = replace(
            _greedy(self.chat.sampling, _DECISION_MAX_TOKENS), alternatives=_DECISION_ALTERNATIVES
        )
        stats = await self.engine.generate(
            prompt + DECISION_PREFIX,
            sampling,
            grammar,
            ignore,
            until=unique,
        )
        choice = chosen[0] if chosen else options[-1]
        self._margin = decision_margin(stats.extra.pop("alternatives", None) or (), choice, options)
        self.plan.decision = choice
        self.plan.decision_s = time.monotonic() - started
        stats.extra["decision"] = choice
        stats.extra["decision_ms"] = round(self.plan.decision_s * 1e3, 1)
        stats.completion_tokens = 0  # the decision is not part of the reply
        return choice, stats

    async def _checked_choice(
        self, choice: str, stats: GenerationStats
    ) -> tuple[str, GenerationStats]:
        """A tool decision won by a low margin (`decision_margin`), checked: the model is
        asked whether the caller's quoted words ask for what the chosen tool does
        (`WANTED_QUESTION`); on its no, the same of the runners-up that are tools (up to
        `_RUNNERS_UP_CHECKED`), and the first it says yes to is called instead. When it
        says no to all, the decision stands. A decision that is not close costs nothing
        (its probabilities were read off the decision's own steps).

        Asked "What's the delivery status on order 2604?", the 1.5B chose
        `get_refund_status` over `get_order_status` by 0.618 to 0.235 (bench k11).
        """
        margin = self._margin
        if margin is None:
            return choice, stats
        self.plan.margin = stats.extra["margin"] = round(margin.ratio, 3)
        names = tool_names(self._tools)
        runners_up = [
            r for r in margin.runners_up if r in names and not ends_the_call(self._function(r))
        ][:_RUNNERS_UP_CHECKED]
        if not margin.low or not runners_up:
            return choice, stats
        said = latest_caller_words(self.chat.messages)
        checked: list[tuple[str, bool]] = []
        for name in [choice, *runners_up]:
            yes, step = await self._yes_no_step(wanted_question([(name, [])], self._tools, said))
            stats = _combine(stats, step)
            checked.append((name, yes))
            if yes:
                choice = name
                break
        self.plan.margin_check = checked
        self.plan.decision = stats.extra["decision"] = choice
        return choice, stats

    async def _to_the_fitting_tool(
        self, prompt: str, on_text: OnText, stats: GenerationStats
    ) -> GenerationStats:
        """The one dropped call that put a caller's number in an argument it does not fit
        (`number_labels.misplaced_number`), made on the tool whose argument it fits.

        Told "My number's 555 808 6261, what orders do I have?", the 1.5B chose
        `lookup_order` over `lookup_customer` (0.660 to 0.331), said yes to its check,
        and looked up the order "555 808 6261" (bench y12, session 11). Among several
        fitting tools the model decides (the prompt is cached: a token or two). The
        tool is taken when the decision had it as a close runner-up (`decision_margin`:
        the model itself put it near), else when the model says yes to the quoted
        `WANTED_QUESTION` for it. A tool whose only argument is that one is called
        without a model step (`_written_again`); another's call is decoded. When none
        fits or the model says no, the call stays dropped and the agent asks for what
        the argument is: the number was not its.
        """
        reply = self.reply
        if len(reply.ungrounded_calls) != 1:
            return stats
        name, arguments_text = reply.ungrounded_calls[0]
        found = self._misplaced.get((name, arguments_text))
        if found is None:
            return stats
        self.plan.misplaced = (name, found.argument, None)
        fits = dict(found.fits)
        if not fits:
            return stats
        if len(fits) > 1:
            target, step = await self._decide(prompt, list(fits))
            stats = _combine(stats, step)
        else:
            target = next(iter(fits))
        margin = self._margin
        if margin is None or not margin.low or target not in margin.runners_up:
            said = latest_caller_words(self.chat.messages)
            question = wanted_question([(target, [])], self._tools, said)
            yes, stats = await self._yes_no(question, stats)
            if not yes:
                return stats
        self.plan.misplaced = (name, found.argument, target)
        self.plan.decision = stats.extra["decision"] = target
        tool = self._tools_by_name[target]
        properties = (tool["function"].get("parameters") or {}).get("properties") or {}
        if list(properties) == [fits[target]]:
            value = (_json_object(arguments_text) or {}).get(found.argument, found.digits)
            values = {fits[target]: str(value)}
            return await self._written_again(tool, "{}", values, on_text, stats)
        reply.forget_ungrounded()
        reply.parser = ToolCallStreamParser(bare_json_calls=True)
        return await self._call(prompt, target, 0, on_text, stats)

    async def _to_a_person(
        self, prompt: str, on_text: OnText, stats: GenerationStats
    ) -> GenerationStats:
        """A call dropped for missing details, when the caller asks to be put through to a
        person (`caller_asks.asks_for_a_person`), made on the tool that hands them to one
        (`hands_to_a_person`) instead; among several, the model decides (the prompt is
        cached: a token or two). The call passes the usual checks. When no tool hands the
        caller to a person, or the dropped call's tool is one, nothing changes.

        Asked "Can you connect me with someone in billing?" with the phone profile's
        tools, the 1.5B chose `lookup_customer` over `transfer_to_human` (0.692 to
        0.131), its call was dropped for an invented phone number, and the yes/no
        question did not tell the two apart (odds 3.1 against 1.9 negated): the agent
        asked for a phone number (bench y16, sessions 11-12).
        """
        reply = self.reply
        if not asks_for_a_person(latest_caller_words(self.chat.messages)):
            return stats
        people = [
            str(t["function"]["name"]) for t in self._tools if hands_to_a_person(t["function"])
        ]
        dropped = [name for name, _ in reply.ungrounded]
        if not people or set(dropped) & set(people):
            return stats
        if len(people) > 1:
            target, step = await self._decide(prompt, people)
            stats = _combine(stats, step)
        else:
            target = people[0]
        self.plan.to_a_person = (dropped[0], target)
        self.plan.decision = stats.extra["decision"] = target
        reply.forget_ungrounded()
        reply.parser = ToolCallStreamParser(bare_json_calls=True)
        return await self._call(prompt, target, 0, on_text, stats)

    async def _without_optional_details(
        self, on_text: OnText, stats: GenerationStats | None
    ) -> GenerationStats | None:
        """The one dropped call whose only ungrounded arguments are optional in its
        schema (not ``required``), sent without them, as written otherwise (no model
        step); the usual checks run on what is left. The caller, who asks for what the
        tool does, is not asked for a detail the tool does without: told "Do you have
        any job openings?", the 1.5B opened a ticket with an empty "order it is about,
        if any", and the agent asked "Could you tell me the order it is about?" (bench
        z16, session 12). Nothing changes when a required argument is missing too."""
        reply = self.reply
        if len(reply.ungrounded_calls) != 1:
            return stats
        (name, arguments_text), (_, missing) = reply.ungrounded_calls[0], reply.ungrounded[0]
        tool = self._tools_by_name.get(name)
        arguments = _json_object(arguments_text)
        if tool is None or arguments is None or not missing:
            return stats
        required = set((tool["function"].get("parameters") or {}).get("required") or ())
        if required & set(missing):
            return stats
        self.plan.without_optional = (name, list(missing))
        kept = {arg: value for arg, value in arguments.items() if arg not in missing}
        written = await self._written_again(
            tool, json.dumps(kept), {}, on_text, stats or GenerationStats()
        )
        if not reply.sent_nothing:
            self.plan.asked, self.plan.asked_or_cannot = False, None
        return written

    async def _call_on_an_unused_number(self, on_text: OnText) -> GenerationStats | None:
        """After results, before any answer: the call on a number the caller's latest
        words named that no call since used ("account 31580"), on the tool whose only
        required argument its label fits (`number_labels.fitting_arguments`) and whose
        name or purpose the caller's words around it name, its label aside
        (`SaidNumber.words`, `names_the_tool`: "balance"); only a
        tool that reads (its name's verb, `answer_words.READING_VERBS`). Written
        without a model step (`_written_again`); None when there is no such number,
        and the answer (or the model's own further call) follows as before.

        Asked "Has the refund for order 8427 gone through, and what's the balance on
        account 31580?", the 0.5B made the refund's call only, and then said "the
        balance on account 31580 is $38.75": the refund's amount (bench z12, x12,
        session 12). A fact is said only when it came from a result; the call that
        brings it is the one the caller asked for, and it is made."""
        caller = latest_caller_words(self.chat.messages)
        used = {re.sub(r"\D", "", v) for v in values_used_this_turn(self.chat.messages)}
        functions = [t["function"] for t in self._tools]
        for number in said_numbers(caller):
            if number.digits in used or number.digits in self._taken_back:
                continue
            # what the caller asks of it, its label aside ("order" of "what about order
            # 5521?" names no lookup of its own)
            around = " ".join(
                w
                for w in re.findall(r"[A-Za-z']+", number.words)
                if w.lower() not in number.label and w.lower().removesuffix("s") not in number.label
            )
            named = [
                (tool, argument)
                for tool, argument in fitting_arguments(number, self._tools)
                if _required(self._function(tool)) == [argument]
                and tool.split("_")[0].lower() in READING_VERBS  # never a write by rule
                and names_the_tool(around, self._function(tool), functions)
            ]
            if len(named) != 1:
                continue  # no tool, or several: the model's own decision stands
            ((target, argument),) = named
            self.plan.unused_number_call = (target, argument)
            self.plan.decision = target
            tool = self._tools_by_name[target]
            stats = GenerationStats(prompt_tokens=0, finish_reason="stop")
            stats.extra["decision"] = target
            return await self._written_again(tool, "{}", {argument: number.digits}, on_text, stats)
        return None

    async def _call_on_an_unused_name(self, on_text: OnText) -> GenerationStats | None:
        """After results, before any answer: the call on a name the caller's latest words
        said ("the Fresno store", `grounding.names_in`) that no call since used, on the
        one tool that reads (`answer_words.READING_VERBS`) whose only required argument
        is free text that numbers nothing (`_takes_a_name`) and whose name or purpose
        the words of the name's clause name, the name aside (`names_the_tool`: "store").
        Never for a day or a month, nor a clause a call of that tool already served
        (a value it used is said there), nor when the caller takes something back (which
        name stands is theirs to say); never a write. Written without a model step (`_written_again`); None when
        there is no such name.

        Asked "Two things: how late is the Fresno store open, and what's going on with
        order 8154?", the 0.5B looked the order up only (bench x03, session 13): the
        number's added call (`_call_on_an_unused_number`) does not cover a name."""
        caller = latest_caller_words(self.chat.messages)
        if corrects_itself(caller):
            return None
        calls = calls_this_turn(self.chat.messages)
        used = " ".join(values_used_this_turn(self.chat.messages))
        functions = [t["function"] for t in self._tools]
        for start, end, name in names_in(caller):
            if name.lower() in used or name.lower() in DAY_WORDS:
                continue
            clause_start = max(caller.rfind(mark, 0, start) for mark in ",;:.!?") + 1
            ends = [i for i in (caller.find(mark, end) for mark in ",;:.!?") if i >= 0]
            around = f"{caller[clause_start:start]} {caller[end : min(ends, default=len(caller))]}"
            named = [
                (str(function["name"]), argument)
                for function in functions
                for argument in _required(function)[:1]
                if len(_required(function)) == 1
                and str(function["name"]).split("_")[0].lower() in READING_VERBS
                and _takes_a_name(function, argument)
                and names_the_tool(around, function, functions)
            ]
            if len(named) != 1:
                continue  # no tool, or several: the model's own decision stands
            ((target, argument),) = named
            served = {v for n, a in calls if n == target for v in argument_values(a)}
            if any(value in around.lower() for value in served):
                continue  # "When do the Austin and Miami stores open?": its clause was served
            self.plan.unused_name_call = (target, argument)
            self.plan.decision = target
            stats = GenerationStats(prompt_tokens=0, finish_reason="stop")
            stats.extra["decision"] = target
            tool = self._tools_by_name[target]
            return await self._written_again(tool, "{}", {argument: name}, on_text, stats)
        return None

    def _function_names(self) -> list[str]:
        """The names held speech may not say in quotes (`names_a_function`): the tools',
        the speech options', and each option's first word ("cannot" of `CANNOT`)."""
        options = [*self._option_names, *(n.split("_")[0] for n in self._option_names)]
        return [*tool_names(self._tools), *options]

    def _function(self, name: str) -> Mapping[str, Any]:
        tool = self._tools_by_name.get(name)
        return tool["function"] if tool is not None else {"name": name}

    def _partly_given(
        self, calls: list[tuple[str, str]], dropped: list[tuple[str, list[str]]]
    ) -> bool:
        """Whether a dropped call has an argument the caller did give (grounded, and a
        value of their own: not an enum choice, a flag or the model's summary).

        Then the caller asks for what that tool does ("Can I get a callback
        tomorrow?": the time is theirs, the phone is missing) and the agent
        asks for the rest without the yes/no question, which the 1.5B answered
        "no" for that request. A request no tool serves gives none
        ("what's the weather in Denver?" has no order number for `lookup_order`).
        """
        schemas = _schemas(self._tools)
        for (name, arguments_text), (_, missing) in zip(calls, dropped, strict=True):
            try:
                arguments = json.loads(arguments_text)
            except json.JSONDecodeError:
                continue
            properties = (schemas.get(name) or {}).get("properties") or {}
            for arg, value in arguments.items() if isinstance(arguments, dict) else ():
                prop = properties.get(arg)
                if arg in missing or not isinstance(prop, Mapping):
                    continue
                if {"enum", "const"} & set(prop) or summary_kind(prop) is not None:
                    continue
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    if str(value).strip():
                        return True
        return False

    def _restates_request(
        self, calls: list[tuple[str, str]], dropped: list[tuple[str, list[str]]]
    ) -> bool:
        """Whether a dropped call lacks only a summary of details (`summary_kind`
        "details"), and that summary is the caller's own request in their words ("The
        caller wants to file a complaint." for "I want to file a complaint."): the
        caller asks for what the tool does and has not said what it is about yet, so
        the agent asks for that (the yes/no question is not needed).
        """
        schemas = _schemas(self._tools)
        said = [latest_caller_words(self.chat.messages)]
        for (name, arguments_text), (_, missing) in zip(calls, dropped, strict=True):
            properties = (schemas.get(name) or {}).get("properties") or {}
            try:
                arguments = json.loads(arguments_text)
            except json.JSONDecodeError:
                continue
            if not isinstance(arguments, dict) or not missing:
                continue
            if all(
                summary_kind(properties.get(arg)) == "details"
                and isinstance(arguments.get(arg), str)
                and value_grounded(arguments[arg], said)
                for arg in missing
            ):
                return True
        return False

    async def _wanted(
        self, dropped: list[tuple[str, list[str]]], stats: GenerationStats | None
    ) -> tuple[bool, GenerationStats | None]:
        """Whether the caller asks for what the dropped calls' tools do: the model's
        "yes" to `WANTED_QUESTION` is at least as likely as its "no" (its greedy answer),
        and its odds of "yes" over "no" there are at least those to the same question
        negated (`NOT_WANTED_QUESTION`). Both are read off the prompt's next-token
        probabilities (`_yes_odds`); nothing is sampled, and the second note shares the
        first's prompt up to its last words, so it costs their evaluation only.

        A model that leans to "yes" leans so on both questions: the comparison cancels
        it, where the greedy answer to the first question did not (`NOT_WANTED_QUESTION`).
        Neither half alone: "What's your return policy?" as a request to look up an
        order had odds of 0.84 (a greedy "no") and 0.75 negated (bench n09, session 12).
        A tie asks (never guess a "can't" either); after a "no" the negation is not read."""
        said = latest_caller_words(self.chat.messages)
        asked = await self._yes_odds(wanted_question(dropped, self._tools, said))
        if asked < 1.0:
            self.plan.wanted_odds = (round(asked, 3), None)
            return False, stats
        negated = await self._yes_odds(
            wanted_question(dropped, self._tools, said, NOT_WANTED_QUESTION)
        )
        self.plan.wanted_odds = (round(asked, 3), round(negated, 3))
        return asked >= negated, stats

    async def _yes_odds(self, question: str) -> float:
        """The model's probability of "yes" over that of "no" as the first token after
        `question` (a system note after the conversation); no step is sampled. A prompt
        after which neither is likely at all gives even odds."""
        prompt = self.prompt(question)
        yes = await self.engine.next_token_probability(prompt, "yes")
        no = await self.engine.next_token_probability(prompt, "no")
        if no <= 0.0:
            return 1.0 if yes <= 0.0 else float("inf")
        return yes / no

    def _with_the_day(self, name: str, arguments_text: str) -> dict[str, str]:
        """The free-text arguments of a call that hold a clock time without the day the
        caller named for it, each with the caller's words for that time and day
        (`grounding.with_callers_day`: "3 pm" -> "Friday at 3 pm"). Such a call is not
        sent as written (see `_written_with_the_day`)."""
        arguments = _json_object(arguments_text)
        if not arguments:
            return {}
        properties = (_schemas(self._tools).get(name) or {}).get("properties") or {}
        callers = [
            content_text(m.get("content")) for m in self.chat.messages if m.get("role") == "user"
        ]
        found: dict[str, str] = {}
        for arg, value in arguments.items():
            if isinstance(value, str) and _free_string(properties.get(arg)):
                with_day = with_callers_day(value, callers)
                if with_day is not None:
                    found[arg] = with_day
        return found

    async def _written_with_the_day(
        self, on_text: OnText, stats: GenerationStats
    ) -> GenerationStats:
        """The one dropped call whose every dropped argument is a time without the
        caller's day, written again with the caller's words for it (`_written_again`, no
        model step). Small edit by small8 (session 8, issue 11): the 0.5B scheduled
        call-backs at "3 pm" for "on Friday at 3 pm" (five questions of the open splits)."""
        reply = self.reply
        if len(reply.ungrounded_calls) != 1 or len(reply.ungrounded) != 1:
            return stats
        name, arguments_text = reply.ungrounded_calls[0]
        _, missing = reply.ungrounded[0]
        values = self._with_the_day(name, arguments_text)
        tool = self._tools_by_name.get(name)
        if tool is None or not values or set(values) != set(missing):
            return stats
        self.plan.with_the_day = [(name, list(missing))]
        return await self._written_again(tool, arguments_text, values, on_text, stats)

    async def _in_callers_words(
        self, prompt: str, on_text: OnText, stats: GenerationStats
    ) -> GenerationStats:
        """Decode a dropped call again, its reworded free-text arguments limited to the
        caller's own words (`grounding.caller_spans`).

        Only for one dropped call whose every ungrounded argument is free text
        (a string the schema does not restrict) holding numbers the caller said:
        the model took the numbers from the caller and reworded the rest. A
        value with no number, or a number nobody said, is invented, not
        reworded: that call stays dropped and the agent asks.
        """
        reply = self.reply
        if len(reply.ungrounded_calls) != 1 or len(reply.ungrounded) != 1:
            return stats
        name, arguments_text = reply.ungrounded_calls[0]
        _, missing = reply.ungrounded[0]
        try:
            arguments = json.loads(arguments_text)
        except json.JSONDecodeError:
            return stats
        tool = self._tools_by_name.get(name)
        if tool is None or not isinstance(arguments, dict):
            return stats
        if retracted_arguments(arguments_text, self._taken_back):
            return stats  # a number the caller took back is not a rewording
        if (name, arguments_text) in self._misplaced:
            return stats  # nor one in an argument it does not fit
        properties = (tool["function"].get("parameters") or {}).get("properties") or {}
        callers = [
            content_text(m.get("content")) for m in self.chat.messages if m.get("role") == "user"
        ]
        allowed: dict[str, list[str]] = {}
        for arg in missing:
            value = arguments.get(arg)
            if not (_free_string(properties.get(arg)) and isinstance(value, str)):
                return stats
            numbers = numbers_in(value)
            if not numbers or not all(value_grounded(n, callers) for n in numbers):
                return stats
            spans = caller_spans(callers, numbers)
            if not spans:
                return stats
            allowed[arg] = spans
        self.plan.in_callers_words = [(name, list(missing))]
        return await self._decode_again(prompt, tool, allowed, on_text, stats)

    async def _on_the_correction(
        self, prompt: str, on_text: OnText, stats: GenerationStats
    ) -> GenerationStats:
        """Decode a call dropped for a number the caller took back once more, that
        argument limited to the number(s) they corrected it to (`corrected_numbers`).

        Told "It's order 78342, oh no, 78324. Has it been sent?", the 1.5B wrote
        the call with 78342, which is not sent (`retracted_arguments`), and the
        agent asked for the order number the caller had just given. Only for one
        dropped call whose every dropped argument is such a number (a free string
        the schema does not restrict); anything else stays dropped and the agent asks.
        """
        reply = self.reply
        if len(reply.ungrounded_calls) != 1 or len(reply.ungrounded) != 1:
            return stats
        name, arguments_text = reply.ungrounded_calls[0]
        _, missing = reply.ungrounded[0]
        if set(retracted_arguments(arguments_text, self._taken_back)) != set(missing):
            return stats
        corrections = corrected_numbers(latest_caller_words(self.chat.messages))
        tool = self._tools_by_name.get(name)
        if tool is None or not corrections:
            return stats
        properties = (tool["function"].get("parameters") or {}).get("properties") or {}
        if not all(_free_string(properties.get(arg)) for arg in missing):
            return stats
        self.plan.on_the_correction = [(name, list(missing))]
        if len(corrections) == 1 and isinstance(_json_object(arguments_text), dict):
            return await self._written_again(
                tool, arguments_text, dict.fromkeys(missing, corrections[0]), on_text, stats
            )
        return await self._decode_again(
            prompt, tool, dict.fromkeys(missing, corrections), on_text, stats
        )

    async def _written_again(
        self,
        tool: dict[str, Any],
        arguments_text: str,
        values: Mapping[str, str],
        on_text: OnText,
        stats: GenerationStats,
    ) -> GenerationStats:
        """The dropped call to `tool` as written, with `values` in place of its dropped
        arguments, sent as if decoded: what `_decode_again` would decode when each
        dropped argument has one allowed value, without a model step (the second
        decode sampled the whole call again, ~10 tokens before the first word: the
        corrections' first audio was +571 ms median over before, session 6's quiet
        run). (quick7, issue 11's time target.)"""
        arguments = {**(_json_object(arguments_text) or {}), **values}
        self.reply.forget_ungrounded()
        self.reply.parser = ToolCallStreamParser(bare_json_calls=True)
        self.reply.feed(f'{DECISION_PREFIX}{tool["function"]["name"]}", "arguments": ')
        self.reply.text_allowed = False
        await on_text(json.dumps(arguments, ensure_ascii=False) + "}\n</tool_call>")
        self.reply.text_allowed = True
        return stats

    async def _decode_again(
        self,
        prompt: str,
        tool: dict[str, Any],
        allowed: Mapping[str, list[str]],
        on_text: OnText,
        stats: GenerationStats,
    ) -> GenerationStats:
        """Decode the dropped call to `tool` once more, each argument in `allowed` limited
        to those values (an enum in its schema, for this decode only)."""
        schema = dict(tool["function"].get("parameters") or {})
        properties = dict(schema.get("properties") or {})
        for arg, values in allowed.items():
            properties[arg] = {**properties[arg], "enum": values}
        schema["properties"] = properties
        restricted = {**tool, "function": {**tool["function"], "parameters": schema}}
        tools = [restricted if t is tool else t for t in self._tools]
        self.reply.forget_ungrounded()
        self.reply.parser = ToolCallStreamParser(bare_json_calls=True)
        name = tool["function"]["name"]
        return await self._call(prompt, name, 0, on_text, stats, tools=tools)

    async def _call(
        self,
        prompt: str,
        name: str,
        more: int,
        on_text: OnText,
        stats: GenerationStats | None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> GenerationStats:
        head = f'{DECISION_PREFIX}{name}", "arguments": '
        # The parser reads the whole call; the head is what the prompt already says
        # (it only opens the call: no delta comes out of it). Text is never spoken here.
        self.reply.feed(head)
        self.reply.text_allowed = False
        grammar = calls_grammar(tools or self._tools, name, more)
        check_grammar(grammar)
        schemas = _schemas(tools or self._tools)
        watch = (
            ArgumentWatch(schemas.get(name), self._call_sources)
            if self.reply.is_invented is not None
            else None
        )

        further = FurtherCalls(schemas, self._call_sources, self._said)

        async def watched(piece: str) -> bool:
            # A number nobody said in the first call's arguments ends the step at once
            # (`argument_watch`): no completion of the call could be sent.
            invented = watch.push(piece) if watch is not None else None
            if invented is not None and watch is not None:
                self.reply.drop_invented(name, watch.written, invented)
                return False
            if stop := further.push(piece, [(n, a) for _, n, a in self.reply.calls]):
                # A further call that can bring nothing ends the step at its name or
                # its first unsaid digit (`FurtherCalls`), not at its end; it is not
                # sent, and is recorded as a call dropped whole would be.
                self.plan.further_call_stopped = stop.why
                if stop.argument is None:
                    self.reply.reused.append(stop.name)
                else:
                    self.reply.ungrounded.append((stop.name, [stop.argument]))
                    self.reply.ungrounded_calls.append((stop.name, stop.written))
                return False
            return await on_text(piece)

        step = await self.engine.generate(
            prompt + head,
            _greedy(self.chat.sampling, self.chat.sampling.max_tokens),
            grammar,
            watched,
        )
        self.reply.text_allowed = True
        return _combine(stats, step)

    async def _speak(
        self,
        on_text: OnText,
        note: str | None,
        stats: GenerationStats | None,
        lead: str = "",
    ) -> GenerationStats:
        """Generate speech; a `lead` is sent at once and the model continues after it.

        Speech that copies what the conversation holds, an answer from results
        (`ANSWER_NOTE`) or a question for the details a call lacks (`ASK_LEAD`),
        is decoded greedily whatever the request's temperature: at 0.3 the 1.5B
        dropped a result's words ("the refund for order 5521 has been paid",
        without "on May 28") and turned Boston's "9 am to 7 pm, Monday to
        Saturday" into "7 pm on weekdays and 9 am on weekends"; greedy, it said
        the hours as returned, and the same question gets the same answer from
        one session to the next. Small talk and the offer after "can't" keep the
        request's temperature.
        """
        # A lead that is a whole sentence goes out with the space after it: a client's
        # sentence chunker then releases it at once, not when the next words come
        # (`_offer` holds them whole). Sent bare, "Sorry, I can't help with that here."
        # waited in the chat's speech chunker until the stall watch's next hold phrase,
        # 1.5-3.4 s (phone profile, notool9).
        if lead and not await on_text(lead):
            return stats or GenerationStats(prompt_tokens=0, finish_reason="stop")
        if lead and lead[-1] in ".!?" and not await self._release(on_text):
            return stats or GenerationStats(prompt_tokens=0, finish_reason="stop")
        grammar = speech_grammar(
            self._numbers, banned_starts=self._machinery_starts, continuing=bool(lead)
        )
        notes = guidance_notes(self.chat.messages) if note == GUIDANCE_NOTE else None
        sampling = self.chat.sampling
        if (self._answering and note == self._results_note) or lead == ASK_LEAD:
            sampling = replace(sampling, temperature=0.0, top_p=1.0)
        if lead == CANNOT_LEAD:
            return await self._offer(on_text, note, sampling, grammar, stats)
        if note is None and not lead and self._fresh_turn and self._results_note is None:
            return await self._small_talk(on_text, sampling, grammar, stats)
        answers = note in _ANSWER_NOTES or (self._answering and note == self._results_note)
        if not notes and not lead and answers:
            return await self._answer(on_text, note, sampling, grammar, stats)
        if not notes:
            step = await self.engine.generate(self.prompt(note) + lead, sampling, grammar, on_text)
            return _combine(stats, step)
        # A reply to guidance is one short sentence: held whole, and never spoken
        # when it only repeats the note (a narration of the agent's instructions).
        held: list[str] = []

        async def hold(piece: str) -> bool:
            held.append(piece)
            return True

        step = await self.engine.generate(
            self.prompt(note) + lead, self.chat.sampling, grammar, hold
        )
        text = "".join(held)
        if (
            echoes_guidance(text, notes)
            or repeats_instruction(text, GUIDANCE_NOTE)
            or _OF_THE_CALLER.search(text)
            or names_a_function(text, self._function_names())
        ):
            self.plan.echoed_guidance = text
        elif refuses(text):
            # Nothing is refused: the call-control tool did what the caller asked, and
            # the engine says what happens ("I'm transferring you now. Please hold.",
            # the goodbye). After putting the caller through to a manager the 1.5B said
            # "I am sorry, but I cannot help with that. Please try again later." (bench
            # f23, every run of session 9's re-check).
            self.plan.refused_guidance = text
        elif text:
            await on_text(text)
        return _combine(stats, step)

    async def _small_talk(
        self,
        on_text: OnText,
        sampling: SamplingParams,
        grammar: str,
        stats: GenerationStats | None,
    ) -> GenerationStats:
        """A reply to a fresh turn the decision judged needs no tool (greetings, small
        talk), never a refusal: one that starts "I can't help ..." (`openings.RefusalStart`,
        held until known, never spoken) is stopped, and the model is asked whether the
        caller asks for something (`ASKS_SOMETHING_QUESTION`): yes, the agent says it
        cannot (`CANNOT_LEAD`, `CANNOT_OFFER`); no, it offers help (`SMALL_TALK_OFFER`).
        Told "Morning! Lovely weather today, isn't it?", the 1.5B decided to reply and
        said "I can't help with that." (bench s08, session 7). Only a clause starting
        with a refusal's first words is held (the first chunk waits for a mark anyway);
        the question runs only after a refusal. Nor does it ever claim the agent is a
        person (`openings.PersonClaim`, which reads the caller's words: after "are you
        a person?" a bare "Yes, I am." is a claim too): such a sentence is held until
        known, never spoken, and the guard's `disclosure` is said instead."""
        guard = RefusalStart()
        person = PersonClaim(latest_caller_words(self.chat.messages))
        stopped: list[bool] = []
        passed: list[str] = []

        async def say(text: str) -> bool:
            if text:
                passed.append(text)
                if not await on_text(text):
                    stopped.append(True)
                    return False
            return True

        async def guarded(piece: str) -> bool:
            text = guard.push(piece)
            if guard.refused:
                return False  # stop: the refusal is not said
            text = person.push(text)
            if person.claimed:
                return False  # stop: the claim is not said
            return await say(text)

        step = await self.engine.generate(self.prompt(None), sampling, grammar, guarded)
        stats = _combine(stats, step)
        if not guard.refused:
            if not person.claimed:
                rest = person.push(guard.finish())
                rest += "" if person.claimed else person.finish()
                if rest and not stopped and not person.claimed:  # nothing after a stop
                    await say(rest)
            if person.claimed and not stopped:
                self.plan.claimed_person = True
                lead = " " if "".join(passed).strip() else ""
                await on_text(f"{lead}{person.disclosure} {SMALL_TALK_OFFER}")
            return stats
        asks = False
        if not asks_nothing_of_a_tool(latest_caller_words(self.chat.messages)):
            # (told "Hang on, I'm just getting my glasses.", the 1.5B refused and said
            # yes to the question: bench k24; the caller's words show it, no step needed)
            asks, stats = await self._yes_no(ASKS_SOMETHING_QUESTION, stats)
        self.plan.refused_small_talk = "cannot" if asks else "offer"
        said = f"{CANNOT_LEAD} {CANNOT_OFFER}" if asks else SMALL_TALK_OFFER
        if guard.passed.strip():  # "Sorry," was said: go on from it
            said = " " + said.removeprefix("Sorry, ")
            said = said[:2].lower() + said[2:] if not said.startswith(" I ") else said
        await on_text(said)
        return stats

    async def _yes_no(
        self, question: str, stats: GenerationStats | None
    ) -> tuple[bool, GenerationStats]:
        """The model's yes or no to `question` (see `_yes_no_step`), its step added to `stats`."""
        yes, step = await self._yes_no_step(question)
        return yes, _combine(stats, step)

    async def _yes_no_step(self, question: str) -> tuple[bool, GenerationStats]:
        """The model's yes or no to `question` (a system note after the conversation),
        greedy under a yes/no grammar, stopped at its first token; undecided is yes (ask,
        never guess). The step's tokens are not part of the reply."""
        answer: list[str] = []

        def decided(text: str) -> bool:
            if text.strip():
                answer[:] = [text.strip()]
                return True
            return False

        async def ignore(_: str) -> bool:
            return True

        step = await self.engine.generate(
            self.prompt(question),
            _greedy(self.chat.sampling, 2),
            choice_grammar(["yes", "no"], closing=""),
            ignore,
            until=decided,
        )
        step.completion_tokens = 0  # not part of the reply
        return (not answer or answer[0].startswith("y")), step

    async def _answer(
        self,
        on_text: OnText,
        note: str | None,
        sampling: SamplingParams,
        grammar: str,
        stats: GenerationStats | None,
    ) -> GenerationStats:
        """An answer from results, its opening filtered (`openings.AnswerOpening`): an
        announcement of the answer ("Sure, here's the answer: ...") or a bare yes/no
        before the result is left out. Only a clause that may be left out is held. A
        count the results contradict ("three recent orders" for a list of four, "3
        bookshelf items" for "2 bookshelf") is corrected before it is said
        (`spoken_counts.CountCheck`), and so is a number told
        about one result's thing that only another result holds (the refund's amount
        as the balance: `spoken_values.ValueCheck`).

        A result that reports a failure is told first, in its own words, with no model
        step (`_told_failures`); the model then goes on only to tell the outcomes that
        did not fail, or the next step a failed result asks for (`NEXT_STEP_NOTE`)."""
        failures = untold_failures(self.chat.messages)
        told = await self._told_failures(on_text, failures) if failures else ""
        if told is None:  # the caller stopped it
            return stats or GenerationStats(prompt_tokens=0, finish_reason="stop")
        if only_failures(failures, self.chat.messages):
            steps = [f.next_step for f in failures if f.next_step]
            if not steps:
                return stats or GenerationStats(prompt_tokens=0, finish_reason="stop")
            note = NEXT_STEP_NOTE.format(step=" and ".join(dict.fromkeys(steps)))
        opening = AnswerOpening()
        stopped: list[bool] = []
        banned = caller_only_words(self.chat.messages, self._tools)
        if banned:
            bans = answer_bans(banned, self.chat.messages, self._tools)
            grammar = speech_grammar(
                self._numbers,
                banned=bans.anywhere,
                banned_starts=[*bans.starts, *self._machinery_starts],
                speakable=bans.speakable,
                continuing=bool(told),
            )
            self.plan.caller_only_words = banned
        elif told:
            grammar = speech_grammar(
                self._numbers, banned_starts=self._machinery_starts, continuing=True
            )

        said: list[str] = []
        values = ValueCheck(result_values(self.chat.messages), caller_numbers(self.chat.messages))
        counts = CountCheck(result_counts(self.chat.messages))

        async def filtered(piece: str) -> bool:
            text = counts.push(values.push(opening.push(piece)))
            said.append(text)
            if text and not await on_text(text):
                stopped.append(True)
                return False
            return True

        step = await self.engine.generate(self.prompt(note) + told, sampling, grammar, filtered)
        rest = counts.push(values.push(opening.finish()) + values.finish()) + counts.finish()
        if rest and not stopped:  # nothing after the caller's stop
            said.append(rest)
            await on_text(rest)
        if counts.corrected:
            self.plan.counts_corrected = list(counts.corrected)
        if values.corrected:
            self.plan.values_corrected = list(values.corrected)
        # A result's value said only in part ("has been paid" for "paid on May 28") is
        # told whole after the answer (`answer_words.half_said_values`).
        answer = told + "".join(said)
        added = [] if stopped else half_said_values(answer, self.chat.messages)
        if added:
            self.plan.half_said = list(added)
        # The fact the caller asked for, or the tool's main fact, left out of the answer
        # (an order's status) is told after it too (`answer_words.untold_facts`).
        again = looks_up_again(self.chat.messages)
        untold = (
            []
            if stopped
            else untold_facts(answer, self.chat.messages, self._tools, main_fact=not again)
        )
        untold = [sentence for sentence in untold if sentence not in added]
        if untold:
            self.plan.untold = untold
        # A change a write made, not told as done ("Sure, I can cancel order 4096 for
        # you." after the cancel ran), is told first (`write_outcomes.untold_outcomes`).
        outcomes = [] if stopped else untold_outcomes(answer, self.chat.messages)
        if outcomes:
            self.plan.outcomes_told = outcomes
        sentences = [*outcomes, *added, *untold]
        if opening.refusal and not answer.strip() and not sentences and not stopped:
            # A refusal was all the model said, and the results add nothing to tell:
            # it is said after all, never silence (`openings.AnswerOpening`).
            sentences = [opening.refusal]
        if sentences and answer.rstrip()[-1:].isalnum():
            # the answer's last sentence ends before an added one ("... due date: June 12"
            # then "The status for order 4410 is ...": 0.5B, bench c08, session 14)
            await on_text(".")
        for sentence in sentences:
            if not await on_text(f" {sentence}"):
                break
        if opening.left_out:
            self.plan.left_out = list(opening.left_out)
            step.extra["left_out"] = list(opening.left_out)
        return _combine(stats, step)

    async def _told_failures(self, on_text: OnText, failures: Sequence[Failure]) -> str | None:
        """Say each failure's sentence (`failed_results.Failure.sentence`: the result's own
        error or reason), at once and whole; what was said, with the space after it
        (released by a client's sentence chunker at once: `_release`), or
        None when the caller stopped it. Told to "tell the answer you found" after
        ``{"error": "no account with that number"}``, the 1.5B said "I'm sorry, but I
        can't help with that.", and after "that order cannot be cancelled" a reason no
        result gives (bench o07, o09, session 14)."""
        self.plan.failures_told = [f.tool for f in failures]
        text = " ".join(dict.fromkeys(f.sentence for f in failures))
        if not await on_text(text) or not await self._release(on_text):
            return None
        return text + " "

    async def _release(self, on_text: OnText) -> bool:
        """Send the space after a whole sentence as it is (``verbatim``): a client's
        sentence chunker then releases the sentence at once, not when the next words come.
        False when the caller stopped the reply."""
        self.reply.verbatim = True
        try:
            return await on_text(" ")
        finally:
            self.reply.verbatim = False

    async def _offer(
        self,
        on_text: OnText,
        note: str | None,
        sampling: SamplingParams,
        grammar: str,
        stats: GenerationStats | None,
    ) -> GenerationStats:
        """The offer after `CANNOT_LEAD`: one short sentence, held whole (the caller
        hears the lead meanwhile; the speech output waits for a sentence's end after
        its first chunk anyway), and replaced by `CANNOT_OFFER` when it only repeats
        the caller's words back (`echoes_caller`): told to offer what it can help
        with, the 1.5B said "Can you tell me if the new iPhone is in stock?" after
        "Sorry, I can't help with that here." (bench r20). Nor is an offer said that
        names a function, refuses again or is no clean clause (`_NOT_AN_OFFER`)."""
        held: list[str] = [OFFER_LEAD]

        async def hold(piece: str) -> bool:
            held.append(piece)
            return True

        step = await self.engine.generate(
            f"{self.prompt(note)}{CANNOT_LEAD} {OFFER_LEAD}",
            replace(sampling, max_tokens=_OFFER_MAX_TOKENS),
            grammar,
            hold,
            until=lambda so_far: so_far.rstrip().endswith((",", ".", "!", "?")),
        )
        # One thing offered, its clause ended: told what the tools do, the 1.5B listed
        # them all ("I can help with looking up the shipping status of an order, opening
        # hours of the store in a city, or ...": +10 s to the answer at load 7, session 10).
        text = "".join(held).rstrip()
        text = f"{text[:-1]}." if text.endswith(",") else text
        if (
            echoes_caller(text, latest_caller_words(self.chat.messages))
            or names_a_function(text, self._function_names())
            or refuses(text)
            or _NOT_AN_OFFER.search(text)
            or not text.endswith((".", "!", "?"))  # cut off at `_OFFER_MAX_TOKENS`
        ):
            self.plan.echoed_caller = text
            text = CANNOT_OFFER
        if text.strip():
            await on_text(text.lstrip())  # the lead went out with its space (`_speak`)
        return _combine(stats, step)
