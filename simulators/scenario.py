"""Scenario files: population, response model, horizon and catalog of a simulation.

The schema is documented in ``simulators/scenarios/default.toml`` (every key, with why its
number is what it is) and in the README. Loading validates everything; errors name the file, the
key and the allowed values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from engine.catalog import Catalog, CatalogError, default_catalog_path, parse_catalog
from engine.settings import ConfigError, ConfigReader, read_toml

SEGMENTS = ("new", "loyal", "occasional", "dormant")
MOTIVATIONS = ("promo", "novelty", "indifferent")


class ScenarioError(ConfigError):
    """A scenario file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class ChannelResponse:
    delivered: float
    open: float
    click: float
    unsubscribe: float
    complaint: float


@dataclass(frozen=True)
class Population:
    segments: dict[str, float]
    motivations: dict[str, float]
    timezones: dict[str, float]
    consent: dict[str, float]
    basket_min: float
    basket_max: float
    purchases_per_year: dict[str, float]
    hour_peaks: tuple[float, ...]
    hour_peak_weights: tuple[float, ...]
    hour_spread: float
    observed_hour_noise: float
    affinity_sigma: float
    sensitivity_sigma: float
    history_weeks: float = 13.0


@dataclass(frozen=True)
class Fatigue:
    half_life_days: float
    sms_weight: float
    open_penalty: float
    unsubscribe_growth: float
    disengage: float
    disengaged_open: float
    reengage_per_week: float
    reactivate_on_purchase: bool


@dataclass(frozen=True)
class Response:
    send_time_effect: float
    conversion: float
    purchase_delay_days: float
    open_delay_hours: float
    channels: dict[str, ChannelResponse]
    offer_effect: dict[str, dict[str, float]]  # motivation -> offer -> multiplier
    segment_effect: dict[str, float]
    fatigue: Fatigue


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


def scenarios_dir() -> Path:
    return Path(str(resources.files("simulators") / "scenarios"))


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A scenario file path, or the name of a shipped scenario ("default", "cold_start", ...)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    shipped = scenarios_dir() / f"{name_or_path}.toml"
    if shipped.exists():
        return shipped
    names = sorted(p.stem for p in scenarios_dir().glob("*.toml"))
    raise ScenarioError(f"no scenario file or shipped scenario named {str(name_or_path)!r}; "
                        f"shipped: {names}")


def load_scenario(name_or_path: str | Path = "default", catalog_set: dict[str, Any] | None = None) -> Scenario:
    """``catalog_set``: catalog keys to set on top of the scenario's, as nested tables (what
    ``parse_catalog_settings`` makes of ``--set TABLE.KEY=VALUE``), merged like the scenario's
    own ``[catalog_overrides]``."""
    path = resolve_scenario(name_or_path)
    data, _ = read_toml(path, ScenarioError)
    return parse_scenario(data, path, catalog_set)


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
    """``["exploration.epsilon=0.05", 'model.structure="open_funnel"']`` -> nested tables.
    Each value is a TOML value (a number, true/false, a quoted string, an array or inline
    table); errors name the setting."""
    tables: dict[str, Any] = {}
    for setting in settings:
        path, sep, text = setting.partition("=")
        keys = path.strip().split(".")
        if not sep or len(keys) < 2 or not all(k.strip() for k in keys):
            raise ScenarioError(f"--set {setting!r}: expected TABLE.KEY=VALUE, e.g. exploration.epsilon=0.05")
        try:
            value = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            raise ScenarioError(f"--set {setting!r}: the value {text.strip()!r} is not a TOML value "
                                f"(a number, true or false, a quoted string, an array)") from None
        nested: dict[str, Any] = {keys[-1].strip(): value}
        for key in reversed(keys[:-1]):
            nested = {key.strip(): nested}
        tables = merge_tables(tables, nested)
    return tables


def _shares(r: ConfigReader, table: dict, name: str, key: str, allowed: tuple[str, ...] | None
            ) -> dict[str, float]:
    raw = r.table(table, name, key=key, required=True)
    if not raw:
        raise r.error(key, "at least one entry", raw)
    shares = {}
    for k, v in raw.items():
        if allowed is not None and k not in allowed:
            raise r.error(f"{key}.{k}", f"a key among {list(allowed)}", k)
        shares[k] = r.number(raw, k, f"{key}.{k}", required=True, low=0, high=1 if allowed is None else None)
    return shares


def _distribution(r: ConfigReader, table: dict, name: str, key: str,
                  allowed: tuple[str, ...] | None = None) -> dict[str, float]:
    shares = _shares(r, table, name, key, allowed)
    total = sum(shares.values())
    if abs(total - 1.0) > 1e-6:
        raise r.error(key, "shares that add up to 1", f"{shares} (sum {total:.4f})")
    return shares


