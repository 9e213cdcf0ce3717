"""Off-policy evaluation of logged bandit data from any system, from plain arrays.

    from training.offpolicy import BanditRounds, evaluate

    rounds = BanditRounds(action=a, reward=r, pscore=p, context=x, cluster=customer_ids)
    result = evaluate(rounds, policy_probabilities=pi)      # pi: (n rounds, n actions)
    result["dr"]          -> {"value", "low", "high"}
    result["warnings"]    -> why the weights make the estimates unreliable, if they do

The reward model q(x, a) that DM and DR need is cross-fitted (``CrossFittedRewardModel``: each
round scored by a regressor fitted on the other folds, folds split by cluster so that a
customer's rounds stay together), any scikit-learn regressor inside. The estimators, their
intervals and the weight diagnostics are ``training.estimators``'s, the same code the DSJSON
path (``training.evaluate``) runs.

Intervals: ``normal`` and ``bootstrap`` treat the fitted reward model as fixed -- right for
IPS and SNIPS, and for DR to first order, but DM's interval then ignores the model's own
sampling error. ``bootstrap_refit`` resamples clusters and refits the reward model inside each
replicate (the cross-fitting included), so every estimator's interval carries it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.estimators import ESTIMATORS, Estimate, Estimator, LoggedRounds, _resamples
from training.estimators import evaluate as evaluate_rounds

METHODS = ("normal", "bootstrap", "bootstrap_refit")


@dataclass(frozen=True)
class BanditRounds:
    """One row per logged round: the action taken (0 .. n_actions - 1), its reward, the
    probability the logging policy gave it, optionally the context features (n, d) and the
    round's cluster (its customer: intervals are then cluster-robust)."""

    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    context: np.ndarray | None = None
    cluster: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.action)
        if n == 0:
            raise ValueError("action: no rounds")
        for name in ("reward", "pscore", "context", "cluster"):
            column = getattr(self, name)
            if column is not None and len(column) != n:
                raise ValueError(f"{name} has {len(column)} rows, action has {n}")
        if not np.issubdtype(np.asarray(self.action).dtype, np.integer) or np.min(self.action) < 0:
            raise ValueError("action must hold integer action indices >= 0")
        if not np.all(np.isfinite(self.reward)):
            raise ValueError("reward must be finite for every round")
        if self.context is not None and (np.ndim(self.context) != 2 or not np.all(np.isfinite(self.context))):
            raise ValueError(f"context must be a finite (n, d) array, got shape {np.shape(self.context)}")

    @property
    def n(self) -> int:
        return len(self.action)

    def take(self, idx: np.ndarray) -> BanditRounds:
        pick = lambda column: None if column is None else np.asarray(column)[idx]  # noqa: E731
        return BanditRounds(self.action[idx], self.reward[idx], self.pscore[idx], pick(self.context),
                            pick(self.cluster))


def _default_regressor():
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1.0)


class CrossFittedRewardModel:
    """q(x, a) for every round and action, each round's row predicted by a model that did not
    see it: the rounds are split in ``folds`` (by cluster when the rounds carry one), and for
    each fold a regressor (``make()``, scikit-learn's fit/predict; ridge regression by default)
    is fitted on the other folds' rounds. Features: one-hot action, and with ``interactions``
    the context crossed with it (a linear model per action) plus the context itself."""

    def __init__(self, make: Callable[[], object] = _default_regressor, folds: int = 2,
                 interactions: bool = True, seed: int = 0):
        if folds < 2:
            raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
        self.make, self.folds, self.interactions, self.seed = make, folds, interactions, seed

    def features(self, context: np.ndarray | None, action: np.ndarray, n_actions: int) -> np.ndarray:
        onehot = np.zeros((len(action), n_actions))
        onehot[np.arange(len(action)), action] = 1.0
        if context is None:
            return onehot
        parts = [onehot, context]
        if self.interactions:
            parts.append((context[:, :, None] * onehot[:, None, :]).reshape(len(action), -1))
        return np.hstack(parts)

    def fold_of(self, rounds: BanditRounds) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        if rounds.cluster is None:
            return rng.integers(0, self.folds, rounds.n)
        units, codes = np.unique(rounds.cluster, return_inverse=True)
        return rng.integers(0, self.folds, len(units))[codes]

    def fit_predict(self, rounds: BanditRounds, n_actions: int) -> np.ndarray:
        """Out-of-fold predictions, shape (n rounds, n_actions)."""
        fold = self.fold_of(rounds)
        q = np.zeros((rounds.n, n_actions))
        train_x = self.features(rounds.context, rounds.action, n_actions)
        for k in range(self.folds):
            held = fold == k
            if not held.any():
                continue
            if held.all():
                raise ValueError("every round fell in one fold: too few rounds (or clusters) to cross-fit")
            model = self.make()
            model.fit(train_x[~held], rounds.reward[~held])
            context = None if rounds.context is None else rounds.context[held]
            rows = np.flatnonzero(held)
            q[rows] = self._predict_all(model, context, len(rows), n_actions)
        return q

    def _predict_all(self, model, context: np.ndarray | None, rows: int, n_actions: int) -> np.ndarray:
        """(rows, n_actions) predictions: in closed form for a linear model (``coef_``), else one
        ``predict`` per action."""
        coef = getattr(model, "coef_", None)
        if coef is not None and np.ndim(coef) == 1:
            out = np.broadcast_to(coef[:n_actions] + float(getattr(model, "intercept_", 0.0)), (rows, n_actions)).copy()
            if context is not None:
                d = context.shape[1]
                out += (context @ coef[n_actions:n_actions + d])[:, None]
                if self.interactions:
                    out += context @ coef[n_actions + d:].reshape(d, n_actions)
            return out
        return np.column_stack([model.predict(self.features(context, np.full(rows, a), n_actions))
                                for a in range(n_actions)])


