"""The funnel model (``[model] structure = "funnel"``): its reward decomposition, what each head
learns and from which decisions, saving, and the engine and simulator running it."""

from __future__ import annotations

import dataclasses
import itertools
import json
import pickle

import numpy as np
import pytest

from engine.catalog import load_catalog
from engine.decision_log import DsjsonLine
from engine.domain import OutcomeType
from engine.funnel_model import NO_CONTACT_FRAGMENT, FunnelModel
from engine.models import like, new_model
from engine.rewards import FunnelSignals, funnel_signals, net_reward
from engine.value_model import ValueModel
from support import T0

CATALOG = load_catalog()
SETTINGS = dataclasses.replace(CATALOG.model, structure="funnel")
SLOTS = ("s08", "s20")


def fragment(offer: str, slot: str, cost: float = 0.0) -> str:
    return json.dumps({"O": {f"offer={offer}": 1.0, "incentive": cost}, "C": {"channel=email": 1.0},
                       "T": {f"slot={slot}": 1.0}}, separators=(",", ":"))


ACTIONS = [fragment("news", s) for s in SLOTS] + [fragment("discount", s, 5.0) for s in SLOTS] + [NO_CONTACT_FRAGMENT]


def head(usual: str) -> str:
    return '{"U":{"usual_open_slot=' + usual + '":1.0},"H":{},"_multi":['


def context(usual: str) -> str:
    return head(usual) + ",".join(ACTIONS) + "]}"


def learned_line(usual: str, chosen: int) -> DsjsonLine:
    return DsjsonLine.learned("e", T0, head(usual), ACTIONS[chosen], len(ACTIONS), 0.5, chosen)


def signals(contacted=True, opened=False, clicked=False, purchased=False, purchases=0.0, offer_cost=0.0,
            incentive=0.0) -> FunnelSignals:
    return FunnelSignals(contacted=contacted, opened=opened, clicked=clicked, purchased=purchased,
                         purchases=purchases, counted=clicked, offer_cost=offer_cost, incentive=incentive,
                         credits=0.0, unsubscribed=False, complained=False)


def test_the_signals_add_up_to_the_reward_for_every_set_of_outcomes():
    """purchases (if counted) - incentive + credits - penalties - contact cost = net_reward, for
    each subset of outcome kinds, under both attributions and both ways of paying incentives."""
    kinds = [OutcomeType.DELIVERED, OutcomeType.OPENED, OutcomeType.CLICKED, OutcomeType.CONVERTED,
             OutcomeType.REDEEMED, OutcomeType.UNSUBSCRIBED, OutcomeType.COMPLAINED]
    for attribution, paid_on in itertools.product(("click", "window"), ("redemption", "conversion")):
        definition = dataclasses.replace(CATALOG.reward, purchase_attribution=attribution, incentive_paid_on=paid_on,
                                         opened_value=0.05, clicked_value=0.2, delivered_value=0.01,
                                         unsubscribe_penalty=3.0, complaint_penalty=7.0)
        for n in range(1, len(kinds) + 1):
            for subset in itertools.combinations(kinds, n):
                outcomes = [(k, 80.0 if k is OutcomeType.CONVERTED else 0.0) for k in subset]
                s = funnel_signals(definition, outcomes, True, 5.0, 0.07)
                rebuilt = ((s.purchases if s.counted else 0.0) - s.incentive + s.credits - 0.07
                           - 3.0 * s.unsubscribed - 7.0 * s.complained)
                assert rebuilt == pytest.approx(net_reward(definition, outcomes, True, 5.0, 0.07)), subset
                assert s.opened == (OutcomeType.OPENED in subset) and s.purchased == (OutcomeType.CONVERTED in subset)


