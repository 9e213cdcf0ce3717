"""Policies the simulator can run. Anything with ``name``, ``decide(batch)`` and
``learn(feedback)`` works (see ``simulators.runner.Policy``).

Baselines reported beside the engine: no contact, random, the marketer's static rules, and the
oracle, which knows every customer's hidden traits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import numpy as np

from engine.client import NBAClient
from engine.domain import Decision, DecisionRequest, Outcome
from engine.engine import DecisionEngine
from simulators.runner import OUTCOME_TYPES, DecisionBatch, Feedback
from training.policies import PROMO_SHARE_THRESHOLD, rules_actions



class NoContact:
    name = "no_contact"

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        chosen = np.zeros(len(batch.customers), dtype=int)
        for g in batch.groups:
            chosen[g.members] = len(g.actions) - 1  # no_contact is always last
        return chosen

    def learn(self, feedback: Feedback) -> None:
        pass


class RandomPolicy:
    """Uniform over each customer's feasible actions (no_contact included)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        chosen = np.zeros(len(batch.customers), dtype=int)
        for g in batch.groups:
            chosen[g.members] = self.rng.integers(0, len(g.actions), len(g.members))
        return chosen

    def learn(self, feedback: Feedback) -> None:
        pass


class MarketerRules:
    """What a CRM team does by hand: a weekly email at 10:00 local to everyone with email
    consent, SMS at 10:00 to those without; 10 EUR off for everyone, 15 EUR off for promo
    addicts (as the CRM sees them: most past purchases made with a discount)."""

    name = "rules"

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        chosen = np.zeros(len(batch.customers), dtype=int)
        promo = batch.world.promo_share[batch.customers] >= PROMO_SHARE_THRESHOLD
        for g in batch.groups:
            offers = rules_actions(g.index)
            if offers is None:
                chosen[g.members] = len(g.actions) - 1  # no_contact
            else:
                chosen[g.members] = np.where(promo[g.members], offers[1], offers[0])
        return chosen

    def learn(self, feedback: Feedback) -> None:
        pass


class Oracle:
    """The best feasible action by exact expected net value, from hidden traits (myopic: one
    decision at a time, under the same constraints as everyone)."""

    name = "oracle"

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        chosen = np.zeros(len(batch.customers), dtype=int)
        for g in batch.groups:
            cust = batch.customers[g.members][:, None]
            contact = g.offer >= 0
            values = np.zeros((len(g.members), len(g.actions)))
            if contact.any():
                values[:, contact] = batch.response.expected_value(
                    batch.world, cust, g.offer[contact][None, :], g.channel[contact][None, :],
                    g.local_hour[contact][None, :], g.send_t[contact][None, :])
            chosen[g.members] = np.argmax(values, axis=1)
        return chosen

    def learn(self, feedback: Feedback) -> None:
        pass


class EnginePolicy:
    """The decision engine, driven through requests and outcomes like a channel system would.

    ``decide_many`` turns requests into decisions (in order); ``report`` sends one outcome.
    Use ``EnginePolicy.in_process(engine)`` or ``EnginePolicy.over_grpc(client)``: the same
    engine code either way.
    """

    def __init__(self, decide_many: Callable[[list[DecisionRequest]], Iterable[Decision]],
                 report: Callable[[Outcome], object], name: str = "engine",
                 budgets: Callable[[], list[dict]] | None = None):
        self.name = name
        self._decide_many = decide_many
        self._report = report
        self._budgets = budgets
        self._event_ids: list[str] = []
        # The engine's budgets (spend, plan, shadow price) after every batch and its feedback.
        self.budget_trace: list[dict] = []

    @classmethod
    def in_process(cls, engine: DecisionEngine, name: str = "engine") -> EnginePolicy:
        def budgets() -> list[dict]:
            return [{"budget": b.budget.id, "period_start": b.period_start.isoformat(),
                     "amount": b.budget.amount, "paid": b.usage.paid_cents / 100,
                     "committed": b.usage.committed_cents / 100, "plan": b.plan,
                     "shadow_price": b.shadow_price} for b in engine.policy().budgets if b.usage]
        return cls(lambda requests: (engine.decide(r) for r in requests), engine.report_outcome, name, budgets)

    @classmethod
    def over_grpc(cls, client: NBAClient, name: str = "engine_grpc") -> EnginePolicy:
        def budgets() -> list[dict]:
            return [{"budget": b.id, "period_start": b.period_start.ToDatetime(dt.timezone.utc).isoformat(),
                     "amount": b.amount, "paid": b.paid, "committed": b.committed, "plan": b.plan,
                     "shadow_price": b.shadow_price} for b in client.policy().budgets if b.available]
        return cls(lambda requests: client.decide_many(requests, timeout=3600),
                   lambda o: client.report_outcome(o.event_id, o.outcome_id, o.type, o.value, o.time), name,
                   budgets)

    def _trace(self, when: dt.datetime) -> None:
        if self._budgets is not None:
            self.budget_trace += [{"time": when.isoformat(), **row} for row in self._budgets()]

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        requests = batch.requests()
        decisions = list(self._decide_many(requests))
        self._event_ids = [d.event_id for d in decisions]
        self._trace(batch.when)
        return np.array([batch.index_of(pos, d.action) for pos, d in enumerate(decisions)], dtype=int)

    def learn(self, feedback: Feedback) -> None:
        for k in range(len(feedback)):
            kind = OUTCOME_TYPES[feedback.kind[k]]
            self._report(Outcome(event_id=self._event_ids[feedback.position[k]], outcome_id=f"{kind.value}-{k}",
                                 type=kind, value=float(feedback.value[k]), time=feedback.time(k)))
        if len(feedback):
            self._trace(feedback.time(len(feedback) - 1))
