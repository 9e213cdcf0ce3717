"""Marketing pressure, incentive budgets with pacing, and the control group.

These are the catalog's rules that depend on state (what was already sent, what was already
spent). The pure checks live here; the state stores (``engine.state``, ``engine.redis_store``)
apply the same rules atomically when a decision reserves its contact and its incentive.

Pressure
    A cap allows at most ``max`` contacts on some channels (or all) in any rolling window of
    ``window``. A new contact at send time ``s`` is allowed when fewer than ``max`` contacts of
    the cap's channels are scheduled in the open interval ``(s - window, s + window)``: that
    guarantees no window of that length, wherever it lies, ever holds more than ``max``. Two
    contacts are never closer than ``min_gap``.

Budgets
    A budget has an ``amount`` per ``period`` (periods follow each other from ``start``). Issuing
    an incentive commits its full cost; a redemption settles it (paid); the attribution window
    closing without redemption releases it. ``spend = paid + committed`` never exceeds the
    amount. Money is counted in integer cents so that the check is exact.

Pacing (primal-dual)
    Each budget has a shadow price ``lambda`` (EUR of value per EUR of incentive). An action's
    score is ``value - lambda * cost``. After each decision, ``lambda`` takes a projected
    sub-gradient step on the budget constraint's dual (Balseiro, Lu & Mirrokni, "Dual Mirror
    Descent for Online Allocation Problems", ICML 2020)::

        lambda <- min(max_price, max(0, lambda + step * (spend - plan(t)) / amount))

    with ``plan(t) = amount * min(1, (t - period_start + lead) / period)``: spending ahead of the
    plan raises ``lambda`` (costly incentives lose value), behind it lowers ``lambda`` back to 0
    (a budget that does not bind changes nothing). ``max_price`` (default 2: an incentive then
    looks three times its cost) keeps lambda where it can come back within a few decisions once
    spend falls behind the plan again. ``lead`` lets a campaign decided in one batch
    use the plan of its whole sending interval. Exploration ignores values, so the shadow price
    alone cannot hold it back: an incentive that would take spend above
    ``plan(t) + slack * amount`` is excluded (reason BUDGET, "paced").

Control group
    A stable fraction of customers -- ``sha256(salt + customer_id)`` read as a number in [0, 1)
    -- gets the control treatment (no contact, or one fixed action), flagged in the decision and
    the log, so uplift can be measured against it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.settings import setting

CENTS = 100


def to_cents(amount: float) -> int:
    return int(round(amount * CENTS))


@dataclass(frozen=True)
class Cap:
    id: str = setting(doc="the cap's name, quoted in PRESSURE exclusions")
    channels: tuple[str, ...] = setting(doc="the outbound channels it counts (in a Cap made in code, empty: "
                                            "every channel)", default_doc="every outbound channel")
    max_contacts: int = setting(doc="most contacts in any window of its length", key="max", low=0, high=10_000)
    window: dt.timedelta = setting(doc="the rolling window", key="window_days", unit="days", low=1 / 24, high=366)

    def counts(self, channel: str) -> bool:
        return not self.channels or channel in self.channels

    def describe(self) -> str:
        which = "+".join(self.channels) if self.channels else "all channels"
        return f"at most {self.max_contacts} contacts ({which}) per {_span(self.window)}"


@dataclass(frozen=True)
class Pressure:
    caps: tuple[Cap, ...] = setting((), "the caps", form="list of tables, below")
    min_gap: dt.timedelta = setting(dt.timedelta(0), "least time between two contacts of a customer",
                                    key="min_gap_hours", unit="hours", low=0, high=24 * 366)
    # Contacts are kept at least this long for the history features (catalog model.history_days).
    keep: dt.timedelta = dt.timedelta(days=7)

    @property
    def horizon(self) -> dt.timedelta:
        """How far back (and ahead) contacts matter to any check or to the history features."""
        return max([c.window for c in self.caps] + [self.min_gap, dt.timedelta(days=7), self.keep])

    def violation(self, contacts: Sequence[tuple[dt.datetime, str]], channel: str,
                  send_at: dt.datetime) -> str | None:
        """Why a contact on ``channel`` at ``send_at`` would break a rule, or None."""
        if self.min_gap:
            for t, _ in contacts:
                if abs(t - send_at) < self.min_gap:
                    return f"min_gap: another contact at {t:%Y-%m-%d %H:%M} UTC, less than {_span(self.min_gap)} away"
        for cap in self.caps:
            if not cap.counts(channel):
                continue
            n = sum(1 for t, ch in contacts if cap.counts(ch) and abs(t - send_at) < cap.window)
            if n >= cap.max_contacts:
                return f"cap {cap.id}: {cap.describe()}"
        return None


@dataclass(frozen=True)
class Budget:
    id: str
    amount: float = setting(doc="EUR per period: paid + committed never exceeds it", low=0, high=1e12)
    period: dt.timedelta = setting(doc="length of a period; periods follow each other from `start`",
                                   key="period_days", unit="days", low=1 / 24, high=3660)
    start: dt.datetime = setting(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "when the first period starts")
    offers: tuple[str, ...] = setting((), "the offers it pays for (an offer is in one budget at most)",
                                      default_doc="every offer with a cost")
    pacing: bool = setting(True, "pace spend with a shadow price; false: only the amount holds")
    pacing_step: float = setting(0.5, "step of the shadow price per decision, per unit of (spend - plan) / "
                                      "amount", low=0, high=1000)
    pacing_lead: dt.timedelta = setting(dt.timedelta(hours=24), "the plan runs this far ahead of the clock (a "
                                        "campaign decided at once may use its sending interval's share)",
                                        key="pacing_lead_hours", unit="hours", low=0, high=24 * 3660)
    pacing_slack: float = setting(0.05, "no decision, explored or not, takes spend above plan + slack x amount",
                                  low=0, high=1)
    pacing_max_price: float = setting(2.0, "the shadow price's cap (2: an incentive looks three times its cost)",
                                      low=0, high=1000)

    @property
    def amount_cents(self) -> int:
        return to_cents(self.amount)

    def period_index(self, now: dt.datetime) -> int:
        return int((now - self.start) // self.period)

    def key(self, now: dt.datetime) -> BudgetKey:
        """The period ``now`` falls in: the key its spend is counted under."""
        return BudgetKey(self.id, self.period_index(now), self.amount_cents)

    def period_start(self, index: int) -> dt.datetime:
        return self.start + index * self.period

    def plan(self, now: dt.datetime) -> float:
        """Spend the pacing plan allows by ``now`` in the current period (EUR)."""
        start = self.period_start(self.period_index(now))
        share = (now - start + self.pacing_lead) / self.period
        return self.amount * min(1.0, max(0.0, share))

    def paced_limit_cents(self, now: dt.datetime) -> int:
        """Most spend the plan lets any decision reach by ``now``: plan + slack x amount (the
        amount when pacing is off). Exploration cannot run ahead of it either."""
        if not self.pacing:
            return self.amount_cents
        return min(self.amount_cents, to_cents(self.plan(now) + self.pacing_slack * self.amount))


@dataclass(frozen=True)
class ControlGroup:
    fraction: float = setting(0.0, "share of customers in the control group (0: none)", low=0, high=1)
    salt: str = setting("nba-control", "mixed into the hash of the customer id that picks them")
    # None: no contact; otherwise (offer_id, channel, send_slot) sent when feasible.
    action: tuple[str, str, str] | None = setting(
        None, "the control treatment, sent when feasible", default_doc="no contact",
        form="table `{offer = ID, channel = ID, send_slot = \"HH-HH\"}`")

    def contains(self, customer_id: str) -> bool:
        if self.fraction <= 0:
            return False
        digest = hashlib.sha256((self.salt + customer_id).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.fraction


@dataclass(frozen=True)
class Constraints:
    pressure: Pressure = field(default_factory=Pressure)
    budgets: tuple[Budget, ...] = ()
    control: ControlGroup = field(default_factory=ControlGroup)

    def budget_of(self, offer_id: str) -> Budget | None:
        for budget in self.budgets:
            if offer_id in budget.offers:
                return budget
        return None


@dataclass(frozen=True)
class BudgetKey:
    """One budget's current period: the unit its spend is counted in."""

    budget_id: str
    period: int
    amount_cents: int

    @property
    def name(self) -> str:
        return f"{self.budget_id}:{self.period}"


