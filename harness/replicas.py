"""One learner (``nba learn``) and N replicas (``nba serve --follow-learner``) on one Redis, as
real processes, with a load that drives them and the checks the design promises: which model
version each replica serves, how long after its publication, calls failed, and the learner's
model against one trained offline on the replicas' joined logs (``tests/test_shared_learner.py``,
``bench/shared_learner.py``).

The catalog is the shipped one with a short attribution window, so that decisions mature while
the load runs; time is the wall clock throughout, as in production.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.catalog import default_catalog_path, load_catalog
from engine.client import NBAClient
from engine.domain import DecisionRequest, OutcomeType
from engine.redis_store import RedisStateStore
from engine.server import start_server_process
from engine.shared_model import ModelChannel, model_of
from engine.value_model import ValueModel


def short_window_catalog(directory: Path, window_hours: float) -> Path:
    """The shipped catalog with an attribution window of ``window_hours``."""
    path = directory / "catalog.toml"
    path.write_text(default_catalog_path().read_text() + f"\n[attribution]\nwindow_hours = {window_hours}\n")
    return path


@dataclass
class Load:
    """What a load run saw."""

    calls: int = 0
    failures: list[str] = field(default_factory=list)
    versions: Counter = field(default_factory=Counter)   # (replica, model version) -> decisions
    seconds: float = 0.0


@dataclass
class Watch:
    """Each publication's time and when each replica first served it (``GetPolicy`` sampled)."""

    published: dict[str, float] = field(default_factory=dict)           # version -> Unix time
    served: dict[tuple[int, str], float] = field(default_factory=dict)  # (replica, version) -> Unix time

    def lags(self, replicas: int) -> list[float]:
        """Seconds from each publication to its serving, per replica, for the publications every
        replica served."""
        return [self.served[(r, v)] - t for v, t in self.published.items()
                if all((k, v) in self.served for k in range(replicas)) for r in range(replicas)]


