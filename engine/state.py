"""State the engine keeps between calls: contact history per customer and the reward join.

``StateStore`` is the interface; ``InMemoryStateStore`` is the embedded default for one process.
A shared backend (Redis) implements the same interface with per-customer keys; every method
that changes state does its checks and writes atomically, so the interface never asks a caller
to read, decide and then write.
"""

from __future__ import annotations

import datetime as dt
import heapq
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from engine.decision_log import DsjsonLine
from engine.domain import AttributionClosed, OutcomeType, UnknownEvent

HISTORY_WINDOW = dt.timedelta(days=7)
RESPONSES = {OutcomeType.OPENED, OutcomeType.CLICKED, OutcomeType.CONVERTED}


@dataclass(frozen=True)
class ContactHistory:
    contacts_7d: dict[str, int]
    hours_since_contact: float | None
    hours_since_response: float | None = None


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
    outcomes: list[tuple[OutcomeType, float]] = field(default_factory=list)
    outcome_ids: set[str] = field(default_factory=set)


class StateStore(Protocol):
    def contact_history(self, customer_id: str, now: dt.datetime) -> ContactHistory: ...

    def record_decision(self, pending: PendingDecision, channel: str | None,
                        send_at: dt.datetime | None) -> None:
        """Store the pending decision and, when it contacts, the contact, in one step."""

    def add_outcome(self, event_id: str, outcome_id: str, kind: OutcomeType, value: float,
                    time: dt.datetime) -> bool:
        """Attach an outcome; False when outcome_id was already seen for the event.
        Raises UnknownEvent, or AttributionClosed when the window has closed."""

    def pop_matured(self, now: dt.datetime) -> list[PendingDecision]:
        """Remove and return the decisions whose window has closed by ``now``, oldest first."""

    def pending_count(self) -> int: ...


class InMemoryStateStore:
    """Single-process store; thread-safe through one lock (operations are microseconds)."""

    def __init__(self, closed_memory: int = 200_000):
        self._lock = threading.Lock()
        self._contacts: dict[str, list[tuple[dt.datetime, str]]] = defaultdict(list)
        self._last_response: dict[str, dt.datetime] = {}
        self._pending: dict[str, PendingDecision] = {}
        self._queue: list[tuple[dt.datetime, int, str]] = []
        self._seq = 0
        # Recently matured events, so a late report gets "window closed", not "unknown".
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._closed_memory = closed_memory

    def contact_history(self, customer_id: str, now: dt.datetime) -> ContactHistory:
        with self._lock:
            contacts = self._contacts.get(customer_id, [])
            since = now - HISTORY_WINDOW
            kept = [(t, ch) for t, ch in contacts if t >= since]
            if len(kept) != len(contacts):
                self._contacts[customer_id] = kept
            counts: dict[str, int] = defaultdict(int)
            for _, ch in kept:
                counts[ch] += 1
            past = [t for t, _ in kept if t <= now]
            last = max(past) if past else None
            response = self._last_response.get(customer_id)
        return ContactHistory(
            contacts_7d=dict(counts),
            hours_since_contact=(now - last).total_seconds() / 3600 if last else None,
            hours_since_response=(now - response).total_seconds() / 3600 if response else None,
        )

    def record_decision(self, pending: PendingDecision, channel: str | None,
                        send_at: dt.datetime | None) -> None:
        with self._lock:
            self._pending[pending.event_id] = pending
            self._seq += 1
            heapq.heappush(self._queue, (pending.matures_at, self._seq, pending.event_id))
            if channel is not None and send_at is not None:
                self._contacts[pending.customer_id].append((send_at, channel))

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
            pending.outcomes.append((kind, value))
            if kind in RESPONSES:
                previous = self._last_response.get(pending.customer_id)
                if previous is None or time > previous:
                    self._last_response[pending.customer_id] = time
            return True

    def pop_matured(self, now: dt.datetime) -> list[PendingDecision]:
        matured = []
        with self._lock:
            while self._queue and self._queue[0][0] <= now:
                _, _, event_id = heapq.heappop(self._queue)
                pending = self._pending.pop(event_id, None)
                if pending is None:
                    continue
                matured.append(pending)
                self._closed[event_id] = None
                if len(self._closed) > self._closed_memory:
                    self._closed.popitem(last=False)
        return matured

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)
