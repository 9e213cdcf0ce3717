"""Off-policy estimators on real logged bandit data: the Open Bandit Dataset's small sample.

The sample ships in obp's source distribution on the package index (10 000 rows per campaign
and logging policy, ZOZOTOWN's fashion recommendations: 3 positions, 80 / 34 / 46 items, a click
as reward). The benchmark downloads it (``pip download obp==0.4.1 --no-binary :all:``, cached
under ``runs/obd/``; nothing of it is committed) and follows obp's protocol: the logs of one
policy (Random or Bernoulli TS) evaluate the other, whose on-policy mean click is the truth;
Bernoulli TS's probabilities of each item at each position come from a Monte Carlo of its
Beta priors (obp's ``prior_bts.yaml``, 100 000 draws), Random's are uniform. An item at a
position is one action (``item + n_items x position``), so the policies' probabilities are
those of the logged position. The reward model is ``training.offpolicy``'s cross-fitted ridge
regression on the action and the user features (one-hot, as obp's default pre-processing).

For each of the 6 cases (3 campaigns x 2 directions): every estimator's estimate with its
95 % interval (bootstrap, the reward model refitted in each replicate), whether it covers the truth, the weight diagnostics and warnings, and
the relative error |estimate - truth| / truth over bootstrap resamples of the logs (mean and
95 % range), beside obp's published relative errors where obp publishes them.

    .venv/bin/python bench/obd.py [--bootstrap 10] [--cache runs/obd]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.offpolicy import BanditRounds, CrossFittedRewardModel, evaluate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OBP = "obp==0.4.1"
CAMPAIGNS = ("all", "men", "women")
POLICIES = {"random": "Random", "bts": "Bernoulli TS"}
ESTIMATORS = ("ips", "snips", "dm", "dr", "dr_os", "dr_os_tuned", "dr_os_tuned_ub")
POSITIONS = 3
# obp's published relative estimation errors on this sample (examples/examples_with_obd/README.md:
# evaluate_off_policy_estimators.py --n_boot_samples 10 --counterfactual_policy bts
# --behavior_policy random --campaign all). Not the same quantities as ours: obp's interval is a
# bootstrap interval of the *mean* of the 10 errors (``estimate_confidence_interval_by_bootstrap``
# on them), not their spread, and its Bernoulli TS is re-run on each resample of the Random logs
# (``run_bandit_simulation``, learning from the replayed clicks), a different target policy from
# the production one whose probabilities the priors give (ours; its IPS, 0.0045526, matches the
# IPW estimate obp publishes for that policy, 0.004553). So the two columns need not agree.
PUBLISHED = {("bts", "random", "all"): {"dm": (0.693300, 0.649553, 0.731233), "ips": (1.158730, 0.961905, 1.533333),
                                        "dr": (1.219538, 0.948628, 1.588770)}}


def fetch(cache: Path) -> Path:
    """The dataset directory of obp's source distribution (downloaded once)."""
    data = cache / "obp-0.4.1" / "obp" / "dataset" / "obd"
    if data.exists():
        return data
    cache.mkdir(parents=True, exist_ok=True)
    print(f"downloading {OBP}'s source distribution into {cache} ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", OBP, "--no-deps", "--no-binary", ":all:",
                    "-d", str(cache), "-q"], check=True)
    (archive,) = cache.glob("obp-0.4.1.tar.gz")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/dataset/obd/" in m.name or m.name.endswith("prior_bts.yaml")]
        tar.extractall(cache, members=members, filter="data")
    return data


def read_logs(data: Path, policy: str, campaign: str) -> dict[str, np.ndarray]:
    with open(data / policy / campaign / f"{campaign}.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["timestamp"])
    user_cols = [c for c in rows[0] if c.startswith("user_feature")]
    context = []
    for col in user_cols:  # one-hot, first level dropped (obp's pd.get_dummies(drop_first=True))
        values = np.array([r[col] for r in rows])
        levels = np.unique(values)[1:]
        context.append((values[:, None] == levels[None, :]).astype(float))
    positions = np.array([int(r["position"]) for r in rows])
    return {"item": np.array([int(r["item_id"]) for r in rows]), "position": positions - positions.min(),
            "click": np.array([float(r["click"]) for r in rows]), "pscore": np.array([float(r["propensity_score"])
                                                                                       for r in rows]),
            "context": np.hstack(context)}


def bts_distribution(cache: Path, campaign: str, n_items: int, draws: int = 100_000, seed: int = 12345) -> np.ndarray:
    """P(item at position) of Bernoulli TS with ZOZOTOWN's priors, by Monte Carlo: (n_items, 3)."""
    alpha, beta = read_prior(cache, campaign)
    if len(alpha) != n_items:
        raise ValueError(f"prior_bts.yaml has {len(alpha)} items for {campaign}, the logs {n_items}")
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_items, POSITIONS))
    for start in range(0, draws, 10_000):
        theta = rng.beta(alpha, beta, size=(min(10_000, draws - start), n_items))
        top = np.argsort(-theta, axis=1)[:, :POSITIONS]
        for pos in range(POSITIONS):
            counts[:, pos] += np.bincount(top[:, pos], minlength=n_items)
    return counts / draws


