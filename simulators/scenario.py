"""Scenario files: population, response model, horizon and catalog of a simulation.

Every setting is declared once below (``engine.settings.setting``); ``docs/scenarios.md``
(``python -m simulators.scenario``) is made from the declarations, and ``default.toml`` gives
the reason for each of its numbers. A scenario can state only how it differs from another::

    extends = "default"          # a shipped scenario, or a path relative to this file
    name = "high_fatigue"
    [response.fatigue]
    half_life_days = 14.0        # the rest of the table is default.toml's

and changes its catalog in one way, ``[catalog_changes]``: the keys given, table by table, on
top of the catalog (``nba simulate --set TABLE.KEY=VALUE`` adds one for a run). Loading
validates everything; errors name the file, the key and the allowed values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from engine.catalog import Catalog, CatalogError, default_catalog_path, parse_catalog
from engine.settings import ConfigError, ConfigReader, read_settings, read_toml, reference, setting

SEGMENTS = ("new", "loyal", "occasional", "dormant")
MOTIVATIONS = ("promo", "novelty", "indifferent")


class ScenarioError(ConfigError):
    """A scenario file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class ChannelResponse:
    delivered: float = setting(doc="P(delivered)", low=0, high=1)
    open: float = setting(doc="P(open | delivered) of an engaged customer of average affinity at the preferred "
                              "hour, before fatigue", low=0, high=1)
    click: float = setting(doc="P(click | open) for a neutral offer", low=0, high=1)
    unsubscribe: float = setting(doc="P(unsubscribe | delivered), before fatigue", low=0, high=1)
    complaint: float = setting(doc="P(complaint | delivered)", low=0, high=1)


@dataclass(frozen=True)
class Population:
    segments: dict[str, float] = setting(doc="RFM segments' shares (they add up to 1)",
                                         form=f"table of shares: {', '.join(SEGMENTS)}")
    motivations: dict[str, float] = setting(doc="purchase motivations' shares (they add up to 1)",
                                            form=f"table of shares: {', '.join(MOTIVATIONS)}")
    timezones: dict[str, float] = setting(doc="IANA time zones' shares (they add up to 1)",
                                          form='table of shares, e.g. `{ "Europe/Paris" = 1.0 }`')
    consent: dict[str, float] = setting(doc="share of customers opted in to each channel",
                                        form="table of shares by catalog channel")
    basket: tuple[float, float] = setting(doc="a customer's average basket is uniform in [min, max] EUR",
                                          form="`{ min = EUR, max = EUR }`")
    purchases_per_year: dict[str, float] = setting(doc="organic purchases a year by segment",
                                                   form=f"table: {', '.join(SEGMENTS)}")
    hour_peaks: tuple[float, ...] = setting(doc="local hours around which customers prefer to be contacted",
                                            form="list of hours 0-24")
    hour_peak_weights: tuple[float, ...] = setting(doc="share of customers around each peak (adds up to 1)",
                                                   form="list of shares, one per peak")
    hour_spread: float = setting(1.5, "sd (hours) of a customer's preferred hour around its peak", low=0, high=12)
    observed_hour_noise: float = setting(1.5, "sd (hours) of the CRM's usual open hour around the true one",
                                         low=0, high=12)
    affinity_sigma: float = setting(0.5, "log-normal sigma of channel affinity between customers", low=0, high=3)
    sensitivity_sigma: float = setting(0.3, "log-normal sigma of incentive sensitivity within a motivation",
                                       low=0, high=3)
    history_weeks: float = setting(13.0, "weeks of CRM history behind the observed features", low=0, high=520)

    @property
    def basket_min(self) -> float:
        return self.basket[0]

    @property
    def basket_max(self) -> float:
        return self.basket[1]


@dataclass(frozen=True)
class Fatigue:
    half_life_days: float = setting(doc="every delivered contact adds 1 to fatigue (SMS `sms_weight`), halving "
                                        "every this many days", low=0.01, high=365)
    open_penalty: float = setting(doc="opens fall by exp(-open_penalty x fatigue)", low=0, high=10)
    unsubscribe_growth: float = setting(doc="unsubscribes grow by (1 + unsubscribe_growth x fatigue)",
                                        low=0, high=10)
    disengage: float = setting(doc="P(an unopened contact leaves the customer disengaged), times (1 + "
                                   "unsubscribe_growth x fatigue)", low=0, high=1)
    disengaged_open: float = setting(doc="a disengaged customer opens this share of what it used to", low=0, high=1)
    reengage_per_week: float = setting(doc="weekly rate at which disengaged customers come back", low=0, high=1)
    sms_weight: float = setting(1.0, "fatigue an SMS adds", low=0, high=10)
    reactivate_on_purchase: bool = setting(True, "a dormant customer who buys after a contact becomes occasional")


