"""The closed loop: opportunities -> policy decides -> customers respond -> policy learns.

Each policy runs against its own copy of the same population (same seed), so they are compared
on identical customers. At every opportunity each reachable customer gets one decision among
the feasible actions -- computed by ``engine.feasibility``, the engine's own constraint code,
once per group of customers who share what it depends on. Outcomes reach the policy in time
order and only inside the attribution window (what a channel system could report); the
simulator's own accounting uses the ground truth.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engine.domain import Action, DecisionRequest, OutcomeType
from engine.feasibility import feasible_actions
from engine.validation import zone
from simulators.scenario import SEGMENTS, Scenario
from simulators.world import HOURS_PER_DAY, OCCASIONAL, DORMANT, ResponseModel, World, generate, observable_request

OUTCOME_TYPES = tuple(OutcomeType)
TYPE_CODE = {t: i for i, t in enumerate(OUTCOME_TYPES)}
N_SLOTS = 12


@dataclass
class FeasibleGroup:
    """Customers of a batch who share one feasible action set."""

    members: np.ndarray          # positions in the batch
    actions: tuple[Action, ...]
    offer: np.ndarray            # offer index per action (-1: no contact)
    channel: np.ndarray          # channel index per action (-1: no contact)
    send_t: np.ndarray           # send time in hours since start (nan: no contact)
    local_hour: np.ndarray       # local send hour (nan: no contact)
    index: dict[str, int]        # Action.label -> action index


@dataclass
class DecisionBatch:
    """One opportunity: the customers to decide for, their feasible actions, and the world."""

    when: dt.datetime
    t: float
    customers: np.ndarray        # population indices
    groups: list[FeasibleGroup]
    group_of: np.ndarray         # group number per batch position
    world: World
    response: ResponseModel
    organic_until: float         # an opened, unused incentive may be used by organic purchases until then
    built: list[DecisionRequest] | None = None  # requests already built while grouping

    def requests(self) -> list[DecisionRequest]:
        """What a channel system would send for each customer (observable data only)."""
        if self.built is None:
            self.built = [observable_request(self.world, int(i), self.when, self.t) for i in self.customers]
        return self.built

    def index_of(self, position: int, action: Action) -> int:
        """The index, in its group, of an action chosen for the customer at ``position``."""
        group = self.groups[self.group_of[position]]
        if action.label not in group.index:
            raise ValueError(f"action {action.label} is not feasible for customer c{self.customers[position]}")
        return group.index[action.label]

    def chosen_actions(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per batch position, the chosen action's offer and channel (-1: no contact), send time
        (hours since start) and local send hour (NaN: no contact)."""
        n = len(self.customers)
        offer, channel = np.full(n, -1), np.full(n, -1)
        send_t, local_hour = np.full(n, np.nan), np.full(n, np.nan)
        for g in self.groups:
            k = chosen[g.members]
            offer[g.members], channel[g.members] = g.offer[k], g.channel[k]
            send_t[g.members], local_hour[g.members] = g.send_t[k], g.local_hour[k]
        return offer, channel, send_t, local_hour


@dataclass
class Feedback:
    """Outcomes a channel system can report, in time order: one row per outcome."""

    position: np.ndarray   # batch position of the decision
    kind: np.ndarray       # index into OUTCOME_TYPES
    value: np.ndarray
    t: np.ndarray          # hours since start
    start: dt.datetime

    def __len__(self) -> int:
        return len(self.t)

    def time(self, k: int) -> dt.datetime:
        return self.start + dt.timedelta(hours=float(self.t[k]))


class Policy(Protocol):
    """Anything that decides for a batch and learns from feedback can be simulated."""

    name: str

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        """The chosen action's index within each customer's group, one per batch position."""

    def learn(self, feedback: Feedback) -> None:
        """Outcomes of the last batch's decisions (called before the next batch)."""