def read_prior(cache: Path, campaign: str) -> tuple[np.ndarray, np.ndarray]:
    """alpha and beta of one campaign from obp's prior_bts.yaml (a flat YAML of lists)."""
    (path,) = cache.glob("obp-0.4.1/**/prior_bts.yaml")
    prior, section, key = {}, None, None
    for line in path.read_text().splitlines():
        if line and not line.startswith(" "):
            section = line.rstrip(":")
            prior[section] = {}
        elif line.strip().endswith(":"):
            key = line.strip().rstrip(":")
            prior[section][key] = []
        elif line.strip().startswith("- "):
            prior[section][key].append(float(line.strip()[2:]))
    return np.array(prior[campaign]["alpha"]), np.array(prior[campaign]["beta"])


def case(logs: dict, target: np.ndarray, truth: float, bootstrap: int, refits: int, seed: int = 12345) -> dict:
    """Estimates of the target (n_items x 3 probabilities) from ``logs``, and their relative errors."""
    n_items = target.shape[0]
    action = logs["item"] + n_items * logs["position"]
    pi = np.zeros((len(action), n_items * POSITIONS))
    for pos in range(POSITIONS):
        rows = logs["position"] == pos
        pi[np.ix_(rows, np.arange(pos * n_items, (pos + 1) * n_items))] = target[:, pos]
    rounds = BanditRounds(action=action, reward=logs["click"], pscore=logs["pscore"], context=logs["context"])
    model = CrossFittedRewardModel(interactions=False)
    full = evaluate(rounds, pi, reward_model=model, method="bootstrap_refit", n_bootstrap=refits, seed=seed)
    rng = np.random.default_rng(seed)
    errors = {name: [] for name in ESTIMATORS}
    for _ in range(bootstrap):
        idx = rng.integers(0, rounds.n, rounds.n)
        sample = evaluate(rounds.take(idx), pi[idx], reward_model=model, method="normal")
        for name in ESTIMATORS:
            errors[name].append(abs(sample[name]["value"] - truth) / truth)
    return {"truth": truth, "full": full,
            "relative_error": {name: (float(np.mean(e)), *map(float, np.quantile(e, [0.025, 0.975])))
                               for name, e in errors.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=10, help="resamples of the logs for the errors' spread")
    parser.add_argument("--refits", type=int, default=100,
                        help="bootstrap replicates of the intervals, the reward model refitted in each")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "obd")
    args = parser.parse_args()
    data = fetch(args.cache)
    print(f"Open Bandit Dataset sample ({OBP}'s source distribution); values are click rates; 95 % intervals "
          f"from {args.refits} cluster bootstrap replicates with the reward model refitted in each; relative "
          f"errors over {args.bootstrap} bootstrap resamples of the logs\n")
    covered = {name: 0 for name in ESTIMATORS}
    cases = 0
    for campaign in CAMPAIGNS:
        logs = {p: read_logs(data, p, campaign) for p in POLICIES}
        n_items = int(max(logs["random"]["item"].max(), logs["bts"]["item"].max())) + 1
        targets = {"bts": bts_distribution(args.cache, campaign, n_items),
                   "random": np.full((n_items, POSITIONS), 1 / n_items)}
        for target, behaviour in (("bts", "random"), ("random", "bts")):
            truth = float(logs[target]["click"].mean())
            out = case(logs[behaviour], targets[target], truth, args.bootstrap, args.refits)
            cases += 1
            weights = out["full"]["weights"]
            print(f"## {POLICIES[target]} <- {POLICIES[behaviour]} logs, campaign {campaign}: truth {truth:.6f} "
                  f"({len(logs[target]['click']):,} on-policy rounds)")
            print(f"ESS {weights['effective_sample_size']:,.1f} of {out['full']['n']:,}, max weight "
                  f"{weights['max_weight']:,.1f}, mean weight {weights['mean_weight']:.3f}")
            for warning in out["full"]["warnings"]:
                print(f"WARNING: {warning}")
            print(f"tuned shrinkage: lambda {out['full']['dr_os_tuned']['shrinkage']} (direct bias estimate), "
                  f"{out['full']['dr_os_tuned_ub']['shrinkage']} (Bernstein upper bound)")
            published = PUBLISHED.get((target, behaviour, campaign), {})
            print(f"{'estimator':<15} {'estimate':>9} {'95% interval':>22} {'covers':>6}   "
                  f"{'relative error, mean [95%]':>28}   {'obp published':>28}")
            for name in ESTIMATORS:
                e, (mean, low, high) = out["full"][name], out["relative_error"][name]
                hit = e["low"] <= truth <= e["high"]
                covered[name] += hit
                shown = published.get(name)
                obp = f"{shown[0]:.3f} [{shown[1]:.3f}, {shown[2]:.3f}]" if shown else "-"
                print(f"{name:<15} {e['value']:>9.6f} [{e['low']:>9.6f}, {e['high']:>9.6f}] {'yes' if hit else 'NO':>6}"
                      f"   {mean:>8.3f} [{low:.3f}, {high:.3f}]   {obp:>28}")
            print()
    print("intervals covering the truth: " + ", ".join(f"{n} {covered[n]}/{cases}" for n in ESTIMATORS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
