"""The decision pipeline, callable without a network.

    request -> validation -> feasible actions -> features -> values (VW) -> exploration
            -> log (DSJSON) -> record (state store) -> Decision

    outcome -> validation -> join (state store) -> outcome log
    clock   -> matured decisions -> reward -> VW learns
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import exploration
from engine.catalog import Catalog
from engine.decision_log import DEFAULT_MAX_BYTES, DsjsonLine, JsonlLog, iso
from engine.domain import (
    Decision, DecisionRequest, Outcome, OutcomeAck, RequestError, ScoredAction, utc,
)
from engine.feasibility import feasible_actions
from engine.features import FeatureBuilder
from engine.rewards import net_reward
from engine.state import InMemoryStateStore, PendingDecision, StateStore
from engine.validation import validate_outcome, validate_request
from engine.value_model import ValueModel

COUNTERS = ("decisions", "explored", "no_contact", "outcomes", "duplicate_outcomes", "learned",
            "rejected")


@dataclass(frozen=True)
class PolicySnapshot:
    model_version: str
    model_args: str
    catalog_version: str
    exploration: object
    counters: dict[str, int]
    attribution_window_seconds: int


class DecisionEngine:
    """Decides, logs and learns. Thread-safe.

    Args:
        catalog: the validated catalog.
        store: state backend (default: embedded in-memory).
        model: value model (default: a cold-start VW workspace from the catalog's settings).
        log_dir: where decision and outcome logs go (None: no logs).
        seed: makes exploration and event ids reproducible.
        honour_request_time: use the times in requests and outcomes instead of the wall clock
            (simulation and tests); the engine's clock is then the latest time seen.
    """

    def __init__(self, catalog: Catalog, *, store: StateStore | None = None,
                 model: ValueModel | None = None, log_dir: str | Path | None = None,
                 seed: int | None = None, honour_request_time: bool = False,
                 log_max_bytes: int = DEFAULT_MAX_BYTES):
        self.catalog = catalog
        self.store = store if store is not None else InMemoryStateStore()
        self.model = model if model is not None else ValueModel(catalog.model, seed=seed or 0)
        self.honour_request_time = honour_request_time
        self.features = FeatureBuilder(catalog)
        self._rng = np.random.default_rng(seed)
        self._ids = random.Random(seed) if seed is not None else None
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._clock: dt.datetime | None = None
        self.decision_log = JsonlLog(log_dir, "decisions", log_max_bytes) if log_dir else None
        self.outcome_log = JsonlLog(log_dir, "outcomes", log_max_bytes) if log_dir else None

    # -- time ---------------------------------------------------------------------------------

    def now(self, requested: dt.datetime | None = None) -> dt.datetime:
        """The time of a call: the wall clock, or the requested time when honoured."""
        if not self.honour_request_time:
            return dt.datetime.now(dt.timezone.utc)
        with self._lock:
            if requested is not None:
                requested = utc(requested)
                if self._clock is None or requested > self._clock:
                    self._clock = requested
                return requested
            if self._clock is None:
                self._clock = dt.datetime.now(dt.timezone.utc)
            return self._clock

    # -- deciding -----------------------------------------------------------------------------

    def decide(self, request: DecisionRequest) -> Decision:
        try:
            validate_request(request, self.catalog)
        except RequestError:
            self._count("rejected")
            raise
        now = self.now(request.decision_time)
        if self.honour_request_time:
            self.mature(now)

        feasible = feasible_actions(request, self.catalog, now)
        history = self.store.contact_history(request.customer_id, now)
        context = self.features.context_json(request, history, feasible.actions)
        settings = self.catalog.exploration
        if settings.pessimism > 0:
            values, spread = self.model.estimate(context, len(feasible.actions))
            scores = values - settings.pessimism * spread
        else:
            values = scores = self.model.values(context, len(feasible.actions))
        p = exploration.probabilities(scores, settings)
        with self._lock:
            chosen = exploration.draw(p, self._rng)
            event_id = self._new_event_id()
        action = feasible.actions[chosen]

        contacted = not action.no_contact
        offer_cost = self.catalog.offers[action.offer_id].cost if contacted else 0.0
        contact_cost = self.catalog.channels[action.channel].contact_cost if contacted else 0.0
        # Until outcomes arrive, the decision's cost is what it costs if nothing happens.
        default_cost = -net_reward(self.catalog.reward, (), contacted, offer_cost, contact_cost)
        meta = {
            "customer_id": request.customer_id,
            "decision_time": iso(now),
            "catalog": self.catalog.version,
            "action": {"offer_id": action.offer_id, "channel": action.channel,
                       "send_slot": action.send_slot,
                       "send_at": iso(action.send_at) if action.send_at else None,
                       "no_contact": action.no_contact},
            "actions": [a.label for a in feasible.actions],
            "offer_cost": offer_cost,
            "contact_cost": contact_cost,
        }
        line = DsjsonLine.build(event_id, now, context, p, chosen, self.model.version, meta)
        if self.decision_log is not None:
            self.decision_log.append(line.with_cost(default_cost))
        self.store.record_decision(
            PendingDecision(event_id=event_id, customer_id=request.customer_id, decision_time=now,
                            matures_at=now + self.catalog.attribution_window, dsjson=line,
                            offer_cost=offer_cost, contact_cost=contact_cost, contacted=contacted),
            channel=action.channel if contacted else None,
            send_at=action.send_at if contacted else None,
        )

        top = np.argsort(-values, kind="stable")[: self.catalog.exploration.top_k]
        ranking = tuple(ScoredAction(feasible.actions[i], float(values[i]), float(p[i])) for i in top)
        explored = not bool(exploration.greedy_mask(scores)[chosen])
        with self._lock:
            self._counters["decisions"] += 1
            self._counters["explored"] += explored
            self._counters["no_contact"] += action.no_contact
        return Decision(
            event_id=event_id, customer_id=request.customer_id, action=action,
            probability=float(p[chosen]), expected_value=float(values[chosen]), explored=explored,
            model_version=self.model.version, ranking=ranking, exclusions=feasible.exclusions,
            decision_time=now, feasible_actions=len(feasible.actions),
        )

    def _new_event_id(self) -> str:
        if self._ids is None:
            return uuid.uuid4().hex
        return uuid.UUID(int=self._ids.getrandbits(128), version=4).hex

    # -- outcomes and learning ----------------------------------------------------------------

    def report_outcome(self, outcome: Outcome) -> OutcomeAck:
        try:
            validate_outcome(outcome)
        except RequestError:
            self._count("rejected")
            raise
        when = self.now(outcome.time)
        fresh = self.store.add_outcome(outcome.event_id, outcome.outcome_id, outcome.type,
                                       outcome.value, when)
        if fresh:
            if self.outcome_log is not None:
                self.outcome_log.append({"EventId": outcome.event_id, "OutcomeId": outcome.outcome_id,
                                         "Type": outcome.type.value, "Value": outcome.value,
                                         "Time": iso(when)})
            self._count("outcomes")
        else:
            self._count("duplicate_outcomes")
        if self.honour_request_time:
            self.mature(when)
        return OutcomeAck(outcome.event_id, outcome.outcome_id, duplicate=not fresh)

    def mature(self, now: dt.datetime | None = None) -> int:
        """Learn from every decision whose attribution window has closed by ``now``."""
        now = now if now is not None else self.now()
        learned = 0
        for pending in self.store.pop_matured(now):
            reward = net_reward(self.catalog.reward, pending.outcomes, pending.contacted,
                                pending.offer_cost, pending.contact_cost)
            self.model.learn_dsjson(pending.dsjson.with_cost(-reward))
            learned += 1
        if learned:
            self._count("learned", learned)
        return learned

    # -- introspection ------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def policy(self) -> PolicySnapshot:
        with self._lock:
            counters = {name: self._counters[name] for name in COUNTERS}
        counters["pending"] = self.store.pending_count()
        return PolicySnapshot(
            model_version=self.model.version, model_args=" ".join(self.model.args),
            catalog_version=self.catalog.version, exploration=self.catalog.exploration,
            counters=counters,
            attribution_window_seconds=int(self.catalog.attribution_window.total_seconds()),
        )

    def close(self) -> None:
        for log in (self.decision_log, self.outcome_log):
            if log is not None:
                log.close()
