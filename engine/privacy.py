"""Customer ids kept out of the state and the logs, and customers forgotten on request.

* **State keys** (Redis keys, SQLite rows) use ``HMAC-SHA256(key, customer id)``, not the id:
  whoever reads the state without the key cannot tell whose it is.
* **Logs** carry, per customer, a random *log token* that the state holds (``StateStore.
  log_token``), not the id nor its HMAC. Training groups a customer's decisions by it.
* **Erasure** (``nba forget``, the ``ForgetCustomer`` RPC) deletes the customer's state -- its
  contacts, response counts, pending decisions and log token. Its logged decisions stay (the
  model's training data), but nothing links them to the id any more: the token was random and
  is gone (crypto-shredding). What is kept: the aggregate model weights, and the logged features
  of past requests, which no longer say whose they were.

The key comes from a file (``--id-key-file``) or the ``NBA_ID_KEY`` environment variable; a
server without one makes one in its state directory, readable by its user only. The key is a
secret: never in the repository, never in a log.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from engine.settings import ConfigError

KEY_ENV = "NBA_ID_KEY"
KEY_FILE = "id.key"
MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class Pseudonyms:
    """Customer id -> the id the state is keyed by."""

    key: bytes

    def storage_id(self, customer_id: str) -> str:
        return hmac.digest(self.key, customer_id.encode(), "sha256").hex()[:32]


def new_log_token() -> str:
    return secrets.token_hex(12)


def load_key(key_file: Path | None, state_dir: Path | None) -> bytes:
    """The pseudonymisation key: ``key_file``, else ``$NBA_ID_KEY``, else ``state_dir/id.key``
    (made there, mode 0600, when missing)."""
    if key_file is not None:
        try:
            key = key_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"--id-key-file {key_file}: cannot read file: {exc.strerror or exc}") from None
        return _checked(key, f"--id-key-file {key_file}")
    if os.environ.get(KEY_ENV):
        return _checked(os.environ[KEY_ENV].encode().strip(), f"${KEY_ENV}")
    if state_dir is None:
        raise ConfigError(f"no pseudonymisation key: give --id-key-file or set ${KEY_ENV}")
    path = state_dir / KEY_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return _checked(path.read_bytes().strip(), str(path))


def _checked(key: bytes, where: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{where}: the pseudonymisation key must be at least {MIN_KEY_BYTES} bytes")
    return key
