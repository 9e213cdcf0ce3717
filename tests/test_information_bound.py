"""The blind oracle: hidden traits known only as well as the CRM record and the responses tell them."""

import numpy as np
import pytest

from engine.settings import ConfigError
from engine.domain import OutcomeType
from simulators.information_bound import InformationBound, conditional_draws, parse_blind
from simulators.policies import Oracle, action_values
from simulators.runner import TYPE_CODE, Simulation
from simulators.scenario import load_scenario
from simulators.world import OBSERVED_SLOT_HOURS, generate

DRAWS = 64


@pytest.fixture(scope="module")
def scenario():
    return load_scenario("default")


@pytest.fixture(scope="module")
def world(scenario):
    return generate(scenario, 20_000, np.random.default_rng(7))


def rank(draws: np.ndarray, weights: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Where the truth falls in each customer's weighted draws (uniform when calibrated)."""
    return (weights * (draws < truth[None, :])).sum(axis=0)


def assert_uniform(u: np.ndarray, what: str) -> None:
    counts = np.histogram(u, bins=4, range=(0, 1))[0] / len(u)
    assert abs(u.mean() - 0.5) < 0.04, f"{what}: mean rank {u.mean():.3f}"
    assert counts.min() > 0.19 and counts.max() < 0.31, f"{what}: rank quartiles {counts.round(3)}"


def test_draws_are_calibrated_given_what_the_crm_record_says(scenario, world):
    """For every trait the truth ranks uniformly among the customer's draws, also within groups
    of customers whose CRM record says opposite things -- which draws from the prior alone would
    fail -- and the draws know more than the prior."""
    draws, weights = conditional_draws(world, scenario, ("hour", "affinity", "organic", "motivation"), DRAWS,
                                       np.random.default_rng(1))
    assert weights.shape == (DRAWS, world.n) and np.allclose(weights.sum(axis=0), 1)

    centre = OBSERVED_SLOT_HOURS * (world.observed_slot + 0.5)
    offset = (draws["pref_hour"] - centre + 12) % 24 - 12  # hours from the CRM slot's centre
    truth = (world.pref_hour - centre + 12) % 24 - 12
    early = world.observed_slot * OBSERVED_SLOT_HOURS < 12
    for group, name in ((early, "morning slots"), (~early, "afternoon slots")):
        assert_uniform(rank(offset[:, group], weights[:, group], truth[group]), f"hour, {name}")

    email = world.channels.index("email")
    aff = draws["affinity"][:, :, email]
    for group, name in ((world.consent[:, email] & (world.recent_opens == 0), "no recent opens"),
                        (world.recent_opens >= 4, "4+ recent opens")):
        assert group.sum() > 500
        assert_uniform(rank(aff[:, group], weights[:, group], world.affinity[group, email]), f"affinity, {name}")
    mean = (weights * aff).sum(axis=0)
    assert mean[world.recent_opens >= 4].mean() > 1.2 > 0.9 > mean[world.consent[:, email]
                                                                  & (world.recent_opens == 0)].mean()

    organic = draws["organic_per_day"]
    for group, name in ((world.purchases_12m == 0, "no purchases"), (world.purchases_12m >= 3, "3+ purchases")):
        assert group.sum() > 500
        assert_uniform(rank(organic[:, group], weights[:, group], world.organic_per_day[group]), f"organic, {name}")

    promo = world.motivation == 0
    p_promo = (draws["motivation"] == 0).mean(axis=0)
    for group in (world.promo_share > 0.5, world.promo_share < 0.3):
        assert abs(p_promo[group].mean() - promo[group].mean()) < 0.03
    assert p_promo[world.promo_share > 0.5].mean() > 0.8
    assert_uniform(rank(draws["sensitivity"], weights, world.sensitivity), "sensitivity")


def test_the_blind_oracle_decides_on_the_crm_record_not_the_blinded_trait(scenario):
    """Its choices do not move when the blinded trait changes under an unchanged CRM record, and
    are worth less than the oracle's but most of it."""
    sim = Simulation(scenario, customers=3000, days=7, seed=5)
    batch = sim.batch(sim.population.copy(), 0.0)
    blind = InformationBound(("affinity",), draws=8, seed=3).decide(batch)
    changed = sim.population.copy()
    changed.affinity = changed.affinity[::-1].copy()
    again = InformationBound(("affinity",), draws=8, seed=3).decide(sim.batch(changed, 0.0))
    assert np.array_equal(blind, again)

    best = Oracle().decide(batch)
    worth = lambda chosen: sum(action_values(batch, g)[np.arange(len(g.members)), chosen[g.members]].sum()  # noqa: E731
                               for g in batch.groups)
    assert 0.5 * worth(best) < worth(blind) < worth(best)


def test_blind_policy_names(scenario):
    assert parse_blind("oracle_blind_hour+organic") == ("hour", "organic")
    assert parse_blind("oracle_blind_all") == ("hour", "affinity", "organic", "motivation", "engagement")
    with pytest.raises(ConfigError, match="fatigue.*known: hour, affinity"):
        parse_blind("oracle_blind_hour+fatigue")
    with pytest.raises(ConfigError, match="none given"):
        parse_blind("oracle_blind_")


def test_the_engagement_belief_is_calibrated_on_opens(scenario):
    """Filtered from its own contacts' deliveries and opens, P(disengaged) matches how many of
    the customers it is given for have in fact stopped opening: where it says ~40 %, ~40 % have."""
    sim = Simulation(scenario, customers=3000, days=42, seed=4)
    policy = InformationBound(("engagement",), draws=16, seed=2)
    seen = []

    def observe(batch, chosen):
        reachable = batch.world.reachable()
        seen.append((policy.belief[reachable], batch.world.disengaged[reachable]))

    sim.run(policy, observer=observe)
    belief, truth = (np.concatenate(x) for x in zip(*seen[2:]))
    for low, high in ((0.0, 0.05), (0.05, 0.3), (0.3, 1.0)):
        band = (belief >= low) & (belief < high)
        assert band.sum() > 300, (low, high, band.sum())
        assert abs(truth[band].mean() - belief[band].mean()) < 0.04, (low, high, truth[band].mean(),
                                                                      belief[band].mean())


@pytest.mark.slow
def test_the_particles_learn_from_the_responses_and_stay_calibrated(scenario):
    """After three campaigns' responses the truth still ranks uniformly among each customer's
    weighted particles, among those who opened an email and those who did not -- and the opens
    have moved the particles: the openers' email affinity is believed higher."""
    sim = Simulation(scenario, customers=4000, days=28, seed=6)
    policy = InformationBound(("affinity", "organic"), draws=64, seed=2)
    opened, seen = np.zeros(sim.customers), {}
    learn = policy.learn

    def count_opens(feedback):
        who = seen["customers"][feedback.position[feedback.kind == TYPE_CODE[OutcomeType.OPENED]]]
        np.add.at(opened, who, 1)
        learn(feedback)

    def keep(batch, chosen):  # the particles before the last campaign's responses
        seen.update(customers=batch.customers, weights=policy.weights.copy(),
                    particles={k: v.copy() for k, v in policy.particles.items()}, opened=opened.copy())

    policy.learn = count_opens
    sim.run(policy, observer=keep)
    world, weights, opened = sim.population, seen["weights"], seen["opened"]
    email = world.channels.index("email")
    aff = seen["particles"]["affinity"][:, :, email]
    openers, others = opened >= 1, world.consent[:, email] & (opened == 0)
    for group, name in ((openers, "opened"), (others, "never opened")):
        assert group.sum() > 200, name
        assert_uniform(rank(aff[:, group], weights[:, group], world.affinity[group, email]), f"affinity, {name}")
    believed = (weights * aff).sum(axis=0)
    assert believed[openers].mean() > 1.1 * believed[others].mean()
    assert_uniform(rank(seen["particles"]["organic_per_day"], weights, world.organic_per_day), "organic rate")
