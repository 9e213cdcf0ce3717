"""One learner for many replicas: ``nba learn`` learns from every replica's matured decisions and
publishes its model through Redis; ``nba serve --follow-learner`` replicas serve what it publishes.

Without it, each replica on a shared Redis learns from the decisions it happens to mature from
the shared queue: N replicas serve N diverging models, each trained on 1/N of the data. With it,
one process matures and learns every decision, in the queue's order (maturity, then event id:
the decisions' time order), so its model is the model ``nba train`` makes from the replicas'
joined logs in that order (``tests/test_shared_learner.py``).

Where the model goes. The learner writes the model and its description into one Redis hash,
``<prefix>:{m}:model`` (version, sequence, sha256, args, updates, published, data), with one
HSET, so a reader sees one publication whole, never parts of two. Replicas read its version
field (a few bytes) every ``--poll-seconds`` and the rest only when it changed. A model whose
bytes do not match their SHA-256, or whose VW arguments are not the replica's, is not served:
the replica logs it, counts it and keeps its model.

Why Redis and not the MLflow registry: publications come every few seconds, thousands a day,
each a whole model; a registry version is a deliberate release (``nba train`` and ``nba
promote``, with the evaluation that justified it) and each costs a database row and an artifact
copy. The replicas already hold a Redis connection, and the state they decide with lives there:
the model they follow fails together with what it is used with, not apart from it.

Versions are ``online-<n>``, n counting the publications under the prefix. Every decision logs
the version that scored it (DSJSON ``VWState.m``). A restarted learner resumes from the last
publication when its VW arguments match. One learner per prefix: it holds a lease
(``<prefix>:{m}:learner``, renewed while it runs), and a second one refuses to start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from engine.model_follower import ReloadResult
from engine.models import like as same_kind
from engine.pipeline import DecisionEngine
from engine.redis_store import RedisStateStore
from engine.settings import ConfigError
from engine.state import StoreUnavailable
from engine.value_model import ValueModel

log = logging.getLogger("nba.learner")
LEASE_SECONDS = 15
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""


@dataclass(frozen=True)
class Publication:
    version: str
    sequence: int
    sha256: str
    args: tuple[str, ...]
    updates: int
    published: float  # Unix time
    data: bytes = b""


class ModelChannel:
    """The published model of one Redis prefix (see the module)."""

    def __init__(self, store: RedisStateStore):
        self.store = store
        self.key = f"{store.prefix}:{{m}}:model"
        self.lease_key = f"{store.prefix}:{{m}}:learner"

    def publish(self, model: ValueModel, sequence: int) -> Publication:
        data = model.serialize()
        pub = Publication(f"online-{sequence}", sequence, hashlib.sha256(data).hexdigest(), tuple(model.args),
                          model.updates, time.time(), data)
        self.store._call(self.store.r.hset, self.key, mapping={
            "version": pub.version, "sequence": pub.sequence, "sha256": pub.sha256, "args": " ".join(pub.args),
            "updates": pub.updates, "published": repr(pub.published), "data": data})
        return pub

    def version(self) -> str | None:
        """The version published last (None: nothing yet). Raises StoreUnavailable."""
        value = self.store._call(self.store.r.hget, self.key, "version")
        return value.decode() if value is not None else None

    def read(self) -> Publication | None:
        """The last publication, checked against its SHA-256 (ValueError when it does not
        match). Raises StoreUnavailable."""
        fields = self.store._call(self.store.r.hgetall, self.key)
        if not fields:
            return None
        text = {k.decode(): v.decode() for k, v in fields.items() if k != b"data"}
        data = fields.get(b"data", b"")
        if hashlib.sha256(data).hexdigest() != text.get("sha256"):
            raise ValueError(f"{self.key}: the model's bytes do not match their SHA-256")
        return Publication(text["version"], int(text["sequence"]), text["sha256"], tuple(text["args"].split()),
                           int(text["updates"]), float(text["published"]), data)

    def lease(self, holder: str) -> None:
        """Become the prefix's one learner (ConfigError naming the holder when another is)."""
        if not self.store._call(self.store.r.set, self.lease_key, holder, nx=True, ex=LEASE_SECONDS):
            other = self.store._call(self.store.r.get, self.lease_key)
            raise ConfigError(f"another learner ({(other or b'?').decode()}) learns for prefix "
                              f"{self.store.prefix!r} on {self.store.url}: one learner per prefix")

    def renew(self, holder: str) -> bool:
        return bool(self.store._call(self.store.r.eval, RENEW, 1, self.lease_key, holder, LEASE_SECONDS))

    def release(self, holder: str) -> None:
        if self.store._call(self.store.r.get, self.lease_key) == holder.encode():
            self.store._call(self.store.r.delete, self.lease_key)

    def learner(self) -> str | None:
        """Who holds the lease (None: no learner runs)."""
        value = self.store._call(self.store.r.get, self.lease_key)
        return value.decode() if value is not None else None