def test_a_cold_model_values_every_action_at_zero_and_warms_on_its_first_opened_contact():
    model = FunnelModel(SETTINGS, reward=CATALOG.reward)
    assert model.cold and np.array_equal(model.values(context("s08"), len(ACTIONS)), np.zeros(len(ACTIONS)))
    model.learn_funnel(learned_line("s08", 0), signals())  # a contact never opened: nothing known of clicks
    assert model.cold and model.learned["open"] == 1 and model.learned["organic"] == 1
    model.learn_funnel(learned_line("s08", 0), signals(opened=True, clicked=True))
    assert not model.cold and model.learned["click"] == 1 and model.learned["open"] == 2
    assert model.values(context("s08"), len(ACTIONS))[-1] == 0.0  # no contact


def test_the_open_head_learns_each_customers_slot_from_opens_alone():
    """Opens at 40 % in the customer's usual slot and 10 % elsewhere, nothing ever bought: the
    open head tells the slots apart, calibrated, and no other head learns from it but its own."""
    rng = np.random.default_rng(3)
    model = FunnelModel(SETTINGS, reward=CATALOG.reward)
    for _ in range(6000):
        usual, chosen = SLOTS[rng.integers(2)], int(rng.integers(4))
        p = 0.4 if ACTIONS[chosen].endswith(f'"slot={usual}":1.0}}}}') else 0.1
        model.learn_funnel(learned_line(usual, chosen), signals(opened=bool(rng.random() < p),
                                                                offer_cost=5.0 if chosen >= 2 else 0.0))
    for usual in SLOTS:
        p_open = model.parts(context(usual), len(ACTIONS))["open"][:4]
        at_usual = np.array([SLOTS[i % 2] == usual for i in range(4)])
        assert np.allclose(p_open[at_usual], 0.4, atol=0.08) and np.allclose(p_open[~at_usual], 0.1, atol=0.04), p_open
        assert p_open[at_usual].min() > 2.5 * p_open[~at_usual].max(), p_open
    assert model.learned["purchase"] == 0 and model.learned["margin"] == 0
    assert 0 < model.learned["incentive"] < model.learned["open"]  # only the offers with a cost


def test_the_organic_baseline_is_the_customers_and_learned_where_nothing_reached_them():
    """Purchases at 30 % without a contact or with an unopened one; a clicked contact's purchases at
    30 % too: the contact caused none, so every contact is worth less than no contact."""
    rng = np.random.default_rng(4)
    model = FunnelModel(SETTINGS, reward=CATALOG.reward)
    for _ in range(4000):
        usual, chosen = SLOTS[rng.integers(2)], int(rng.integers(len(ACTIONS)))
        contacted = chosen != len(ACTIONS) - 1
        opened = contacted and rng.random() < 0.5
        clicked = opened and rng.random() < 0.5
        bought = bool(rng.random() < 0.3)
        model.learn_funnel(learned_line(usual, chosen), signals(contacted, opened, clicked, bought, 20.0 if bought else 0.0))
    parts = model.parts(context("s08"), len(ACTIONS))
    assert np.ptp(parts["organic"]) == 0 and parts["organic"][0] == pytest.approx(0.3, abs=0.05)
    assert parts["purchase"][:4] == pytest.approx([0.3] * 4, abs=0.08)
    assert parts["margin"][0] == pytest.approx(20.0, abs=2.0)
    values = model.values(context("s08"), len(ACTIONS))
    assert values[-1] == 0.0 and (values[:-1] < 0.5).all()


def test_saved_restored_pickled_and_scored_in_parts_a_funnel_model_gives_the_same_values():
    rng = np.random.default_rng(5)
    model = new_model(SETTINGS, reward=CATALOG.reward)
    assert isinstance(model, FunnelModel) and isinstance(new_model(CATALOG.model), ValueModel)
    for _ in range(300):
        chosen = int(rng.integers(len(ACTIONS)))
        opened = chosen < 4 and rng.random() < 0.5
        model.learn_funnel(learned_line("s20", chosen), signals(chosen < 4, opened, opened and rng.random() < 0.5,
                                                                bool(rng.random() < 0.2), 15.0))
    text = context("s20")
    values = model.values(text, len(ACTIONS))
    assert np.array_equal(model.values_parts(head("s20"), ",".join(ACTIONS), len(ACTIONS)), values)
    for copy in (like(model, model.serialize(), "v2", model.updates), pickle.loads(pickle.dumps(model))):
        assert isinstance(copy, FunnelModel) and copy.learned == model.learned and copy.updates == model.updates
        assert np.array_equal(copy.values(text, len(ACTIONS)), values)
    with pytest.raises(ValueError, match="not a funnel model"):
        FunnelModel(SETTINGS, model_data=b"\x00" * 100)
    with pytest.raises(ValueError, match="bytes beyond its heads"):
        FunnelModel(SETTINGS, model_data=model.serialize() + b"extra")
    with pytest.raises(TypeError, match="learns a decision's outcomes"):
        model.learn_decision(learned_line("s20", 0), 1.0)


