"""Demo customer-service tools for the embedded defaults (a fictional shop, Acme).

These are examples, named as such: a deterministic in-memory "backend" with a
little latency (`LATENCY_S`), so that ``voice-agent chat`` shows futures running
and resolving. Real deployments point ``tools.modules`` at their own registry.

Each result says one thing a small model can read aloud without contradicting
itself: a delivered order says when it was delivered, any other order when it
is expected; an order number without a digit, or a city that is not a place
name ("the weather", nothing at all), gets no status or hours but a request to
ask the caller again. The call-back is a write the caller confirms first
(``confirm=``): the engine reads the number back digit by digit and runs it
only on a yes, so a misheard number books nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Annotated, Any

from pydantic import Field

from .phone.numbers import spoken_digits
from .tools import ToolRegistry

registry = ToolRegistry()

#: The simulated backend's round trip per tool, in seconds: long enough for a chat to
#: show a future running. A bench that times the model alone sets them to 0.
LATENCY_S = {"get_order_status": 0.8, "get_store_hours": 0.4, "schedule_callback": 1.0}

_STATUSES = ("processing", "shipped", "out for delivery", "delivered")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

#: Words that are never part of a city's name: articles, pronouns, question words and
#: auxiliaries ("the weather", "my place", "where you are", "near me").
_NOT_IN_A_PLACE_NAME = frozenset(
    "a an the my your our their his her its this that these those here there me i you we "
    "they it what which who where when how why is are was be do does near nearest closest "
    "any some".split()
)
#: A place name: one to four words of letters, with - ' . inside ("Winston-Salem",
#: "Coeur d'Alene", "St. Louis") and a comma before a state ("Portland, Oregon").
_WORD = r"[^\W\d_]+(?:[-'.][^\W\d_]*)*"
_PLACE_NAME = re.compile(rf"{_WORD}(?:,? {_WORD}){{0,3}}")


def _pick(key: str, n: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % n


def _is_place_name(text: str) -> bool:
    words = text.lower().split()
    return bool(_PLACE_NAME.fullmatch(text)) and not _NOT_IN_A_PLACE_NAME.intersection(words)


def _spelled(digits: str) -> str:
    """Digits as a caller checks them by ear: one by one, grouped in threes with the last
    four together ("5552017788" -> "5 5 5, 2 0 1, 7 7 8 8")."""
    head, tail = digits[:-4], digits[-4:]
    groups = [head[max(0, end - 3) : end] for end in range(len(head), 0, -3)][::-1]
    return ", ".join(" ".join(group) for group in [*groups, tail])


def _callback_read_back(arguments: dict[str, Any]) -> str:
    """The call-back as the caller confirms it: "schedule a call back to 5 5 5, 2 0 1,
    7 7 8 8 for tomorrow 10 am" (the number as heard when it holds no digit)."""
    phone = str(arguments.get("phone", ""))
    digits = spoken_digits(phone)
    number = _spelled(digits) if digits else phone
    return f"schedule a call back to {number} for {arguments['time']}"


@registry.tool(kind="read", timeout_s=5)
async def get_order_status(
    order_id: Annotated[str, Field(description="the order number the caller gives, digits only")],
) -> dict[str, Any]:
    """Look up the shipping status of an order by its order number."""
    await asyncio.sleep(LATENCY_S["get_order_status"])
    number = spoken_digits(order_id)  # "4,417" and "four four one seven" are order 4417
    if not number:
        return {
            "found": False,
            "heard": order_id,
            "next_step": "ask the caller for the order number",
        }
    status = _STATUSES[_pick(number, len(_STATUSES))]
    day = _WEEKDAYS[_pick(number + "eta", len(_WEEKDAYS))]
    # One date, named for what it is: "estimated_delivery" beside "delivered" was read as
    # "is currently delivered and estimated to be delivered on Thursday" (z01, session 12).
    if status == "delivered":
        return {"order_id": number, "status": status, "delivered_on": day}
    expected = "today" if status == "out for delivery" else day
    return {"order_id": number, "status": status, "estimated_delivery": expected}


@registry.tool(kind="read", timeout_s=5)
async def get_store_hours(
    city: Annotated[str, Field(description="the city of the store")],
) -> dict[str, Any]:
    """Opening hours of the store in a city."""
    await asyncio.sleep(LATENCY_S["get_store_hours"])
    name = " ".join(city.split())
    if not _is_place_name(name):
        return {
            "found": False,
            "heard": name,
            "next_step": "ask the caller which city the store is in",
        }
    opens = 8 + _pick(name.lower(), 3)
    return {"city": name, "hours": f"{opens} am to {opens + 10 - 12} pm, Monday to Saturday"}


@registry.tool(
    kind="write", confirm=_callback_read_back, on_interrupt="continue_and_report", timeout_s=8
)
async def schedule_callback(
    phone: Annotated[str, Field(description="the caller's phone number")],
    time: Annotated[str, Field(description="when to call back, e.g. 'tomorrow 10 am'")],
) -> dict[str, str]:
    """Schedule a call back from a human agent."""
    await asyncio.sleep(LATENCY_S["schedule_callback"])
    return {"confirmation": f"CB-{_pick(phone + time, 9000) + 1000}", "time": time}
