"""Where a policy loses value against the oracle's choice, decision by decision.

For every decision the simulator knows the exact expected net value of every feasible action
(the oracle's own figures, from hidden traits). A policy's expected regret on a decision is
``best - chosen`` (no contact is worth 0), split by what it got wrong:

    missed     it sent nothing where some contact was worth more than nothing (loss: best)
    needless   it sent a contact where nothing was best (loss: minus the contact's value)
    offer      both contacted; the best contact's offer beats the best with the chosen offer
    channel    the chosen offer on its best channel beats it on the chosen channel
    slot       the chosen offer and channel at their best send slot beat the chosen slot

so that ``missed + needless + offer + channel + slot = best - chosen`` on every decision. These
are myopic, expected values (what the oracle maximises): they leave out what a decision does to
later ones (fatigue, unsubscribes), which the realised net value of ``nba simulate`` includes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulators.policies import action_values
from simulators.runner import DecisionBatch

PARTS = ("missed", "needless", "offer", "channel", "slot")


@dataclass
class RegretBreakdown:
    """Accumulates, per opportunity (campaign), the expected value of the best and the chosen
    actions and the parts of the gap. Pass it as ``Simulation.run(..., observer=...)``."""

    rows: list[dict] = field(default_factory=list)

    def __call__(self, batch: DecisionBatch, chosen: np.ndarray) -> None:
        row = {"time": batch.when.isoformat(), "decisions": len(batch.customers), "contacts": 0,
               "best": 0.0, "chosen": 0.0, **dict.fromkeys(PARTS, 0.0)}
        for g in batch.groups:
            m = len(g.members)
            values = action_values(batch, g)
            k = chosen[g.members]
            rows = np.arange(m)
            v_chosen = values[rows, k]
            v_best = values.max(axis=1)
            sent = g.offer[k] >= 0
            best_sends = v_best > 0  # no contact (worth 0) is best otherwise
            # Best value with the chosen offer (any channel, slot) and with the chosen offer on
            # the chosen channel (any slot).
            same_offer = _best_where(values, g.offer, g.offer[k])
            pair = g.offer * (g.channel.max() + 2) + g.channel
            same_pair = _best_where(values, pair, pair[k])
            both = sent & best_sends
            row["contacts"] += int(sent.sum())
            row["best"] += float(v_best.sum())
            row["chosen"] += float(v_chosen.sum())
            row["missed"] += float(v_best[~sent].sum())
            row["needless"] += float(-v_chosen[sent & ~best_sends].sum())
            row["offer"] += float((v_best - same_offer)[both].sum())
            row["channel"] += float((same_offer - same_pair)[both].sum())
            row["slot"] += float((same_pair - v_chosen)[both].sum())
        self.rows.append(row)

    def totals(self) -> dict[str, float]:
        keys = ("decisions", "contacts", "best", "chosen", *PARTS)
        out = {key: float(sum(r[key] for r in self.rows)) for key in keys}
        out["regret"] = out["best"] - out["chosen"]
        return out

    def to_json(self) -> dict:
        return {"totals": self.totals(), "by_opportunity": self.rows}


def _best_where(values: np.ndarray, key: np.ndarray, chosen_key: np.ndarray) -> np.ndarray:
    """Per row r: the largest ``values[r, j]`` over actions j with ``key[j] == chosen_key[r]``."""
    out = np.full(len(values), -np.inf)
    for kv in np.unique(chosen_key):
        rows = chosen_key == kv
        out[rows] = values[np.ix_(rows, key == kv)].max(axis=1)
    return out


def table(breakdowns: dict[str, RegretBreakdown]) -> str:
    """One line per policy: expected value of the best and the chosen actions and the parts
    of the gap, in EUR and as a share of the gap."""
    header = ["policy", "best", "chosen", "share", "regret", *PARTS]
    lines = []
    for name, b in breakdowns.items():
        t = b.totals()
        gap = t["regret"]
        share = t["chosen"] / t["best"] if t["best"] else float("nan")
        cells = [name, f"{t['best']:,.0f}", f"{t['chosen']:,.0f}", f"{share:.1%}", f"{t['regret']:,.0f}"]
        cells += [f"{t[p]:,.0f}" + (f" ({t[p] / gap:.0%})" if gap > 0 else "") for p in PARTS]
        lines.append(cells)
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in lines])
