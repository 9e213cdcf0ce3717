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

The reward model's own sampling error enters the intervals of the estimators that lean on it
(DM, DR-os, and DR to second order) through ``refits`` bootstrap refits of the model: each
refit learns every customer's decisions k ~ Poisson(1) times (the online bootstrap of Oza &
Russell, "Online Bagging and Boosting", AISTATS 2001: a resample of customers with
replacement), cross-fitted like the model itself, and predicts a fixed random subsample of
``REFIT_ROWS`` decisions; the spread of its value there over the refits is the model's variance
(``training.estimators.RefitSpread``). Without it DM's interval held the truth on 0-5 % of the
simulator's seeds, its half-width ~1 % of the value while refitting moved it by 10-50 %.

VW's ``--cb_type mtr`` learns only the logged action of a decision, weighted 1/p times
(decisions seen / actions seen), so the models learn each decision from a line holding the
shared context and the logged action alone, its probability scaled by the actions-per-decision
ratio the full lines would have given (``ChosenActionLearner``): the same model to float
rounding (tests/test_training.py), about ten times faster -- which is what makes the refits
affordable.
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
import orjson
from tqdm import tqdm

from engine.catalog import Catalog, ModelSettings
from engine.value_model import ValueModel
from training.dataset import LoggedDecision, iter_decisions
from training.estimators import ESTIMATORS, REFIT_ROWS, REFITS, LoggedRounds, RefitSpread, evaluate
from training.logs import ReadReport
from training.target_policies import EvalPolicy

FOLDS = 2
# The reward model is VW's importance-weighted regression (``--cb_type mtr``: squared loss on
# the logged action, weight 1/p). Not ``dm``: in ``--cb_adf`` VW's dm also trains every action
# that was *not* chosen toward cost 0, so its predictions shrink toward 0 by the number of
# actions (measured: mean prediction 0.03 EUR where the mean reward is 1.17). Importance weighted
# (consistent for the value under any target policy) with VW's decaying learning rate (0.5,
# power_t 0.5): on 6 simulator seeds DM's relative bias was -6 / -3 / +1 % (rules / oracle / no
# contact) and its relative RMSE 27 / 5 / 28 %, against 44 / 20 / 43 % with the constant 0.02
# that minimises the out-of-fold squared error per round, and a bias of up to -35 % unweighted
# (docs/experiments.md).
REWARD_LR = 0.5
REWARD_POWER_T = 0.5


def chosen_action_record(d: LoggedDecision) -> dict:
    """``d``'s DSJSON record (with its joined cost) holding the shared context and the logged
    action only; its probability is set by ``chosen_action_line``."""
    record = d.record
    context = dict(record["c"])
    context["_multi"] = [context["_multi"][d.chosen]]
    line = {k: v for k, v in record.items() if k not in ("c", "a", "p", "_nba")}
    line.update({"_labelIndex": 0, "_label_Action": 1, "_label_probability": 1.0, "a": [1], "p": [1.0],
                 "c": context})
    return line


def chosen_action_line(record: dict, probability: float) -> str:
    """A ``chosen_action_record`` as a DSJSON line logged with ``probability`` (the record is
    reused: its keys keep their places)."""
    record["_label_probability"] = probability
    record["p"] = [probability]
    return orjson.dumps(record).decode()


class ChosenActionLearner:
    """A VW ``--cb_type mtr`` regression that learns each decision from its logged action alone
    (module docstring): the probability is scaled by actions / decisions seen so far, the ratio
    VW's mtr would have applied to the full line."""

    def __init__(self, settings: ModelSettings, version: str):
        if settings.cb_type != "mtr":
            raise ValueError(f"learning from the logged action alone is mtr's update, not {settings.cb_type!r}'s")
        # the rescaled probability is passed to VW as it is (importance_weighted = false would
        # replace it by 1): without importance weights, it rescales a probability of 1
        self.importance_weighted = settings.importance_weighted
        self.model = ValueModel(dataclasses.replace(settings, importance_weighted=True), version=version)
        self.decisions = 0
        self.actions = 0

    def learn(self, d: LoggedDecision, times: int = 1, record: dict | None = None) -> None:
        """Learn ``d`` ``times`` times (``record``: its ``chosen_action_record``, if already built)."""
        record = chosen_action_record(d) if record is None else record
        probability = d.probability if self.importance_weighted else 1.0
        for _ in range(times):
            self.decisions += 1
            self.actions += len(d.actions)
            self.model.learn_dsjson(chosen_action_line(record, probability * self.actions / self.decisions))


