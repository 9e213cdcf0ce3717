"""The catalog: offers, channels, send slots, reward definition, exploration and model settings.

A catalog is data in a TOML file, validated on load. Each setting is declared once, below (its
type, default, allowed values and what it does, with ``engine.settings.setting``); the reader,
the errors and the reference page ``docs/catalog.md`` (``python -m engine.catalog``) are made
from those declarations. Every error names the file, the key and what is allowed, e.g.::

    CatalogError: catalog.toml: key 'offers.discount_10.cost': expected a number >= 0, got -3
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from engine.constraints import Budget, Cap, Constraints, ControlGroup, Pressure
from engine.settings import ConfigError, ConfigReader, read_settings, read_toml, reference, setting

EXPLORATION_ALGORITHMS = ("epsilon_greedy", "softmax", "squarecb")
CB_TYPES = ("mtr", "dr", "ips", "dm")
MODEL_STRUCTURES = ("direct", "funnel")
NAMESPACE_LETTERS = "UHOCT"
CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")


class CatalogError(ConfigError):
    """A catalog file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class Eligibility:
    """Who may receive an offer: every rule must hold (missing feature = not eligible)."""

    categorical: dict[str, tuple[str, ...]] = field(default_factory=dict)
    numeric_min: dict[str, float] = field(default_factory=dict)
    numeric_max: dict[str, float] = field(default_factory=dict)

    def reason_excluded(self, numeric: dict[str, float], categorical: dict[str, str]) -> str | None:
        """Why a customer is not eligible, or None when eligible."""
        for name, allowed in self.categorical.items():
            value = categorical.get(name)
            if value not in allowed:
                shown = "missing" if value is None else f"'{value}'"
                return f"{name} is {shown}, not one of: {', '.join(allowed)}"
        for name, low in self.numeric_min.items():
            value = numeric.get(name)
            if value is None or value < low:
                return f"{name} is {'missing' if value is None else f'{value:g}'}, below the minimum {low:g}"
        for name, high in self.numeric_max.items():
            value = numeric.get(name)
            if value is None or value > high:
                return f"{name} is {'missing' if value is None else f'{value:g}'}, above the maximum {high:g}"
        return None


@dataclass(frozen=True)
class Offer:
    id: str
    name: str = setting(doc="what people call it", default_doc="its id")
    cost: float = setting(doc="EUR the company pays when it is used (see `reward.incentive_paid_on`)", low=0)
    valid_from: dt.date | None = setting(None, "first day it may be sent")
    valid_until: dt.date | None = setting(None, "last day it may be sent")
    eligibility: Eligibility = setting(
        Eligibility(), "who may receive it: every rule must hold; a missing feature is not eligible",
        form="table: `categorical = {feature = [values]}`, `numeric_min = {feature = number}`, "
             "`numeric_max = {...}`", default_doc="everyone")

    def is_valid_on(self, day: dt.date) -> bool:
        if self.valid_from is not None and day < self.valid_from:
            return False
        return self.valid_until is None or day <= self.valid_until


@dataclass(frozen=True)
class QuietHours:
    """[start, end) in local minutes since midnight; wraps past midnight when start > end."""

    start_minute: int
    end_minute: int

    def contains(self, minute_of_day: int) -> bool:
        if self.start_minute <= self.end_minute:
            return self.start_minute <= minute_of_day < self.end_minute
        return minute_of_day >= self.start_minute or minute_of_day < self.end_minute


@dataclass(frozen=True)
class Channel:
    id: str
    contact_cost: float = setting(doc="EUR paid per contact, whatever happens", low=0)
    consent: bool = setting(True, "a contact needs the customer's opt-in (`consented_channels`)")
    quiet_hours: tuple[QuietHours, ...] = setting(
        (), "no send time in these local hours; `end` before `start` wraps past midnight",
        form='list of `{start = "HH:MM", end = "HH:MM"}`')
    inbound_only: bool = setting(False, "a placement shown on an inbound request only (the site, the app): "
                                        "no opt-in asked, never counted by pressure caps")

    def is_quiet_at(self, minute_of_day: int) -> bool:
        return any(q.contains(minute_of_day) for q in self.quiet_hours)


