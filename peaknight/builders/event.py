"""The whole event as objects: every unit of every cluster, from the spec and its plan.

This is the one list both the offline render and the Pulumi program walk, so what review sees
and what `pulumi up` applies are the same objects.
"""
from __future__ import annotations

from dataclasses import dataclass

from peaknight.builders.objects import Unit
from peaknight.builders.parts import ClusterStackArgs
from peaknight.plan import capacity
from peaknight.plan.capacity import CapacityPlan
from peaknight.spec.stack import StackSpec

# One cluster's parts and units (builders/parts.py): the same value ClusterStack takes.
ClusterObjects = ClusterStackArgs


@dataclass(frozen=True)
class EventObjects:
    spec: StackSpec
    plan: CapacityPlan
    clusters: tuple[ClusterObjects, ...]


def build(spec: StackSpec, plan: CapacityPlan | None = None) -> EventObjects:
    """Plan (unless given) and build; raises capacity.EnvelopeError rather than emit a plan that
    does not fit."""
    plan = plan or capacity.plan(spec)
    return EventObjects(spec, plan, tuple(ClusterStackArgs(spec=spec, plan=plan.cluster(c.name), cluster=c)
                                          for c in spec.clusters))


def pool_units(spec: StackSpec, plan: CapacityPlan) -> list[tuple[str, Unit]]:
    """(cluster, unit) of every GPU pool: what `plan` lists of the provisioners' cloud node pools,
    without building the rest of the event."""
    return [(c.name, pool.unit) for c in spec.clusters
            for pool in ClusterStackArgs(spec=spec, plan=plan.cluster(c.name), cluster=c).parts.pools]
