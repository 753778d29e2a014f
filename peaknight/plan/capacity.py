"""Capacity planner: from each model's forecast to replicas, GPUs and nodes per cluster.

Pure functions over the spec (no Pulumi), so the CLI, the manifests and the simulator share one
answer. Every number is a `Figure` that carries how it was derived, because the SREs reading the
plan on the night must be able to check it by hand. Rounding always goes up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from peaknight.provisioners.settings import PROVISIONER_CLOUD
from peaknight.spec import profiles
from peaknight.spec.stack import Cluster, Edge, GpuPool, Model, StackSpec

# Pods every GPU node runs besides the model: device plugin, DCGM exporter, node exporter, CNI,
# kube-proxy, the image pre-puller. Counted against the 110 pods-per-node envelope.
DAEMON_PODS_PER_NODE = 6


@dataclass(frozen=True)
class Figure:
    """A number in the plan and the arithmetic that produced it."""

    value: float
    why: str


@dataclass(frozen=True)
class ModelPlan:
    cluster: str
    model: str
    pool: str
    gpus_per_replica: int
    nodes_per_replica: int            # > 1: the replica spans nodes (a LeaderWorkerSet group)
    replica_tps: Figure               # tokens/s one replica serves at the profile's latency target
    demand_tps: Figure                # this cluster's share of the forecast peak
    replicas: Figure                  # at peak, with headroom and zone loss
    floor_replicas: Figure            # between moments inside the window
    moment_replicas: tuple[tuple[str, Figure], ...]
    gpus: Figure
    nodes: Figure
    capacity_tps: Figure              # at target utilisation, one zone lost if the policy says so
    short: bool

    @property
    def name(self) -> str:
        return self.model

    @property
    def headroom(self) -> float:
        return self.capacity_tps.value / self.demand_tps.value

    @property
    def pods(self) -> int:
        return int(self.replicas.value) * self.nodes_per_replica

    def replicas_for(self, moment: str) -> int:
        return int(dict(self.moment_replicas)[moment].value)


@dataclass(frozen=True)
class PoolPlan:
    cluster: str
    pool: str
    gpus_per_node: int
    nodes: Figure
    gpu_limit: Figure                 # the pool's GPU limit (provisioner)
    zone_nodes: tuple[int, ...] = ()  # peak nodes per zone, in the cluster's zone order
    zone_floor_nodes: tuple[int, ...] = ()  # nodes per zone holding the baseline floor
    surge_nodes: int = 0              # one more replica of each model, for a rolling update
    disk_gib: Figure = Figure(0, "")  # node-local disk for images and weights


@dataclass(frozen=True)
class EdgePlan:
    """One live edge tier in one cluster. Lives here, not in a module of its own, because the
    cluster plan holds it and the one envelope check counts its pods."""

    cluster: str
    edge: str
    viewers: Figure                   # this cluster's share of the forecast peak
    mix_kbps: Figure                  # mean bitrate per viewer over the rendition mix
    egress_gbps: Figure
    pods: Figure                      # at peak, with headroom and zone loss (the HPA's floor in broadcast)
    max_pods: Figure                  # the HPA's ceiling: what the envelope must hold
    viewers_per_pod: Figure           # at target utilisation: the HPA's per-pod connection target
    capacity_gbps: Figure             # at target utilisation, one zone lost if the policy says so
    short: bool

    @property
    def name(self) -> str:
        return self.edge


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    models: tuple[ModelPlan, ...]
    pools: tuple[PoolPlan, ...]
    edges: tuple[EdgePlan, ...] = ()

    @property
    def nodes(self) -> int:
        return sum(int(p.nodes.value) for p in self.pools)

    @property
    def edge_pods(self) -> int:
        return sum(int(e.max_pods.value) for e in self.edges)

    @property
    def pods(self) -> int:
        return sum(m.pods for m in self.models) + self.nodes * DAEMON_PODS_PER_NODE + self.edge_pods

    def model(self, name: str) -> ModelPlan:
        return next(m for m in self.models if m.model == name)

    def pool(self, name: str) -> PoolPlan:
        return next(p for p in self.pools if p.pool == name)

    def edge(self, name: str) -> EdgePlan:
        return next(e for e in self.edges if e.edge == name)


@dataclass(frozen=True)
class CapacityPlan:
    clusters: tuple[ClusterPlan, ...]
    warnings: tuple[str, ...]
    survives_zone_loss: bool

    def cluster(self, name: str) -> ClusterPlan:
        return next(c for c in self.clusters if c.name == name)

    @property
    def short(self) -> tuple[ModelPlan | EdgePlan, ...]:
        """Every model and edge plan that cannot serve its forecast (a quota capped it)."""
        plans: list[ModelPlan | EdgePlan] = [m for c in self.clusters for m in c.models]
        plans += [e for c in self.clusters for e in c.edges]
        return tuple(p for p in plans if p.short)


class EnvelopeError(Exception):
    """The plan does not fit a cluster's Kubernetes envelope: split it, never emit it."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def replica_tps(model: Model, pool: GpuPool) -> Figure:
    """Mixed tokens/s of one replica, on the slowest GPU the pool may be given."""
    table = profiles.load()
    rows = [table.throughput[(model.model_class, gpu)] for gpu in pool.gpus]
    f = model.input_share

    def mixed(row: profiles.Throughput) -> float:
        return 1 / (f / row.prefill_tps + (1 - f) / row.decode_tps)

    row = min(rows, key=mixed)
    value = mixed(row)
    return Figure(value, f"1/({f:g}/{row.prefill_tps:g} + {1 - f:g}/{row.decode_tps:g}) = {value:,.0f} tok/s "
                         f"per {row.gpus_per_replica}x{row.gpu} replica ({row.source})")


