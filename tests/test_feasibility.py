import datetime as dt

from engine.catalog import default_catalog_path, load_catalog
from engine.domain import ExclusionReason
from engine.feasibility import feasible_actions, send_time
from engine.validation import zone
from support import T0, request


def reasons(fs):
    return {e.target: e.reason for e in fs.exclusions}


def test_no_contact_always_feasible_and_last(catalog):
    fs = feasible_actions(request(consented_channels=()), catalog, T0)
    assert fs.actions[-1].no_contact
    assert len(fs.actions) == 1  # nothing consented, web is inbound-only
    assert reasons(fs)["channel:email"] is ExclusionReason.CONSENT
    assert reasons(fs)["channel:web"] is ExclusionReason.INBOUND_ONLY


def test_action_space_is_offers_by_channel_slots(catalog):
    fs = feasible_actions(request(consented_channels=("email",)), catalog, T0)
    # 4 eligible offers (no birthday) x 12 email slots + no_contact
    assert len(fs.actions) == 4 * 12 + 1
    assert reasons(fs)["offer:birthday_gift"] is ExclusionReason.ELIGIBILITY


def test_eligibility_rule_admits_matching_customer(catalog):
    fs = feasible_actions(request(categorical_features={"birthday_month": "yes"},
                                  consented_channels=("email",)), catalog, T0)
    assert any(a.offer_id == "birthday_gift" for a in fs.actions)


def test_caller_narrowing(catalog):
    fs = feasible_actions(request(candidate_offers=("discount_10",), allowed_channels=("email",)),
                          catalog, T0)
    assert {a.offer_id for a in fs.actions if not a.no_contact} == {"discount_10"}
    assert {a.channel for a in fs.actions if not a.no_contact} == {"email"}
    r = reasons(fs)
    assert r["offer:discount_15"] is ExclusionReason.CALLER_NARROWING
    assert r["channel:sms"] is ExclusionReason.CALLER_NARROWING


def test_quiet_hours_follow_customer_time_zone(catalog):
    # SMS quiet 20:00-09:00 local. In Paris the 22-24 slot is quiet; 10-12 is not.
    fs = feasible_actions(request(consented_channels=("sms",)), catalog, T0)
    slots = {a.send_slot for a in fs.actions if not a.no_contact}
    assert "22-24" not in slots and "10-12" in slots
    assert reasons(fs)["channel:sms/slot:22-24"] is ExclusionReason.QUIET_HOURS
    for a in fs.actions[:-1]:
        local = a.send_at.astimezone(zone("Europe/Paris"))
        assert 9 <= local.hour < 20, a
    # In Tokyo, every SMS send time is still outside local quiet hours.
    fs_tokyo = feasible_actions(request(consented_channels=("sms",), timezone="Asia/Tokyo"), catalog, T0)
    for a in fs_tokyo.actions[:-1]:
        assert 9 <= a.send_at.astimezone(zone("Asia/Tokyo")).hour < 20


def test_send_times_are_within_next_24_hours_and_in_slot(catalog):
    fs = feasible_actions(request(consented_channels=("email",)), catalog, T0)
    paris = zone("Europe/Paris")
    for a in fs.actions[:-1]:
        assert T0 <= a.send_at < T0 + dt.timedelta(hours=24)
        start = int(a.send_slot[:2])
        assert start <= a.send_at.astimezone(paris).hour < start + 2
    # The slot open now (10-12 in Paris) sends now.
    now_slot = [a for a in fs.actions if a.send_slot == "10-12"]
    assert now_slot and all(a.send_at == T0 for a in now_slot)


def test_send_time_across_dst_change():
    paris = zone("Europe/Paris")
    # 2026-03-28 23:30 local; next 08:00 is after the spring-forward night.
    now_local = dt.datetime(2026, 3, 28, 23, 30, tzinfo=paris)
    from engine.catalog import SendSlot
    at = send_time(SendSlot(4, 8, 2), now_local)
    assert at.hour == 8 and at.day == 29
    assert at.utcoffset() == dt.timedelta(hours=2)


def test_inbound_fixes_channel_and_time(catalog):
    fs = feasible_actions(request(inbound=True, allowed_channels=("web",)), catalog, T0)
    contacts = [a for a in fs.actions if not a.no_contact]
    assert {a.channel for a in contacts} == {"web"} and all(a.send_at == T0 for a in contacts)
    assert len(contacts) == 4  # one per eligible offer


def test_validity_dates(tmp_path):
    text = default_catalog_path().read_text().replace(
        'name = "15 EUR off"', 'name = "15 EUR off"\nvalid_from = 2026-12-01\nvalid_until = 2026-12-31')
    path = tmp_path / "c.toml"
    path.write_text(text)
    catalog = load_catalog(path)
    fs = feasible_actions(request(), catalog, T0)
    assert reasons(fs)["offer:discount_15"] is ExclusionReason.VALIDITY
    fs_dec = feasible_actions(request(), catalog, dt.datetime(2026, 12, 15, 9, tzinfo=dt.timezone.utc))
    assert any(a.offer_id == "discount_15" for a in fs_dec.actions)
