"""The oracle with some hidden traits known only as well as the CRM data tell them.

``oracle_blind_TRAITS`` (``--policies oracle_blind_hour``, ``oracle_blind_affinity+organic``,
``oracle_blind_all``) is the oracle -- every other hidden trait and state known exactly, the same
constraints and budgets -- except that it does not know the customer's own value of the
*blinded* traits. It values each action at its expectation over their distribution given what
the customer's CRM record (as it was at the first campaign) and the outcomes reported for its
own decisions say of them, as the scenario generates them, and takes the best. The simulation
itself uses the true traits.

Its share of the oracle's value answers "how much of the oracle's value is knowing that trait
exactly worth, beyond what the CRM record and the customers' responses say?":

- ``hour``: the preferred contact hour, given the CRM's usual open slot (two-hour buckets of a
  noisy usual open hour).
- ``affinity``: each channel's affinity, given the recent email opens the CRM counts.
- ``organic``: the organic purchase rate, given the segment, the purchases of the last 12 months
  and the days since the last purchase.
- ``motivation``: promo addict / early adopter / indifferent, given the share of purchases made
  with a discount, and the incentive sensitivity (the CRM says nothing of it).
- ``engagement``: whether the customer has stopped opening a channel (disengaged): everyone
  starts engaged; an unopened contact disengages with its probability, a disengaged customer
  opens a tenth as often and comes back at the weekly rate, as in the simulation.

Fatigue needs no blinding: it is the sum of the policy's own delivered contacts, decayed, which
the deliveries reported to any policy tell exactly. Segment, basket, opt-ins, time zone and
birthday are in the CRM record.

The traits are drawn independently of one another in ``simulators.world.generate``, so the
expectation over several is over their joint distribution. It is estimated from ``draws`` draws
per customer: exact draws from the conditional distribution (organic rate, motivation,
sensitivity) or draws weighted by importance (hour, affinity). From then on it learns from what
is reported of its own decisions, as a learner could, by the simulator's exact law: a particle
filter per customer weighs the draws by the likelihood of each contact's open (or not), of a
clicked contact's purchase (or not) and of every decided customer's purchases in the reporting
window, keeps each particle's P(disengaged) per channel exactly (Bayes' rule on the opens, the
unopened contacts' lapses, the weeks' returns), and resamples a customer's particles when fewer
than half carry the weight. So ``oracle_blind_all`` is the myopic Bayes-optimal policy with the
simulator's law known: up to the filter's approximations (opens and purchases reported after
the attribution window are taken as never made; ``draws`` particles), the best a policy deciding
campaign by campaign could do with what the engine is told.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import betaln, gammaln

from engine.settings import ConfigError
from engine.constraints import Constraints
from engine.domain import OutcomeType
from simulators.policies import Oracle, action_values
from simulators.runner import TYPE_CODE, DecisionBatch, FeasibleGroup, Feedback, reengage_probability
from simulators.scenario import MOTIVATIONS, SEGMENTS, Scenario
from simulators.world import (HOURS_PER_DAY, LAST_PURCHASE_CAP_DAYS, OBSERVED_SLOT_HOURS, ORGANIC_SHAPE,
                              PROMO_ALPHA, PROMO_CONCENTRATION, RECENT_OPENS_SHARE, RECENT_OPENS_WEEKS, World)

TRAITS = ("hour", "affinity", "organic", "motivation", "engagement")
PREFIX = "oracle_blind_"


def parse_blind(name: str) -> tuple[str, ...]:
    """``oracle_blind_hour+organic`` -> ("hour", "organic"); ``all`` -> every trait."""
    spec = name[len(PREFIX):]
    traits = TRAITS if spec == "all" else tuple(t for t in spec.split("+") if t)
    unknown = [t for t in traits if t not in TRAITS]
    if not traits or unknown:
        raise ConfigError(f"--policies: {name!r}: blind which traits? {', '.join(unknown) or 'none given'} "
                          f"-- known: {', '.join(TRAITS)}, or 'all' (e.g. {PREFIX}hour+affinity)")
    return tuple(dict.fromkeys(traits))


def conditional_draws(world: World, scenario: Scenario, traits: tuple[str, ...], draws: int,
                      rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draws of the ``traits``' fields given the CRM record, shape (draws, customers) each, and
    the draws' normalised weights (draws, customers)."""
    pop, n = scenario.population, world.n
    out: dict[str, np.ndarray] = {}
    log_w = np.zeros((draws, n))
    if "hour" in traits:
        # Proposal: a usual open hour uniform in the CRM's slot, less the CRM's noise; its density
        # is proportional to the slot's likelihood, so the weight is the prior's density.
        seen = OBSERVED_SLOT_HOURS * (world.observed_slot + rng.random((draws, n)))
        hour = (seen - pop.observed_hour_noise * rng.standard_normal((draws, n))) % 24
        prior = np.zeros((draws, n))
        for peak, weight in zip(pop.hour_peaks, pop.hour_peak_weights):
            for turn in (-24.0, 0.0, 24.0):
                z = (hour - peak - turn) / max(pop.hour_spread, 1e-6)
                prior += weight * np.exp(-0.5 * z * z)
        log_w += np.log(np.maximum(prior, 1e-300))
        out["pref_hour"] = hour
    if "affinity" in traits:
        s = pop.affinity_sigma
        affinity = np.exp(s * rng.standard_normal((draws, n, len(world.channels))) - s * s / 2)
        email = world.channels.index("email") if "email" in world.channels else 0
        rate = scenario.response.channels[world.channels[email]].open * RECENT_OPENS_SHARE
        mean = (min(pop.history_weeks, RECENT_OPENS_WEEKS) * rate * affinity[:, :, email]
                * world.consent[:, email])
        opens = world.recent_opens
        log_w += np.where(mean > 0, opens * np.log(np.maximum(mean, 1e-300)) - mean - gammaln(opens + 1),
                          np.where(opens > 0, -np.inf, 0.0))
        out["affinity"] = affinity
    if "organic" in traits:
        # Rate ~ Gamma(shape, rate = shape / base); purchases ~ Poisson(rate x days); the gap since
        # the last purchase ~ Exponential(rate), capped: a Gamma again.
        base = np.array([pop.purchases_per_year[s] for s in SEGMENTS])[world.segment] / 365.0
        days = min(7 * pop.history_weeks, 365)
        gap = -world.last_purchase / HOURS_PER_DAY
        capped = gap >= LAST_PURCHASE_CAP_DAYS - 1e-9
        shape = ORGANIC_SHAPE + world.purchases_12m + np.where(capped, 0.0, 1.0)
        rate = ORGANIC_SHAPE / np.maximum(base, 1e-12) + days + gap
        out["organic_per_day"] = np.where(base > 0, rng.gamma(shape, 1.0 / rate, (draws, n)), 0.0)
    if "motivation" in traits:
        alpha = np.array(PROMO_ALPHA)[:, None]
        share = np.array([pop.motivations.get(m, 0.0) for m in MOTIVATIONS])[:, None]
        x = np.clip(world.promo_share, 1e-12, 1 - 1e-12)[None, :]
        log_p = (np.log(np.maximum(share, 1e-300)) + (alpha - 1) * np.log(x)
                 + (PROMO_CONCENTRATION - alpha - 1) * np.log1p(-x) - betaln(alpha, PROMO_CONCENTRATION - alpha))
        p = np.exp(log_p - log_p.max(axis=0))
        cdf = np.cumsum(p / p.sum(axis=0), axis=0)
        u = rng.random((draws, n))
        out["motivation"] = (u[:, None, :] > cdf[None, :-1, :]).sum(axis=1)
        ss = pop.sensitivity_sigma
        out["sensitivity"] = np.exp(ss * rng.standard_normal((draws, n)) - ss * ss / 2)
    w = np.exp(log_w - log_w.max(axis=0))
    return out, w / w.sum(axis=0)


