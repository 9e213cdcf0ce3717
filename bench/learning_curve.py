"""How fast each policy of a simulation approaches the information bound, campaign by campaign.

Reads the ``results.json`` of an ``nba simulate --regret`` run whose policies include the
reference (``oracle_blind_all`` unless ``--reference`` says otherwise) and prints, for every
opportunity (campaign), each policy's expected net value and its share of the reference's in
the same campaign, then the same over the first, middle and last third of the campaigns. A
learner that starts cold pays for what it learns in the first campaigns; the last third says
where it stands once it has learned, the whole run what the issue's share measures.

    .venv/bin/nba simulate --customers 10000 --regret --policies engine,engine@funnel,oracle_blind_all \\
        --no-logs --no-mlflow --out runs/lc
    .venv/bin/python bench/learning_curve.py runs/lc/results.json --plot runs/lc/learning_curve.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def campaign_values(results: dict) -> dict[str, np.ndarray]:
    """Policy -> expected net value of its choices per campaign (the regret breakdown's rows)."""
    regret = results.get("regret")
    if not regret:
        raise SystemExit("no regret breakdown in the results: run nba simulate with --regret")
    return {name: np.array([row["chosen"] for row in b["by_opportunity"]]) for name, b in regret.items()}


def thirds(n: int) -> list[tuple[str, slice]]:
    cut = [0, n // 3, 2 * n // 3, n]
    return [(f"campaigns {cut[k] + 1}-{cut[k + 1]}", slice(cut[k], cut[k + 1])) for k in range(3)
            if cut[k + 1] > cut[k]] + [(f"all {n}", slice(0, n))]


def report(values: dict[str, np.ndarray], reference: str, names: list[str] | None = None) -> str:
    """The table: ``names`` (every policy but the reference, unless given) against ``reference``."""
    if reference not in values:
        raise SystemExit(f"the reference {reference!r} is not among the run's policies: {', '.join(values)}")
    ref = values[reference]
    names = [n for n in values if n != reference] if names is None else names
    header = ["campaign", reference] + [f"{n} (share)" for n in names]
    rows = [[str(k + 1), f"{ref[k]:,.0f}"] + [f"{values[n][k]:,.0f} ({values[n][k] / ref[k]:.0%})" for n in names]
            for k in range(len(ref))]
    rows += [[label, f"{ref[s].sum():,.0f}"]
             + [f"{values[n][s].sum():,.0f} ({values[n][s].sum() / ref[s].sum():.1%})" for n in names]
             for label, s in thirds(len(ref))]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def plot(values: dict[str, np.ndarray], reference: str, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ref = values[reference]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, v in values.items():
        if name != reference:
            ax.plot(np.arange(1, len(v) + 1), 100 * v / ref, marker="o", label=name)
    ax.axhline(100, color="grey", lw=0.8)
    ax.set(title=title, xlabel="campaign", ylabel=f"% of {reference}'s expected value")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results.json of an nba simulate --regret run")
    parser.add_argument("--reference", default="oracle_blind_all", help="the policy shares are of")
    parser.add_argument("--plot", type=Path, help="also draw the shares by campaign to this PNG")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{args.results}: cannot read the results ({exc})") from None
    values = campaign_values(results)
    print(f"{results.get('scenario')}, {results.get('customers'):,} customers x {results.get('days')} days, "
          f"seed {results.get('seed')}: expected net value per campaign (EUR) and share of {args.reference}")
    print(report(values, args.reference))
    if args.plot:
        plot(values, args.reference, args.plot, f"{results.get('scenario')}, {results.get('customers'):,} customers, "
             f"seed {results.get('seed')}")
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