@dataclass(frozen=True)
class BudgetUsage:
    key: BudgetKey
    paid_cents: int = 0
    committed_cents: int = 0

    @property
    def spend_cents(self) -> int:
        return self.paid_cents + self.committed_cents

    @property
    def remaining_cents(self) -> int:
        return self.key.amount_cents - self.spend_cents

    def shortfall(self, cents: int) -> str | None:
        """Why an incentive of ``cents`` cannot be committed, or None when it can."""
        if cents <= self.remaining_cents:
            return None
        return (f"budget {self.key.budget_id}: {self.remaining_cents / 100:.2f} EUR left, "
                f"the offer costs {cents / 100:.2f}")


@dataclass(frozen=True)
class Commitment:
    """The incentive a decision has committed against a budget period."""

    key: BudgetKey
    cents: int


class Pacer:
    """The shadow prices of one process, one per budget (thread-safety: caller's lock)."""

    def __init__(self, budgets: tuple[Budget, ...]):
        self.budgets = {b.id: b for b in budgets}
        self.lam = {b.id: 0.0 for b in budgets}

    def update(self, usage: BudgetUsage, now: dt.datetime) -> float:
        budget = self.budgets[usage.key.budget_id]
        if not budget.pacing or budget.amount <= 0:
            return 0.0
        gap = (usage.spend_cents / CENTS - budget.plan(now)) / budget.amount
        lam = min(budget.pacing_max_price, max(0.0, self.lam[budget.id] + budget.pacing_step * gap))
        self.lam[budget.id] = lam
        return lam


def _span(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours >= 24 and hours % 24 == 0:
        days = int(hours // 24)
        return f"{days} day" + ("s" if days != 1 else "")
    return f"{hours:g} h"