@dataclass(frozen=True)
class Response:
    send_time_effect: float = setting(doc="sends at a customer's worst hour open this share less than at its best",
                                      low=0, high=1)
    conversion: float = setting(doc="P(purchase | click) for a neutral offer, times the offer and segment effects",
                                low=0, high=1)
    channels: dict[str, ChannelResponse] = setting(doc="the funnel of each catalog channel",
                                                   form="a table per catalog channel, below")
    offer_effect: dict[str, dict[str, float]] = setting(
        doc="purchase-given-click multiplier of each offer, by motivation",
        form="a table per motivation: `{ OFFER = multiplier }` for every catalog offer")
    segment_effect: dict[str, float] = setting(doc="purchase-given-click multiplier by segment",
                                               form=f"table: {', '.join(SEGMENTS)}")
    fatigue: Fatigue = setting(doc="how pressure wears customers out", form="a table, below")
    purchase_delay_days: float = setting(1.5, "mean delay from click to purchase (exponential)", low=0.001, high=60)
    open_delay_hours: float = setting(3.0, "mean delay from send to open (exponential)", low=0.001, high=240)


@dataclass(frozen=True)
class Header:
    name: str = setting(doc="the scenario's name (reports, MLflow)")
    catalog_changes: dict[str, Any] = setting(
        doc="catalog keys to change, table by table (the rest of each table is kept)",
        form="tables, e.g. `[catalog_changes.budgets.incentives]` with `amount = 1000.0`", default_doc="none")
    description: str = setting("", "one line on what it is")
    extends: str = setting("", "a scenario this one states its differences from: a shipped one or a path "
                               "relative to this file; its tables merge key by key", default_doc="none")
    catalog: str = setting("default", "the catalog: the shipped one, or a path relative to this file")
    customers: int = setting(50_000, "customers simulated", low=1, high=50_000_000)
    days: int = setting(63, "days simulated", low=1, high=3650)
    start: dt.datetime = setting(dt.datetime(2026, 1, 5, 6, tzinfo=dt.timezone.utc),
                                 "when the first campaign is decided")


@dataclass(frozen=True)
class Opportunities:
    every_days: int = setting(7, "every reachable customer gets one decision this often", low=1, high=365)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    catalog: Catalog
    customers: int
    days: int
    start: dt.datetime
    every_days: int
    population: Population
    response: Response
    source: str


SECTIONS = (
    ("(top level)", Header, "What the scenario is, its catalog and its horizon."),
    ("opportunities", Opportunities, "How often customers are decided for."),
    ("population", Population, "The customers' hidden traits and what the CRM sees of them."),
    ("response", Response, "The funnel: delivered -> opened -> clicked -> converted, or unsubscribed."),
    ("response.channels.ID", ChannelResponse, "One channel's funnel."),
    ("response.fatigue", Fatigue, "Marketing pressure and its effects."),
)


def scenarios_dir() -> Path:
    return Path(str(resources.files("simulators") / "scenarios"))


