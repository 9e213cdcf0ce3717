"""Regenerate docs/results.md: the simulations and benchmarks whose figures the project quotes.

Runs each simulation below with ``nba simulate`` (each policy on its own copy of the same
population; outputs under ``runs/results/``), then the benchmark scripts, and writes
``docs/results.md`` with the command, commit, date and machine of every table. The README's
results table is rewritten from the same run (between its ``results`` markers).

    make results                                   # everything: about two hours on 2 cores
    .venv/bin/python bench/results.py --quick      # the same tables at 5 000 customers, 21 days (minutes)
    .venv/bin/python bench/results.py --only bench # one section (main, scenarios, structures, bench, ope, obd, serving, sweep, offline, million, learner); the others are kept

The serving section (bench/serving.py, ~25 minutes) also rewrites the README's performance table
(between its ``performance`` markers).

A figure in the docs is replaced by re-running this, never edited by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBA = [sys.executable, "-m", "nba.cli"]
OUT = ROOT / "runs" / "results"
BOUND = "oracle_blind_all"
MAIN_POLICIES = "engine,rules,newsletter,random,no_contact,oracle," + BOUND
SCENARIO_POLICIES = "engine,rules,newsletter,no_contact,oracle," + BOUND
STRUCTURE_POLICIES = "engine,engine@funnel,rules,oracle," + BOUND


@dataclass(frozen=True)
class Run:
    """One ``nba simulate`` run of the results."""

    name: str
    scenario: str
    customers: int
    days: int
    seed: int
    policies: str

    def args(self) -> list[str]:
        return ["simulate", "--scenario", self.scenario, "--customers", str(self.customers), "--days",
                str(self.days), "--seed", str(self.seed), "--regret", "--policies", self.policies,
                "--no-logs", "--no-mlflow", "--no-progress", "--out", f"runs/results/{self.name}"]

    def command(self) -> str:
        return ".venv/bin/nba " + " ".join(self.args())


def runs(quick: bool) -> dict[str, list[Run]]:
    customers, days, small = (5_000, 21, 2_000) if quick else (50_000, 63, 10_000)
    main = [Run(f"default_s{seed}", "default", customers, days, seed, MAIN_POLICIES) for seed in (1, 2)]
    main.append(Run("default_small_s1", "default", small, days, 1, MAIN_POLICIES))
    scenarios = [Run(name, name, small, days, 1, SCENARIO_POLICIES)
                 for name in ("cold_start", "tight_budget", "high_fatigue", "spread_hours", "promo_majority")]
    structures = [Run(f"structures_{n}_s{seed}", "default", n, days, seed, STRUCTURE_POLICIES)
                  for n, seed in ((small, 1), (small, 2), (customers, 1))]
    return {"main": main, "scenarios": scenarios, "structures": structures}


BENCHMARKS = [
    ("Serving latency (one client, loopback, default catalog)", ["bench/latency.py"]),
    ("The state store: in process against Redis", ["bench/state_latency.py"]),
    ("Simulator throughput", ["bench/simulator.py"]),
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
        memory = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def commit() -> str:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "*.py", "*.toml"], cwd=ROOT,
                           capture_output=True, text=True)
    return (sha.stdout.strip() or "unknown") + (" (with uncommitted code changes)" if dirty.stdout.strip() else "")


def simulate(run: Run) -> tuple[dict, float]:
    started = time.perf_counter()
    print(f"$ {run.command()}", flush=True)
    subprocess.run(NBA + run.args(), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads((OUT / run.name / "results.json").read_text()), time.perf_counter() - started


def simulated(run: Run, title: str) -> tuple[dict, list[str]]:
    """Run the simulation; its results, and its heading, command, time and policy table."""
    results, seconds = simulate(run)
    return results, [f"### {title}", "", f"`{run.command()}` ({seconds / 60:.1f} min)", "", policy_table(results), ""]


def _eur(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:,.0f}"


def _pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1%}"


def policy_table(results: dict) -> str:
    """A Markdown table of one run: value (expected first), pressure, and the shares of the
    oracle and of the information bound."""
    policies = results["policies"]
    bound = policies.get(BOUND, {}).get("expected_net_value", float("nan"))
    rows = ["| policy | expected net value | realised | share of the oracle | share of the bound | contacts "
            "| open % | email open % | unsubscribes | incentives paid |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in policies.items():
        of_bound = m["expected_net_value"] / bound if bound and bound > 0 else float("nan")
        rows.append(f"| {name} | {_eur(m['expected_net_value'])} | {_eur(m['net_value'])} | "
                    f"{_pct(m.get('expected_oracle_share', float('nan')))} | {_pct(of_bound)} | "
                    f"{m['contacts']:,.0f} | {_pct(m.get('open_rate', float('nan')))} | "
                    f"{_pct(m.get('email_open_rate', float('nan')))} | {m['unsubscribes']:,.0f} | "
                    f"{_eur(m['incentive_spend'])} |")
    return "\n".join(rows)


def regret_table(results: dict) -> str:
    parts = ("missed", "needless", "offer", "channel", "slot")
    rows = ["| policy | best | chosen | regret | " + " | ".join(parts) + " |",
            "|---|---:|---:|---:|" + "---:|" * len(parts)]
    for name, r in results.get("regret", {}).items():
        t = r["totals"]
        gap = t["regret"]
        cells = [f"{_eur(t[p])} ({t[p] / gap:.0%})" if gap > 0 else _eur(t[p]) for p in parts]
        rows.append(f"| {name} | {_eur(t['best'])} | {_eur(t['chosen'])} | {_eur(gap)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def section_main(quick: bool) -> tuple[str, str]:
    out = ["## The engine against the baselines, the oracle and the information bound", "",
           "Default scenario. `expected net value` is the sum over every decision of its exact expected "
           "incremental value (hidden traits known), free of the outcomes' sampling noise; rank policies by it. "
           f"`share of the bound` is against `{BOUND}`, the myopic Bayes-optimal policy on the engine's own "
           "information with the simulator's law given.", ""]
    readme_table = ""
    for run in runs(quick)["main"]:
        results, lines = simulated(run, f"{run.customers:,} customers, {run.days} days, seed {run.seed}")
        out += lines + ["Where each policy's expected value goes, against the oracle's choice of each decision "
                        "(myopic and unbudgeted; EUR):", "", regret_table(results), ""]
        if not readme_table:
            readme_table = f"`{run.command()}`\n\n" + policy_table(results)
    return "\n".join(out), readme_table


def section_scenarios(quick: bool) -> str:
    out = ["## The other shipped scenarios", "",
           "`cold_start` (a new loyalty programme), `tight_budget` (1 000 EUR per 4 weeks, meant for 20 000 "
           "customers), `high_fatigue` (an over-solicited audience), `spread_hours` (preferred hours over the whole "
           "day), `promo_majority` (60 % promotion-driven, a budget of 100 000 EUR per 4 weeks). The baselines are "
           "simulator policies: only "
           "the engine and the oracles are held to the catalog's caps and budget.", ""]
    for run in runs(quick)["scenarios"]:
        out += simulated(run, f"{run.scenario}, {run.customers:,} customers, {run.days} days, seed {run.seed}")[1]
    return "\n".join(out)


def section_structures(quick: bool) -> str:
    """The two model structures (``[model] structure``: direct, the default, and funnel) on one
    population, with the bound, the rules and the oracle, and how each learner's share of the bound
    moves campaign by campaign (bench/learning_curve.py)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import learning_curve
    out = ["## The model structures: direct and funnel", "",
           "`engine` is the default structure (`direct`: one regression of the reward), `engine@funnel` the "
           "funnel (`[model] structure = \"funnel\"`: P(open) x P(click) x P(purchase caused) x margin - incentive "
           "- penalties, each head learned from its own outcomes), both on one population. Below each table, each "
           "learner's expected net value per campaign and its share of the bound's in the same campaign "
           "(`bench/learning_curve.py runs/results/<run>/results.json`).", ""]
    for run in runs(quick)["structures"]:
        results, lines = simulated(run, f"{run.customers:,} customers, {run.days} days, seed {run.seed}")
        curve = learning_curve.report(learning_curve.campaign_values(results), BOUND,
                                      [n for n in ("engine", "engine@funnel") if n in results["policies"]])
        out += lines + [regret_table(results), "", "```", curve, "```", ""]
    return "\n".join(out)


