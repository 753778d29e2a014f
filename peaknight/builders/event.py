"""The whole event as objects: every unit of every cluster, from the spec and its plan.

This is the one list both the offline render and the Pulumi program walk, so what review sees
and what `pulumi up` applies are the same objects.
"""
from __future__ import annotations

from dataclasses import dataclass

from peaknight.builders import autoscaling
from peaknight.plan import capacity
from peaknight.builders import cluster_base
from peaknight.edges import live as edges
from peaknight.builders import inference
from peaknight.builders import monitoring
from peaknight.builders import network
from peaknight.provisioners import karpenter as nodepools
from peaknight.builders import warmup
from peaknight.plan.capacity import CapacityPlan
from peaknight.builders.objects import Unit
from peaknight.spec.stack import Cluster, StackSpec


@dataclass(frozen=True)
class ClusterObjects:
    cluster: Cluster
    units: tuple[Unit, ...]


@dataclass(frozen=True)
class EventObjects:
    spec: StackSpec
    plan: CapacityPlan
    clusters: tuple[ClusterObjects, ...]


def build(spec: StackSpec, plan: CapacityPlan | None = None) -> EventObjects:
    """Plan (unless given) and build; raises capacity.EnvelopeError rather than emit a plan that
    does not fit."""
    plan = plan or capacity.plan(spec)
    return EventObjects(spec, plan, tuple(ClusterObjects(c, _cluster_units(spec, plan, c)) for c in spec.clusters))


def _cluster_units(spec: StackSpec, plan: CapacityPlan, cluster: Cluster) -> tuple[Unit, ...]:
    cplan = plan.cluster(cluster.name)
    units = [cluster_base.build(spec, cluster)]
    units += [nodepools.build(spec, cluster, pool, cplan.pool(pool.name)) for pool in spec.gpu_pools]
    for model in spec.models:
        service = inference.build(spec, cluster, model, cplan.model(model.name))
        units += [service, autoscaling.build(spec, cluster, model, cplan.model(model.name), service)]
    units.append(warmup.build(spec, cluster))
    units.append(monitoring.build(spec, cluster, cplan))
    units += [edges.build(spec, cluster, edge, cplan.edge(edge.name)) for edge in spec.edges]
    units.append(network.build(spec, cluster, cplan))
    return tuple(units)
