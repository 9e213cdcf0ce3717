import datetime as dt

import pytest

from engine.catalog import CatalogError, default_catalog_path, load_catalog

DEFAULT = default_catalog_path().read_text()


def test_default_catalog_loads(catalog):
    assert set(catalog.offers) == {"discount_10", "discount_15", "free_shipping", "new_collection",
                                   "birthday_gift"}
    assert catalog.offers["discount_15"].cost == 15.0
    assert catalog.channels["sms"].consent and not catalog.channels["web"].consent
    assert len(catalog.send_slots) == 12 and catalog.send_slots[5].id == "10-12"
    assert catalog.attribution_window == dt.timedelta(days=7)
    assert catalog.version.startswith("default-2026.11+")
    assert "--cb_adf" in catalog.model.vw_args()


def write(tmp_path, text):
    path = tmp_path / "cat.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("old,new,expected", [
    ("cost = 10.0", "cost = -3", "key 'offers.discount_10.cost': expected a number >= 0, got -3"),
    ('algorithm = "epsilon_greedy"', 'algorithm = "greedy"',
     "key 'exploration.algorithm': expected one of ['epsilon_greedy', 'softmax', 'squarecb'], got 'greedy'"),
    ("margin_rate = 0.35", "margin_rate = 1.5", "key 'reward.margin_rate'"),
    ('default_timezone = "Europe/Paris"', 'default_timezone = "Mars/Olympus"',
     "key 'default_timezone': expected an IANA time zone name"),
    ('{ start = "20:00", end = "09:00" }', '{ start = "25:00", end = "09:00" }',
     "key 'channels.sms.quiet_hours[0].start': expected a local time 'HH:MM'"),
    ("hours = 2", "hours = 5", "key 'send_slots.hours': expected a divisor of 24"),
    ('interactions = ["UO", "UC", "UT", "HC", "HO"]', 'interactions = ["UX"]',
     "key 'model.interactions[0]'"),
    ("[channels.email]", "[channels.Email]", "key 'channels.Email': expected an id"),
    ("contact_cost = 0.01", "contact_cost = 0.01\nconsnet = true",
     "unknown key 'channels.email.consnet'; allowed: ['consent', 'contact_cost', 'inbound_only', 'quiet_hours']"),
    ("epsilon = 0.01", "epsilon = true", "key 'exploration.epsilon': expected a number >= 0 <= 1, got True"),
    ("max_features = 256", "max_features = 0", "key 'limits.max_features': expected an integer from 1"),
    ('cb_type = "mtr"', 'cb_type = "dm"', "key 'model.importance_weighted': expected true unless model.cb_type"),
    ("importance_weighted = false", 'importance_weighted = "no"',
     "key 'model.importance_weighted': expected true or false, got 'no'"),
    ("power_t = 0.3", "power_t = 2", "key 'model.power_t': expected a number >= 0 <= 1, got 2"),
    ('default_offer = "new_collection"', 'default_offer = "newsletter"',
     "key 'exploration.default_offer': expected one of the offers ['birthday_gift', 'discount_10'"),
    ('default_channels = ["email"]', 'default_channels = ["email", "fax"]',
     "key 'exploration.default_channels[1]': expected one of the channels ['email', 'push'"),
    ('default_channels = ["email"]', '',
     "key 'exploration.default_channels': expected channels together with exploration.default_offer"),
    ("contact_hurdle = 0.0", "contact_hurdle = -0.01",
     "key 'exploration.contact_hurdle': expected a number >= 0 <= 1000, got -0.01"),
    ('slot_value = "mean"', 'slot_value = "median"',
     "key 'exploration.slot_value': expected one of ['best', 'mean'], got 'median'"),
    ('structure = "direct"', 'structure = "direct"\nhour_feature = 10',
     "key 'model.hour_feature': expected a non-empty string, got 10"),
    ("\naverage_updates = 0\n", "\naverage_updates = -5\n",
     "key 'model.average_updates': expected an integer from 0"),
    ("\nreplay = 0\n", "\nreplay = 17\n", "key 'model.replay': expected an integer from 0 to 16"),
    ("\nreplay_buffer = 100000\n", "\nreplay_buffer = 0\n", "key 'model.replay_buffer': expected an integer from 1"),
])
def test_invalid_catalog_names_file_key_and_allowed(tmp_path, old, new, expected):
    assert old in DEFAULT
    assert_rejected(tmp_path, DEFAULT.replace(old, new, 1), expected)


@pytest.mark.parametrize("old,new,expected", [
    ("\naverage_updates = 0\n", "\naverage_updates = 1000\n",
     "key 'model.average_updates': expected 0 with model.structure = \"open_funnel\""),
    ("\nreplay = 0\n", "\nreplay = 1\n", "key 'model.replay': expected 0 with model.structure = \"open_funnel\""),
])
def test_keys_of_a_direct_model_refuse_another_structure(tmp_path, old, new, expected):
    direct = '\nstructure = "direct"\n'
    assert old in DEFAULT and direct in DEFAULT
    changed = DEFAULT.replace(old, new, 1).replace(direct, '\nstructure = "open_funnel"\n', 1)
    assert_rejected(tmp_path, changed, expected)


def assert_rejected(tmp_path, text, expected):
    """Loading the catalog ``text`` fails with an error naming its file and saying ``expected``."""
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_missing_required_key(tmp_path):
    path = write(tmp_path, DEFAULT.replace('version = "default-2026.11"', ""))
    with pytest.raises(CatalogError, match="missing required key 'version'"):
        load_catalog(path)


def test_unreadable_and_malformed(tmp_path):
    with pytest.raises(CatalogError, match="cannot read file"):
        load_catalog(tmp_path / "nope.toml")
    with pytest.raises(CatalogError, match="not valid TOML"):
        load_catalog(write(tmp_path, "offers = [unclosed"))


def test_validity_dates_must_be_ordered(tmp_path):
    text = DEFAULT.replace('name = "15 EUR off"', 'name = "15 EUR off"\nvalid_from = 2026-12-01\nvalid_until = 2026-11-01')
    with pytest.raises(CatalogError, match="offers.discount_15.valid_until"):
        load_catalog(write(tmp_path, text))
