"""Domain types shared by engine, training and simulators. Protobuf stops at the server."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field


class OutcomeType(enum.Enum):
    DELIVERED = "DELIVERED"
    OPENED = "OPENED"
    CLICKED = "CLICKED"
    CONVERTED = "CONVERTED"
    UNSUBSCRIBED = "UNSUBSCRIBED"
    COMPLAINED = "COMPLAINED"
    REDEEMED = "REDEEMED"


class ExclusionReason(enum.Enum):
    CONSENT = "CONSENT"
    ELIGIBILITY = "ELIGIBILITY"
    VALIDITY = "VALIDITY"
    CALLER_NARROWING = "CALLER_NARROWING"
    QUIET_HOURS = "QUIET_HOURS"
    PRESSURE = "PRESSURE"
    BUDGET = "BUDGET"
    INBOUND_ONLY = "INBOUND_ONLY"


@dataclass(frozen=True, slots=True)
class Action:
    """An offer on a channel at a send time, or no contact."""

    offer_id: str = ""
    channel: str = ""
    send_slot: str = ""
    send_at: dt.datetime | None = None
    no_contact: bool = False

    @classmethod
    def none(cls) -> Action:
        return cls(no_contact=True)

    @property
    def label(self) -> str:
        if self.no_contact:
            return "no_contact"
        return f"{self.offer_id}/{self.channel}/{self.send_slot}"


@dataclass(frozen=True)
class DecisionRequest:
    customer_id: str
    numeric_features: dict[str, float] = field(default_factory=dict)
    categorical_features: dict[str, str] = field(default_factory=dict)
    consented_channels: tuple[str, ...] = ()
    candidate_offers: tuple[str, ...] = ()
    allowed_channels: tuple[str, ...] = ()
    timezone: str = ""
    decision_time: dt.datetime | None = None
    inbound: bool = False


@dataclass(frozen=True)
class Exclusion:
    target: str
    reason: ExclusionReason
    detail: str = ""


@dataclass(frozen=True)
class ScoredAction:
    action: Action
    expected_value: float
    probability: float


@dataclass(frozen=True)
class Decision:
    event_id: str
    customer_id: str
    action: Action
    probability: float
    expected_value: float
    explored: bool
    model_version: str
    ranking: tuple[ScoredAction, ...]
    exclusions: tuple[Exclusion, ...]
    decision_time: dt.datetime
    feasible_actions: int
    control: bool = False   # the customer is in the control group: control treatment
    fallback: bool = False  # safe mode: the state store was unreachable


@dataclass(frozen=True)
class Outcome:
    event_id: str
    outcome_id: str
    type: OutcomeType
    value: float = 0.0
    time: dt.datetime | None = None


@dataclass(frozen=True)
class OutcomeAck:
    event_id: str
    outcome_id: str
    duplicate: bool


class RequestError(ValueError):
    """A caller mistake: names the offending field. Maps to INVALID_ARGUMENT."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.description = message


class UnknownEvent(LookupError):
    """An outcome names an event id the engine never issued (or has forgotten). NOT_FOUND."""


class AttributionClosed(RuntimeError):
    """An outcome arrived after its decision's attribution window closed. FAILED_PRECONDITION."""


def utc(t: dt.datetime) -> dt.datetime:
    """Aware UTC datetime (naive input is taken as UTC)."""
    if t.tzinfo is None:
        return t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc)
