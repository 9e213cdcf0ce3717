"""One learner and two replicas on one Redis, under load: how long after each publication each
replica serves it, calls failed while versions change, and the learner's model against one
trained offline (``nba train``'s code) on the replicas' joined logs.

A redis-server of its own on a free loopback port; ``nba learn`` publishing every
``--publish-seconds``; two ``nba serve --follow-learner`` replicas polling every
``--poll-seconds``; ``--threads`` client threads per replica sending decisions (and, for some,
an open or a purchase) for ``--seconds``; the catalog is the shipped one with a 3.6 s
attribution window, so decisions mature during the run.

    .venv/bin/python bench/shared_learner.py [--seconds 30] [--threads 2] [--publish-seconds 2] [--poll-seconds 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.redis_servers import RedisServer  # noqa: E402
from harness.replicas import LearnerAndReplicas, offline_comparison  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2, help="client threads per replica")
    parser.add_argument("--publish-seconds", type=float, default=2.0)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nba-shared-") as tmp, RedisServer() as redis_server:
        with LearnerAndReplicas(Path(tmp), redis_server.url, replicas=2, publish_seconds=args.publish_seconds,
                                poll_seconds=args.poll_seconds) as run:
            load = run.drive_watched(args.seconds, args.threads)
            pending, last = run.pending(), run.channel.version()
            run.stop_replicas()
            run.stop_learner()
            published = run.published_model()
        offline, difference, compared = offline_comparison(run, published, Path(tmp) / "merged")

    watched = run.watched
    per_replica = [[watched.served[(r, v)] - t for v, t in watched.published.items() if (r, v) in watched.served]
                   for r in range(2)]
    apart = [abs(watched.served[(0, v)] - watched.served[(1, v)]) for v in watched.published
             if (0, v) in watched.served and (1, v) in watched.served]
    versions: Counter[str] = Counter()
    for (_, version), n in load.versions.items():
        versions[version] += n
    print(f"load: {load.calls:,} decisions in {load.seconds:.1f} s ({load.calls / load.seconds:,.0f}/s) over 2 replicas, "
          f"{args.threads} client threads each; failed calls: {len(load.failures)}")
    print(f"publications: {len(watched.published)} (every {args.publish_seconds:g} s while learning; replicas poll "
          f"every {args.poll_seconds:g} s); decisions by the version that scored them: "
          f"{len(versions)} versions, {versions.get('cold-start', 0):,} by the cold-start model")
    for r, lags in enumerate(per_replica):
        print(f"replica {r}: served {len(lags)} publications; publication to serving: median "
              f"{statistics.median(lags):.2f} s, max {max(lags):.2f} s")
    print(f"the two replicas on different versions after a publication: median {statistics.median(apart):.2f} s, "
          f"max {max(apart):.2f} s (bound: publish interval + poll interval = "
          f"{args.publish_seconds + args.poll_seconds:g} s)")
    print(f"after the load: {pending} decisions pending, both replicas served the last publication ({last}): "
          f"{all((r, last) in watched.served for r in range(2))}")
    print(f"learner's model ({published.updates:,} decisions learned) against nba train on the joined logs "
          f"({offline.decisions:,} decisions): largest difference in value over every action of {compared} "
          f"decisions: {difference:.3g} EUR")
    return 0 if not load.failures and difference < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
