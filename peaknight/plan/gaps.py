"""Where a broadcast's floors may fall back to the baseline between two moments
(`policy.floorsFallBetweenMoments`), and where they must not.

By default a broadcast holds each moment's floor to the window's end (builders/autoscaling.py): the
pools' nodes are frozen for the window, so a replica removed mid-show would free no GPU and be cold
for the next moment. With the option, a gap between two moments lets the floors fall to the
baseline (and the pools' nodes go: karpenter.py opens the freeze there) when the fleet would stay
at the baseline for at least one cold lead: the floor lapses when the earlier moments' load is back
at the baseline, the autoscaler keeps the replicas one scale-down stabilisation window more, and
the next moment's pre-scale must start one cold lead (startup.longest_cold_lead, the lead the plan
computes for the warm gate) before it, on new nodes. A shorter gap would save little and start the
next moment cold for nothing. A surge that lands in a gap meets the baseline fleet: `simulate
--surge` shows what that costs in unmet tokens.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from peaknight.plan.figure import Figure
from peaknight.spec.forecast import moment_end
from peaknight.spec.stack import Event, Policy, Stage

# The HPA's longest scale-down stabilisation (autoscaling/v2 validation: at most an hour), which a
# broadcast's autoscalers use: replicas stay this long after a floor lapses.
MAX_STABILIZATION_SECONDS = 3600


@dataclass(frozen=True)
class Gap:
    """A span in which floors are at the baseline: from the earlier moments' load back at the
    baseline (`start`) to the next moment's cold pre-scale (`end`)."""

    after: str
    before: str
    start: dt.datetime
    end: dt.datetime


def min_gap(cold_lead: float) -> Figure:
    """How long a gap must be for the floors to fall in it."""
    seconds = MAX_STABILIZATION_SECONDS + cold_lead
    return Figure(seconds, f"scale-down stabilisation {MAX_STABILIZATION_SECONDS} s + a cold lead at the baseline "
                           f"{cold_lead:.0f} s = {seconds / 60:.0f} min")


def fall_gaps(event: Event, policy: Policy, cold_lead: float) -> tuple[Gap, ...]:
    """The gaps the floors fall in: none unless the policy asks, in a broadcast (a rehearsal's
    floors already last only while their moment's load is up)."""
    if not policy.floors_fall_between_moments or policy.stage is not Stage.BROADCAST:
        return ()
    moments = sorted(event.moments, key=lambda m: m.at)
    need = min_gap(cold_lead).value
    out = []
    for i, (m, n) in enumerate(zip(moments, moments[1:])):
        start = max(moment_end(e) for e in moments[:i + 1])
        end = n.at - dt.timedelta(seconds=cold_lead)
        if (end - start).total_seconds() >= need:
            out.append(Gap(m.name, n.name, start, end))
    return tuple(out)
