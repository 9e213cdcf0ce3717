"""What a server has learned online, kept across restarts.

The served model is written every ``every_seconds`` (when it has learned since) and when the
server stops, to ``<state dir>/model-checkpoint.vw`` with ``model-checkpoint.json`` beside it
(its settings, the version it grew from, how many updates, and the SHA-256 of the model bytes).
Each file is written whole to a temporary name, fsynced, then renamed over the old one, so a
crash leaves the previous checkpoint or the new one, never a torn file; a model file that does
not match its description's SHA-256 (a crash between the two renames) is not loaded.

At start the checkpoint is resumed when it grew from the model the server starts with (the same
``--model`` file, the same registered version, or a cold start): the server goes on learning
where it stopped instead of from that model again.

With ``nba serve --processes N`` one process learns and saves; the others ``follow``: they save
nothing, and serve each new checkpoint (checked the same way) within ``FOLLOW_POLL`` seconds of
it being written, so every process serves what the learner knew at its last save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

from engine.models import like

log = logging.getLogger("nba.checkpoint")
MODEL_FILE = "model-checkpoint.vw"
INFO_FILE = "model-checkpoint.json"
FOLLOW_POLL = 2.0


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ModelCheckpoint:
    """Saves ``engine``'s model under ``directory`` (see the module)."""

    def __init__(self, directory: Path, engine, every_seconds: float = 60.0, follow: bool = False):
        if every_seconds <= 0:
            raise ValueError(f"--checkpoint-seconds must be > 0, got {every_seconds}")
        self.directory, self.engine, self.every_seconds, self.follow = directory, engine, every_seconds, follow
        self._seen: str | None = None  # the SHA-256 of the checkpoint last served
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one save at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved_updates = -1
        self.saves = 0

    def save(self) -> bool:
        """Write the model now if it learned since the last save; True when written (never
        when following)."""
        if self.follow:
            return False
        with self._lock:
            model = self.engine.model
            if model.updates == self._saved_updates:
                return False
            data = model.serialize()
            info = {"version": model.version, "updates": model.updates, "args": model.args,
                    "sha256": hashlib.sha256(data).hexdigest()}
            _write_atomically(self.directory / MODEL_FILE, data)
            _write_atomically(self.directory / INFO_FILE, json.dumps(info, indent=2).encode())
            self._saved_updates = model.updates
            self.saves += 1
            return True

    def resume(self) -> bool:
        """Serve the checkpoint if it grew from the model now serving and is not the one already
        served; True when it was loaded."""
        model = self.engine.model
        info_path, model_path = self.directory / INFO_FILE, self.directory / MODEL_FILE
        if not info_path.exists():
            return False
        try:
            info = json.loads(info_path.read_text())
            if info.get("sha256") == self._seen:
                return False
            data = model_path.read_bytes()
        except (OSError, ValueError) as exc:
            log.warning("model checkpoint in %s unreadable (%s): serving %s", self.directory, exc, model.version)
            return False
        if hashlib.sha256(data).hexdigest() != info.get("sha256"):
            # At start: a crash between the two renames. Following: the learner is between them.
            (log.debug if self.follow else log.warning)(
                "model checkpoint in %s is incomplete: serving %s", self.directory, model.version)
            return False
        if info.get("version") != model.version or info.get("args") != model.args:
            log.info("model checkpoint in %s grew from %s (%s), not from %s: not served", self.directory,
                     info.get("version"), " ".join(info.get("args", [])), model.version)
            self._seen = info.get("sha256")
            return False
        restored = like(model, data, model.version, int(info.get("updates", 0)))
        self.engine.swap_model(restored)
        self._saved_updates, self._seen = restored.updates, info["sha256"]
        log.info("%s model %s from its checkpoint (%d updates learned online)",
                 "following" if self.follow else "resumed", model.version, restored.updates)
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nba-checkpoint", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(FOLLOW_POLL if self.follow else self.every_seconds):
            try:
                self.resume() if self.follow else self.save()
            except Exception:  # noqa: BLE001 - a failed save keeps the previous checkpoint; say so
                log.exception("model checkpoint %s failed", "load" if self.follow else "save")

    def stop(self) -> None:
        """Stop the periodic saves and save one last time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.save()

