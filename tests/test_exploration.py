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
