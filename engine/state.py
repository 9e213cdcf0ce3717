"""State the engine keeps between calls: contacts, budgets, and the reward join.

``StateStore`` is the interface, with three backends: ``engine.sqlite_store.SQLiteStateStore``
(the embedded default of ``nba serve``: one process, survives a crash),
``engine.redis_store.RedisStateStore`` (shared by several server processes) and
``VolatileStateStore`` (memory only, forgotten on exit: simulations and tests). One contract
test-suite (``tests/test_state_contract.py``) runs against all of them.

Customers are named by the id the engine gives the store: the customer id, or its pseudonym
(``engine.privacy``). Each customer also has a random *log token* the logs name it by, and
``forget`` deletes everything the store holds of a customer (its pending decisions too, whose
unsettled commitments are released).

A decision goes through the store twice:

1. ``snapshot`` reads the customer's contacts and last response and the budgets' spend -- what
   the feasibility checks, the history features and pacing need;
2. ``reserve`` re-checks the chosen action's pressure caps and budget against the state *at that
   instant* and, only if they hold, records the contact, commits the incentive and stores the
   pending decision -- all in one atomic step. Two concurrent decisions for one customer can
   therefore never both pass a cap, and a budget can never be overspent. A refused reservation
   changes nothing; the engine decides again from a fresh snapshot.

Outcomes join the pending decision by event id; a REDEEMED outcome settles its commitment.
When the attribution window closes the decision matures (the model learns from it) and an
unsettled commitment is released.
"""

from __future__ import annotations

import datetime as dt
import heapq
import threading
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from engine.constraints import BudgetKey, BudgetUsage, Commitment, Pressure
from engine.decision_log import DsjsonLine, iso
from engine.domain import AttributionClosed, OutcomeType, UnknownEvent
from engine.privacy import new_log_token

HISTORY_WINDOW = dt.timedelta(days=7)
RESPONSES = {OutcomeType.OPENED, OutcomeType.CLICKED, OutcomeType.CONVERTED}
# Responses counted per customer and channel (with "sent", counted when a contact is recorded).
COUNTED = {OutcomeType.OPENED: "opened", OutcomeType.CLICKED: "clicked"}
# A contact sent less than this long ago has not had its chance to be opened yet: it is not
# counted as ignored.
SETTLE_HOURS = 48.0


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def epoch(t: dt.datetime) -> int:
    """Microseconds since 1970: exact in a Redis score (a double holds integers to 2**53)."""
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def from_epoch(us: float) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=int(us))


def micros(delta: dt.timedelta) -> int:
    return delta // dt.timedelta(microseconds=1)


# Why a reservation is refused when a concurrent first decision gave the customer its log token.
TOKEN_TAKEN = "log token: a concurrent decision gave the customer one"


class StoreUnavailable(RuntimeError):
    """The shared state store cannot be reached; the engine decides in safe mode."""


@dataclass(frozen=True)
class ContactHistory:
    contacts_7d: dict[str, int]
    hours_since_contact: float | None
    hours_since_response: float | None = None
    # channel -> (contacts settled, opened, clicked), the customer's whole record with the engine
    responses: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # channel -> contacts over the last ``long_days`` days (only when asked for more than 7)
    contacts_long: dict[str, int] = field(default_factory=dict)
    long_days: int = 7


@dataclass(frozen=True)
class CustomerState:
    """A customer's scheduled contacts (send time, channel) around now, and last response."""

    contacts: tuple[tuple[dt.datetime, str], ...] = ()
    last_response: dt.datetime | None = None
    # "<channel>:sent|opened|clicked" -> count, over the customer's whole record
    counts: dict[str, int] = field(default_factory=dict)

    def history(self, now: dt.datetime, long_days: int = 7) -> ContactHistory:
        since = now - HISTORY_WINDOW
        since_long = now - dt.timedelta(days=long_days)
        long_counts: dict[str, int] = defaultdict(int)
        counts: dict[str, int] = defaultdict(int)
        unsettled: dict[str, int] = defaultdict(int)
        settle = now - dt.timedelta(hours=SETTLE_HOURS)
        last = None
        for t, channel in self.contacts:
            if since <= t <= now:
                counts[channel] += 1
            if long_days > 7 and since_long <= t <= now:
                long_counts[channel] += 1
            if t > settle:
                unsettled[channel] += 1
            if t <= now and (last is None or t > last):
                last = t
        responses = {}
        for key, n in self.counts.items():
            channel, kind = key.rsplit(":", 1)
            if kind == "sent":
                responses[channel] = (max(n - unsettled[channel], 0), self.counts.get(f"{channel}:opened", 0),
                                      self.counts.get(f"{channel}:clicked", 0))
        return ContactHistory(
            contacts_7d=dict(counts),
            hours_since_contact=(now - last).total_seconds() / 3600 if last else None,
            hours_since_response=((now - self.last_response).total_seconds() / 3600
                                  if self.last_response else None),
            responses=responses,
            contacts_long=dict(long_counts),
            long_days=long_days,
        )


