"""Off-policy estimators of a target policy's value from logged bandit data.

Every estimator has the same three methods -- per-round estimates, policy value, interval --
and works on ``LoggedRounds``: vectorised NumPy over rounds, no Python loop over rounds.

Notation, for round i with context x_i, logged action a_i, logged probability p_i = mu(a_i|x_i),
reward r_i, target policy pi, reward model q(x, a):

    w_i   = pi(a_i|x_i) / p_i                       (importance weight)
    qhat_i = q(x_i, a_i)                             (model's reward for the logged action)
    vhat_i = sum_a pi(a|x_i) q(x_i, a)               (model's value of pi at x_i)

Intervals. A customer's decisions are not independent (the same purchases, fatigue and
consent run through all of them), so when ``LoggedRounds.cluster`` gives each round its
customer, intervals are cluster-robust: the normal interval uses the sandwich variance

    Var(V) = G / (G - 1) * sum_g (sum_{i in g} psi_i)^2 / n^2        (psi_i: round i's influence)

(Liang & Zeger, "Longitudinal data analysis using generalized linear models", Biometrika 1986;
Cameron & Miller, "A Practitioner's Guide to Cluster-Robust Inference", J. Human Resources
2015), and the bootstrap resamples whole customers. Without clusters every round is its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054


# Bootstrap refits of a reward model (``training.evaluate``), and the rounds (a fixed random
# subsample) on which their spread is measured.
REFITS = 20
REFIT_ROWS = 1000


@dataclass(frozen=True)
class RefitSpread:
    """What the reward model would have said had it been fitted on a resample of the data: for
    ``B`` refits (bootstrap replicates of the model, each fitted on the customers resampled) and
    ``m`` rounds ``rows`` (a fixed subsample), ``v[b, j]`` = sum_a pi(a|x_j) q_b(x_j, a) and
    ``q[b, j]`` = q_b(x_j, a_j). An estimator of the form mean(vhat + wtilde (r - qhat)) then has
    the model's own variance Var_b(mean_j(v[b, j] - wtilde_j q[b, j])), which its interval adds
    to the variance over rounds (the two are uncorrelated to first order when the model is right:
    the model's residuals have mean zero given the context)."""

    rows: np.ndarray
    v: np.ndarray
    q: np.ndarray

    def __post_init__(self):
        if self.v.shape != self.q.shape or self.v.ndim != 2 or self.v.shape[1] != len(self.rows):
            raise ValueError(f"refits: v {self.v.shape} and q {self.q.shape} must both be (refits, {len(self.rows)} rows)")
        if self.v.shape[0] < 2:
            raise ValueError(f"refits: at least 2 refits are needed for a spread, got {self.v.shape[0]}")

    def variance(self, model_weight: np.ndarray) -> float:
        """The model's variance for an estimator weighting the model's residuals by ``model_weight``
        (one per round of all ``n`` rounds).

        The value on all rounds moves with the refit b by T_b = mean_i(e_bi), e_bi = d_bi - mean_b'
        d_b'i, d = v - wtilde q. On the subsample the plain Var_b(mean_j e_bj) would add the rows'
        own noise (scaled by 1/m instead of 1/n: sixteen times too wide for DR at m = n / 16), so
        T_b^2 is estimated without it, from the subsample's pairs (off the diagonal) and squares
        (on it), each scaled to all n rounds: an unbiased estimate when the rows are a simple
        random sample."""
        n, m = len(model_weight), len(self.rows)
        d = self.v - model_weight[self.rows][None, :] * self.q
        e = d - d.mean(axis=0, keepdims=True)
        sums, squares = e.sum(axis=1), (e * e).sum(axis=1)
        if m < 2 or m >= n:
            t2 = sums * sums / (m * m)
        else:
            t2 = ((sums * sums - squares) * (n * (n - 1) / (m * (m - 1))) + squares * (n / m)) / (n * n)
        return max(float(t2.sum() / (len(t2) - 1)), 0.0)


@dataclass(frozen=True)
class LoggedRounds:
    """One row per logged decision."""

    reward: np.ndarray          # r_i
    pscore: np.ndarray          # p_i, logging probability of the logged action, in (0, 1]
    target_pscore: np.ndarray   # pi(a_i|x_i)
    q_logged: np.ndarray        # q(x_i, a_i); zeros if no reward model
    v_target: np.ndarray        # sum_a pi(a|x_i) q(x_i, a); zeros if no reward model
    cluster: np.ndarray | None = None  # integer id of the round's customer; None: rounds independent
    refits: RefitSpread | None = None  # the reward model refitted on resampled data; None: taken as fixed

    def __post_init__(self):
        n = len(self.reward)
        for name in ("pscore", "target_pscore", "q_logged", "v_target", "cluster"):
            column = getattr(self, name)
            if column is not None and len(column) != n:
                raise ValueError(f"{name} has {len(column)} rows, reward has {n}")
        if n == 0:
            raise ValueError("no logged rounds")
        if self.cluster is not None and not np.issubdtype(np.asarray(self.cluster).dtype, np.integer):
            raise ValueError(f"cluster must hold integer ids, got dtype {np.asarray(self.cluster).dtype}")
        if not np.all((self.pscore > 0) & (self.pscore <= 1)):
            raise ValueError("pscore must be in (0, 1] for every round")
        if not np.all((self.target_pscore >= 0) & (self.target_pscore <= 1)):
            raise ValueError("target_pscore must be in [0, 1] for every round")

    @property
    def n(self) -> int:
        return len(self.reward)

    @property
    def weight(self) -> np.ndarray:
        return self.target_pscore / self.pscore

    def effective_sample_size(self) -> float:
        """(sum w)^2 / sum w^2 (Kish): how many on-policy rounds the data is worth."""
        w = self.weight
        return float(w.sum() ** 2 / max((w * w).sum(), 1e-300))

    @property
    def clusters(self) -> int:
        """How many independent units (customers) the rounds come from."""
        return self.n if self.cluster is None else len(np.unique(self.cluster))


# Below these, an estimate is flagged unreliable (``WeightDiagnostics.warnings``): with an
# effective sample size of a few rounds, the normal intervals are meaningless (on the Open Bandit
# Dataset, an ESS of 2 gave intervals below zero and a negative click rate from DR).
MIN_ESS = 100
# The largest single weight may carry at most this share of the weights' sum.
MAX_WEIGHT_SHARE = 0.05
# Under correct propensities the mean weight is 1 when the target policy stays within the
# logging policy's support; further from 1 than this, it does not (or the propensities are wrong).
MEAN_WEIGHT_TOLERANCE = 0.1
WEIGHT_QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class WeightDiagnostics:
    """How much the importance weights w_i = pi(a_i|x_i) / p_i can be trusted, and why not."""

    n: int
    effective_sample_size: float       # (sum w)^2 / sum w^2
    mean_weight: float
    max_weight: float
    max_weight_share: float            # max w / sum w
    quantiles: dict[str, float]        # "p50", "p90", "p99" of w
    zero_share: float                  # share of logged actions the target policy never takes
    warnings: tuple[str, ...]

    @property
    def reliable(self) -> bool:
        return not self.warnings

    def as_dict(self) -> dict:
        return {"effective_sample_size": self.effective_sample_size, "mean_weight": self.mean_weight,
                "max_weight": self.max_weight, "max_weight_share": self.max_weight_share, **self.quantiles,
                "zero_share": self.zero_share, "reliable": self.reliable, "warnings": list(self.warnings)}


def weight_diagnostics(data: LoggedRounds, min_ess: float = MIN_ESS) -> WeightDiagnostics:
    """The weights' effective sample size, mean, maximum, quantiles and zero share, with a
    warning for each way they make the estimates unreliable."""
    w = data.weight
    total = float(w.sum())
    ess = data.effective_sample_size()
    mean, top = float(w.mean()), float(w.max())
    share = top / total if total > 0 else 1.0
    quantiles = {f"p{round(q * 100)}": float(v) for q, v in zip(WEIGHT_QUANTILES, np.quantile(w, WEIGHT_QUANTILES))}
    zero = float(np.mean(data.target_pscore == 0))
    warnings = []
    if ess < min_ess:
        warnings.append(f"effective sample size {ess:,.1f} of {data.n:,} rounds is under {min_ess:,.0f}: the target "
                        "policy is too far from the logging policy for these estimates and their intervals")
    if share > MAX_WEIGHT_SHARE:
        warnings.append(f"one round carries {share:.0%} of the weight (max weight {top:,.1f}): the estimate "
                        "hangs on a handful of decisions")
    if abs(mean - 1) > MEAN_WEIGHT_TOLERANCE:
        warnings.append(f"mean weight {mean:.2f} (1 expected): the target policy puts mass where the logging "
                        "policy puts little or none, or the logged propensities are wrong; IPS and DR are biased")
    return WeightDiagnostics(data.n, ess, mean, top, share, quantiles, zero, tuple(warnings))


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


class Estimator:
    """Base: value = mean of per-round estimates; intervals over rounds."""

    name = "estimator"

    def round_values(self, data: LoggedRounds) -> np.ndarray:
        raise NotImplementedError

    def value(self, data: LoggedRounds) -> float:
        return float(self.round_values(data).mean())

    def influence(self, data: LoggedRounds) -> np.ndarray:
        """Each round's first-order contribution to the error of the value (mean zero)."""
        rounds = self.round_values(data)
        return rounds - rounds.mean()

    def model_weight(self, data: LoggedRounds) -> np.ndarray | None:
        """wtilde in mean(vhat + wtilde (r - qhat)): how the estimate leans on the reward model
        (None: not at all)."""
        return None

    def standard_error(self, data: LoggedRounds) -> float:
        """Standard error of the value: sd / sqrt(n) for independent rounds, the cluster-robust
        sandwich when the rounds carry their customer (module docstring); plus, when the rounds
        carry the reward model's refits, the model's own variance (``RefitSpread``)."""
        psi = self.influence(data)
        n = len(psi)
        if data.cluster is None:
            variance = float((psi * psi).sum() / (n - 1) / n) if n > 1 else np.inf
        else:
            _, codes = np.unique(data.cluster, return_inverse=True)
            sums = np.bincount(codes, weights=psi)
            g = len(sums)
            variance = float(g / (g - 1) * (sums * sums).sum()) / n / n if g >= 2 else np.inf
        model_weight = self.model_weight(data) if data.refits is not None else None
        if model_weight is not None:
            variance += data.refits.variance(model_weight)
        return float(np.sqrt(variance))

    def critical_value(self, data: LoggedRounds, se: float, alpha: float) -> float:
        """The normal interval's half-width in standard errors: the normal quantile."""
        if alpha == 0.05:
            return Z_95
        from statistics import NormalDist

        return NormalDist().inv_cdf(1 - alpha / 2)

    def interval(self, data: LoggedRounds, method: str = "normal", alpha: float = 0.05,
                 n_bootstrap: int = 200, seed: int = 0) -> Estimate:
        """Confidence interval: ``normal`` (value +- z * standard error) or ``bootstrap``
        (percentile interval of the value over customers -- or rounds, without clusters --
        resampled with replacement)."""
        if method == "normal":
            centre, se = self.value(data), self.standard_error(data)
            half = self.critical_value(data, se, alpha) * se
            return Estimate(centre, centre - half, centre + half)
        if method == "bootstrap":
            rng = np.random.default_rng(seed)
            values = [self.value(_take(data, idx)) for idx in _resamples(data, n_bootstrap, rng)]
            low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
            return Estimate(self.value(data), float(low), float(high))
        raise ValueError(f"unknown interval method {method!r}; allowed: 'normal', 'bootstrap'")


def _resamples(data: LoggedRounds, count: int, rng: np.random.Generator):
    """Row indices of ``count`` bootstrap samples: whole clusters drawn with replacement."""
    if data.cluster is None:
        for _ in range(count):
            yield rng.integers(0, data.n, size=data.n)
        return
    order = np.argsort(data.cluster, kind="stable")
    _, starts, sizes = np.unique(data.cluster[order], return_index=True, return_counts=True)
    for _ in range(count):
        pick = rng.integers(0, len(starts), size=len(starts))
        # rows of the picked clusters: for each pick, starts[pick] .. starts[pick] + sizes[pick]
        lengths = sizes[pick]
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        yield order[np.repeat(starts[pick], lengths) + offsets]


def _take(data: LoggedRounds, idx: np.ndarray) -> LoggedRounds:
    """The rounds ``idx`` (the refits, which belong to the whole data, are left out)."""
    return LoggedRounds(data.reward[idx], data.pscore[idx], data.target_pscore[idx],
                        data.q_logged[idx], data.v_target[idx],
                        None if data.cluster is None else data.cluster[idx])


class IPS(Estimator):
    """Inverse propensity scoring: V = mean(w_i r_i).
    Horvitz & Thompson (1952); Strehl et al., "Learning from Logged Implicit Exploration Data",
    NeurIPS 2010. Unbiased when p_i > 0 wherever pi puts mass; variance grows with w."""

    name = "ips"

    def round_values(self, data):
        return data.weight * data.reward


class SNIPS(Estimator):
    """Self-normalised IPS: V = sum(w_i r_i) / sum(w_i).
    Swaminathan & Joachims, "The Self-Normalized Estimator for Counterfactual Learning",
    NeurIPS 2015. Slightly biased, much lower variance than IPS. Per-round estimates are
    w_i r_i / mean(w) (their mean is the estimate); the normal interval uses the delta method's
    influence w_i (r_i - V) / mean(w)."""

    name = "snips"

    def round_values(self, data):
        w = data.weight
        return w * data.reward / max(w.mean(), 1e-300)

    def influence(self, data):
        w = data.weight
        return w * (data.reward - self.value(data)) / max(w.mean(), 1e-300)


class DM(Estimator):
    """Direct method: V = mean(vhat_i), the reward model's value of pi.
    Beygelzimer & Langford (2009); biased by the reward model's errors, low variance."""

    name = "dm"

    def round_values(self, data):
        return data.v_target

    def model_weight(self, data):
        return np.zeros(data.n)


class DR(Estimator):
    """Doubly robust: V = mean(vhat_i + w_i (r_i - qhat_i)).
    Dudik, Langford & Li, "Doubly Robust Policy Evaluation and Learning", ICML 2011. Unbiased
    when the propensities are right, whatever the reward model; low variance when it is good."""

    name = "dr"

    def round_values(self, data):
        return data.v_target + data.weight * (data.reward - data.q_logged)

    def model_weight(self, data):
        return data.weight


class DROS(Estimator):
    """Doubly robust with optimistic shrinkage: DR with w replaced by w_lambda = lambda w /
    (w^2 + lambda), which shrinks large weights toward the reward model.
    Su, Dimakopoulou, Krishnamurthy & Dudik, "Doubly Robust Off-policy Evaluation with
    Shrinkage", ICML 2020. ``shrinkage`` = lambda; lambda -> infinity gives DR, 0 gives DM."""

    name = "dr_os"

    def __init__(self, shrinkage: float = 100.0):
        if not shrinkage >= 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
        self.shrinkage = shrinkage

    def round_values(self, data):
        return data.v_target + shrunk_weights(data.weight, self.shrinkage) * (data.reward - data.q_logged)

    def model_weight(self, data):
        return shrunk_weights(data.weight, self.shrinkage)

    def bias(self, data: LoggedRounds) -> float:
        """What the shrinkage leaves out: mean((w - w_lambda)(r - qhat)) = DR - DR-os, the direct
        estimate of DR-os's bias (with the sign that corrects it)."""
        w = data.weight
        return float(np.mean((w - shrunk_weights(w, self.shrinkage)) * (data.reward - data.q_logged)))

    def critical_value(self, data, se, alpha):
        """The normal interval is bias-aware: value +- cv(|bias| / se) se, cv(t) the 1 - alpha
        quantile of |N(t, 1)| (Armstrong & Kolesar, "Simple and honest confidence intervals in
        nonparametric regression", Quantitative Economics 2020), with the bias estimated
        directly (``bias``) -- the shrinkage's bias is not in the standard error, and without
        it the interval held the truth of the rarest policy on ~80 % of the simulator's seeds.
        With lambda = infinity (DR) the bias is 0 and the interval DR's. The bootstrap is
        percentile, conditional on lambda, and not bias-aware."""
        if not se > 0:
            return super().critical_value(data, se, alpha)
        return bias_aware_critical(abs(self.bias(data)) / se, alpha)


def bias_aware_critical(t: float, alpha: float = 0.05) -> float:
    """c with P(|N(t, 1)| <= c) = 1 - alpha: the half-width, in standard errors, of an interval
    that keeps its coverage when the estimate's bias is t standard errors."""
    from statistics import NormalDist

    normal = NormalDist()
    z = normal.inv_cdf(1 - alpha / 2)
    if not np.isfinite(t):
        return np.inf
    low, high = z, t + z
    for _ in range(100):
        c = (low + high) / 2
        if normal.cdf(c - t) - normal.cdf(-c - t) < 1 - alpha:
            low = c
        else:
            high = c
    return high


def shrunk_weights(w: np.ndarray, shrinkage: float) -> np.ndarray:
    """lambda w / (w^2 + lambda): w for lambda = inf, 0 for lambda = 0."""
    if np.isinf(shrinkage):
        return w
    return shrinkage * w / (w * w + shrinkage) if shrinkage > 0 else np.zeros_like(w)


# Candidate lambdas of the tuned DR-os: 0 (DM) to inf (DR), log-spaced.
SHRINKAGE_GRID = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4, 1e5, np.inf)
TUNING_DELTA = 0.05


