"""The phone profile's SQLite backend: seeded on first use, every write applied once per key."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from voice_agent.phone.store import Store

TODAY = date(2026, 11, 25)


def _cancel(order_id: str):  # type: ignore[no-untyped-def]
    def apply(db: sqlite3.Connection) -> dict[str, object]:
        db.execute("UPDATE orders SET status = 'cancelled' WHERE id = ?", (order_id,))
        return {"cancelled": order_id}

    return apply


def test_a_new_database_is_created_and_seeded_the_same_way_everywhere(tmp_path: Path) -> None:
    a = Store(tmp_path / "a.sqlite", today=TODAY)
    b = Store(tmp_path / "b.sqlite", today=TODAY)
    assert a.order("4471") == b.order("4471")
    order = a.order("4471")
    assert order is not None and order["status"] == "processing"
    assert order["items"] == [{"description": "blue kettle", "quantity": 1, "price_cents": 3499}]
    assert a.order("0000") is None


def test_reopening_keeps_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "shop.sqlite"
    s = Store(path, today=TODAY)
    s.write("k", "cancel_order", {"order_number": "4471"}, _cancel("4471"))
    s.close()
    again = Store(path, today=TODAY)
    order = again.order("4471")
    assert order is not None and order["status"] == "cancelled"
    assert [a["idempotency_key"] for a in again.audit()] == ["k"]


def test_a_write_that_raises_leaves_nothing_behind(tmp_path: Path) -> None:
    s = Store(tmp_path / "shop.sqlite", today=TODAY)

    def broken(db: sqlite3.Connection) -> dict[str, object]:
        db.execute("UPDATE orders SET status = 'cancelled' WHERE id = '4471'")
        raise RuntimeError("payment backend down")

    try:
        s.write("k", "cancel_order", {}, broken)
    except RuntimeError:
        pass
    order = s.order("4471")
    assert order is not None and order["status"] == "processing"
    assert s.audit() == []
    assert s.write("k", "cancel_order", {}, _cancel("4471")).replayed is False


@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=12))
def test_each_key_is_applied_exactly_once_whatever_the_order_of_attempts(
    tmp_path_factory: object, keys: list[str]
) -> None:
    import tempfile

    s = Store(Path(tempfile.mkdtemp()) / "shop.sqlite", today=TODAY)
    applied: list[str] = []

    def apply_for(key: str):  # type: ignore[no-untyped-def]
        def apply(db: sqlite3.Connection) -> dict[str, object]:
            applied.append(key)
            db.execute("INSERT INTO tickets (summary) VALUES (?)", (key,))
            return {"key": key}

        return apply

    outcomes = [s.write(k, "open_ticket", {"k": k}, apply_for(k)) for k in keys]
    assert sorted(applied) == sorted(set(keys))
    assert [o.replayed for o in outcomes] == [k in keys[:i] for i, k in enumerate(keys)]
    assert all(o.result == {"key": k} for o, k in zip(outcomes, keys, strict=True))
    assert len(s.audit()) == len(set(keys))


def test_concurrent_attempts_of_one_intent_from_threads_apply_once(tmp_path: Path) -> None:
    s = Store(tmp_path / "shop.sqlite", today=TODAY)
    results = []

    def attempt() -> None:
        results.append(s.write("same", "cancel_order", {}, _cancel("4417")))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(not r.replayed for r in results) == 1
    assert len(s.audit()) == 1


def test_two_processes_share_the_database_and_the_key_stays_unique(tmp_path: Path) -> None:
    path = tmp_path / "shop.sqlite"
    first, second = Store(path, today=TODAY), Store(path, today=TODAY)
    assert first.write("k", "cancel_order", {}, _cancel("4471")).replayed is False
    assert second.write("k", "cancel_order", {}, _cancel("4471")).replayed is True
    assert len(second.audit()) == 1
