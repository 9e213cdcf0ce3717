"""Evaluating a policy on logged bandit data from another system, from plain arrays.

    .venv/bin/python examples/python/offpolicy_arrays.py

Here the logs are made up (a uniform logging policy over 4 actions, 2 000 customers with 3
rounds each); with real data, fill the same arrays from your logs.
"""

import numpy as np

from training.offpolicy import BanditRounds, evaluate

rng = np.random.default_rng(0)
n, k = 6_000, 4
context = rng.normal(size=(n, 2))
action = rng.integers(0, k, n)                              # what the logging policy did
reward = 1.0 + 0.5 * (action == 2) * context[:, 0] + rng.normal(scale=0.5, size=n)
pscore = np.full(n, 1 / k)                                  # the probability it gave that action
customer = np.arange(n) // 3                                # rounds of one customer are not independent

target = np.full((n, k), 0.05)                              # the policy to evaluate: action 2 when x0 > 0
target[np.arange(n), np.where(context[:, 0] > 0, 2, 0)] += 1 - 0.05 * k

rounds = BanditRounds(action=action, reward=reward, pscore=pscore, context=context, cluster=customer)
result = evaluate(rounds, target, n_bootstrap=100)           # reward model: cross-fitted ridge regression
for name in ("ips", "snips", "dm", "dr", "dr_os_tuned"):
    e = result[name]
    print(f"{name:<12} {e['value']:.4f}  [{e['low']:.4f}, {e['high']:.4f}]")
# Made-up data, so the truth is known: the target's expected reward on these contexts.
truth = float(np.mean(1.0 + 0.5 * target[:, 2] * context[:, 0]))
print(f"truth        {truth:.4f}")
print(f"effective sample size {result['effective_sample_size']:,.0f} of {result['n']:,}; "
      f"warnings: {result['warnings'] or 'none'}")