class RewardModel:
    """Cross-fitted VW regression of the reward on context and action, with ``refits``
    bootstrap refits of it (module docstring; 0: none, the model taken as fixed)."""

    def __init__(self, settings: ModelSettings, folds: int = FOLDS, learning_rate: float = REWARD_LR,
                 power_t: float = REWARD_POWER_T, refits: int = 0, seed: int = 0):
        if folds < 2:
            raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
        if refits < 0 or refits == 1:
            raise ValueError(f"refits must be 0 (none) or at least 2, got {refits}")
        self.regression = dataclasses.replace(settings, cb_type="mtr", learning_rate=learning_rate,
                                              power_t=power_t, importance_weighted=True, structure="direct")
        self.models = [ChosenActionLearner(self.regression, f"reward-fold-{k}") for k in range(folds)]
        self.refits = [[ChosenActionLearner(self.regression, f"refit-{b}-fold-{k}") for k in range(folds)]
                       for b in range(refits)]
        self.seed = seed
        self._draws: dict[str, np.ndarray] = {}

    def fold(self, d: LoggedDecision) -> int:
        return zlib.crc32(d.event_id.encode()) % len(self.models)

    def draws(self, customer: str) -> np.ndarray:
        """How many times each refit's resample holds this customer (Poisson(1), fixed per customer)."""
        draws = self._draws.get(customer)
        if draws is None:
            rng = np.random.default_rng([self.seed, zlib.crc32(customer.encode())])
            draws = self._draws[customer] = rng.poisson(1.0, len(self.refits))
        return draws

    def learn(self, d: LoggedDecision) -> None:
        fold = self.fold(d)
        record = chosen_action_record(d)
        self.models[fold].learn(d, record=record)
        if self.refits:
            for refit, times in zip(self.refits, self.draws(d.customer_id)):
                if times:
                    refit[fold].learn(d, int(times), record)

    def predict(self, d: LoggedDecision) -> np.ndarray:
        """Out-of-fold predicted reward of each of the decision's actions."""
        other = (self.fold(d) + 1) % len(self.models)
        return self.models[other].model.values(d.context, len(d.actions))

    def predict_refits(self, d: LoggedDecision) -> np.ndarray:
        """(refits, actions): each refit's out-of-fold prediction, the context parsed once."""
        other = (self.fold(d) + 1) % len(self.models)
        examples = self.models[other].model.parse(d.context)
        return np.array([refit[other].model.values_parsed(examples, len(d.actions)) for refit in self.refits])


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
                  observer: Callable[[LoggedDecision, dict[str, np.ndarray]], None] | None = None,
                  refits: int = REFITS, refit_rows: int = REFIT_ROWS, seed: int = 0) -> Evaluation:
    """Evaluate ``policies`` on the decisions logged in [start, end). ``passes``: passes of the
    reward model over the data before scoring. ``refits``: bootstrap refits of the reward model
    whose spread on ``refit_rows`` decisions enters the intervals (0: the model taken as fixed).
    ``observer(decision, {policy: probabilities})`` sees every decision scored (the simulator's
    ground truth uses it)."""
    if passes < 1:
        raise ValueError(f"passes must be at least 1, got {passes}")
    if refit_rows < 1:
        raise ValueError(f"refit_rows must be at least 1, got {refit_rows}")
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must differ: {names}")
    started = time.perf_counter()
    reward_model = RewardModel(catalog.model, refits=refits, seed=seed)
    for k in range(passes):
        count = 0
        for d in tqdm(iter_decisions(log_dir, catalog, start=start, end=end), disable=not progress,
                      unit="decision", unit_scale=True, desc=f"reward model, pass {k + 1}/{passes}"):
            reward_model.learn(d)
            count += 1
    # the decisions (by position) on which the refits' spread is measured
    rng = np.random.default_rng(seed)
    spread_rows = np.sort(rng.choice(count, size=min(refit_rows, count), replace=False)) if refits else np.zeros(0, int)
    spread_at = set(spread_rows.tolist())
    spread = {name: ([], []) for name in names}  # per spread row: (refits,) v and q of the logged action
    report = ReadReport()
    rewards, pscores, ids, customers = [], [], [], []
    cols = {name: ([], [], []) for name in names}  # target p of the logged action, q, v
    for i, d in enumerate(tqdm(iter_decisions(log_dir, catalog, report, start=start, end=end),
                               disable=not progress, unit="decision", unit_scale=True, desc="scoring policies")):
        q = reward_model.predict(d)
        q_refits = reward_model.predict_refits(d) if i in spread_at else None
        probs = {}
        for policy in policies:
            p = policy.probabilities(d)
            probs[policy.name] = p
            target, q_logged, v = cols[policy.name]
            target.append(p[d.chosen])
            q_logged.append(q[d.chosen])
            v.append(float(p @ q))
            if q_refits is not None:
                spread[policy.name][0].append(q_refits @ p)
                spread[policy.name][1].append(q_refits[:, d.chosen])
        rewards.append(d.reward)
        pscores.append(d.probability)
        ids.append(d.event_id)
        customers.append(d.customer_id)
        if observer is not None:
            observer(d, probs)
    if not ids:
        window = f" between {start} and {end}" if start or end else ""
        raise ValueError(f"{log_dir}: no decisions to evaluate{window} ({report})")
    if len(ids) != count:
        raise ValueError(f"{log_dir}: the logs changed while they were evaluated ({count:,} decisions learned, "
                         f"{len(ids):,} scored); evaluate a directory no server is writing to, or a closed time range")
    reward, pscore = np.array(rewards), np.array(pscores)
    cluster = np.unique(np.array(customers), return_inverse=True)[1].astype(np.int64)
    rounds = {}
    for name, (t, q, v) in cols.items():
        refit_spread = (RefitSpread(spread_rows, np.array(spread[name][0]).T, np.array(spread[name][1]).T)
                        if refits else None)
        rounds[name] = LoggedRounds(reward, pscore, np.array(t), np.array(q), np.array(v), cluster, refit_spread)
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
