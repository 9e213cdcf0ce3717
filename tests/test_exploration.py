import numpy as np
import pytest

from engine.exploration import draw, epsilon_greedy, softmax, squarecb

VALUES = np.array([1.0, 3.0, 2.0, 3.0, -1.0])  # the last one plays no_contact


def test_epsilon_greedy_shares_mass_between_ties():
    p = epsilon_greedy(VALUES, 0.1)
    assert p.sum() == pytest.approx(1.0)
    assert p[1] == p[3] == pytest.approx(0.1 / 5 + 0.9 / 2)
    assert p[0] == pytest.approx(0.02)


def test_cold_model_contacts_only_when_exploring():
    """Every value 0: no_contact (last) takes the greedy mass; contacts get epsilon / K each."""
    p = epsilon_greedy(np.zeros(7), 0.1)
    assert np.allclose(p[:-1], 0.1 / 7) and p[-1] == pytest.approx(1 - 0.1 + 0.1 / 7)


def test_tie_with_no_contact_goes_to_no_contact_in_squarecb():
    p = squarecb(np.array([1.0, 2.0, 2.0]), 10.0)
    assert p[2] > p[1] and p.sum() == pytest.approx(1.0)


def test_softmax_orders_by_value():
    p = softmax(VALUES, 2.0)
    assert p.sum() == pytest.approx(1.0)
    assert p[1] == pytest.approx(p[3]) and p[1] > p[2] > p[0] > p[4]


def test_squarecb_inverse_gap_weighting():
    p = squarecb(VALUES, 10.0)
    assert p.sum() == pytest.approx(1.0)
    assert p[2] == pytest.approx(1 / (5 + 10 * 1.0))
    assert p[4] == pytest.approx(1 / (5 + 10 * 4.0))
    assert p[1] == p[3] > p[2]


def test_draw_matches_probabilities():
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.25, 0.125, 0.125])
    counts = np.bincount([draw(p, rng) for _ in range(40_000)], minlength=4) / 40_000
    assert np.allclose(counts, p, atol=0.01)


LABELS = ["new/email/08-10", "new/email/10-12", "new/sms/10-12", "promo/email/08-10", "no_contact"]


def settings(offer=None, channels=()):
    from engine.catalog import ExplorationSettings

    return ExplorationSettings(epsilon=0.1, default_offer=offer, default_channels=tuple(channels))


def test_a_cold_model_sends_the_default_contact_at_any_of_its_slots():
    from engine.exploration import default_mask, probabilities

    default = default_mask(LABELS, settings("new", ["sms", "email"]))
    assert default.tolist() == [False, False, True, False, False]  # the first channel offered
    default = default_mask(LABELS, settings("new", ["push", "email"]))
    assert default.tolist() == [True, True, False, False, False]
    p = probabilities(np.zeros(5), settings("new", ["email"]), default)
    assert p[0] == p[1] == pytest.approx(0.1 / 5 + 0.9 / 2) and p[4] == pytest.approx(0.1 / 5)
    # Not offered here, or not set: ties go to no contact as before.
    assert default_mask(LABELS, settings("new", ["push"])) is None
    assert default_mask(LABELS, settings()) is None


def test_the_default_contact_only_breaks_ties_with_no_contact():
    from engine.exploration import default_mask, greedy_mask

    default = default_mask(LABELS, settings("new", ["email"]))
    assert greedy_mask(np.array([0.0, 0.0, 0.0, 0.5, 0.0]), default).tolist() == [0, 0, 0, 1, 0]
    assert greedy_mask(np.array([-0.1, -0.1, 0.0, 0.0, 0.0]), default).tolist() == [0, 0, 0, 0, 1]
    assert greedy_mask(np.array([0.0, -0.2, 0.0, 0.0, 0.0]), default).tolist() == [1, 0, 0, 0, 0]


def test_slot_value_mean_weighs_an_offer_on_a_channel_by_its_mean_over_send_slots():
    from engine.catalog import ExplorationSettings
    from engine.exploration import probabilities, with_slot_value

    labels = ["a/email/08-10", "a/email/10-12", "a/email/12-14", "b/sms/10-12", "b/sms/12-14", "no_contact"]
    # a: one lucky slot (0.09) over two bad ones, mean 0.01; b: steady, mean 0.04, best 0.05.
    values = np.array([0.09, -0.03, -0.03, 0.05, 0.03, 0.0])
    mean, best = ExplorationSettings(epsilon=0.0, slot_value="mean"), ExplorationSettings(epsilon=0.0, slot_value="best")
    assert probabilities(values, best).tolist() == [1, 0, 0, 0, 0, 0]
    assert probabilities(with_slot_value(values, labels, mean), mean).tolist() == [0, 0, 0, 1, 0, 0]
    # A contact whose best slot beats nothing but whose mean does not is not sent.
    lucky = np.array([0.09, -0.06, -0.06, -0.02, -0.04, 0.0])
    assert probabilities(with_slot_value(lucky, labels, mean), mean).tolist() == [0, 0, 0, 0, 0, 1]
    assert with_slot_value(values, labels, best) is values  # "best": unchanged
