"""Request validation: every caller mistake becomes a RequestError naming the field.

Validation runs before anything is logged, learned or reserved, so a rejected call changes
nothing.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.catalog import Catalog
from engine.domain import DecisionRequest, Outcome, RequestError

FEATURE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# Most of a bad value an error message shows: a megabyte of junk must not make the error itself
# too large for gRPC's metadata (the caller would get RESOURCE_EXHAUSTED instead of the error).
SHOWN_CHARACTERS = 100
MAX_CUSTOMER_ID = 128
MAX_CATEGORICAL_VALUE = 128
MAX_OUTCOME_ID = 128
MAX_EVENT_ID = 128


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone, or RequestError naming the timezone field."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise RequestError("timezone", f"unknown IANA time zone {shown(name)} (e.g. 'Europe/Paris')") from None


def _printable(text: str) -> bool:
    return text.isprintable()


def shown(value) -> str:
    """``repr(value)``, cut to about ``SHOWN_CHARACTERS`` characters (saying how long it was)."""
    text = repr(value)
    if len(text) <= SHOWN_CHARACTERS:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as text"
    return f"{text[:SHOWN_CHARACTERS]}... ({size})"


def validate_request(request: DecisionRequest, catalog: Catalog) -> None:
    """Raise RequestError on the first problem found in ``request``."""
    cid = request.customer_id
    if not cid or not cid.strip():
        raise RequestError("customer_id", "must not be empty")
    if len(cid) > MAX_CUSTOMER_ID:
        raise RequestError("customer_id", f"longer than {MAX_CUSTOMER_ID} characters ({len(cid)})")
    if not _printable(cid):
        raise RequestError("customer_id", "contains non-printable characters")

    for name, value in request.numeric_features.items():
        _check_feature_name("numeric_features", name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(f"numeric_features[{name!r}]", f"must be a number, got {shown(value)}")
        if not math.isfinite(value):
            raise RequestError(f"numeric_features[{name!r}]", f"must be finite, got {value}")
    for name, value in request.categorical_features.items():
        _check_feature_name("categorical_features", name)
        if not isinstance(value, str) or not value or len(value) > MAX_CATEGORICAL_VALUE \
                or not _printable(value):
            raise RequestError(f"categorical_features[{name!r}]",
                               f"must be 1-{MAX_CATEGORICAL_VALUE} printable characters, got {shown(value)}")
        if name in request.numeric_features:
            raise RequestError(f"categorical_features[{name!r}]",
                               "the same name is also a numeric feature")
    total = len(request.numeric_features) + len(request.categorical_features)
    if total > catalog.max_features:
        raise RequestError("numeric_features",
                           f"{total} features in all, more than the limit of {catalog.max_features}")

    _check_ids("consented_channels", request.consented_channels, catalog.channels, "channel")
    _check_ids("allowed_channels", request.allowed_channels, catalog.channels, "channel")
    _check_ids("candidate_offers", request.candidate_offers, catalog.offers, "offer")

    if request.timezone:
        zone(request.timezone)
    if request.inbound and len(set(request.allowed_channels)) != 1:
        raise RequestError("allowed_channels",
                           "an inbound request must name exactly one channel (the one the "
                           f"customer is on), got {shown(list(request.allowed_channels))}")


def validate_outcome(outcome: Outcome, catalog: Catalog) -> None:
    if not outcome.event_id or not outcome.event_id.strip():
        raise RequestError("event_id", "must not be empty")
    if len(outcome.event_id) > MAX_EVENT_ID or not _printable(outcome.event_id):
        raise RequestError("event_id", f"must be 1-{MAX_EVENT_ID} printable characters, got {shown(outcome.event_id)}")
    if not outcome.outcome_id or not outcome.outcome_id.strip():
        raise RequestError("outcome_id", "must not be empty (it makes repeated reports count once)")
    if len(outcome.outcome_id) > MAX_OUTCOME_ID or not _printable(outcome.outcome_id):
        raise RequestError("outcome_id", f"must be 1-{MAX_OUTCOME_ID} printable characters")
    if not math.isfinite(outcome.value):
        raise RequestError("value", f"must be finite, got {outcome.value}")
    if outcome.value < 0:
        raise RequestError("value", f"must be >= 0, got {outcome.value}")
    if outcome.value > catalog.max_order_value:
        raise RequestError("value", f"must be at most {catalog.max_order_value:g} EUR (the catalog's "
                                    f"limits.max_order_value), got {outcome.value:g}")


def _check_feature_name(field_name: str, name: str) -> None:
    if not isinstance(name, str) or not FEATURE_NAME.match(name):
        raise RequestError(field_name, f"feature name {shown(name)} must be 1-64 characters of [A-Za-z0-9_.-]")
    if name.startswith("_"):
        # VW's JSON input gives names starting with '_' meanings of their own (_label, _text,
        # _tag, _multi, _slots, ...): a customer feature must not be read as one.
        raise RequestError(field_name, f"feature name {shown(name)} starts with '_', which the model's input "
                                       "format reserves")


def _check_ids(field_name: str, values, known: dict, kind: str) -> None:
    for value in values:
        if value not in known:
            raise RequestError(field_name, f"unknown {kind} {shown(value)}; known: {sorted(known)}")
