"""Call control: what a tool may ask of the call, keypad digits, and a caller's yes or no.

A tool that takes a :class:`~voice_agent.tools.ToolContext` can reach the call
through ``ctx.call`` (a :class:`CallControl`): ask for a transfer, a hang-up
or DTMF tones. A request never acts at once: it becomes a typed
:class:`CallAction` posted to the agent's FSM as :class:`CallActionRequested`,
and the transition table decides when it happens (a hang-up after the
goodbye has been heard; a transfer after the agent said so). The transport
carries it out (:class:`CallController`, implemented by the phone and LiveKit
transports; the console and file transports record it).

:class:`DtmfCollector` turns keypad digits into an entry (``#`` ends it, or a
pause longer than the inter-digit timeout); :func:`confirmation_answer` reads
a caller's answer to "shall I go ahead?"; :func:`caller_closes` whether the
caller's words end the conversation (the only time a call may be hung up on
the model's word).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from fsm import Event

__all__ = [
    "CallAction",
    "CallActionFailed",
    "CallActionRefused",
    "CallActionRequested",
    "CallControl",
    "CallController",
    "DtmfCollector",
    "HangUp",
    "SendDtmf",
    "Transfer",
    "caller_closes",
    "confirmation_answer",
]


@dataclass(frozen=True)
class Transfer:
    """Hand the caller to ``destination`` (a phone number, a SIP URI or a queue name)."""

    destination: str
    reason: str = ""
    kind: Literal["transfer"] = "transfer"


@dataclass(frozen=True)
class HangUp:
    """End the call once what the agent is saying has been heard."""

    reason: str = ""
    kind: Literal["hang_up"] = "hang_up"


@dataclass(frozen=True)
class SendDtmf:
    """Play keypad tones on the line (an IVR on the other side)."""

    digits: str
    kind: Literal["send_dtmf"] = "send_dtmf"


CallAction = Transfer | HangUp | SendDtmf

_DTMF = re.compile(r"^[0-9*#A-Dw]+$")


@dataclass(frozen=True, kw_only=True)
class CallActionRequested(Event):
    """A tool asked for a call-control action; the transition table decides when it happens."""

    action: CallAction
    call_id: str = ""


@dataclass(frozen=True, kw_only=True)
class CallActionFailed(Event):
    """A hang-up or transfer could not be carried out (the call goes on)."""

    action: CallAction
    error: str


class CallActionRefused(RuntimeError):
    """A tool's hang-up the engine would not carry out: the caller has not ended the
    conversation (:func:`caller_closes`). The message says why, for the model."""


class CallController(Protocol):
    """What a transport does for call control (the phone and LiveKit transports implement it)."""

    async def transfer(self, destination: str) -> None:
        """Hand the call to ``destination``; raise on failure."""
        ...

    async def hang_up(self) -> None:
        """End the call for everyone."""
        ...

    async def send_dtmf(self, digits: str) -> None:
        """Play keypad tones."""
        ...


class CallControl:
    """The call as a tool sees it: requests become FSM events, never direct actions."""

    def __init__(
        self,
        post: Callable[[Event], None],
        *,
        call_id: str = "",
        may_hang_up: Callable[[], bool] | None = None,
    ) -> None:
        self._post_in_loop = post
        self._call_id = call_id
        #: Whether a tool may end the call now (the engine: the caller's last words
        #: closed the conversation); None: always.
        self._may_hang_up = may_hang_up
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def for_call(self, call_id: str) -> CallControl:
        """The same call control, with requests attributed to the tool call ``call_id``."""
        other = CallControl.__new__(CallControl)
        other._post_in_loop, other._call_id, other._loop = self._post_in_loop, call_id, self._loop
        other._may_hang_up = self._may_hang_up
        return other

    def _post(self, event: Event) -> None:
        """Post from the loop's thread, or hand over to it from a tool's worker thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                raise RuntimeError("call control used outside the agent's event loop") from None
            self._loop.call_soon_threadsafe(self._post_in_loop, event)
            return
        self._post_in_loop(event)

    def transfer(self, destination: str, reason: str = "") -> Transfer:
        """Ask to transfer the caller; returns the request as recorded."""
        if not destination.strip():
            raise ValueError("a transfer needs a destination")
        action = Transfer(destination=destination.strip(), reason=reason)
        self._post(CallActionRequested(action=action, call_id=self._call_id))
        return action

    def hang_up(self, reason: str = "") -> HangUp:
        """Ask to end the call after the current sentence has been heard.

        Raises :class:`CallActionRefused` (nothing is posted) when the caller has not
        ended the conversation: a model that hangs up on a request it cannot serve
        ("Can you book me a table?") must answer it instead.
        """
        if self._may_hang_up is not None and not self._may_hang_up():
            raise CallActionRefused(
                "the caller has not said goodbye, so the call goes on: answer what they said"
            )
        action = HangUp(reason=reason)
        self._post(CallActionRequested(action=action, call_id=self._call_id))
        return action

    def send_dtmf(self, digits: str) -> SendDtmf:
        """Ask to play keypad tones (0-9, *, #, A-D; w is a half-second pause)."""
        if not _DTMF.match(digits):
            raise ValueError(f"not DTMF digits: {digits!r}")
        action = SendDtmf(digits=digits)
        self._post(CallActionRequested(action=action, call_id=self._call_id))
        return action