def section_bench() -> str:
    out = ["## Benchmarks", "", "Each script starts what it measures on loopback and stops it; its output as printed.", ""]
    for title, script in BENCHMARKS:
        print(f"$ .venv/bin/python {' '.join(script)}", flush=True)
        done = run_script(script)
        out += [f"### {title}", "", f"`.venv/bin/python {' '.join(script)}`", "", "```",
                done.stdout.rstrip(), "```", ""]
    return "\n".join(out)


SERVING = ["bench/serving.py"]


def run_script(script: list[str]) -> subprocess.CompletedProcess:
    """Run a benchmark script; on failure, show what it said and stop."""
    done = subprocess.run([sys.executable, *script], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"{' '.join(script)} failed (exit {done.returncode})")
    return done


def section_serving() -> tuple[str, str]:
    """bench/serving.py's output, and its summary table with the command and machine (README)."""
    print(f"$ .venv/bin/python {' '.join(SERVING)}", flush=True)
    done = run_script(SERVING)
    table = done.stdout[done.stdout.rindex("| | measured |"):].rstrip()
    text = "\n".join(["## Serving at campaign scale", "", f"`.venv/bin/python {' '.join(SERVING)}`", "", "```",
                      done.stdout.rstrip(), "```", ""])
    readme = f"`.venv/bin/python {' '.join(SERVING)}` on {machine()}, at commit {commit()}:\n\n{table}"
    return text, readme