@dataclass(frozen=True)
class SendSlot:
    """A batch of sends starting at a local hour, e.g. id "10-12" starts at 10:00."""

    index: int
    start_hour: int
    hours: int

    @cached_property
    def id(self) -> str:
        return f"{self.start_hour:02d}-{self.start_hour + self.hours:02d}"


@dataclass(frozen=True)
class SendSlots:
    hours: int = setting(2, "length of a send slot; slots cover the next 24 h of local time", low=1, high=24)


@dataclass(frozen=True)
class RewardDefinition:
    margin_rate: float = setting(doc="share of a purchase amount kept as margin", low=0, high=1)
    unsubscribe_penalty: float = setting(0.0, "EUR charged for an unsubscribe (a lost contact point)", low=0)
    complaint_penalty: float = setting(0.0, "EUR charged for a complaint", low=0)
    opened_value: float = setting(0.0, "EUR credited for an open")
    clicked_value: float = setting(0.0, "EUR credited for a click")
    delivered_value: float = setting(0.0, "EUR credited for a delivery")
    default_reward: float = setting(0.0, "reward of a decision whose attribution window closes with nothing "
                                         "reported (before the contact cost, always charged)")
    incentive_paid_on: str = setting(
        "redemption", "when the offer's cost is charged: on a REDEEMED outcome (the code used at the till, "
                      "which also covers customers who would have bought anyway), or on any attributed purchase",
        choices=("redemption", "conversion"))
    purchase_attribution: str = setting(
        "click", "which purchases count: only those of a decision whose message was CLICKED (click-through), "
                 "or every purchase in the attribution window -- unbiased, but its noise (sd ~5 EUR a "
                 "decision) drowns a contact's value (~0.1 EUR)",
        choices=("click", "window"))


@dataclass(frozen=True)
class Attribution:
    window: dt.timedelta = setting(dt.timedelta(hours=168), "outcomes join a decision for this long after it; "
                                   "then it matures and is learned", key="window_hours", unit="hours", low=0.001)


@dataclass(frozen=True)
class ExplorationSettings:
    algorithm: str = setting("epsilon_greedy", "how the chosen action is drawn from the feasible ones "
                             "(after constraints and pacing)", choices=EXPLORATION_ALGORITHMS)
    epsilon: float = setting(0.01, "epsilon_greedy: share of decisions drawn uniformly over the feasible "
                                   "actions", low=0, high=1)
    softmax_lambda: float = setting(1.0, "softmax: inverse temperature (per EUR of value)", low=0)
    squarecb_gamma: float = setting(50.0, "squarecb: how fast probability falls with the gap to the best "
                                          "(Foster & Rakhlin 2020)", low=0)
    top_k: int = setting(5, "how many scored actions a decision reports", low=1, high=1000)
    no_contact_floor: float = setting(0.0, "least probability of no_contact on every decision: keeps "
                                           "measuring what doing nothing is worth", low=0, high=1)
    default_offer: str | None = setting(
        None, "the default contact: when no_contact ties for the best value with this offer (a cold model, "
              "whose values are all 0), the greedy choice sends it, at any of its send slots alike")
    default_channels: tuple[str, ...] = setting((), "the default contact's channels, the first the customer "
                                                    "can get (with `default_offer`: both or neither)")
    slot_value: str = setting(
        "mean", "what an offer on a channel is worth when choosing whether and what to send: the mean of its "
                "send slots' values (the send slot is then its best) or its best slot's (biased upward: the "
                "best of a dozen noisy estimates)", choices=("mean", "best"))