class LearnerAndReplicas:
    """The processes, started on entering and stopped on leaving (see the module)."""

    def __init__(self, workdir: Path, redis_url: str, replicas: int = 2, publish_seconds: float = 1.0,
                 poll_seconds: float = 0.5, window_hours: float = 0.001):
        self.workdir, self.redis_url, self.n = Path(workdir), redis_url, replicas
        self.publish_seconds, self.poll_seconds = publish_seconds, poll_seconds
        self.prefix = f"r{uuid.uuid4().hex[:8]}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.catalog_path = short_window_catalog(self.workdir, window_hours)
        self.catalog = load_catalog(self.catalog_path)
        self.key_file = self.workdir / "id.key"
        self.key_file.write_text(uuid.uuid4().hex + uuid.uuid4().hex + "\n")
        self.key_file.chmod(0o600)
        self.store = RedisStateStore(redis_url, prefix=self.prefix)
        self.channel = ModelChannel(self.store)
        self.learner: subprocess.Popen | None = None
        self.learner_output: list[str] = []
        self.servers: list[subprocess.Popen] = []
        self.ports: list[int] = []

    def log_dir(self, replica: int) -> Path:
        return self.workdir / f"logs-{replica}"

    def __enter__(self) -> LearnerAndReplicas:
        self.start_learner()
        for i in range(self.n):
            proc, port = start_server_process(
                self.log_dir(i), seed=i + 1,
                extra=["--redis", self.redis_url, "--redis-prefix", self.prefix, "--follow-learner",
                       "--poll-seconds", str(self.poll_seconds), "--catalog", str(self.catalog_path),
                       "--id-key-file", str(self.key_file), "--state-dir", str(self.workdir / f"state-{i}")])
            self.servers.append(proc)
            self.ports.append(port)
        return self

    def start_learner(self) -> None:
        cmd = [sys.executable, "-m", "engine.cli", "learn", "--redis", self.redis_url, "--redis-prefix",
               self.prefix, "--catalog", str(self.catalog_path), "--publish-seconds", str(self.publish_seconds),
               "--mature-seconds", "0.2"]
        self.learner = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.learner.stdout:
            self.learner_output.append(line)
            if line.startswith("nba: learning for the replicas"):
                threading.Thread(target=self._read_learner, daemon=True).start()
                return
        raise RuntimeError(f"nba learn did not start: {''.join(self.learner_output[-5:])}")

    def _read_learner(self) -> None:
        for line in self.learner.stdout:
            self.learner_output.append(line)

    def stop_replicas(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.servers:
            proc.wait(timeout=60)

    def stop_learner(self) -> int:
        """SIGTERM the learner (it publishes what it learned since its last publication)."""
        if self.learner.poll() is None:
            self.learner.send_signal(signal.SIGTERM)
        return self.learner.wait(timeout=60)

    def __exit__(self, *exc) -> None:
        for proc in [*self.servers, self.learner]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        self.store.close()

    # -- load and observation -----------------------------------------------------------------

    def drive(self, seconds: float, threads_per_replica: int = 2, customers: int = 5000,
              seed: int = 0) -> Load:
        """Decisions and their outcomes on every replica for ``seconds`` (wall clock)."""
        load, lock = Load(), threading.Lock()
        deadline = time.monotonic() + seconds

        def work(replica: int, k: int) -> None:
            rng = random.Random(seed * 1000 + replica * 100 + k)
            with NBAClient(f"127.0.0.1:{self.ports[replica]}") as client:
                while time.monotonic() < deadline:
                    customer = f"c{rng.randrange(customers)}"
                    request = DecisionRequest(
                        customer_id=customer, categorical_features={"segment": rng.choice(("loyal", "new"))},
                        numeric_features={"basket": float(rng.randrange(10, 200))},
                        consented_channels=("email", "sms", "push"), timezone="Europe/Paris")
                    try:
                        d = client.decide(request)
                        if rng.random() < 0.3:
                            client.report_outcome(d.event_id, "open", OutcomeType.OPENED)
                        if rng.random() < 0.05:
                            client.report_outcome(d.event_id, "buy", OutcomeType.CONVERTED,
                                                  float(rng.randrange(5, 120)))
                    except Exception as exc:  # noqa: BLE001 - every failure is a finding
                        with lock:
                            load.failures.append(f"replica {replica}: {exc!r}"[:300])
                        continue
                    with lock:
                        load.calls += 1
                        load.versions[(replica, d.model_version)] += 1

        started = time.monotonic()
        workers = [threading.Thread(target=work, args=(r, k)) for r in range(self.n)
                   for k in range(threads_per_replica)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        load.seconds = time.monotonic() - started
        return load

    def drive_watched(self, seconds: float, threads_per_replica: int = 2, settle_seconds: float = 60.0) -> Load:
        """``drive``, with ``watch`` running from its start until every decision has matured
        (at most ``settle_seconds`` after the load) and the last model was published and polled."""
        stop = threading.Event()
        watcher = threading.Thread(target=self.watch, args=(stop,))
        watcher.start()
        try:
            load = self.drive(seconds, threads_per_replica)
            deadline = time.monotonic() + settle_seconds
            while self.pending() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(self.publish_seconds + self.poll_seconds + 0.5)  # published, then served
        finally:
            stop.set()
            watcher.join()
        return load

    def watch(self, stop: threading.Event, every: float = 0.02) -> Watch:
        """Until ``stop``: record each publication and when each replica first served it.
        Run it in a thread; it returns the ``Watch`` it fills (also ``self.watched``)."""
        seen = self.watched = Watch()
        clients = [NBAClient(f"127.0.0.1:{port}") for port in self.ports]
        try:
            while not stop.wait(every):
                version = self.channel.version()
                if version is not None and version not in seen.published:
                    seen.published[version] = self.channel.read().published
                for r, client in enumerate(clients):
                    served = client.policy().model_version
                    seen.served.setdefault((r, served), time.time())
        finally:
            for client in clients:
                client.close()
        return seen

    def pending(self) -> int:
        return self.store.pending_count()

    def published_model(self) -> ValueModel:
        return model_of(self.channel.read(), ValueModel(self.catalog.model))


_TIMESTAMP = re.compile(rb'"Timestamp":"([^"]+)"')


def merged_logs(log_dirs: list[Path], into: Path) -> Path:
    """The replicas' decision logs as one, in time order (the order the shared queue matures
    them: maturity, then event id), and their outcome logs, in ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    lines = [line for d in log_dirs for f in sorted(d.glob("decisions-*.jsonl")) for line in f.open("rb")]
    event = re.compile(rb'"EventId":"([^"]+)"')
    lines.sort(key=lambda line: (_TIMESTAMP.search(line).group(1), event.search(line).group(1)))
    (into / "decisions-merged.jsonl").write_bytes(b"".join(lines))
    with (into / "outcomes-merged.jsonl").open("wb") as out:
        for d in log_dirs:
            for f in sorted(d.glob("outcomes-*.jsonl")):
                with f.open("rb") as src:
                    shutil.copyfileobj(src, out)
    return into


def offline_comparison(run: LearnerAndReplicas, published: ValueModel, into: Path):
    """``nba train``'s model on the replicas' merged logs (written to ``into``) against the
    learner's ``published`` one: (the training result, ``largest_difference``, decisions compared)."""
    from training.train import train

    merged = merged_logs([run.log_dir(r) for r in range(run.n)], into)
    offline = train(merged, run.catalog)
    return (offline, *largest_difference(published, offline.model, merged, run.catalog))


def largest_difference(a: ValueModel, b: ValueModel, log_dir: Path, catalog, limit: int = 500) -> tuple[float, int]:
    """The largest |a - b| over the values of every action of the first ``limit`` logged
    decisions, and how many decisions that was."""
    from training.dataset import iter_decisions

    worst, n = 0.0, 0
    for d in iter_decisions(log_dir, catalog):
        worst = max(worst, float(np.abs(a.values(d.context, len(d.actions)) - b.values(d.context, len(d.actions))).max()))
        n += 1
        if n >= limit:
            break
    return worst, n
