"""Exploration over the feasible actions: probabilities from estimated values (higher = better).

Every function returns the exact probability of each action, which is what gets logged.
Actions tied for the best value share the greedy mass equally -- unless no_contact (always the
last action) is one of them: when in doubt, the engine does not contact. A cold model, where
every value is 0, therefore contacts only when it explores.
"""

from __future__ import annotations

import numpy as np

from engine.catalog import ExplorationSettings


TIE_TOLERANCE = 1e-9


def greedy_mask(values: np.ndarray) -> np.ndarray:
    """The greedy actions: those of the best value (within float noise), or no_contact alone
    when it is among them."""
    best = values >= values.max() - TIE_TOLERANCE
    if best[-1]:
        best[:] = False
        best[-1] = True
    return best


def epsilon_greedy(values: np.ndarray, epsilon: float) -> np.ndarray:
    """p = epsilon / K for every action, plus (1 - epsilon) shared by the greedy ones."""
    k = len(values)
    best = greedy_mask(values)
    p = np.full(k, epsilon / k)
    p[best] += (1.0 - epsilon) / best.sum()
    return p


def softmax(values: np.ndarray, inverse_temperature: float) -> np.ndarray:
    """p_a proportional to exp(lambda * v_a) (Boltzmann exploration)."""
    z = inverse_temperature * (values - values.max())
    w = np.exp(z)
    return w / w.sum()


def squarecb(values: np.ndarray, gamma: float) -> np.ndarray:
    """Inverse-gap weighting: p_a = 1 / (K + gamma * (v_best - v_a)) for a != best, the rest on
    the best action.  Foster & Rakhlin, "Beyond UCB: Optimal and Efficient Contextual Bandits
    with Regression Oracles", ICML 2020."""
    k = len(values)
    best = greedy_mask(values)
    p = 1.0 / (k + gamma * (values.max() - values))
    p[best] = 0.0
    p[best] = (1.0 - p.sum()) / best.sum()
    return p


def probabilities(values: np.ndarray, settings: ExplorationSettings) -> np.ndarray:
    """Exploration probabilities; the last action is no_contact, which gets at least
    ``no_contact_floor``: p = (1 - f) * p_algorithm + f * [no_contact]."""
    if settings.algorithm == "epsilon_greedy":
        p = epsilon_greedy(values, settings.epsilon)
    elif settings.algorithm == "softmax":
        p = softmax(values, settings.softmax_lambda)
    elif settings.algorithm == "squarecb":
        p = squarecb(values, settings.squarecb_gamma)
    else:
        raise ValueError(f"unknown exploration algorithm {settings.algorithm!r}")
    floor = settings.no_contact_floor
    if floor > 0 and len(p) > 1:
        p = (1.0 - floor) * p
        p[-1] += floor
    return p


def draw(p: np.ndarray, rng: np.random.Generator) -> int:
    """Sample an index from p (inverse CDF on one uniform draw)."""
    u = rng.random()
    index = int(np.searchsorted(np.cumsum(p), u, side="right"))
    return min(index, len(p) - 1)
