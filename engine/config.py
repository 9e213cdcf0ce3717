"""Typed access to parsed TOML, shared by every configuration file (catalog, scenarios).

Every error names the file, the key and what is allowed.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class ConfigError(ValueError):
    """Configuration -- a file, or a command's options -- is missing, unreadable or invalid."""


class ConfigReader:
    """Typed access to a parsed TOML tree, raising ``error_class`` with file and key."""

    def __init__(self, source: str, error_class: type[ConfigError] = ConfigError):
        self.source = source
        self.error_class = error_class

    def error(self, key: str, expected: str, got: Any) -> ConfigError:
        return self.error_class(f"{self.source}: key '{key}': expected {expected}, got {got!r}")

    def only_keys(self, table: dict[str, Any], prefix: str, allowed: set[str]) -> None:
        for name in table:
            if name not in allowed:
                full = f"{prefix}.{name}" if prefix else name
                raise self.error_class(f"{self.source}: unknown key '{full}'; allowed: {sorted(allowed)}")

    def _get(self, table: dict[str, Any], name: str, key: str, required: bool, default: Any) -> Any:
        if name in table:
            return table[name]
        if required:
            raise self.error_class(f"{self.source}: missing required key '{key}'")
        return default

    def table(self, table: dict[str, Any], name: str, key: str | None = None,
              required: bool = False) -> dict[str, Any]:
        value = self._get(table, name, key or name, required, {})
        if not isinstance(value, dict):
            raise self.error(key or name, "a table", value)
        return value

    def string(self, table: dict[str, Any], name: str, key: str | None = None,
               required: bool = False, default: str = "") -> str:
        value = self._get(table, name, key or name, required, default)
        if not isinstance(value, str) or (required and not value):
            raise self.error(key or name, "a non-empty string", value)
        return value

    def string_list(self, table: dict[str, Any], name: str, key: str, required: bool = False,
                    default: list[str] | None = None) -> list[str]:
        value = self._get(table, name, key, required, default or [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, "a list of non-empty strings", value)
        return value

    def number(self, table: dict[str, Any], name: str, key: str, required: bool = False,
               default: float = 0.0, low: float | None = None, high: float | None = None) -> float:
        value = self._get(table, name, key, required, default)
        bounds = " ".join(filter(None, [f">= {low}" if low is not None else "",
                                        f"<= {high}" if high is not None else ""]))
        expected = f"a number {bounds}".strip()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(key, expected, value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(key, expected, value)
        return float(value)

    def integer(self, table: dict[str, Any], name: str, key: str, default: int,
                low: int, high: int) -> int:
        value = self._get(table, name, key, False, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"an integer from {low} to {high}", value)
        return value

    def boolean(self, table: dict[str, Any], name: str, key: str, default: bool) -> bool:
        value = self._get(table, name, key, False, default)
        if not isinstance(value, bool):
            raise self.error(key, "true or false", value)
        return value

    def choice(self, table: dict[str, Any], name: str, key: str, allowed: tuple[str, ...],
               default: str) -> str:
        value = self._get(table, name, key, False, default)
        if value not in allowed:
            raise self.error(key, f"one of {list(allowed)}", value)
        return value

    def date(self, table: dict[str, Any], name: str, key: str) -> dt.date | None:
        value = table.get(name)
        if value is None:
            return None
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            raise self.error(key, "a TOML date like 2026-12-31", value)
        return value

    def identifier(self, value: str, key: str) -> None:
        if not ID_PATTERN.match(value):
            raise self.error(key, "an id of 1-40 lowercase letters, digits or '_', starting with a letter",
                             value)

    def timezone(self, value: str, key: str) -> None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.error(key, "an IANA time zone name like 'Europe/Paris'", value) from None

    def clock_minute(self, value: Any, key: str) -> int:
        match = re.fullmatch(r"(\d{2}):(\d{2})", value) if isinstance(value, str) else None
        if not match or int(match[1]) > 24 or int(match[2]) > 59 or (int(match[1]) == 24 and int(match[2])):
            raise self.error(key, "a local time 'HH:MM' from 00:00 to 24:00", value)
        return int(match[1]) * 60 + int(match[2])


def read_toml(path: str | Path, error_class: type[ConfigError] = ConfigError) -> tuple[dict[str, Any], bytes]:
    """Parse a TOML file; errors name the file. Returns the data and the raw bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error_class(f"{path}: cannot read file: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(raw.decode("utf-8")), raw
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error_class(f"{path}: not valid TOML: {exc}") from None
