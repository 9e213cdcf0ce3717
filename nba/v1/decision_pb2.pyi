import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExclusionReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXCLUSION_REASON_UNSPECIFIED: _ClassVar[ExclusionReason]
    EXCLUSION_REASON_CONSENT: _ClassVar[ExclusionReason]
    EXCLUSION_REASON_ELIGIBILITY: _ClassVar[ExclusionReason]
    EXCLUSION_REASON_VALIDITY: _ClassVar[ExclusionReason]
    EXCLUSION_REASON_CALLER_NARROWING: _ClassVar[ExclusionReason]
    EXCLUSION_REASON_QUIET_HOURS: _ClassVar[ExclusionReason]
    EXCLUSION_REASON_PRESSURE: _ClassVar[ExclusionReason]
    EXCLUSION_REASON_BUDGET: _ClassVar[ExclusionReason]
    EXCLUSION_REASON_INBOUND_ONLY: _ClassVar[ExclusionReason]

class OutcomeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_TYPE_UNSPECIFIED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_DELIVERED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_OPENED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_CLICKED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_CONVERTED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_UNSUBSCRIBED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_COMPLAINED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_REDEEMED: _ClassVar[OutcomeType]

class ExplorationAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPLORATION_ALGORITHM_UNSPECIFIED: _ClassVar[ExplorationAlgorithm]
    EXPLORATION_ALGORITHM_EPSILON_GREEDY: _ClassVar[ExplorationAlgorithm]
    EXPLORATION_ALGORITHM_SOFTMAX: _ClassVar[ExplorationAlgorithm]
    EXPLORATION_ALGORITHM_SQUARECB: _ClassVar[ExplorationAlgorithm]

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_FIELD: _ClassVar[ErrorReason]
    ERROR_REASON_UNDECODABLE: _ClassVar[ErrorReason]
    ERROR_REASON_EVENT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_ATTRIBUTION_CLOSED: _ClassVar[ErrorReason]
    ERROR_REASON_STATE_STORE_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_RATE_LIMITED: _ClassVar[ErrorReason]
    ERROR_REASON_SERVER_LIMIT: _ClassVar[ErrorReason]
    ERROR_REASON_DEADLINE: _ClassVar[ErrorReason]
    ERROR_REASON_NO_MODEL_URI: _ClassVar[ErrorReason]
    ERROR_REASON_MODEL_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_INTERNAL: _ClassVar[ErrorReason]
EXCLUSION_REASON_UNSPECIFIED: ExclusionReason
EXCLUSION_REASON_CONSENT: ExclusionReason
EXCLUSION_REASON_ELIGIBILITY: ExclusionReason
EXCLUSION_REASON_VALIDITY: ExclusionReason
EXCLUSION_REASON_CALLER_NARROWING: ExclusionReason
EXCLUSION_REASON_QUIET_HOURS: ExclusionReason
EXCLUSION_REASON_PRESSURE: ExclusionReason
EXCLUSION_REASON_BUDGET: ExclusionReason
EXCLUSION_REASON_INBOUND_ONLY: ExclusionReason
OUTCOME_TYPE_UNSPECIFIED: OutcomeType
OUTCOME_TYPE_DELIVERED: OutcomeType
OUTCOME_TYPE_OPENED: OutcomeType
OUTCOME_TYPE_CLICKED: OutcomeType
OUTCOME_TYPE_CONVERTED: OutcomeType
OUTCOME_TYPE_UNSUBSCRIBED: OutcomeType
OUTCOME_TYPE_COMPLAINED: OutcomeType
OUTCOME_TYPE_REDEEMED: OutcomeType
EXPLORATION_ALGORITHM_UNSPECIFIED: ExplorationAlgorithm
EXPLORATION_ALGORITHM_EPSILON_GREEDY: ExplorationAlgorithm
EXPLORATION_ALGORITHM_SOFTMAX: ExplorationAlgorithm
EXPLORATION_ALGORITHM_SQUARECB: ExplorationAlgorithm
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_FIELD: ErrorReason
ERROR_REASON_UNDECODABLE: ErrorReason
ERROR_REASON_EVENT_NOT_FOUND: ErrorReason
ERROR_REASON_ATTRIBUTION_CLOSED: ErrorReason
ERROR_REASON_STATE_STORE_UNAVAILABLE: ErrorReason
ERROR_REASON_RATE_LIMITED: ErrorReason
ERROR_REASON_SERVER_LIMIT: ErrorReason
ERROR_REASON_DEADLINE: ErrorReason
ERROR_REASON_NO_MODEL_URI: ErrorReason
ERROR_REASON_MODEL_UNAVAILABLE: ErrorReason
ERROR_REASON_INTERNAL: ErrorReason

