"""One meaning per number: the unit fleet token rates are shown in, and what "capacity" means.

The plan, its report, the simulated night's plot and `peaknight diff` all show token rates per
minute (the night's headline unit: 63.3 B tokens/min) and use these words for what they show, so
a capacity figure means the same on every page. Per-replica rates stay in tokens/s, the unit of
the published profiles they come from, and are labelled so where they appear.
"""
from __future__ import annotations

RATE_UNIT = "tok/min"
SECONDS_PER_MINUTE = 60


def per_minute(tokens_per_second: float) -> float:
    return tokens_per_second * SECONDS_PER_MINUTE


def capacity_meaning(survives_zone_loss: bool) -> str:
    """What the plan's capacity is: provisioned replicas at target utilisation (after losing each
    cluster's largest zone, where the policy asks for that)."""
    lost = " with each cluster's largest zone lost" if survives_zone_loss else ""
    return f"capacity = planned replicas{lost} x per-replica throughput x target utilisation"


# The simulator's own series: what the replicas that are ready at each moment can serve, at their
# full profiled rate; above the plan's capacity when every zone is up and utilisation has slack.
READY_MEANING = "ready throughput = replicas ready at that moment x full per-replica throughput"
