"""The parts of a cluster, each as the typed arguments of the builder that makes it.

Each `*Args` holds exactly what its builder needs (a Scope, not the whole stack, wherever that is
enough) and `build()` returns the part's Unit. The offline render builds every part of every
cluster through here (event.py), and each public Pulumi component (pulumi/components.py) takes
the same Args and registers the Unit its `build()` returns: one builder per part, one path to it,
so the program and the render cannot drift. A Pulumi user composing components by hand builds
these Args directly (see examples/), by keyword: a field added later cannot shift the others.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol, Sequence

from peaknight.addons import gitops
from peaknight.builders import (admission, autoscaling, cluster_base, dashboards, images, inference, loadreplay,
                                 monitoring, network, routing, shards, steering, warmup)
from peaknight.builders.objects import Scope, Unit
from peaknight.edges import live
from peaknight.plan import gate
from peaknight.plan.capacity import ClusterPlan, EdgePlan, GatewayPlan, ModelPlan, PoolPlan
from peaknight.plan.weights import WeightsPlan
from peaknight.provisioners import registry as provisioners
from peaknight.spec.stack import Cluster, Edge, GpuPool, Model, Slo, StackSpec, Steering


class PartArgs(Protocol):
    """What every part's arguments answer: the Unit of Kubernetes objects (and cloud resources)."""

    @property
    def unit(self) -> Unit: ...


@dataclass(frozen=True, kw_only=True)
class GpuNodePoolArgs:
    """One GPU pool in one cluster, from the provisioner the cluster's config chose."""

    scope: Scope
    cluster: Cluster
    pool: GpuPool
    plan: PoolPlan

    @cached_property
    def unit(self) -> Unit:
        return provisioners.for_cluster(self.cluster).pool(self.scope, self.cluster, self.pool, self.plan)

    @property
    def refusals(self) -> list[str]:
        """The gate's lines about this pool: its provisioner cannot hold the plan."""
        return gate.pools(self.cluster, [self.plan])


@dataclass(frozen=True, kw_only=True)
class InferenceServiceArgs:
    """One model's servers in one cluster, sized by its plan: `plan` is its workload, or, for a
    disaggregated model, its decode groups, with `prefill` its prefill groups (and a router)."""

    scope: Scope
    cluster: Cluster
    model: Model
    plan: ModelPlan
    prefill: ModelPlan | None = None

    @property
    def workloads(self) -> tuple[ModelPlan, ...]:
        return (self.prefill, self.plan) if self.prefill else (self.plan,)

    @property
    def shards(self) -> int:
        """Endpoint-picker shards of a colocated model (plan/picker.py); 1 for a disaggregated one."""
        return shards.count(self.scope.policy, self.model, self.plan)

    @cached_property
    def whole(self) -> Unit:
        """The model's objects before its Deployment is split into shards: what its autoscaler is built on."""
        return images.mirrored(inference.build(self.scope, self.cluster, self.model, self.plan, self.prefill),
                               self.scope.registry_mirror)

    @cached_property
    def unit(self) -> Unit:
        return shards.split_service(self.whole, self.model, self.shards, int(self.plan.max_replicas.value))

    @property
    def refusals(self) -> list[str]:
        """The gate's lines about these workloads: short of their forecast."""
        return gate.workloads(self.workloads)


@dataclass(frozen=True, kw_only=True)
class AutoscalerArgs:
    """The autoscaler of one InferenceService (`target`): KEDA or an HPA, as its cluster says."""

    scope: Scope
    target: InferenceServiceArgs
    slo: Slo = Slo()  # the queue target: the queue a replica clears within slo.ttftP99Seconds

    @cached_property
    def unit(self) -> Unit:
        t = self.target
        return shards.split_autoscaler(autoscaling.build(self.scope, self.slo, t.cluster, t.model, t.workloads,
                                                         t.whole), t.model, t.shards)

    @property
    def refusals(self) -> list[str]:
        """Its service's: an autoscaler cannot scale past the quota that makes the service short."""
        return self.target.refusals


@dataclass(frozen=True, kw_only=True)
class InferenceRouterArgs:
    """One colocated model's prefix- and load-aware router in one cluster: its InferencePool (the
    pods inference.serving_pods names) and endpoint picker, sized from its plan. (A disaggregated
    model's router is SGLang's, part of its InferenceService.)"""

    spec: StackSpec
    cluster: Cluster
    model: Model
    plan: ModelPlan

    @cached_property
    def unit(self) -> Unit:
        return images.mirrored(routing.build(self.spec, self.model, self.plan), self.spec.registry_mirror)