OPE_VALIDATION = ["bench/ope_validation.py", "--report", "bench/results/ope_validation_targeted_seeds_1-40.json"]
OBD = ["bench/obd.py"]


def script_section(title: str, script: list[str], about: str) -> str:
    """A section holding ``script``'s output as printed, under its command and ``about``."""
    print(f"$ .venv/bin/python {' '.join(script)}", flush=True)
    done = run_script(script)
    return "\n".join([f"## {title}", "", f"`.venv/bin/python {' '.join(script)}` -- {about}", "",
                      "```", done.stdout.rstrip(), "```", ""])


def section_ope() -> str:
    """bench/ope_validation.py's report over the kept per-seed results."""
    return script_section(
        "Off-policy estimates against the simulator's truth, 40 seeds", OPE_VALIDATION,
        "the per-seed results are kept in bench/results/; each seed is deterministic, and the command in "
        "bench/ope_validation.py's docstring remakes them in about 35 minutes. Intervals: cluster-robust by "
        "customer, plus the reward model's own variance from 20 bootstrap refits (`training/evaluate.py`); "
        "DM's and DR-os's are bias-aware, with a bound on the bias (`training/estimators.py`). A policy is "
        "flagged when its weight diagnostics warn (as `nba evaluate` does).")


def section_obd() -> str:
    """bench/obd.py's output: the estimators on the Open Bandit Dataset sample."""
    return script_section(
        "Off-policy estimators on real logs: the Open Bandit Dataset sample", OBD,
        "the sample in obp's source distribution, obp's protocol (one logging policy's 10 000 rounds evaluate "
        "the other policy, whose on-policy click rate is the truth). Intervals: bootstrap with the reward model "
        "refitted in each replicate (`training.offpolicy`). Relative errors: |estimate - truth| / truth over 10 "
        "bootstrap resamples of the logs, beside obp's published figures for the case obp publishes "
        "(`examples/examples_with_obd`, 10 bootstrap samples): those are an interval of the *mean* error, and "
        "their Bernoulli TS is re-run on the replayed logs rather than the production policy evaluated here, so "
        "they are not the same quantity (bench/obd.py).")


def update_readme(table: str, marker: str = "results") -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {marker}:start --> ... <!-- {marker}:end --> markers")
    readme.write_text(pattern.sub(lambda m: m.group(1) + table.rstrip("\n") + "\n" + m.group(2), text))


SWEEP = ["bench/sweep_scaling.py"]


def section_sweep() -> str:
    """bench/sweep_scaling.py's output: a seed sweep on a local Ray of one and of two workers."""
    return script_section(
        "Seeds on Ray: one worker and two", SWEEP,
        "`nba simulate --seeds 1-4` (5 000 customers x 63 days, engine and rules) on a local Ray of one worker, "
        "then of two, alternately; wall time of the whole command, Ray's start included.")


