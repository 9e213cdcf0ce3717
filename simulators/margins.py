"""How well the engine knows whether to contact: campaign by campaign, its margin against the truth.

For every customer at every campaign: the engine's *margin* -- the value of its best contact
(the offer on a channel of best mean value over send slots, at its best slot: what it would
send) less no contact's -- and the exact expected value of that same contact from the
simulator's hidden traits. A calibrated engine has mean margin = mean true value; a margin whose
mean swings from campaign to campaign moves whole cohorts across "contact / do not" at once.

    .venv/bin/python -m simulators.margins --customers 50000 --days 63 --seed 1 [--set KEY=VALUE] [--exact]

prints one row per campaign -- contacts sent, customers of positive margin, customers whose
contact is truly worth something, the mean margin, its mean truth, no contact's mean value, the
margins' correlation with the truth, and the customers by margin band (how many, what the best
contact of each was worth, what the engine's own contact would have made) -- and writes them to
``--out`` as JSON. The engine runs in process, with every action's value reported
(``exploration.top_k`` raised); it decides exactly as in ``nba simulate``. With ``--exact`` it
is ``engine_exact``: it learns each choice's exact expected value instead of its reward.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from engine.settings import ConfigError
from engine.pipeline import DecisionEngine
from engine.exploration import offer_channel_groups
from simulators.policies import EnginePolicy, ExactRewardPolicy, contact_values
from simulators.runner import DecisionBatch, Simulation, policy_seed
from simulators.scenario import load_scenario, parse_catalog_settings

# Margin bands (EUR) the customers of a campaign are counted in.
BANDS = (-np.inf, -0.1, -0.05, -0.02, 0.0, 0.02, 0.05, np.inf)


def campaign_row(batch: DecisionBatch, chosen: np.ndarray, decisions: list) -> dict:
    """The engine's margins and their truth over one campaign's customers."""
    n = len(chosen)
    margin, truth, best, nothing = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    for g in batch.groups:
        contact = np.flatnonzero(g.offer >= 0)
        if not len(contact):
            continue
        labels = [g.actions[k].label for k in contact]
        values = np.empty((len(g.members), len(contact)))
        no_contact = np.empty(len(g.members))
        for row, pos in enumerate(g.members):
            # The engine scores what the customer's caps leave (the simulator's set is wider).
            scored = {s.action.label: s.expected_value for s in decisions[pos].ranking}
            values[row] = [scored.get(label, np.nan) for label in labels]
            no_contact[row] = scored["no_contact"]
        group = offer_channel_groups(labels)
        offered = ~np.isnan(values)
        sums = np.stack([np.where(offered[:, group == k], values[:, group == k], 0.0).sum(axis=1)
                         for k in range(group.max() + 1)], axis=1)
        counts = np.stack([offered[:, group == k].sum(axis=1) for k in range(group.max() + 1)], axis=1)
        means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
        best_group = means.argmax(axis=1)
        in_best = (group[None, :] == best_group[:, None]) & offered
        pick = np.where(in_best, values, -np.inf).argmax(axis=1)   # its best slot in that group
        rows = np.arange(len(g.members))
        true_values = contact_values(batch, g, contact)
        some = offered.any(axis=1)   # a customer whose caps leave no contact is left out
        margin[g.members] = np.where(some, means[rows, best_group] - no_contact, np.nan)
        nothing[g.members] = no_contact
        truth[g.members] = np.where(some, true_values[rows, pick], np.nan)
        best[g.members] = np.where(some, np.maximum(np.where(offered, true_values, -np.inf).max(axis=1), 0.0), np.nan)
    contacted = np.array([not d.action.no_contact for d in decisions])
    scored = ~np.isnan(margin)
    margin, truth, best, nothing, n = margin[scored], truth[scored], best[scored], nothing[scored], int(scored.sum())
    row = {"day": batch.t / 24, "customers": n, "contacts": int(contacted.sum()),
           "margin_mean": float(margin.mean()), "truth_mean": float(truth.mean()),
           "no_contact_mean": float(nothing.mean()),
           "correlation": float(np.corrcoef(margin, truth)[0, 1]) if margin.std() > 0 else None,
           "positive_margin": int((margin > 0).sum()), "positive_truth": int((truth > 0).sum()),
           "bands": []}
    for lo, hi in zip(BANDS[:-1], BANDS[1:]):
        inside = (margin > lo) & (margin <= hi)
        row["bands"].append({"from": lo, "to": hi, "customers": int(inside.sum()),
                             "best_contact_value": float(best[inside].sum()),
                             "own_contact_value": float(truth[inside].sum())})
    return row


def run(scenario: str, customers: int | None, days: int | None, seed: int, settings: list[str],
        exact: bool = False) -> list[dict]:
    sc = load_scenario(scenario, parse_catalog_settings(settings))
    catalog = dataclasses.replace(sc.catalog, exploration=dataclasses.replace(sc.catalog.exploration, top_k=10_000))
    sim = Simulation(dataclasses.replace(sc, catalog=catalog), customers, days, seed)
    if exact:
        policy = ExactRewardPolicy.create(catalog, policy_seed(seed))
    else:
        engine = DecisionEngine(catalog, seed=policy_seed(seed), honour_request_time=True)
        policy = EnginePolicy.in_process(engine)
    rows: list[dict] = []

    def observe(batch: DecisionBatch, chosen: np.ndarray) -> None:
        rows.append(campaign_row(batch, chosen, policy.decisions))
        print(format_row(rows[-1]), flush=True)

    print(f"{'day':>4} {'contacts':>8} {'margin>0':>8} {'truth>0':>8} {'mean margin':>11} {'mean truth':>10} "
          f"{'no contact':>10} "
          f"{'corr':>5}   margin bands (EUR): customers / best contacts' value / own contacts' value")
    sim.run(policy, observer=observe)
    return rows


def format_row(row: dict) -> str:
    corr = "-" if row["correlation"] is None else f"{row['correlation']:.2f}"
    bands = "  ".join(f"({b['from']:g},{b['to']:g}] {b['customers']:,}/{b['best_contact_value']:,.0f}/"
                      f"{b['own_contact_value']:,.0f}" for b in row["bands"] if b["customers"])
    return (f"{row['day']:>4.0f} {row['contacts']:>8,} {row['positive_margin']:>8,} {row['positive_truth']:>8,} "
            f"{row['margin_mean']:>+11.4f} {row['truth_mean']:>+10.4f} {row['no_contact_mean']:>+10.4f} "
            f"{corr:>5}   {bands}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.margins", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                        help="set a catalog key for this run (as nba simulate --set)")
    parser.add_argument("--exact", action="store_true",
                        help="the engine learns the exact expected value of each of its choices "
                             "(the engine_exact diagnostic of nba simulate)")
    parser.add_argument("--out", type=Path, default=Path("runs/margins.json"))
    args = parser.parse_args(argv)
    try:
        rows = run(args.scenario, args.customers, args.days, args.seed, args.set, args.exact)
    except ConfigError as exc:
        print(f"margins: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"scenario": args.scenario, "seed": args.seed, "settings": args.set,
                                    "exact": args.exact,
                                    "campaigns": rows}, indent=2, default=float))
    print(f"\nWritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