class TunedDROS(Estimator):
    """DR-os with lambda chosen from the data (Su, Dimakopoulou, Krishnamurthy & Dudik, ICML
    2020, section 4; as obp's ``DoublyRobustWithShrinkageTuning``): for each candidate lambda,
    estimated MSE = variance of the estimate + (bias bound)^2, where the bias bound is the
    direct estimate |mean((w - w_lambda)(r - qhat))| plus its empirical-Bernstein deviation
    sqrt(2 mean(w^2) log(2/delta) / n) + 2 max(w) log(2/delta) / (3n); the lambda of least
    estimated MSE is used. The variance is the cluster-robust one when rounds carry their
    customer. The interval treats the chosen lambda as fixed (it is conditional on it) and is
    DR-os's bias-aware one at that lambda.
    ``upper_bound=False`` uses the direct bias estimate alone (obp's ``use_bias_upper_bound=
    False``): the Bernstein term is the same for every lambda but, squared with the bias, it
    makes the bound keep DR's weights whenever they are large."""

    def __init__(self, grid: tuple[float, ...] = SHRINKAGE_GRID, delta: float = TUNING_DELTA,
                 upper_bound: bool = False):
        if not grid or any(g < 0 for g in grid):
            raise ValueError(f"the shrinkage grid must hold values >= 0, got {grid}")
        self.grid, self.delta, self.upper_bound = tuple(grid), delta, upper_bound
        self.name = "dr_os_tuned_ub" if upper_bound else "dr_os_tuned"

    def scores(self, data: LoggedRounds) -> dict[float, float]:
        """Estimated MSE of DR-os for each lambda of the grid."""
        w, n = data.weight, data.n
        residual = data.reward - data.q_logged
        deviation = (np.sqrt(2 * np.mean(w * w) * np.log(2 / self.delta) / n)
                     + 2 * w.max() * np.log(2 / self.delta) / (3 * n)) if self.upper_bound else 0.0
        out = {}
        for shrinkage in self.grid:
            fixed = DROS(shrinkage)
            variance = fixed.standard_error(data) ** 2
            bias = abs(float(np.mean((w - shrunk_weights(w, shrinkage)) * residual))) + deviation
            out[shrinkage] = variance + bias * bias
        return out

    def chosen(self, data: LoggedRounds) -> float:
        scores = self.scores(data)
        return min(scores, key=scores.get)

    def round_values(self, data):
        return DROS(self.chosen(data)).round_values(data)

    def model_weight(self, data):
        return DROS(self.chosen(data)).model_weight(data)

    def interval(self, data, method="normal", **kwargs) -> Estimate:
        """The normal interval tunes once (value and standard error share the chosen lambda); the
        bootstrap re-tunes in each replicate."""
        if method == "normal":
            return DROS(self.chosen(data)).interval(data, method, **kwargs)
        return super().interval(data, method, **kwargs)


ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (IPS(), SNIPS(), DM(), DR(), DROS(), TunedDROS(),
                                                        TunedDROS(upper_bound=True))}


def evaluate(data: LoggedRounds, method: str = "normal", estimators: dict[str, Estimator] | None = None
             ) -> dict[str, object]:
    """Every estimator's value and 95 % interval, the sample size, the weights' diagnostics
    (``weights``: effective sample size, mean, max, quantiles, zero share, ``reliable``) and
    their ``warnings`` (empty when the weights give no reason for doubt)."""
    diagnostics = weight_diagnostics(data)
    result: dict[str, object] = {"n": data.n, "customers": data.clusters,
                                 "effective_sample_size": diagnostics.effective_sample_size,
                                 "weights": diagnostics.as_dict(), "warnings": list(diagnostics.warnings)}
    for name, est in (estimators or ESTIMATORS).items():
        result[name] = est.interval(data, method=method).as_dict()
    for name, est in (estimators or ESTIMATORS).items():
        if isinstance(est, TunedDROS):
            chosen = est.chosen(data)
            result[name]["shrinkage"] = chosen if np.isfinite(chosen) else "inf"
    return result
