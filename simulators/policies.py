"""Policies the simulator can run. Anything with ``name``, ``decide(batch)`` and
``learn(feedback)`` works (see ``simulators.runner.Policy``).

Baselines reported beside the engine: no contact, random, the marketer's static rules, the same
without incentives (newsletter), and the oracle, which knows every customer's hidden traits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import numpy as np

from engine.catalog import Catalog
from engine.client import NBAClient
from engine.constraints import Constraints, to_cents
from engine.domain import Decision, DecisionRequest, Outcome, OutcomeType
from engine.pipeline import DecisionEngine
from engine.state import PendingDecision
from simulators.runner import OUTCOME_TYPES, TYPE_CODE, DecisionBatch, FeasibleGroup, Feedback
from simulators.world import hour_distance
from training.target_policies import PROMO_SHARE_THRESHOLD, rules_actions, rules_contacts



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


class Newsletter:
    """The rules without incentives: a weekly ``offer`` (the catalog's no-discount newsletter by
    default) at 10:00 local by email to everyone with email consent, by SMS to those without."""

    name = "newsletter"

    def __init__(self, offers: Iterable[str], offer: str = "new_collection"):
        if offer not in offers:
            raise ValueError(f"the newsletter policy sends offer {offer!r}, which the scenario's catalog "
                             f"lacks (offers: {', '.join(sorted(offers))})")
        self.offer = offer

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        chosen = np.zeros(len(batch.customers), dtype=int)
        for g in batch.groups:
            found = rules_contacts(g.index, (self.offer,))
            chosen[g.members] = len(g.actions) - 1 if found is None else found[0]  # no_contact is last
        return chosen

    def learn(self, feedback: Feedback) -> None:
        pass


def contact_values(batch: DecisionBatch, group: FeasibleGroup, contact: np.ndarray) -> np.ndarray:
    """(members, contacts): the exact expected net value of the group's ``contact`` actions for
    each of its members, from hidden traits (what the oracles decide on)."""
    return batch.response.expected_value(
        batch.world, batch.customers[group.members][:, None], group.offer[contact][None, :],
        group.channel[contact][None, :], group.local_hour[contact][None, :], group.send_t[contact][None, :],
        batch.organic_until)


def action_values(batch: DecisionBatch, group: FeasibleGroup) -> np.ndarray:
    """(members, actions): the exact expected net value of every action of the group for each of
    its members; no contact is worth 0."""
    contact = group.offer >= 0
    values = np.zeros((len(group.members), len(group.actions)))
    if contact.any():
        values[:, contact] = contact_values(batch, group, contact)
    return values


class Oracle:
    """The best feasible action by exact expected net value, from hidden traits (myopic: one
    decision at a time, under the same constraints as everyone).

    ``constraints`` (the catalog's) hold it to the incentive budgets with the engine's accounting: issuing an incentive commits its full cost against the period of the
    decision; a redemption pays it; the attribution window closing unredeemed releases it; paid +
    committed never exceeds the amount. When the best actions of a campaign would commit more
    than is left, the incentives go to the customers they add most value to per euro committed
    (over each one's best action without a budgeted incentive), the others get that action.
    Without them (``oracle_unbudgeted``) only caps, opt-ins and eligibility hold it."""

    def __init__(self, constraints: Constraints | None = None, name: str = "oracle"):
        self.name = name
        self.constraints = constraints
        self.budgets = constraints.budgets if constraints is not None else ()
        # Open commitments: (release time in hours, budget id, period, cents, (batch, position)).
        self._open: list[tuple[float, str, int, int, tuple[int, int]]] = []
        self._batches = 0
        self._paid: dict[tuple[str, int], int] = {}
        self.committed_peak: dict[tuple[str, int], int] = {}  # most ever paid + committed, cents

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        n = len(batch.customers)
        chosen = np.zeros(n, dtype=int)
        free = np.zeros(n, dtype=int)           # best action without a budgeted incentive
        gain = np.zeros(n)                      # what the budgeted incentive adds over it
        budget_of = np.full(n, -1)              # which budget the best action draws from
        cents = np.zeros(n, dtype=np.int64)
        if self.budgets:
            offer_budget, offer_cents = self._offer_terms(batch)
        for g in batch.groups:
            contact = g.offer >= 0
            values = self.values(batch, g)
            best = np.argmax(values, axis=1)
            chosen[g.members] = best
            if not self.budgets:
                continue
            action_budget = np.where(contact, offer_budget[np.maximum(g.offer, 0)], -1)
            action_cents = np.where(contact, offer_cents[np.maximum(g.offer, 0)], 0)
            budgeted = (action_budget >= 0) & (action_cents > 0)
            without = np.where(budgeted[None, :], -np.inf, values)
            free[g.members] = np.argmax(without, axis=1)
            rows = np.arange(len(g.members))
            gain[g.members] = values[rows, best] - without[rows, free[g.members]]
            budget_of[g.members] = np.where(budgeted[best], action_budget[best], -1)
            cents[g.members] = np.where(budgeted[best], action_cents[best], 0)
        if self.budgets:
            self._batches += 1
            self._release(batch.t)
            for b, budget in enumerate(self.budgets):
                wants = np.flatnonzero(budget_of == b)
                period = budget.period_index(batch.when)
                left = budget.amount_cents - self._spend(budget.id, period)
                order = wants[np.argsort(-gain[wants] / cents[wants], kind="stable")]
                for pos in order:
                    if cents[pos] <= left:
                        left -= int(cents[pos])
                        self._open.append((batch.t + batch.response.window_hours, budget.id, period, int(cents[pos]),
                                           (self._batches, int(pos))))
                    else:
                        chosen[pos] = free[pos]
                key = (budget.id, period)
                self.committed_peak[key] = max(self.committed_peak.get(key, 0), budget.amount_cents - left)
        return chosen

    def values(self, batch: DecisionBatch, group: FeasibleGroup) -> np.ndarray:
        """(members, actions): what the oracle decides on -- the exact expected values."""
        return action_values(batch, group)

    def _offer_terms(self, batch: DecisionBatch) -> tuple[np.ndarray, np.ndarray]:
        """Per offer (the response model's order): the index of the budget it draws from
        (``Constraints.budget_of``, -1 for none) and its cost in cents."""
        budgets = [self.constraints.budget_of(o) for o in batch.response.offers]
        index = np.array([-1 if b is None else self.budgets.index(b) for b in budgets])
        return index, np.array([to_cents(c) for c in batch.response.offer_cost], dtype=np.int64)

    def _spend(self, budget_id: str, period: int) -> int:
        committed = sum(c for _, b, p, c, _ in self._open if b == budget_id and p == period)
        return self._paid.get((budget_id, period), 0) + committed

    def _release(self, t: float) -> None:
        self._open = [c for c in self._open if c[0] > t]

    def learn(self, feedback: Feedback) -> None:
        if not self.budgets or not len(feedback):
            return
        # Feedback is about the latest batch's decisions.
        redeemed = {(self._batches, int(pos)) for pos in
                    feedback.position[feedback.kind == OUTCOME_TYPES.index(OutcomeType.REDEEMED)]}
        still_open = []
        for c in self._open:
            if c[4] in redeemed:
                self._paid[(c[1], c[2])] = self._paid.get((c[1], c[2]), 0) + c[3]
            else:
                still_open.append(c)
        self._open = still_open


# The observable oracle's own contact history: contacts in this many hours back.
RECENT_HOURS = 28 * 24


class ObservableOracle:
    """An estimate, from below, of the best a policy deciding from what a CRM sees could do.

    At each opportunity the oracle's exact expected net value of every feasible action of every
    customer is regressed on observable data only -- the request's features (segment, usual open
    slot, birthday month, basket, promo share, purchases, days since the last purchase, recent
    opens), opt-ins, time zone, this policy's own contact history -- and the action (offer,
    channel, local hour, distance to the usual open slot). The fit is *cross-fitted* over two
    halves of the customers, so a customer's prediction never comes from its own hidden traits,
    and the targets are noise-free: the prediction approximates E[value | observables, action]
    (the better, the more customers it is fitted on).
    The action of highest predicted value is taken (no contact = 0), myopically, as the oracle.

    It is a diagnostic, not a baseline a marketer could run: it answers "how much of the oracle's
    value can observable data explain?". What it does not see -- channel affinity, the exact
    preferred hour, motivation, incentive sensitivity, organic purchase rate, fatigue -- no
    learner on these features can act on either, except through what each customer's own
    responses reveal over time. ``diagnostics`` keeps, per opportunity, the fit's R² and the
    true value of the chosen actions against the best actions' (both in this policy's world).

    With ``responses`` (``observable_oracle_responses``) it also sees what each customer did
    after this policy's own decisions, as a channel system reports it to the engine: per channel
    the contacts sent, opened and clicked, and the purchases reported in the decisions'
    attribution windows. What those reveal of the hidden traits it can then act on.
    """

    name = "observable_oracle"

    def __init__(self, seed: int = 0, max_rows: int = 400_000, max_iter: int = 400, max_leaf_nodes: int = 127,
                 responses: bool = False):
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.responses = responses
        if responses:
            self.name = "observable_oracle_responses"
        self._record: np.ndarray | None = None  # (customers, channels, [sent, opened, clicked])
        self._purchases: np.ndarray | None = None
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # customers, channel per position
        self.max_rows, self.max_iter, self.max_leaf_nodes = max_rows, max_iter, max_leaf_nodes
        self.diagnostics: list[dict[str, float]] = []
        self._last_contact: np.ndarray | None = None
        self._contacted: list[tuple[float, np.ndarray]] = []  # (time, customers contacted)

    def _customer_features(self, batch: DecisionBatch) -> np.ndarray:
        w, c, t = batch.world, batch.customers, batch.t
        if self._last_contact is None:
            self._last_contact = np.full(w.n, -np.inf)
        recent = np.zeros(w.n)
        for when, who in self._contacted:
            if t - when < RECENT_HOURS:
                recent[who] += 1
        columns = [w.segment[c], w.observed_slot[c], (w.birthday_month[c] == batch.when.month), w.basket[c],
                   w.promo_share[c], w.purchases_12m[c], np.log1p(np.maximum(t - w.last_purchase[c], 0) / 24),
                   w.recent_opens[c], w.reachable()[c], w.tz[c],
                   np.minimum(t - self._last_contact[c], 60 * 24), recent[c]]
        if self.responses:
            if self._record is None:
                self._record = np.zeros((w.n, len(w.channels), 3))
                self._purchases = np.zeros(w.n)
            columns = [self._record[c].reshape(len(c), -1), self._purchases[c]] + columns
        return np.column_stack(columns).astype(float)

    def _rows(self, batch: DecisionBatch, features: np.ndarray):
        X, y, pos, act = [], [], [], []
        for g in batch.groups:
            contact = np.flatnonzero(g.offer >= 0)
            if len(contact) == 0:
                continue
            m, k = len(g.members), len(contact)
            value = contact_values(batch, g, contact)
            usual = batch.world.usual_open_hour(batch.customers[g.members])
            distance = hour_distance(g.local_hour[contact][None, :], usual[:, None])
            X.append(np.hstack([np.repeat(features[g.members], k, axis=0),
                                np.column_stack([np.tile(g.offer[contact], m), np.tile(g.channel[contact], m),
                                                 np.tile(g.local_hour[contact], m), distance.ravel()])]))
            y.append(value.ravel())
            pos.append(np.repeat(g.members, k))
            act.append(np.tile(contact, m))
        return tuple(map(np.concatenate, (X, y, pos, act))) if X else None

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        from sklearn.ensemble import HistGradientBoostingRegressor

        features = self._customer_features(batch)
        chosen = NoContact().decide(batch)
        self._last = (batch.customers, np.full(len(chosen), -1))  # channel per position (-1: none)
        rows = self._rows(batch, features)
        if rows is None:
            return chosen
        X, y, pos, act = rows
        n_customer = features.shape[1]
        first = self._record.shape[1] * 3 + 1 if self.responses else 0  # the responses come first
        fold = batch.customers[pos] % 2
        predicted = np.empty(len(y))
        for f in (0, 1):
            train = np.flatnonzero(fold != f)
            if len(train) > self.max_rows:
                train = self.rng.choice(train, self.max_rows, replace=False)
            model = HistGradientBoostingRegressor(
                max_iter=self.max_iter, max_leaf_nodes=self.max_leaf_nodes, random_state=self.seed,
                categorical_features=[first, n_customer - 3, n_customer, n_customer + 1])
            model.fit(X[train], y[train])
            predicted[fold == f] = model.predict(X[fold == f])
        # Per customer: the contact of highest predicted value, if above no contact's 0.
        order = np.lexsort((predicted, pos))
        last = np.r_[pos[order][1:] != pos[order][:-1], True]
        best = order[last]
        take = predicted[best] > 0
        chosen[pos[best][take]] = act[best][take]
        # The true value of the choices against the best choices, in this policy's world.
        top = np.zeros(len(chosen))
        np.maximum.at(top, pos, y)
        got = np.zeros(len(chosen))
        got[pos[best][take]] = y[best][take]
        self.diagnostics.append({"t": batch.t, "rows": float(len(y)),
                                 "r2": float(1 - ((predicted - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()),
                                 "value_chosen": float(got.sum()), "value_best": float(top.sum())})
        contacted = batch.customers[pos[best][take]]
        if self.responses:
            channel = self._last[1]
            channel[pos[best][take]] = [batch.groups[batch.group_of[p]].channel[a]
                                        for p, a in zip(pos[best][take], act[best][take])]
            np.add.at(self._record, (contacted, channel[pos[best][take]], 0), 1)
        self._last_contact[contacted] = batch.t
        self._contacted = [(w, c) for w, c in self._contacted if batch.t - w < RECENT_HOURS] + [(batch.t, contacted)]
        return chosen

    def learn(self, feedback: Feedback) -> None:
        if not self.responses or self._last is None or not len(feedback):
            return
        customers, channel = self._last
        who, ch = customers[feedback.position], channel[feedback.position]
        for kind, column in ((OutcomeType.OPENED, 1), (OutcomeType.CLICKED, 2)):
            rows = (feedback.kind == TYPE_CODE[kind]) & (ch >= 0)
            np.add.at(self._record, (who[rows], ch[rows], column), 1)
        np.add.at(self._purchases, who[feedback.kind == TYPE_CODE[OutcomeType.CONVERTED]], 1)


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
        self.decide_many = decide_many
        self.report = report
        self.budgets = budgets
        self._event_ids: list[str] = []
        self.decisions: list[Decision] = []  # the last batch's, in order
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
        if self.budgets is not None:
            self.budget_trace += [{"time": when.isoformat(), **row} for row in self.budgets()]

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        self.decisions = list(self.decide_many(batch.requests()))
        self._event_ids = [d.event_id for d in self.decisions]
        self._trace(batch.when)
        return np.array([batch.index_of(pos, d.action) for pos, d in enumerate(self.decisions)], dtype=int)

    def learn(self, feedback: Feedback) -> None:
        for k in range(len(feedback)):
            kind = OUTCOME_TYPES[feedback.kind[k]]
            self.report(Outcome(event_id=self._event_ids[feedback.position[k]], outcome_id=f"{kind.value}-{k}",
                                 type=kind, value=float(feedback.value[k]), time=feedback.time(k)))
        if len(feedback):
            self._trace(feedback.time(len(feedback) - 1))


class ExactRewards:
    """The reward function of the diagnostic engine (``DecisionEngine(reward=...)``): each matured
    decision is learned with the exact expected incremental net value of its choice, which
    ``ExactRewardPolicy`` records when it decides, instead of the reward of the outcomes
    reported. Everything else -- features, model, exploration, caps and budgets, which decisions
    it learns from and when -- is the engine's."""

    def __init__(self):
        self.values: dict[str, float] = {}  # event id -> expected value, until it is learned

    def __call__(self, pending: PendingDecision) -> float:
        try:
            return self.values.pop(pending.event_id)
        except KeyError:
            raise ValueError(f"engine_exact: no expected value for decision {pending.event_id} "
                             "(decided other than through ExactRewardPolicy.decide)") from None