@dataclass(frozen=True)
class ModelSettings:
    cb_type: str = setting("mtr", "VW's contextual-bandit reduction (`--cb_type`)", choices=CB_TYPES)
    learning_rate: float = setting(0.2, "VW's `-l`: rewards are mostly purchase noise, a small rate averages "
                                        "it out", low=1e-6, high=100)
    interactions: tuple[str, ...] = setting(
        ("UO", "UC", "UT", "HC", "HO"), "namespace pairs VW crosses (`-q`): U customer, H history, O offer, "
                                        "C channel, T send time")
    bits: int = setting(18, "feature hash bits (`-b`)", low=10, high=30)
    power_t: float = setting(0.3, "learning-rate decay, VW's `--power_t`: rate_t = learning_rate / t^power_t",
                             low=0, high=1)
    importance_weighted: bool = setting(
        False, "mtr: weigh each example by 1 / (logged probability), VW's default; false is plain least "
               "squares on the chosen action, so one explored purchase at p ~ 0.001 does not count a thousand "
               "times")
    structure: str = setting("direct", "how values are modelled: `direct`, one regression of the reward; "
                                       "`funnel`, P(open) x P(click) x P(purchase caused) x margin - incentive - "
                                       "penalties, each step learned from the outcomes that inform it "
                                       "(engine/funnel_model.py)",
                             choices=MODEL_STRUCTURES)
    history_days: int = setting(7, "the history features look this many days back (7 or more); contacts are "
                                   "kept that long", low=7, high=366)

    def vw_args(self) -> list[str]:
        args = ["--cb_adf", "--cb_type", self.cb_type, "-l", repr(self.learning_rate),
                "--power_t", repr(self.power_t), "-b", str(self.bits), "--quiet"]
        for pair in self.interactions:
            args += ["-q", pair]
        return args


@dataclass(frozen=True)
class Limits:
    max_features: int = setting(256, "most features (numeric + categorical) a request may carry",
                                low=1, high=100_000)
    max_order_value: float = setting(
        10_000.0, "EUR: the largest order value an outcome may report (larger is INVALID_ARGUMENT); a "
                  "decision's reward is clipped to what orders up to it can make", low=0.01, high=1e9)


@dataclass(frozen=True)
class Outage:
    inbound_offer: str | None = setting(
        None, "while the state store is unreachable, the offer (free) an inbound request still gets; none: "
              "no contact")


