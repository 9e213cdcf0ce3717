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

import contextlib
import copy
import dataclasses
import datetime as dt
import logging
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from tqdm import tqdm

from engine.catalog import Catalog, ModelSettings
from engine.value_model import ValueModel
from training.cache import build, decisions
from training.dataset import LoggedDecision, chosen_action_line
from training.estimators import ESTIMATORS, REFIT_ROWS, REFITS, LoggedRounds, RefitSpread, evaluate
from training.logs import ReadReport, Select
from training.parallel import ray_session, run_all
from training.target_policies import EvalPolicy

log = logging.getLogger(__name__)

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

    def learn(self, d: LoggedDecision, times: int = 1) -> None:
        """Learn ``d`` ``times`` times."""
        probability = d.probability if self.importance_weighted else 1.0
        for _ in range(times):
            self.decisions += 1
            self.actions += len(d.actions)
            self.model.learn_dsjson(chosen_action_line(d, probability * self.actions / self.decisions))


class RewardModel:
    """Cross-fitted VW regression of the reward on context and action, with ``refits``
    bootstrap refits of it (module docstring; 0: none, the model taken as fixed). Each fold has
    its own learners -- the model, then each refit -- fed that fold's decisions in log order,
    so the folds can be learned apart (``folds_held``: the folds this instance learns) and put
    together (``join``) into the model one pass would have made."""

    def __init__(self, settings: ModelSettings, folds: int = FOLDS, learning_rate: float = REWARD_LR,
                 power_t: float = REWARD_POWER_T, refits: int = 0, seed: int = 0,
                 folds_held: tuple[int, ...] | None = None):
        if folds < 2:
            raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
        if refits < 0 or refits == 1:
            raise ValueError(f"refits must be 0 (none) or at least 2, got {refits}")
        self.regression = dataclasses.replace(settings, cb_type="mtr", learning_rate=learning_rate,
                                              power_t=power_t, importance_weighted=True, structure="direct")
        self.folds, self.n_refits, self.seed = folds, refits, seed
        held = range(folds) if folds_held is None else folds_held
        # fold -> [the model, refit 0, refit 1, ...]
        self.learners = {k: [ChosenActionLearner(self.regression, f"reward-fold-{k}")]
                         + [ChosenActionLearner(self.regression, f"refit-{b}-fold-{k}") for b in range(refits)]
                         for k in held}
        self._draws: dict[str, np.ndarray] = {}

    def join(self, other: RewardModel) -> None:
        """Take over the folds ``other`` learned."""
        self.learners.update(other.learners)

    def holding(self, fold: int) -> RewardModel:
        """This model with ``fold``'s learners only: what predicting the decisions of the fold
        after it needs (a smaller thing to ship to another process)."""
        part = copy.copy(self)
        part.learners, part._draws = {fold: self.learners[fold]}, {}
        return part

    def fold(self, d: LoggedDecision) -> int:
        return zlib.crc32(d.event_id.encode()) % self.folds

    def draws(self, customer: str) -> np.ndarray:
        """How many times each refit's resample holds this customer (Poisson(1), fixed per customer)."""
        draws = self._draws.get(customer)
        if draws is None:
            rng = np.random.default_rng([self.seed, zlib.crc32(customer.encode())])
            draws = self._draws[customer] = rng.poisson(1.0, self.n_refits)
        return draws

    def learn(self, d: LoggedDecision) -> None:
        """Learn ``d`` into its fold's learners (if this instance holds that fold)."""
        learners = self.learners.get(self.fold(d))
        if learners is None:
            return
        learners[0].learn(d)
        if self.n_refits:
            for refit, times in zip(learners[1:], self.draws(d.customer_id)):
                if times:
                    refit.learn(d, int(times))

    def _other(self, d: LoggedDecision) -> list[ChosenActionLearner]:
        return self.learners[(self.fold(d) + 1) % self.folds]

    def predict(self, d: LoggedDecision) -> np.ndarray:
        """Out-of-fold predicted reward of each of the decision's actions."""
        return self._other(d)[0].model.values(d.context, len(d.actions))

    def predict_refits(self, d: LoggedDecision) -> np.ndarray:
        """(refits, actions): each refit's out-of-fold prediction, the context parsed once."""
        learners = self._other(d)
        examples = learners[0].model.parse(d.context)
        return np.array([refit.model.values_parsed(examples, len(d.actions)) for refit in learners[1:]])


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