def resample(log_w: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Systematic resampling of the customers (columns) whose effective number of draws has
    fallen below half: (the draws each column keeps, in order, as indices; the columns)."""
    w = np.exp(log_w - log_w.max(axis=0))
    w /= w.sum(axis=0)
    k, n = w.shape
    cols = np.flatnonzero(1.0 / (w * w).sum(axis=0) < k / 2)
    if not len(cols):
        return np.zeros((k, 0), dtype=int), cols
    cdf = np.cumsum(w[:, cols], axis=0)
    cdf[-1] = 1.0
    offset = np.arange(len(cols))[None, :]
    u = (np.arange(k)[:, None] + rng.random(len(cols))[None, :]) / k
    idx = np.searchsorted((cdf + offset).T.ravel(), (u + offset).T.ravel(), side="right").reshape(len(cols), k).T
    return np.minimum(idx - offset * k, k - 1), cols


class InformationBound(Oracle):
    """The oracle, valuing actions by their expectation over the blinded ``traits`` given what
    it has seen: a particle filter per customer, ``draws`` particles each."""

    def __init__(self, traits: tuple[str, ...], constraints: Constraints | None = None, draws: int = 128,
                 seed: int = 0, name: str | None = None):
        super().__init__(constraints, name=name or PREFIX + "+".join(traits))
        self.traits, self.draws = traits, draws
        self.rng = np.random.default_rng(seed)
        self.particles: dict[str, np.ndarray] | None = None  # World field -> (draws, customers, ...)
        # engagement, given each particle's traits: P(disengaged), (draws, customers, channels)
        self.p_disengaged: np.ndarray | None = None
        self.log_w: np.ndarray | None = None                  # (draws, customers)
        self._organic_start: np.ndarray | None = None
        self._worlds: list[World] = []                        # this batch's, one per particle
        self._weights: np.ndarray | None = None               # this batch's normalised weights
        self._last: dict | None = None                        # the last batch's decisions, until their feedback
        self._last_t: float | None = None

    @property
    def weights(self) -> np.ndarray:
        w = np.exp(self.log_w - self.log_w.max(axis=0))
        return w / w.sum(axis=0)

    @property
    def belief(self) -> np.ndarray | None:
        """P(disengaged) per customer and channel, if engagement is blinded."""
        if self.p_disengaged is None:
            return None
        return np.einsum("kn,knc->nc", self.weights, self.p_disengaged)

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        world = batch.world
        if self.particles is None:
            self.particles, w = conditional_draws(world, batch.response.scenario, self.traits, self.draws, self.rng)
            self.log_w = np.log(np.maximum(w, 1e-300))
            if "engagement" in self.traits:  # everyone starts engaged
                self.p_disengaged = np.zeros((self.draws, *world.disengaged.shape), dtype=np.float32)
            self._organic_start = world.organic_per_day.copy()
        elif self.p_disengaged is not None and self._last_t is not None:
            self.p_disengaged *= 1 - reengage_probability(batch.response.scenario, batch.t - self._last_t)
        self._last_t = batch.t
        self._worlds, self._weights = self._drawn_worlds(world), self.weights
        chosen = super().decide(batch)
        self._last = self._remember(batch, chosen)
        return chosen

    def _drawn_worlds(self, world: World) -> list[World]:
        """The world as each particle has it, for this batch."""
        worlds = []
        raised = world.organic_per_day != self._organic_start
        for k in range(self.draws):
            fields = {f: d[k] for f, d in self.particles.items()}
            if "organic_per_day" in fields:  # a reactivated customer buys at least as an occasional one
                fields["organic_per_day"] = np.where(raised, np.maximum(fields["organic_per_day"],
                                                                        world.organic_per_day),
                                                     fields["organic_per_day"])
            if self.p_disengaged is not None:
                fields["disengaged"] = self.rng.random(world.disengaged.shape) < self.p_disengaged[k]
            worlds.append(dataclasses.replace(world, **fields))
        return worlds

    def values(self, batch: DecisionBatch, group: FeasibleGroup) -> np.ndarray:
        who = batch.customers[group.members]
        weights = self._weights[:, who]
        total = np.zeros((len(who), len(group.actions)))
        for k, world in enumerate(self._worlds):
            total += weights[k][:, None] * action_values(dataclasses.replace(batch, world=world), group)
        return total

    def _remember(self, batch: DecisionBatch, chosen: np.ndarray) -> dict:
        """What the feedback will be weighed against, in the state decided in (the simulation
        changes the world as the customers respond): per particle, each contact's chances to be
        opened (engaged or not), to buy if clicked and to disengage if unopened, and every
        customer's organic rate."""
        offer, channel, send_t, local_hour = batch.chosen_actions(chosen)
        pos = np.flatnonzero(channel >= 0)
        cust, off, ch, hour, send = batch.customers[pos], offer[pos], channel[pos], local_hour[pos], send_t[pos]
        shape = (self.draws, len(pos))
        p_open, p_lapsed_open = np.empty(shape), np.empty(shape)
        p_convert, lapse = np.empty(shape), np.empty(shape)
        organic = np.empty((self.draws, len(batch.customers)))
        engaged = np.zeros(batch.world.disengaged.shape, dtype=bool)
        for k, world in enumerate(self._worlds):
            if self.p_disengaged is not None:  # the open's chance engaged here, and lapsed below
                world = dataclasses.replace(world, disengaged=engaged)
                p_lapsed_open[k] = batch.response.probabilities(
                    dataclasses.replace(world, disengaged=~engaged), cust, off, ch, hour, send)["open"]
            p = batch.response.probabilities(world, cust, off, ch, hour, send)
            p_open[k], p_convert[k], lapse[k] = p["open"], p["convert"], p["disengage"]
            organic[k] = world.organic_per_day[batch.customers]
        return {"customers": batch.customers, "t": batch.t, "until": batch.organic_until, "position": pos,
                "channel": ch, "p_open": p_open, "p_lapsed_open": p_lapsed_open, "p_convert": p_convert,
                "lapse": lapse, "organic": organic}

    def learn(self, feedback: Feedback) -> None:
        """Weigh each customer's particles by how likely they make what was reported: each
        contact's open (or not), a clicked contact's purchase (or not), and every decided
        customer's purchases in the reporting window; then let unopened contacts disengage."""
        super().learn(feedback)
        if self._last is None:
            return
        last, self._last = self._last, None
        pos, customers = last["position"], last["customers"]
        cust = customers[pos]
        count = lambda kind: np.bincount(feedback.position[feedback.kind == TYPE_CODE[kind]],  # noqa: E731
                                         minlength=len(customers))
        delivered = count(OutcomeType.DELIVERED)[pos] > 0
        opened = count(OutcomeType.OPENED)[pos] > 0
        clicked = count(OutcomeType.CLICKED)[pos] > 0
        purchases = count(OutcomeType.CONVERTED)
        bought = purchases[pos] > 0
        span = (last["until"] - last["t"]) / HOURS_PER_DAY  # days of purchases reported
        # Organic purchases of every decided customer, but a clicked contact's, which may be its own.
        rate = last["organic"] * span
        ll = np.log(np.maximum(rate, 1e-300)) * purchases - rate
        ll[:, pos[clicked]] = 0.0
        # The open, given the particle's traits: engaged or not, by its P(disengaged).
        seen = lambda p: np.clip(np.where(opened, p, 1 - p), 1e-12, 1.0)  # noqa: E731
        like = seen(last["p_open"])
        if self.p_disengaged is not None:
            ch = last["channel"]
            lapsed = self.p_disengaged[:, cust, ch].astype(float)
            like_lapsed = seen(last["p_lapsed_open"])
            like = lapsed * like_lapsed + (1 - lapsed) * like
            lapsed = lapsed * like_lapsed / like
            lapsed += np.where(opened, 0.0, (1 - lapsed) * last["lapse"])  # an unopened contact may disengage
            self.p_disengaged[:, cust[delivered], ch[delivered]] = lapsed[:, delivered]
        contact = np.where(delivered, np.log(like), 0.0)
        none = (1 - last["p_convert"]) * np.exp(-rate[:, pos])
        contact += np.where(clicked, np.where(bought, np.log(np.maximum(1 - none, 1e-300)),
                                              np.log(np.maximum(none, 1e-300))), 0.0)
        ll[:, pos] += contact
        self.log_w[:, customers] += ll
        idx, cols = resample(self.log_w, self.rng)
        if len(cols):
            kept = list(self.particles.values()) + ([self.p_disengaged] if self.p_disengaged is not None else [])
            for d in kept:
                d[:, cols] = np.take_along_axis(d[:, cols], idx.reshape(idx.shape + (1,) * (d.ndim - 2)), axis=0)
            self.log_w[:, cols] = 0.0