@dataclass(frozen=True)
class Snapshot:
    customer: CustomerState
    budgets: dict[str, BudgetUsage]  # budget id -> its current period's usage
    log_token: str | None = None     # the customer's log token, if it has one yet


@dataclass(frozen=True)
class Forgotten:
    """What ``forget`` deleted."""

    contacts: int = 0
    pending: int = 0
    released_cents: int = 0
    had_state: bool = False


@dataclass
class PendingDecision:
    """A decision waiting for its attribution window to close."""

    event_id: str
    customer_id: str
    decision_time: dt.datetime
    matures_at: dt.datetime
    dsjson: DsjsonLine  # the decision's DSJSON line; its cost is filled in when it matures
    offer_cost: float
    contact_cost: float
    contacted: bool
    channel: str | None = None
    send_at: dt.datetime | None = None
    commitment: Commitment | None = None
    settled: bool = False
    outcomes: list[tuple[OutcomeType, float]] = field(default_factory=list)
    outcome_ids: set[str] = field(default_factory=set)
    # The customer's log token this decision was logged with, when the customer had none yet:
    # the reservation gives it to the customer, or is refused if another decision gave it one.
    log_token: str | None = None

    def to_json(self) -> bytes:
        """Everything but the outcomes (a shared store keeps those beside it), as UTF-8 JSON."""
        c = self.commitment
        return orjson.dumps({
            "event_id": self.event_id, "customer_id": self.customer_id,
            "decision_time": iso(self.decision_time), "matures_at": iso(self.matures_at),
            "dsjson": self.dsjson.rest, "offer_cost": self.offer_cost,
            "contact_cost": self.contact_cost, "contacted": self.contacted, "channel": self.channel,
            "send_at": iso(self.send_at) if self.send_at else None,
            "commitment": [c.key.budget_id, c.key.period, c.key.amount_cents, c.cents] if c else None,
        })

    def pack(self) -> bytes:
        """``to_json``, deflated with a preset dictionary of what every pending decision's text
        repeats (about 2/3 of plain zlib's size): what the stores keep."""
        deflate = zlib.compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=_PACK_DICTIONARY)
        return _PACKED + deflate.compress(self.to_json()) + deflate.flush()

    @classmethod
    def unpack(cls, data: bytes) -> PendingDecision:
        """The decision ``pack`` made (or, from older stores, plain zlib of ``to_json``)."""
        if data[:1] == _PACKED:
            inflate = zlib.decompressobj(15, zdict=_PACK_DICTIONARY)
            return cls.from_json(inflate.decompress(data[1:]) + inflate.flush())
        return cls.from_json(zlib.decompress(data))

    @classmethod
    def from_json(cls, text: str | bytes) -> PendingDecision:
        d = orjson.loads(text)
        c = d["commitment"]
        return cls(
            event_id=d["event_id"], customer_id=d["customer_id"],
            decision_time=_parse_time(d["decision_time"]), matures_at=_parse_time(d["matures_at"]),
            dsjson=DsjsonLine(d["dsjson"]), offer_cost=d["offer_cost"],
            contact_cost=d["contact_cost"], contacted=d["contacted"], channel=d["channel"],
            send_at=_parse_time(d["send_at"]) if d["send_at"] else None,
            commitment=Commitment(BudgetKey(c[0], c[1], c[2]), c[3]) if c else None,
        )