@dataclass(frozen=True, kw_only=True)
class LiveEdgeArgs:
    """One live edge tier in one cluster."""

    scope: Scope
    cluster: Cluster
    edge: Edge
    plan: EdgePlan

    @cached_property
    def unit(self) -> Unit:
        return images.mirrored(live.build(self.scope, self.cluster, self.edge, self.plan), self.scope.registry_mirror)

    @property
    def refusals(self) -> list[str]:
        """The gate's lines about this edge: short of its egress."""
        return gate.edges([self.plan])


@dataclass(frozen=True, kw_only=True)
class ClusterBaseArgs:
    """What a cluster gets first: namespaces, PriorityClass, Gateway (and its data plane, sized
    from `gateway` when there is a plan; the controller's default otherwise)."""

    scope: Scope
    cluster: Cluster
    gateway: GatewayPlan | None = None

    @cached_property
    def unit(self) -> Unit:
        return cluster_base.build(self.scope, self.cluster, self.gateway)


@dataclass(frozen=True, kw_only=True)
class WarmGateArgs:
    """Image pre-pullers, weight sources with their staging, and node caches for the cluster's
    models; `weights` is the plan's distribution (ClusterPlan.weights). The node cache lives where
    the cluster's provisioner puts fast local disk."""

    scope: Scope
    cluster: Cluster
    models: Sequence[Model]
    weights: Sequence[WeightsPlan]

    @cached_property
    def unit(self) -> Unit:
        cache_path = provisioners.for_cluster(self.cluster).weights_cache_path()
        return images.mirrored(warmup.build(self.scope, self.cluster, self.models, self.weights, cache_path),
                               self.scope.registry_mirror)

    @property
    def refusals(self) -> list[str]:
        """The gate's lines about these weights: not warm before the window."""
        return gate.weights(self.weights)


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    """The cluster's rules and alerts, which quote the stack's SLO over every model and edge, and the
    dashboards that read them against the plan."""

    spec: StackSpec
    cluster: Cluster
    plan: ClusterPlan

    @cached_property
    def unit(self) -> Unit:
        rules = monitoring.build(self.spec, self.cluster, self.plan)
        return dataclasses.replace(rules, objects=(*rules.objects, dashboards.build(self.spec, self.cluster, self.plan)))


@dataclass(frozen=True, kw_only=True)
class GitOpsAddonsArgs:
    """With `peaknight:gitops`, the cluster's add-ons as Argo CD / Flux objects: derived, like the
    Helm releases otherwise, from the objects of the cluster's other parts."""

    spec: StackSpec
    plan: ClusterPlan
    cluster: Cluster
    others: tuple[PartArgs, ...]

    @cached_property
    def unit(self) -> Unit:
        return gitops.unit(self.spec, self.plan, self.cluster, [o for p in self.others for o in p.unit.objects])


@dataclass(frozen=True, kw_only=True)
class AdmissionArgs:
    """Each model route's gateway limits: the plan's per-replica figures over the gateway's pods."""

    spec: StackSpec
    cluster: Cluster
    plan: ClusterPlan

    @cached_property
    def unit(self) -> Unit:
        return admission.build(self.spec, self.cluster, self.plan)


@dataclass(frozen=True, kw_only=True)
class NetworkPoliciesArgs:
    """Default-deny in the kit's namespaces and the night's flows: they name every model and edge."""

    spec: StackSpec
    cluster: Cluster
    plan: ClusterPlan

    @cached_property
    def unit(self) -> Unit:
        return network.build(self.spec, self.cluster, self.plan)


@dataclass(frozen=True, kw_only=True)
class LoadReplayArgs:
    """Rehearsal only: the load generators that replay the night's curve against the cluster's models."""

    spec: StackSpec
    cluster: Cluster
    plan: ClusterPlan

    @cached_property
    def unit(self) -> Unit:
        return images.mirrored(loadreplay.build(self.spec, self.cluster, self.plan), self.spec.registry_mirror)


