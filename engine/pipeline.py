"""The decision pipeline, callable without a network.

    request -> validation -> feasible actions -> state snapshot -> pressure and budgets
            -> features -> values (VW) - shadow price x incentive -> exploration
            -> reserve (state store, atomic) -> log (DSJSON) -> Decision

    outcome -> validation -> join (state store) -> outcome log
    clock   -> matured decisions -> reward -> VW learns
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import exploration
from engine.catalog import Catalog
from engine.decision_log import DEFAULT_MAX_BYTES, DsjsonLine, JsonlLog, iso
from engine.domain import (
    Action, Decision, DecisionRequest, Outcome, OutcomeAck, RequestError, ScoredAction, utc,
)
from engine.constraints import Budget, BudgetUsage, Commitment, Pacer, Pressure, to_cents
from engine.feasibility import FeasibleSet, apply_constraints, control_choice, feasible_actions
from engine.features import FeatureBuilder
from engine.rewards import funnel_signals, net_reward, reward_bounds
from engine.privacy import Pseudonyms, new_log_token
from engine.state import Forgotten, PendingDecision, Snapshot, StateStore, StoreUnavailable, VolatileStateStore
from engine.validation import validate_outcome, validate_request
from engine.models import like, new_model
from engine.value_model import ValueModel

COUNTERS = ("decisions", "explored", "no_contact", "outcomes", "duplicate_outcomes", "learned",
            "rejected", "control", "fallback", "reserve_conflicts", "store_errors", "rewards_clipped",
            "model_rollbacks", "forgotten")
# Tries at reserving a decision before giving up on contacting (each re-reads the state).
RESERVE_ATTEMPTS = 3
log = logging.getLogger("nba.engine")
MATURE_BATCH = 10_000
# ``mature`` skips the store until the next window closes (the store says when, after each
# look; this process's own reservations lower it). Other processes' reservations are seen by
# looking again at least this often (wall-clock seconds).
MATURE_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class PolicySnapshot:
    model_version: str
    model_args: str
    catalog_version: str
    exploration: object
    counters: dict[str, int]
    attribution_window_seconds: int
    pressure: Pressure
    budgets: tuple[BudgetState, ...]
    control_fraction: float


@dataclass(frozen=True)
class Scored:
    """A decision's actions scored: their values, the scores exploration chooses on (values less
    shadow prices, slot averaging), each one's probability, the greedy ones
    (``exploration.greedy_mask``; None for a control customer) and, for a control customer, the
    control action."""

    values: np.ndarray
    scores: np.ndarray
    p: np.ndarray
    greedy: np.ndarray | None
    control_choice: int = -1


@dataclass(frozen=True)
class BudgetState:
    """A budget's current period as GetPolicy shows it (usage None: store unreachable)."""

    budget: Budget
    period_start: dt.datetime
    usage: BudgetUsage | None
    shadow_price: float
    plan: float


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
        reward: what a matured decision is learned with (default: ``catalog_reward``, the
            catalog's reward definition applied to its outcomes). A simulation may teach the
            engine something else, e.g. the exact expected value it knows.
        pseudonyms: keep customer ids out of the state and the logs (``engine.privacy``);
            None (simulations, tests): the ids as given.
        log_sync: when log lines reach the disk: "always" (fsync each line), "interval"
            (about once a second) or "never" (when the system writes them back).
    """

    def __init__(self, catalog: Catalog, *, store: StateStore | None = None,
                 model: ValueModel | None = None, log_dir: str | Path | None = None,
                 seed: int | None = None, honour_request_time: bool = False,
                 log_max_bytes: int = DEFAULT_MAX_BYTES,
                 reward: Callable[[PendingDecision], float] | None = None,
                 pseudonyms: Pseudonyms | None = None, log_sync: str = "never"):
        self.catalog = catalog
        self.learns = True
        self.reward = reward if reward is not None else self.catalog_reward
        self.pseudonyms = pseudonyms
        self._reward_bounds = reward_bounds(catalog)
        self._good_model: bytes | None = None
        self._labels_text: dict[tuple[str, ...], str] = {}
        self._costs: dict[tuple[str, ...], np.ndarray] = {}
        self.store = store if store is not None else VolatileStateStore()
        self.model = model if model is not None else new_model(catalog.model, reward=catalog.reward)
        self.honour_request_time = honour_request_time
        self.features = FeatureBuilder(catalog)
        self._rng = np.random.default_rng(seed)
        self._ids = random.Random(seed) if seed is not None else None
        self._lock = threading.Lock()
        self._quiet: tuple[dt.datetime, float] | None = None  # (no window closes before, until monotonic)
        self._reserved_since: dt.datetime | None = None
        self._counters: Counter[str] = Counter()
        self._clock: dt.datetime | None = None
        self.pacer = Pacer(catalog.constraints.budgets)
        self.decision_log = JsonlLog(log_dir, "decisions", log_max_bytes, sync=log_sync) if log_dir else None
        self.outcome_log = JsonlLog(log_dir, "outcomes", log_max_bytes, sync=log_sync) if log_dir else None

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
        control = self.catalog.constraints.control.contains(request.customer_id)
        try:
            for _ in range(RESERVE_ATTEMPTS):
                decision = self._decide_once(request, now, feasible, control)
                if decision is not None:
                    return decision
                self._count("reserve_conflicts")
            # Every attempt lost a race for this customer's caps or the budget: no contact.
            return self._decide_once(request, now, feasible, control, give_up=True)
        except StoreUnavailable:
            return self._safe_mode(request, now, feasible)

    def _decide_once(self, request: DecisionRequest, now: dt.datetime, feasible: FeasibleSet,
                     control: bool, give_up: bool = False) -> Decision | None:
        """One try: snapshot, constrain, score, draw, reserve, log. None when the reservation
        was refused (another decision got there first)."""
        constraints = self.catalog.constraints
        keys = [b.key(now) for b in constraints.budgets]
        stored = self._stored_id(request.customer_id)
        snap = self.store.snapshot(stored, now, constraints.pressure.horizon, keys)
        # Pseudonymous logs name the customer by its log token (``engine.privacy``); a customer's
        # first decision makes one, which its reservation records.
        new_token = new_log_token() if self.pseudonyms is not None and snap.log_token is None else None
        logged = request.customer_id if self.pseudonyms is None else snap.log_token or new_token
        if give_up:
            actions, exclusions = (Action.none(),), feasible.exclusions
        else:
            actions, exclusions = apply_constraints(feasible, snap, self.catalog, request.inbound, now)
        labels = feasible.labels if actions is feasible.actions else tuple(a.label for a in actions)
        history = snap.customer.history(now, self.catalog.model.history_days)
        head, multi = self.features.context_parts(request, history, actions, labels)
        context = f"{head}{multi}]}}"
        model = self.model  # one model for the whole decision, even if a reload swaps it
        scored = self._score(model, (context, head, multi), actions, labels, snap, now, control)
        with self._lock:
            chosen = scored.control_choice if control else exploration.draw(scored.p, self._rng)
            event_id = self._new_event_id()
        line, pending, default_cost = self._pending((stored, logged), now, actions, labels, chosen, event_id,
                                                    (context, head), scored.p, model, control)
        pending.log_token = new_token
        if self.store.reserve(pending, constraints.pressure) is not None:
            return None
        self._reserved(pending.matures_at)
        if self.decision_log is not None:
            self.decision_log.append(line.with_cost(default_cost))
        return self._decision(request, now, actions, exclusions, scored, chosen, event_id, model.version, control)

    def _score(self, model: ValueModel, context: tuple[str, str, str], actions: tuple[Action, ...],
               labels: tuple[str, ...], snap: Snapshot, now: dt.datetime, control: bool) -> Scored:
        """Values, the scores exploration chooses on and each action's probability. A control
        customer gets the control action with probability 1. ``context``: its text, head and
        actions' part (``FeatureBuilder.context_parts``)."""
        text, head, multi = context
        parts = getattr(model, "values_parts", None)
        values = parts(head, multi, len(actions)) if parts is not None else model.values(text, len(actions))
        if not np.isfinite(values).all():
            self._roll_back(model)
            values = self.model.values(text, len(actions))
            values = np.where(np.isfinite(values), values, 0.0)
        if control:
            chosen = control_choice(actions, self.catalog.constraints.control)
            p = np.zeros(len(actions))
            p[chosen] = 1.0
            return Scored(values, values, p, None, chosen)
        settings = self.catalog.exploration
        scores = values - self._shadow_costs(actions, snap, now)
        if getattr(model, "structure", "direct") == "funnel":
            # its values leave out the contact cost, which the catalog knows (a cold model's
            # are all 0: a tie, as a cold direct model's); its slots differ by their P(open),
            # learned from opens, so the best slot is not a noisy maximum
            if not model.cold:
                costs = self._contact_costs(actions, labels)
                values, scores = values - costs, scores - costs
        else:
            scores = exploration.with_slot_value(scores, labels, settings)
        default = exploration.default_mask(labels, settings)
        greedy = exploration.greedy_mask(scores, default)
        return Scored(values, scores, exploration.probabilities(scores, settings, default, greedy), greedy)

    def _contact_costs(self, actions: tuple[Action, ...], labels: tuple[str, ...]) -> np.ndarray:
        """Each action's contact cost (the catalog's), made once per set of actions."""
        costs = self._costs.get(labels)
        if costs is None:
            if len(self._costs) >= 4096:
                del self._costs[next(iter(self._costs))]
            costs = self._costs[labels] = np.array(
                [0.0 if a.no_contact else self.catalog.channels[a.channel].contact_cost for a in actions])
        return costs

    def _pending(self, customer: tuple[str, str], now: dt.datetime, actions: tuple[Action, ...],
                 labels: tuple[str, ...], chosen: int, event_id: str, context: tuple[str, str], p: np.ndarray,
                 model: ValueModel, control: bool
                 ) -> tuple[DsjsonLine, PendingDecision, float]:
        """The decision's DSJSON line, what the state store keeps until it matures, and its cost
        if nothing happens (what is logged until outcomes arrive). ``customer``: the id the store
        knows the customer by, and the name the log gives it (``engine.privacy``). ``context``:
        the context and its head (``FeatureBuilder.context_parts``). What the store keeps to learn
        from is, for an mtr model, only the part of the line mtr learns (``DsjsonLine.learned``)."""
        stored, logged = customer
        context, head = context
        action = actions[chosen]
        contacted = not action.no_contact
        offer_cost = self.catalog.offers[action.offer_id].cost if contacted else 0.0
        contact_cost = self.catalog.channels[action.channel].contact_cost if contacted else 0.0
        default_cost = -net_reward(self.catalog.reward, (), contacted, offer_cost, contact_cost)
        budget = self.catalog.constraints.budget_of(action.offer_id) if contacted else None
        commitment = None
        if budget is not None and offer_cost > 0:
            commitment = Commitment(budget.key(now), to_cents(offer_cost))
        outbound = contacted and not self.catalog.channels[action.channel].inbound_only
        before = {
            "customer_id": logged,
            "decision_time": iso(now),
            "catalog": self.catalog.version,
            "action": {"offer_id": action.offer_id, "channel": action.channel,
                       "send_slot": action.send_slot,
                       "send_at": iso(action.send_at) if action.send_at else None,
                       "no_contact": action.no_contact},
        }
        after = {"offer_cost": offer_cost, "contact_cost": contact_cost, "control": control}
        if commitment is not None:
            after["budget"] = commitment.key.name
        meta = (json.dumps(before, separators=(",", ":"))[:-1] + ',"actions":' + self._labels_json(labels) + ","
                + json.dumps(after, separators=(",", ":"))[1:])
        line = DsjsonLine.build(event_id, now, context, p, chosen, model.version, meta)
        settings = getattr(model, "settings", None)
        learned = line if settings is None or settings.cb_type != "mtr" else DsjsonLine.learned(
            event_id, now, head, self.features.fragment(action), len(actions), float(p[chosen]), chosen)
        pending = PendingDecision(
            event_id=event_id, customer_id=stored, decision_time=now,
            matures_at=now + self.catalog.attribution_window, dsjson=learned,
            offer_cost=offer_cost, contact_cost=contact_cost, contacted=contacted,
            channel=action.channel if outbound else None,
            send_at=action.send_at if outbound else None, commitment=commitment)
        return line, pending, default_cost

    def _labels_json(self, labels: tuple[str, ...]) -> str:
        """The JSON text of the actions' labels, made once per set of actions."""
        text = self._labels_text.get(labels)
        if text is None:
            if len(self._labels_text) >= 4096:
                del self._labels_text[next(iter(self._labels_text))]
            text = self._labels_text[labels] = json.dumps(labels, separators=(",", ":"))
        return text

    def _decision(self, request: DecisionRequest, now: dt.datetime, actions: tuple[Action, ...],
                  exclusions: tuple, scored: Scored, chosen: int, event_id: str, model_version: str,
                  control: bool) -> Decision:
        """The reserved decision as the caller gets it, counted."""
        values, p, action = scored.values, scored.p, actions[chosen]
        top = np.argsort(-values, kind="stable")[: self.catalog.exploration.top_k]
        ranking = tuple(ScoredAction(actions[i], float(values[i]), float(p[i])) for i in top)
        explored = not control and not bool(scored.greedy[chosen])
        with self._lock:
            self._counters["decisions"] += 1
            self._counters["explored"] += explored
            self._counters["no_contact"] += action.no_contact
            self._counters["control"] += control
        return Decision(
            event_id=event_id, customer_id=request.customer_id, action=action,
            probability=float(p[chosen]), expected_value=float(values[chosen]), explored=explored,
            model_version=model_version, ranking=ranking, exclusions=exclusions,
            decision_time=now, feasible_actions=len(actions), control=control,
        )

    def _shadow_costs(self, actions: tuple[Action, ...], snap: Snapshot, now: dt.datetime) -> np.ndarray:
        """lambda x cost per action, after stepping each budget's shadow price (pacing)."""
        costs = np.zeros(len(actions))
        if not snap.budgets:
            return costs
        with self._lock:
            lam = {bid: self.pacer.update(usage, now) for bid, usage in snap.budgets.items()}
        if not any(lam.values()):
            return costs
        price = {offer_id: lam[b.id] * self.catalog.offers[offer_id].cost
                 for b in self.catalog.constraints.budgets for offer_id in b.offers}
        for i, action in enumerate(actions):
            if not action.no_contact:
                costs[i] = price.get(action.offer_id, 0.0)
        return costs

    def _safe_mode(self, request: DecisionRequest, now: dt.datetime, feasible: FeasibleSet) -> Decision:
        """The state store is unreachable: a decision that can break no cap and spend no budget
        -- no contact, or on an inbound request the catalog's free inbound offer. Logged,
        flagged and counted; nothing is learned from it."""
        action = Action.none()
        offer = self.catalog.outage_inbound_offer
        if request.inbound and offer:
            action = next((a for a in feasible.actions if a.offer_id == offer), action)
        with self._lock:
            event_id = self._new_event_id()
            self._counters["fallback"] += 1
            self._counters["decisions"] += 1
            self._counters["no_contact"] += action.no_contact
        if self.decision_log is not None:
            # Pseudonymous logs name a customer by its log token, which the unreachable store
            # holds: a safe-mode line then names nobody (it is never learned from).
            self.decision_log.append({"EventId": event_id, "Timestamp": iso(now), "fallback": True,
                                      "customer_id": request.customer_id if self.pseudonyms is None else None,
                                      "action": action.label})
        return Decision(
            event_id=event_id, customer_id=request.customer_id, action=action, probability=1.0,
            expected_value=0.0, explored=False, model_version=self.model.version, ranking=(),
            exclusions=feasible.exclusions, decision_time=now, feasible_actions=1, fallback=True,
        )

    def _new_event_id(self) -> str:
        if self._ids is None:
            return uuid.uuid4().hex
        return uuid.UUID(int=self._ids.getrandbits(128), version=4).hex

    # -- outcomes and learning ----------------------------------------------------------------

    def report_outcome(self, outcome: Outcome) -> OutcomeAck:
        try:
            validate_outcome(outcome, self.catalog)
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
        """Learn from every decision whose attribution window has closed by ``now`` (nothing
        when ``learns`` is off: another process of the same service learns)."""
        if not self.learns:
            return 0
        now = now if now is not None else self.now()
        with self._lock:
            quiet = self._quiet
            if quiet is not None and now < quiet[0] and time.monotonic() < quiet[1]:
                return 0  # nothing can have matured: no trip to the store
            self._quiet, self._reserved_since = None, None
        learned = 0
        try:
            while True:
                batch = self.store.pop_matured(now, MATURE_BATCH)
                for pending in batch:
                    self._learn(pending)
                learned += len(batch)
                if batch:
                    self._check_model(batch[-1])
                if len(batch) < MATURE_BATCH:
                    break
            upcoming = self.store.next_maturity() or dt.datetime.max.replace(tzinfo=dt.timezone.utc)
            with self._lock:  # what was reserved meanwhile counts too
                if self._reserved_since is not None:
                    upcoming = min(upcoming, self._reserved_since)
                self._quiet = (upcoming, time.monotonic() + MATURE_RECHECK_SECONDS)
        except StoreUnavailable:
            self._count("store_errors")
        if learned:
            self._count("learned", learned)
        return learned

    def _learn(self, pending: PendingDecision) -> None:
        """Learn one matured decision: its reward, or, for the funnel model, its outcomes taken
        apart (``engine.rewards.funnel_signals``)."""
        model = self.model
        if getattr(model, "structure", "direct") == "funnel":
            model.learn_funnel(pending.dsjson, funnel_signals(self.catalog.reward, pending.outcomes, pending.contacted,
                                                              pending.offer_cost, pending.contact_cost))
        else:
            model.learn_decision(pending.dsjson, self._bounded(self.reward(pending)))

    def _reserved(self, matures_at: dt.datetime) -> None:
        """A decision was reserved: ``mature`` looks again when its window closes."""
        with self._lock:
            if self._quiet is not None and matures_at < self._quiet[0]:
                self._quiet = (matures_at, self._quiet[1])
            if self._reserved_since is None or matures_at < self._reserved_since:
                self._reserved_since = matures_at

    def _bounded(self, reward: float) -> float:
        """The reward clipped to the catalog's range (``engine.rewards.reward_bounds``); a
        non-finite one is learned as 0. Either is counted (``rewards_clipped``)."""
        low, high = self._reward_bounds
        if not math.isfinite(reward):
            self._count("rewards_clipped")
            log.error("a matured decision's reward is not finite (%r): learned as 0", reward)
            return 0.0
        if low <= reward <= high:
            return reward
        self._count("rewards_clipped")
        return min(max(reward, low), high)

    def _check_model(self, pending: PendingDecision) -> None:
        """After learning: if the model still scores a decision it learned with finite values,
        keep a copy of it as the last good model; if not, go back to that copy."""
        context, n = pending.dsjson.context_and_actions()
        model = self.model
        if model.healthy(context, n):
            self._good_model = model.serialize()
        else:
            self._roll_back(model)

    def _roll_back(self, model: ValueModel) -> None:
        """Serve the last good model instead of one whose values turned non-finite."""
        self._count("model_rollbacks")
        good = self._good_model
        log.error("model %s scores non-finite values: %s", model.version,
                  "serving its last good copy" if good else "no good copy yet: starting again from a cold model")
        restored = like(model, good, model.version)
        if self.model is model:
            self.swap_model(restored)

    def forget(self, customer_id: str) -> Forgotten:
        """Erase a customer (``engine.privacy``): its state goes, its pending decisions are
        dropped unlearned, and its logged decisions no longer name it. Raises StoreUnavailable."""
        if not customer_id:
            raise RequestError("customer_id", "must not be empty")
        gone = self.store.forget(self._stored_id(customer_id))
        self._count("forgotten")
        log.info("forgot a customer: %d contacts, %d pending decisions", gone.contacts, gone.pending)
        return gone

    def _stored_id(self, customer_id: str) -> str:
        return customer_id if self.pseudonyms is None else self.pseudonyms.storage_id(customer_id)

    def catalog_reward(self, pending: PendingDecision) -> float:
        """The reward of a matured decision by the catalog's definition, from its outcomes."""
        return net_reward(self.catalog.reward, pending.outcomes, pending.contacted,
                          pending.offer_cost, pending.contact_cost)

    # -- introspection ------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def swap_model(self, model: ValueModel) -> str:
        """Serve ``model`` from the next decision on; decisions in flight finish (and log) with
        the model they started with. Returns the previous version. Online learning goes on in
        the new model."""
        previous, self.model = self.model.version, model
        return previous

    def policy(self) -> PolicySnapshot:
        with self._lock:
            counters = {name: self._counters[name] for name in COUNTERS}
            lam = dict(self.pacer.lam)
        now = self.now()
        budgets = self.catalog.constraints.budgets
        keys = [b.key(now) for b in budgets]
        try:
            counters["pending"] = self.store.pending_count()
            usage = self.store.budget_usage(keys)
        except StoreUnavailable:
            counters["pending"], usage = -1, [None] * len(keys)
        states = tuple(BudgetState(b, b.period_start(k.period), u, lam[b.id], b.plan(now))
                       for b, k, u in zip(budgets, keys, usage))
        return PolicySnapshot(
            model_version=self.model.version, model_args=" ".join(self.model.args),
            catalog_version=self.catalog.version, exploration=self.catalog.exploration,
            counters=counters,
            attribution_window_seconds=int(self.catalog.attribution_window.total_seconds()),
            pressure=self.catalog.constraints.pressure, budgets=states,
            control_fraction=self.catalog.constraints.control.fraction,
        )

    def close(self) -> None:
        for log in (self.decision_log, self.outcome_log):
            if log is not None:
                log.close()
