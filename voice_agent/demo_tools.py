"""Demo customer-service tools for the embedded defaults (a fictional shop, Acme).

These are examples, named as such: a deterministic in-memory "backend" with a
little latency, so that ``voice-agent chat`` shows futures running and
resolving. Real deployments point ``tools.modules`` at their own registry.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated

from pydantic import Field

from .tools import ToolRegistry

registry = ToolRegistry()

_STATUSES = ("processing", "shipped", "out for delivery", "delivered")


def _pick(key: str, n: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % n


@registry.tool(kind="read", timeout_s=5)
async def get_order_status(
    order_id: Annotated[str, Field(description="the order number the caller gives, digits only")],
) -> dict[str, str]:
    """Look up the shipping status of an order by its order number."""
    await asyncio.sleep(0.8)  # a backend round trip
    status = _STATUSES[_pick(order_id, len(_STATUSES))]
    eta = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")[_pick(order_id + "eta", 5)]
    return {"order_id": order_id, "status": status, "estimated_delivery": eta}


@registry.tool(kind="read", timeout_s=5)
async def get_store_hours(
    city: Annotated[str, Field(description="the city of the store")],
) -> dict[str, str]:
    """Opening hours of the store in a city."""
    await asyncio.sleep(0.4)
    opens = 8 + _pick(city.lower(), 3)
    return {"city": city, "hours": f"{opens} am to {opens + 10 - 12} pm, Monday to Saturday"}


@registry.tool(kind="write", on_interrupt="continue_and_report", timeout_s=8)
async def schedule_callback(
    phone: Annotated[str, Field(description="the caller's phone number")],
    time: Annotated[str, Field(description="when to call back, e.g. 'tomorrow 10 am'")],
) -> dict[str, str]:
    """Schedule a call back from a human agent."""
    await asyncio.sleep(1.0)
    return {"confirmation": f"CB-{_pick(phone + time, 9000) + 1000}", "time": time}
