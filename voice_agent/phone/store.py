"""The customer-service profile's backend: a real SQLite database of a fictional retailer.

The database is created and seeded on first use (deterministic fictional
customers, orders, items); every write goes through :meth:`Store.write`, which
applies it and records it in the ``audit`` table in one transaction, keyed by
an idempotency key. A second write with the same key changes nothing and
returns the first outcome: a retry, a late completion after a timeout, a
barge-in or the model calling the tool again never applies a write twice,
even from another process (the key is UNIQUE in the table).

SQLite calls are blocking; the tools run them in a worker thread.

Faults of the database itself become a :class:`StoreUnavailable` whose message
the model can say and that tells whether a write was applied (hostile8):

- another program holding the write lock: a write waits at most
  `WRITE_LOCK_WAIT_S`, well within the write tools' timeout, then fails with
  "busy; nothing was changed" (the transaction never started), so the ledger
  records a failure of known effect, not a timeout of unknown effect. Reads
  use their own connection and never wait behind a write (WAL: a reader is
  not blocked by a writer), nor does opening the store when it is seeded;
- a damaged file ("file is not a database", "malformed"): every call fails
  at once with a message saying so; a write rolled back, or failed before
  it started, changed nothing.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

__all__ = ["READ_WAIT_S", "WRITE_LOCK_WAIT_S", "Store", "StoreUnavailable", "WriteOutcome"]

WRITE_LOCK_WAIT_S = 3.0
"""How long a write waits for another program's write lock (seconds): under the write
tools' 6 s timeout with room for a busy machine, so a locked database is a clean
failure (nothing changed) rather than a timeout whose effect is unknown."""

READ_WAIT_S = 2.0
"""How long a read waits for the database (seconds; only a checkpoint or a recovery
holds readers out in WAL mode): under the read tools' 4 s timeout."""


class StoreUnavailable(Exception):
    """The database cannot serve the call (locked by another program, damaged); the
    message says what happened and whether anything was changed, in words for the caller."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  phone TEXT NOT NULL UNIQUE,          -- digits only
  email TEXT NOT NULL,
  address TEXT NOT NULL,
  store_credit_cents INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS orders (
  id TEXT PRIMARY KEY,                 -- the order number callers read out, digits only
  customer_id INTEGER NOT NULL REFERENCES customers(id),
  status TEXT NOT NULL,                -- processing | shipped | out for delivery | delivered | cancelled | refunded
  placed_on TEXT NOT NULL,             -- ISO date
  estimated_delivery TEXT,             -- ISO date, null once delivered/cancelled
  delivery_address TEXT NOT NULL,
  total_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
  order_id TEXT NOT NULL REFERENCES orders(id),
  description TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  price_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER REFERENCES customers(id),
  order_id TEXT REFERENCES orders(id),
  summary TEXT NOT NULL,
  created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY,
  idempotency_key TEXT NOT NULL UNIQUE,
  action TEXT NOT NULL,
  arguments TEXT NOT NULL,             -- JSON
  outcome TEXT NOT NULL,               -- JSON
  applied_at TEXT NOT NULL DEFAULT (datetime('now'))
);
"""

_FIRST = ("Maria", "James", "Aisha", "Chen", "Olivia", "Noah", "Priya", "Lucas", "Emma", "Omar",
          "Sofia", "Liam", "Hana", "Mateo", "Grace", "Ivan", "Zoe", "Kofi", "Elena", "Sam")  # fmt: skip
_LAST = ("Garcia", "Smith", "Khan", "Wei", "Brown", "Jones", "Patel", "Silva", "Miller", "Haddad",
         "Rossi", "Murphy", "Sato", "Lopez", "Kim", "Petrov", "Clark", "Mensah", "Novak", "Reed")  # fmt: skip
_STREETS = ("Oak Street", "Maple Avenue", "Cedar Lane", "Pine Road", "Elm Court", "Birch Way")
_CITIES = ("Denver", "Boston", "Austin", "Portland", "Chicago", "Seattle")
_PRODUCTS = (("blue kettle", 3499), ("coffee grinder", 5999), ("toaster", 2999),
             ("desk lamp", 2499), ("office chair", 14999), ("rice cooker", 7999),
             ("wool blanket", 4599), ("water bottle", 1599), ("headphones", 8999),
             ("yoga mat", 2599), ("frying pan", 3999), ("bookshelf", 11999))  # fmt: skip
