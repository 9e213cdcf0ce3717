"""Off-policy evaluation of any policies on logged decisions.

One pass (or more) over the logs trains the reward model q(x, a) that DM and DR need; a final
pass computes, for every logged decision and every policy, pi(a_i|x_i), q(x_i, a_i) and
sum_a pi(a|x_i) q(x_i, a), which is all ``training.estimators`` needs.

The reward model is *cross-fitted*: decisions are split in two folds by a hash of their event
id, a VW regression (``--cb_adf --cb_type mtr``, the catalog's features and interactions) is
trained on each, and each decision is scored by the model that did not see it -- so DR's
correction term is not fitted to the noise it corrects, and its interval stays honest.

Every round carries its customer, so the estimators' intervals are cluster-robust by customer:
a customer's weekly decisions share purchases, fatigue and consent, and treating them as
independent made the intervals too narrow (validation against the simulator's ground truth).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.catalog import Catalog, ModelSettings
from engine.value_model import ValueModel
from training.dataset import LoggedDecision, iter_decisions
from training.estimators import ESTIMATORS, LoggedRounds, evaluate
from training.logs import ReadReport
from training.target_policies import EvalPolicy

FOLDS = 2
# The reward model is VW's importance-weighted regression (``--cb_type mtr``: squared loss on
# the logged action, weight 1/p). Not ``dm``: in ``--cb_adf`` VW's dm also trains every action
# that was *not* chosen toward cost 0, so its predictions shrink toward 0 by the number of
# actions (measured: mean prediction 0.03 EUR where the mean reward is 1.17). A constant
# learning rate (power_t 0) of 0.02 gave the lowest out-of-fold squared error on simulator logs.
REWARD_LR = 0.02
REWARD_POWER_T = 0.0


class RewardModel:
    """Cross-fitted VW regression of the reward on context and action."""

    def __init__(self, settings: ModelSettings, folds: int = FOLDS, learning_rate: float = REWARD_LR,
                 power_t: float = REWARD_POWER_T):
        if folds < 2:
            raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
        regression = dataclasses.replace(settings, cb_type="mtr", learning_rate=learning_rate,
                                         power_t=power_t, importance_weighted=True, structure="direct")
        self.models = [ValueModel(regression, version=f"reward-fold-{k}")
                       for k in range(folds)]

    def fold(self, d: LoggedDecision) -> int:
        return zlib.crc32(d.event_id.encode()) % len(self.models)

    def learn(self, d: LoggedDecision) -> None:
        self.models[self.fold(d)].learn_dsjson(d.line)

    def predict(self, d: LoggedDecision) -> np.ndarray:
        """Out-of-fold predicted reward of each of the decision's actions."""
        other = (self.fold(d) + 1) % len(self.models)
        return self.models[other].values(d.context, len(d.actions))


@dataclass
class Evaluation:
    """Per-policy logged rounds over the same decisions, and what reading found."""

    rounds: dict[str, LoggedRounds]
    event_ids: list[str]
    report: ReadReport
    seconds: float
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    summaries: dict[str, dict] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.event_ids)

    def summary(self, name: str, method: str = "normal") -> dict:
        """n, effective sample size and every estimator's value with its 95 % interval."""
        key = f"{name}:{method}"
        if key not in self.summaries:
            self.summaries[key] = evaluate(self.rounds[name], method=method, estimators=ESTIMATORS)
        return self.summaries[key]


def evaluate_logs(log_dir: str | Path, catalog: Catalog, policies: list[EvalPolicy],
                  start: dt.datetime | None = None, end: dt.datetime | None = None,
                  passes: int = 1, progress: bool = False,
                  observer: Callable[[LoggedDecision, dict[str, np.ndarray]], None] | None = None
                  ) -> Evaluation:
    """Evaluate ``policies`` on the decisions logged in [start, end). ``passes``: passes of the
    reward model over the data before scoring. ``observer(decision, {policy: probabilities})``
    sees every decision scored (the simulator's ground truth uses it)."""
    if passes < 1:
        raise ValueError(f"passes must be at least 1, got {passes}")
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must differ: {names}")
    started = time.perf_counter()
    reward_model = RewardModel(catalog.model)
    for k in range(passes):
        for d in tqdm(iter_decisions(log_dir, catalog, start=start, end=end), disable=not progress,
                      unit="decision", unit_scale=True, desc=f"reward model, pass {k + 1}/{passes}"):
            reward_model.learn(d)
    report = ReadReport()
    rewards, pscores, ids, customers = [], [], [], []
    cols = {name: ([], [], []) for name in names}  # target p of the logged action, q, v
    for d in tqdm(iter_decisions(log_dir, catalog, report, start=start, end=end), disable=not progress,
                  unit="decision", unit_scale=True, desc="scoring policies"):
        q = reward_model.predict(d)
        probs = {}
        for policy in policies:
            p = policy.probabilities(d)
            probs[policy.name] = p
            target, q_logged, v = cols[policy.name]
            target.append(p[d.chosen])
            q_logged.append(q[d.chosen])
            v.append(float(p @ q))
        rewards.append(d.reward)
        pscores.append(d.probability)
        ids.append(d.event_id)
        customers.append(d.customer_id)
        if observer is not None:
            observer(d, probs)
    if not ids:
        window = f" between {start} and {end}" if start or end else ""
        raise ValueError(f"{log_dir}: no decisions to evaluate{window} ({report})")
    reward, pscore = np.array(rewards), np.array(pscores)
    cluster = np.unique(np.array(customers), return_inverse=True)[1].astype(np.int64)
    rounds = {name: LoggedRounds(reward, pscore, np.array(t), np.array(q), np.array(v), cluster)
              for name, (t, q, v) in cols.items()}
    return Evaluation(rounds, ids, report, time.perf_counter() - started, start, end)


ROW_ESTIMATORS = ("ips", "snips", "dm", "dr", "dr_os", "dr_os_tuned")


def table(evaluation: Evaluation, method: str = "normal") -> str:
    """A printable table: each policy's estimates (EUR per decision) with 95 % intervals."""
    head = f"{'policy':<28} {'ESS':>9}  " + "  ".join(f"{e:>22}" for e in ROW_ESTIMATORS)
    lines = [head, "-" * len(head)]
    for name in evaluation.rounds:
        s = evaluation.summary(name, method)
        cells = "  ".join(f"{s[e]['value']:>7.3f} [{s[e]['low']:>6.3f},{s[e]['high']:>6.3f}]"
                          for e in ROW_ESTIMATORS)
        flag = "" if not s["warnings"] else "  (!)"
        lines.append(f"{name[:28]:<28} {s['effective_sample_size']:>9,.0f}  {cells}{flag}")
    return "\n".join(lines)


def warnings_text(evaluation: Evaluation, method: str = "normal") -> str:
    """Each flagged policy's warnings about its weights (empty when none is flagged)."""
    lines = []
    for name in evaluation.rounds:
        for warning in evaluation.summary(name, method)["warnings"]:
            lines.append(f"(!) {name}: {warning}")
    return "\n".join(lines)