_EVENT_ID = re.compile(rb'"EventId"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _fold_lines(folds: int, fold: int, lines: tuple[int, int] | None = None) -> Select:
    """The log lines, of the range ``lines`` if given, that may hold a decision of ``fold``, told
    by the event id in the raw line without parsing it. A line without one (not a decision) is
    read by fold 0 only, so that each line is read, and counted, once over the folds."""
    def select(number: int, raw: bytes) -> bool:
        if lines is not None and not lines[0] <= number < lines[1]:
            return False
        match = _EVENT_ID.search(raw)
        if match is None:
            return fold == 0
        ident = match.group(1)
        if b"\\" in ident:
            ident = orjson.loads(b'"' + ident + b'"').encode()
        return zlib.crc32(ident) % folds == fold
    return select


@dataclass(frozen=True)
class _Job:
    """What one part of an evaluation needs (a Ray task's argument, or the whole in process)."""

    log_dir: Path
    catalog: Catalog
    start: dt.datetime | None
    end: dt.datetime | None
    passes: int = 1
    refits: int = 0
    seed: int = 0
    progress: bool = False
    cache: Path | None = None  # the decisions' cache (training.cache), read instead of the logs

    def decisions(self, report: ReadReport | None = None, select: Select | None = None,
                  desc: str = "") -> Iterator[LoggedDecision]:
        return tqdm(decisions(self.log_dir, self.catalog, self.cache, report, self.start, self.end, select,
                              "evaluate"),
                    disable=not self.progress, unit="decision", unit_scale=True, desc=desc)

    def learn(self, fold: int | None = None) -> tuple[RewardModel, list[int]]:
        """The reward model (of one fold, or all), and the log lines of the decisions learned."""
        model = RewardModel(self.catalog.model, refits=self.refits, seed=self.seed,
                            folds_held=None if fold is None else (fold,))
        select = None if fold is None else _fold_lines(model.folds, fold)
        for k in range(self.passes):
            lines = []
            for d in self.decisions(select=select, desc=f"reward model, pass {k + 1}/{self.passes}"):
                if fold is None or model.fold(d) == fold:
                    model.learn(d)
                    lines.append(d.log_line)
        return model, lines


@dataclass
class _Scored:
    """The per-decision columns of one range of the logs, in log order."""

    rewards: list[float] = field(default_factory=list)
    pscores: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    cols: dict[str, tuple[list, list, list]] = field(default_factory=dict)   # target p of the logged action, q, v
    spread: dict[str, tuple[list, list]] = field(default_factory=dict)  # per spread row: (refits,) v and q logged
    report: ReadReport = field(default_factory=ReadReport)
    lines: list[int] = field(default_factory=list)  # each decision's log line
    spread_at: list[int] = field(default_factory=list)  # the log lines of the spread rows

    @classmethod
    def merged(cls, parts: list[_Scored]) -> _Scored:
        """The parts' columns as one, in log order (each part is in log order)."""
        out = cls(report=ReadReport())
        order = np.argsort(np.concatenate([np.array(p.lines, dtype=np.int64) for p in parts]), kind="stable")
        spread_order = np.argsort(np.concatenate(
            [np.array(p.spread_at, dtype=np.int64) for p in parts]), kind="stable")

        def joined(columns: list[list], by: np.ndarray) -> list:
            flat = [x for column in columns for x in column]
            return [flat[i] for i in by]

        for name in ("rewards", "pscores", "ids", "customers", "lines"):
            setattr(out, name, joined([getattr(p, name) for p in parts], order))
        out.spread_at = joined([p.spread_at for p in parts], spread_order)
        for policy in parts[0].cols:
            out.cols[policy] = tuple(joined([p.cols[policy][c] for p in parts], order) for c in range(3))
            out.spread[policy] = tuple(joined([p.spread[policy][c] for p in parts], spread_order) for c in range(2))
        for p in parts:
            out.report.read += p.report.read
            out.report.skipped.update(p.report.skipped)
        return out


def _score(job: _Job, reward_model: RewardModel, policies: list[EvalPolicy], spread_lines: set[int],
           fold: int | None = None, lines: tuple[int, int] | None = None, observer=None) -> _Scored:
    """Every policy's columns on the decisions (of ``fold``, of log lines [lines), when given)."""
    out = _Scored(cols={p.name: ([], [], []) for p in policies}, spread={p.name: ([], []) for p in policies})
    select = None if fold is None else _fold_lines(reward_model.folds, fold, lines)
    for d in job.decisions(out.report, select, desc="scoring policies"):
        if fold is not None and reward_model.fold(d) != fold:
            out.report.read -= 1  # (read by its own fold's task)
            continue
        q = reward_model.predict(d)
        q_refits = None
        if d.log_line in spread_lines:
            q_refits = reward_model.predict_refits(d)
            out.spread_at.append(d.log_line)
        probs = {}
        for policy in policies:
            p = policy.probabilities(d)
            probs[policy.name] = p
            target, q_logged, v = out.cols[policy.name]
            target.append(p[d.chosen])
            q_logged.append(q[d.chosen])
            v.append(float(p @ q))
            if q_refits is not None:
                out.spread[policy.name][0].append(q_refits @ p)
                out.spread[policy.name][1].append(q_refits[:, d.chosen])
        out.rewards.append(d.reward)
        out.pscores.append(d.probability)
        out.ids.append(d.event_id)
        out.customers.append(d.customer_id)
        out.lines.append(d.log_line)
        if observer is not None:
            observer(d, probs)
    return out


def _learn_task(call: tuple[_Job, int]) -> tuple[RewardModel, list[int]]:
    job, fold = call
    return job.learn(fold)


def _score_task(call: tuple) -> _Scored:
    return _score(*call)


def evaluate_logs(log_dir: str | Path, catalog: Catalog, policies: list[EvalPolicy],
                  start: dt.datetime | None = None, end: dt.datetime | None = None,
                  passes: int = 1, progress: bool = False,
                  observer: Callable[[LoggedDecision, dict[str, np.ndarray]], None] | None = None,
                  refits: int = REFITS, refit_rows: int = REFIT_ROWS, seed: int = 0,
                  workers: int | None = None, ray_address: str | None = None, cache: bool = False) -> Evaluation:
    """Evaluate ``policies`` on the decisions logged in [start, end). ``passes``: passes of the
    reward model over the data before scoring. ``refits``: bootstrap refits of the reward model
    whose spread on ``refit_rows`` decisions enters the intervals (0: the model taken as fixed).
    ``observer(decision, {policy: probabilities})`` sees every decision scored (the simulator's
    ground truth uses it).

    ``workers`` or ``ray_address``: on Ray (``training.parallel``), the same estimates. Each
    fold's reward model is learned in a task of its own (its learners see the decisions they see
    in one process, in the same order), then ranges of the logs are scored in ``workers`` tasks
    (default: the Ray's CPUs) with the models shipped to them, and the columns joined in log
    order before the estimators run.

    ``cache``: read the decisions from the log directory's Parquet cache (``training.cache``),
    made first if the logs have none that matches them: the same estimates."""
    if passes < 1:
        raise ValueError(f"passes must be at least 1, got {passes}")
    if refit_rows < 1:
        raise ValueError(f"refit_rows must be at least 1, got {refit_rows}")
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must differ: {names}")
    on_ray = workers is not None or ray_address is not None
    if on_ray and observer is not None:
        raise ValueError("an observer sees decisions in this process: evaluate without Ray")
    started = time.perf_counter()
    cache_file = build(log_dir, catalog)[0] if cache else None
    job = _Job(Path(log_dir), catalog, start, end, passes, refits, seed, progress and not on_ray, cache_file)
    phases = {}  # phase -> when it ended, seconds from the start
    with ray_session(workers, ray_address) if on_ray else contextlib.nullcontext():
        phases["setup"] = time.perf_counter() - started
        if on_ray:
            import ray

            parts = run_all(_learn_task, [(job, k) for k in range(FOLDS)], progress=progress and "reward model")
            reward_model = parts[0][0]
            for part, _ in parts[1:]:
                reward_model.join(part)
            lines = sorted(line for _, fold_lines in parts for line in fold_lines)
        else:
            reward_model, lines = job.learn()
        count = len(lines)
        phases["reward model"] = time.perf_counter() - started
        # the decisions (by position) on which the refits' spread is measured
        rng = np.random.default_rng(seed)
        spread_rows = np.sort(rng.choice(count, size=min(refit_rows, count), replace=False)) if refits else np.zeros(0, int)
        spread_lines = {lines[i] for i in spread_rows.tolist()}
        if on_ray:
            # each fold's decisions, in ranges of the log, scored with the other fold's model only
            cpus = workers if workers is not None else int(ray.available_resources().get("CPU", 1))
            ranges = max(1, -(-cpus // FOLDS))
            calls = []
            for fold, (_, fold_lines) in enumerate(parts):
                model = reward_model.holding((fold + 1) % FOLDS)
                n = len(fold_lines)
                bounds = [0] + [fold_lines[n * r // ranges] for r in range(1, ranges) if n] + [2**63]
                calls += [(job, model, policies, spread_lines, fold, (lo, hi)) for lo, hi in zip(bounds, bounds[1:])]
            scored = _Scored.merged(run_all(_score_task, calls, progress=progress and "scoring policies"))
        else:
            scored = _score(job, reward_model, policies, spread_lines, observer=observer)
        phases["scoring"] = time.perf_counter() - started
    phases["stop"] = time.perf_counter() - started
    if not scored.ids:
        window = f" between {start} and {end}" if start or end else ""
        raise ValueError(f"{log_dir}: no decisions to evaluate{window} ({scored.report})")
    if len(scored.ids) != count:
        raise ValueError(f"{log_dir}: the logs changed while they were evaluated ({count:,} decisions learned, "
                         f"{len(scored.ids):,} scored); evaluate a directory no server is writing to, or a closed time range")
    reward, pscore = np.array(scored.rewards), np.array(scored.pscores)
    cluster = np.unique(np.array(scored.customers), return_inverse=True)[1].astype(np.int64)
    rounds = {}
    for name in names:
        t, q, v = scored.cols[name]
        refit_spread = (RefitSpread(spread_rows, np.array(scored.spread[name][0]).T, np.array(scored.spread[name][1]).T)
                        if refits else None)
        rounds[name] = LoggedRounds(reward, pscore, np.array(t), np.array(q), np.array(v), cluster, refit_spread)
    ends = list(phases.values())
    log.info("evaluated %d decisions: %s", len(scored.ids), ", ".join(
        f"{name} {end - before:.1f} s" for name, end, before in zip(phases, ends, [0.0, *ends])))
    return Evaluation(rounds, scored.ids, scored.report, time.perf_counter() - started, start, end)


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
