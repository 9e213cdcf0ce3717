"""Protobuf <-> domain translation. Protobuf types stop here."""

from __future__ import annotations

import datetime as dt
import functools

from google.protobuf.timestamp_pb2 import Timestamp

from engine import domain
from engine.pipeline import BudgetState, PolicySnapshot
from nba.v1 import decision_pb2 as pb

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def _ts(t: dt.datetime | None) -> Timestamp | None:
    """``Timestamp.FromDatetime`` of an aware time, without its Python-level conversions."""
    if t is None:
        return None
    since = (t if t.tzinfo is not None else t.astimezone(UTC)) - EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


def _dt(message, field_name: str) -> dt.datetime | None:
    if not message.HasField(field_name):
        return None
    try:
        return getattr(message, field_name).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise domain.RequestError(field_name, f"invalid timestamp: {exc}") from None


def request_to_proto(r: domain.DecisionRequest, kind=pb.NextBestActionRequest):
    """``kind``: ``pb.NextBestActionRequest`` (unary) or ``pb.NextBestActionsRequest`` (stream)."""
    return kind(
        customer_id=r.customer_id, numeric_features=r.numeric_features,
        categorical_features=r.categorical_features, consented_channels=r.consented_channels,
        candidate_offers=r.candidate_offers, allowed_channels=r.allowed_channels,
        timezone=r.timezone, decision_time=_ts(r.decision_time), inbound=r.inbound,
    )


def request_from_proto(m: pb.NextBestActionRequest | pb.NextBestActionsRequest) -> domain.DecisionRequest:
    return domain.DecisionRequest(
        customer_id=m.customer_id, numeric_features=dict(m.numeric_features),
        categorical_features=dict(m.categorical_features),
        consented_channels=tuple(m.consented_channels), candidate_offers=tuple(m.candidate_offers),
        allowed_channels=tuple(m.allowed_channels), timezone=m.timezone,
        decision_time=_dt(m, "decision_time"), inbound=m.inbound,
    )


@functools.lru_cache(maxsize=8192)
def action_to_proto(a: domain.Action) -> pb.Action:
    """(Shared: a message built from it gets a copy; do not change the result.)"""
    return pb.Action(offer_id=a.offer_id, channel=a.channel, send_at=_ts(a.send_at),
                     no_contact=a.no_contact, send_slot=a.send_slot)


def action_from_proto(m: pb.Action) -> domain.Action:
    return domain.Action(offer_id=m.offer_id, channel=m.channel, send_slot=m.send_slot,
                         send_at=_dt(m, "send_at"), no_contact=m.no_contact)


def decision_to_proto(d: domain.Decision, currency: str = "") -> pb.Decision:
    return pb.Decision(
        event_id=d.event_id, action=action_to_proto(d.action), probability=d.probability,
        expected_value=d.expected_value, explored=d.explored, model_version=d.model_version,
        ranking=[pb.ScoredAction(action=action_to_proto(s.action), expected_value=s.expected_value,
                                 probability=s.probability) for s in d.ranking],
        exclusions=_exclusions_to_proto(d.exclusions),
        customer_id=d.customer_id, decision_time=_ts(d.decision_time),
        feasible_actions=d.feasible_actions, control=d.control, fallback=d.fallback, currency_code=currency,
    )


EXCLUSION_PREFIX = "EXCLUSION_REASON_"


def exclusion_to_proto(e: domain.Exclusion) -> pb.Exclusion:
    """The engine's target ("offer:<id>", "channel:<id>", "channel:<id>/slot:<id>") as fields."""
    kind, _, rest = e.target.partition(":")
    if kind == "offer":
        target = {"offer_id": rest}
    else:
        channel, _, slot = rest.partition("/slot:")
        target = {"channel": channel, "send_slot": slot}
    return pb.Exclusion(reason=pb.ExclusionReason.Value(EXCLUSION_PREFIX + e.reason.value), detail=e.detail,
                        **target)


@functools.lru_cache(maxsize=4096)
def _exclusions_to_proto(exclusions: tuple[domain.Exclusion, ...]) -> tuple[pb.Exclusion, ...]:
    """A decision's exclusions, made once per set (most decisions share theirs with many).
    (Shared: a message built from them gets copies; do not change the result.)"""
    return tuple(exclusion_to_proto(e) for e in exclusions)