# ``PendingDecision.pack``: a first byte no zlib stream starts with, and the dictionary, never to
# be changed (what is stored is read with it; a new one needs a new first byte).
_PACKED = b"\x01"
_PACK_DICTIONARY = (
    '{"event_id":"","customer_id":"","decision_time":"T00:00:00.000000Z","matures_at":"T00:00:00.000000Z",'
    '"dsjson":"\\"_label_probability\\":0.,\\"_label_Action\\":,\\"_labelIndex\\":,\\"Timestamp\\":'
    '\\"T00:00:00.000000Z\\",\\"Version\\":\\"1\\",\\"EventId\\":\\"\\",\\"a\\":[],\\"p\\":[0.],'
    '\\"c\\":{\\"_multi\\":[' + "{}," * 80 + ']}}","offer_cost":0.0,"contact_cost":0.0,"contacted":true,'
    '"channel":"email","send_at":"T00:00:00.000000Z","commitment":null}:1.0,\\"=\\":0.0,'
).encode()


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class StateStore(Protocol):
    def snapshot(self, customer_id: str, now: dt.datetime, horizon: dt.timedelta,
                 budgets: Sequence[BudgetKey]) -> Snapshot:
        """The customer's contacts within ``horizon`` of now and the budgets' usage.
        Raises StoreUnavailable."""

    def reserve(self, pending: PendingDecision, pressure: Pressure) -> str | None:
        """Check the decision's contact against ``pressure`` and its commitment against its
        budget (and, with ``pending.log_token``, that the customer has no other log token); if
        all hold, record contact, commitment, log token and pending decision atomically and
        return None, else change nothing and return why. Raises StoreUnavailable."""

    def add_outcome(self, event_id: str, outcome_id: str, kind: OutcomeType, value: float,
                    time: dt.datetime) -> bool:
        """Attach an outcome; False when outcome_id was already seen for the event. A first
        REDEEMED outcome settles the decision's commitment.
        Raises UnknownEvent, or AttributionClosed when the window has closed."""

    def pop_matured(self, now: dt.datetime, limit: int = 10_000) -> list[PendingDecision]:
        """Remove and return the decisions whose window has closed by ``now``, oldest first,
        releasing their unsettled commitments."""

    def next_maturity(self) -> dt.datetime | None:
        """When the next pending decision's window closes (None: nothing pending); may be
        earlier than that (never later)."""

    def budget_usage(self, keys: Sequence[BudgetKey]) -> list[BudgetUsage]: ...

    def pending_count(self) -> int: ...

    def log_token(self, customer_id: str) -> str:
        """The customer's log token, made (random) on first use; concurrent first uses agree."""

    def forget(self, customer_id: str) -> Forgotten:
        """Delete everything held of the customer: contacts, response counts, last response,
        log token, pending decisions (releasing their unsettled commitments)."""


