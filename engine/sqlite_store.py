"""The embedded state store: one SQLite database file, for one server process.

Survives the process being killed: every reservation, outcome and maturity is one transaction,
committed before the call returns, in WAL mode (``synchronous=NORMAL``: a committed transaction
survives a crash of the process; ``durable=True`` -- ``synchronous=FULL`` -- also survives the
machine losing power, at the cost of an fsync per transaction).

Tables::

    contacts(customer, send_us, channel, event)   one row per scheduled contact
    customers(customer, last_response_us, token, counts)
                                                   last response time, log token, response
                                                   counts ("<channel>:sent|opened|clicked" -> n, JSON)
    budgets(name, paid, committed)                 cents per budget period
    pending(seq, event, customer, matures_us, data, budget, cents, settled, channel)
    outcomes(event, outcome_id, kind, value)       outcomes of pending decisions
    firsts(event, kind)                            a pending decision's first outcome of a counted kind
    closed(event, at_us)                           matured decisions (a late outcome: "window closed")

The rule, as for every store (``engine.state``): a reservation checks the caps, the gap and the
budget and writes contact, commitment and pending decision in one ``BEGIN IMMEDIATE``
transaction, or writes nothing. Thread safety: one connection behind one lock; the lock is held
for a whole transaction and never while calling out of this module.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson

from engine.constraints import BudgetKey, BudgetUsage, Pressure
from engine.domain import AttributionClosed, OutcomeType, UnknownEvent
from engine.privacy import new_log_token
from engine.state import (COUNTED, RESPONSES, TOKEN_TAKEN, CustomerState, Forgotten, PendingDecision, Snapshot,
                          epoch, from_epoch)

# Matured decisions are remembered this long, so a late outcome gets "window closed".
CLOSED_MEMORY = dt.timedelta(days=7)

SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (customer TEXT NOT NULL, send_us INTEGER NOT NULL, channel TEXT NOT NULL,
                                     event TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS contacts_by_customer ON contacts (customer, send_us);
CREATE INDEX IF NOT EXISTS contacts_by_time ON contacts (send_us);
CREATE TABLE IF NOT EXISTS customers (customer TEXT PRIMARY KEY, last_response_us INTEGER, token TEXT,
                                      counts TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS budgets (name TEXT PRIMARY KEY, paid INTEGER NOT NULL DEFAULT 0,
                                    committed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL UNIQUE,
                                    customer TEXT NOT NULL, matures_us INTEGER NOT NULL, data BLOB NOT NULL,
                                    budget TEXT, cents INTEGER, settled INTEGER NOT NULL DEFAULT 0, channel TEXT);
CREATE INDEX IF NOT EXISTS pending_by_maturity ON pending (matures_us, seq);
CREATE INDEX IF NOT EXISTS pending_by_customer ON pending (customer);
CREATE TABLE IF NOT EXISTS outcomes (event TEXT NOT NULL, outcome_id TEXT NOT NULL, kind TEXT NOT NULL,
                                     value REAL NOT NULL, PRIMARY KEY (event, outcome_id));
CREATE TABLE IF NOT EXISTS firsts (event TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (event, kind));
CREATE TABLE IF NOT EXISTS closed (event TEXT PRIMARY KEY, at_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS closed_by_time ON closed (at_us);
"""


class StateInUse(OSError):
    """Another process holds the SQLite state file."""