class ExactRewardPolicy(EnginePolicy):
    """``engine_exact``: the engine taught with noise-free rewards. Set against ``engine``, it
    says how much of the engine's shortfall is the noise of the rewards it learns from, and how
    much is what its model makes of its data. ``ExactRewardPolicy.create`` makes the engine too."""

    def __init__(self, engine: DecisionEngine, exact: ExactRewards, name: str = "engine_exact"):
        inner = EnginePolicy.in_process(engine, name)
        super().__init__(inner.decide_many, inner.report, name, inner.budgets)
        self.engine, self.exact = engine, exact

    @classmethod
    def create(cls, catalog: Catalog, seed: int, name: str = "engine_exact") -> ExactRewardPolicy:
        exact = ExactRewards()
        return cls(DecisionEngine(catalog, seed=seed, honour_request_time=True, reward=exact), exact, name)

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        chosen = super().decide(batch)
        offer, channel, send_t, local_hour = batch.chosen_actions(chosen)
        c = np.flatnonzero(channel >= 0)
        values = np.zeros(len(chosen))
        if c.size:
            values[c] = batch.response.expected_value(batch.world, batch.customers[c], offer[c], channel[c],
                                                      local_hour[c], send_t[c], batch.organic_until)
        self.exact.values.update(zip(self._event_ids, values.tolist()))
        return chosen