@dataclass(frozen=True)
class Catalog:
    version: str
    default_timezone: str
    offers: dict[str, Offer]
    channels: dict[str, Channel]
    send_slots: tuple[SendSlot, ...]
    reward: RewardDefinition
    attribution_window: dt.timedelta
    exploration: ExplorationSettings
    model: ModelSettings
    max_features: int
    source: str = "<memory>"
    max_order_value: float = Limits.max_order_value
    constraints: Constraints = field(default_factory=Constraints)
    # Offer sent on an inbound request while the state store is unreachable (None: no contact).
    outage_inbound_offer: str | None = None
    currency: str = "EUR"

    def slot_at_hour(self, local_hour: int) -> SendSlot:
        return self.send_slots[local_hour // self.send_slots[0].hours]

    @cached_property
    def memo(self) -> dict:
        """What other modules compute once per catalog (e.g. ``engine.feasibility``'s templates)."""
        return {}

    @cached_property
    def eligibility_features(self) -> tuple[str, ...]:
        """The request features some offer's eligibility rules read."""
        return tuple(sorted({name for o in self.offers.values() for rules in (
            o.eligibility.categorical, o.eligibility.numeric_min, o.eligibility.numeric_max) for name in rules}))


@dataclass(frozen=True)
class Header:
    version: str = setting(doc="the catalog's name; decisions log it with a hash of the file")
    default_timezone: str = setting("UTC", "IANA time zone of a request that gives none")
    currency: str = setting("EUR", "ISO 4217 code of every amount: offer costs, budgets, rewards, the "
                                   "values the engine reports and the outcomes it is told (it converts nothing)")


# The catalog's tables, in the order of the reference page.
SECTIONS = (
    ("(top level)", Header, "The catalog's name, default time zone and currency."),
    ("offers.ID", Offer, "The incentive library; `ID` is 1-40 lowercase letters, digits or `_`."),
    ("channels.ID", Channel, "Where a contact goes."),
    ("send_slots", SendSlots, "Outbound decisions choose a send slot in the customer's local time."),
    ("reward", RewardDefinition, "reward = margin_rate x purchases - incentive cost paid - contact cost - "
                                 "penalties (+ the optional values per outcome)."),
    ("attribution", Attribution, "How long outcomes count for a decision."),
    ("exploration", ExplorationSettings, "How a decision is drawn from the values of the feasible actions."),
    ("model", ModelSettings, "The value model: Vowpal Wabbit `--cb_adf` regression."),
    ("pressure", Pressure, "Marketing pressure: caps over rolling windows and a minimum gap."),
    ("pressure.caps[]", Cap, "One cap: at most `max` contacts in any rolling window of `window_days`."),
    ("budgets.ID", Budget, "An incentive budget, paced by a shadow price (see `engine/constraints.py`)."),
    ("control", ControlGroup, "A stable share of customers held out, to measure uplift."),
    ("outage", Outage, "Safe mode, while Redis is unreachable."),
    ("limits", Limits, "Request limits."),
)


# --------------------------------------------------------------------------------------------
# Loading


def default_catalog_path() -> Path:
    return Path(str(resources.files("engine") / "data" / "default_catalog.toml"))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog file (the shipped default when ``path`` is None)."""
    path = Path(path) if path is not None else default_catalog_path()
    data, raw = read_toml(path, CatalogError)
    return parse_catalog(data, source=str(path), content_hash=hashlib.sha256(raw).hexdigest()[:12])


def parse_catalog(data: dict[str, Any], source: str = "<memory>", content_hash: str = "") -> Catalog:
    r = ConfigReader(source, CatalogError)
    tables = {"offers", "channels", "send_slots", "reward", "attribution", "exploration", "model", "limits",
              "pressure", "budgets", "control", "outage"}
    r.only_keys(data, "", tables | {"version", "default_timezone", "currency"})
    header = read_settings(r, {k: v for k, v in data.items() if k not in tables}, "", Header)
    r.timezone(header.default_timezone, "default_timezone")
    if not CURRENCY_CODE.match(header.currency):
        raise r.error("currency", "an ISO 4217 code of three capital letters (e.g. 'EUR')", header.currency)
    offers = _parse_named(r, data, "offers", _parse_offer)
    channels = _parse_named(r, data, "channels", _parse_channel)
    hours = read_settings(r, r.table(data, "send_slots"), "send_slots", SendSlots).hours
    if 24 % hours:
        raise r.error("send_slots.hours", "a divisor of 24 (1, 2, 3, 4, 6, 8, 12, 24)", hours)
    slots = tuple(SendSlot(i, i * hours, hours) for i in range(24 // hours))
    reward = read_settings(r, r.table(data, "reward", required=True), "reward", RewardDefinition)
    exploration = _parse_exploration(r, r.table(data, "exploration"), offers, channels)
    model = _parse_model(r, r.table(data, "model"))
    pressure = _parse_pressure(r, r.table(data, "pressure"), channels)
    constraints = Constraints(
        pressure=dataclasses.replace(pressure, keep=dt.timedelta(days=model.history_days)),
        budgets=_parse_budgets(r, r.table(data, "budgets"), offers),
        control=_parse_control(r, r.table(data, "control"), offers, channels, slots),
    )
    outage = read_settings(r, r.table(data, "outage"), "outage", Outage)
    free = [o for o in offers if offers[o].cost == 0]
    if outage.inbound_offer is not None and outage.inbound_offer not in free:
        raise r.error("outage.inbound_offer", f"an offer without cost, one of {free}", outage.inbound_offer)
    limits = read_settings(r, r.table(data, "limits"), "limits", Limits)
    full_version = f"{header.version}+{content_hash}" if content_hash else header.version
    return Catalog(
        version=full_version, default_timezone=header.default_timezone, offers=offers, channels=channels,
        send_slots=slots, reward=reward,
        attribution_window=read_settings(r, r.table(data, "attribution"), "attribution", Attribution).window,
        exploration=exploration, model=model,
        max_features=limits.max_features, max_order_value=limits.max_order_value, source=source,
        constraints=constraints, outage_inbound_offer=outage.inbound_offer, currency=header.currency,
    )


def _parse_named(r: ConfigReader, data: dict[str, Any], name: str, parse) -> dict[str, Any]:
    """A table of tables keyed by id (offers, channels): at least one."""
    raw = r.table(data, name, required=True)
    if not raw:
        raise r.error(name, f"at least one {name[:-1]}", "an empty table")
    parsed = {}
    for item_id, spec in raw.items():
        key = f"{name}.{item_id}"
        r.identifier(item_id, key)
        if not isinstance(spec, dict):
            raise r.error(key, "a table", spec)
        parsed[item_id] = parse(r, item_id, key, spec)
    return parsed


def _parse_exploration(r: ConfigReader, spec: dict[str, Any], offers: dict[str, Offer],
                       channels: dict[str, Channel]) -> ExplorationSettings:
    exploration = read_settings(r, spec, "exploration", ExplorationSettings)
    if exploration.default_offer is not None and exploration.default_offer not in offers:
        raise r.error("exploration.default_offer", f"one of the offers {sorted(offers)}", exploration.default_offer)
    for i, channel in enumerate(exploration.default_channels):
        if channel not in channels:
            raise r.error(f"exploration.default_channels[{i}]", f"one of the channels {sorted(channels)}", channel)
    if (exploration.default_offer is None) != (not exploration.default_channels):
        raise r.error("exploration.default_channels",
                      "channels together with exploration.default_offer (both or neither)",
                      list(exploration.default_channels))
    return exploration


def _parse_model(r: ConfigReader, spec: dict[str, Any]) -> ModelSettings:
    model = read_settings(r, spec, "model", ModelSettings)
    for i, pair in enumerate(model.interactions):
        if len(pair) != 2 or any(c not in NAMESPACE_LETTERS for c in pair):
            raise r.error(f"model.interactions[{i}]",
                          f"two namespace letters from {NAMESPACE_LETTERS!r} "
                          "(U customer, H history, O offer, C channel, T send time)", pair)
    if not model.importance_weighted and model.cb_type != "mtr":
        raise r.error("model.importance_weighted", "true unless model.cb_type is \"mtr\" (only mtr "
                      "regresses on the chosen action alone)", False)
    return model


def _parse_pressure(r: ConfigReader, spec: dict[str, Any], channels: dict[str, Channel]) -> Pressure:
    outbound = tuple(c for c in channels if not channels[c].inbound_only)
    caps_raw = spec.get("caps", [])
    if not isinstance(caps_raw, list):
        raise r.error("pressure.caps", "a list of tables {id, channels, max, window_days}", caps_raw)
    caps, seen = [], set()
    for i, cap_raw in enumerate(caps_raw):
        key = f"pressure.caps[{i}]"
        if not isinstance(cap_raw, dict):
            raise r.error(key, "a table {id, channels, max, window_days}", cap_raw)
        cap = read_settings(r, cap_raw, key, Cap, defaults={"channels": outbound})
        r.identifier(cap.id, f"{key}.id")
        if cap.id in seen:
            raise r.error(f"{key}.id", "an id no other cap has", cap.id)
        seen.add(cap.id)
        for name in cap.channels:
            if name not in outbound:
                raise r.error(f"{key}.channels", f"outbound channels from {list(outbound)}", name)
        caps.append(cap if cap.channels else dataclasses.replace(cap, channels=outbound))
    return read_settings(r, spec, "pressure", Pressure, caps=tuple(caps))


def _parse_budgets(r: ConfigReader, spec: dict[str, Any], offers: dict[str, Offer]) -> tuple[Budget, ...]:
    budgets, owner = [], {}
    costly = tuple(o for o in offers if offers[o].cost > 0)
    for bid, raw in spec.items():
        key = f"budgets.{bid}"
        r.identifier(bid, key)
        if not isinstance(raw, dict):
            raise r.error(key, "a table", raw)
        budget = read_settings(r, raw, key, Budget, defaults={"offers": costly}, id=bid)
        for name in budget.offers:
            if name not in offers:
                raise r.error(f"{key}.offers", f"offer ids from {list(offers)}", name)
            if name in owner:
                raise r.error(f"{key}.offers", f"offers in no other budget ({name} is in {owner[name]})", name)
            owner[name] = bid
        budgets.append(budget)
    return tuple(budgets)


def _parse_control(r: ConfigReader, spec: dict[str, Any], offers: dict[str, Offer],
                   channels: dict[str, Channel], slots: tuple[SendSlot, ...]) -> ControlGroup:
    action_raw = r.table(spec, "action", "control.action")
    action = None
    if action_raw:
        r.only_keys(action_raw, "control.action", {"offer", "channel", "send_slot"})
        offer = r.choice(action_raw, "offer", "control.action.offer", tuple(offers), default="")
        channel = r.choice(action_raw, "channel", "control.action.channel",
                           tuple(c for c in channels if not channels[c].inbound_only), default="")
        slot = r.choice(action_raw, "send_slot", "control.action.send_slot", tuple(s.id for s in slots),
                        default="")
        action = (offer, channel, slot)
    return read_settings(r, spec, "control", ControlGroup, action=action)


def _parse_offer(r: ConfigReader, oid: str, key: str, spec: dict[str, Any]) -> Offer:
    el = r.table(spec, "eligibility", key=f"{key}.eligibility")
    r.only_keys(el, f"{key}.eligibility", {"categorical", "numeric_min", "numeric_max"})
    cat_raw = r.table(el, "categorical", key=f"{key}.eligibility.categorical")
    categorical = {
        name: tuple(r.string_list(cat_raw, name, f"{key}.eligibility.categorical.{name}", required=True))
        for name in cat_raw
    }
    bounds = {}
    for which in ("numeric_min", "numeric_max"):
        tab = r.table(el, which, key=f"{key}.eligibility.{which}")
        bounds[which] = {n: r.number(tab, n, f"{key}.eligibility.{which}.{n}", required=True) for n in tab}
    offer = read_settings(r, spec, key, Offer, defaults={"name": oid}, id=oid,
                          eligibility=Eligibility(categorical, bounds["numeric_min"], bounds["numeric_max"]))
    if offer.valid_from and offer.valid_until and offer.valid_until < offer.valid_from:
        raise r.error(f"{key}.valid_until", f"a date on or after valid_from ({offer.valid_from})", offer.valid_until)
    return offer


def _parse_channel(r: ConfigReader, cid: str, key: str, spec: dict[str, Any]) -> Channel:
    quiet_raw = spec.get("quiet_hours", [])
    if not isinstance(quiet_raw, list):
        raise r.error(f"{key}.quiet_hours", 'a list of {start = "HH:MM", end = "HH:MM"}', quiet_raw)
    quiet = []
    for i, q in enumerate(quiet_raw):
        qkey = f"{key}.quiet_hours[{i}]"
        if not isinstance(q, dict) or set(q) != {"start", "end"}:
            raise r.error(qkey, 'a table {start = "HH:MM", end = "HH:MM"}', q)
        start, end = r.clock_minute(q["start"], f"{qkey}.start"), r.clock_minute(q["end"], f"{qkey}.end")
        if start == end:
            raise r.error(qkey, "start different from end", q)
        quiet.append(QuietHours(start, end))
    return read_settings(r, spec, key, Channel, id=cid, quiet_hours=tuple(quiet))


def reference_page() -> str:
    """``docs/catalog.md``: every catalog setting, from its declaration."""
    return ("# Catalog reference\n\n"
            "Generated from the declarations in `engine/catalog.py` and `engine/constraints.py` by\n"
            "`python -m engine.catalog > docs/catalog.md` (a test fails when it is stale). The shipped\n"
            "catalog, `engine/data/default_catalog.toml`, sets only what differs from these defaults.\n\n"
            + reference(list(SECTIONS)))


if __name__ == "__main__":
    sys.stdout.write(reference_page())