@dataclass(frozen=True, kw_only=True)
class SteeringArgs:
    """The cluster's part of the event's global names (builders/steering.py): cloud resources only."""

    spec: StackSpec
    steering: Steering
    cluster: Cluster

    @cached_property
    def unit(self) -> Unit:
        return steering.unit(self.spec, self.steering, self.cluster)


@dataclass(frozen=True, kw_only=True)
class ClusterParts:
    """Every part of one cluster, in the order they are declared."""

    base: ClusterBaseArgs
    pools: tuple[GpuNodePoolArgs, ...]
    services: tuple[tuple[InferenceServiceArgs, AutoscalerArgs], ...]
    routers: tuple[InferenceRouterArgs, ...]
    warm_gate: WarmGateArgs
    monitoring: MonitoringArgs
    edges: tuple[LiveEdgeArgs, ...]
    network: NetworkPoliciesArgs
    admission: AdmissionArgs
    load_replay: LoadReplayArgs | None = None
    steering: SteeringArgs | None = None
    gitops_addons: GitOpsAddonsArgs | None = None

    def kit(self) -> tuple[PartArgs, ...]:
        """The kit's own parts: everything but the GitOps add-ons."""
        return (self.base, *self.pools, *(p for pair in self.services for p in pair), *self.routers, self.warm_gate,
                self.monitoring, *self.edges, self.network, self.admission,
                *((self.load_replay,) if self.load_replay else ()), *((self.steering,) if self.steering else ()))

    def all(self) -> tuple[PartArgs, ...]:
        return (*self.kit(), *((self.gitops_addons,) if self.gitops_addons else ()))


def cluster_parts(spec: StackSpec, plan: ClusterPlan, cluster: Cluster) -> ClusterParts:
    """The parts of one cluster of the stack, each with its slice of the spec and the plan."""
    services = []
    for model in spec.models:
        *prefill, main = plan.phases(model.name)  # (decode, with its prefill) or the one workload
        service = InferenceServiceArgs(scope=spec, cluster=cluster, model=model, plan=main,
                                       prefill=prefill[0] if prefill else None)
        services.append((service, AutoscalerArgs(scope=spec, target=service, slo=spec.slo)))
    kit = ClusterParts(
        base=ClusterBaseArgs(scope=spec, cluster=cluster, gateway=plan.gateway),
        pools=tuple(GpuNodePoolArgs(scope=spec, cluster=cluster, pool=pool, plan=plan.pool(pool.name))
                    for pool in spec.gpu_pools),
        services=tuple(services),
        routers=tuple(InferenceRouterArgs(spec=spec, cluster=cluster, model=m, plan=plan.model(m.name))
                      for m in spec.models if not m.disaggregated),
        warm_gate=WarmGateArgs(scope=spec, cluster=cluster, models=spec.models, weights=plan.weights),
        monitoring=MonitoringArgs(spec=spec, cluster=cluster, plan=plan),
        edges=tuple(LiveEdgeArgs(scope=spec, cluster=cluster, edge=edge, plan=plan.edge(edge.name))
                    for edge in spec.edges),
        network=NetworkPoliciesArgs(spec=spec, cluster=cluster, plan=plan),
        admission=AdmissionArgs(spec=spec, cluster=cluster, plan=plan),
        load_replay=LoadReplayArgs(spec=spec, cluster=cluster, plan=plan) if loadreplay.enabled(spec) else None,
        steering=SteeringArgs(spec=spec, steering=spec.steering, cluster=cluster) if spec.steering else None,
    )
    if spec.gitops is None:
        return kit
    return dataclasses.replace(kit, gitops_addons=GitOpsAddonsArgs(spec=spec, plan=plan, cluster=cluster,
                                                                   others=kit.kit()))


@dataclass(frozen=True, kw_only=True)
class ClusterStackArgs:
    """One cluster of a stack: its parts, and what its add-ons are derived from."""

    spec: StackSpec
    plan: ClusterPlan
    cluster: Cluster

    @cached_property
    def parts(self) -> ClusterParts:
        return cluster_parts(self.spec, self.plan, self.cluster)

    @property
    def refusals(self) -> list[str]:
        """The gate's lines about the whole cluster (every part's)."""
        return gate.cluster(self.cluster, self.plan)

    @property
    def units(self) -> tuple[Unit, ...]:
        """Every part's Unit: what the render writes for the cluster and ClusterStack registers."""
        return tuple(part.unit for part in self.parts.all())
