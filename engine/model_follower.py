"""Follow a registered model: load the version a ``models:/name@alias`` URI names, and load
again when the alias moves (polled, or on demand via the ``ReloadPolicy`` RPC).

Loading happens beside the serving model: the new workspace is read and checked first, then
swapped in with one assignment (``DecisionEngine.swap_model``), so no call waits for it or
fails because of it. A failed load (registry unreachable, a broken model) keeps the current
model serving, is logged, and is retried at the next poll.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from engine import models as registry
from engine.catalog import Catalog
from engine.models import load_model
from engine.pipeline import DecisionEngine

log = logging.getLogger("nba.model")


@dataclass(frozen=True)
class ReloadResult:
    model_uri: str
    previous_version: str
    model_version: str
    reloaded: bool


class ModelFollower:
    def __init__(self, engine: DecisionEngine, catalog: Catalog, model_uri: str,
                 poll_seconds: float = 30.0, tracking_uri: str | None = None):
        if poll_seconds <= 0:
            raise ValueError(f"poll interval must be > 0 seconds, got {poll_seconds}")
        registry.parse_model_uri(model_uri)  # fail early on a malformed URI
        self.engine = engine
        self.catalog = catalog
        self.model_uri = model_uri
        self.poll_seconds = poll_seconds
        self.tracking_uri = registry.use_tracking(tracking_uri)
        self._lock = threading.Lock()          # one load at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded_version: str | None = None
        self.errors = 0

    def check(self) -> ReloadResult:
        """Resolve the URI now; load the version if it is not the one serving."""
        with self._lock:
            previous = self.engine.model.version
            name, _, _ = registry.parse_model_uri(self.model_uri)
            version = registry.resolve_version(self.model_uri)
            if version == self.loaded_version:
                return ReloadResult(self.model_uri, previous, previous, False)
            local, label = registry.download_version(name, version)
            model = load_model(local, self.catalog, version=label)
            self.engine.swap_model(model)
            self.loaded_version = version
            log.info("serving %s (was %s), from %s", label, previous, self.model_uri)
            return ReloadResult(self.model_uri, previous, label, True)

    def start(self) -> None:
        """Load now (raising if that fails: a server must not start without its model), then
        poll in the background."""
        self.check()
        self._thread = threading.Thread(target=self._poll, name="model-follower", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
            except Exception as exc:  # keep serving the current model; retry next poll
                self.errors += 1
                log.warning("could not check %s (keeping %s): %s", self.model_uri,
                            self.engine.model.version, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