@dataclass
class PolicyRun:
    """Ground-truth results of one policy."""

    name: str
    totals: dict[str, float] = field(default_factory=dict)
    daily_value: np.ndarray = field(default_factory=lambda: np.zeros(0))
    slot_contacts: np.ndarray = field(default_factory=lambda: np.zeros(N_SLOTS))
    slot_opens: np.ndarray = field(default_factory=lambda: np.zeros(N_SLOTS))
    # Per channel: [delivered, opened within the horizon].
    channel_opens: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


METRICS = ("decisions", "contacts", "delivered", "opens", "clicks", "conversions", "revenue",
           "incentive_spend", "redemptions", "contact_cost", "unsubscribes", "complaints",
           "organic_revenue", "email_optins_start", "email_optins_lost",
           "expected_value")


class Ledger:
    """One run's ground-truth accounting: the totals, every euro of net value with its time
    (the daily values), and the outcomes a channel system can report of the current batch."""

    def __init__(self, run: PolicyRun, horizon: float):
        self.run, self.totals, self.horizon = run, dict.fromkeys(METRICS, 0.0), horizon
        self.value_t: list[np.ndarray] = []
        self.value_v: list[np.ndarray] = []
        self._rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._window_end = 0.0

    def account(self, when: np.ndarray, value) -> None:
        """Net value at ``when`` (hours), counted if within the horizon."""
        keep = when < self.horizon
        self.value_t.append(when[keep])
        self.value_v.append(np.broadcast_to(np.asarray(value, dtype=float), when.shape)[keep])

    def open_batch(self, window_end: float) -> None:
        """Outcomes emitted from now on are the new batch's; those after ``window_end`` are not
        reported (the attribution window has closed)."""
        self._rows, self._window_end = [], window_end

    def emit(self, pos: np.ndarray, kind: OutcomeType, value, when: np.ndarray) -> None:
        """Outcomes of the decisions at batch positions ``pos`` that a channel system reports."""
        keep = (when < self._window_end) & (when < self.horizon)
        self._rows.append((pos[keep], np.full(keep.sum(), TYPE_CODE[kind]),
                           np.broadcast_to(value, pos.shape)[keep], when[keep]))

    def feedback(self, start: dt.datetime) -> Feedback:
        """The batch's reported outcomes, in time order."""
        pos = np.concatenate([r[0] for r in self._rows]).astype(int)
        t_rows = np.concatenate([r[3] for r in self._rows])
        order = np.argsort(t_rows, kind="stable")
        return Feedback(pos[order], np.concatenate([r[1] for r in self._rows])[order],
                        np.concatenate([r[2] for r in self._rows])[order], t_rows[order], start)

    def daily_value(self, days: int) -> np.ndarray:
        day = (np.concatenate(self.value_t) // HOURS_PER_DAY).astype(int) if self.value_t else np.zeros(0, int)
        weights = np.concatenate(self.value_v) if self.value_v else np.zeros(0)
        return np.bincount(day, weights=weights, minlength=days)[:days]


@dataclass
class Contacts:
    """The contacts of one batch and how each went (ground truth; times in hours since start)."""

    c: np.ndarray            # batch positions contacted
    cust: np.ndarray         # their population indices
    offer: np.ndarray
    channel: np.ndarray
    send_t: np.ndarray
    local_hour: np.ndarray
    delivered: np.ndarray
    opened: np.ndarray
    clicked: np.ndarray
    bought: np.ndarray
    unsub: np.ndarray
    complaint: np.ndarray
    disengage: np.ndarray
    t_open: np.ndarray
    t_click: np.ndarray
    t_buy: np.ndarray
    t_unsub: np.ndarray
    revenue: np.ndarray
    cost: np.ndarray          # the offer's cost (0: no incentive)

    @property
    def redeemed(self) -> np.ndarray:
        return self.bought & (self.cost > 0)


def policy_seed(seed: int) -> int:
    """The seed a policy's own randomness (e.g. the engine's exploration) gets in a run of
    ``seed``: a stream independent of the population's (``default_rng(seed)``) and the
    responses' (``default_rng([seed, 1])``). Seeding the engine with ``seed`` itself would make
    its i-th exploration draw equal the draw that made customer i's traits: exploring to "no
    contact" (the last action, drawn by the largest uniforms) would then pick out dormant,
    rarely-buying customers."""
    return int(np.random.SeedSequence([seed, 2]).generate_state(1)[0])


def reengage_probability(scenario: Scenario, hours: float) -> float:
    """The chance that a disengaged customer comes back on a channel within ``hours``."""
    return 1 - (1 - scenario.response.fatigue.reengage_per_week) ** (hours / (7 * HOURS_PER_DAY))


class Simulation:
    """Runs policies on a scenario. ``customers``/``days`` override the scenario's."""

    def __init__(self, scenario: Scenario, customers: int | None = None, days: int | None = None,
                 seed: int = 1):
        self.scenario = scenario
        self.customers = customers or scenario.customers
        self.days = days or scenario.days
        self.seed = seed
        self.response = ResponseModel(scenario)
        self.population = generate(scenario, self.customers, np.random.default_rng(seed))
        catalog = scenario.catalog
        self.offer_index = {o: k for k, o in enumerate(catalog.offers)}
        self.channel_index = {c: k for k, c in enumerate(catalog.channels)}
        self.outbound = np.array([not catalog.channels[c].inbound_only for c in catalog.channels])
        self.eligibility_features = sorted({name for o in catalog.offers.values()
                                            for rules in (o.eligibility.categorical, o.eligibility.numeric_min,
                                                          o.eligibility.numeric_max) for name in rules})

    @property
    def horizon(self) -> float:
        return self.days * HOURS_PER_DAY

    def opportunities(self) -> list[float]:
        step = self.scenario.every_days * HOURS_PER_DAY
        return list(np.arange(0.0, self.horizon, step))

    # -- batches ------------------------------------------------------------------------------

    def batch(self, world: World, t: float) -> DecisionBatch:
        when = self.scenario.start + dt.timedelta(hours=t)
        reachable = world.reachable() & self.outbound
        customers = np.flatnonzero(reachable.any(axis=1))
        keys: dict[tuple, list[int]] = {}
        requests: dict[tuple, DecisionRequest] = {}
        # Eligibility rules read request features, so every request is built (and kept for the
        # policies); without rules one request per group is enough.
        built = [] if self.eligibility_features else None
        for pos, i in enumerate(customers):
            request = None
            extra: tuple = ()
            if built is not None:
                request = observable_request(world, int(i), when, t)
                built.append(request)
                feats = {**request.numeric_features, **request.categorical_features}
                extra = tuple(feats.get(name) for name in self.eligibility_features)
            key = (reachable[i].tobytes(), int(world.tz[i]), extra)
            if key not in keys:
                keys[key] = []
                requests[key] = request or observable_request(world, int(i), when, t)
            keys[key].append(pos)
        groups, group_of = [], np.zeros(len(customers), dtype=int)
        for g, (key, members) in enumerate(keys.items()):
            groups.append(self._group(np.array(members), requests[key], world.tz_names[key[1]], when))
            group_of[members] = g
        # Organic purchases are drawn up to the next opportunity; the window may close before.
        step_end = min(t + self.scenario.every_days * HOURS_PER_DAY, self.horizon)
        organic_until = min(t + self.response.window_hours, step_end)
        return DecisionBatch(when, t, customers, groups, group_of, world, self.response, organic_until, built)

    def _group(self, members: np.ndarray, request: DecisionRequest, tz: str, when: dt.datetime) -> FeasibleGroup:
        actions = feasible_actions(request, self.scenario.catalog, when).actions
        local = zone(tz)
        offer = np.array([-1 if a.no_contact else self.offer_index[a.offer_id] for a in actions])
        channel = np.array([-1 if a.no_contact else self.channel_index[a.channel] for a in actions])
        send_t = np.array([np.nan if a.no_contact else (a.send_at - self.scenario.start).total_seconds() / 3600
                           for a in actions])
        local_hour = np.array([np.nan if a.no_contact else
                               (lambda x: x.hour + x.minute / 60)(a.send_at.astimezone(local)) for a in actions])
        return FeasibleGroup(members, actions, offer, channel, send_t, local_hour,
                             {a.label: k for k, a in enumerate(actions)})

    # -- the loop -----------------------------------------------------------------------------

    def run(self, policy: Policy, progress: Callable[[int], None] | None = None,
            observer: Callable[[DecisionBatch, np.ndarray], None] | None = None) -> PolicyRun:
        """``observer(batch, chosen)`` sees every batch and the policy's choices before the
        customers respond (e.g. ``simulators.regret.RegretBreakdown``)."""
        import time

        started = time.perf_counter()
        world = self.population.copy()
        rng = np.random.default_rng([self.seed, 1])
        run = PolicyRun(policy.name, channel_opens={name: np.zeros(2) for name in self.channel_index})
        ledger = Ledger(run, self.horizon)
        email = self.channel_index.get("email")
        if email is not None:
            ledger.totals["email_optins_start"] = float(world.consent[:, email].sum())
        step = self.scenario.every_days * HOURS_PER_DAY
        for t in self.opportunities():
            self._between_opportunities(world, rng, step)
            batch = self.batch(world, t)
            chosen = self._decide(policy, batch)
            if observer is not None:
                observer(batch, chosen)
            policy.learn(self._respond(world, batch, chosen, rng, t, min(t + step, self.horizon), ledger))
            if progress:
                progress(len(batch.customers))
        if email is not None:
            lost = world.consent[:, email] & (world.unsubscribed[:, email] | world.disengaged[:, email])
            ledger.totals["email_optins_lost"] = float(lost.sum())
        run.daily_value = ledger.daily_value(self.days)
        run.totals = ledger.totals
        run.seconds = time.perf_counter() - started
        return run

    @staticmethod
    def _decide(policy: Policy, batch: DecisionBatch) -> np.ndarray:
        """The policy's choices, checked: one per customer, each in its group's range."""
        chosen = np.asarray(policy.decide(batch), dtype=int)
        if len(chosen) != len(batch.customers):
            raise ValueError(f"policy {policy.name!r} returned {len(chosen)} decisions "
                             f"for {len(batch.customers)} customers")
        for g in batch.groups:
            k = chosen[g.members]
            if k.size and (k.min() < 0 or k.max() >= len(g.actions)):
                raise ValueError(f"policy {policy.name!r}: action index out of range for a group "
                                 f"of {len(g.actions)} actions")
        return chosen

    def _between_opportunities(self, world: World, rng: np.random.Generator, step: float) -> None:
        world.disengaged &= rng.random(world.disengaged.shape) >= reengage_probability(self.scenario, step)

    def _respond(self, world: World, batch: DecisionBatch, chosen: np.ndarray, rng: np.random.Generator,
                 t: float, t_end: float, ledger: Ledger) -> Feedback:
        """How the batch's customers respond from ``t`` to the next opportunity ``t_end``: the
        contacts' funnel, everyone's organic purchases, the state they leave the world in."""
        ledger.open_batch(t + self.response.window_hours)
        ledger.totals["decisions"] += len(batch.customers)
        contacts = self._funnel(world, batch, chosen, rng, ledger)
        self._record_contacts(contacts, ledger)
        who, when = self._organic(world, batch, contacts, rng, t, t_end, ledger)
        self._update_world(world, contacts, who, when, t, t_end)
        return ledger.feedback(self.scenario.start)

    def _funnel(self, world: World, batch: DecisionBatch, chosen: np.ndarray, rng: np.random.Generator,
                ledger: Ledger) -> Contacts:
        """Draw what happens to each contact: delivered -> opened -> clicked -> bought, or an
        unsubscribe, a complaint, disengagement; and when."""
        resp = self.response
        offer, channel, send_t, local_hour = batch.chosen_actions(chosen)
        c = np.flatnonzero(channel >= 0)
        cust, off, ch, st, lh = batch.customers[c], offer[c], channel[c], send_t[c], local_hour[c]
        p = resp.probabilities(world, cust, off, ch, lh, st)
        # The exact expected net value of what was decided, in the state it was decided in: the
        # same quantity as the realised net value, without the outcomes' sampling noise.
        ledger.totals["expected_value"] += resp.expected_value(world, cust, off, ch, lh, st, batch.organic_until,
                                                               p).sum()
        u = rng.random((7, len(c)))
        delivered = u[0] < p["delivered"]
        opened = delivered & (u[1] < p["open"])
        clicked = opened & (u[2] < p["click"])
        bought = clicked & (u[3] < p["convert"])
        t_open = st + rng.exponential(self.scenario.response.open_delay_hours, len(c))
        t_click = t_open + rng.exponential(1 / 6, len(c))
        t_buy = t_click + rng.exponential(self.scenario.response.purchase_delay_days * HOURS_PER_DAY, len(c))
        t_unsub = np.where(opened, t_open, st + rng.exponential(24.0, len(c)))
        revenue = world.basket[cust] * np.exp(0.2 * rng.standard_normal(len(c)) - 0.02)
        return Contacts(c, cust, off, ch, st, lh, delivered, opened, clicked, bought,
                        unsub=delivered & (u[4] < p["unsubscribe"]), complaint=delivered & (u[5] < p["complaint"]),
                        disengage=delivered & ~opened & (u[6] < p["disengage"]), t_open=t_open, t_click=t_click,
                        t_buy=t_buy, t_unsub=t_unsub, revenue=revenue,
                        cost=np.where(off >= 0, resp.offer_cost[np.maximum(off, 0)], 0.0))

    def _record_contacts(self, k: Contacts, ledger: Ledger) -> None:
        """The contacts' ground truth into the totals and the daily values; what a channel
        system reports of them into the feedback."""
        totals, run, resp, reward = ledger.totals, ledger.run, self.response, self.scenario.catalog.reward
        in_h = lambda x: x < self.horizon  # noqa: E731 - ground truth counts what happens in the horizon
        totals["contacts"] += len(k.c)
        totals["delivered"] += k.delivered.sum()
        opened_in_h = k.opened & in_h(k.t_open)
        totals["opens"] += opened_in_h.sum()
        totals["clicks"] += (k.clicked & in_h(k.t_click)).sum()
        totals["conversions"] += (k.bought & in_h(k.t_buy)).sum()
        totals["revenue"] += k.revenue[k.bought & in_h(k.t_buy)].sum()
        totals["unsubscribes"] += (k.unsub & in_h(k.t_unsub)).sum()
        totals["complaints"] += (k.complaint & in_h(k.t_unsub)).sum()
        totals["contact_cost"] += resp.contact_cost[k.channel].sum()
        for name, index in self.channel_index.items():
            on = k.channel == index
            run.channel_opens[name] += ((on & k.delivered).sum(), (on & opened_in_h).sum())
        slot = (np.nan_to_num(k.local_hour) // 2).astype(int) % N_SLOTS
        run.slot_contacts += np.bincount(slot[k.delivered], minlength=N_SLOTS)
        run.slot_opens += np.bincount(slot[k.opened], minlength=N_SLOTS)

        redeemed = k.redeemed
        ledger.account(k.send_t, -resp.contact_cost[k.channel])
        ledger.account(k.t_buy[k.bought], reward.margin_rate * k.revenue[k.bought])
        ledger.account(k.t_buy[redeemed], -k.cost[redeemed])
        ledger.account(k.t_unsub[k.unsub], -reward.unsubscribe_penalty)
        ledger.account(k.t_unsub[k.complaint], -reward.complaint_penalty)
        ledger.emit(k.c[k.delivered], OutcomeType.DELIVERED, 0.0, k.send_t[k.delivered])
        ledger.emit(k.c[k.opened], OutcomeType.OPENED, 0.0, k.t_open[k.opened])
        ledger.emit(k.c[k.clicked], OutcomeType.CLICKED, 0.0, k.t_click[k.clicked])
        ledger.emit(k.c[k.bought], OutcomeType.CONVERTED, k.revenue[k.bought], k.t_buy[k.bought])
        ledger.emit(k.c[redeemed], OutcomeType.REDEEMED, 0.0, k.t_buy[redeemed])
        ledger.emit(k.c[k.unsub], OutcomeType.UNSUBSCRIBED, 0.0, k.t_unsub[k.unsub])
        ledger.emit(k.c[k.complaint], OutcomeType.COMPLAINED, 0.0, k.t_unsub[k.complaint])

    def _organic(self, world: World, batch: DecisionBatch, k: Contacts, rng: np.random.Generator, t: float,
                 t_end: float, ledger: Ledger) -> tuple[np.ndarray, np.ndarray]:
        """Organic purchases over the period, by every customer; those of decided customers are
        what the CRM attributes to the decision. An opened, unused incentive gets used by the
        first one after the open (cannibalisation). Returns who bought and when."""
        totals, window_end = ledger.totals, t + self.response.window_hours
        in_h = lambda x: x < self.horizon  # noqa: E731
        rate = world.organic_per_day * (t_end - t) / HOURS_PER_DAY
        counts = rng.poisson(rate)
        who = np.repeat(np.arange(world.n), counts)
        when = t + rng.random(len(who)) * (t_end - t)
        amount = world.basket[who] * np.exp(0.2 * rng.standard_normal(len(who)) - 0.02)
        totals["organic_revenue"] += amount.sum()
        pos_of = np.full(world.n, -1)
        pos_of[batch.customers] = np.arange(len(batch.customers))
        decided = pos_of[who] >= 0
        ledger.emit(pos_of[who[decided]], OutcomeType.CONVERTED, amount[decided], when[decided])
        open_at = np.full(world.n, np.inf)
        redeemed = k.redeemed
        unredeemed = k.opened & ~redeemed & (k.cost > 0)
        open_at[k.cust[unredeemed]] = k.t_open[unredeemed]
        cost_of = np.zeros(world.n)
        cost_of[k.cust[unredeemed]] = k.cost[unredeemed]
        uses = (when > open_at[who]) & (when < window_end)
        order = np.argsort(when[uses], kind="stable")
        first_who, first = np.unique(who[uses][order], return_index=True)
        use_t = when[uses][order][first]
        use_cost = cost_of[first_who]
        ledger.account(use_t, -use_cost)
        ledger.emit(pos_of[first_who], OutcomeType.REDEEMED, 0.0, use_t)
        totals["incentive_spend"] += k.cost[redeemed & in_h(k.t_buy)].sum() + use_cost[in_h(use_t)].sum()
        totals["redemptions"] += (redeemed & in_h(k.t_buy)).sum() + in_h(use_t).sum()
        return who, when

    def _update_world(self, world: World, k: Contacts, who: np.ndarray, when: np.ndarray, t: float,
                      t_end: float) -> None:
        """The state the period leaves: fatigue, opt-ins, engagement, observables, reactivation."""
        resp, fat = self.response, self.scenario.response.fatigue
        dc = k.cust[k.delivered]
        world.fatigue[dc] = world.fatigue_at(dc, k.send_t[k.delivered], resp.half_life_hours) + \
            resp.fatigue_weight[k.channel[k.delivered]]
        world.fatigue_time[dc] = k.send_t[k.delivered]
        world.unsubscribed[k.cust[k.unsub], k.channel[k.unsub]] = True
        world.unsubscribed[k.cust[k.complaint], k.channel[k.complaint]] = True
        world.disengaged[k.cust[k.disengage], k.channel[k.disengage]] = True
        world.recent_opens *= np.exp2(-(t_end - t) / (45 * HOURS_PER_DAY))
        np.add.at(world.recent_opens, k.cust[k.opened], 1.0)
        buyers = np.concatenate([k.cust[k.bought], who])
        buy_t = np.concatenate([k.t_buy[k.bought], when])
        np.maximum.at(world.last_purchase, buyers, buy_t)
        np.add.at(world.purchases_12m, buyers, 1.0)
        if fat.reactivate_on_purchase:
            back = k.cust[k.bought][world.segment[k.cust[k.bought]] == DORMANT]
            world.segment[back] = OCCASIONAL
            occasional = self.scenario.population.purchases_per_year[SEGMENTS[OCCASIONAL]] / 365
            world.organic_per_day[back] = np.maximum(world.organic_per_day[back], occasional)