_STATUSES = ("processing", "processing", "shipped", "out for delivery", "delivered", "delivered")

SEED_CUSTOMERS = 40
"""Fictional customers seeded on first use (each with 1-4 orders)."""


@dataclass(frozen=True)
class WriteOutcome:
    """What a write did: its result, and whether this call applied it or replayed an earlier one."""

    result: dict[str, Any]
    replayed: bool


class Store:
    """One SQLite database file; thread-safe (one connection, serialised)."""

    def __init__(self, path: Path | str, *, today: date | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # the write connection
        self._read_lock = threading.Lock()
        self.today = today or date.today()
        with _faults("open the order database", wrote=False):
            self._db = self._connect(WRITE_LOCK_WAIT_S)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if not self._seeded(self._db):  # a seeded store opens without the write lock
                self._db.executescript(SCHEMA)
                with self._tx() as db:
                    if not self._seeded(db):
                        _seed(db, self.today)
            self._reader = self._connect(READ_WAIT_S)

    def _connect(self, wait_s: float) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=wait_s, check_same_thread=False, isolation_level=None
        )
        db.row_factory = sqlite3.Row
        return db

    @staticmethod
    def _seeded(db: sqlite3.Connection) -> bool:
        try:
            return bool(db.execute("SELECT COUNT(*) FROM customers").fetchone()[0])
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return False
            raise

    def close(self) -> None:
        """Close the connections (idempotent)."""
        with self._lock:
            self._db.close()
        if hasattr(self, "_reader"):
            with self._read_lock:
                self._reader.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with _faults("read the order database", wrote=False), self._read_lock:
            yield self._reader

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # also when COMMIT itself failed: never leave the connection inside a
                # transaction (every later write would fail, "within a transaction")
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the original error says more; SQLite rolled back itself
                raise

    # ---- reads
    def order(self, order_id: str) -> dict[str, Any] | None:
        """An order with its items and customer name, or None."""
        with self._read() as db:
            row = db.execute(
                "SELECT o.*, c.name AS customer_name FROM orders o JOIN customers c"
                " ON c.id = o.customer_id WHERE o.id = ?",
                (order_id,),
            ).fetchone()
            if row is None:
                return None
            items = db.execute(
                "SELECT description, quantity, price_cents FROM items WHERE order_id = ?",
                (order_id,),
            ).fetchall()
        out = dict(row)
        out["items"] = [dict(i) for i in items]
        return out

    def customer_by_phone(self, phone: str) -> dict[str, Any] | None:
        """A customer by phone number (digits; the last ten digits are compared)."""
        digits = phone[-10:]
        with self._read() as db:
            row = db.execute(
                "SELECT * FROM customers WHERE substr(phone, -10) = ?", (digits,)
            ).fetchone()
            if row is None:
                return None
            orders = db.execute(
                "SELECT id, status, placed_on FROM orders WHERE customer_id = ? ORDER BY placed_on DESC",
                (row["id"],),
            ).fetchall()
        out = dict(row)
        out["orders"] = [dict(o) for o in orders]
        return out

    def audit(self) -> list[dict[str, Any]]:
        """Every applied write, oldest first."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM audit ORDER BY id").fetchall()
        return [dict(r) for r in rows]

    # ---- writes
    def write(
        self,
        key: str,
        action: str,
        arguments: dict[str, Any],
        apply: Callable[[sqlite3.Connection], dict[str, Any]],
    ) -> WriteOutcome:
        """Apply ``apply`` once per idempotency ``key`` and record it in ``audit``.

        If ``key`` was applied before, nothing changes and the recorded outcome
        is returned with ``replayed=True``. ``apply`` runs inside the
        transaction; an exception from it rolls everything back (nothing is
        recorded, so the write may be tried again). A fault of the database
        (locked for longer than `WRITE_LOCK_WAIT_S`, damaged) raises
        `StoreUnavailable`; nothing was changed.
        """
        with _faults(f"{action.replace('_', ' ')}", wrote=True), self._tx() as db:
            seen = db.execute(
                "SELECT outcome FROM audit WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if seen is not None:
                return WriteOutcome(json.loads(seen["outcome"]), replayed=True)
            result = apply(db)
            db.execute(
                "INSERT INTO audit (idempotency_key, action, arguments, outcome) VALUES (?, ?, ?, ?)",
                (
                    key,
                    action,
                    json.dumps(arguments, sort_keys=True),
                    json.dumps(result, sort_keys=True),
                ),
            )
            return WriteOutcome(result, replayed=False)


@contextmanager
def _faults(what: str, *, wrote: bool) -> Iterator[None]:
    """SQLite's own faults as `StoreUnavailable`, in words (errors of the caller's data,
    raised by a write's ``apply``, pass as they are)."""
    try:
        yield
    except sqlite3.OperationalError as error:
        text = str(error)
        if "locked" in text or "busy" in text:
            raise StoreUnavailable(
                f"could not {what}: the order system is busy (another program holds its "
                f"database){'; nothing was changed' if wrote else ''}; try again in a moment"
            ) from error
        if "unable to open" in text or "disk" in text or "readonly" in text:
            raise StoreUnavailable(
                f"could not {what}: the order database cannot be used ({text})"
                f"{'; nothing was changed' if wrote else ''}"
            ) from error
        raise
    except sqlite3.DatabaseError as error:  # "file is not a database", "malformed"
        if isinstance(error, sqlite3.IntegrityError):
            raise
        raise StoreUnavailable(
            f"could not {what}: the order database is damaged ({error})"
            f"{'; nothing was changed' if wrote else ''}"
        ) from error


