"""Rolling updates that finish: how long replacing every replica of a workload takes, and the
surge that makes it finish within `policy.rolloutHours`.

A rolling update with maxUnavailable 0 replaces `surge` replicas per wave: the new ones start
(the first wave on nodes the pool's limit holds for it: cold; later waves on the nodes the
previous wave's old replicas freed: warm), and each old replica drains its answers before its
GPUs are free. So a wave lasts a start plus a drain, and the update ceil(replicas / surge) waves.
"""
from __future__ import annotations

import math

from peaknight.plan.figure import Figure
from peaknight.plan.startup import ready_seconds
from peaknight.spec.stack import Model, Policy

# The engines' preStop budget: a replica waits this long at most for its answers to finish.
DRAIN_SECONDS = 300


def surge(model: Model, replicas: int, policy: Policy) -> Figure:
    """The fewest replicas per wave that finish the update within the policy's hours."""
    budget = policy.rollout_hours * 3600
    first = ready_seconds(policy, model, warm=False).value + DRAIN_SECONDS
    wave = ready_seconds(policy, model, warm=True).value + DRAIN_SECONDS
    waves = max(1, 1 + math.floor((budget - first) / wave)) if budget >= first else 1
    value = max(1, math.ceil(replicas / waves)) if replicas else 1
    return Figure(value, f"ceil({replicas} replicas / {waves} waves) = {value}: {waves} waves fit "
                         f"{policy.rollout_hours:g} h (first {first:.0f} s cold start + drain, then {wave:.0f} s "
                         f"warm start + drain {DRAIN_SECONDS} s each)")


def duration(policy: Policy, model: Model, replicas: int, per_wave: int) -> Figure:
    """Seconds a full rolling update takes at `per_wave` replicas per wave."""
    first = ready_seconds(policy, model, warm=False).value + DRAIN_SECONDS
    wave = ready_seconds(policy, model, warm=True).value + DRAIN_SECONDS
    waves = max(1, math.ceil(replicas / per_wave))
    value = first + (waves - 1) * wave
    return Figure(value, f"{waves} waves of {per_wave}: {first:.0f} s + {waves - 1} x {wave:.0f} s = {value:.0f} s")
