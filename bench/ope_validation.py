"""Off-policy estimates from logs vs the simulator's ground truth, over many seeds.

Per seed: a fresh population (default scenario) on which the engine logs ``--weeks`` weekly
decisions per customer (DSJSON + outcome logs, as in production), exploring either uniformly
over its feasible actions (``--logging uniform``) or around the evaluated policies
(``--logging targeted``: p = 0.8 x the mean of rules, candidate and oracle + 0.2 / K, so every
feasible action keeps a probability of ~0.003). From the logs alone, ``training.evaluate``
estimates the value of: the marketer's rules, the oracle (best logged feasible action by ground
truth), a trained candidate (a VW policy trained offline on a separate, earlier logging run,
served with the catalog's exploration), and no contact. Their true values on the same decisions come from
``ResponseModel.expected_reward`` (exact expectations of the logged reward; see simulators/ope.py).

Prints per policy: the true value, DR's estimate and relative error for each seed, the share
of seeds whose 95 % interval covers the truth (DR and the other estimators, all cluster-robust
by customer; ``dr_independent`` is DR's interval as if a customer's decisions were
independent, and ``dr_os_tuned_split`` DR-os with lambda tuned on the other half of the
customers, for comparison), and writes
``OUT/validation.json`` and ``OUT/validation.png``. Seeds run as Ray tasks, on a local Ray of
``--workers`` CPUs or on a cluster (``--ray-address``).

    .venv/bin/python bench/ope_validation.py [--logging targeted] [--seeds 20] [--customers 6000]
        [--weeks 6] [--workers 2] [--ray-address ADDRESS] [--first-seed 1]
    .venv/bin/python bench/ope_validation.py --report RUN1/validation.json RUN2/validation.json

The figures in docs/results.md come from 40 seeds in one run (about 35 minutes on 2 cores: per
seed ~40 s of logging and ~55 s of evaluation, most of it the reward model's 20 bootstrap
refits), whose per-seed results are kept in bench/results/:

    .venv/bin/python bench/ope_validation.py --logging targeted --explore 0.2 --seeds 40 --customers 6000 \
        --weeks 6 --out runs/ope_validation_1_40
    cp runs/ope_validation_1_40/validation.json bench/results/ope_validation_targeted_seeds_1-40.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.ope import OracleTarget, TruthAccumulator, log_targeted, log_uniform, validation_scenario  # noqa: E402
from simulators.runner import Simulation  # noqa: E402
from training.parallel import as_completed  # noqa: E402
from training.estimators import DR, DROS, SHRINKAGE_GRID, TunedDROS  # noqa: E402
from training.evaluate import evaluate_logs  # noqa: E402
from engine.models import load_model, save_model  # noqa: E402
from training.target_policies import ModelPolicy, NoContact, Rules  # noqa: E402
from training.train import TrainParams, train  # noqa: E402

ESTIMATORS = ("ips", "snips", "dm", "dr", "dr_os", "dr_os_tuned", "dr_os_tuned_ub", "dr_os_tuned_split",
              "dr_independent")
CANDIDATE_PARAMS = TrainParams(passes=1, cb_type="mtr", learning_rate=0.02, power_t=0.0, importance_weighted=True)


def train_candidate(customers: int, weeks: int, out: Path) -> Path:
    """The candidate: trained on its own logging run (seed 1000), before any evaluated seed."""
    scenario = validation_scenario()
    sim = Simulation(scenario, customers=customers, days=7 * weeks, seed=1000)
    with tempfile.TemporaryDirectory() as tmp:
        log_uniform(sim, Path(tmp), seed=1000)
        result = train(Path(tmp), scenario.catalog, CANDIDATE_PARAMS)
    print(f"candidate: trained on {result.decisions:,} decisions of seed 1000 in {result.seconds:.0f} s "
          f"({result.examples_per_second:,.0f} decisions/s)", flush=True)
    return save_model(out / "candidate", result.model.serialize(), result.settings, {})


def one_seed(seed: int, customers: int, weeks: int, candidate_dir: str, logging: str = "uniform",
             explore: float = 0.2) -> dict:
    scenario = validation_scenario()
    catalog = scenario.catalog
    sim = Simulation(scenario, customers=customers, days=7 * weeks, seed=seed)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"ope-{seed}-"))
    try:
        candidate = ModelPolicy("candidate", load_model(candidate_dir, catalog, "candidate"), catalog.exploration)
        if logging == "targeted":
            recorder = log_targeted(sim, tmp, seed, [Rules(), candidate], explore)
        else:
            recorder = log_uniform(sim, tmp, seed=seed)
        logged = time.perf_counter() - started
        policies = [Rules(), OracleTarget(recorder), candidate, NoContact()]
        truth = TruthAccumulator(recorder)
        evaluation = evaluate_logs(tmp, catalog, policies, observer=truth)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"seed": seed, "n": evaluation.n, "log_seconds": logged, "eval_seconds": evaluation.seconds,
           "policies": {}}
    for p in policies:
        s = dict(evaluation.summary(p.name))
        # for comparison: DR's interval as if a customer's decisions were independent
        independent = dataclasses.replace(evaluation.rounds[p.name], cluster=None)
        s["dr_independent"] = DR().interval(independent).as_dict()
        # for comparison: lambda tuned on one half of the customers, used on the other
        s["dr_os_tuned_split"] = TunedDROS(split=True).interval(evaluation.rounds[p.name]).as_dict()
        # DR-os at every lambda of the tuning grid: how much any choice of lambda could gain
        grid = {str(g): DROS(g).value(evaluation.rounds[p.name]) for g in SHRINKAGE_GRID}
        out["policies"][p.name] = {"truth": truth.truth(p.name), "ess": s["effective_sample_size"],
                                   "customers": s["customers"], "weights": s["weights"], "dr_os_grid": grid,
                                   **{e: s[e] for e in ESTIMATORS}}
    return out


def one_seed_call(call: dict) -> dict:
    """``one_seed`` of one Ray task (``training.parallel.as_completed``)."""
    return one_seed(**call)


def summarise(results: list[dict]) -> dict:
    names = list(results[0]["policies"])
    summary = {}
    for name in names:
        rows = [r["policies"][name] for r in results]
        truth = np.array([r["truth"] for r in rows])
        entry = {"truth_mean": float(truth.mean()), "ess_mean": float(np.mean([r["ess"] for r in rows]))}
        # seeds whose estimate the weight diagnostics flag as unreliable (a warning in the CLI)
        flagged = np.array([bool(r.get("weights", {}).get("warnings")) for r in rows])
        entry["flagged"] = int(flagged.sum())
        for e in (e for e in ESTIMATORS if e in rows[0]):
            value = np.array([r[e]["value"] for r in rows])
            low, high = np.array([r[e]["low"] for r in rows]), np.array([r[e]["high"] for r in rows])
            rel = (value - truth) / np.abs(truth)
            entry[e] = {"median_abs_rel_error": float(np.median(np.abs(rel))),
                        "max_abs_rel_error": float(np.max(np.abs(rel))),
                        "mean_rel_error": float(rel.mean()),
                        "mean_abs_rel_error": float(np.abs(rel).mean()),
                        "seeds_within_3pct": int((np.abs(rel) <= 0.03).sum()),
                        "coverage": float(((low <= truth) & (truth <= high)).mean()),
                        "coverage_unflagged": float(((low <= truth) & (truth <= high))[~flagged].mean())
                        if (~flagged).any() else float("nan"),
                        # (estimate - truth) / stated standard error: sd ~1 when intervals are right
                        "z_sd": float(np.std((value - truth) / np.maximum((high - low) / (2 * 1.959964), 1e-300),
                                             ddof=1)) if len(rows) > 1 else float("nan"),
                        "mean_half_width": float(((high - low) / 2).mean()),
                        # mean squared error relative to the truth's scale
                        "rmse_rel": float(np.sqrt(np.mean(rel * rel)))}
        summary[name] = entry
    return summary


def binomial_range(seeds: int, coverage: float = 0.95) -> tuple[float, float]:
    """The central 95 % range of the share of ``seeds`` intervals covering, when each covers
    with probability ``coverage`` (binomial quantiles)."""
    from scipy.stats import binom

    return binom.ppf(0.025, seeds, coverage) / seeds, binom.ppf(0.975, seeds, coverage) / seeds


def print_report(results: list[dict], summary: dict, logging: str) -> None:
    n = np.mean([r["n"] for r in results])
    how = ("uniform over ~60 feasible actions" if logging == "uniform"
           else "targeted: mixture of rules, candidate and oracle + uniform")
    print(f"\n{len(results)} seeds, {n:,.0f} logged decisions evaluated per seed (logging {how}); "
          f"values in EUR per decision\n")
    print(f"{'policy':<12} {'truth':>7} {'ESS':>7}  {'DR |rel err| median':>20} {'max':>7} "
          f"{'<=3%':>6} {'DR 95% coverage':>16} {'DR ±':>7}")
    for name, s in summary.items():
        dr = s["dr"]
        print(f"{name:<12} {s['truth_mean']:>7.3f} {s['ess_mean']:>7,.0f}  {dr['median_abs_rel_error']:>20.1%} "
              f"{dr['max_abs_rel_error']:>7.1%} {dr['seeds_within_3pct']:>3}/{len(results):<2} "
              f"{dr['coverage']:>16.0%} {dr['mean_half_width']:>7.3f}")
    print("\nper estimator and policy: 95 % coverage / relative RMSE / mean half-width of the interval (relative)")
    reported = [e for e in ESTIMATORS if e in next(iter(summary.values()))]
    print(f"  {'estimator':<18}" + "".join(f"{name:>24}" for name in summary))
    for e in reported:
        cells = [f"{s[e]['coverage']:.0%} / {s[e]['rmse_rel']:.1%} / {s[e]['mean_half_width'] / s['truth_mean']:.1%}"
                 for s in summary.values()]
        print(f"  {e:<18}" + "".join(f"{c:>24}" for c in cells))
    seeds = len(results)
    low, high = binomial_range(seeds)
    print(f"(with {seeds} seeds a right 95 % interval covers on {low:.0%}-{high:.0%} of them, 95 % of the time)")
    if any(s["flagged"] for s in summary.values()):
        kinds: dict[str, dict[str, int]] = {name: {} for name in summary}
        for r in results:
            for name, p in r["policies"].items():
                for reason in p.get("weights", {}).get("reasons", []):
                    kinds[name][reason] = kinds[name].get(reason, 0) + 1
        print("\nseeds the weight diagnostics flag as unreliable (a warning in the CLI), and why: " + "; ".join(
            f"{name} {s['flagged']}/{seeds}" + (f" ({', '.join(f'{k} {v}' for k, v in kinds[name].items())})"
                                              if kinds[name] else "") for name, s in summary.items()))
        print("95 % coverage on the seeds not flagged (how many):")
        heads = [f"{name} ({seeds - s['flagged']})" for name, s in summary.items()]
        print(f"  {'estimator':<18}" + "".join(f"{h:>24}" for h in heads))
        for e in reported:
            cells = [f"{s[e]['coverage_unflagged']:.0%}" if seeds > s["flagged"] else "-" for s in summary.values()]
            print(f"  {e:<18}" + "".join(f"{c:>24}" for c in cells))
    print("coverage pooled over the policies: " + ", ".join(
        f"{e} {np.mean([s[e]['coverage'] for s in summary.values()]):.0%}" for e in reported))
    for tuned in ("dr_os_tuned", "dr_os_tuned_ub", "dr_os_tuned_split"):
        if all(tuned in s for s in summary.values()):
            print(f"mean squared error, {tuned} / DR: " + ", ".join(
                f"{name} {(s[tuned]['rmse_rel'] / s['dr']['rmse_rel']) ** 2:.2f}" for name, s in summary.items()))
    if all("dr_os_grid" in p for r in results for p in r["policies"].values()):
        print("mean squared error of DR-os at each fixed lambda / DR's (the best lambda in hindsight marked *):")
        grid = list(results[0]["policies"][next(iter(summary))]["dr_os_grid"])
        print(f"  {'lambda':<12}" + "".join(f"{name:>12}" for name in summary))
        ratios = {}
        for name in summary:
            truth = np.array([r["policies"][name]["truth"] for r in results])
            dr = np.array([r["policies"][name]["dr"]["value"] for r in results])
            for g in grid:
                value = np.array([r["policies"][name]["dr_os_grid"][g] for r in results])
                ratios[name, g] = float(np.mean((value - truth) ** 2) / np.mean((dr - truth) ** 2))
        for g in grid:
            cells = []
            for name in summary:
                best = min(ratios[name, h] for h in grid)
                cells.append(f"{ratios[name, g]:.2f}" + ("*" if ratios[name, g] == best else " "))
            print(f"  {g:<12}" + "".join(f"{c:>12}" for c in cells))
    print("\nDR error / its stated standard error, sd over seeds (1 = intervals right): "
          + ", ".join(f"{name} {s['dr']['z_sd']:.2f}" for name, s in summary.items()))
    print("DR relative error over seeds, mean signed (bias) / mean absolute: "
          + ", ".join(f"{name} {s['dr']['mean_rel_error']:+.1%} / {s['dr']['mean_abs_rel_error']:.1%}"
                      for name, s in summary.items()))
    print("\nper seed (DR estimate [95% interval] vs truth):")
    for r in results:
        cells = "  ".join(f"{name} {p['dr']['value']:.3f} [{p['dr']['low']:.3f},{p['dr']['high']:.3f}] "
                          f"vs {p['truth']:.3f}" for name, p in r["policies"].items())
        print(f"  seed {r['seed']:>2} (n={r['n']:,}): {cells}")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results[0]["policies"])
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4), sharey=False)
    for ax, name in zip(axes, names):
        for k, r in enumerate(results):
            p = r["policies"][name]
            ax.errorbar([k], [p["dr"]["value"] - p["truth"]],
                        yerr=[[p["dr"]["value"] - p["dr"]["low"]], [p["dr"]["high"] - p["dr"]["value"]]],
                        fmt="o", capsize=2, color="tab:blue")
        ax.axhline(0, color="black", linestyle="dashed")
        ax.set_title(f"{name}: DR - truth")
        ax.set_xlabel("seed")
    axes[0].set_ylabel("EUR per decision")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_only(paths: list[Path]) -> int:
    """The report over the seeds of earlier runs (one logging setting; a seed counts once)."""
    runs = [json.loads(p.read_text()) for p in paths]
    loggings = {r.get("logging") for r in runs}
    if len(loggings) != 1:
        raise SystemExit(f"--report: runs logged differently ({sorted(map(str, loggings))}); compare like with like")
    by_seed = {s["seed"]: s for r in runs for s in r["seeds"]}
    results = [by_seed[k] for k in sorted(by_seed)]
    print_report(results, summarise(results), loggings.pop())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1,
                        help="seeds run from here (default 1): more seeds add to earlier runs")
    parser.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                        help="no run: summarise the seeds of these validation.json files together")
    parser.add_argument("--customers", type=int, default=6_000)
    parser.add_argument("--weeks", type=int, default=6)
    parser.add_argument("--candidate-customers", type=int, default=10_000)
    parser.add_argument("--candidate-weeks", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray the seeds run on (default 2)")
    parser.add_argument("--ray-address", default=None, help="run the seeds on this Ray cluster instead")
    parser.add_argument("--logging", choices=("uniform", "targeted"), default="uniform",
                        help="the exploring policy that logs (default uniform)")
    parser.add_argument("--explore", type=float, default=0.2,
                        help="targeted logging's share of uniform exploration (default 0.2)")
    parser.add_argument("--out", type=Path, default=Path("runs/ope_validation"))
    args = parser.parse_args()
    if args.report:
        return report_only(args.report)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    candidate = train_candidate(args.candidate_customers, args.candidate_weeks, args.out)
    calls = [dict(seed=s, customers=args.customers, weeks=args.weeks, candidate_dir=str(candidate),
                  logging=args.logging, explore=args.explore)
             for s in range(args.first_seed, args.first_seed + args.seeds)]
    results = []
    for _, r in as_completed(one_seed_call, calls, args.workers, args.ray_address):
        results = sorted([*results, r], key=lambda x: x["seed"])
        (args.out / "validation.json").write_text(json.dumps({"seeds": results}, indent=1))
        print(f"seed {r['seed']}: {r['n']:,} decisions, logged in {r['log_seconds']:.0f} s, "
              f"evaluated in {r['eval_seconds']:.0f} s", flush=True)
    summary = summarise(results)
    (args.out / "validation.json").write_text(json.dumps(
        {"logging": args.logging, "explore": args.explore, "summary": summary,
         "seeds": results}, indent=1))
    plot(results, args.out / "validation.png")
    print_report(results, summary, args.logging)
    print(f"\n{args.out / 'validation.json'}, {args.out / 'validation.png'}; "
          f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
