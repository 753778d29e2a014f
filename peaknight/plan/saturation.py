"""What saturates a replica before its token rate does: its queue and its KV cache.

The autoscaler scales on tokens/s (the plan's own unit), but a replica can be full before it
reaches its planned token rate: long prompts fill the KV cache, bursts of arrivals queue. These
two targets, per replica, are what the autoscaler's queue and KV-cache triggers and the router's
load-aware scorer aim at, derived from the plan and the stack's SLO (no constants of their own).
"""
from __future__ import annotations

import math

from peaknight.plan.figure import Figure
from peaknight.plan.capacity import ModelPlan
from peaknight.spec import profiles
from peaknight.spec.stack import Policy, Slo


def queue_target(policy: Policy, slo: Slo, plan: ModelPlan) -> Figure:
    """Waiting requests per replica the autoscaler aims for: the queue one replica clears within the
    TTFT objective. A waiting request starts when a running one ends, and a replica at target
    utilisation ends requests at its token rate / tokens per request; a longer queue waits past
    slo.ttftP99Seconds before its first token."""
    per_request = profiles.load().gateway.tokens_per_request
    util = policy.target_utilisation
    completions = plan.replica_tps.value * util / per_request
    value = max(1, math.floor(completions * slo.ttft_p99_seconds))
    return Figure(value, f"max(1, floor({plan.replica_tps.value:,.0f} tok/s per replica x util {util:g} / "
                         f"{per_request:,} tok per request (est.) = {completions:,.1f} requests/s completed x "
                         f"TTFT objective {slo.ttft_p99_seconds:g} s)) = {value} waiting requests per replica")


def rank_queue_target(policy: Policy, slo: Slo, plan: ModelPlan, ranks: int) -> Figure:
    """Waiting requests per scheduler rank the autoscaler aims for: the replica's queue target
    shared over the `ranks` schedulers that each queue their own requests (SGLang's DP ranks), as
    the trigger reads each server's mean over its ranks."""
    replica = queue_target(policy, slo, plan)
    if ranks == 1:
        return replica
    value = replica.value / ranks
    return Figure(value, f"{replica.value:g} per replica / {ranks} DP ranks, each queueing its own = {value:g} "
                         f"waiting requests per rank; replica: {replica.why}")


def kv_cache_target(policy: Policy) -> Figure:
    """KV-cache use (0-1) per replica the autoscaler aims for: the same share of the replica the plan
    counts on for throughput (policy.targetUtilisation). Above it the engine runs out of KV blocks
    before the token rate says so: it queues or preempts (long prompts, long answers)."""
    util = policy.target_utilisation
    return Figure(util, f"policy.targetUtilisation {util:g}: the share of a replica the plan uses, applied to "
                        "the KV cache that bounds its concurrent requests")
