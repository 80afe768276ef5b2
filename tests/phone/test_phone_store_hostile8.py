"""The phone profile's SQLite database locked by another process, or damaged, during a
call (hostile8): real SQLite files, a real second process holding the write lock, the
real tool scheduler and the profile's real tools.

Before: a write waited SQLite's default 5 s for the lock and failed as
"OperationalError: database is locked" (a store opened meanwhile failed even its
reads: its seeding check took the write lock); a damaged file gave "DatabaseError:
file is not a database"; a failed COMMIT left the connection inside a transaction
(every later write failed).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest

from fsm import ManualClock
from ledger import Ledger
from ledger import entries as le
from voice_agent.phone import tools as phone_tools
from voice_agent.phone.store import Store, StoreUnavailable
from voice_agent.scheduler import ToolScheduler

TODAY = date(2026, 11, 25)

HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our input
db.execute("ROLLBACK")
"""


@contextmanager
def locked_by_another_process(path: Path) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
        if holder.stdout is not None:
            holder.stdout.close()


def _cancel(order_id: str):  # type: ignore[no-untyped-def]
    def apply(db: sqlite3.Connection) -> dict[str, object]:
        db.execute("UPDATE orders SET status = 'cancelled' WHERE id = ?", (order_id,))
        return {"cancelled": order_id}

    return apply


def test_a_write_while_another_process_holds_the_lock_fails_cleanly_then_applies_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shop.sqlite"
    Store(path, today=TODAY).close()  # created and seeded
    with locked_by_another_process(path):
        store = Store(path, today=TODAY)  # opening a seeded store takes no lock
        assert store.order("4471") is not None  # reads are not held up by the writer
        with pytest.raises(StoreUnavailable, match="busy.*nothing was changed"):
            store.write("k1", "cancel_order", {"order_number": "4471"}, _cancel("4471"))
        assert store.audit() == [] and store.order("4471")["status"] == "processing"  # type: ignore[index]
    first = store.write("k1", "cancel_order", {"order_number": "4471"}, _cancel("4471"))
    again = store.write("k1", "cancel_order", {"order_number": "4471"}, _cancel("4471"))
    assert not first.replayed and again.replayed
    assert len(store.audit()) == 1 and store.order("4471")["status"] == "cancelled"  # type: ignore[index]


def test_a_damaged_database_says_so_for_reads_and_writes(tmp_path: Path) -> None:
    path = tmp_path / "shop.sqlite"
    path.write_bytes(b"this is not a database " * 200)
    with pytest.raises(StoreUnavailable, match="damaged"):
        Store(path, today=TODAY)
    good = tmp_path / "good.sqlite"
    store = Store(good, today=TODAY)
    store.close()
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\xff" * 3996  # the schema's page, overwritten under a closed store
    good.write_bytes(bytes(data))
    with pytest.raises(StoreUnavailable, match="damaged"):
        Store(good, today=TODAY).order("4471")


def test_a_commit_that_fails_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A deferred foreign-key violation fails at COMMIT: the write is not applied, and the
    next write on the same store still works (before: "cannot start a transaction within
    a transaction" for every later write)."""
    store = Store(tmp_path / "shop.sqlite", today=TODAY)

    def orphan_item(db: sqlite3.Connection) -> dict[str, object]:
        db.execute("PRAGMA defer_foreign_keys=ON")
        db.execute("INSERT INTO items VALUES ('no-such-order', 'ghost', 1, 100)")
        return {"added": True}

    with pytest.raises(sqlite3.IntegrityError):
        store.write("k1", "add_item", {}, orphan_item)
    store.write("k2", "cancel_order", {"order_number": "4471"}, _cancel("4471"))
    assert [row["idempotency_key"] for row in store.audit()] == ["k2"]


async def test_the_cancel_tool_on_a_locked_database_is_a_failure_the_model_can_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile's real cancel_order through the real scheduler: the ledger records a
    failure that says nothing was changed (not a timeout of unknown effect); the clock is
    manual, so the tool's own timeout cannot decide the outcome."""
    path = tmp_path / "shop.sqlite"
    monkeypatch.setenv("VOICE_AGENT_PHONE_DB", str(path))
    phone_tools._store.cache_clear()
    phone_tools.store()  # the long-lived process's store, open before the lock
    clock = ManualClock()
    ledger = Ledger("s", clock)
    sched = ToolScheduler(phone_tools.registry, ledger, lambda e: None, clock)
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    try:
        with locked_by_another_process(path):
            sched.start(
                call_id="call_1", response_id="r1", name="cancel_order",
                arguments='{"order_number": "4471"}',
            )  # fmt: skip
            async with asyncio.timeout(120):  # a safety net, not a measure
                while not [
                    e for e in ledger.entries if e.type.startswith("ToolCall") and e.seq > 1
                ]:
                    await asyncio.sleep(0.05)
        (outcome,) = [e for e in ledger.entries if e.type.startswith("ToolCall") and e.seq > 1]
        assert isinstance(outcome, le.ToolCallFailed), outcome
        assert "busy" in outcome.error and "nothing was changed" in outcome.error
        assert phone_tools.store().audit() == []
    finally:
        await sched.aclose()
        phone_tools.store().close()
        phone_tools._store.cache_clear()
