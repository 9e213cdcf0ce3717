"""Off-policy evaluation checked against the simulator's ground truth.

The engine logs decisions in the simulator exactly as it does in production (DSJSON decisions +
outcomes), exploring either uniformly over the feasible actions (``log_uniform``) or around the
policies that will be evaluated (``log_targeted``: a mixture of them plus uniform exploration,
so every target's choice is likely and every other action still possible). While it runs,
``TruthRecorder`` asks the simulator for the *exact* expected logged reward of every feasible
action of every decision (``ResponseModel.expected_reward``: hidden traits, the funnel, the
attribution window). The true
value of any policy pi on those decisions is then

    V(pi) = mean_i sum_a pi(a|x_i) Q*(x_i, a)

with no sampling noise, and the off-policy estimates computed from the logs alone
(``training.evaluate``) are compared with it. The oracle is a policy here too: the action of
highest Q* among each decision's logged feasible actions.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path

import numpy as np
import orjson

from engine.catalog import Catalog
from engine.pipeline import DecisionEngine
from simulators.policies import EnginePolicy
from simulators.runner import DecisionBatch, Feedback, Simulation, policy_seed
from simulators.scenario import Scenario, load_scenario
from training.dataset import LoggedDecision
from training.target_policies import EvalPolicy, one_hot


def validation_scenario(name: str = "default") -> Scenario:
    """The scenario whose ground truth ``ResponseModel.expected_reward`` computes exactly: its
    catalog with window attribution (every purchase in the attribution window counts), the
    noisiest reward definition. The catalog's default (click-through attribution) is not
    covered by the exact expectation."""
    scenario = load_scenario(name)
    reward = dataclasses.replace(scenario.catalog.reward, purchase_attribution="window")
    return dataclasses.replace(scenario, catalog=dataclasses.replace(scenario.catalog, reward=reward))


def logging_catalog(catalog: Catalog, algorithm: str = "epsilon_greedy", epsilon: float = 1.0,
                    softmax_lambda: float = 1.0) -> Catalog:
    """The catalog with the logging policy's exploration (default: uniform over every feasible
    action; no default contact or slot averaging) and no budgets, so every offer stays feasible
    for the whole run; caps and gap still apply."""
    exploration = dataclasses.replace(catalog.exploration, algorithm=algorithm, epsilon=epsilon,
                                      softmax_lambda=softmax_lambda, no_contact_floor=0.0, default_offer=None,
                                      default_channels=(), slot_value="best")
    constraints = dataclasses.replace(catalog.constraints, budgets=())
    return dataclasses.replace(catalog, exploration=exploration, constraints=constraints)


def action_label(features: dict) -> str:
    """An action's label from its features in a context (``engine.features.action_features``)."""
    offer = next(k for k in features["O"] if k.startswith("offer="))[len("offer="):]
    if offer == "none":
        return "no_contact"
    channel = next(k for k in features["C"] if k.startswith("channel="))[len("channel="):]
    slot = next(k for k in features["T"] if k.startswith("slot="))[len("slot="):]
    return f"{offer}/{channel}/{slot}"


