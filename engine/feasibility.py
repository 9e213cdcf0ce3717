"""Feasible actions: what may be done for this customer now, and why the rest may not.

Order of the checks: caller narrowing, offer validity and eligibility, channel consent, then
per (channel, send slot) quiet hours. ``no_contact`` is always feasible and always comes last.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engine.catalog import Catalog, Channel, SendSlot
from engine.domain import Action, DecisionRequest, Exclusion, ExclusionReason
from engine.validation import zone


@dataclass(frozen=True)
class FeasibleSet:
    actions: tuple[Action, ...]  # no_contact is the last one
    exclusions: tuple[Exclusion, ...]


def send_time(slot: SendSlot, now_local: dt.datetime) -> dt.datetime:
    """The next time the slot is open: now if it is open now, else its next start (local)."""
    if slot.start_hour <= now_local.hour < slot.start_hour + slot.hours:
        return now_local
    start = now_local.replace(hour=slot.start_hour, minute=0, second=0, microsecond=0)
    if start <= now_local:
        start += dt.timedelta(days=1)
    # Re-localise so that a DST change between now and the slot gets the right offset.
    return start.replace(tzinfo=None).replace(tzinfo=now_local.tzinfo)


def feasible_actions(request: DecisionRequest, catalog: Catalog, now: dt.datetime) -> FeasibleSet:
    """All feasible actions for ``request`` at ``now`` (aware UTC), with exclusion reasons."""
    tz = zone(request.timezone or catalog.default_timezone)
    now_local = now.astimezone(tz)
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
    timings: list[tuple[Channel, SendSlot, dt.datetime]] = []
    for channel in channels:
        for slot, at_local in candidates:
            if channel.is_quiet_at(at_local.hour * 60 + at_local.minute):
                exclusions.append(Exclusion(f"channel:{channel.id}/slot:{slot.id}",
                                            ExclusionReason.QUIET_HOURS,
                                            f"{at_local:%H:%M} local is in quiet hours"))
            else:
                timings.append((channel, slot, at_local.astimezone(dt.timezone.utc)))

    actions = [
        Action(offer_id=offer.id, channel=channel.id, send_slot=slot.id, send_at=at)
        for offer in offers for (channel, slot, at) in timings
    ]
    actions.append(Action.none())
    return FeasibleSet(tuple(actions), tuple(exclusions))