OFFLINE = ["bench/offline_scaling.py"]


def section_offline() -> str:
    """bench/offline_scaling.py's output: evaluate and train in one process and on a local Ray."""
    return script_section(
        "Evaluate and train on Ray: one process, one worker, two workers", OFFLINE,
        "`nba evaluate` (3 policies, 20 refits; reading the logs, then their Parquet cache) and offline training "
        "(reading the logs) on ~98 000 logged decisions, in one process, then on a local Ray of 1 worker, then of 2, "
        "alternately; wall time of each whole run, Ray's start and stop included.")


MILLION = ["bench/train_throughput.py", "--workers", "2"]


def section_million() -> str:
    """bench/train_throughput.py's output: train + evaluate on a million logged decisions, on Ray."""
    return script_section(
        "Train and evaluate a million logged decisions", MILLION,
        "uniform-exploration logs of the validation scenario copied to 1 075 224 decisions (10.6 GB); `train` on "
        "the earliest 70 %, `evaluate_logs` (candidate, rules, uniform; 20 refits) on the rest, on a local Ray of "
        "2 CPUs started once for both, reading the logs (no cache).")


LEARNER = ["bench/shared_learner.py"]


def section_learner() -> str:
    """bench/shared_learner.py's output: one learner, two replicas, one Redis, under load."""
    return script_section(
        "One learner, two replicas", LEARNER,
        "`nba learn` and two `nba serve --follow-learner` replicas on a Redis of the script's own, 2 client threads "
        "per replica for 30 s, publications every 2 s, polls every 1 s; then the learner's last model against "
        "`nba train` on the replicas' merged logs.")


SECTIONS = ("main", "scenarios", "structures", "bench", "ope", "obd", "serving", "sweep", "offline", "million", "learner")
SECTION = re.compile(r"<!-- section:(\w+) -->\n(.*?)<!-- /section:\1 -->\n", re.S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small runs, to check the script (not for the docs)")
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="only these sections (repeatable); the page keeps the others as they were")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args()
    sections = args.only or list(SECTIONS)
    kept = dict(SECTION.findall(args.out.read_text())) if args.out.exists() and args.only else {}
    readme_table = performance = ""
    for name in sections:
        started, code = time.perf_counter(), commit()
        when = dt.datetime.now(dt.timezone.utc)
        if name == "main":
            text, readme_table = section_main(args.quick)
        elif name == "scenarios":
            text = section_scenarios(args.quick)
        elif name == "structures":
            text = section_structures(args.quick)
        elif name == "serving":
            text, performance = section_serving()
        elif name == "obd":
            text = section_obd()
        elif name == "ope":
            text = section_ope()
        elif name == "sweep":
            text = section_sweep()
        elif name == "offline":
            text = section_offline()
        elif name == "million":
            text = section_million()
        elif name == "learner":
            text = section_learner()
        else:
            text = section_bench()
        flags = f"--only {name}" + (" --quick" if args.quick else "")
        stamp = (f"*Made by `bench/results.py {flags}` at commit {code}, "
                 f"{when:%Y-%m-%d %H:%M} UTC, in {(time.perf_counter() - started) / 60:.0f} minutes, on {machine()}.*")
        first, _, rest = text.partition("\n")
        kept[name] = f"{first}\n\n{stamp}\n{rest}\n"
    header = ["# Results", "",
              "Generated by `make results` (`bench/results.py`); do not edit by hand. Each section says the commit, "
              "date and machine it ran on. The same seed gives the same simulation tables on any machine; the "
              "benchmarks' figures depend on the machine and its load.", ""]
    body = [f"<!-- section:{name} -->\n{kept[name]}<!-- /section:{name} -->\n"
            for name in SECTIONS if name in kept]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header) + "\n" + "\n".join(body))
    print(f"wrote {args.out}")
    if readme_table and not args.quick and args.out == ROOT / "docs" / "results.md":
        update_readme(readme_table)
        print("updated the results table of README.md")
    if performance and args.out == ROOT / "docs" / "results.md":
        update_readme(performance, "performance")
        print("updated the performance table of README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
