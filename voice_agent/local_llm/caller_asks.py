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
#: Words with which a caller asks the agent to wait, at the start of their words.
_WAIT = re.compile(
    r"^(?:(?:uh|um|oh|ok|okay|sorry|right|sure|yes|yeah)\W+)*"
    r"(?:hang on|hold on|one (?:sec|second|moment|minute|min)|"
    r"(?:just |wait |give me |bear with me )?(?:a|one) (?:sec|second|moment|minute|min)|"
    r"bear with me|wait a (?:sec|second|moment|minute|bit))\b"
)
#: What makes words a request for something: a question, a number, a request form.
_ASKS_FOR_SOMETHING = re.compile(
    r"\?|\d|\b(?:can you|could you|would you|will you|please|i want|i need|i'd like|"
    r"i would like|tell me|check|look up|where|what|when|how|why|which)\b"
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
    glasses.", "One second, let me find it."): their words start with a wait phrase and
    ask for nothing (no question, number or request form)."""
    t = _words(text)
    if not _WAIT.search(t):
        return False
    rest = _WAIT.sub("", t, count=1)
    return not _ASKS_FOR_SOMETHING.search(rest)


def asks_nothing_of_a_tool(text: str) -> bool:
    """Small talk a "cannot do" decision misjudged: a question about what the agent is
    (`asks_what_the_agent_is`) or a request to wait (`holds_the_line`)."""
    return asks_what_the_agent_is(text) is not None or holds_the_line(text)
