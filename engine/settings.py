"""Settings files (the catalog, scenarios): each setting declared once, everything else derived.

A setting is a field of a frozen dataclass, declared with :func:`setting`: its name, type,
default, allowed values and what it does, in one place (as MABWiser keeps each policy's
parameters in one validated type). From that declaration come

* the reader (:func:`read_settings`): a TOML table to an instance, with unknown keys refused;
* the validation and its errors, which name the file, the key and what is allowed::

      my.toml: key 'exploration.epsilon': expected a number >= 0 <= 1, got 2
* the reference page (:func:`reference`), e.g. ``docs/catalog.md``.

A setting whose value has a structure of its own (a list of tables, a table of rules) is
declared the same way with ``form`` saying what it looks like; its owner reads it and passes
the value in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
UNITS = {"hours": dt.timedelta(hours=1), "days": dt.timedelta(days=1)}


class ConfigError(ValueError):
    """Configuration -- a file, or a command's options -- is missing, unreadable or invalid."""


@dataclass(frozen=True)
class Spec:
    """What a settings file may hold for one field (see :func:`setting`)."""

    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    key: str | None = None
    unit: str | None = None
    form: str | None = None
    default_doc: str | None = None


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, low: float | None = None,
            high: float | None = None, choices: tuple[str, ...] | None = None, key: str | None = None,
            unit: str | None = None, form: str | None = None, default_doc: str | None = None) -> Any:
    """Declare a setting as a dataclass field.

    Args:
        default: its value when the file leaves it out (none: the key is required).
        doc: what it does, for the reference page.
        low, high: bounds of a number.
        choices: the allowed values of a text.
        key: its name in the file, when not the field's.
        unit: ``"hours"`` or ``"days"``: a number in the file, a ``timedelta`` in the field.
        form: the value has a structure its owner reads (e.g. a list of tables); what it looks like.
        default_doc: the default as the reference states it, when it depends on other settings.
    """
    spec = Spec(doc=doc, low=low, high=high, choices=choices, key=key, unit=unit, form=form,
                default_doc=default_doc)
    if isinstance(default, (list, dict, set)):
        raise TypeError("a setting's default must be immutable: use a tuple")
    return field(default=default, metadata={"setting": spec})


def settings_of(cls: type) -> list[tuple[dataclasses.Field, Spec, Any]]:
    """(field, spec, type) of each declared setting of a settings dataclass, in order."""
    hints = typing.get_type_hints(cls)
    return [(f, f.metadata["setting"], hints[f.name]) for f in dataclasses.fields(cls) if "setting" in f.metadata]


def file_key(f: dataclasses.Field, spec: Spec) -> str:
    return spec.key or f.name


