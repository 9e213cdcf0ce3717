import dataclasses

import pytest

from engine.domain import OutcomeType as T
from engine.rewards import net_reward


@pytest.fixture
def window(catalog):
    """The reward definition with window attribution: every purchase in the window counts."""
    return dataclasses.replace(catalog.reward, purchase_attribution="window")


def test_default_catalog_attributes_purchases_to_clicks(catalog):
    assert catalog.reward.purchase_attribution == "click"


def test_conversion_pays_margin_minus_redeemed_incentive_and_contact(window):
    r = net_reward(window, [(T.OPENED, 0), (T.CONVERTED, 100.0), (T.REDEEMED, 0)], True, 10.0, 0.01)
    assert r == pytest.approx(0.35 * 100 - 10 - 0.01)


def test_unredeemed_incentive_costs_nothing(window):
    r = net_reward(window, [(T.CONVERTED, 100.0)], True, 10.0, 0.01)
    assert r == pytest.approx(0.35 * 100 - 0.01)


def test_cannibalised_redemption_costs_without_revenue(window):
    """A code used on a purchase the channel system does not attribute still costs."""
    assert net_reward(window, [(T.REDEEMED, 0)], True, 15.0, 0.0) == pytest.approx(-15.0)


def test_paid_on_conversion_mode(window):
    reward = dataclasses.replace(window, incentive_paid_on="conversion")
    assert net_reward(reward, [(T.CONVERTED, 100.0)], True, 10.0, 0.0) == pytest.approx(25.0)
    assert net_reward(reward, [(T.OPENED, 0.0)], True, 10.0, 0.0) == pytest.approx(0.0)


def test_incentive_paid_once_and_penalties_once(window):
    r = net_reward(window, [(T.CONVERTED, 50.0), (T.CONVERTED, 50.0), (T.REDEEMED, 0), (T.REDEEMED, 0),
                           (T.UNSUBSCRIBED, 0), (T.UNSUBSCRIBED, 0), (T.COMPLAINED, 0)], True, 15.0, 0.07)
    assert r == pytest.approx(0.35 * 100 - 15 - 10 - 15 - 0.07)


def test_nothing_reported_gives_default_minus_contact(window):
    assert net_reward(window, [], True, 10.0, 0.07) == pytest.approx(-0.07)
    assert net_reward(window, [], False, 0.0, 0.0) == 0.0


def test_organic_purchase_without_contact(window):
    assert net_reward(window, [(T.CONVERTED, 80.0)], False, 0.0, 0.0) == pytest.approx(28.0)


def test_click_attribution_counts_purchases_only_after_a_click(catalog):
    reward = dataclasses.replace(catalog.reward, purchase_attribution="click")
    assert net_reward(reward, [(T.OPENED, 0), (T.CONVERTED, 100.0)], True, 10.0, 0.01) == pytest.approx(-0.01)
    assert net_reward(reward, [(T.CLICKED, 0), (T.CONVERTED, 100.0), (T.REDEEMED, 0)], True, 10.0, 0.01) == \
        pytest.approx(35 - 10 - 0.01)
    # Costs still count without a click: a cannibalised redemption, an unsubscribe.
    assert net_reward(reward, [(T.CONVERTED, 80.0), (T.REDEEMED, 0), (T.UNSUBSCRIBED, 0)], True, 10.0, 0.0) == \
        pytest.approx(-10 - 10)
    assert net_reward(reward, [(T.CONVERTED, 80.0)], False, 0.0, 0.0) == 0.0
