"""The night's forecast curve: demand at any local time, as a fraction of each model's peak.

One function so the simulator, the planner and monitoring read the same curve. Between moments
demand sits at the event's baseline; a moment rises linearly from `at` over `rampMinutes` to its
load, holds it for `durationMinutes`, then falls back over the same ramp. Outside the window the
kit serves nothing it planned for, so the curve is zero there.
"""
from __future__ import annotations

import datetime as dt

from peaknight.spec.stack import Event, Moment


def moment_end(moment: Moment) -> dt.datetime:
    """When a moment's load is back to baseline: rise, hold, fall."""
    return moment.at + dt.timedelta(minutes=2 * moment.ramp_minutes + moment.duration_minutes)


def _bump(moment: Moment, when: dt.datetime) -> float:
    ramp = moment.ramp_minutes * 60.0
    since = (when - moment.at).total_seconds()
    hold_end = ramp + moment.duration_minutes * 60.0
    if since < 0 or since >= hold_end + ramp:
        return 0.0
    if since < ramp:
        return moment.load * since / ramp
    if since < hold_end:
        return moment.load
    return moment.load * (1 - (since - hold_end) / ramp)


def load_at(event: Event, when: dt.datetime) -> float:
    """Demand at local time `when` as a fraction of peak: the highest of baseline and moments."""
    if not event.window.start <= when < event.window.end:
        return 0.0
    return max(event.baseline, *(_bump(m, when) for m in event.moments))