class ConfigReader:
    """Typed access to a parsed TOML tree, raising ``error_class`` with file and key."""

    def __init__(self, source: str, error_class: type[ConfigError] = ConfigError):
        self.source = source
        self.error_class = error_class

    def error(self, key: str, expected: str, got: Any) -> ConfigError:
        return self.error_class(f"{self.source}: key '{key}': expected {expected}, got {got!r}")

    def missing(self, key: str) -> ConfigError:
        return self.error_class(f"{self.source}: missing required key '{key}'")

    def only_keys(self, table: dict[str, Any], prefix: str, allowed: set[str]) -> None:
        for name in table:
            if name not in allowed:
                full = f"{prefix}.{name}" if prefix else name
                raise self.error_class(f"{self.source}: unknown key '{full}'; allowed: {sorted(allowed)}")

    def _get(self, table: dict[str, Any], name: str, key: str, required: bool, default: Any) -> Any:
        if name in table:
            return table[name]
        if required:
            raise self.missing(key)
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
        expected = f"a number {bounds_text(low, high)}".strip()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(key, expected, value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(key, expected, value)
        return float(value)

    def integer(self, table: dict[str, Any], name: str, key: str, default: int | None,
                low: int, high: int) -> int:
        value = self._get(table, name, key, default is None, default)
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

    def datetime(self, table: dict[str, Any], name: str, key: str, default: dt.datetime) -> dt.datetime:
        value = table.get(name, default)
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise self.error(key, "a TOML date-time with an offset, like 2026-01-05T06:00:00Z", value)
        return value.astimezone(dt.timezone.utc)

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

    # -- declared settings --------------------------------------------------------------------

    def value(self, table: dict[str, Any], f: dataclasses.Field, spec: Spec, kind: Any, prefix: str,
              default: Any = dataclasses.MISSING) -> Any:
        """One declared setting read from ``table`` (its default when absent)."""
        name = file_key(f, spec)
        key = f"{prefix}.{name}" if prefix else name
        if default is dataclasses.MISSING:
            default = f.default
        if name not in table:
            if default is dataclasses.MISSING:
                raise self.missing(key)
            return default
        if spec.unit is not None:
            number = self.number(table, name, key, low=spec.low, high=spec.high)
            return number * UNITS[spec.unit]
        if kind is bool:
            return self.boolean(table, name, key, False)
        if kind is int:
            return self.integer(table, name, key, 0, int(spec.low), int(spec.high))
        if kind is float:
            return self.number(table, name, key, low=spec.low, high=spec.high)
        if kind is dt.datetime:
            return self.datetime(table, name, key, default)
        if _is_optional(kind, dt.date):
            return self.date(table, name, key)
        if kind is str or _is_optional(kind, str):
            if spec.choices is not None:
                return self.choice(table, name, key, spec.choices, default)
            text = self.string(table, name, key, required=f.default is dataclasses.MISSING)
            return text if kind is str else text or None
        if kind == tuple[str, ...]:
            items = self.string_list(table, name, key)
            for i, item in enumerate(items):
                if spec.choices is not None and item not in spec.choices:
                    raise self.error(f"{key}[{i}]", f"one of {list(spec.choices)}", item)
            return tuple(items)
        raise TypeError(f"setting {key}: no reader for type {kind}")


def _is_optional(kind: Any, inner: type) -> bool:
    return isinstance(kind, types.UnionType) and set(kind.__args__) == {inner, type(None)}


def read_settings(r: ConfigReader, table: dict[str, Any], prefix: str, cls: type, /,
                  defaults: dict[str, Any] | None = None, **given: Any) -> Any:
    """An instance of the settings dataclass ``cls`` from the TOML ``table`` at ``prefix``.

    Unknown keys are refused. ``given``: fields the owner has read itself (those declared with a
    ``form``, an id taken from the table's name); their keys are allowed in the table.
    ``defaults``: defaults that depend on other settings (declared with ``default_doc``).
    """
    declared = settings_of(cls)
    r.only_keys(table, prefix, {file_key(f, spec) for f, spec, _ in declared})
    values = dict(given)
    for f, spec, kind in declared:
        if f.name in given:
            continue
        if spec.form is not None:
            raise TypeError(f"{cls.__name__}.{f.name} has a form of its own: its owner passes it")
        default = (defaults or {}).get(f.name, dataclasses.MISSING)
        values[f.name] = r.value(table, f, spec, kind, prefix, default)
    return cls(**values)


def bounds_text(low: float | None, high: float | None) -> str:
    return " ".join(filter(None, [f">= {low:g}" if low is not None else "",
                                  f"<= {high:g}" if high is not None else ""]))


# -- the reference page ---------------------------------------------------------------------------


def _toml(value: Any, spec: Spec) -> str:
    if spec.default_doc is not None:
        return spec.default_doc
    if value is dataclasses.MISSING:
        return "required"
    if isinstance(value, dt.timedelta):
        value = value / UNITS[spec.unit]
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and value.is_integer():
        value = int(value) if abs(value) < 1e15 else value
    if isinstance(value, dt.datetime):
        return f"`{value.isoformat().replace('+00:00', 'Z')}`"
    if value is None:
        return "none"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f"`{value}`"


def _type_text(kind: Any, spec: Spec) -> str:
    if spec.form is not None:
        return spec.form
    if spec.unit is not None:
        return f"number ({spec.unit})"
    if spec.choices is not None:
        names = " \\| ".join(f'`"{c}"`' for c in spec.choices)
        return f"list of {names}" if kind == tuple[str, ...] else names
    return {bool: "true / false", int: "integer", float: "number", str: "text", dt.datetime: "date-time",
            tuple[str, ...]: "list of texts"}.get(kind, "date" if _is_optional(kind, dt.date) else "text")


def _allowed_text(spec: Spec) -> str:
    if spec.low is not None and spec.high is not None:
        return f"{spec.low:g} to {spec.high:g}"
    if spec.low is not None:
        return f"≥ {spec.low:g}"
    return f"≤ {spec.high:g}" if spec.high is not None else ""


def reference(sections: list[tuple[str, type, str]]) -> str:
    """A Markdown reference of settings tables: ``(table name, dataclass, what the table is)``."""
    out = []
    for name, cls, about in sections:
        out += [f"### `{name}`", "", about, "", "| key | type | default | allowed | what it does |",
                "|---|---|---|---|---|"]
        for f, spec, kind in settings_of(cls):
            allowed = _allowed_text(spec)
            doc = " ".join(spec.doc.split()).replace("|", "\\|")
            out.append(f"| `{file_key(f, spec)}` | {_type_text(kind, spec)} | {_toml(f.default, spec)} | "
                       f"{allowed} | {doc} |")
        out.append("")
    return "\n".join(out)


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