class SQLiteStateStore:
    """``StateStore`` in one SQLite file (made, with its directory, when missing; mode 0600)."""

    def __init__(self, path: str | Path, durable: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=2.0)
        # One process owns the file, so transactions take no file locks; a second process
        # on the same file is refused.
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            self._db.close()
            if "locked" not in str(exc):
                raise
            raise StateInUse(f"{self.path} is in use by another process (one server per --state-dir; "
                             "servers share state through --redis; nba forget --server reaches a running "
                             "server)") from None
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._keep = dt.timedelta(0)  # how long contacts matter (the pressure horizon seen)

    def _transaction(self):
        return _Transaction(self._db, self._lock)

    # -- reading ------------------------------------------------------------------------------

    def snapshot(self, customer_id: str, now: dt.datetime, horizon: dt.timedelta,
                 budgets: Sequence[BudgetKey]) -> Snapshot:
        with self._lock:
            db = self._db
            rows = db.execute("SELECT send_us, channel FROM contacts WHERE customer = ? AND send_us > ? "
                              "ORDER BY send_us", (customer_id, epoch(now - horizon))).fetchall()
            row = db.execute("SELECT last_response_us, token, counts FROM customers WHERE customer = ?",
                             (customer_id,)).fetchone()
            usage = {key.budget_id: self._usage(key) for key in budgets}
        last, token, counts = row if row else (None, None, "{}")
        counts = orjson.loads(counts)
        state = CustomerState(tuple((from_epoch(t), ch) for t, ch in rows),
                              from_epoch(last) if last is not None else None, counts)
        return Snapshot(state, usage, token)

    def _usage(self, key: BudgetKey) -> BudgetUsage:
        row = self._db.execute("SELECT paid, committed FROM budgets WHERE name = ?", (key.name,)).fetchone()
        return BudgetUsage(key, *(row or (0, 0)))

    def budget_usage(self, keys: Sequence[BudgetKey]) -> list[BudgetUsage]:
        with self._lock:
            return [self._usage(key) for key in keys]

    def next_maturity(self) -> dt.datetime | None:
        with self._lock:
            (first,) = self._db.execute("SELECT min(matures_us) FROM pending").fetchone()
        return from_epoch(first) if first is not None else None

    def pending_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]

    # -- writing ------------------------------------------------------------------------------

    def reserve(self, pending: PendingDecision, pressure: Pressure) -> str | None:
        contact = pending.channel is not None and pending.send_at is not None
        c = pending.commitment
        with self._transaction() as db:
            row = db.execute("SELECT token, counts FROM customers WHERE customer = ?",
                             (pending.customer_id,)).fetchone()
            if pending.log_token is not None and row and row[0] and row[0] != pending.log_token:
                return TOKEN_TAKEN
            if contact:
                lo, hi = epoch(pending.send_at - pressure.horizon), epoch(pending.send_at + pressure.horizon)
                rows = db.execute("SELECT send_us, channel FROM contacts WHERE customer = ? AND send_us > ? "
                                  "AND send_us < ?", (pending.customer_id, lo, hi)).fetchall()
                why = pressure.violation([(from_epoch(t), ch) for t, ch in rows], pending.channel, pending.send_at)
                if why:
                    return why
            if c is not None:
                why = self._usage(c.key).shortfall(c.cents)
                if why:
                    return why
                db.execute("INSERT INTO budgets (name, committed) VALUES (?, ?) ON CONFLICT (name) "
                           "DO UPDATE SET committed = committed + excluded.committed", (c.key.name, c.cents))
            if contact:
                db.execute("INSERT INTO contacts VALUES (?, ?, ?, ?)",
                           (pending.customer_id, epoch(pending.send_at), pending.channel, pending.event_id))
                self._keep = max(self._keep, pressure.horizon)
            if contact or (pending.log_token is not None and not (row and row[0])):
                counts = orjson.loads(row[1]) if row else {}
                if contact:
                    counts[f"{pending.channel}:sent"] = counts.get(f"{pending.channel}:sent", 0) + 1
                db.execute("INSERT INTO customers (customer, token, counts) VALUES (?, ?, ?) ON CONFLICT (customer) "
                           "DO UPDATE SET token = coalesce(token, excluded.token), counts = excluded.counts",
                           (pending.customer_id, pending.log_token, orjson.dumps(counts).decode()))
            db.execute("INSERT INTO pending (event, customer, matures_us, data, budget, cents, channel) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (pending.event_id, pending.customer_id, epoch(pending.matures_at),
                        pending.pack(), c.key.name if c else None,
                        c.cents if c else None, pending.channel))
        return None

    @staticmethod
    def _count(db: sqlite3.Connection, customer_id: str, key: str) -> None:
        row = db.execute("SELECT counts FROM customers WHERE customer = ?", (customer_id,)).fetchone()
        counts = orjson.loads(row[0]) if row else {}
        counts[key] = counts.get(key, 0) + 1
        db.execute("INSERT INTO customers (customer, counts) VALUES (?, ?) ON CONFLICT (customer) "
                   "DO UPDATE SET counts = excluded.counts", (customer_id, orjson.dumps(counts).decode()))

    def add_outcome(self, event_id: str, outcome_id: str, kind: OutcomeType, value: float,
                    time: dt.datetime) -> bool:
        with self._transaction() as db:
            row = db.execute("SELECT customer, budget, cents, settled, channel FROM pending WHERE event = ?",
                             (event_id,)).fetchone()
            if row is None:
                if db.execute("SELECT 1 FROM closed WHERE event = ?", (event_id,)).fetchone():
                    raise AttributionClosed(f"event {event_id!r}: attribution window has closed")
                raise UnknownEvent(f"unknown event_id {event_id!r}")
            customer, budget, cents, settled, channel = row
            inserted = db.execute("INSERT OR IGNORE INTO outcomes VALUES (?, ?, ?, ?)",
                                  (event_id, outcome_id, kind.value, value)).rowcount
            if not inserted:
                return False
            first = db.execute("INSERT OR IGNORE INTO firsts VALUES (?, ?)", (event_id, kind.value)).rowcount
            if first and kind in COUNTED and channel is not None:
                self._count(db, customer, f"{channel}:{COUNTED[kind]}")
            if kind in RESPONSES:
                db.execute("INSERT INTO customers (customer, last_response_us) VALUES (?, ?) ON CONFLICT (customer) "
                           "DO UPDATE SET last_response_us = max(coalesce(last_response_us, 0), excluded.last_response_us)",
                           (customer, epoch(time)))
            if kind is OutcomeType.REDEEMED and budget is not None and not settled:
                db.execute("UPDATE pending SET settled = 1 WHERE event = ?", (event_id,))
                db.execute("UPDATE budgets SET paid = paid + ?, committed = committed - ? WHERE name = ?",
                           (cents, cents, budget))
        return True

    def pop_matured(self, now: dt.datetime, limit: int = 10_000) -> list[PendingDecision]:
        with self._transaction() as db:
            rows = db.execute("SELECT event, data, budget, cents, settled FROM pending WHERE matures_us <= ? "
                              "ORDER BY matures_us, seq LIMIT ?", (epoch(now), limit)).fetchall()
            matured = []
            for event, data, budget, cents, settled in rows:
                pending = PendingDecision.unpack(data)
                pending.settled = bool(settled)
                for outcome_id, kind, value in db.execute(
                        "SELECT outcome_id, kind, value FROM outcomes WHERE event = ? ORDER BY rowid", (event,)):
                    pending.outcome_ids.add(outcome_id)
                    pending.outcomes.append((OutcomeType(kind), value))
                if budget is not None and not settled:
                    db.execute("UPDATE budgets SET committed = committed - ? WHERE name = ?", (cents, budget))
                matured.append(pending)
            events = [(r[0],) for r in rows]
            for table in ("pending", "outcomes", "firsts"):
                db.executemany(f"DELETE FROM {table} WHERE event = ?", events)
            at = epoch(now)
            db.executemany("INSERT OR REPLACE INTO closed VALUES (?, ?)", [(e, at) for (e,) in events])
            db.execute("DELETE FROM closed WHERE at_us < ?", (epoch(now - CLOSED_MEMORY),))
            if self._keep:  # contacts too old for any cap, the gap or the history features
                db.execute("DELETE FROM contacts WHERE send_us <= ?", (epoch(now - self._keep),))
        return matured

    def log_token(self, customer_id: str) -> str:
        with self._transaction() as db:
            db.execute("INSERT INTO customers (customer, token) VALUES (?, ?) ON CONFLICT (customer) "
                       "DO UPDATE SET token = coalesce(token, excluded.token)", (customer_id, new_log_token()))
            return db.execute("SELECT token FROM customers WHERE customer = ?", (customer_id,)).fetchone()[0]

    def forget(self, customer_id: str) -> Forgotten:
        with self._transaction() as db:
            contacts = db.execute("DELETE FROM contacts WHERE customer = ?", (customer_id,)).rowcount
            known = db.execute("DELETE FROM customers WHERE customer = ?", (customer_id,)).rowcount
            rows = db.execute("SELECT event, budget, cents, settled FROM pending WHERE customer = ?",
                              (customer_id,)).fetchall()
            released = 0
            for event, budget, cents, settled in rows:
                if budget is not None and not settled:
                    db.execute("UPDATE budgets SET committed = committed - ? WHERE name = ?", (cents, budget))
                    released += cents
                for table in ("pending", "outcomes", "firsts"):
                    db.execute(f"DELETE FROM {table} WHERE event = ?", (event,))
        return Forgotten(contacts, len(rows), released, bool(contacts or known or rows))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the store's lock; ``ROLLBACK`` on an exception
    (the exceptions the store raises on purpose change nothing, so they roll back too)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        try:
            self.db.execute("ROLLBACK" if kind is not None else "COMMIT")
        finally:
            self.lock.release()
