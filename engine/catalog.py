"""The catalog: offers, channels, send slots, reward definition, exploration and model settings.

A catalog is data in a TOML file, validated on load. Every error names the file, the key and
what is allowed, e.g.::

    CatalogError: catalog.toml: key 'offers.discount_10.cost': expected a number >= 0, got -3
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from engine.config import ConfigError, ConfigReader, read_toml
from engine.constraints import Budget, Cap, Constraints, ControlGroup, Pressure

EXPLORATION_ALGORITHMS = ("epsilon_greedy", "softmax", "squarecb")
CB_TYPES = ("mtr", "dr", "ips", "dm")
MODEL_STRUCTURES = ("direct", "direct_open_slots", "mean_open_slots", "open_funnel", "open_stacked")
INCENTIVE_PAID_ON = ("redemption", "conversion")
PURCHASE_ATTRIBUTION = ("window", "click")
NAMESPACE_LETTERS = "UHOCT"


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
                return f"{name}={value!r} not in {list(allowed)}"
        for name, low in self.numeric_min.items():
            value = numeric.get(name)
            if value is None or value < low:
                return f"{name}={value!r} below minimum {low}"
        for name, high in self.numeric_max.items():
            value = numeric.get(name)
            if value is None or value > high:
                return f"{name}={value!r} above maximum {high}"
        return None


@dataclass(frozen=True)
class Offer:
    id: str
    name: str
    cost: float
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    eligibility: Eligibility = field(default_factory=Eligibility)

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
    contact_cost: float
    consent: bool
    quiet_hours: tuple[QuietHours, ...] = ()
    inbound_only: bool = False

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
class RewardDefinition:
    margin_rate: float
    unsubscribe_penalty: float
    complaint_penalty: float
    opened_value: float = 0.0
    clicked_value: float = 0.0
    delivered_value: float = 0.0
    default_reward: float = 0.0
    # When the offer's cost is charged: on a REDEEMED outcome, or on any CONVERTED one.
    incentive_paid_on: str = "redemption"
    # Which purchases count: every one in the attribution window, or only those of decisions
    # whose message was clicked (click-through attribution).
    purchase_attribution: str = "window"


@dataclass(frozen=True)
class ExplorationSettings:
    algorithm: str = "epsilon_greedy"
    epsilon: float = 0.1
    softmax_lambda: float = 1.0
    squarecb_gamma: float = 50.0
    top_k: int = 5
    # Least probability of no_contact: keeps measuring what doing nothing is worth.
    no_contact_floor: float = 0.0
    # Choose on value - pessimism * spread across the model's bootstrap replicas: an action is
    # only preferred when the model is sure of it (guards the max over ~100 noisy estimates).
    pessimism: float = 0.0
    # EUR a contact's value must beat no contact's by before the greedy choice sends it: the
    # best of ~100 noisy estimates is biased upward, so a zero hurdle contacts customers every
    # contact loses money on.
    contact_hurdle: float = 0.0
    # The default contact: when no_contact is tied for the best value with this offer on the
    # first of these channels the customer can get (a cold model, whose values are all 0),
    # the greedy choice is that contact, at any of its send slots alike, instead of no contact.
    # None: ties go to no contact.
    default_offer: str | None = None
    default_channels: tuple[str, ...] = ()
    # What an offer on a channel is worth when choosing whether and what to send: "best" (its
    # best send slot's value) or "mean" (the mean over its send slots; the slot is then its
    # best). The best of a dozen noisy slot estimates is biased upward; their mean is not.
    slot_value: str = "best"
    # epsilon_greedy: whether to contact, drawn rather than decided (EUR; 0 = decided). The
    # greedy mass goes to the best contact with probability 1 / (1 + exp(-margin / T)), margin
    # = its value - no contact's, and to no contact otherwise.
    contact_temperature: float = 0.0


SLOT_VALUES = ("best", "mean")


@dataclass(frozen=True)
class ModelSettings:
    cb_type: str = "mtr"
    learning_rate: float = 0.5
    interactions: tuple[str, ...] = ("UO", "UC", "UT", "HC", "HO")
    bits: int = 18
    # Bootstrap replicas of the value model (1 = none): their spread measures how sure the
    # model is of each action's value (see ExplorationSettings.pessimism).
    replicas: int = 1
    # Learning-rate decay (VW's --power_t): rate_t = learning_rate / t^power_t; 0 = constant.
    power_t: float = 0.5
    # mtr only: weigh each example by 1 / (logged probability), VW's default. False = plain
    # least squares on the chosen action (the regression oracle of SquareCB), which does not
    # let one explored purchase at p ~ 0.001 count a thousand times.
    importance_weighted: bool = True
    # "direct", "direct_open_slots", "mean_open_slots", "open_funnel" or "open_stacked"
    # (engine.value_model.ValueModel).
    structure: str = "direct"
    # A request feature holding the customer's usual local hour (a number, or text with one in
    # it, like "s10"): each contact's send slot then also carries its distance from that hour,
    # hour_gap=0|2|4|6 (hours, rounded to 2; 6 = 5 or more), one weight per gap learned from every
    # contact instead of one per usual hour and slot. None: no such feature.
    hour_feature: str | None = None
    # Serve an exponential moving average of the learned weights over about this many updates
    # instead of the latest weights (0 = the latest). A direct model only.
    average_updates: int = 0
    # No contact's value shares no weight with the contacts' values: no intercept and no linear
    # terms of the customer (U) and history (H) namespaces, whose features every action carries
    # (VW --noconstant --ignore_linear U --ignore_linear H); each action's value comes from its
    # own features and their interactions. Learning what doing nothing is worth then does not
    # move what contacting is worth.
    decouple_no_contact: bool = False
    # The history namespace also carries each channel's open rate, (opened + 1) / (settled + 4)
    # over the customer's record (engine.features.history_namespace).
    open_rate_features: bool = False
    # The history features look this many days back (7 or more): beyond the 7-day counts, each
    # channel's contacts over the whole span, and the hours since the last contact within it.
    # The state keeps every contact this long (Pressure.keep).
    history_days: int = 7
    # Experience replay (a direct model): with each matured decision, also relearn this many
    # decisions drawn from a uniform sample of at most ``replay_buffer`` of those learned so far
    # (0 = none), so that the weights fit the decisions of every campaign so far, not mostly the
    # last one's. The sample is kept in memory, not saved with the model.
    replay: int = 0
    replay_buffer: int = 100_000

    def vw_args(self) -> list[str]:
        args = ["--cb_adf", "--cb_type", self.cb_type, "-l", repr(self.learning_rate),
                "--power_t", repr(self.power_t), "-b", str(self.bits), "--quiet"]
        if self.decouple_no_contact:
            args += ["--noconstant", "--ignore_linear", "U", "--ignore_linear", "H"]
        for pair in self.interactions:
            args += ["-q", pair]
        return args


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
    constraints: Constraints = field(default_factory=Constraints)
    # Offer sent on an inbound request while the state store is unreachable (None: no contact).
    outage_inbound_offer: str | None = None

    def slot_at_hour(self, local_hour: int) -> SendSlot:
        return self.send_slots[local_hour // self.send_slots[0].hours]


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
    r.only_keys(data, "", {"version", "default_timezone", "offers", "channels", "send_slots",
                           "reward", "attribution", "exploration", "model", "limits",
                           "pressure", "budgets", "control", "outage"})
    version = r.string(data, "version", required=True)
    tz = r.string(data, "default_timezone", default="UTC")
    r.timezone(tz, "default_timezone")

    offers_raw = r.table(data, "offers", required=True)
    if not offers_raw:
        raise r.error("offers", "at least one offer is required", "an empty table")
    offers = {oid: _parse_offer(r, oid, spec) for oid, spec in offers_raw.items()}

    channels_raw = r.table(data, "channels", required=True)
    if not channels_raw:
        raise r.error("channels", "at least one channel is required", "an empty table")
    channels = {cid: _parse_channel(r, cid, spec) for cid, spec in channels_raw.items()}

    slots_raw = r.table(data, "send_slots")
    r.only_keys(slots_raw, "send_slots", {"hours"})
    hours = r.integer(slots_raw, "hours", "send_slots.hours", default=2, low=1, high=24)
    if 24 % hours:
        raise r.error("send_slots.hours", "a divisor of 24 (1, 2, 3, 4, 6, 8, 12, 24)", hours)
    slots = tuple(SendSlot(i, i * hours, hours) for i in range(24 // hours))

    rw = r.table(data, "reward", required=True)
    r.only_keys(rw, "reward", {"margin_rate", "unsubscribe_penalty", "complaint_penalty",
                               "opened_value", "clicked_value", "delivered_value", "default_reward",
                               "incentive_paid_on", "purchase_attribution"})
    reward = RewardDefinition(
        margin_rate=r.number(rw, "margin_rate", "reward.margin_rate", required=True, low=0, high=1),
        unsubscribe_penalty=r.number(rw, "unsubscribe_penalty", "reward.unsubscribe_penalty", default=0.0, low=0),
        complaint_penalty=r.number(rw, "complaint_penalty", "reward.complaint_penalty", default=0.0, low=0),
        opened_value=r.number(rw, "opened_value", "reward.opened_value", default=0.0),
        clicked_value=r.number(rw, "clicked_value", "reward.clicked_value", default=0.0),
        delivered_value=r.number(rw, "delivered_value", "reward.delivered_value", default=0.0),
        default_reward=r.number(rw, "default_reward", "reward.default_reward", default=0.0),
        incentive_paid_on=r.choice(rw, "incentive_paid_on", "reward.incentive_paid_on",
                                   INCENTIVE_PAID_ON, default="redemption"),
        purchase_attribution=r.choice(rw, "purchase_attribution", "reward.purchase_attribution",
                                      PURCHASE_ATTRIBUTION, default="window"),
    )

    at = r.table(data, "attribution")
    r.only_keys(at, "attribution", {"window_hours"})
    window_hours = r.number(at, "window_hours", "attribution.window_hours", default=168.0, low=0.001)

    ex = r.table(data, "exploration")
    r.only_keys(ex, "exploration", {"algorithm", "epsilon", "softmax_lambda", "squarecb_gamma", "top_k",
                                    "no_contact_floor", "pessimism", "contact_hurdle", "default_offer",
                                    "default_channels", "slot_value", "contact_temperature"})
    default_offer = r.string(ex, "default_offer", "exploration.default_offer") or None
    if default_offer is not None and default_offer not in offers:
        raise r.error("exploration.default_offer", f"one of the offers {sorted(offers)}", default_offer)
    default_channels = tuple(r.string_list(ex, "default_channels", "exploration.default_channels"))
    for i, channel in enumerate(default_channels):
        if channel not in channels:
            raise r.error(f"exploration.default_channels[{i}]", f"one of the channels {sorted(channels)}", channel)
    if (default_offer is None) != (not default_channels):
        raise r.error("exploration.default_channels",
                      "channels together with exploration.default_offer (both or neither)",
                      list(default_channels))
    exploration = ExplorationSettings(
        algorithm=r.choice(ex, "algorithm", "exploration.algorithm", EXPLORATION_ALGORITHMS,
                           default="epsilon_greedy"),
        epsilon=r.number(ex, "epsilon", "exploration.epsilon", default=0.1, low=0, high=1),
        softmax_lambda=r.number(ex, "softmax_lambda", "exploration.softmax_lambda", default=1.0, low=0),
        squarecb_gamma=r.number(ex, "squarecb_gamma", "exploration.squarecb_gamma", default=50.0, low=0),
        top_k=r.integer(ex, "top_k", "exploration.top_k", default=5, low=1, high=1000),
        no_contact_floor=r.number(ex, "no_contact_floor", "exploration.no_contact_floor", default=0.0,
                                  low=0, high=1),
        pessimism=r.number(ex, "pessimism", "exploration.pessimism", default=0.0, low=0, high=100),
        contact_hurdle=r.number(ex, "contact_hurdle", "exploration.contact_hurdle", default=0.0, low=0, high=1000),
        default_offer=default_offer, default_channels=default_channels,
        slot_value=r.choice(ex, "slot_value", "exploration.slot_value", SLOT_VALUES, default="best"),
        contact_temperature=r.number(ex, "contact_temperature", "exploration.contact_temperature", default=0.0,
                                     low=0, high=1000),
    )

    md = r.table(data, "model")
    r.only_keys(md, "model", {"cb_type", "learning_rate", "interactions", "bits", "replicas", "power_t",
                              "importance_weighted", "structure", "hour_feature", "average_updates",
                              "decouple_no_contact", "open_rate_features", "history_days", "replay",
                              "replay_buffer"})
    interactions = tuple(r.string_list(md, "interactions", "model.interactions",
                                       default=list(ModelSettings.interactions)))
    for i, pair in enumerate(interactions):
        if len(pair) != 2 or any(c not in NAMESPACE_LETTERS for c in pair):
            raise r.error(f"model.interactions[{i}]",
                          f"two namespace letters from {NAMESPACE_LETTERS!r} "
                          "(U customer, H history, O offer, C channel, T send time)", pair)
    model = ModelSettings(
        cb_type=r.choice(md, "cb_type", "model.cb_type", CB_TYPES, default="mtr"),
        learning_rate=r.number(md, "learning_rate", "model.learning_rate", default=0.5, low=1e-6, high=100),
        interactions=interactions,
        bits=r.integer(md, "bits", "model.bits", default=18, low=10, high=30),
        replicas=r.integer(md, "replicas", "model.replicas", default=1, low=1, high=32),
        power_t=r.number(md, "power_t", "model.power_t", default=0.5, low=0, high=1),
        importance_weighted=r.boolean(md, "importance_weighted", "model.importance_weighted", default=True),
        structure=r.choice(md, "structure", "model.structure", MODEL_STRUCTURES, default="direct"),
        hour_feature=r.string(md, "hour_feature", "model.hour_feature") or None,
        average_updates=r.integer(md, "average_updates", "model.average_updates", default=0, low=0,
                                  high=100_000_000),
        decouple_no_contact=r.boolean(md, "decouple_no_contact", "model.decouple_no_contact", default=False),
        open_rate_features=r.boolean(md, "open_rate_features", "model.open_rate_features", default=False),
        history_days=r.integer(md, "history_days", "model.history_days", default=7, low=7, high=366),
        replay=r.integer(md, "replay", "model.replay", default=0, low=0, high=16),
        replay_buffer=r.integer(md, "replay_buffer", "model.replay_buffer", default=100_000, low=1,
                                high=10_000_000),
    )
    if model.structure != "direct" and model.average_updates:
        raise r.error("model.average_updates", f"0 with model.structure = \"{model.structure}\" (averaging "
                      "is for a direct model)", model.average_updates)
    if model.structure != "direct" and model.replay:
        raise r.error("model.replay", f"0 with model.structure = \"{model.structure}\" (replay is for a "
                      "direct model)", model.replay)
    if model.structure != "direct" and model.replicas > 1:
        raise r.error("model.replicas", f"1 with model.structure = \"{model.structure}\" (replicas are "
                      "for a direct model)", model.replicas)
    if not model.importance_weighted and model.cb_type != "mtr":
        raise r.error("model.importance_weighted", "true unless model.cb_type is \"mtr\" (only mtr "
                      "regresses on the chosen action alone)", False)

    lim = r.table(data, "limits")
    r.only_keys(lim, "limits", {"max_features"})
    max_features = r.integer(lim, "max_features", "limits.max_features", default=256, low=1, high=100_000)

    constraints = Constraints(
        pressure=dataclasses.replace(_parse_pressure(r, r.table(data, "pressure"), channels),
                                     keep=dt.timedelta(days=model.history_days)),
        budgets=_parse_budgets(r, r.table(data, "budgets"), offers),
        control=_parse_control(r, r.table(data, "control"), offers, channels, slots),
    )
    outage = r.table(data, "outage")
    r.only_keys(outage, "outage", {"inbound_offer"})
    inbound_offer = outage.get("inbound_offer")
    if inbound_offer is not None and (inbound_offer not in offers or offers[inbound_offer].cost > 0):
        free = [o for o in offers if offers[o].cost == 0]
        raise r.error("outage.inbound_offer", f"an offer without cost, one of {free}", inbound_offer)

    full_version = f"{version}+{content_hash}" if content_hash else version
    return Catalog(
        version=full_version, default_timezone=tz, offers=offers, channels=channels,
        send_slots=slots, reward=reward, attribution_window=dt.timedelta(hours=window_hours),
        exploration=exploration, model=model, max_features=max_features, source=source,
        constraints=constraints, outage_inbound_offer=inbound_offer,
    )


def _parse_pressure(r: ConfigReader, spec: dict[str, Any], channels: dict[str, Channel]) -> Pressure:
    r.only_keys(spec, "pressure", {"min_gap_hours", "caps"})
    outbound = tuple(c for c in channels if not channels[c].inbound_only)
    caps_raw = spec.get("caps", [])
    if not isinstance(caps_raw, list):
        raise r.error("pressure.caps", "a list of tables {id, channels, max, window_days}", caps_raw)
    caps, seen = [], set()
    for i, cap in enumerate(caps_raw):
        key = f"pressure.caps[{i}]"
        if not isinstance(cap, dict):
            raise r.error(key, "a table {id, channels, max, window_days}", cap)
        r.only_keys(cap, key, {"id", "channels", "max", "window_days"})
        cap_id = r.string(cap, "id", f"{key}.id", required=True)
        r.identifier(cap_id, f"{key}.id")
        if cap_id in seen:
            raise r.error(f"{key}.id", "an id no other cap has", cap_id)
        seen.add(cap_id)
        names = tuple(r.string_list(cap, "channels", f"{key}.channels"))
        for name in names:
            if name not in outbound:
                raise r.error(f"{key}.channels", f"outbound channels from {list(outbound)}", name)
        if "max" not in cap:
            raise r.error_class(f"{r.source}: missing required key '{key}.max'")
        caps.append(Cap(
            id=cap_id, channels=names or outbound,
            max_contacts=r.integer(cap, "max", f"{key}.max", default=-1, low=0, high=10_000),
            window=dt.timedelta(days=r.number(cap, "window_days", f"{key}.window_days", required=True,
                                              low=1 / 24, high=366)),
        ))
    gap = r.number(spec, "min_gap_hours", "pressure.min_gap_hours", default=0.0, low=0, high=24 * 366)
    return Pressure(tuple(caps), dt.timedelta(hours=gap))


def _parse_budgets(r: ConfigReader, spec: dict[str, Any], offers: dict[str, Offer]) -> tuple[Budget, ...]:
    budgets, owner = [], {}
    for bid, b in spec.items():
        key = f"budgets.{bid}"
        r.identifier(bid, key)
        if not isinstance(b, dict):
            raise r.error(key, "a table", b)
        r.only_keys(b, key, {"amount", "period_days", "start", "offers", "pacing", "pacing_step",
                             "pacing_lead_hours", "pacing_slack", "pacing_max_price"})
        start = b.get("start", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
        if not isinstance(start, dt.datetime) or start.tzinfo is None:
            raise r.error(f"{key}.start", "a TOML date-time with offset, like 2026-01-01T00:00:00Z", start)
        costly = [o for o in offers if offers[o].cost > 0]
        names = tuple(r.string_list(b, "offers", f"{key}.offers", default=costly))
        for name in names:
            if name not in offers:
                raise r.error(f"{key}.offers", f"offer ids from {list(offers)}", name)
            if name in owner:
                raise r.error(f"{key}.offers", f"offers in no other budget ({name} is in {owner[name]})", name)
            owner[name] = bid
        pacing = b.get("pacing", True)
        if not isinstance(pacing, bool):
            raise r.error(f"{key}.pacing", "true or false", pacing)
        budgets.append(Budget(
            id=bid,
            amount=r.number(b, "amount", f"{key}.amount", required=True, low=0, high=1e12),
            period=dt.timedelta(days=r.number(b, "period_days", f"{key}.period_days", required=True,
                                              low=1 / 24, high=3660)),
            start=start.astimezone(dt.timezone.utc), offers=names, pacing=pacing,
            pacing_step=r.number(b, "pacing_step", f"{key}.pacing_step", default=0.5, low=0, high=1000),
            pacing_lead=dt.timedelta(hours=r.number(b, "pacing_lead_hours", f"{key}.pacing_lead_hours",
                                                    default=24.0, low=0, high=24 * 3660)),
            pacing_slack=r.number(b, "pacing_slack", f"{key}.pacing_slack", default=0.05, low=0, high=1),
            pacing_max_price=r.number(b, "pacing_max_price", f"{key}.pacing_max_price", default=2.0,
                                      low=0, high=1000),
        ))
    return tuple(budgets)


def _parse_control(r: ConfigReader, spec: dict[str, Any], offers: dict[str, Offer],
                   channels: dict[str, Channel], slots: tuple[SendSlot, ...]) -> ControlGroup:
    r.only_keys(spec, "control", {"fraction", "salt", "action"})
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
    return ControlGroup(
        fraction=r.number(spec, "fraction", "control.fraction", default=0.0, low=0, high=1),
        salt=r.string(spec, "salt", "control.salt", default="nba-control"),
        action=action,
    )


def _parse_offer(r: ConfigReader, oid: str, spec: Any) -> Offer:
    key = f"offers.{oid}"
    r.identifier(oid, key)
    if not isinstance(spec, dict):
        raise r.error(key, "a table", spec)
    r.only_keys(spec, key, {"name", "cost", "valid_from", "valid_until", "eligibility"})
    valid_from = r.date(spec, "valid_from", f"{key}.valid_from")
    valid_until = r.date(spec, "valid_until", f"{key}.valid_until")
    if valid_from and valid_until and valid_until < valid_from:
        raise r.error(f"{key}.valid_until", f"a date on or after valid_from ({valid_from})", valid_until)
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
    return Offer(
        id=oid,
        name=r.string(spec, "name", key=f"{key}.name", default=oid),
        cost=r.number(spec, "cost", f"{key}.cost", required=True, low=0),
        valid_from=valid_from, valid_until=valid_until,
        eligibility=Eligibility(categorical, bounds["numeric_min"], bounds["numeric_max"]),
    )


def _parse_channel(r: ConfigReader, cid: str, spec: Any) -> Channel:
    key = f"channels.{cid}"
    r.identifier(cid, key)
    if not isinstance(spec, dict):
        raise r.error(key, "a table", spec)
    r.only_keys(spec, key, {"contact_cost", "consent", "quiet_hours", "inbound_only"})
    consent, inbound_only = spec.get("consent", True), spec.get("inbound_only", False)
    if not isinstance(consent, bool):
        raise r.error(f"{key}.consent", "true or false", consent)
    if not isinstance(inbound_only, bool):
        raise r.error(f"{key}.inbound_only", "true or false", inbound_only)
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
    return Channel(
        id=cid,
        contact_cost=r.number(spec, "contact_cost", f"{key}.contact_cost", required=True, low=0),
        consent=consent,
        quiet_hours=tuple(quiet),
        inbound_only=inbound_only,
    )
