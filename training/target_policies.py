"""Policies to evaluate on logged decisions: each gives, for one logged decision, the
probability it would have given every one of that decision's feasible actions.

Built in:
  ``logged``   the logging policy itself (its logged probabilities; only the chosen action's
               is known, which is all the estimators need for it)
  ``uniform``  uniform over each decision's feasible actions
  ``rules``    the marketer's static rules (weekly email at 10:00 local, 10 EUR off, 15 EUR
               to promo addicts, SMS to those without email)
  ``no_contact``
  a VW model file (``path/to/model.vw``) or a registered MLflow model (``models:/name@alias``
  or ``models:/name/version``): the model's values with the catalog's exploration, as it would
  be served (``greedy=True``: the best action only)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine import exploration
from engine.catalog import Catalog, ExplorationSettings
from engine.models import load_model
from engine.settings import ConfigError
from engine.value_model import ValueModel
from training.dataset import LoggedDecision

PROMO_SHARE_THRESHOLD = 0.5
RULES_SLOT = "10-12"
BUILTIN = ("logged", "uniform", "rules", "no_contact")


class EvalPolicy:
    name = "policy"

    def probabilities(self, d: LoggedDecision) -> np.ndarray:
        raise NotImplementedError


class Logged(EvalPolicy):
    """The logging policy: every feasible action's probability as the log records it."""

    name = "logged"

    def probabilities(self, d):
        p = np.zeros(len(d.actions))
        ids, probs = d.logged
        if isinstance(ids, list) and isinstance(probs, list) and len(ids) == len(probs) == len(p):
            p[np.asarray(ids, dtype=int) - 1] = probs
        else:
            p[d.chosen] = d.probability  # only the chosen action's probability is known
        return p


class Uniform(EvalPolicy):
    name = "uniform"

    def probabilities(self, d):
        return np.full(len(d.actions), 1.0 / len(d.actions))


def one_hot(n: int, index: int) -> np.ndarray:
    p = np.zeros(n)
    p[index] = 1.0
    return p


class NoContact(EvalPolicy):
    name = "no_contact"

    def probabilities(self, d):
        return one_hot(len(d.actions), d.actions.index("no_contact"))


def rules_contacts(index: dict[str, int], offers: tuple[str, ...]) -> tuple[int, ...] | None:
    """The marketer's contact on one feasible set (action label -> index): the indices of
    ``offers`` at 10:00 by email, else by SMS, on the first of the two where all are feasible;
    None: no contact."""
    for channel in ("email", "sms"):
        found = tuple(index.get(f"{offer}/{channel}/{RULES_SLOT}") for offer in offers)
        if None not in found:
            return found
    return None


def rules_actions(index: dict[str, int]) -> tuple[int, int] | None:
    """The marketer's rules on one feasible set (action label -> index): the indices of
    (10 EUR off, 15 EUR off) at 10:00 by email, else by SMS; None: no contact."""
    return rules_contacts(index, ("discount_10", "discount_15"))


class Rules(EvalPolicy):
    """The marketer's rules, from what the log holds: the request's ``promo_share`` feature and
    the feasible actions (``rules_actions``, as ``simulators.policies.MarketerRules``)."""

    name = "rules"

    def probabilities(self, d):
        index = {label: k for k, label in enumerate(d.actions)}
        offers = rules_actions(index)
        if offers is None:
            return one_hot(len(d.actions), index["no_contact"])
        promo = d.customer.get("promo_share", 0.0) >= PROMO_SHARE_THRESHOLD
        return one_hot(len(d.actions), offers[1] if promo else offers[0])


class Table(EvalPolicy):
    """A fixed choice per event id (e.g. the simulator's oracle); no_contact where absent."""

    def __init__(self, name: str, choice: dict[str, str]):
        self.name = name
        self.choice = choice

    def probabilities(self, d):
        label = self.choice.get(d.event_id, "no_contact")
        return one_hot(len(d.actions), d.actions.index(label))


class ModelPolicy(EvalPolicy):
    """A VW value model, choosing as the server would (without budget pacing, which depends
    on live spend): the catalog's exploration over its values, or the best action."""

    def __init__(self, name: str, model: ValueModel, settings: ExplorationSettings, greedy: bool = False):
        self.name = name
        self.model = model
        self.settings = settings
        self.greedy = greedy

    def values(self, d: LoggedDecision) -> np.ndarray:
        return self.model.values(d.context, len(d.actions))

    def probabilities(self, d):
        values = exploration.with_slot_value(self.values(d), d.actions, self.settings)
        default = exploration.default_mask(d.actions, self.settings)
        if self.greedy:
            best = exploration.greedy_mask(exploration.with_hurdle(values, self.settings), default)
            return best / best.sum()
        return exploration.probabilities(values, self.settings, default)


def target_policy(spec: str, catalog: Catalog, greedy: bool = False,
                resolve: Callable[[str], tuple[Path, str]] | None = None) -> EvalPolicy:
    """A policy from its name on the command line: built-in, a model path, or an MLflow
    ``models:/`` URI (``resolve`` downloads it: uri -> (local directory, version label))."""
    if spec == "logged":
        return Logged()
    if spec == "uniform":
        return Uniform()
    if spec == "rules":
        return Rules()
    if spec == "no_contact":
        return NoContact()
    if spec.startswith("models:/"):
        if resolve is None:
            from engine.models import download

            resolve = download
        local, version = resolve(spec)
        return ModelPolicy(spec, load_model(local, catalog, version), catalog.exploration, greedy)
    path = Path(spec)
    if path.exists():
        return ModelPolicy(spec, load_model(path, catalog), catalog.exploration, greedy)
    raise ConfigError(f"policy {spec!r}: not built in ({', '.join(BUILTIN)}), not a model file or "
                      "directory, not a models:/ URI")