def gpus_per_node(pool: GpuPool) -> int:
    """GPUs one node of the pool brings (config checks every instance type of a pool agrees)."""
    return profiles.load().instance_types[pool.instance_types[0]].gpus


def replicas_for(demand: float, per_replica: float, spec: StackSpec, zones: int, label: str) -> Figure:
    """Smallest replica count serving `demand` at target utilisation and headroom, even with the
    largest zone (ceil(R/zones) replicas under zone spread) lost when the policy asks for it."""
    policy = spec.policy
    if demand <= 0:
        return Figure(0, f"{label}: no demand")
    serving = math.ceil(demand * policy.headroom / (per_replica * policy.target_utilisation) - 1e-9)
    why = (f"{label}: ceil({demand:,.0f} x headroom {policy.headroom:g} / ({per_replica:,.0f} x util "
           f"{policy.target_utilisation:g})) = {serving}")
    if not policy.survive_zone_loss:
        return Figure(serving, why)
    total = serving
    while total - math.ceil(total / zones) < serving:
        total += 1
    return Figure(total, f"{why}; +{total - serving} so that {serving} survive losing 1 of {zones} zones")


def zone_split(replicas: int, zones: int) -> list[int]:
    """Replicas per zone under a maxSkew-1 topology spread: as even as possible."""
    return [replicas // zones + (1 if z < replicas % zones else 0) for z in range(zones)]


def plan(spec: StackSpec) -> CapacityPlan:
    """The whole plan; raises EnvelopeError when any cluster cannot hold it."""
    pools = {p.name: p for p in spec.gpu_pools}
    clusters = tuple(_plan_cluster(spec, c, pools) for c in spec.clusters)
    _check_envelope(spec, clusters)
    return CapacityPlan(clusters, tuple(_warnings(spec)), spec.policy.survive_zone_loss)


def _plan_cluster(spec: StackSpec, cluster: Cluster, pools: dict[str, GpuPool]) -> ClusterPlan:
    table = profiles.load()
    models = []
    pool_nodes: dict[str, list[tuple[int, str]]] = {name: [] for name in pools}
    pool_zones: dict[str, list[list[int]]] = {name: [] for name in pools}
    pool_floor: dict[str, list[list[int]]] = {name: [] for name in pools}
    pool_surge: dict[str, int] = {name: 0 for name in pools}
    zones = len(cluster.zones)
    for model in spec.models:
        pool = pools[model.pool]
        gpn = gpus_per_node(pool)
        row = table.throughput[(model.model_class, pool.gpus[0])]
        gpr = row.gpus_per_replica
        per_node = max(1, gpn // gpr)
        nodes_per_replica = math.ceil(gpr / gpn)
        per_replica = replica_tps(model, pool)
        peak = model.peak_tokens_per_minute / 60 * spec.scale * cluster.share
        demand = Figure(peak, f"{model.peak_tokens_per_minute:,.0f} tok/min / 60 x scale {spec.scale:g} "
                              f"x share {cluster.share:g} = {peak:,.0f} tok/s")

        def sized(load: float, label: str) -> Figure:
            """Replicas for `load` x peak, never above the model's quota (the plan then reports it short)."""
            fig = replicas_for(peak * load, per_replica.value, spec, zones, label)
            quota = model.max_replicas_per_cluster
            if quota is not None and fig.value > quota:
                return Figure(quota, f"{fig.why}; capped at maxReplicasPerCluster {quota}")
            return fig

        replicas = sized(1.0, "peak")
        floor = sized(spec.event.baseline, f"baseline {spec.event.baseline:g} of peak")
        moments = tuple((m.name, sized(m.load, f"{m.name} at {m.load:g} of peak")) for m in spec.event.moments)
        r = int(replicas.value)
        if nodes_per_replica > 1:
            n = r * nodes_per_replica
            node_why = f"{r} replicas x {nodes_per_replica} nodes each ({gpr} GPUs over {gpn}-GPU nodes)"
        else:
            split = zone_split(r, zones)
            n = sum(math.ceil(z / per_node) for z in split)
            node_why = f"per zone ceil({'/'.join(map(str, split))} / {per_node} replicas per node)"
        cap_replicas = r - (math.ceil(r / zones) if spec.policy.survive_zone_loss else 0)
        capacity = cap_replicas * per_replica.value * spec.policy.target_utilisation
        models.append(ModelPlan(
            cluster=cluster.name, model=model.name, pool=pool.name, gpus_per_replica=gpr,
            nodes_per_replica=nodes_per_replica, replica_tps=per_replica, demand_tps=demand,
            replicas=replicas, floor_replicas=floor, moment_replicas=moments,
            gpus=Figure(r * gpr, f"{r} replicas x {gpr} GPUs"),
            nodes=Figure(n, f"{n} = {node_why}"),
            capacity_tps=Figure(capacity, f"{cap_replicas} replicas{' (largest zone lost)' if spec.policy.survive_zone_loss else ''}"
                                          f" x {per_replica.value:,.0f} x util {spec.policy.target_utilisation:g}"),
            short=capacity < peak * (1 - 1e-9),
        ))
        pool_nodes[pool.name].append((n, model.name))
        pool_zones[pool.name].append(_zone_nodes(r, zones, per_node, nodes_per_replica))
        pool_floor[pool.name].append(_zone_nodes(int(floor.value), zones, per_node, nodes_per_replica))
        pool_surge[pool.name] += nodes_per_replica
    plans = []
    for name, pool in pools.items():
        gpn = gpus_per_node(pool)
        nodes = sum(n for n, _ in pool_nodes[name])
        limit = (nodes + pool_surge[name]) * gpn
        plans.append(PoolPlan(cluster.name, name, gpn,
                              Figure(nodes, " + ".join(f"{n} ({m})" for n, m in pool_nodes[name]) or "no models"),
                              Figure(limit, f"({nodes} planned + {pool_surge[name]} surge nodes for a rolling "
                                            f"update) x {gpn} GPUs"),
                              zone_nodes=_zone_sum(pool_zones[name], zones),
                              zone_floor_nodes=_zone_sum(pool_floor[name], zones),
                              surge_nodes=pool_surge[name], disk_gib=disk_gib(spec, name)))
    edges = tuple(plan_edge(spec, cluster, e) for e in spec.edges)
    return ClusterPlan(cluster.name, tuple(models), tuple(plans), edges)


def _zone_nodes(replicas: int, zones: int, per_node: int, nodes_per_replica: int) -> list[int]:
    """Nodes per zone for `replicas` spread evenly (a multi-node replica is whole nodes in one zone)."""
    return [z * nodes_per_replica if nodes_per_replica > 1 else math.ceil(z / per_node)
            for z in zone_split(replicas, zones)]


def _zone_sum(per_model: list[list[int]], zones: int) -> tuple[int, ...]:
    return tuple(sum(m[z] for m in per_model) for z in range(zones))


# Local disk is bought in these steps (and the cloud APIs take whole GiB).
DISK_STEP_GIB = 100


def disk_gib(spec: StackSpec, pool: str) -> Figure:
    """A GPU node's local disk: each model's image twice (running and next, while a rollout pulls)
    and extracted once more, plus room for every model's weights on local disk. The replicas read
    weights from the model cache volume today; the room is for staging them next to the GPUs
    (a local cache) without resizing nodes that are already serving."""
    table = profiles.load()
    classes = [table.model_classes[m.model_class] for m in spec.models if m.pool == pool]
    if not classes:
        return Figure(DISK_STEP_GIB, f"no models: {DISK_STEP_GIB} GiB")
    images = sum(3 * c.image_gib for c in classes)
    weights = sum(c.weights_gib for c in classes)
    size = math.ceil((images + weights) / DISK_STEP_GIB) * DISK_STEP_GIB
    return Figure(size, f"images 3 x ({' + '.join(f'{c.image_gib:g}' for c in classes)}) GiB + weights "
                        f"({' + '.join(f'{c.weights_gib:g}' for c in classes)}) GiB = {images + weights:g} GiB, "
                        f"rounded up to {DISK_STEP_GIB} GiB steps: {size} GiB")


def plan_edge(spec: StackSpec, cluster: Cluster, edge: Edge) -> EdgePlan:
    """Edge pods from egress: viewers x mean bitrate over the pod's egress, sized like a model's
    replicas (headroom, utilisation, zone loss) so both answer the same question the same way."""
    zones, util = len(cluster.zones), spec.policy.target_utilisation
    viewers = edge.peak_viewers * spec.scale * cluster.share
    mix = sum(r.bitrate_kbps * r.share for r in edge.renditions)
    egress = viewers * mix / 1e6
    pods = replicas_for(egress, edge.pod_egress_gbps, spec, zones, f"Gbps over pods of {edge.pod_egress_gbps:g} Gbps")
    p = int(pods.value)
    ceiling = max(p, math.ceil(p * edge.burst - 1e-9))
    serving = p - (max(zone_split(p, zones)) if spec.policy.survive_zone_loss else 0)
    capacity = serving * edge.pod_egress_gbps * util
    per_pod = edge.pod_egress_gbps * 1e6 * util / mix
    return EdgePlan(
        cluster=cluster.name, edge=edge.name,
        viewers=Figure(viewers, f"{edge.peak_viewers:,} viewers x scale {spec.scale:g} x share {cluster.share:g} "
                                f"= {viewers:,.0f}"),
        mix_kbps=Figure(mix, " + ".join(f"{r.share:g} x {r.bitrate_kbps:,}" for r in edge.renditions)
                        + f" = {mix:,.0f} kbps"),
        egress_gbps=Figure(egress, f"{viewers:,.0f} x {mix:,.0f} kbps = {egress:,.1f} Gbps"),
        pods=pods,
        max_pods=Figure(ceiling, f"ceil({p} x burst {edge.burst:g}) = {ceiling}"),
        viewers_per_pod=Figure(per_pod, f"{edge.pod_egress_gbps:g} Gbps x util {util:g} / {mix:,.0f} kbps "
                                        f"= {per_pod:,.0f}"),
        capacity_gbps=Figure(capacity, f"{serving} pods{' (largest zone lost)' if spec.policy.survive_zone_loss else ''}"
                                       f" x {edge.pod_egress_gbps:g} Gbps x util {util:g} = {capacity:,.1f} Gbps"),
        short=capacity < egress * (1 - 1e-9),
    )


def _check_envelope(spec: StackSpec, clusters: Iterable[ClusterPlan]) -> None:
    problems = []
    pools = {p.name: p for p in spec.gpu_pools}
    for cluster, plan_ in zip(spec.clusters, clusters):
        if plan_.nodes > cluster.max_nodes:
            problems.append(f"cluster '{cluster.name}': {plan_.nodes:,} nodes planned, envelope {cluster.max_nodes:,}: "
                            f"over by {plan_.nodes - cluster.max_nodes:,} (add a cluster or lower its share)")
        if plan_.pods > cluster.max_pods:
            problems.append(f"cluster '{cluster.name}': {plan_.pods:,} pods planned ({plan_.edge_pods:,} of them live "
                            f"edge pods at their HPA ceiling), envelope {cluster.max_pods:,}: "
                            f"over by {plan_.pods - cluster.max_pods:,}")
        for model in plan_.models:
            per_node = max(1, plan_.pool(model.pool).gpus_per_node // model.gpus_per_replica)
            if per_node + DAEMON_PODS_PER_NODE > cluster.max_pods_per_node:
                problems.append(f"cluster '{cluster.name}': model '{model.model}' packs {per_node} pods per node "
                                f"+ {DAEMON_PODS_PER_NODE} daemons, envelope {cluster.max_pods_per_node}")
        for pool in plan_.pools:
            cap = pools[pool.pool].max_gpus_per_cluster
            if cap is not None and pool.gpu_limit.value > cap:
                problems.append(f"cluster '{cluster.name}': pool '{pool.pool}' needs {int(pool.gpu_limit.value):,} GPUs, "
                                f"its maxGpusPerCluster is {cap:,}: over by {int(pool.gpu_limit.value) - cap:,}")
    if problems:
        raise EnvelopeError(problems)


def _warnings(spec: StackSpec) -> Iterable[str]:
    """A pool that one instance type alone can serve where a cluster is: one SKU out of stock
    there leaves it without capacity. Counted per region, on the types its cloud sells there."""
    for pool in spec.gpu_pools:
        where: dict[tuple[str, str], list[str]] = {}
        for cluster in spec.clusters:
            cloud = PROVISIONER_CLOUD[cluster.provisioner.kind]
            if cloud is not None:
                where.setdefault((cloud, cluster.region), []).append(cluster.name)
        for (cloud, region), names in where.items():
            types = profiles.offered(pool.instance_types, cloud, region)
            if len(types) == 1:
                clusters = ", ".join(names) if len(names) <= 3 else f"{len(names)} clusters"
                yield (f"pool '{pool.name}' can be satisfied by a single instance type ({types[0]}) in {region} "
                       f"({clusters}): one SKU running out leaves it without capacity")