class DtmfCollector:
    """Collects keypad digits into entries: ``#`` ends one, and so does a pause.

    :meth:`press` takes one key at time ``now`` (clock seconds) and returns a
    finished entry when ``#`` completes one; :meth:`expire` returns the
    pending entry once ``inter_digit_timeout_s`` passed since the last key
    (call it from a timer); ``*`` clears what was typed so far.
    """

    def __init__(self, inter_digit_timeout_s: float = 3.0) -> None:
        if inter_digit_timeout_s <= 0:
            raise ValueError("inter_digit_timeout_s must be > 0")
        self.timeout_s = inter_digit_timeout_s
        self._digits: list[str] = []
        self._last = 0.0

    @property
    def pending(self) -> str:
        """What has been typed and not yet finished."""
        return "".join(self._digits)

    def deadline(self) -> float | None:
        """When the pending entry expires (clock seconds), or None if nothing is pending."""
        return self._last + self.timeout_s if self._digits else None

    def press(self, key: str, now: float) -> str | None:
        """Take one key; return the finished entry when ``key`` is ``#`` (None otherwise)."""
        if key == "#":
            entry, self._digits = "".join(self._digits), []
            return entry
        if key == "*":
            self._digits = []
            return None
        if len(key) != 1 or key not in "0123456789ABCD":
            raise ValueError(f"not a keypad key: {key!r}")
        self._digits.append(key)
        self._last = now
        return None

    def expire(self, now: float) -> str | None:
        """The pending entry if the inter-digit timeout passed at ``now``, else None."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        entry, self._digits = "".join(self._digits), []
        return entry


_YES = re.compile(
    r"^(?:(?:yes|yeah|yep|yup|sure|correct|right|ok(?:ay)?|please|absolutely|definitely|"
    r"go ahead|do it|that'?s right|that is right|sounds good|confirm(?:ed)?|affirmative|"
    r"uh[- ]huh|mm[- ]hmm|of course|please do|yes please)[\s,.!]*)+"
    r"(?:(?:go ahead|do it|please|thanks?|thank you|cancel it|refund it)[\s,.!]*)*$"
)
_NO = re.compile(
    r"^(?:(?:no|nope|nah|don'?t|do not|stop|cancel that|wait|hold on|never ?mind|"
    r"not now|not yet|no thanks?|no thank you|leave it|scratch that|"
    r"n?uh[- ]uh|unh[- ]unh|mm[- ]mm)[\s,.!]*)+"  # "uh-uh": a no said as a sound (turn7)
    r"(?:(?:don'?t|do not|leave it|thanks?|thank you)[\s,.!]*)*$"
)


# Hesitations before a plain answer; they change nothing about it.
_LEADING_FILLERS = re.compile(r"^(?:(?:uh|um|umm|uhm|er|erm|ah|oh|well|hmm|mm)[\s,.!]+)+")


def confirmation_answer(text: str) -> Literal["yes", "no", "other"]:
    """A caller's answer to a read-back: an explicit yes, an explicit no, or anything else.

    Only a short, unambiguous answer counts: "yes please", "yeah go ahead",
    "no", "no don't" (after a hesitation such as "um," too). An answer said as
    a question ("Yes?") is not one. Anything with more in it ("yes but change the address
    first", "what about order 4417?") is ``other``: the pending write is
    dropped and the utterance handled as a new request. Keypad: 1 yes, 2 no.
    """
    if text.strip().endswith("?"):
        return "other"  # "Yes?" is a question (the caller did not hear), not a yes
    t = " ".join(text.lower().replace("-", " ").split()).strip(" .,!?")
    if t in ("1",):
        return "yes"
    if t in ("2",):
        return "no"
    if not t:
        return "other"
    for said in (t, _LEADING_FILLERS.sub("", t)):  # "um, yes please" is a yes ("uh-huh" too)
        if _YES.match(said + " "):
            return "yes"
        if _NO.match(said + " "):
            return "no"
    return "other"


#: Words with which a caller ends a conversation: a goodbye, "that's all", "nothing
#: else", or asking for the call to end. English, like the prompts shipped.
_CLOSING = re.compile(
    r"\b(?:good ?bye|bye(?:[- ]bye)?|see (?:you|ya)|take care|talk (?:to you )?(?:later|soon)"
    r"|have a (?:good|nice|great|lovely) (?:day|night|evening|afternoon|morning|weekend|one)"
    r"|that'?s (?:all|it|everything)|that is (?:all|it|everything)|that'?ll be all"
    r"|(?:i'?m|i am|we'?re|we are) (?:all set|done|good)|all set|nothing (?:else|more)"
    r"|no (?:more|other) questions|(?:you can |please )?(?:hang up|end (?:the|this) call))\b"
)
#: A closing word taken back ("don't hang up", "not yet, bye").
_NOT_CLOSING = re.compile(
    r"\b(?:don'?t|do not|not yet|wait|before you) (?:\w+ ){0,2}?(?:hang up|end|go|bye)\b"
)
#: The agent's question whether the caller needs more ("Anything else?").
_ANYTHING_ELSE = re.compile(
    r"\b(?:anything|something) (?:else|more)\b|\bother questions?\b|\bhelp (?:you )?with "
    r"anything\b"
)


def caller_closes(text: str, agent_before: str = "") -> bool:
    """Whether a caller's words end the conversation: a goodbye ("Thanks, bye!"), "that's
    all I needed", "nothing else", "you can hang up", or a plain no to the agent's
    "Anything else?" (``agent_before``: what the agent said before these words).

    A closing followed by a question or a new request ("that's all, but where is
    order 4417?") does not end it, nor a closing word taken back ("don't hang up").
    The hang-up rule of the engine and the embedded model's decision: the 1.5B,
    asked "Can you book me a table for dinner?", ended the call (bench b22).
    """
    t = " ".join(text.lower().replace("\u2019", "'").split())
    if not t or _NOT_CLOSING.search(t):
        return False
    closings = list(_CLOSING.finditer(t))
    if closings:
        last = closings[-1]
        rest = t[last.end() :]
        return "?" not in rest and not re.search(r"\b(?:but|and|also|can you|could you)\b", rest)
    if agent_before and _ANYTHING_ELSE.search(agent_before.lower()):
        return confirmation_answer(text) == "no"
    return False
