"""The oracle with some hidden traits known only as well as the CRM data tell them.

``oracle_blind_TRAITS`` (``--policies oracle_blind_hour``, ``oracle_blind_affinity+organic``,
``oracle_blind_all``) is the oracle -- every other hidden trait and state known exactly, the same
constraints and budgets -- except that it does not know the customer's own value of the
*blinded* traits. It values each action at its expectation over their distribution given what
the customer's CRM record says of them, as the scenario generates both (the record as it was at
the first campaign), and takes the best. The simulation itself uses the true traits.

Its share of the oracle's value answers "how much of the oracle's value is knowing that trait
exactly worth, beyond what the CRM says?" -- the value a learner has to find in the customers'
responses, or forgo:

- ``hour``: the preferred contact hour, given the CRM's usual open slot (two-hour buckets of a
  noisy usual open hour).
- ``affinity``: each channel's affinity, given the recent email opens the CRM counts.
- ``organic``: the organic purchase rate, given the segment, the purchases of the last 12 months
  and the days since the last purchase.
- ``motivation``: promo addict / early adopter / indifferent, given the share of purchases made
  with a discount, and the incentive sensitivity (the CRM says nothing of it).
- ``engagement``: whether the customer has stopped opening a channel (disengaged), given what
  this policy's own contacts on it and their reported deliveries and opens tell: a Bayes filter
  of the simulator's own law (an unopened contact disengages with its probability, a disengaged
  customer opens a tenth as often and comes back at the weekly rate). With other traits blinded,
  the open probabilities it filters with are their expectations over the draws.

Fatigue needs no blinding: it is the sum of the policy's own delivered contacts, decayed, which
the deliveries reported to any policy tell exactly. Segment, basket, opt-ins, time zone and
birthday are in the CRM record.

The traits are drawn independently of one another in ``simulators.world.generate``, so the
expectation over several is over their joint distribution. It is estimated from ``draws`` draws
per customer: exact draws from the conditional distribution (organic rate, motivation,
sensitivity, engagement) or draws weighted by importance (hour, affinity). Each trait is known
only from the CRM record at the first campaign (and engagement from the contacts' opens): the
responses are not used to learn the other traits, which a learner could do.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import betaln, gammaln

from engine.config import ConfigError
from engine.constraints import Constraints
from simulators.policies import Oracle, action_values
from engine.domain import OutcomeType
from simulators.runner import TYPE_CODE, DecisionBatch, FeasibleGroup, reengage_probability
from simulators.scenario import MOTIVATIONS, SEGMENTS, Scenario
from simulators.world import (HOURS_PER_DAY, LAST_PURCHASE_CAP_DAYS, OBSERVED_SLOT_HOURS, ORGANIC_SHAPE,
                              PROMO_ALPHA, PROMO_CONCENTRATION, RECENT_OPENS_SHARE, RECENT_OPENS_WEEKS, World)

TRAITS = ("hour", "affinity", "organic", "motivation", "engagement")
# The World fields each blinded trait replaces.
FIELDS = {"hour": ("pref_hour",), "affinity": ("affinity",), "organic": ("organic_per_day",),
          "motivation": ("motivation", "sensitivity"), "engagement": ("disengaged",)}
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


class BlindOracle(Oracle):
    """The oracle, valuing actions by their expectation over the blinded ``traits``."""

    def __init__(self, traits: tuple[str, ...], constraints: Constraints | None = None, draws: int = 128,
                 seed: int = 0, name: str | None = None):
        super().__init__(constraints, name=name or PREFIX + "+".join(traits))
        self.traits, self.draws = traits, draws
        self.rng = np.random.default_rng(seed)
        self._draws: dict[str, np.ndarray] | None = None
        self._weights: np.ndarray | None = None
        self._organic_start: np.ndarray | None = None
        self._worlds: tuple[float, list[World]] | None = None  # (batch time, one world per draw)
        # engagement: P(disengaged) per customer and channel, and what the last batch's contacts
        # tell of it once their opens are reported.
        self.belief: np.ndarray | None = None
        self._contacts: dict[str, np.ndarray] | None = None
        self._last_t: float | None = None

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        if "engagement" in self.traits:
            if self.belief is None:
                self.belief = np.zeros(batch.world.disengaged.shape)  # everyone starts engaged
            elif self._last_t is not None:
                self.belief *= 1 - reengage_probability(batch.response.scenario, batch.t - self._last_t)
            self._last_t = batch.t
        chosen = super().decide(batch)
        if "engagement" in self.traits:
            self._remember_contacts(batch, chosen)
        return chosen

    def _drawn_worlds(self, batch: DecisionBatch) -> list[World]:
        world = batch.world
        if self._draws is None:
            self._draws, self._weights = conditional_draws(world, batch.response.scenario, self.traits, self.draws,
                                                           self.rng)
            self._organic_start = world.organic_per_day.copy()
        if self._worlds is None or self._worlds[0] != batch.t:
            worlds = []
            raised = world.organic_per_day != self._organic_start
            for k in range(self.draws):
                traits = {f: d[k] for f, d in self._draws.items()}
                if "organic_per_day" in traits:  # a reactivated customer buys at least as an occasional one
                    traits["organic_per_day"] = np.where(raised, np.maximum(traits["organic_per_day"],
                                                                            world.organic_per_day),
                                                         traits["organic_per_day"])
                if self.belief is not None:
                    traits["disengaged"] = self.rng.random(self.belief.shape) < self.belief
                worlds.append(dataclasses.replace(world, **traits))
            self._worlds = (batch.t, worlds)
        return self._worlds[1]

    def values(self, batch: DecisionBatch, group: FeasibleGroup) -> np.ndarray:
        who = batch.customers[group.members]
        total = np.zeros((len(who), len(group.actions)))
        for k, world in enumerate(self._drawn_worlds(batch)):
            total += self._weights[k, who][:, None] * action_values(dataclasses.replace(batch, world=world), group)
        return total

    def _remember_contacts(self, batch: DecisionBatch, chosen: np.ndarray) -> None:
        """For each contact: P(open) if engaged and if not, and P(disengaging when unopened),
        averaged over the draws of the other blinded traits."""
        pos, cust, off, ch, hour, send = [], [], [], [], [], []
        for g in batch.groups:
            k = chosen[g.members]
            contact = g.offer[k] >= 0
            pos.append(g.members[contact])
            cust.append(batch.customers[g.members[contact]])
            off.append(g.offer[k[contact]]), ch.append(g.channel[k[contact]])
            hour.append(g.local_hour[k[contact]]), send.append(g.send_t[k[contact]])
        pos, cust, off, ch, hour, send = map(np.concatenate, (pos, cust, off, ch, hour, send))
        engaged, disengaged, lapse = np.zeros(len(cust)), np.zeros(len(cust)), np.zeros(len(cust))
        for k, world in enumerate(self._drawn_worlds(batch)):
            w = self._weights[k, cust]
            for state, acc in ((False, engaged), (True, disengaged)):
                p = batch.response.probabilities(
                    dataclasses.replace(world, disengaged=np.full(world.disengaged.shape, state)),
                    cust, off, ch, hour, send)
                acc += w * p["open"]
            lapse += w * p["disengage"]
        self._contacts = {"position": pos, "customer": cust, "channel": ch, "engaged": engaged,
                          "disengaged": disengaged, "lapse": lapse}

    def learn(self, feedback) -> None:
        super().learn(feedback)
        if self._contacts is None:
            return
        c = self._contacts
        reported = lambda kind: np.isin(c["position"], feedback.position[feedback.kind == TYPE_CODE[kind]])  # noqa: E731
        delivered, opened = reported(OutcomeType.DELIVERED), reported(OutcomeType.OPENED)
        b = self.belief[c["customer"], c["channel"]]
        like_d = np.where(opened, c["disengaged"], 1 - c["disengaged"])
        like_e = np.where(opened, c["engaged"], 1 - c["engaged"])
        post = b * like_d / np.maximum(b * like_d + (1 - b) * like_e, 1e-300)
        post = np.where(opened, post, post + (1 - post) * c["lapse"])  # an unopened contact may disengage
        self.belief[c["customer"], c["channel"]] = np.where(delivered, post, b)
        self._contacts = None
