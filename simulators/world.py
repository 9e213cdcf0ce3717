"""The simulated customers: hidden traits, evolving state, what the CRM observes, and how they
respond to a contact. Everything is NumPy over customers (or over contacts).

Time is in hours since the scenario's start.

Response funnel of one contact (customer i, offer o, channel c, send time t, local hour h):

    delivered  ~ B(delivered_c)
    opened     ~ B(open_c * affinity_ic * hour(h, pref_i) * exp(-open_penalty * F_i) * engaged)
    clicked    ~ B(click_c)
    converted  ~ B(conversion * segment_effect * offer_effect_i(o))     revenue ~ basket_i
    redeemed   =  converted and cost_o > 0 -- or, if it did not convert, an organic purchase
                  within the attribution window uses the incentive (cannibalisation)
    unsubscribed ~ B(unsubscribe_c * (1 + growth * F_i)),   complained likewise
    an unopened contact disengages the customer from c with B(disengage * (1 + growth * F_i))

F_i is the customer's fatigue: +1 per delivered contact (SMS more), halving every half-life.
Organic purchases happen whatever the policy does (Poisson at the segment's yearly rate).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

import numpy as np

from engine.domain import DecisionRequest
from simulators.scenario import MOTIVATIONS, SEGMENTS, Scenario

# The CRM keeps a customer's usual open hour in buckets of this many hours.
OBSERVED_SLOT_HOURS = 2
HOURS_PER_DAY = 24.0
DORMANT = SEGMENTS.index("dormant")
# How ``generate`` draws the CRM's hints of the hidden traits (``simulators.information_bound`` inverts them).
ORGANIC_SHAPE = 4.0             # individual organic rate = the segment's x Gamma(shape, 1 / shape)
PROMO_ALPHA = (6.0, 1.0, 3.0)   # promo share ~ Beta(alpha, PROMO_CONCENTRATION - alpha) by motivation
PROMO_CONCENTRATION = 10.0
RECENT_OPENS_WEEKS = 13         # recent opens ~ Poisson(min(history weeks, this) x email open rate x affinity x share)
RECENT_OPENS_SHARE = 0.8
LAST_PURCHASE_CAP_DAYS = 730
OCCASIONAL = SEGMENTS.index("occasional")


@dataclass
class World:
    """Hidden traits (never shown to a policy but the oracle) and state of every customer."""

    # hidden traits
    segment: np.ndarray          # int, index into SEGMENTS (changes on reactivation)
    motivation: np.ndarray       # int, index into MOTIVATIONS
    tz: np.ndarray               # int, index into tz_names
    consent: np.ndarray          # bool (n, channels): opted in at the start
    affinity: np.ndarray         # float (n, channels), mean 1
    pref_hour: np.ndarray        # preferred local hour, [0, 24)
    basket: np.ndarray           # EUR
    sensitivity: np.ndarray      # scales the offer effects, mean 1
    organic_per_day: np.ndarray  # organic purchase rate
    birthday_month: np.ndarray   # 1..12
    # observable CRM data
    observed_slot: np.ndarray    # int, OBSERVED_SLOT_HOURS bucket of the usual open hour as the CRM sees it
    promo_share: np.ndarray      # share of past purchases made with a discount
    purchases_12m: np.ndarray    # float
    last_purchase: np.ndarray    # hours (negative = before the start)
    recent_opens: np.ndarray     # exponentially decayed count of opens (90-day scale)
    # state
    unsubscribed: np.ndarray     # bool (n, channels)
    disengaged: np.ndarray       # bool (n, channels)
    fatigue: np.ndarray          # value at fatigue_time
    fatigue_time: np.ndarray
    tz_names: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.segment)

    def copy(self) -> World:
        return World(**{f.name: (getattr(self, f.name).copy() if isinstance(getattr(self, f.name), np.ndarray)
                                 else getattr(self, f.name)) for f in fields(self)})

    def usual_open_hour(self, idx: np.ndarray | int) -> np.ndarray | int:
        """The local hour the CRM's usual open slot starts at (what requests carry)."""
        return OBSERVED_SLOT_HOURS * self.observed_slot[idx]

    def reachable(self) -> np.ndarray:
        """(n, channels) bool: opted in and not unsubscribed."""
        return self.consent & ~self.unsubscribed

    def fatigue_at(self, idx: np.ndarray, t: np.ndarray | float, half_life_hours: float) -> np.ndarray:
        return self.fatigue[idx] * np.exp2(-(t - self.fatigue_time[idx]) / half_life_hours)


