"""Calibration figures of a scenario, measured the way the field figures state them (docs/design.md).

Under the marketer-rules policy (weekly email at 10:00 to everyone with email consent):
  * email open rate (facts: ~20 %)
  * share of email opt-ins lost to unsubscribes and inactivity by the end (facts: ~50 % after a
    few campaigns)
and, from the response model itself:
  * opens at each email customer's best send slot versus 10:00 (vendors: +3 % to +15 %).
"""

from __future__ import annotations

import numpy as np

from simulators.policies import MarketerRules
from simulators.runner import Simulation
from simulators.scenario import load_scenario

TARGETS = {
    "email_open_rate": (0.17, 0.23, "~20 % average email open rate"),
    "email_optins_lost_share": (0.40, 0.60, "~50 % of opt-ins lost after a few campaigns"),
    "best_slot_open_uplift": (0.03, 0.15, "send-time optimisation: +3 % to +15 % opens"),
}


def calibrate(scenario: str = "default", customers: int = 20_000, seed: int = 1) -> dict[str, float]:
    sc = load_scenario(scenario)
    sim = Simulation(sc, customers=customers, seed=seed)
    run = sim.run(MarketerRules())
    t = run.totals
    email_delivered, email_opens = run.channel_opens["email"]
    world, resp = sim.population, sim.response
    email = sim.channel_index["email"]
    who = np.flatnonzero(world.consent[:, email])
    starts = np.arange(0, 24, 2, dtype=float)
    factor = resp.hour_factor(world.pref_hour[who][:, None], starts[None, :])
    at_ten = resp.hour_factor(world.pref_hour[who], np.full(len(who), 10.0))
    weights = world.affinity[who, email]
    uplift = float((weights * factor.max(axis=1)).sum() / (weights * at_ten).sum() - 1)
    return {
        "email_open_rate": email_opens / email_delivered,
        "email_optins_lost_share": t["email_optins_lost"] / t["email_optins_start"],
        "best_slot_open_uplift": uplift,
        "campaigns": float(len(sim.opportunities())),
    }


def report(figures: dict[str, float]) -> str:
    lines = [f"{'figure':28s} {'measured':>9s}  {'target':>13s}  source"]
    for key, (low, high, fact) in TARGETS.items():
        value = figures[key]
        mark = "ok" if low <= value <= high else "OFF"
        lines.append(f"{key:28s} {value:9.1%}  {low:5.0%}-{high:4.0%} {mark:>3s}  {fact}")
    lines.append(f"(rules policy, {figures['campaigns']:.0f} weekly campaigns)")
    return "\n".join(lines)
