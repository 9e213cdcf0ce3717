import datetime as dt
from pathlib import Path

import pytest

from engine.catalog import CatalogError, default_catalog_path, load_catalog, reference_page

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


END = 'inbound_offer = "new_collection"\n'


def appended(table: str, lines: str) -> tuple[str, str]:
    """(old, new) that add a table the default catalog leaves out (its settings all default)."""
    return END, f"{END}\n[{table}]\n{lines}\n"


def under(table: str, line: str) -> tuple[str, str]:
    """(old, new) that set a key of a table the default catalog has."""
    return f"[{table}]\n", f"[{table}]\n{line}\n"


@pytest.mark.parametrize("old,new,expected", [
    ("cost = 10.0", "cost = -3", "key 'offers.discount_10.cost': expected a number >= 0, got -3"),
    (*under("exploration", 'algorithm = "greedy"'),
     "key 'exploration.algorithm': expected one of ['epsilon_greedy', 'softmax', 'squarecb'], got 'greedy'"),
    ("margin_rate = 0.35", "margin_rate = 1.5", "key 'reward.margin_rate'"),
    ('default_timezone = "Europe/Paris"', 'default_timezone = "Mars/Olympus"',
     "key 'default_timezone': expected an IANA time zone name"),
    ('{ start = "20:00", end = "09:00" }', '{ start = "25:00", end = "09:00" }',
     "key 'channels.sms.quiet_hours[0].start': expected a local time 'HH:MM'"),
    (*appended("send_slots", "hours = 5"), "key 'send_slots.hours': expected a divisor of 24"),
    (*appended("model", 'interactions = ["UX"]'), "key 'model.interactions[0]'"),
    ("[channels.email]", "[channels.Email]", "key 'channels.Email': expected an id"),
    ("contact_cost = 0.01", "contact_cost = 0.01\nconsnet = true",
     "unknown key 'channels.email.consnet'; allowed: ['consent', 'contact_cost', 'inbound_only', 'quiet_hours']"),
    (*under("exploration", "epsilon = true"), "key 'exploration.epsilon': expected a number >= 0 <= 1, got True"),
    (*appended("limits", "max_features = 0"), "key 'limits.max_features': expected an integer from 1"),
    (*appended("model", 'cb_type = "dm"'), "key 'model.importance_weighted': expected true unless model.cb_type"),
    (*appended("model", 'importance_weighted = "no"'),
     "key 'model.importance_weighted': expected true or false, got 'no'"),
    (*appended("model", "power_t = 2"), "key 'model.power_t': expected a number >= 0 <= 1, got 2"),
    (*appended("model", 'structure = "open_funnel"'),
     "key 'model.structure': expected one of ['direct', 'funnel'], got 'open_funnel'"),
    ('default_offer = "new_collection"', 'default_offer = "newsletter"',
     "key 'exploration.default_offer': expected one of the offers ['birthday_gift', 'discount_10'"),
    ('default_channels = ["email"]', 'default_channels = ["email", "fax"]',
     "key 'exploration.default_channels[1]': expected one of the channels ['email', 'push'"),
    ('default_channels = ["email"]', '',
     "key 'exploration.default_channels': expected channels together with exploration.default_offer"),
    (*under("exploration", "contact_hurdle = 0.05"),
     "unknown key 'exploration.contact_hurdle'; allowed: ['algorithm', 'default_channels'"),
    (*under("exploration", 'slot_value = "median"'),
     "key 'exploration.slot_value': expected one of ['mean', 'best'], got 'median'"),
    (*appended("model", "history_days = 3"), "key 'model.history_days': expected an integer from 7 to 366"),
    ("amount = 20000.0", "amount = -1.0", "key 'budgets.incentives.amount': expected a number >= 0"),
    ("period_days = 30", "", "missing required key 'budgets.incentives.period_days'"),
    ('{ id = "sms_week", channels = ["sms"], max = 1, window_days = 7 }',
     '{ id = "sms_week", channels = ["sms"], window_days = 7 }', "missing required key 'pressure.caps[1].max'"),
    ("fraction = 0.0", "fraction = 2.0", "key 'control.fraction': expected a number >= 0 <= 1, got 2.0"),
    ('inbound_offer = "new_collection"', 'inbound_offer = "discount_10"',
     "key 'outage.inbound_offer': expected an offer without cost, one of ['new_collection']"),
])
def test_invalid_catalog_names_file_key_and_allowed(tmp_path, old, new, expected):
    assert old in DEFAULT
    assert_rejected(tmp_path, DEFAULT.replace(old, new, 1), expected)


def test_every_setting_left_out_takes_its_declared_default(tmp_path):
    """The shipped catalog sets only what is particular to it: leaving out a table gives the
    declared defaults, the same as writing each default out."""
    defaults = load_catalog(write(tmp_path, DEFAULT))
    spelled = DEFAULT.replace(END, END + "\n[model]\nlearning_rate = 0.2\npower_t = 0.3\nbits = 18\n"
                                        "importance_weighted = false\n[attribution]\nwindow_hours = 168\n")
    (tmp_path / "spelled.toml").write_text(spelled)
    spelled_out = load_catalog(tmp_path / "spelled.toml")
    assert spelled_out.model == defaults.model
    assert spelled_out.attribution_window == defaults.attribution_window == dt.timedelta(hours=168)
    assert defaults.exploration.epsilon == 0.01 and defaults.reward.purchase_attribution == "click"


def test_the_catalog_reference_is_generated_from_the_declarations():
    """docs/catalog.md is what ``python -m engine.catalog`` writes: regenerate it after changing
    a setting's declaration."""
    page = Path(__file__).resolve().parent.parent / "docs" / "catalog.md"
    assert page.read_text() == reference_page(), "docs/catalog.md is stale: python -m engine.catalog > docs/catalog.md"
    for key in ("`epsilon`", "`purchase_attribution`", "`pacing_lead_hours`", "`window_days`", "`inbound_offer`"):
        assert key in page.read_text()


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
