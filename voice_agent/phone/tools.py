"""The customer-service phone profile's tools, backed by a real SQLite database.

Lookups are ``read`` (they may run speculatively and be retried); cancelling,
refunding, changing an address and opening a ticket are ``write`` with
``confirm``: the engine reads each back to the caller ("cancel order 4471, a
blue kettle") and runs it only on an explicit yes; they take the engine's
:class:`~voice_agent.tools.ToolContext` and hand its idempotency key to
:meth:`Store.write`, so an intent is applied once however often it is
attempted. ``transfer_to_human`` and ``end_call`` act on the call through
``ctx.call``. Numbers arrive as the caller said them and the ASR wrote them
("four four one seven", "for 117", "4,417"): they are normalised here, and a
lookup that finds nothing returns what was heard so the agent reads it back
and asks again (or offers the keypad) instead of guessing.

The database lives at ``$VOICE_AGENT_PHONE_DB`` or
``$XDG_DATA_HOME/voice-agent/acme_support.sqlite`` (``~/.local/share/...``),
created and seeded with a fictional shop on first use.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ..call_control import CallActionRefused
from ..guidance import guidance
from ..tools import SPOKEN_NUMBER, ToolContext, ToolRegistry
from .numbers import digit_candidates
from .store import Store

registry = ToolRegistry()

HUMAN_QUEUE = os.environ.get("VOICE_AGENT_PHONE_HUMAN_QUEUE", "support-humans")
"""Where ``transfer_to_human`` sends the caller (a queue name, a number or a SIP URI)."""
_CANCELLABLE = ("processing",)
_REFUNDABLE = ("delivered", "shipped", "out for delivery")


def database_path() -> Path:
    """Where the profile's database lives (see the module docstring)."""
    explicit = os.environ.get("VOICE_AGENT_PHONE_DB")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "voice-agent" / "acme_support.sqlite"


@lru_cache(maxsize=4)
def _store(path: str) -> Store:
    return Store(path)


def store() -> Store:
    """The profile's database, opened (and seeded) on first use."""
    return _store(str(database_path()))


