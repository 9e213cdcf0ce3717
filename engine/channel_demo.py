"""``nba channel-demo``: start a real server, act as a channel system against it, stop it.

The scripted channel system runs a weekly outbound campaign over simulated weeks (the server
honours the request times). Its customers respond by a simple hidden rule -- promo-minded
customers buy with a discount, the others with the new collection, and people open email in the
morning or evening -- so the engine's learning shows in the weekly net value. (The calibrated
customer simulator lives in ``simulators/``; this script only demonstrates the service.)
"""

from __future__ import annotations

import datetime as dt
import signal
import tempfile
from pathlib import Path

import grpc
import numpy as np

from engine import convert
from engine.catalog import Catalog, load_catalog
from engine.client import NBAClient
from engine.domain import DecisionRequest, OutcomeType
from engine.rewards import net_reward
from engine.server import start_server_process

START = dt.datetime(2026, 11, 2, 7, 0, tzinfo=dt.timezone.utc)  # a Monday
WEEKS = 8


def _customers(n: int, rng: np.random.Generator) -> list[dict]:
    people = []
    for i in range(n):
        promo = rng.random() < 0.5
        people.append({
            "id": f"cust-{i:05d}",
            "promo": promo,
            "segment": str(rng.choice(["new", "loyal", "occasional", "dormant"])),
            "basket": float(rng.uniform(40, 105)),
            "morning": rng.random() < 0.6,
            "channels": ["email"] + (["sms"] if rng.random() < 0.4 else []),
        })
    return people


def _fits(person: dict, offer_id: str) -> bool:
    if person["promo"]:
        return offer_id in ("discount_10", "discount_15")
    return offer_id == "new_collection"


def _respond(person: dict, decision, rng: np.random.Generator) -> list[tuple[str, float]]:
    """The scripted customers' hidden response rule."""
    a = decision.action
    if a.no_contact:
        return [("CONVERTED", person["basket"])] if rng.random() < 0.01 else []
    local_hour = (a.send_at + dt.timedelta(hours=1)).hour  # Europe/Paris in winter
    good_hour = (8 <= local_hour < 12) if person["morning"] else (18 <= local_hour < 22)
    p_open = (0.35 if good_hour else 0.08) if a.channel == "email" else 0.5
    if rng.random() >= p_open:
        return [("DELIVERED", 0.0)]
    p_buy = 0.35 if _fits(person, a.offer_id) else 0.04
    events = [("DELIVERED", 0.0), ("OPENED", 0.0)]
    if rng.random() < p_buy:
        events.append(("CONVERTED", person["basket"]))
        if a.offer_id != "new_collection":
            events.append(("REDEEMED", 0.0))  # the code was used at the till
    return events


def run_demo(args) -> int:
    """Start a server (or use ``args.server``, with ``args.token`` and ``args.tls_ca``), play the
    channel system against it, stop the server it started."""
    rng = np.random.default_rng(args.seed)
    tmp, proc = None, None
    log_dir = args.log_dir
    if args.server:
        target = args.server
        print(f"Using the server at {target} (it should run with --honour-decision-time) ...", flush=True)
    else:
        if log_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="nba-demo-")
            log_dir = Path(tmp.name)
        print(f"Starting `nba serve` (logs in {log_dir}) ...", flush=True)
        proc, port = start_server_process(log_dir, args.seed, ["--honour-decision-time"])
        target = f"127.0.0.1:{port}"
    try:
        with NBAClient(target, token=args.token, tls_ca=args.tls_ca) as nba:
            nba.wait_ready()
            print(f"Server ready on {target}\n")
            _inbound_example(nba)
            _campaigns(nba, load_catalog(), _customers(args.customers, rng), rng)
            _bad_request_example(nba)
            _policy_summary(nba)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    if proc is None:
        return 0
    decisions = sum(1 for f in log_dir.glob("decisions-*.jsonl") for _ in f.open())
    outcomes = sum(1 for f in log_dir.glob("outcomes-*.jsonl") for _ in f.open())
    print(f"\nServer stopped (exit code {proc.returncode}). Logged {decisions} DSJSON decisions and "
          f"{outcomes} outcomes in {log_dir}.")
    if tmp is not None:
        tmp.cleanup()
    return 0 if proc.returncode == 0 else 1


