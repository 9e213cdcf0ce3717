"""Helpers shared by the tests."""

from __future__ import annotations

import datetime as dt

from engine.domain import DecisionRequest

# A Monday, 09:00 UTC = 10:00 in Paris (winter).
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.timezone.utc)


def request(customer_id: str = "c-1", when: dt.datetime = T0, **kwargs) -> DecisionRequest:
    defaults = dict(categorical_features={"segment": "loyal"}, numeric_features={"basket": 60.0},
                    consented_channels=("email", "sms", "push"), timezone="Europe/Paris")
    defaults.update(kwargs)
    return DecisionRequest(customer_id=customer_id, decision_time=when, **defaults)


class FixedAction:
    """A user-written policy: one action (``offer/channel/slot`` label) for everyone who can get
    it, no contact for the others; counts the outcomes it is shown."""

    def __init__(self, label: str, name: str):
        self.label, self.name = label, name

    def decide(self, batch):
        import numpy as np

        chosen = np.zeros(len(batch.customers), dtype=int)
        for g in batch.groups:
            chosen[g.members] = g.index.get(self.label, len(g.actions) - 1)
        return chosen

    def learn(self, feedback):
        self.seen = getattr(self, "seen", 0) + len(feedback)


class AlwaysNewCollectionByEmail(FixedAction):
    """The new collection by email at 18:00 to everyone who can get it."""

    def __init__(self):
        super().__init__("new_collection/email/18-20", "my_policy")


def make_policy(scenario, seed):
    return AlwaysNewCollectionByEmail()


def history(store, customer_id: str, when: dt.datetime):
    """The contact history the engine's features would see for a customer at ``when``."""
    return store.snapshot(customer_id, when, dt.timedelta(days=7), []).customer.history(when)


def unconstrained(catalog):
    """The catalog without pressure caps, budgets or control group."""
    import dataclasses

    from engine.constraints import Constraints

    return dataclasses.replace(catalog, constraints=Constraints())


def serve_processes(tmp_path, redis_url: str, *extra: str, processes: int = 2):
    """``nba serve --processes N`` on Redis (a prefix of its own), honouring request times:
    (the process, its port, the serving line)."""
    import uuid

    from engine.server import start_server_process

    output: list[str] = []
    proc, port = start_server_process(
        tmp_path / "logs", seed=5, output=output,
        extra=["--processes", str(processes), "--redis", redis_url, "--redis-prefix", f"t{uuid.uuid4().hex[:8]}",
               "--honour-decision-time", "--state-dir", str(tmp_path / "state"), *extra])
    return proc, port, output[-1]