def _money(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


def _spoken_order(order: dict[str, Any]) -> dict[str, Any]:
    """An order as a small model reads it reliably: flat, words not codes."""
    items = ", ".join(
        f"{i['quantity']} {i['description']}" if i["quantity"] > 1 else f"a {i['description']}"
        for i in order["items"]
    )
    out: dict[str, Any] = {
        "found": True,
        "order_number": order["id"],
        "status": order["status"],
        "items": items,
        "total": _money(order["total_cents"]),
        "placed_on": order["placed_on"],
        "customer": order["customer_name"],
    }
    if order["estimated_delivery"]:
        out["estimated_delivery"] = order["estimated_delivery"]
    return out


def _find_order(heard: str) -> tuple[dict[str, Any] | None, list[str]]:
    candidates = digit_candidates(heard)
    for number in candidates:
        found = store().order(number)
        if found is not None:
            return found, candidates
    return None, candidates


def _not_found(heard: str, candidates: list[str]) -> dict[str, Any]:
    digits = candidates[0] if candidates else ""
    return {
        "found": False,
        "heard": " ".join(digits) if digits else heard,
        "next_step": "read the number back to the caller digit by digit and ask them to repeat it,"
        " or to type it on the keypad followed by the hash key",
    }


def _describe(verb: str, extra: str = "") -> Any:
    """A read-back for a write on an order: the verb, the number, what is in it."""

    def read_back(args: dict[str, Any]) -> str:
        order, candidates = _find_order(str(args.get("order_number", "")))
        if order is None:
            heard = candidates[0] if candidates else args.get("order_number", "")
            return f"{verb} order {' '.join(str(heard))}"
        items = ", ".join(i["description"] for i in order["items"])
        tail = extra.format(**args) if extra else ""
        return f"{verb} order {' '.join(order['id'])}, {items}{tail}"

    return read_back


#: Marks an argument that is the model's summary of what the caller told (a ticket's
#: summary, a refund's reason): the embedded model's grounding check asks it to carry
#: something the caller said beyond the request itself, else the agent asks
#: (voice_agent.local_llm.grounding.SUMMARY_KEYWORD).
SUMMARY: dict[str, Any] = {"x-summary": True}
#: Marks an argument that is the model's own note, for which the request itself is
#: enough ("why the caller needs a person": "Can I talk to a human?").
SUMMARY_NOTE: dict[str, Any] = {"x-summary": "note"}

OrderNumber = Annotated[
    str,
    Field(
        description="the order number exactly as the caller gave it (digits or words)",
        json_schema_extra=SPOKEN_NUMBER,
    ),
]


@registry.tool(kind="read", timeout_s=4)
async def lookup_order(order_number: OrderNumber) -> dict[str, Any]:
    """Look up an order: its status, items, total and estimated delivery date."""
    order, candidates = await asyncio.to_thread(_find_order, order_number)
    return _spoken_order(order) if order else _not_found(order_number, candidates)


@registry.tool(kind="read", timeout_s=4)
async def lookup_customer(
    phone_number: Annotated[str, Field(description="the caller's phone number as they said it")],
) -> dict[str, Any]:
    """Find a customer account by phone number: name, store credit and recent orders."""
    candidates = digit_candidates(phone_number)
    customer = None
    for number in candidates:
        customer = await asyncio.to_thread(store().customer_by_phone, number)
        if customer:
            break
    if customer is None:
        return _not_found(phone_number, candidates)
    return {
        "found": True,
        "name": customer["name"],
        "store_credit": _money(customer["store_credit_cents"]),
        "email_on_file": customer["email"],
        "recent_orders": ", ".join(f"{o['id']} ({o['status']})" for o in customer["orders"][:4]),
    }


def _write_on_order(
    ctx: ToolContext,
    action: str,
    heard: str,
    arguments: dict[str, Any],
    change: Any,
) -> dict[str, Any]:
    order, candidates = _find_order(heard)
    if order is None:
        return _not_found(heard, candidates)
    key = ctx.idempotency_key or f"{ctx.session_id}:{ctx.call_id}"
    outcome = store().write(key, action, {"order_number": order["id"], **arguments},
                            lambda db: change(db, order))  # fmt: skip
    result = dict(outcome.result)
    if outcome.replayed:
        result["note"] = "this request was already carried out earlier; nothing was done twice"
    return result


@registry.tool(
    kind="write", idempotent=True, confirm=_describe("cancel"), on_interrupt="continue_and_report",
    timeout_s=6,
)  # fmt: skip
async def cancel_order(order_number: OrderNumber, ctx: ToolContext) -> dict[str, Any]:
    """Cancel an order that has not shipped yet."""

    def change(db: sqlite3.Connection, order: dict[str, Any]) -> dict[str, Any]:
        if order["status"] not in _CANCELLABLE:
            return {"cancelled": False, "order_number": order["id"], "reason":
                    f"the order is already {order['status']} and can no longer be cancelled"}  # fmt: skip
        db.execute("UPDATE orders SET status = 'cancelled', estimated_delivery = NULL WHERE id = ?",
                   (order["id"],))  # fmt: skip
        return {"cancelled": True, "order_number": order["id"],
                "refund": _money(order["total_cents"]) + " to the original payment method"}  # fmt: skip

    return await asyncio.to_thread(_write_on_order, ctx, "cancel_order", order_number, {}, change)


@registry.tool(
    kind="write", idempotent=True, confirm=_describe("refund"), on_interrupt="continue_and_report",
    timeout_s=6,
)  # fmt: skip
async def refund_order(
    order_number: OrderNumber,
    reason: Annotated[
        str,
        Field(
            description="why the caller wants a refund, in their words", json_schema_extra=SUMMARY
        ),
    ],  # fmt: skip
    ctx: ToolContext,
) -> dict[str, Any]:
    """Refund an order that has shipped or been delivered."""

    def change(db: sqlite3.Connection, order: dict[str, Any]) -> dict[str, Any]:
        if order["status"] not in _REFUNDABLE:
            return {"refunded": False, "order_number": order["id"],
                    "reason": f"the order is {order['status']}: nothing to refund"}  # fmt: skip
        db.execute("UPDATE orders SET status = 'refunded' WHERE id = ?", (order["id"],))
        return {
            "refunded": True,
            "order_number": order["id"],
            "amount": _money(order["total_cents"]),
        }

    return await asyncio.to_thread(
        _write_on_order, ctx, "refund_order", order_number, {"reason": reason}, change
    )


@registry.tool(
    kind="write", idempotent=True, on_interrupt="continue_and_report", timeout_s=6,
    confirm=_describe("change the delivery address of", " to {new_address}"),
)  # fmt: skip
async def change_delivery_address(
    order_number: OrderNumber,
    new_address: Annotated[str, Field(description="the full new delivery address the caller gave")],
    ctx: ToolContext,
) -> dict[str, Any]:
    """Change the delivery address of an order that has not been delivered yet."""

    def change(db: sqlite3.Connection, order: dict[str, Any]) -> dict[str, Any]:
        if order["status"] not in ("processing", "shipped"):
            return {"changed": False, "order_number": order["id"],
                    "reason": f"the order is {order['status']}: the address can no longer change"}  # fmt: skip
        db.execute(
            "UPDATE orders SET delivery_address = ? WHERE id = ?", (new_address, order["id"])
        )
        return {"changed": True, "order_number": order["id"], "new_address": new_address}

    return await asyncio.to_thread(
        _write_on_order, ctx, "change_delivery_address", order_number,
        {"new_address": new_address}, change,
    )  # fmt: skip


@registry.tool(
    kind="write", idempotent=True, confirm="open a support ticket: {summary}",
    on_interrupt="continue_and_report", timeout_s=6,
)  # fmt: skip
async def open_ticket(
    summary: Annotated[
        str, Field(description="what the caller needs, in one sentence", json_schema_extra=SUMMARY)
    ],  # fmt: skip
    ctx: ToolContext,
    order_number: Annotated[
        str, Field(description="the order it is about, if any", json_schema_extra=SPOKEN_NUMBER)
    ] = "",
) -> dict[str, Any]:
    """Open a support ticket for a problem the agent cannot solve on the call."""

    def run() -> dict[str, Any]:
        digits = digit_candidates(order_number)
        order = next((o for o in map(store().order, digits) if o), None)
        key = ctx.idempotency_key or f"{ctx.session_id}:{ctx.call_id}"

        def change(db: sqlite3.Connection) -> dict[str, Any]:
            cur = db.execute(
                "INSERT INTO tickets (customer_id, order_id, summary) VALUES (?, ?, ?)",
                (order["customer_id"] if order else None, order["id"] if order else None, summary),
            )
            return {"ticket": f"T-{cur.lastrowid:05d}", "summary": summary}

        outcome = store().write(
            key, "open_ticket", {"summary": summary, "order_number": order_number}, change
        )
        return dict(outcome.result)

    return await asyncio.to_thread(run)


# Call control changes the call, so these are writes (never run from a speculative fork),
# without a read-back: the transition table makes them happen after the agent has said so.
@registry.tool(kind="write", timeout_s=2)
async def transfer_to_human(
    reason: Annotated[
        str,
        Field(
            description="why the caller needs a person, in a few words",
            json_schema_extra=SUMMARY_NOTE,
        ),
    ],  # fmt: skip
    ctx: ToolContext,
) -> dict[str, Any]:
    """Transfer the caller to a human agent (when they ask for one or you cannot help)."""
    if ctx.call is None:
        return {"transferred": False, "reason": "transfers are not available on this line"}
    ctx.call.transfer(HUMAN_QUEUE, reason=reason)
    # The engine tells the caller ("I'm transferring you now."): the reply says nothing.
    return guidance(
        "the caller is told and transferred; say nothing more",
        transferring=True,
        say_nothing_more=True,
    )


@registry.tool(kind="write", timeout_s=2)
async def end_call(ctx: ToolContext) -> dict[str, Any]:
    """End the call after saying goodbye, when the caller has nothing more to ask."""
    if ctx.call is None:
        return {"ended": False, "reason": "this line cannot hang up"}
    try:
        ctx.call.hang_up("the conversation was over")
    except CallActionRefused as refused:
        return guidance(str(refused), ended=False)
    return guidance("the call ends after your goodbye", ending=True)