def parse_scenario(data: dict[str, Any], path: Path, catalog_set: dict[str, Any] | None = None) -> Scenario:
    r = ConfigReader(str(path), ScenarioError)
    r.only_keys(data, "", {"name", "description", "catalog", "catalog_changes", "catalog_overrides", "customers",
                           "days", "start", "opportunities", "population", "response"})
    catalog_ref = r.string(data, "catalog", default="default")
    changes = r.table(data, "catalog_changes")
    overrides = r.table(data, "catalog_overrides")
    try:
        catalog_path = default_catalog_path() if catalog_ref == "default" else path.parent / catalog_ref
        catalog_data, raw = read_toml(catalog_path, CatalogError)
        # Tables of the catalog the scenario replaces whole (e.g. its budgets or pressure caps)...
        catalog_data.update(changes)
        # ... then keys it sets, keeping the rest of their tables (e.g. one exploration setting).
        edits = merge_tables(overrides, catalog_set or {})
        catalog_data = merge_tables(catalog_data, edits)
        edited = [name for name, table in (("catalog_changes", changes), ("catalog_overrides", overrides)) if table]
        sources = ([f"{path.name}'s {' and '.join(edited)}"] if edited else []) + (["--set"] if catalog_set else [])
        catalog = parse_catalog(catalog_data, source=f"{catalog_path} (with {' and '.join(sources)})"
                                if sources else str(catalog_path),
                                content_hash=hashlib.sha256(
                                    raw + (repr(changes).encode() if changes else b"")
                                    + (repr(edits).encode() if edits else b"")).hexdigest()[:12])
    except ConfigError as exc:
        raise ScenarioError(f"{path}: key 'catalog': {exc}") from None
    start = data.get("start", dt.datetime(2026, 1, 5, 6, tzinfo=dt.timezone.utc))
    if not isinstance(start, dt.datetime) or start.tzinfo is None:
        raise r.error("start", "a TOML date-time with an offset, like 2026-01-05T06:00:00Z", start)

    opp = r.table(data, "opportunities")
    r.only_keys(opp, "opportunities", {"every_days"})

    pop = r.table(data, "population", required=True)
    r.only_keys(pop, "population", {
        "segments", "motivations", "timezones", "consent", "basket", "purchases_per_year",
        "hour_peaks", "hour_peak_weights", "hour_spread", "observed_hour_noise", "affinity_sigma",
        "sensitivity_sigma", "history_weeks"})
    timezones = _distribution(r, pop, "timezones", "population.timezones")
    for i, tz in enumerate(timezones):
        r.timezone(tz, f"population.timezones[{i}]")
    consent = _shares(r, pop, "consent", "population.consent", None)
    for channel in consent:
        if channel not in catalog.channels:
            raise r.error(f"population.consent.{channel}", f"a catalog channel {sorted(catalog.channels)}",
                          channel)
    basket = r.table(pop, "basket", key="population.basket", required=True)
    r.only_keys(basket, "population.basket", {"min", "max"})
    basket_min = r.number(basket, "min", "population.basket.min", required=True, low=0.01)
    basket_max = r.number(basket, "max", "population.basket.max", required=True, low=basket_min)
    ppy_raw = r.table(pop, "purchases_per_year", key="population.purchases_per_year", required=True)
    r.only_keys(ppy_raw, "population.purchases_per_year", set(SEGMENTS))
    purchases = {s: r.number(ppy_raw, s, f"population.purchases_per_year.{s}", required=True, low=0, high=365)
                 for s in SEGMENTS}
    peaks = tuple(_number_list(r, pop, "hour_peaks", "population.hour_peaks", 0, 24))
    weights = tuple(_number_list(r, pop, "hour_peak_weights", "population.hour_peak_weights", 0, 1))
    if len(peaks) != len(weights) or abs(sum(weights) - 1) > 1e-6:
        raise r.error("population.hour_peak_weights", f"{len(peaks)} weights adding up to 1", list(weights))
    population = Population(
        segments=_distribution(r, pop, "segments", "population.segments", SEGMENTS),
        motivations=_distribution(r, pop, "motivations", "population.motivations", MOTIVATIONS),
        timezones=timezones, consent=consent, basket_min=basket_min, basket_max=basket_max,
        purchases_per_year=purchases, hour_peaks=peaks, hour_peak_weights=weights,
        hour_spread=r.number(pop, "hour_spread", "population.hour_spread", default=1.5, low=0, high=12),
        observed_hour_noise=r.number(pop, "observed_hour_noise", "population.observed_hour_noise",
                                     default=1.5, low=0, high=12),
        affinity_sigma=r.number(pop, "affinity_sigma", "population.affinity_sigma", default=0.5, low=0, high=3),
        sensitivity_sigma=r.number(pop, "sensitivity_sigma", "population.sensitivity_sigma",
                                   default=0.3, low=0, high=3),
        history_weeks=r.number(pop, "history_weeks", "population.history_weeks", default=13.0, low=0, high=520),
    )

    rs = r.table(data, "response", required=True)
    r.only_keys(rs, "response", {"send_time_effect", "conversion", "purchase_delay_days",
                                 "open_delay_hours", "channels", "offer_effect", "segment_effect",
                                 "fatigue"})
    channels_raw = r.table(rs, "channels", key="response.channels", required=True)
    channels = {}
    for cid in catalog.channels:
        spec = r.table(channels_raw, cid, key=f"response.channels.{cid}", required=True)
        k = f"response.channels.{cid}"
        r.only_keys(spec, k, {"delivered", "open", "click", "unsubscribe", "complaint"})
        channels[cid] = ChannelResponse(*(r.number(spec, f, f"{k}.{f}", required=True, low=0, high=1)
                                          for f in ("delivered", "open", "click", "unsubscribe", "complaint")))
    for cid in channels_raw:
        if cid not in catalog.channels:
            raise r.error(f"response.channels.{cid}", f"a catalog channel {sorted(catalog.channels)}", cid)
    effects_raw = r.table(rs, "offer_effect", key="response.offer_effect", required=True)
    r.only_keys(effects_raw, "response.offer_effect", set(MOTIVATIONS))
    offer_effect = {}
    for m in MOTIVATIONS:
        table = r.table(effects_raw, m, key=f"response.offer_effect.{m}", required=True)
        r.only_keys(table, f"response.offer_effect.{m}", set(catalog.offers))
        offer_effect[m] = {o: r.number(table, o, f"response.offer_effect.{m}.{o}", required=True, low=0, high=20)
                           for o in catalog.offers}
    seg_raw = r.table(rs, "segment_effect", key="response.segment_effect", required=True)
    r.only_keys(seg_raw, "response.segment_effect", set(SEGMENTS))
    fat = r.table(rs, "fatigue", key="response.fatigue", required=True)
    fk = "response.fatigue"
    r.only_keys(fat, fk, {"half_life_days", "sms_weight", "open_penalty", "unsubscribe_growth",
                          "disengage", "disengaged_open", "reengage_per_week", "reactivate_on_purchase"})
    reactivate = fat.get("reactivate_on_purchase", True)
    if not isinstance(reactivate, bool):
        raise r.error(f"{fk}.reactivate_on_purchase", "true or false", reactivate)
    response = Response(
        send_time_effect=r.number(rs, "send_time_effect", "response.send_time_effect", required=True, low=0, high=1),
        conversion=r.number(rs, "conversion", "response.conversion", required=True, low=0, high=1),
        purchase_delay_days=r.number(rs, "purchase_delay_days", "response.purchase_delay_days",
                                     default=1.5, low=0.001, high=60),
        open_delay_hours=r.number(rs, "open_delay_hours", "response.open_delay_hours", default=3.0,
                                  low=0.001, high=240),
        channels=channels, offer_effect=offer_effect,
        segment_effect={s: r.number(seg_raw, s, f"response.segment_effect.{s}", required=True, low=0, high=20)
                        for s in SEGMENTS},
        fatigue=Fatigue(
            half_life_days=r.number(fat, "half_life_days", f"{fk}.half_life_days", required=True, low=0.01, high=365),
            sms_weight=r.number(fat, "sms_weight", f"{fk}.sms_weight", default=1.0, low=0, high=10),
            open_penalty=r.number(fat, "open_penalty", f"{fk}.open_penalty", required=True, low=0, high=10),
            unsubscribe_growth=r.number(fat, "unsubscribe_growth", f"{fk}.unsubscribe_growth", required=True,
                                        low=0, high=10),
            disengage=r.number(fat, "disengage", f"{fk}.disengage", required=True, low=0, high=1),
            disengaged_open=r.number(fat, "disengaged_open", f"{fk}.disengaged_open", required=True, low=0, high=1),
            reengage_per_week=r.number(fat, "reengage_per_week", f"{fk}.reengage_per_week", required=True,
                                       low=0, high=1),
            reactivate_on_purchase=reactivate,
        ),
    )
    return Scenario(
        name=r.string(data, "name", required=True),
        description=r.string(data, "description", default=""),
        catalog=catalog,
        customers=r.integer(data, "customers", "customers", default=50_000, low=1, high=50_000_000),
        days=r.integer(data, "days", "days", default=63, low=1, high=3650),
        start=start.astimezone(dt.timezone.utc),
        every_days=r.integer(opp, "every_days", "opportunities.every_days", default=7, low=1, high=365),
        population=population, response=response, source=str(path),
    )


def _number_list(r: ConfigReader, table: dict, name: str, key: str, low: float, high: float) -> list[float]:
    value = table.get(name)
    if not isinstance(value, list) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high for v in value):
        raise r.error(key, f"a non-empty list of numbers from {low} to {high}", value)
    return [float(v) for v in value]
