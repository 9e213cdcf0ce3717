"""`nba serve` in a process of its own, for tests that kill it: its output is read by a thread
(kept in ``lines``) so that a full pipe never blocks the server."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from engine.server import start_server_process


class ServerProcess:
    def __init__(self, log_dir: Path, seed: int = 1, extra: list[str] = ()):
        self.lines: list[str] = []
        self.proc, self.port = start_server_process(log_dir, seed, list(extra), output=self.lines)
        self.target = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM, and wait: the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)
