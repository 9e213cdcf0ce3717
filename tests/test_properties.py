"""Property-based tests over request validation and the servicer (real server, loopback)."""

import datetime as dt

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import convert
from engine.catalog import load_catalog
from engine.decision_log import log_files
from engine.domain import DecisionRequest, Outcome, OutcomeType, RequestError
from engine.guards import ServerLimits
from engine.pipeline import DecisionEngine
from engine.server import start_server
from engine.validation import validate_outcome, validate_request
from nba.v1 import decision_pb2 as pb
from nba.v1 import decision_pb2_grpc as pb_grpc

CATALOG = load_catalog()
CHANNELS = list(CATALOG.channels) + ["fax", "", "EMAIL"]
OFFERS = list(CATALOG.offers) + ["discount_99", ""]
ZONES = ["", "Europe/Paris", "America/New_York", "Asia/Kolkata", "UTC", "Mars/Olympus", "../etc"]
VALIDATION_FIELDS = ("customer_id", "numeric_features", "categorical_features", "consented_channels",
                     "allowed_channels", "candidate_offers", "timezone")

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
names = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), text)
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
requests = st.builds(
    DecisionRequest,
    customer_id=st.one_of(st.from_regex(r"c-[0-9]{1,6}", fullmatch=True), text),
    numeric_features=st.dictionaries(names, floats, max_size=6),
    categorical_features=st.dictionaries(names, text, max_size=6),
    consented_channels=st.lists(st.sampled_from(CHANNELS), max_size=4).map(tuple),
    candidate_offers=st.lists(st.sampled_from(OFFERS), max_size=3).map(tuple),
    allowed_channels=st.lists(st.sampled_from(CHANNELS), max_size=2).map(tuple),
    timezone=st.sampled_from(ZONES),
    decision_time=st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 1, 1),
                               timezones=st.just(dt.timezone.utc)),
    inbound=st.booleans(),
)


@given(requests)
def test_validation_accepts_or_names_a_field(r):
    try:
        validate_request(r, CATALOG)
    except RequestError as err:
        assert err.field.split("[")[0] in VALIDATION_FIELDS
        assert str(err).startswith(err.field + ": ")


@given(st.builds(Outcome, event_id=text, outcome_id=text, type=st.sampled_from(list(OutcomeType)),
                 value=floats))
def test_outcome_validation(o):
    try:
        validate_outcome(o, CATALOG)
    except RequestError as err:
        assert err.field in ("event_id", "outcome_id", "value")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("prop-logs")
    engine = DecisionEngine(CATALOG, log_dir=log_dir, seed=11, honour_request_time=True)
    running = start_server(engine, port=0, limits=ServerLimits(max_calls=4, max_streams=2))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield pb_grpc.DecisionServiceStub(channel), engine, log_dir
    channel.close()
    running.stop(1)


def logged(log_dir):
    return sum(len(f.read_bytes().splitlines()) for f in log_files(log_dir, "decisions"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(r=requests)
def test_servicer_answers_ok_or_invalid_argument_never_internal(live, r):
    stub, engine, log_dir = live
    try:
        validate_request(r, CATALOG)
        expected_ok = True
    except RequestError:
        expected_ok = False
    before = (logged(log_dir), engine.policy().counters["decisions"])
    try:
        reply = stub.NextBestAction(convert.request_to_proto(r), timeout=10).decision
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
        assert not expected_ok
        assert (logged(log_dir), engine.policy().counters["decisions"]) == before
        return
    assert expected_ok
    assert 0 < reply.probability <= 1
    assert logged(log_dir) == before[0] + 1
    action = reply.action
    if not action.no_contact:
        channel = CATALOG.channels[action.channel]
        assert not channel.consent or action.channel in r.consented_channels
        assert not r.allowed_channels or action.channel in r.allowed_channels
        assert not r.candidate_offers or action.offer_id in r.candidate_offers
        assert channel.inbound_only == r.inbound or not channel.inbound_only


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_id=st.one_of(st.just(""), text), outcome_id=text,
       kind=st.integers(min_value=-3, max_value=12), value=floats)
def test_report_outcome_never_internal(live, event_id, outcome_id, kind, value):
    stub, _, _ = live
    try:
        stub.ReportOutcome(pb.ReportOutcomeRequest(event_id=event_id, outcome_id=outcome_id, type=kind, value=value),
                           timeout=10)
    except grpc.RpcError as err:
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), err.details()