def _seed(db: sqlite3.Connection, today: date) -> None:
    rng = random.Random(4471)  # fixed: the same fictional shop on every machine
    used_orders: set[str] = set()
    for cid in range(1, SEED_CUSTOMERS + 1):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        phone = "555" + f"{rng.randrange(10**7):07d}"
        address = f"{rng.randrange(1, 999)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}"
        email = name.lower().replace(" ", ".") + "@example.com"
        credit = rng.choice((0, 0, 0, 500, 1250, 2000))
        db.execute(
            "INSERT INTO customers (id, name, phone, email, address, store_credit_cents)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (cid, name, phone, email, address, credit),
        )
        for _ in range(rng.randint(1, 4)):
            while True:
                oid = str(rng.randrange(1000, 99999))
                if oid not in used_orders:
                    used_orders.add(oid)
                    break
            status = rng.choice(_STATUSES)
            placed = today - timedelta(days=rng.randint(1, 30))
            eta = None if status == "delivered" else (today + timedelta(days=rng.randint(1, 6)))
            items = rng.sample(_PRODUCTS, rng.randint(1, 3))
            qty = [rng.randint(1, 2) for _ in items]
            total = sum(price * q for (_, price), q in zip(items, qty, strict=True))
            db.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    oid,
                    cid,
                    status,
                    placed.isoformat(),
                    eta.isoformat() if eta else None,
                    address,
                    total,
                ),
            )
            for (desc, price), q in zip(items, qty, strict=True):
                db.execute("INSERT INTO items VALUES (?, ?, ?, ?)", (oid, desc, q, price))
    # Orders the examples and docs mention, so a reader can try them.
    for oid, status, item in (("4471", "processing", ("blue kettle", 3499)),
                              ("4417", "shipped", ("coffee grinder", 5999)),
                              ("58213", "delivered", ("office chair", 14999))):  # fmt: skip
        if oid in used_orders:
            continue
        eta = None if status == "delivered" else today + timedelta(days=2)
        db.execute(
            "INSERT INTO orders VALUES (?, 1, ?, ?, ?, (SELECT address FROM customers WHERE id = 1), ?)",
            (
                oid,
                status,
                (today - timedelta(days=3)).isoformat(),
                eta.isoformat() if eta else None,
                item[1],
            ),
        )
        db.execute("INSERT INTO items VALUES (?, ?, 1, ?)", (oid, item[0], item[1]))