def model_of(pub: Publication, like: ValueModel) -> ValueModel:
    """The publication as a model with ``like``'s settings (ValueError if its VW arguments
    differ: a model of another catalog is not served)."""
    if tuple(pub.args) != tuple(like.args):
        raise ValueError(f"{pub.version} was learned with VW arguments {' '.join(pub.args)!r}, "
                         f"this catalog's are {' '.join(like.args)!r}")
    return same_kind(like, pub.data, pub.version, pub.updates)


class Learner:
    """Matures every replica's decisions, learns from them and publishes the model every
    ``every_seconds`` (or after ``every_examples`` new ones, when > 0) it has learned since."""

    def __init__(self, engine: DecisionEngine, channel: ModelChannel, every_seconds: float = 10.0,
                 every_examples: int = 0):
        if every_seconds <= 0:
            raise ConfigError(f"--publish-seconds must be > 0, got {every_seconds}")
        if every_examples < 0:
            raise ConfigError(f"--publish-examples must be >= 0, got {every_examples}")
        self.engine, self.channel = engine, channel
        self.every_seconds, self.every_examples = every_seconds, every_examples
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.sequence = 0
        self.published: Publication | None = None
        self._published_updates = engine.model.updates
        self._published_at = time.monotonic()

    def start(self) -> None:
        """Take the lease and resume from the last publication when it fits this catalog."""
        self.channel.lease(self.holder)
        try:
            pub = self.channel.read()
        except ValueError as exc:
            log.warning("%s: not resumed", exc)
            return
        if pub is None:
            return
        self.sequence = pub.sequence
        try:
            model = model_of(pub, self.engine.model)
        except ValueError as exc:
            log.warning("%s: starting from %s instead", exc, self.engine.model.version)
            return
        self.engine.swap_model(model)
        self._published_updates, self.published = model.updates, pub
        log.info("resumed from %s (%d updates)", pub.version, model.updates)

    def step(self) -> Publication | None:
        """Mature and learn what has matured; publish if it is time. The publication or None."""
        self.engine.mature()
        if not self.channel.renew(self.holder):
            self.channel.lease(self.holder)  # it lapsed (Redis was away): take it again, or stop
        model = self.engine.model
        new = model.updates - self._published_updates
        due = time.monotonic() - self._published_at >= self.every_seconds
        if new and (due or (self.every_examples and new >= self.every_examples)):
            return self.publish()
        return None

    def publish(self) -> Publication | None:
        """Publish the model now if it learned since the last publication."""
        model = self.engine.model
        if model.updates == self._published_updates:
            return None
        pub = self.channel.publish(model, self.sequence + 1)
        self.sequence, self.published = pub.sequence, pub
        model.version, self._published_updates, self._published_at = pub.version, pub.updates, time.monotonic()
        log.info("published %s (%d updates, %.0f KB)", pub.version, pub.updates, len(pub.data) / 1024)
        return pub

    def run(self, stop: threading.Event, mature_every: float = 1.0) -> None:
        """Step every ``mature_every`` seconds until ``stop``; then publish what is left and
        give up the lease."""
        while not stop.wait(mature_every):
            try:
                self.step()
            except StoreUnavailable as exc:
                log.warning("redis unavailable (%s): retrying", exc)
        try:
            self.publish()
            self.channel.release(self.holder)
        except StoreUnavailable as exc:
            log.error("redis unavailable at shutdown (%s): what was learned since %s is not published", exc,
                      self.published.version if self.published else "the start")


class LearnerFollower:
    """A replica's side: serve each model the learner publishes within ``poll_seconds`` of it
    (``nba serve --follow-learner``). The same interface as ``ModelFollower``, so
    ``ReloadPolicy`` looks at once."""

    def __init__(self, engine: DecisionEngine, channel: ModelChannel, poll_seconds: float = 2.0):
        if poll_seconds <= 0:
            raise ConfigError(f"--poll-seconds must be > 0, got {poll_seconds}")
        self.engine, self.channel, self.poll_seconds = engine, channel, poll_seconds
        self.model_uri = f"{channel.store.url} {channel.key}"
        self.loaded_version: str | None = None
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> ReloadResult:
        with self._lock:
            previous = self.engine.model.version
            if self.channel.version() in (None, self.loaded_version):
                return ReloadResult(self.model_uri, previous, previous, False)
            pub = self.channel.read()
            model = model_of(pub, self.engine.model)
            self.engine.swap_model(model)
            self.loaded_version = pub.version
            log.info("serving %s (was %s), published %.2f s ago", pub.version, previous, time.time() - pub.published)
            return ReloadResult(self.model_uri, previous, pub.version, True)

    def start(self) -> None:
        """Serve the last publication now if there is one, then poll in the background."""
        self._poll_once()
        self._thread = threading.Thread(target=self._poll, name="nba-follow-learner", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self._poll_once()

    def _poll_once(self) -> None:
        try:
            self.check()
        except (StoreUnavailable, ValueError) as exc:  # keep serving the current model
            self.errors += 1
            log.warning("cannot follow the learner (serving %s): %s", self.engine.model.version, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
