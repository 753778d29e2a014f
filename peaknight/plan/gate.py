"""The one gate: what `peaknight plan` and `render`, the Pulumi program and every public component
refuse, in the same `SHORT:` lines.

A plan is refused when it cannot serve the night: a model or an edge short of its forecast (a
quota caps the model; the edge's pods or nodes cannot send its egress), a model whose weights
cannot be warm before the window, or a pool its cluster's provisioner cannot hold (existing groups
too small, a VKE node pool over 2,000 nodes). A plan over a cluster's Kubernetes envelope never
gets this far: capacity.plan raises EnvelopeError, which every caller reports as well.

Each part answers for its own plans (an InferenceService for its workloads, a GpuNodePool for its
pool, ...), a cluster for all of its parts, a stack for every cluster, so a component used alone
refuses exactly the lines `plan` prints about it.
"""
from __future__ import annotations

from typing import Iterable

from peaknight.plan import loss
from peaknight.plan.capacity import CapacityPlan, ClusterPlan, EdgePlan, ModelPlan, PoolPlan
from peaknight.plan.report import si
from peaknight.plan.units import RATE_UNIT, per_minute
from peaknight.plan.weights import WeightsPlan, shortfall
from peaknight.provisioners import registry as provisioners
from peaknight.spec.stack import Cluster, StackSpec

PREFIX = "SHORT: "


def workloads(plans: Iterable[ModelPlan]) -> list[str]:
    """A workload whose capacity (after losing the largest zone where the policy asks) is below its
    forecast: only a quota (maxReplicasPerCluster) caps the replicas the plan would give it."""
    return [f"{PREFIX}cluster '{m.cluster}': model '{m.name}' is short: capacity {si(per_minute(m.capacity_tps.value))} "
            f"{RATE_UNIT} for a forecast of {si(per_minute(m.demand_tps.value))} {RATE_UNIT} (replicas {m.replicas.why})"
            for m in plans if m.short]


def losses(plans: Iterable[ModelPlan]) -> list[str]:
    """A workload that cannot carry its share after the loss `policy.surviveLoss` asks the stack to
    survive (plan/loss.py): only a quota caps the replicas the plan would give it. A workload short
    of its own forecast already has its line."""
    return [f"{PREFIX}cluster '{m.cluster}': model '{m.name}' cannot absorb the loss: capacity "
            f"{si(per_minute(m.loss_capacity_tps.value))} {RATE_UNIT} for {si(per_minute(m.loss_demand_tps.value))} "
            f"{RATE_UNIT} (forecast {m.loss_demand_tps.why}; replicas {m.replicas.why})"
            for m in plans if m.loss_short and not m.short and m.loss_capacity_tps and m.loss_demand_tps]


def edges(plans: Iterable[EdgePlan]) -> list[str]:
    """An edge whose pods or nodes cannot send its forecast egress."""
    return [f"{PREFIX}cluster '{e.cluster}': edge '{e.edge}' is short: it sends "
            f"{min(e.capacity_gbps.value, e.node_gbps.value):,.0f} Gbps for a forecast of {e.egress_gbps.value:,.0f} "
            f"Gbps (pods: {e.capacity_gbps.why}; nodes: {e.node_gbps.why})" for e in plans if e.short]


def pools(cluster: Cluster, plans: Iterable[PoolPlan]) -> list[str]:
    """A pool the cluster's provisioner cannot hold (provisioners/*.py `problems`)."""
    provisioner = provisioners.for_cluster(cluster)
    return [f"{PREFIX}{line}" for pool in plans for line in provisioner.problems(cluster, pool)]


def weights(plans: Iterable[WeightsPlan]) -> list[str]:
    """A model whose weights cannot reach its nodes before the window (plan/weights.py)."""
    return [f"{PREFIX}{shortfall(w)}" for w in plans if w.late]


def cluster(cluster: Cluster, plan: ClusterPlan) -> list[str]:
    """Every refusal of one cluster's plan."""
    return [*workloads(plan.models), *losses(plan.models), *edges(plan.edges), *pools(cluster, plan.pools), *weights(plan.weights)]


def stack(spec: StackSpec, plan: CapacityPlan) -> list[str]:
    """Every refusal of the stack's plan: a loss it asks to survive that no cluster is left to
    absorb, then cluster by cluster."""
    return [*(f"{PREFIX}{line}" for line in loss.unabsorbable(spec)),
            *(line for c, p in zip(spec.clusters, plan.clusters) for line in cluster(c, p))]