def test_the_engine_decides_and_learns_with_the_funnel_model(tmp_path):
    """The engine with ``[model] structure = "funnel"``: decisions, outcomes, maturity, learning."""
    import datetime as dt

    from engine.domain import Outcome
    from engine.pipeline import DecisionEngine
    from support import request

    catalog = dataclasses.replace(CATALOG, model=SETTINGS)
    engine = DecisionEngine(catalog, seed=1, honour_request_time=True)
    assert isinstance(engine.model, FunnelModel)
    decisions = [engine.decide(request(f"c-{i}", T0)) for i in range(60)]
    contacted = [d for d in decisions if not d.action.no_contact]
    assert contacted  # cold: the default contact
    for i, d in enumerate(contacted):
        engine.report_outcome(Outcome(d.event_id, f"o{i}", OutcomeType.OPENED, time=T0 + dt.timedelta(hours=1)))
        if i % 2:
            engine.report_outcome(Outcome(d.event_id, f"k{i}", OutcomeType.CLICKED, time=T0 + dt.timedelta(hours=2)))
    learned = engine.mature(T0 + catalog.attribution_window + dt.timedelta(hours=1))
    assert learned == len(decisions) and engine.model.learned["open"] == len(contacted)
    assert engine.model.learned["click"] == len(contacted) and not engine.model.cold
    assert engine.model.learned["organic"] == len(decisions) - len(contacted)
    after = engine.decide(request("c-new", T0 + dt.timedelta(days=8)))
    assert np.isfinite(after.expected_value) and all(np.isfinite(s.expected_value) for s in after.ranking)
    engine.close()


def test_simulate_runs_two_structures_on_one_population(tmp_path):
    from simulators.simulate import simulate

    out = simulate("default", customers=300, days=14, policies=("engine", "engine@funnel"), seed=2,
                   out=tmp_path, mlflow=False, progress=False, plots=False)
    assert set(out["results"]) == {"engine", "engine@funnel"}
    assert out["results"]["engine@funnel"]["decisions"] == out["results"]["engine"]["decisions"]
    assert any((tmp_path / "logs-funnel").glob("decisions-*.jsonl")) and any((tmp_path / "logs").glob("decisions-*.jsonl"))
    with pytest.raises(ValueError, match="no model structure 'funel'"):
        simulate("default", customers=10, days=7, policies=("engine@funel",), out=tmp_path / "bad", mlflow=False,
                 progress=False, plots=False)


def test_training_from_the_logs_refuses_the_funnel_structure():
    from training.train import TrainParams

    with pytest.raises(ValueError, match="structure 'funnel' learns online only"):
        TrainParams(structure="funnel").settings(CATALOG)


def test_the_open_head_learns_faster_than_the_heads_of_rarer_events():
    """Each head's VW arguments: an open (about one contact in four) at 0.5, the rarer events at
    0.1, both with a logistic loss; the amounts with the catalog's squared loss and rate."""
    base = SETTINGS.vw_args()

    def rate(name: str) -> float:
        args = FunnelModel._head_args(name, base)
        return float(args[args.index("-l") + 1]), "logistic" in args

    assert rate("open") == (0.5, True)
    for name in ("click", "purchase", "incentive", "unsubscribe", "complaint", "organic"):
        assert rate(name) == (0.1, True), name
    for name in ("margin", "credits"):
        assert rate(name) == (SETTINGS.learning_rate, False), name
