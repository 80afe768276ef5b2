"""What a caller's words ask of the agent itself, read without the model.

The decision step (`respond`) judged some small talk as a request no tool serves:
asked "Am I talking to a robot right now?" or "Is this a real human I'm speaking
to?", the 1.5B chose "cannot do" and the caller heard "Sorry, I can't help with
that here." (bench k08, i01-i06, sessions 9-10); told "One second, let me find my
reading glasses.", the same. These questions are about the agent, or ask nothing at
all, so the reply is small talk, whose guards (`openings.RefusalStart`,
`openings.PersonClaim`) keep it honest. A request that a tool could serve is never
one of them: a question about the agent names no number, and a caller who asks to
*talk to* a person ("Can I speak to a real person?") asks for a transfer.

English, like the prompts shipped with the product.
"""

from __future__ import annotations

import re
from typing import Literal

#: Words that ask whether the agent is a person ("real" only of one: "are you real?",
#: "a live agent", not "is that a real discount?").
_PERSON = (
    r"human|humans|person|people|man|woman|"
    r"(?:real|live|actual)(?= (?:human|person|people|man|woman|agent|one|or)\b|\W*$|\W*,)"
)
#: Words that ask whether the agent is a machine.
_MACHINE = (
    r"robot|robots|bot|bots|chatbot|machine|computer|ai|a\.i\.|artificial|automated|"
    r"automatic|recording|recorded|program|software|voicemail|answering machine"
)
#: A question whose subject is the agent ("are you", "is this", "am I talking to").
_ABOUT_THE_AGENT = re.compile(
    r"\b(?:are you|r u|you're|you are|is (?:this|that|it)|was that|"
    r"am i (?:talking|speaking|chatting|dealing) (?:to|with)|"
    r"who am i (?:talking|speaking|chatting) (?:to|with))\b"
)
#: A request to talk to someone (a transfer), not a question about the agent.
_ASKS_TO_TALK = re.compile(
    r"\b(?:can|could|may) (?:i|we) (?:talk|speak|chat)\b|"
    r"\b(?:i want|i'd like|i would like|i need|let me|put me|connect me|transfer me|get me)\b"
)
#: Words with which a caller asks the agent to wait, anywhere in their words: "hang on",
#: "bear with me", "give me a second", "one moment", "can you hold on a minute?"; a bare
#: "a second" only where a clause starts ("A moment, please."), not "for a minute". Told
#: "Sorry, my dog is barking, give me a second.", the 1.5B picked a tool and asked for an
#: order number (bench m24, session 10): the wait came after an apology and a reason.
_WAIT = re.compile(
    r"(?:\b(?:can|could|would|will) you (?:please |just )?|\bplease )?"
    r"(?:\b(?:(?:hang|hold) on|hold the line|bear with me)"
    r"(?: (?:just )?(?:a|one) (?:sec|second|moment|minute|min|bit))?|"
    r"\bwait (?:just )?(?:a|one) (?:sec|second|moment|minute|min|bit)|"
    r"\b(?:just|give me|give us|one) (?:a |one )?(?:sec|second|moment|minute|min)|"
    r"(?:^|[,.!?] )(?:a|one) (?:sec|second|moment|minute|min))\b"
    r"(?:,? (?:please|for me))?\??"
)
#: Words after a wait phrase with which the caller takes something back (the "hang on"
#: was a self-correction: "Store hours in Dallas, no hang on, Houston I mean.", f04).
_TAKES_BACK = re.compile(r"\b(?:i mean|i meant|actually|rather|instead|make that|scratch that)\b")
#: What makes words a request for something: a question, a number, a request form.
_ASKS_FOR_SOMETHING = re.compile(
    r"\?|\d|\b(?:can you|could you|would you|will you|please|i want|i need|i'd like|"
    r"i would like|tell me|check|look up|where|what|when|how|why|which)\b"
)
#: The forms of a request of the agent: "can you ...", "could I ...", "please ...",
#: "I'd like ...", "I need ...". A question for a fact ("Do you sell gift cards?",
#: "What's your return policy?") is a request too, but not by its form.
_REQUEST_FORM = re.compile(
    r"\b(?:can|could|would|will) (?:you|i|we|someone|somebody|anyone)\b|\bplease\b|"
    r"\b(?:i|we) (?:want|need|'d like|would like|wanna)\b|\bi'd like\b|\bi'm (?:trying|looking) to\b"
)
#: Small talk about the call, the agent's day or the weather, that asks for nothing a
#: tool or the business could do: "How are you?", "How's your day going?", "Is it always
#: this busy on your line?", "Lovely weather today, isn't it?", "Can you hear me okay?",
#: "What's your name?". Told "Is it always this busy on your line?", the 1.5B decided
#: "cannot do" and the caller heard "Sorry, I can't help with that here." (bench m08,
#: session 10).
_ABOUT_THE_CALL = re.compile(
    r"\b(?:can|could) you (?:hear me|repeat that|say that again|"
    r"speak (?:up|louder|slower|more slowly))\b|"
    r"\bwhat(?:'s| is) your name\b|\bwho (?:am i|are you)\b|\bhow (?:are|r) (?:you|things)\b|"
    r"\bhow(?:'s| is| has| was) (?:your (?:day|morning|afternoon|evening|week|weekend)|"
    r"it going|everything|life)\b|"
    r"\b(?:is it|are you|it's|you're|is your line|are things) (?:always |usually |still |"
    r"very |so |really |quite )*(?:this |that |so )?(?:busy|quiet|hectic|crazy)\b|"
    r"\b(?:lovely|nice|beautiful|gorgeous|terrible|awful|horrible|miserable|great) "
    r"(?:weather|day)\b|\bit's (?:pouring|raining|snowing|freezing|boiling|so hot|so cold)\b"
)
#: What makes the rest of small talk a request after all: a number or a request form.
_ASKS_BESIDE = re.compile(
    r"\d|\b(?:can you|could you|would you|will you|please|i want|i need|i'd like|"
    r"i would like|tell me|check|look up|where|when|which)\b"
)


