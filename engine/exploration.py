"""Exploration over the feasible actions: probabilities from estimated values (higher = better).

Every function returns the exact probability of each action, which is what gets logged.
Actions tied for the best value share the greedy mass equally -- unless no_contact (always the
last action) is one of them: when in doubt, the engine does not contact, or, if the catalog names
a default contact (``exploration.default_offer`` on ``default_channels``) tied with it, sends
that. A cold model, where every value is 0, therefore sends the default contact, or contacts
only when it explores.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from engine.catalog import ExplorationSettings


TIE_TOLERANCE = 1e-9


def offer_channel_groups(labels: Sequence[str]) -> np.ndarray:
    """Each action's group: its offer on its channel (labels ``offer/channel/slot``), whatever
    the send slot; no_contact is a group of its own. (Read only: the array is shared.)"""
    return _groups(tuple(labels))


@functools.lru_cache(maxsize=4096)
def _groups(labels: tuple[str, ...]) -> np.ndarray:
    keys = [label if label == "no_contact" else label.rsplit("/", 1)[0] for label in labels]
    groups = np.unique(keys, return_inverse=True)[1]
    groups.flags.writeable = False
    return groups


def group_mean(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Each element's mean over its group (``group``: indices from 0, as ``offer_channel_groups``)."""
    return (np.bincount(group, weights=values) / np.bincount(group))[group]


def group_max(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Each element's maximum over its group."""
    best = np.full(group.max() + 1, -np.inf)
    np.maximum.at(best, group, values)
    return best[group]


def with_slot_value(values: np.ndarray, labels: Sequence[str], settings: ExplorationSettings) -> np.ndarray:
    """The values exploration chooses on, with the catalog's ``slot_value = "mean"``: each
    contact less the gap between its offer-on-a-channel's best and mean value over send slots
    (labels ``offer/channel/slot``), so the greedy choice is the best send slot of the offer
    on a channel of best *mean* value, and no contact is weighed against that mean."""
    if settings.slot_value == "best" or len(values) < 2:
        return values
    group = offer_channel_groups(labels)
    return values - (group_max(values, group) - group_mean(values, group))


def default_mask(labels: Sequence[str], settings: ExplorationSettings) -> np.ndarray | None:
    """Which actions (``offer/channel/slot`` labels) are the catalog's default contact: its
    default offer on the first of its default channels among them. None if there is none.
    (Read only: the array is shared.)"""
    if settings.default_offer is None:
        return None
    return _default_mask(tuple(labels), settings)


@functools.lru_cache(maxsize=4096)
def _default_mask(labels: tuple[str, ...], settings: ExplorationSettings) -> np.ndarray | None:
    for channel in settings.default_channels:
        prefix = f"{settings.default_offer}/{channel}/"
        mask = np.fromiter((label.startswith(prefix) for label in labels), bool, len(labels))
        if mask.any():
            mask.flags.writeable = False
            return mask
    return None


def greedy_mask(values: np.ndarray, default: np.ndarray | None = None) -> np.ndarray:
    """The greedy actions: those of the best value (within float noise); when no_contact is
    among them, the ``default`` actions among them, or else no_contact alone."""
    best = values >= values.max() - TIE_TOLERANCE
    if best[-1]:
        if default is not None and (best & default).any():
            return best & default
        best[:] = False
        best[-1] = True
    return best


def epsilon_greedy(values: np.ndarray, epsilon: float, default: np.ndarray | None = None,
                   best: np.ndarray | None = None) -> np.ndarray:
    """p = epsilon / K for every action, plus (1 - epsilon) shared by the greedy ones (``best``:
    ``greedy_mask(values, default)``, when the caller has it)."""
    best = greedy_mask(values, default) if best is None else best
    p = np.full(len(values), epsilon / len(values))
    p[best] += (1.0 - epsilon) / best.sum()
    return p


def softmax(values: np.ndarray, inverse_temperature: float) -> np.ndarray:
    """p_a proportional to exp(lambda * v_a) (Boltzmann exploration)."""
    z = inverse_temperature * (values - values.max())
    w = np.exp(z)
    return w / w.sum()


def squarecb(values: np.ndarray, gamma: float, default: np.ndarray | None = None,
             best: np.ndarray | None = None) -> np.ndarray:
    """Inverse-gap weighting: p_a = 1 / (K + gamma * (v_best - v_a)) for a != best, the rest on
    the best action.  Foster & Rakhlin, "Beyond UCB: Optimal and Efficient Contextual Bandits
    with Regression Oracles", ICML 2020."""
    k = len(values)
    best = greedy_mask(values, default) if best is None else best
    p = 1.0 / (k + gamma * (values.max() - values))
    p[best] = 0.0
    p[best] = (1.0 - p.sum()) / best.sum()
    return p


def probabilities(values: np.ndarray, settings: ExplorationSettings,
                  default: np.ndarray | None = None, best: np.ndarray | None = None) -> np.ndarray:
    """Exploration probabilities; the last action is no_contact, which gets at least
    ``no_contact_floor``: p = (1 - f) * p_algorithm + f * [no_contact]. ``default``: the
    catalog's default contact (``default_mask``), for ties with no_contact (softmax has none).
    ``best``: ``greedy_mask(values, default)``, when the caller has it."""
    if settings.algorithm == "epsilon_greedy":
        p = epsilon_greedy(values, settings.epsilon, default, best)
    elif settings.algorithm == "softmax":
        p = softmax(values, settings.softmax_lambda)
    elif settings.algorithm == "squarecb":
        p = squarecb(values, settings.squarecb_gamma, default, best)
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