class NextBestActionRequest(_message.Message):
    __slots__ = ("customer_id", "numeric_features", "categorical_features", "consented_channels", "candidate_offers", "allowed_channels", "timezone", "decision_time", "inbound")
    class NumericFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CategoricalFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_FEATURES_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FEATURES_FIELD_NUMBER: _ClassVar[int]
    CONSENTED_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_OFFERS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    DECISION_TIME_FIELD_NUMBER: _ClassVar[int]
    INBOUND_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    numeric_features: _containers.ScalarMap[str, float]
    categorical_features: _containers.ScalarMap[str, str]
    consented_channels: _containers.RepeatedScalarFieldContainer[str]
    candidate_offers: _containers.RepeatedScalarFieldContainer[str]
    allowed_channels: _containers.RepeatedScalarFieldContainer[str]
    timezone: str
    decision_time: _timestamp_pb2.Timestamp
    inbound: bool
    def __init__(self, customer_id: _Optional[str] = ..., numeric_features: _Optional[_Mapping[str, float]] = ..., categorical_features: _Optional[_Mapping[str, str]] = ..., consented_channels: _Optional[_Iterable[str]] = ..., candidate_offers: _Optional[_Iterable[str]] = ..., allowed_channels: _Optional[_Iterable[str]] = ..., timezone: _Optional[str] = ..., decision_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., inbound: _Optional[bool] = ...) -> None: ...

class NextBestActionResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class NextBestActionsRequest(_message.Message):
    __slots__ = ("customer_id", "numeric_features", "categorical_features", "consented_channels", "candidate_offers", "allowed_channels", "timezone", "decision_time", "inbound", "request_id")
    class NumericFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CategoricalFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_FEATURES_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FEATURES_FIELD_NUMBER: _ClassVar[int]
    CONSENTED_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_OFFERS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    DECISION_TIME_FIELD_NUMBER: _ClassVar[int]
    INBOUND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    numeric_features: _containers.ScalarMap[str, float]
    categorical_features: _containers.ScalarMap[str, str]
    consented_channels: _containers.RepeatedScalarFieldContainer[str]
    candidate_offers: _containers.RepeatedScalarFieldContainer[str]
    allowed_channels: _containers.RepeatedScalarFieldContainer[str]
    timezone: str
    decision_time: _timestamp_pb2.Timestamp
    inbound: bool
    request_id: str
    def __init__(self, customer_id: _Optional[str] = ..., numeric_features: _Optional[_Mapping[str, float]] = ..., categorical_features: _Optional[_Mapping[str, str]] = ..., consented_channels: _Optional[_Iterable[str]] = ..., candidate_offers: _Optional[_Iterable[str]] = ..., allowed_channels: _Optional[_Iterable[str]] = ..., timezone: _Optional[str] = ..., decision_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., inbound: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class NextBestActionsResponse(_message.Message):
    __slots__ = ("position", "request_id", "decision", "error")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    position: int
    request_id: str
    decision: Decision
    error: _status_pb2.Status
    def __init__(self, position: _Optional[int] = ..., request_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("offer_id", "channel", "send_at", "no_contact", "send_slot")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SEND_AT_FIELD_NUMBER: _ClassVar[int]
    NO_CONTACT_FIELD_NUMBER: _ClassVar[int]
    SEND_SLOT_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    channel: str
    send_at: _timestamp_pb2.Timestamp
    no_contact: bool
    send_slot: str
    def __init__(self, offer_id: _Optional[str] = ..., channel: _Optional[str] = ..., send_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., no_contact: _Optional[bool] = ..., send_slot: _Optional[str] = ...) -> None: ...

class ScoredAction(_message.Message):
    __slots__ = ("action", "expected_value", "probability")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    action: Action
    expected_value: float
    probability: float
    def __init__(self, action: _Optional[_Union[Action, _Mapping]] = ..., expected_value: _Optional[float] = ..., probability: _Optional[float] = ...) -> None: ...

class Exclusion(_message.Message):
    __slots__ = ("reason", "detail", "offer_id", "channel", "send_slot")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SEND_SLOT_FIELD_NUMBER: _ClassVar[int]
    reason: ExclusionReason
    detail: str
    offer_id: str
    channel: str
    send_slot: str
    def __init__(self, reason: _Optional[_Union[ExclusionReason, str]] = ..., detail: _Optional[str] = ..., offer_id: _Optional[str] = ..., channel: _Optional[str] = ..., send_slot: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("event_id", "action", "probability", "expected_value", "explored", "model_version", "ranking", "exclusions", "customer_id", "decision_time", "feasible_actions", "control", "fallback", "currency_code")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPLORED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIONS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_TIME_FIELD_NUMBER: _ClassVar[int]
    FEASIBLE_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    action: Action
    probability: float
    expected_value: float
    explored: bool
    model_version: str
    ranking: _containers.RepeatedCompositeFieldContainer[ScoredAction]
    exclusions: _containers.RepeatedCompositeFieldContainer[Exclusion]
    customer_id: str
    decision_time: _timestamp_pb2.Timestamp
    feasible_actions: int
    control: bool
    fallback: bool
    currency_code: str
    def __init__(self, event_id: _Optional[str] = ..., action: _Optional[_Union[Action, _Mapping]] = ..., probability: _Optional[float] = ..., expected_value: _Optional[float] = ..., explored: _Optional[bool] = ..., model_version: _Optional[str] = ..., ranking: _Optional[_Iterable[_Union[ScoredAction, _Mapping]]] = ..., exclusions: _Optional[_Iterable[_Union[Exclusion, _Mapping]]] = ..., customer_id: _Optional[str] = ..., decision_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., feasible_actions: _Optional[int] = ..., control: _Optional[bool] = ..., fallback: _Optional[bool] = ..., currency_code: _Optional[str] = ...) -> None: ...

class ReportOutcomeRequest(_message.Message):
    __slots__ = ("event_id", "outcome_id", "type", "value", "time", "currency_code")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    outcome_id: str
    type: OutcomeType
    value: float
    time: _timestamp_pb2.Timestamp
    currency_code: str
    def __init__(self, event_id: _Optional[str] = ..., outcome_id: _Optional[str] = ..., type: _Optional[_Union[OutcomeType, str]] = ..., value: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., currency_code: _Optional[str] = ...) -> None: ...

class ReportOutcomeResponse(_message.Message):
    __slots__ = ("event_id", "outcome_id", "duplicate")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    outcome_id: str
    duplicate: bool
    def __init__(self, event_id: _Optional[str] = ..., outcome_id: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ForgetCustomerRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class ForgetCustomerResponse(_message.Message):
    __slots__ = ("contacts_deleted", "pending_deleted", "released", "known", "currency_code")
    CONTACTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    PENDING_DELETED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    contacts_deleted: int
    pending_deleted: int
    released: float
    known: bool
    currency_code: str
    def __init__(self, contacts_deleted: _Optional[int] = ..., pending_deleted: _Optional[int] = ..., released: _Optional[float] = ..., known: _Optional[bool] = ..., currency_code: _Optional[str] = ...) -> None: ...

class ReloadPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadPolicyResponse(_message.Message):
    __slots__ = ("model_uri", "previous_version", "model_version", "reloaded")
    MODEL_URI_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RELOADED_FIELD_NUMBER: _ClassVar[int]
    model_uri: str
    previous_version: str
    model_version: str
    reloaded: bool
    def __init__(self, model_uri: _Optional[str] = ..., previous_version: _Optional[str] = ..., model_version: _Optional[str] = ..., reloaded: _Optional[bool] = ...) -> None: ...

class ExplorationSettings(_message.Message):
    __slots__ = ("epsilon", "softmax_lambda", "squarecb_gamma", "algorithm")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    SOFTMAX_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    SQUARECB_GAMMA_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    softmax_lambda: float
    squarecb_gamma: float
    algorithm: ExplorationAlgorithm
    def __init__(self, epsilon: _Optional[float] = ..., softmax_lambda: _Optional[float] = ..., squarecb_gamma: _Optional[float] = ..., algorithm: _Optional[_Union[ExplorationAlgorithm, str]] = ...) -> None: ...

class PolicyCounters(_message.Message):
    __slots__ = ("decisions", "explored", "no_contact", "outcomes", "duplicate_outcomes", "learned", "pending", "rejected", "control", "fallback", "reserve_conflicts", "store_errors", "rewards_clipped", "model_rollbacks", "forgotten")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    EXPLORED_FIELD_NUMBER: _ClassVar[int]
    NO_CONTACT_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    LEARNED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    RESERVE_CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    STORE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_CLIPPED_FIELD_NUMBER: _ClassVar[int]
    MODEL_ROLLBACKS_FIELD_NUMBER: _ClassVar[int]
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    decisions: int
    explored: int
    no_contact: int
    outcomes: int
    duplicate_outcomes: int
    learned: int
    pending: int
    rejected: int
    control: int
    fallback: int
    reserve_conflicts: int
    store_errors: int
    rewards_clipped: int
    model_rollbacks: int
    forgotten: int
    def __init__(self, decisions: _Optional[int] = ..., explored: _Optional[int] = ..., no_contact: _Optional[int] = ..., outcomes: _Optional[int] = ..., duplicate_outcomes: _Optional[int] = ..., learned: _Optional[int] = ..., pending: _Optional[int] = ..., rejected: _Optional[int] = ..., control: _Optional[int] = ..., fallback: _Optional[int] = ..., reserve_conflicts: _Optional[int] = ..., store_errors: _Optional[int] = ..., rewards_clipped: _Optional[int] = ..., model_rollbacks: _Optional[int] = ..., forgotten: _Optional[int] = ...) -> None: ...

class PressureCap(_message.Message):
    __slots__ = ("id", "channels", "max_contacts", "window_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTACTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    channels: _containers.RepeatedScalarFieldContainer[str]
    max_contacts: int
    window_seconds: int
    def __init__(self, id: _Optional[str] = ..., channels: _Optional[_Iterable[str]] = ..., max_contacts: _Optional[int] = ..., window_seconds: _Optional[int] = ...) -> None: ...

class BudgetState(_message.Message):
    __slots__ = ("id", "period_start", "period_seconds", "amount", "paid", "committed", "remaining", "shadow_price", "plan", "offers", "available")
    ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    SHADOW_PRICE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    period_start: _timestamp_pb2.Timestamp
    period_seconds: int
    amount: float
    paid: float
    committed: float
    remaining: float
    shadow_price: float
    plan: float
    offers: _containers.RepeatedScalarFieldContainer[str]
    available: bool
    def __init__(self, id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_seconds: _Optional[int] = ..., amount: _Optional[float] = ..., paid: _Optional[float] = ..., committed: _Optional[float] = ..., remaining: _Optional[float] = ..., shadow_price: _Optional[float] = ..., plan: _Optional[float] = ..., offers: _Optional[_Iterable[str]] = ..., available: _Optional[bool] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("model_version", "catalog_version", "exploration", "counters", "model_args", "attribution_window_seconds", "caps", "min_gap_seconds", "budgets", "control_fraction", "currency_code")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ARGS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    MIN_GAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    catalog_version: str
    exploration: ExplorationSettings
    counters: PolicyCounters
    model_args: str
    attribution_window_seconds: int
    caps: _containers.RepeatedCompositeFieldContainer[PressureCap]
    min_gap_seconds: int
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetState]
    control_fraction: float
    currency_code: str
    def __init__(self, model_version: _Optional[str] = ..., catalog_version: _Optional[str] = ..., exploration: _Optional[_Union[ExplorationSettings, _Mapping]] = ..., counters: _Optional[_Union[PolicyCounters, _Mapping]] = ..., model_args: _Optional[str] = ..., attribution_window_seconds: _Optional[int] = ..., caps: _Optional[_Iterable[_Union[PressureCap, _Mapping]]] = ..., min_gap_seconds: _Optional[int] = ..., budgets: _Optional[_Iterable[_Union[BudgetState, _Mapping]]] = ..., control_fraction: _Optional[float] = ..., currency_code: _Optional[str] = ...) -> None: ...