def _policy_summary(nba: NBAClient) -> None:
    try:
        info = nba.policy()
    except grpc.RpcError as err:  # a token without the admin role
        print(f"\nGetPolicy -> {err.code().name}: {err.details()}")
        return
    c = info.counters
    print(f"\nGetPolicy: model {info.model_version}, catalog {info.catalog_version}, "
          f"{convert.exploration_algorithm_name(info.exploration.algorithm)} epsilon={info.exploration.epsilon}")
    print(f"  decisions={c.decisions} explored={c.explored} no_contact={c.no_contact} "
          f"outcomes={c.outcomes} duplicates={c.duplicate_outcomes} learned={c.learned} "
          f"pending={c.pending} rejected={c.rejected}")


def _inbound_example(nba: NBAClient) -> None:
    d = nba.next_best_action("cust-web-1", inbound=True, allowed_channels=["web"],
                             categorical_features={"segment": "loyal", "page": "product"},
                             numeric_features={"cart_value": 64.0}, timezone="Europe/Paris",
                             decision_time=START)
    print("Inbound (customer on the web site now):")
    print(f"  {_describe(d.action)}  p={d.probability:.3f}  event {d.event_id}")
    print(f"  {d.feasible_actions} feasible actions; excluded: "
          + "; ".join(f"{e.target} ({e.reason.value})" for e in d.exclusions[:4]) + "\n")


def _campaigns(nba: NBAClient, catalog: Catalog, people: list[dict],
               rng: np.random.Generator) -> None:
    print(f"Weekly outbound campaign over {len(people)} customers, {WEEKS} simulated weeks "
          "(NextBestActions stream, outcomes via ReportOutcome):")
    print("  (right offer = a discount to a promo-minded customer, the new collection to the others)")
    print(f"  {'week':>4} {'contacts':>8} {'right offer':>11} {'opens':>6} {'buys':>5} {'net value EUR':>13}"
          "  example decision")
    for week in range(WEEKS):
        when = START + dt.timedelta(weeks=week)
        requests = [DecisionRequest(
            customer_id=p["id"], categorical_features={"segment": p["segment"],
                                                       "motivation": "promo" if p["promo"] else "novelty"},
            numeric_features={"basket": p["basket"]}, consented_channels=tuple(p["channels"]),
            timezone="Europe/Paris", decision_time=when) for p in people]
        contacts = right = opens = buys = 0
        net = 0.0
        example = None
        for person, d in zip(people, nba.decide_many(requests, timeout=300)):
            events = _respond(person, d, rng)
            contacts += not d.action.no_contact
            right += _fits(person, d.action.offer_id)
            for n, (kind, value) in enumerate(events):
                nba.report_outcome(d.event_id, f"{kind}-{n}", kind, value,
                                   time=when + dt.timedelta(hours=2 + n))
                opens += kind == "OPENED"
                buys += kind == "CONVERTED"
            net += _net(catalog, d, events)
            if example is None and not d.action.no_contact:
                example = f"{person['id']}: {_describe(d.action)}"
        share = f"{100 * right / contacts:.0f} %" if contacts else "-"
        print(f"  {week + 1:>4} {contacts:>8} {share:>11} {opens:>6} {buys:>5} {net:>13.1f}  {example or '-'}")


def _net(catalog: Catalog, d, events) -> float:
    """Net value by the catalog's reward definition (the same one the engine learns from)."""
    a = d.action
    return net_reward(catalog.reward, [(OutcomeType(k), v) for k, v in events], not a.no_contact,
                      catalog.offers[a.offer_id].cost if not a.no_contact else 0.0,
                      catalog.channels[a.channel].contact_cost if not a.no_contact else 0.0)


def _bad_request_example(nba: NBAClient) -> None:
    try:
        nba.next_best_action("", consented_channels=["email"])
    except grpc.RpcError as err:
        print(f"\nBad request (empty customer_id) -> {err.code().name}: {err.details()}")


def _describe(a) -> str:
    if a.no_contact:
        return "no contact"
    return f"{a.offer_id} by {a.channel} at {a.send_at:%a %H:%M} UTC (slot {a.send_slot})"