def logged_rounds(rounds: BanditRounds, policy_probabilities: np.ndarray, q: np.ndarray | None) -> LoggedRounds:
    """The estimators' input: pi(a_i|x_i), q(x_i, a_i) and sum_a pi(a|x_i) q(x_i, a)."""
    rows = np.arange(rounds.n)
    pi = policy_probabilities
    if q is None:
        q = np.zeros_like(pi)
    cluster = None if rounds.cluster is None else np.unique(rounds.cluster, return_inverse=True)[1].astype(np.int64)
    return LoggedRounds(np.asarray(rounds.reward, float), np.asarray(rounds.pscore, float), pi[rows, rounds.action],
                        q[rows, rounds.action], (pi * q).sum(axis=1), cluster)


def check_policy(rounds: BanditRounds, policy_probabilities: np.ndarray) -> np.ndarray:
    pi = np.asarray(policy_probabilities, dtype=float)
    if pi.ndim != 2 or pi.shape[0] != rounds.n:
        raise ValueError(f"policy_probabilities must have shape (n rounds, n actions) = ({rounds.n}, K), "
                         f"got {pi.shape}")
    if int(np.max(rounds.action)) >= pi.shape[1]:
        raise ValueError(f"action holds index {int(np.max(rounds.action))} but policy_probabilities has "
                         f"{pi.shape[1]} actions")
    if not np.all((pi >= 0) & (pi <= 1)) or not np.allclose(pi.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("policy_probabilities: each row must be a distribution (values in [0, 1] summing to 1)")
    return pi


def evaluate(rounds: BanditRounds, policy_probabilities: np.ndarray,
             reward_model: CrossFittedRewardModel | np.ndarray | None | str = "default",
             method: str = "bootstrap_refit", estimators: dict[str, Estimator] | None = None,
             n_bootstrap: int = 200, seed: int = 0) -> dict[str, object]:
    """Every estimator's value and 95 % interval for the target policy ``policy_probabilities``
    (n rounds x n actions), with the weights' diagnostics and warnings.

    ``reward_model``: a ``CrossFittedRewardModel`` (``"default"``: ridge regression, 2 folds),
    precomputed out-of-fold predictions (n x n actions), or None (no model: DM is 0 and DR is
    IPS). ``method``: ``bootstrap_refit`` (the default: every interval carries the reward
    model's own error), ``normal`` or ``bootstrap`` (faster; the model taken as fixed)."""
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; allowed: {', '.join(METHODS)}")
    pi = check_policy(rounds, policy_probabilities)
    model = CrossFittedRewardModel() if isinstance(reward_model, str) and reward_model == "default" else reward_model
    if isinstance(model, str):
        raise ValueError(f"reward_model: unknown {model!r} (a CrossFittedRewardModel, an array, None or 'default')")
    if isinstance(model, CrossFittedRewardModel):
        q = model.fit_predict(rounds, pi.shape[1])
    else:
        q = None if model is None else np.asarray(model, dtype=float)
        if q is not None and q.shape != pi.shape:
            raise ValueError(f"reward_model predictions must have shape {pi.shape}, got {q.shape}")
    data = logged_rounds(rounds, pi, q)
    estimators = estimators or ESTIMATORS
    if method != "bootstrap_refit":
        return evaluate_rounds(data, method=method, estimators=estimators)
    result = evaluate_rounds(data, method="normal", estimators=estimators)
    replicates = {name: [] for name in estimators}
    rng = np.random.default_rng(seed)
    for idx in _resamples(data, n_bootstrap, rng):
        sample = rounds.take(idx)
        sample_q = model.fit_predict(sample, pi.shape[1]) if isinstance(model, CrossFittedRewardModel) else (
            None if q is None else q[idx])
        sample_data = logged_rounds(sample, pi[idx], sample_q)
        for name, est in estimators.items():
            replicates[name].append(est.value(sample_data))
    for name in estimators:
        low, high = np.quantile(replicates[name], [0.025, 0.975])
        result[name] = {**result[name], **Estimate(result[name]["value"], float(low), float(high)).as_dict()}
    return result