def generate(scenario: Scenario, n: int, rng: np.random.Generator) -> World:
    """Draw a population from the scenario."""
    pop = scenario.population
    channels = tuple(scenario.catalog.channels)

    def draw(shares: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
        p = np.array([shares.get(k, 0.0) for k in names])
        return rng.choice(len(names), size=n, p=p / p.sum())

    segment = draw(pop.segments, SEGMENTS)
    motivation = draw(pop.motivations, MOTIVATIONS)
    tz_names = tuple(pop.timezones)
    tz = draw(pop.timezones, tz_names)
    consent = np.stack([rng.random(n) < pop.consent.get(c, 0.0) for c in channels], axis=1)
    s = pop.affinity_sigma
    affinity = np.exp(s * rng.standard_normal((n, len(channels))) - s * s / 2)
    peak = rng.choice(len(pop.hour_peaks), size=n, p=np.array(pop.hour_peak_weights))
    pref_hour = (np.array(pop.hour_peaks)[peak] + pop.hour_spread * rng.standard_normal(n)) % 24
    observed_hour = (pref_hour + pop.observed_hour_noise * rng.standard_normal(n)) % 24
    basket = rng.uniform(pop.basket_min, pop.basket_max, n)
    ss = pop.sensitivity_sigma
    sensitivity = np.exp(ss * rng.standard_normal(n) - ss * ss / 2)
    per_year = np.array([pop.purchases_per_year[sg] for sg in SEGMENTS])[segment]
    organic = per_year / 365.0 * rng.gamma(ORGANIC_SHAPE, 1 / ORGANIC_SHAPE, n)  # rates around the segment's
    # Observables: what a CRM would hold about each customer.
    alpha = np.array(PROMO_ALPHA)[motivation]   # promo ~0.6, novelty ~0.1, indifferent ~0.3
    promo_share = rng.beta(alpha, PROMO_CONCENTRATION - alpha)
    history_days = 7 * pop.history_weeks
    purchases_12m = rng.poisson(organic * min(history_days, 365)).astype(float)
    last_purchase = -np.minimum(rng.exponential(1.0 / np.maximum(organic, 1e-4)),
                                LAST_PURCHASE_CAP_DAYS) * HOURS_PER_DAY
    email = channels.index("email") if "email" in channels else 0
    typical_open = scenario.response.channels[channels[email]].open * affinity[:, email] * RECENT_OPENS_SHARE
    recent_opens = rng.poisson(min(pop.history_weeks, RECENT_OPENS_WEEKS) * typical_open
                               * consent[:, email]).astype(float)
    return World(
        segment=segment, motivation=motivation, tz=tz, consent=consent, affinity=affinity,
        pref_hour=pref_hour, basket=basket, sensitivity=sensitivity, organic_per_day=organic,
        birthday_month=rng.integers(1, 13, n), observed_slot=(observed_hour // OBSERVED_SLOT_HOURS).astype(int),
        promo_share=promo_share, purchases_12m=purchases_12m, last_purchase=last_purchase,
        recent_opens=recent_opens, unsubscribed=np.zeros_like(consent), disengaged=np.zeros_like(consent),
        fatigue=np.zeros(n), fatigue_time=np.zeros(n), tz_names=tz_names, channels=channels,
    )


def observable_request(world: World, i: int, when: dt.datetime, t_hours: float) -> DecisionRequest:
    """What a channel system would send for customer i: CRM data, opt-ins, time zone."""
    reachable = world.consent[i] & ~world.unsubscribed[i]
    categorical = {"segment": SEGMENTS[world.segment[i]],
                   "usual_open_slot": f"s{world.usual_open_hour(i):02d}"}
    if world.birthday_month[i] == when.month:
        categorical["birthday_month"] = "yes"
    return DecisionRequest(
        customer_id=f"c{i}",
        numeric_features={
            "basket_avg": round(float(world.basket[i]), 1),
            "promo_share": round(float(world.promo_share[i]), 2),
            "purchases_12m": float(world.purchases_12m[i]),
            "log_days_since_purchase": round(float(np.log1p(max(t_hours - world.last_purchase[i], 0) / 24)), 2),
            "recent_opens": round(float(world.recent_opens[i]), 1),
        },
        categorical_features=categorical,
        consented_channels=tuple(c for c, ok in zip(world.channels, reachable) if ok),
        timezone=world.tz_names[world.tz[i]],
        decision_time=when,
    )


class ResponseModel:
    """Probabilities, expected values and sampling of the funnel above (vectorised)."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        catalog = scenario.catalog
        r = scenario.response
        self.channels = tuple(catalog.channels)
        self.offers = tuple(catalog.offers)
        self.delivered = np.array([r.channels[c].delivered for c in self.channels])
        self.open = np.array([r.channels[c].open for c in self.channels])
        self.click = np.array([r.channels[c].click for c in self.channels])
        self.unsubscribe = np.array([r.channels[c].unsubscribe for c in self.channels])
        self.complaint = np.array([r.channels[c].complaint for c in self.channels])
        self.contact_cost = np.array([catalog.channels[c].contact_cost for c in self.channels])
        self.offer_cost = np.array([catalog.offers[o].cost for o in self.offers])
        # offer_effect[motivation, offer]
        self.offer_effect = np.array([[r.offer_effect[m][o] for o in self.offers] for m in MOTIVATIONS])
        self.segment_effect = np.array([r.segment_effect[s] for s in SEGMENTS])
        self.fatigue_weight = np.array([r.fatigue.sms_weight if c == "sms" else 1.0 for c in self.channels])
        self.half_life_hours = r.fatigue.half_life_days * HOURS_PER_DAY
        self.window_hours = catalog.attribution_window.total_seconds() / 3600
        self.reward = catalog.reward

    # -- probabilities ------------------------------------------------------------------------

    def hour_factor(self, pref_hour: np.ndarray, local_hour: np.ndarray) -> np.ndarray:
        d = hour_distance(pref_hour, local_hour)
        s = self.scenario.response.send_time_effect
        return 1.0 - s + s * np.exp(-d * d / 8.0)  # closeness: Gaussian, 2 h standard deviation

    def probabilities(self, world: World, cust: np.ndarray, offer: np.ndarray, channel: np.ndarray,
                      local_hour: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Funnel probabilities of contacts (arrays broadcast together)."""
        fat = self.scenario.response.fatigue
        fatigue = world.fatigue_at(cust, t, self.half_life_hours)
        engaged = np.where(world.disengaged[cust, channel], fat.disengaged_open, 1.0)
        p_open = np.minimum(1.0, self.open[channel] * world.affinity[cust, channel]
                            * self.hour_factor(world.pref_hour[cust], local_hour)
                            * np.exp(-fat.open_penalty * fatigue) * engaged)
        effect = np.maximum(0.0, 1.0 + (self.offer_effect[world.motivation[cust], offer] - 1.0)
                            * world.sensitivity[cust])
        p_convert = np.minimum(1.0, self.scenario.response.conversion
                               * self.segment_effect[world.segment[cust]] * effect)
        growth = 1.0 + fat.unsubscribe_growth * fatigue
        return {
            "delivered": self.delivered[channel] * np.ones_like(p_open),
            "open": p_open,
            "click": self.click[channel] * np.ones_like(p_open),
            "convert": p_convert,
            "unsubscribe": np.minimum(1.0, self.unsubscribe[channel] * growth),
            "complaint": np.minimum(1.0, self.complaint[channel] * growth),
            "disengage": np.minimum(1.0, fat.disengage * growth),
        }

    def expected_value(self, world: World, cust: np.ndarray, offer: np.ndarray, channel: np.ndarray,
                       local_hour: np.ndarray, t: np.ndarray, organic_until: float | np.ndarray,
                       p: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Exact expected incremental net value of contacts sent at ``t`` (hours), by the
        catalog's reward definition: margin on the purchases the contact causes - incentives
        redeemed (including by the first organic purchase after the open, up to
        ``organic_until``: ``DecisionBatch.organic_until``) - contact cost - expected
        unsubscribe/complaint penalties. ``p``: their ``probabilities``, if already computed."""
        if p is None:
            p = self.probabilities(world, cust, offer, channel, local_hour, t)
        reached = p["delivered"] * p["open"]
        buy = p["click"] * p["convert"]
        margin = self.reward.margin_rate * world.basket[cust]
        cost = self.offer_cost[offer]
        organic_after_open = _organic_after_open(np.maximum(organic_until - t, 0.0),
                                                 world.organic_per_day[cust] / HOURS_PER_DAY,
                                                 self.scenario.response.open_delay_hours)
        return (reached * buy * (margin - cost)
                - reached * (1.0 - buy) * organic_after_open * cost
                - self.contact_cost[channel]
                - p["delivered"] * (p["unsubscribe"] * self.reward.unsubscribe_penalty
                                    + p["complaint"] * self.reward.complaint_penalty))

    # -- the logged reward's expectation (ground truth for off-policy evaluation) -------------

    def expected_reward(self, world: World, cust: np.ndarray, offer: np.ndarray, channel: np.ndarray,
                        local_hour: np.ndarray, send_t: np.ndarray, t: float, organic_hours: float,
                        end: float) -> np.ndarray:
        """Exact expectation of the reward a policy's *log* records for each action: the
        catalog's reward of the outcomes reported inside the attribution window, organic
        purchases included (what ``training.logs.joined_decisions`` computes from the logs).

        ``offer``/``channel`` -1 is no contact. ``t`` is the decision time, ``end`` the time up to
        which outcomes are reported (the window's end, or the horizon if sooner), and
        ``organic_hours`` how long after ``t`` organic purchases are attributed. Differs from
        ``expected_value`` (incremental, eventual) by the organic baseline and by outcomes that
        come after the window closes.
        """
        reward = self.reward
        if (reward.purchase_attribution != "window" or reward.incentive_paid_on != "redemption"
                or reward.default_reward != 0.0):
            raise NotImplementedError(
                "expected_reward covers the reward definition purchase_attribution = 'window', "
                "incentive_paid_on = 'redemption', default_reward = 0; the catalog has "
                f"{reward.purchase_attribution!r}, {reward.incentive_paid_on!r}, {reward.default_reward}")
        cust, offer, channel, local_hour, send_t = np.broadcast_arrays(cust, offer, channel, local_hour, send_t)
        rho = world.organic_per_day[cust] / HOURS_PER_DAY          # organic purchases per hour
        margin = reward.margin_rate * world.basket[cust]
        value = margin * rho * organic_hours                       # organic purchases, any action
        contact = channel >= 0
        if not contact.any():
            return value
        c = np.flatnonzero(contact.ravel())
        cu, of, ch, lh, st = (a.ravel()[c] for a in (cust, offer, channel, local_hour, send_t))
        p = self.probabilities(world, cu, of, ch, lh, st)
        m_open = self.scenario.response.open_delay_hours
        m_buy = self.scenario.response.purchase_delay_days * HOURS_PER_DAY
        left = np.maximum(end - st, 0.0)                           # reporting time left after the send
        opened = p["delivered"] * p["open"]
        in_open = _hypoexp_cdf(left, (m_open,))
        in_click = _hypoexp_cdf(left, (m_open, 1 / 6))
        in_buy = _hypoexp_cdf(left, (m_open, 1 / 6, m_buy))
        buy = p["click"] * p["convert"]
        cost = self.offer_cost[of]
        # An opened incentive not used by the contact's own purchase is used by the first organic
        # purchase after the open, if one comes before organic attribution ends.
        first_organic = _organic_after_open(np.maximum(t + organic_hours - st, 0.0), rho.ravel()[c], m_open)
        left_unsub = opened * in_open + (p["delivered"] - opened) * (1 - np.exp(-left / 24.0))
        v = (-self.contact_cost[ch]
             + reward.delivered_value * p["delivered"]
             + reward.opened_value * opened * in_open
             + reward.clicked_value * opened * p["click"] * in_click
             + opened * buy * in_buy * (margin.ravel()[c] - cost)
             - opened * (1 - buy) * first_organic * cost
             - left_unsub * (p["unsubscribe"] * reward.unsubscribe_penalty
                             + p["complaint"] * reward.complaint_penalty))
        out = value.astype(float).ravel().copy()
        out[c] += v
        return out.reshape(value.shape)


def hour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hours between two local times around the clock, in [0, 12]."""
    d = np.abs(a - b) % 24
    return np.minimum(d, 24 - d)


def _hypoexp_cdf(x: np.ndarray, means: tuple[float, ...]) -> np.ndarray:
    """P(X_1 + ... + X_k <= x) for independent exponentials of the given (distinct) means."""
    rates = [1.0 / m for m in means]
    total = np.zeros_like(x, dtype=float)
    for i, li in enumerate(rates):
        coef = 1.0
        for j, lj in enumerate(rates):
            if j != i:
                coef *= lj / (lj - li)
        total += coef * np.exp(-li * x)
    return 1.0 - total


def _organic_after_open(span: np.ndarray, rho: np.ndarray, m_open: float) -> np.ndarray:
    """P(an organic purchase, Poisson at ``rho`` per hour, falls between the open, Exp(m_open)
    after the send, and ``span`` hours after the send): E[1 - exp(-rho (span - X)+)]."""
    opened_in = 1.0 - np.exp(-span / m_open)
    a = rho * m_open - 1.0
    near = np.abs(a) < 1e-9
    safe = np.where(near, 1.0, a)
    tail = np.where(near, span / m_open * np.exp(-span / m_open),
                    (np.exp(-span / m_open) - np.exp(-rho * span)) / safe)
    return opened_in - tail
