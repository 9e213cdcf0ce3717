"""The funnel model's heads against the simulator's truth, campaign by campaign.

Runs the engine with ``[model] structure = "funnel"`` (``engine@funnel``) on a scenario and, for
every decision of every campaign, sets what each head predicted beside the exact figure the
simulator knows from the customer's hidden traits, at two actions: the contact the engine chose
(what its heads learn from) and the contact that is truly best for the customer (what it should
have found). Prints the means per campaign:

  chosen contact:  P(open), P(click | opened), P(purchase | clicked) (the contact's or organic),
                   P(unsubscribe) -- predicted / true
  best contact:    its value as the engine estimates it / truly; the value's parts: the purchase
                   margin it causes (P(open) x P(click) x P(caused) x margin), the incentive it
                   pays, the penalties it risks -- predicted / true
  contact > 0:     the share of customers whose best contact the engine values above nothing,
                   and the share for whom it truly is

    .venv/bin/python bench/funnel_heads.py --customers 10000 --seed 1     # ~4 minutes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from engine import pipeline
from simulators.policies import action_values
from simulators.runner import Simulation
from simulators.scenario import load_scenario
from simulators.simulate import policy_by_name
from simulators.world import HOURS_PER_DAY, _organic_after_open

ROWS = (("chosen", ("open", "click", "purchase", "unsubscribe")),
        ("best", ("value", "gross", "incentive", "penalties")))


class HeadProbe:
    """Records the funnel's estimates of each decision as the engine scores it, keyed by customer,
    and compares them with the truth once the campaign is decided (``Simulation.run``'s observer)."""

    def __init__(self):
        self.scored: dict[str, tuple] = {}  # customer id -> (labels, values, the heads' parts)
        self.local = threading.local()
        self.campaigns: list[dict[str, float]] = []

    def install(self) -> None:
        decide, score = pipeline.DecisionEngine.decide, pipeline.DecisionEngine._score
        probe = self

        def decide_(engine, request):
            probe.local.customer = request.customer_id
            return decide(engine, request)

        def score_(engine, model, context, actions, labels, snap, now, control):
            scored = score(engine, model, context, actions, labels, snap, now, control)
            if not model.cold:
                probe.scored[probe.local.customer] = (labels, scored.values, model.parts(context[0], len(actions)))
            return scored

        pipeline.DecisionEngine.decide, pipeline.DecisionEngine._score = decide_, score_

    def __call__(self, batch, chosen: np.ndarray) -> None:
        sums: dict[str, list[float]] = {}

        def add(key: str, predicted: float, true: float) -> None:
            sums.setdefault(key, []).append((predicted, true))

        resp, world, rw = batch.response, batch.world, batch.response.reward
        for g in batch.groups:
            contact = np.flatnonzero(g.offer >= 0)
            if not contact.size:
                continue
            truth = action_values(batch, g)
            cust = batch.customers[g.members]
            p = resp.probabilities(world, cust[:, None], g.offer[contact][None, :], g.channel[contact][None, :],
                                   g.local_hour[contact][None, :], g.send_t[contact][None, :])
            column = {a: j for j, a in enumerate(contact)}  # group action -> column of p
            for r, pos in enumerate(g.members):
                scored = self.scored.get(f"c{batch.customers[pos]}")
                if scored is None:
                    continue
                labels, values, parts = scored
                index = np.array([g.index[label] for label in labels])  # engine's action k -> group's
                sends = np.flatnonzero(g.offer[index] >= 0)
                if not sends.size:
                    continue
                c = cust[r]
                organic = 1 - np.exp(-world.organic_per_day[c] / HOURS_PER_DAY * resp.window_hours)
                k = int(chosen[pos])
                if g.offer[k] >= 0:
                    e, j = int(np.flatnonzero(index == k)[0]), column[k]
                    add("chosen open", parts["open"][e], p["delivered"][r, j] * p["open"][r, j])
                    add("chosen click", parts["click"][e], p["click"][r, j])
                    add("chosen purchase", parts["purchase"][e],
                        p["convert"][r, j] + (1 - p["convert"][r, j]) * organic)
                    add("chosen unsubscribe", parts["unsubscribe"][e], p["delivered"][r, j] * p["unsubscribe"][r, j])
                b = sends[np.argmax(truth[r, index[sends]])]
                j = column[index[b]]
                caused = np.clip(1 - (1 - parts["purchase"][b]) / max(1 - parts["organic"][b], 1e-6), 0, 1)
                reached = p["delivered"][r, j] * p["open"][r, j]
                buy = p["click"][r, j] * p["convert"][r, j]
                cost = resp.offer_cost[g.offer[index[b]]]
                after_open = _organic_after_open(np.array([max(batch.organic_until - g.send_t[index[b]], 0.0)]),
                                                 np.array([world.organic_per_day[c] / HOURS_PER_DAY]),
                                                 resp.scenario.response.open_delay_hours)[0]
                add("best value", values[b], truth[r, index[b]])
                add("best gross", parts["open"][b] * parts["click"][b] * caused * max(parts["margin"][b], 0.0),
                    reached * buy * rw.margin_rate * world.basket[c])
                add("best incentive", parts["incentive"][b] * cost, reached * (buy + (1 - buy) * after_open) * cost)
                add("best penalties",
                    parts["unsubscribe"][b] * rw.unsubscribe_penalty + parts["complaint"][b] * rw.complaint_penalty,
                    p["delivered"][r, j] * (p["unsubscribe"][r, j] * rw.unsubscribe_penalty
                                            + p["complaint"][r, j] * rw.complaint_penalty))
                add("contact > 0", float(values[b] > 0), float(truth[r, index[b]] > 0))
        self.scored.clear()
        self.campaigns.append({key: tuple(np.mean(v, axis=0)) for key, v in sums.items()})
        self.print_campaign(len(self.campaigns), self.campaigns[-1])

    @staticmethod
    def print_campaign(number: int, means: dict) -> None:
        if not means:
            print(f"campaign {number}: the model is cold (every action ties: the default contact)", flush=True)
            return
        cells = [f"{key} {pred:.3f} / {true:.3f}" for key, (pred, true) in means.items()]
        print(f"campaign {number} (predicted / true):\n  " + "\n  ".join(
            "  ".join(c for c in cells if c.startswith(prefix)) for prefix in ("chosen", "best", "contact")), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=63)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)
    probe = HeadProbe()
    probe.install()
    print(f"{scenario.name}, {args.customers:,} customers x {args.days} days, seed {args.seed}: engine@funnel's "
          "heads, predicted / true, means over each campaign's decisions", flush=True)
    sim = Simulation(scenario, customers=args.customers, days=args.days, seed=args.seed)
    with tempfile.TemporaryDirectory() as out, \
            policy_by_name("engine@funnel", scenario, args.seed, Path(out), None, logs=False) as policy:
        sim.run(policy, observer=probe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