def q_of_labels(index: dict[str, int], q_row: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """A request's Q* row (in the simulator's action order, ``index``: label -> column) for the
    actions ``labels``, in their order."""
    return q_row[[index[label] for label in labels]]


class TargetedLogger:
    """A value model for the logging engine that makes it explore around the target policies:
    with the engine's softmax at inverse temperature 1, the logged probabilities are

        p(a|x) = (1 - explore) * mean_j pi_j(a|x) + explore / K

    a mixture of the targets (their probabilities; the oracle's from the ground truth) and
    uniform exploration over the K feasible actions -- every value is log of that. It does not
    learn. The simulator hands it each request's Q* row, in the order the engine scores the
    requests (``TruthRecorder``)."""

    version = "targeted-logger"

    def __init__(self, policies: list[EvalPolicy], explore: float = 0.2):
        if not 0.0 < explore <= 1.0:
            raise ValueError(f"explore must be in (0, 1], got {explore}")
        self.policies = policies
        self.explore = explore
        self.args = ["targeted-logger", f"explore={explore}"] + [p.name for p in policies] + ["oracle"]
        self.pending: deque[tuple[dict[str, int], np.ndarray]] = deque()

    def values(self, context_json: str, n_actions: int) -> np.ndarray:
        index, q_row = self.pending.popleft()
        record = orjson.loads(context_json)
        labels = tuple(action_label(a) for a in record["_multi"])
        if len(labels) != n_actions or any(label not in index for label in labels):
            raise RuntimeError("targeted logger: scored actions do not match the simulator's request")
        d = LoggedDecision("", None, labels, 0, 1.0, 0.0, {"c": record})
        d.__dict__["context"] = context_json  # the cached property, as scored
        mixture = np.zeros(n_actions)
        for policy in self.policies:
            mixture += policy.probabilities(d)
        mixture[int(np.argmax(q_of_labels(index, q_row, labels)))] += 1.0
        mixture /= len(self.policies) + 1
        return np.log((1.0 - self.explore) * mixture + self.explore / n_actions)

    def learn_decision(self, *args) -> None:
        pass

    def healthy(self, context_json: str, n_actions: int) -> bool:
        return True  # it does not learn (and its values come from a queue, one per decision)

    def serialize(self) -> bytes:
        return b""


class TruthRecorder:
    """Wraps the engine policy; records Q*(x, a) of every feasible action of every decision."""

    def __init__(self, inner: EnginePolicy, sim: Simulation, logger: TargetedLogger | None = None):
        self.inner = inner
        self.name = inner.name
        self.sim = sim
        self.logger = logger
        self.truth: dict[str, tuple[dict[str, int], np.ndarray]] = {}

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        sim, window = self.sim, self.sim.response.window_hours
        end = min(batch.t + window, sim.horizon)
        organic = min(sim.scenario.every_days * 24.0, window, sim.horizon - batch.t)
        rows: list = [None] * len(batch.customers)
        for g in batch.groups:
            cust = batch.customers[g.members][:, None]
            q = sim.response.expected_reward(batch.world, cust, g.offer[None, :], g.channel[None, :],
                                             g.local_hour[None, :], g.send_t[None, :], batch.t,
                                             organic, end)
            for row, pos in zip(q, g.members):
                rows[pos] = (g.index, row)
        if self.logger is not None:
            # The in-process engine scores the batch's requests one by one, in order.
            self.logger.pending.extend(rows)
        chosen = self.inner.decide(batch)
        if self.logger is not None and self.logger.pending:
            raise RuntimeError("targeted logger: the engine scored fewer requests than the batch holds")
        for event_id, row in zip(self.inner._event_ids, rows):
            self.truth[event_id] = row
        return chosen

    def learn(self, feedback: Feedback) -> None:
        self.inner.learn(feedback)

    def q_star(self, d: LoggedDecision) -> np.ndarray:
        """Q* of the decision's logged feasible actions, in their logged order."""
        return q_of_labels(*self.truth[d.event_id], d.actions)


def log_uniform(sim: Simulation, log_dir: Path, seed: int, progress=None) -> TruthRecorder:
    """Run the engine with uniform exploration in the simulator, logging to ``log_dir``."""
    catalog = logging_catalog(sim.scenario.catalog)
    engine = DecisionEngine(catalog, log_dir=log_dir, seed=policy_seed(seed), honour_request_time=True)
    recorder = TruthRecorder(EnginePolicy.in_process(engine, name="uniform_logger"), sim)
    return _run(sim, engine, recorder, progress)


def log_targeted(sim: Simulation, log_dir: Path, seed: int, policies: list[EvalPolicy],
                 explore: float = 0.2, progress=None) -> TruthRecorder:
    """Run the engine exploring around ``policies`` and the oracle (``TargetedLogger``): with
    three targets and ~60 feasible actions, each target's choice gets p >= 0.27, every other
    action 0.2 / 60 = 0.0033."""
    catalog = logging_catalog(sim.scenario.catalog, algorithm="softmax", softmax_lambda=1.0)
    logger = TargetedLogger(policies, explore)
    engine = DecisionEngine(catalog, log_dir=log_dir, seed=policy_seed(seed), honour_request_time=True,
                            model=logger)
    recorder = TruthRecorder(EnginePolicy.in_process(engine, name="targeted_logger"), sim, logger)
    return _run(sim, engine, recorder, progress)


def _run(sim: Simulation, engine: DecisionEngine, recorder: TruthRecorder, progress) -> TruthRecorder:
    try:
        sim.run(recorder, progress=progress)
    finally:
        engine.close()
    return recorder


class OracleTarget(EvalPolicy):
    """The best logged feasible action by ground truth (knows the hidden traits)."""

    name = "oracle"

    def __init__(self, recorder: TruthRecorder):
        self.recorder = recorder

    def probabilities(self, d):
        q = self.recorder.q_star(d)
        return one_hot(len(q), int(np.argmax(q)))


class TruthAccumulator:
    """An ``evaluate_logs`` observer: the true value of each policy on the evaluated decisions,
    and the oracle's choice."""

    def __init__(self, recorder: TruthRecorder):
        self.recorder = recorder
        self.values: dict[str, list[float]] = {}
        self.logged_truth: list[float] = []

    def __call__(self, d: LoggedDecision, probs: dict[str, np.ndarray]) -> None:
        q = self.recorder.q_star(d)
        for name, p in probs.items():
            self.values.setdefault(name, []).append(float(p @ q))
        self.logged_truth.append(float(q[d.chosen]))

    def truth(self, name: str) -> float:
        return float(np.mean(self.values[name]))
