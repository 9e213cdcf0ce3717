"""Feasible actions: what may be done for this customer now, and why the rest may not.

Order of the checks: caller narrowing, offer validity and eligibility, channel consent, then
per (channel, send slot) quiet hours (``feasible_actions``: needs no state); then marketing
pressure and budgets against the state store's snapshot (``apply_constraints``).
``no_contact`` is always feasible and always comes last.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engine.catalog import Catalog, Channel, SendSlot
from engine.constraints import ControlGroup, to_cents
from engine.domain import Action, DecisionRequest, Exclusion, ExclusionReason
from engine.state import Snapshot
from engine.validation import zone


@dataclass(frozen=True)
class FeasibleSet:
    actions: tuple[Action, ...]  # no_contact is the last one
    exclusions: tuple[Exclusion, ...]
    labels: tuple[str, ...] = ()  # the actions' labels, in order (filled by feasible_actions)


def send_time(slot: SendSlot, now_local: dt.datetime) -> dt.datetime:
    """The next time the slot is open: now if it is open now, else its next start (local)."""
    if slot.start_hour <= now_local.hour < slot.start_hour + slot.hours:
        return now_local
    start = now_local.replace(hour=slot.start_hour, minute=0, second=0, microsecond=0)
    if start <= now_local:
        start += dt.timedelta(days=1)
    # Re-localise so that a DST change between now and the slot gets the right offset.
    return start.replace(tzinfo=None).replace(tzinfo=now_local.tzinfo)


# What feasible_actions finds depends on the request's time zone, narrowing, consent, inbound
# flag and the features eligibility rules read, and on the local date and minute of now; the
# send time of a slot that is open now is now itself. So a result is kept per such key, with the
# open slot's actions built per call (``_Template``). Bounded: the oldest keys go first.
TEMPLATES_KEPT = 4096


@dataclass(frozen=True)
class _Template:
    actions: tuple[Action | None, ...]         # None: an action sent now (its slot is open)
    now_actions: tuple[tuple[int, str, str, str], ...]  # (index, offer, channel, slot) of those
    exclusions: tuple[Exclusion, ...]
    labels: tuple[str, ...]


def feasible_actions(request: DecisionRequest, catalog: Catalog, now: dt.datetime) -> FeasibleSet:
    """All feasible actions for ``request`` at ``now`` (aware UTC), with exclusion reasons."""
    tz_name = request.timezone or catalog.default_timezone
    now_local = now.astimezone(zone(tz_name))
    key = (tz_name, now_local.replace(second=0, microsecond=0), request.inbound,
           frozenset(request.consented_channels), frozenset(request.allowed_channels),
           frozenset(request.candidate_offers), _eligibility_key(request, catalog))
    templates = catalog.memo.setdefault("feasible", {})
    template = templates.get(key)
    if template is None:
        template = templates[key] = _template(request, catalog, now_local)
        if len(templates) > TEMPLATES_KEPT:
            del templates[next(iter(templates))]
    actions = list(template.actions)
    for i, offer, channel, slot in template.now_actions:
        actions[i] = Action(offer_id=offer, channel=channel, send_slot=slot, send_at=now)
    return FeasibleSet(tuple(actions), template.exclusions, template.labels)


def _eligibility_key(request: DecisionRequest, catalog: Catalog) -> tuple:
    names = catalog.eligibility_features
    if not names:
        return ()
    return tuple((request.numeric_features.get(n), request.categorical_features.get(n)) for n in names)


def _template(request: DecisionRequest, catalog: Catalog, now_local: dt.datetime) -> _Template:
    exclusions: list[Exclusion] = []

    offers = []
    narrowed_offers = set(request.candidate_offers)
    for offer in catalog.offers.values():
        if narrowed_offers and offer.id not in narrowed_offers:
            exclusions.append(Exclusion(f"offer:{offer.id}", ExclusionReason.CALLER_NARROWING,
                                        "not in candidate_offers"))
        elif not offer.is_valid_on(now_local.date()):
            exclusions.append(Exclusion(f"offer:{offer.id}", ExclusionReason.VALIDITY,
                                        f"valid {offer.valid_from or '…'} to {offer.valid_until or '…'}"))
        elif (why := offer.eligibility.reason_excluded(request.numeric_features,
                                                       request.categorical_features)):
            exclusions.append(Exclusion(f"offer:{offer.id}", ExclusionReason.ELIGIBILITY, why))
        else:
            offers.append(offer)

    channels: list[Channel] = []
    narrowed_channels = set(request.allowed_channels)
    consented = set(request.consented_channels)
    for channel in catalog.channels.values():
        if narrowed_channels and channel.id not in narrowed_channels:
            detail = "inbound on another channel" if request.inbound else "not in allowed_channels"
            exclusions.append(Exclusion(f"channel:{channel.id}", ExclusionReason.CALLER_NARROWING, detail))
        elif channel.inbound_only and not request.inbound:
            exclusions.append(Exclusion(f"channel:{channel.id}", ExclusionReason.INBOUND_ONLY,
                                        "serves inbound requests only"))
        elif channel.consent and channel.id not in consented:
            exclusions.append(Exclusion(f"channel:{channel.id}", ExclusionReason.CONSENT,
                                        "no opt-in in consented_channels"))
        else:
            channels.append(channel)

    if request.inbound:
        candidates = [(catalog.slot_at_hour(now_local.hour), now_local)]
    else:
        candidates = [(slot, send_time(slot, now_local)) for slot in catalog.send_slots]
    timings: list[tuple[Channel, SendSlot, dt.datetime | None]] = []
    for channel in channels:
        for slot, at_local in candidates:
            if channel.is_quiet_at(at_local.hour * 60 + at_local.minute):
                exclusions.append(Exclusion(f"channel:{channel.id}/slot:{slot.id}",
                                            ExclusionReason.QUIET_HOURS,
                                            f"{at_local:%H:%M} local is in quiet hours"))
            else:
                timings.append((channel, slot, None if at_local is now_local else at_local.astimezone(dt.timezone.utc)))

    actions: list[Action | None] = []
    now_actions, labels = [], []
    for offer in offers:
        for channel, slot, at in timings:
            if at is None:
                now_actions.append((len(actions), offer.id, channel.id, slot.id))
                actions.append(None)
            else:
                actions.append(Action(offer_id=offer.id, channel=channel.id, send_slot=slot.id, send_at=at))
            labels.append(f"{offer.id}/{channel.id}/{slot.id}")
    actions.append(Action.none())
    labels.append("no_contact")
    return _Template(tuple(actions), tuple(now_actions), tuple(exclusions), tuple(labels))


def apply_constraints(feasible: FeasibleSet, snap: Snapshot, catalog: Catalog, inbound: bool,
                      now: dt.datetime) -> tuple[tuple[Action, ...], tuple[Exclusion, ...]]:
    """Drop the actions a budget cannot cover or a pressure rule forbids, naming why.

    Pressure applies to outbound contacts (an inbound placement is not a message sent), checked
    at each action's own send time; a channel whose every slot is blocked is reported once.
    """
    constraints = catalog.constraints
    exclusions = list(feasible.exclusions)
    short: set[str] = set()
    for budget in constraints.budgets:
        usage = snap.budgets.get(budget.id)
        if usage is None:
            continue
        paced = budget.paced_limit_cents(now)
        for offer_id in budget.offers:
            cost = to_cents(catalog.offers[offer_id].cost)
            detail = usage.shortfall(cost)
            if detail is None and usage.spend_cents + cost > paced:
                detail = (f"budget {budget.id} paced: spend {usage.spend_cents / 100:.2f} EUR, "
                          f"the plan allows {paced / 100:.2f} by now")
            if detail is None:
                continue
            short.add(offer_id)
            exclusions.append(Exclusion(f"offer:{offer_id}", ExclusionReason.BUDGET, detail))
    pressure = constraints.pressure
    blocked: dict[tuple[str, dt.datetime], str | None] = {}
    if snap.customer.contacts and not inbound:
        for action in feasible.actions:
            if action.no_contact or catalog.channels[action.channel].inbound_only:
                continue
            where = (action.channel, action.send_at)
            if where not in blocked:
                blocked[where] = pressure.violation(snap.customer.contacts, action.channel, action.send_at)
    if short or any(blocked.values()):
        kept = [a for a in feasible.actions
                if a.no_contact or (a.offer_id not in short and not blocked.get((a.channel, a.send_at)))]
    else:
        kept = feasible.actions
    by_channel: dict[str, list[tuple[str, str]]] = {}
    slots_of: dict[str, int] = {}
    for (channel, at), why in blocked.items():
        slots_of[channel] = slots_of.get(channel, 0) + 1
        if why:
            by_channel.setdefault(channel, []).append((at, why))
    for channel, rows in by_channel.items():
        if len(rows) == slots_of[channel] and len({why for _, why in rows}) == 1:
            exclusions.append(Exclusion(f"channel:{channel}", ExclusionReason.PRESSURE, rows[0][1]))
            continue
        slot_at = {a.send_at: a.send_slot for a in feasible.actions if a.channel == channel}
        for at, why in rows:
            exclusions.append(Exclusion(f"channel:{channel}/slot:{slot_at[at]}", ExclusionReason.PRESSURE, why))
    return kept if kept is feasible.actions else tuple(kept), tuple(exclusions)


def control_choice(actions: tuple[Action, ...], control: ControlGroup) -> int:
    """Index of the control treatment among ``actions``: its fixed action when feasible (the
    earliest send time of that slot), else no contact (always last)."""
    if control.action is not None:
        offer, channel, slot = control.action
        for i, a in enumerate(actions):
            if (a.offer_id, a.channel, a.send_slot) == (offer, channel, slot):
                return i
    return len(actions) - 1
