"""What the night costs: GPU node-hours at on-demand prices per instance type and region.

Prices are USD per instance-hour: the stack's `peaknight:prices` (your contract's) above the
profile catalog's cited on-demand figures (data/profiles.yaml). A pool may launch any instance
type its cluster's region sells of its list, so a node-hour of the pool costs the dearest of them:
the bound a reviewer can hold the night to. A region with no price for one of those types has no
cost (None), never a guessed one: plan, simulate and diff then say "no price".

Only the GPU pools' nodes are counted: the edges', the gateway's and the system nodes are not.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from peaknight.plan.capacity import CapacityPlan, ModelPlan
from peaknight.spec import profiles
from peaknight.spec.stack import GpuPool, StackSpec

SECONDS_PER_HOUR = 3600.0


def instance_price(spec: StackSpec, instance_type: str, region: str) -> Optional[float]:
    """USD per instance-hour of `instance_type` in `region`: the stack's price, else the catalog's."""
    own = spec.prices.get(instance_type, {}).get(region)
    if own is not None:
        return own
    itype = profiles.load().instance_types.get(instance_type)
    return itype.prices.get(region) if itype else None


def launchable(spec: StackSpec, pool: GpuPool, region: str) -> list[str]:
    """The instance types of `pool` its cloud sells in `region`: what its nodes may be there."""
    table = profiles.load().instance_types
    clouds = dict.fromkeys(table[t].cloud for t in pool.instance_types if t in table)
    return [t for cloud in clouds for t in profiles.offered(pool.instance_types, cloud, region)]


def gpu_hour_price(spec: StackSpec, pool: str, region: str) -> Optional[float]:
    """USD per GPU-hour of `pool`'s nodes in `region`: its dearest instance type on sale there, over
    the GPUs a node brings; None where one of them has no price."""
    gpool = next(p for p in spec.gpu_pools if p.name == pool)
    table = profiles.load().instance_types
    prices = [(instance_price(spec, t, region), table[t].gpus) for t in launchable(spec, gpool, region)]
    if not prices or any(p is None for p, _ in prices):
        return None
    return max(p / gpus for p, gpus in prices if p is not None)


def unpriced(spec: StackSpec) -> list[tuple[str, str]]:
    """(instance type, region) a cluster's pool may launch and no price covers: what to set."""
    return sorted({(t, c.region) for c in spec.clusters for pool in spec.gpu_pools
                   for t in launchable(spec, pool, c.region) if instance_price(spec, t, c.region) is None})


def region_of(spec: StackSpec, cluster: str) -> str:
    return next(c.region for c in spec.clusters if c.name == cluster)


def window_hours(spec: StackSpec) -> float:
    window = spec.event.window
    return (window.end - window.start).total_seconds() / SECONDS_PER_HOUR


def planned(spec: StackSpec, model: ModelPlan) -> Optional[float]:
    """The plan's cost of one workload in one cluster: its planned nodes' GPUs held for the whole
    window (floors stay at peak level between moments; `simulate` replays what is actually held)."""
    price = gpu_hour_price(spec, model.pool, region_of(spec, model.cluster))
    if price is None:
        return None
    return model.nodes.value * model.gpus_per_node * window_hours(spec) * price


def total(costs: Iterable[Optional[float]]) -> Optional[float]:
    """The sum, or None when any part has no price: a partial sum would read as the whole."""
    found = list(costs)
    return None if any(c is None for c in found) else sum(c for c in found if c is not None)


@dataclass(frozen=True)
class PlanCost:
    """The plan's cost per (cluster, workload), and per workload over every cluster."""

    spec: StackSpec
    plan: CapacityPlan

    def of(self, model: ModelPlan) -> Optional[float]:
        return planned(self.spec, model)

    def per_workload(self) -> dict[str, Optional[float]]:
        names = dict.fromkeys(m.name for c in self.plan.clusters for m in c.models)
        return {name: total(self.of(m) for c in self.plan.clusters for m in c.models if m.name == name)
                for name in names}

    def night(self) -> Optional[float]:
        return total(self.per_workload().values())


def usd(x: Optional[float]) -> str:
    """A cost as the tables print it: whole dollars, or "no price"."""
    return "no price" if x is None else f"${x:,.0f}"