def _words(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").split())


def asks_what_the_agent_is(text: str) -> Literal["person", "machine", "both"] | None:
    """Whether the caller asks what the agent is: a question about the agent ("are
    you", "is this", "am I talking to") with a word of a person ("human", "real",
    "live") or of a machine ("robot", "computer", "recording"), no number, and no
    request to talk to someone. Returns which the caller asks about: "person" (a
    yes would claim the agent is one), "machine" (a no would), or "both" ("are you
    a person or a computer?"); None for anything else."""
    t = _words(text)
    if not _ABOUT_THE_AGENT.search(t) or _ASKS_TO_TALK.search(t) or re.search(r"\d", t):
        return None
    person = re.search(rf"\b(?:{_PERSON})\b", t) is not None
    machine = re.search(rf"\b(?:{_MACHINE})\b", t) is not None
    if person and machine:
        return "both"
    return "person" if person else "machine" if machine else None


def holds_the_line(text: str) -> bool:
    """Whether the caller only asks the agent to wait ("Hang on, I'm just getting my
    glasses.", "Sorry, my dog is barking, give me a second."): their words hold a wait
    phrase (`_WAIT`, anywhere), it takes nothing back ("no hang on", "I mean"), and the
    rest asks for nothing (no question, number or request form)."""
    t = _words(text)
    wait = _WAIT.search(t)
    if wait is None:
        return False
    before, after = t[: wait.start()], t[wait.end() :]
    if re.search(r"\bno\W*$", before) or _TAKES_BACK.search(after):
        return False  # a self-correction: "Dallas, no hang on, Houston I mean."
    return not _ASKS_FOR_SOMETHING.search(f"{before} {after}")


def makes_small_talk(text: str) -> bool:
    """Whether the caller's words are small talk about the call, the agent's day or the
    weather (`_ABOUT_THE_CALL`: "Is it always this busy on your line?", "How are you?",
    "Can you hear me okay?") and ask for nothing else: no number, no request form
    (`_ASKS_BESIDE`) in the rest of their words, no request to talk to someone."""
    t = _words(text)
    about = _ABOUT_THE_CALL.search(t)
    if about is None or _ASKS_TO_TALK.search(t):
        return False
    return not _ASKS_BESIDE.search(f"{t[: about.start()]} {t[about.end() :]}")


def asks_nothing_of_a_tool(text: str) -> bool:
    """Small talk a "cannot do" decision misjudged: a question about what the agent is
    (`asks_what_the_agent_is`), a request to wait (`holds_the_line`), or small talk about
    the call, the agent's day or the weather (`makes_small_talk`)."""
    return (
        asks_what_the_agent_is(text) is not None or holds_the_line(text) or makes_small_talk(text)
    )


#: Words for a person the caller may ask to be put through to.
PERSON_WORDS = (
    r"someone|somebody|anyone|anybody|person|people|human|humans|agent|representative|rep|"
    r"operator|manager|supervisor|colleague|colleagues|staff|boss|advisor|adviser"
)
#: Words with which a caller asks to reach someone: to talk or speak to them, to be
#: connected, put or passed through, transferred, or to have them got on the line.
_REACH = re.compile(
    r"\b(?:talk|speak|chat)(?:ing)? (?:to|with)\b|"
    r"\b(?:connect|put|pass|transfer|get|patch|send) (?:me|us)\b|\bthrough to\b"
)
_PERSON_WORD = re.compile(rf"\b(?:{PERSON_WORDS})\b")


def asks_for_a_person(text: str) -> bool:
    """Whether the caller asks to be put through to a person: words with which they ask
    to reach someone (`_REACH`: "talk to", "connect me", "put me through to", "get me")
    and a word for a person (`PERSON_WORDS`: "someone", "a human", "your manager"), not
    a question what the agent is ("Am I speaking to a real person?",
    `asks_what_the_agent_is`). "Can you connect me with someone in billing?" asks for a
    person, though it sounds like an account lookup to the 1.5B (bench y16); "Can
    somebody phone me tomorrow?" asks for a call back, not to reach anyone now."""
    t = _words(text)
    if asks_what_the_agent_is(text) is not None or re.search(r"\bam i (?:talking|speaking)\b", t):
        return False
    return _REACH.search(t) is not None and _PERSON_WORD.search(t) is not None


def asks_something_of_the_agent(text: str) -> bool:
    """Whether the caller's words ask the agent to do or get something by their form
    ("Can you change the email on my account?", "I'd like a refund", "Please ..."),
    and are not small talk (`asks_nothing_of_a_tool`: "Can you hear me okay?")."""
    t = _words(text)
    return _REQUEST_FORM.search(t) is not None and not asks_nothing_of_a_tool(text)