def resolve_scenario(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A scenario file path, or the name of a shipped scenario ("default", "cold_start", ...)."""
    path = Path(name_or_path)
    if relative_to is not None and not path.is_absolute() and path.suffix == ".toml":
        path = relative_to / path
    if path.suffix == ".toml" or path.exists():
        return path
    shipped = scenarios_dir() / f"{name_or_path}.toml"
    if shipped.exists():
        return shipped
    names = sorted(p.stem for p in scenarios_dir().glob("*.toml"))
    raise ScenarioError(f"no scenario file or shipped scenario named {str(name_or_path)!r}; "
                        f"shipped: {names}")


def load_scenario(name_or_path: str | Path = "default", catalog_set: dict[str, Any] | None = None) -> Scenario:
    """``catalog_set``: catalog keys changed on top of the scenario's ``catalog_changes``, as
    nested tables (what ``parse_catalog_settings`` makes of ``--set TABLE.KEY=VALUE``)."""
    path = resolve_scenario(name_or_path)
    return parse_scenario(read_scenario_data(path), path, catalog_set)


def read_scenario_data(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A scenario file's tables, with those of the scenario it ``extends`` merged underneath."""
    data, _ = read_toml(path, ScenarioError)
    base_name = data.get("extends")
    if base_name is None:
        return data
    r = ConfigReader(str(path), ScenarioError)
    if not isinstance(base_name, str) or not base_name:
        raise r.error("extends", "the name of a shipped scenario or a path", base_name)
    base_path = resolve_scenario(base_name, relative_to=path.parent)
    if base_path.resolve() in [p.resolve() for p in (*seen, path)]:
        raise r.error("extends", "a scenario that does not extend this one, directly or not", base_name)
    if "name" not in data:
        raise r.error("name", f"a name of its own (it extends {base_name!r})", None)
    base = read_scenario_data(base_path, (*seen, path))
    base.pop("extends", None)
    return merge_tables(base, data)


def merge_tables(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in, key by key: a table merges into a table, anything
    else (a number, a string, an array) replaces what was there. Neither input is modified."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_tables(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_catalog_settings(settings: list[str]) -> dict[str, Any]:
    """``["exploration.epsilon=0.05", 'exploration.slot_value="best"']`` -> nested tables.
    Each value is a TOML value (a number, true/false, a quoted string, an array or inline
    table); errors name the setting."""
    tables: dict[str, Any] = {}
    for item in settings:
        path, sep, text = item.partition("=")
        keys = path.strip().split(".")
        if not sep or len(keys) < 2 or not all(k.strip() for k in keys):
            raise ScenarioError(f"--set {item!r}: expected TABLE.KEY=VALUE, e.g. exploration.epsilon=0.05")
        try:
            value = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            raise ScenarioError(f"--set {item!r}: the value {text.strip()!r} is not a TOML value "
                                f"(a number, true or false, a quoted string, an array)") from None
        nested: dict[str, Any] = {keys[-1].strip(): value}
        for key in reversed(keys[:-1]):
            nested = {key.strip(): nested}
        tables = merge_tables(tables, nested)
    return tables


def parse_scenario(data: dict[str, Any], path: Path, catalog_set: dict[str, Any] | None = None) -> Scenario:
    r = ConfigReader(str(path), ScenarioError)
    tables = {"opportunities", "population", "response"}
    r.only_keys(data, "", tables | {"name", "description", "extends", "catalog", "catalog_changes", "customers",
                                    "days", "start"})
    changes = r.table(data, "catalog_changes")
    header = read_settings(r, {k: v for k, v in data.items() if k not in tables}, "", Header,
                           catalog_changes=changes)
    catalog = _scenario_catalog(r, header, path, catalog_set or {})
    return Scenario(
        name=header.name, description=header.description, catalog=catalog, customers=header.customers,
        days=header.days, start=header.start,
        every_days=read_settings(r, r.table(data, "opportunities"), "opportunities", Opportunities).every_days,
        population=_parse_population(r, r.table(data, "population", required=True), catalog),
        response=_parse_response(r, r.table(data, "response", required=True), catalog),
        source=str(path),
    )


def _scenario_catalog(r: ConfigReader, header: Header, path: Path, catalog_set: dict[str, Any]) -> Catalog:
    """The scenario's catalog with its ``catalog_changes``, then ``--set``, merged in."""
    try:
        catalog_path = default_catalog_path() if header.catalog == "default" else path.parent / header.catalog
        catalog_data, raw = read_toml(catalog_path, CatalogError)
        changes = merge_tables(header.catalog_changes, catalog_set)
        sources = ([f"{path.name}'s catalog_changes"] if header.catalog_changes else []) + \
            (["--set"] if catalog_set else [])
        source = f"{catalog_path} (with {' and '.join(sources)})" if sources else str(catalog_path)
        digest = hashlib.sha256(raw + (repr(changes).encode() if changes else b"")).hexdigest()[:12]
        return parse_catalog(merge_tables(catalog_data, changes), source=source, content_hash=digest)
    except ConfigError as exc:
        raise ScenarioError(f"{path}: key 'catalog': {exc}") from None


def _shares(r: ConfigReader, table: dict, name: str, key: str, allowed: tuple[str, ...] | None
            ) -> dict[str, float]:
    raw = r.table(table, name, key=key, required=True)
    if not raw:
        raise r.error(key, "at least one entry", raw)
    shares = {}
    for k, v in raw.items():
        if allowed is not None and k not in allowed:
            raise r.error(f"{key}.{k}", f"a key among {list(allowed)}", k)
        shares[k] = r.number(raw, k, f"{key}.{k}", required=True, low=0, high=1)
    return shares


def _distribution(r: ConfigReader, table: dict, name: str, key: str,
                  allowed: tuple[str, ...] | None = None) -> dict[str, float]:
    shares = _shares(r, table, name, key, allowed)
    total = sum(shares.values())
    if abs(total - 1.0) > 1e-6:
        raise r.error(key, "shares that add up to 1", f"{shares} (sum {total:.4f})")
    return shares


def _every(r: ConfigReader, table: dict, key: str, names, low: float, high: float) -> dict[str, float]:
    """A number for each of ``names`` in ``table`` (no other key)."""
    r.only_keys(table, key, set(names))
    return {n: r.number(table, n, f"{key}.{n}", required=True, low=low, high=high) for n in names}


def _parse_population(r: ConfigReader, pop: dict[str, Any], catalog: Catalog) -> Population:
    p = "population"
    timezones = _distribution(r, pop, "timezones", f"{p}.timezones")
    for i, tz in enumerate(timezones):
        r.timezone(tz, f"{p}.timezones[{i}]")
    consent = _shares(r, pop, "consent", f"{p}.consent", None)
    for channel in consent:
        if channel not in catalog.channels:
            raise r.error(f"{p}.consent.{channel}", f"a catalog channel {sorted(catalog.channels)}", channel)
    basket = r.table(pop, "basket", key=f"{p}.basket", required=True)
    r.only_keys(basket, f"{p}.basket", {"min", "max"})
    basket_min = r.number(basket, "min", f"{p}.basket.min", required=True, low=0.01)
    basket_max = r.number(basket, "max", f"{p}.basket.max", required=True, low=basket_min)
    peaks = tuple(_number_list(r, pop, "hour_peaks", f"{p}.hour_peaks", 0, 24))
    weights = tuple(_number_list(r, pop, "hour_peak_weights", f"{p}.hour_peak_weights", 0, 1))
    if len(peaks) != len(weights) or abs(sum(weights) - 1) > 1e-6:
        raise r.error(f"{p}.hour_peak_weights", f"{len(peaks)} weights adding up to 1", list(weights))
    return read_settings(
        r, pop, p, Population,
        segments=_distribution(r, pop, "segments", f"{p}.segments", SEGMENTS),
        motivations=_distribution(r, pop, "motivations", f"{p}.motivations", MOTIVATIONS),
        timezones=timezones, consent=consent, basket=(basket_min, basket_max),
        purchases_per_year=_every(r, r.table(pop, "purchases_per_year", key=f"{p}.purchases_per_year",
                                             required=True), f"{p}.purchases_per_year", SEGMENTS, 0, 365),
        hour_peaks=peaks, hour_peak_weights=weights)


def _parse_response(r: ConfigReader, rs: dict[str, Any], catalog: Catalog) -> Response:
    channels_raw = r.table(rs, "channels", key="response.channels", required=True)
    for cid in channels_raw:
        if cid not in catalog.channels:
            raise r.error(f"response.channels.{cid}", f"a catalog channel {sorted(catalog.channels)}", cid)
    channels = {cid: read_settings(r, r.table(channels_raw, cid, key=f"response.channels.{cid}", required=True),
                                   f"response.channels.{cid}", ChannelResponse)
                for cid in catalog.channels}
    effects_raw = r.table(rs, "offer_effect", key="response.offer_effect", required=True)
    r.only_keys(effects_raw, "response.offer_effect", set(MOTIVATIONS))
    offer_effect = {m: _every(r, r.table(effects_raw, m, key=f"response.offer_effect.{m}", required=True),
                              f"response.offer_effect.{m}", catalog.offers, 0, 20)
                    for m in MOTIVATIONS}
    segment_effect = _every(r, r.table(rs, "segment_effect", key="response.segment_effect", required=True),
                            "response.segment_effect", SEGMENTS, 0, 20)
    fatigue = read_settings(r, r.table(rs, "fatigue", key="response.fatigue", required=True), "response.fatigue",
                            Fatigue)
    return read_settings(r, rs, "response", Response, channels=channels, offer_effect=offer_effect,
                         segment_effect=segment_effect, fatigue=fatigue)


def _number_list(r: ConfigReader, table: dict, name: str, key: str, low: float, high: float) -> list[float]:
    value = table.get(name)
    if not isinstance(value, list) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high for v in value):
        raise r.error(key, f"a non-empty list of numbers from {low} to {high}", value)
    return [float(v) for v in value]


def reference_page() -> str:
    """``docs/scenarios.md``: every scenario setting, from its declaration."""
    return ("# Scenario reference\n\n"
            "Generated from the declarations in `simulators/scenario.py` by\n"
            "`python -m simulators.scenario > docs/scenarios.md` (a test fails when it is stale).\n"
            "`simulators/scenarios/default.toml` gives the reason for each of its numbers; the other\n"
            "shipped scenarios extend it.\n\n"
            + reference(list(SECTIONS)))


if __name__ == "__main__":
    sys.stdout.write(reference_page())
