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

CENTS = 100


def to_cents(amount: float) -> int:
    return int(round(amount * CENTS))


@dataclass(frozen=True)
class Cap:
    id: str
    channels: tuple[str, ...]  # empty: every channel
    max_contacts: int
    window: dt.timedelta

    def counts(self, channel: str) -> bool:
        return not self.channels or channel in self.channels

    def describe(self) -> str:
        which = "+".join(self.channels) if self.channels else "all channels"
        return f"at most {self.max_contacts} contacts ({which}) per {_span(self.window)}"


@dataclass(frozen=True)
class Pressure:
    caps: tuple[Cap, ...] = ()
    min_gap: dt.timedelta = dt.timedelta(0)
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
    amount: float
    period: dt.timedelta
    start: dt.datetime
    offers: tuple[str, ...]
    pacing: bool = True
    pacing_step: float = 0.5
    pacing_lead: dt.timedelta = dt.timedelta(hours=24)
    pacing_slack: float = 0.05
    pacing_max_price: float = 2.0

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
    fraction: float = 0.0
    salt: str = "nba-control"
    # None: no contact; otherwise (offer_id, channel, send_slot) sent when feasible.
    action: tuple[str, str, str] | None = None

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
