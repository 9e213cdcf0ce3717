"""Exploration over the feasible actions: probabilities from estimated values (higher = better).

Every function returns the exact probability of each action, which is what gets logged.
Actions tied for the best value share the greedy mass equally (a cold model, where every value
is 0, then explores uniformly instead of always sending the first action).
"""

from __future__ import annotations

import numpy as np

from engine.catalog import ExplorationSettings


TIE_TOLERANCE = 1e-9


def greedy_mask(values: np.ndarray) -> np.ndarray:
    """The actions whose value is the best (within a tolerance for float noise)."""
    return values >= values.max() - TIE_TOLERANCE


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
    if settings.algorithm == "epsilon_greedy":
        return epsilon_greedy(values, settings.epsilon)
    if settings.algorithm == "softmax":
        return softmax(values, settings.softmax_lambda)
    if settings.algorithm == "squarecb":
        return squarecb(values, settings.squarecb_gamma)
    raise ValueError(f"unknown exploration algorithm {settings.algorithm!r}")


def draw(p: np.ndarray, rng: np.random.Generator) -> int:
    """Sample an index from p (inverse CDF on one uniform draw)."""
    u = rng.random()
    index = int(np.searchsorted(np.cumsum(p), u, side="right"))
    return min(index, len(p) - 1)