def exclusion_from_proto(m: pb.Exclusion) -> domain.Exclusion:
    if m.offer_id:
        target = f"offer:{m.offer_id}"
    else:
        target = f"channel:{m.channel}" + (f"/slot:{m.send_slot}" if m.send_slot else "")
    reason = pb.ExclusionReason.Name(m.reason).removeprefix(EXCLUSION_PREFIX)
    return domain.Exclusion(target, domain.ExclusionReason(reason), m.detail)


def decision_from_proto(m: pb.Decision) -> domain.Decision:
    return domain.Decision(
        event_id=m.event_id, customer_id=m.customer_id, action=action_from_proto(m.action),
        probability=m.probability, expected_value=m.expected_value, explored=m.explored,
        model_version=m.model_version,
        ranking=tuple(domain.ScoredAction(action_from_proto(s.action), s.expected_value,
                                          s.probability) for s in m.ranking),
        exclusions=tuple(exclusion_from_proto(e) for e in m.exclusions),
        decision_time=_dt(m, "decision_time"), feasible_actions=m.feasible_actions,
        control=m.control, fallback=m.fallback,
    )


OUTCOME_PREFIX = "OUTCOME_TYPE_"
OUTCOME_TYPES = [OUTCOME_PREFIX + t.value for t in domain.OutcomeType]


def outcome_to_proto(o: domain.Outcome) -> pb.ReportOutcomeRequest:
    return pb.ReportOutcomeRequest(event_id=o.event_id, outcome_id=o.outcome_id,
                                   type=pb.OutcomeType.Value(OUTCOME_PREFIX + o.type.value), value=o.value,
                                   time=_ts(o.time))


def outcome_from_proto(m: pb.ReportOutcomeRequest) -> domain.Outcome:
    try:
        name = pb.OutcomeType.Name(m.type)
        kind = domain.OutcomeType(name.removeprefix(OUTCOME_PREFIX))
    except ValueError:
        raise domain.RequestError(
            "type", f"unknown outcome type {m.type}; allowed: {', '.join(OUTCOME_TYPES)}") from None
    return domain.Outcome(event_id=m.event_id, outcome_id=m.outcome_id, type=kind, value=m.value,
                          time=_dt(m, "time"))


EXPLORATION_PREFIX = "EXPLORATION_ALGORITHM_"


def exploration_algorithm_name(value: int) -> str:
    """The catalog's name of an ``ExplorationAlgorithm`` value (e.g. ``epsilon_greedy``)."""
    return pb.ExplorationAlgorithm.Name(value).removeprefix(EXPLORATION_PREFIX).lower()


def policy_to_proto(p: PolicySnapshot, currency: str = "") -> pb.GetPolicyResponse:
    ex = p.exploration
    return pb.GetPolicyResponse(
        model_version=p.model_version, catalog_version=p.catalog_version, currency_code=currency,
        exploration=pb.ExplorationSettings(algorithm=pb.ExplorationAlgorithm.Value(
                                               EXPLORATION_PREFIX + ex.algorithm.upper()), epsilon=ex.epsilon,
                                           softmax_lambda=ex.softmax_lambda,
                                           squarecb_gamma=ex.squarecb_gamma),
        counters=pb.PolicyCounters(**p.counters), model_args=p.model_args,
        attribution_window_seconds=p.attribution_window_seconds,
        caps=[pb.PressureCap(id=c.id, channels=c.channels, max_contacts=c.max_contacts,
                             window_seconds=int(c.window.total_seconds())) for c in p.pressure.caps],
        min_gap_seconds=int(p.pressure.min_gap.total_seconds()),
        budgets=[_budget_to_proto(b) for b in p.budgets],
        control_fraction=p.control_fraction,
    )


def _budget_to_proto(state: BudgetState) -> pb.BudgetState:
    b, u = state.budget, state.usage
    spend = dict(paid=u.paid_cents / 100, committed=u.committed_cents / 100,
                 remaining=u.remaining_cents / 100) if u is not None else {}
    return pb.BudgetState(id=b.id, period_start=_ts(state.period_start),
                          period_seconds=int(b.period.total_seconds()), amount=b.amount,
                          shadow_price=state.shadow_price, plan=state.plan, offers=b.offers,
                          available=u is not None, **spend)