class VolatileStateStore:
    """Memory only, one process, forgotten on exit: for simulations and tests (``nba serve``
    keeps its state in SQLite or Redis). Thread-safe through one lock (operations are
    microseconds)."""

    def __init__(self, closed_memory: int = 200_000):
        self._lock = threading.Lock()
        self._contacts: dict[str, list[tuple[dt.datetime, str]]] = defaultdict(list)
        self._last_response: dict[str, dt.datetime] = {}
        self._counts: dict[str, dict[str, int]] = defaultdict(dict)
        self._budgets: dict[str, list[int]] = {}  # BudgetKey.name -> [paid, committed] cents
        self._pending: dict[str, PendingDecision] = {}
        self._tokens: dict[str, str] = {}
        self._queue: list[tuple[dt.datetime, int, str]] = []
        self._seq = 0
        # Recently matured events, so a late report gets "window closed", not "unknown".
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._closed_memory = closed_memory

    def snapshot(self, customer_id: str, now: dt.datetime, horizon: dt.timedelta,
                 budgets: Sequence[BudgetKey]) -> Snapshot:
        with self._lock:
            contacts = self._contacts.get(customer_id, [])
            kept = [(t, ch) for t, ch in contacts if t > now - horizon]
            if len(kept) != len(contacts):
                self._contacts[customer_id] = kept
            state = CustomerState(tuple(kept), self._last_response.get(customer_id),
                                  dict(self._counts.get(customer_id, {})))
            usage = {key.budget_id: self._usage(key) for key in budgets}
            token = self._tokens.get(customer_id)
        return Snapshot(state, usage, token)

    def _usage(self, key: BudgetKey) -> BudgetUsage:
        paid, committed = self._budgets.get(key.name, (0, 0))
        return BudgetUsage(key, paid, committed)

    def reserve(self, pending: PendingDecision, pressure: Pressure) -> str | None:
        with self._lock:
            if pending.log_token is not None and self._tokens.get(pending.customer_id, pending.log_token) \
                    != pending.log_token:
                return TOKEN_TAKEN
            contacts = self._contacts[pending.customer_id]
            if pending.channel is not None and pending.send_at is not None:
                why = pressure.violation(contacts, pending.channel, pending.send_at)
                if why:
                    return why
            c = pending.commitment
            if c is not None:
                why = self._usage(c.key).shortfall(c.cents)
                if why:
                    return why
                self._budgets.setdefault(c.key.name, [0, 0])[1] += c.cents
            if pending.channel is not None and pending.send_at is not None:
                contacts.append((pending.send_at, pending.channel))
                self._count(pending.customer_id, f"{pending.channel}:sent")
            if pending.log_token is not None:
                self._tokens[pending.customer_id] = pending.log_token
            self._pending[pending.event_id] = pending
            self._seq += 1
            heapq.heappush(self._queue, (pending.matures_at, self._seq, pending.event_id))
        return None

    def add_outcome(self, event_id: str, outcome_id: str, kind: OutcomeType, value: float,
                    time: dt.datetime) -> bool:
        with self._lock:
            pending = self._pending.get(event_id)
            if pending is None:
                if event_id in self._closed:
                    raise AttributionClosed(f"event {event_id!r}: attribution window has closed")
                raise UnknownEvent(f"unknown event_id {event_id!r}")
            if outcome_id in pending.outcome_ids:
                return False
            pending.outcome_ids.add(outcome_id)
            first = all(k is not kind for k, _ in pending.outcomes)
            pending.outcomes.append((kind, value))
            if first and kind in COUNTED and pending.channel is not None:
                self._count(pending.customer_id, f"{pending.channel}:{COUNTED[kind]}")
            if kind in RESPONSES:
                previous = self._last_response.get(pending.customer_id)
                if previous is None or time > previous:
                    self._last_response[pending.customer_id] = time
            c = pending.commitment
            if kind is OutcomeType.REDEEMED and c is not None and not pending.settled:
                pending.settled = True
                ledger = self._budgets[c.key.name]
                ledger[0] += c.cents
                ledger[1] -= c.cents
            return True

    def _count(self, customer_id: str, key: str) -> None:
        counts = self._counts[customer_id]
        counts[key] = counts.get(key, 0) + 1

    def pop_matured(self, now: dt.datetime, limit: int = 10_000) -> list[PendingDecision]:
        matured = []
        with self._lock:
            while self._queue and self._queue[0][0] <= now and len(matured) < limit:
                _, _, event_id = heapq.heappop(self._queue)
                pending = self._pending.pop(event_id, None)
                if pending is None:
                    continue
                matured.append(pending)
                c = pending.commitment
                if c is not None and not pending.settled:
                    self._budgets[c.key.name][1] -= c.cents
                self._closed[event_id] = None
                if len(self._closed) > self._closed_memory:
                    self._closed.popitem(last=False)
        return matured

    def next_maturity(self) -> dt.datetime | None:
        with self._lock:  # (an entry of a forgotten decision may come first: earlier, not later)
            return self._queue[0][0] if self._queue else None

    def budget_usage(self, keys: Sequence[BudgetKey]) -> list[BudgetUsage]:
        with self._lock:
            return [self._usage(key) for key in keys]

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def log_token(self, customer_id: str) -> str:
        with self._lock:
            return self._tokens.setdefault(customer_id, new_log_token())

    def forget(self, customer_id: str) -> Forgotten:
        with self._lock:
            had = any(customer_id in d for d in (self._contacts, self._last_response, self._counts, self._tokens))
            contacts = len(self._contacts.pop(customer_id, []))
            self._last_response.pop(customer_id, None)
            self._counts.pop(customer_id, None)
            self._tokens.pop(customer_id, None)
            mine = [p for p in self._pending.values() if p.customer_id == customer_id]
            released = 0
            for p in mine:  # their queue entries are skipped when they come up
                del self._pending[p.event_id]
                if p.commitment is not None and not p.settled:
                    self._budgets[p.commitment.key.name][1] -= p.commitment.cents
                    released += p.commitment.cents
        return Forgotten(contacts, len(mine), released, had or bool(mine))
