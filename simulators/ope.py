"""Off-policy evaluation checked against the simulator's ground truth.

The engine, exploring uniformly, logs decisions in the simulator exactly as it does in
production (DSJSON decisions + outcomes). While it runs, ``TruthRecorder`` asks the simulator
for the *exact* expected logged reward of every feasible action of every decision
(``ResponseModel.expected_reward``: hidden traits, the funnel, the attribution window). The true
value of any policy pi on those decisions is then

    V(pi) = mean_i sum_a pi(a|x_i) Q*(x_i, a)

with no sampling noise, and the off-policy estimates computed from the logs alone
(``training.evaluate``) are compared with it. The oracle is a policy here too: the action of
highest Q* among each decision's logged feasible actions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from engine.catalog import Catalog
from engine.engine import DecisionEngine
from simulators.policies import EnginePolicy
from simulators.runner import DecisionBatch, Feedback, Simulation, policy_seed
from training.dataset import LoggedDecision
from training.policies import EvalPolicy, one_hot


def uniform_logging_catalog(catalog: Catalog) -> Catalog:
    """The catalog with uniform exploration (every feasible action equally likely) and no
    budgets, so every offer stays feasible for the whole run; caps and gap still apply."""
    exploration = dataclasses.replace(catalog.exploration, algorithm="epsilon_greedy", epsilon=1.0,
                                      no_contact_floor=0.0, pessimism=0.0)
    constraints = dataclasses.replace(catalog.constraints, budgets=())
    return dataclasses.replace(catalog, exploration=exploration, constraints=constraints)


class TruthRecorder:
    """Wraps the engine policy; records Q*(x, a) of every feasible action of every decision."""

    def __init__(self, inner: EnginePolicy, sim: Simulation):
        self.inner = inner
        self.name = inner.name
        self.sim = sim
        self.truth: dict[str, tuple[dict[str, int], np.ndarray]] = {}

    def decide(self, batch: DecisionBatch) -> np.ndarray:
        chosen = self.inner.decide(batch)
        sim, window = self.sim, self.sim.response.window_hours
        end = min(batch.t + window, sim.horizon)
        organic = min(sim.scenario.every_days * 24.0, window, sim.horizon - batch.t)
        ids = self.inner._event_ids
        for g in batch.groups:
            cust = batch.customers[g.members][:, None]
            q = sim.response.expected_reward(batch.world, cust, g.offer[None, :], g.channel[None, :],
                                             g.local_hour[None, :], g.send_t[None, :], batch.t,
                                             organic, end)
            for row, pos in zip(q, g.members):
                self.truth[ids[pos]] = (g.index, row)
        return chosen

    def learn(self, feedback: Feedback) -> None:
        self.inner.learn(feedback)

    def q_star(self, d: LoggedDecision) -> np.ndarray:
        """Q* of the decision's logged feasible actions, in their logged order."""
        index, row = self.truth[d.event_id]
        return row[[index[label] for label in d.actions]]


def log_uniform(sim: Simulation, log_dir: Path, seed: int, progress=None) -> TruthRecorder:
    """Run the engine with uniform exploration in the simulator, logging to ``log_dir``."""
    catalog = uniform_logging_catalog(sim.scenario.catalog)
    engine = DecisionEngine(catalog, log_dir=log_dir, seed=policy_seed(seed), honour_request_time=True)
    recorder = TruthRecorder(EnginePolicy.in_process(engine, name="uniform_logger"), sim)
    try:
        sim.run(recorder, progress=progress)
    finally:
        engine.close()
    return recorder


class OraclePolicy(EvalPolicy):
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
