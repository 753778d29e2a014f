"""Capacity planner: from each model's forecast to replicas, GPUs and nodes per cluster.

Pure functions over the spec (no Pulumi), so the CLI, the manifests and the simulator share one
answer. Every number is a `Figure` that carries how it was derived, because the SREs reading the
plan on the night must be able to check it by hand. Rounding always goes up.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable

from peaknight.engines.base import Topology
from peaknight.plan import fabric, gaps, loss, memory, prefix_hits, rollout, startup, streams, weights
from peaknight.plan.fabric import cluster_types
from peaknight.plan.figure import Figure
from peaknight.plan.gaps import Gap
from peaknight.plan.weights import WeightsPlan
from peaknight.provisioners.settings import PROVISIONER_CLOUD, VolcengineVkeSettings
from peaknight.provisioners import vke_rdma
from peaknight.spec import profiles
from peaknight.spec.stack import Cluster, Edge, GpuPool, Model, StackSpec

# Pods every GPU node runs besides the model: device plugin, DCGM exporter, node exporter, CNI,
# kube-proxy, the image pre-puller, the weight-cache filler. Counted against the 110 pods-per-node envelope.
DAEMON_PODS_PER_NODE = 7



@dataclass(frozen=True)
class ModelPlan:
    cluster: str
    model: str
    pool: str
    gpus_per_replica: int
    gpus_per_node: int
    nodes_per_replica: int            # > 1: the replica spans nodes (a LeaderWorkerSet group)
    replica_tps: Figure               # tokens/s one replica serves at the profile's latency target
    demand_tps: Figure                # this cluster's share of the forecast peak
    replicas: Figure                  # at peak, with headroom and zone loss
    max_replicas: Figure              # the autoscaler's ceiling: peak x the model's burst
    longest_answer: Figure            # seconds the longest answer may take: the route's timeout
    warmup: Figure                    # seconds from creating a replica on a new node to it serving
    surge: Figure                     # replicas (groups) per rolling-update wave
    rollout: Figure                   # seconds a full rolling update takes at that surge
    floor_replicas: Figure            # between moments inside the window
    moment_replicas: tuple[tuple[str, Figure], ...]
    gpus: Figure
    nodes: Figure
    capacity_tps: Figure              # at target utilisation, one zone lost if the policy says so
    short: bool
    # The pool's high-speed network, for a replica that spans nodes; None for one that does not.
    interconnect: profiles.Interconnect | None = None
    # The fabric between the pool's nodes in this cluster, as its instance types record it (fabric.of):
    # what the row's figures are priced on and what its serving recipe must have run on.
    node_fabric: str = ""
    # Disaggregated models plan each phase as its own workload: "prefill" or "decode" ("" colocated).
    phase: str = ""
    serving: profiles.ServingTopology | None = None  # the throughput row's topology: what is rendered
    router_pods: Figure | None = None  # decode plan of a disaggregated model: its router's pods
    # With policy.surviveLoss: this cluster's forecast after the worst loss it absorbs, and what all
    # its replicas serve then at policy.lossUtilisation (plan/loss.py); None without the option.
    loss_demand_tps: Figure | None = None
    loss_capacity_tps: Figure | None = None
    # What the rendered fabric did to the row's figures, and whether a source ran it there.
    on_fabric: fabric.Applied | None = None
    gaps: tuple[Gap, ...] = ()        # where its floors fall to the baseline between moments (plan/gaps.py)
    # The prefix-cache hit rate prefill is planned at: what the routing can deliver (plan/prefix_hits.py).
    prefix_hit_rate: Figure | None = None

    @property
    def loss_short(self) -> bool:
        """Cannot absorb the loss the policy asks it to survive (a quota capped its replicas)."""
        return (self.loss_demand_tps is not None and self.loss_capacity_tps is not None
                and self.loss_capacity_tps.value < self.loss_demand_tps.value * (1 - 1e-9))

    @property
    def name(self) -> str:
        """The workload's name: the model's, with its phase when disaggregated."""
        return f"{self.model}-{self.phase}" if self.phase else self.model

    @property
    def headroom(self) -> float:
        return self.capacity_tps.value / self.demand_tps.value

    @property
    def pods(self) -> int:
        return int(self.replicas.value) * self.nodes_per_replica

    @property
    def topology(self) -> Topology:
        """How one replica sits on the pool's nodes: what its engine's command line is built for
        (its transport flags are its serving recipe's: builders/inference.py)."""
        return Topology(self.gpus_per_replica, self.gpus_per_node, self.phase, self.serving)

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
    surge_nodes: int = 0              # room above the plan: the larger of burst and a rollout's surge
    disk_gib: Figure = Figure(0, "")  # node-local disk for images and weights
    # the same, split for a provisioner that gives each its own disk: the runtime's images, the node cache's weights
    image_disk_gib: Figure = Figure(0, "")
    cache_disk_gib: Figure = Figure(0, "")
    groups: tuple[str, ...] = ()      # its workloads whose replica spans nodes (a LeaderWorkerSet group)
    gaps: tuple[Gap, ...] = ()        # where its nodes may go between moments (plan/gaps.py)

    @property
    def zone_surge_nodes(self) -> int:
        """The room above the plan in one zone: pods spread evenly, so ceil(surge / zones)."""
        return math.ceil(self.surge_nodes / len(self.zone_nodes)) if self.zone_nodes else self.surge_nodes


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
    shield_fetch_gbps: Figure         # what the edge pods at their ceiling fetch from the shields
    shields: Figure                   # shield pods between this cluster's edges and the origins
    origin_gbps: Figure               # what this cluster's shields fetch from the origin
    origin_rps: Figure                # requests this cluster's shields send the origin
    pods_per_node: Figure             # edge pods one node of the edge pool holds (NIC, CPU, memory)
    nodes: Figure                     # the edge pool: edge pods at their ceiling and the shields
    node_gbps: Figure                 # what those nodes may send to the internet, largest zone lost
    lb_targets_per_zone: int          # the viewers' load balancer's targets (pods) in the fullest zone

    @property
    def name(self) -> str:
        return self.edge


@dataclass(frozen=True)
class GatewayPlan:
    """The Envoy data plane in front of a cluster's models."""

    pods: Figure        # at peak, surviving a zone's loss when the policy asks
    max_pods: Figure    # the same: pinned, so the per-pod admission limits hold (plan/admission.py)


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    models: tuple[ModelPlan, ...]
    pools: tuple[PoolPlan, ...]
    edges: tuple[EdgePlan, ...] = ()
    gateway: GatewayPlan | None = None
    weights: tuple[WeightsPlan, ...] = ()

    @property
    def nodes(self) -> int:
        return sum(int(p.nodes.value) for p in self.pools) + sum(int(e.nodes.value) for e in self.edges)

    @property
    def edge_pods(self) -> int:
        return sum(int(e.max_pods.value) + int(e.shields.value) for e in self.edges)

    @property
    def pods(self) -> int:
        return sum(m.pods for m in self.models) + self.nodes * DAEMON_PODS_PER_NODE + self.edge_pods

    def model(self, name: str) -> ModelPlan:
        """The plan of the workload `name` (a colocated model's name, or `<model>-prefill|decode`)."""
        return next(m for m in self.models if m.name == name)

    def bounding(self, model: str) -> ModelPlan:
        """The workload whose capacity bounds `model`: its only one, or its scarcer phase."""
        return min(self.phases(model), key=lambda m: m.capacity_tps.value)

    def model_rates(self) -> dict[str, tuple[float, float]]:
        """Forecast and capacity tokens/s per model: every phase of a disaggregated model reads the
        model's whole demand, and the model serves what its scarcer phase allows."""
        return {name: (b.demand_tps.value, b.capacity_tps.value)
                for name, b in ((n, self.bounding(n)) for n in dict.fromkeys(m.model for m in self.models))}

    def phases(self, model: str) -> tuple[ModelPlan, ...]:
        """Every workload of `model`: one colocated, or its prefill and decode groups."""
        return tuple(m for m in self.models if m.model == model)

    def weight(self, model: str) -> WeightsPlan:
        return next(w for w in self.weights if w.model == model)

    def pool(self, name: str) -> PoolPlan:
        return next(p for p in self.pools if p.pool == name)

    def edge(self, name: str) -> EdgePlan:
        return next(e for e in self.edges if e.edge == name)


@dataclass(frozen=True)
class OriginPlan:
    """An edge's origin over the whole event: the night, not one pod or one cluster, decides it."""

    edge: str
    gbps: Figure                      # at peak, from every cluster's shields (the same on a backup)
    rps: Figure
    viewer_gbps: Figure               # what viewers receive from every cluster's edges
    shields: int                      # connections to the origin come from these, not the edges
    window_hours: float

    @property
    def offload(self) -> float:
        return 1 - self.gbps.value / self.viewer_gbps.value

    @property
    def night_tb(self) -> float:
        """Bytes the origin sends over the window: the ladder flows all night whatever the audience."""
        return self.gbps.value * self.window_hours * 3600 / 8 / 1000


def sum_figures(figures: list[Figure], unit: str) -> Figure:
    total = sum(f.value for f in figures)
    if len({f.value for f in figures}) == 1:
        return Figure(total, f"{len(figures)} clusters x {figures[0].value:,.3f} = {total:,.2f} {unit}")
    return Figure(total, " + ".join(f"{f.value:,.3f}" for f in figures) + f" = {total:,.2f} {unit}")


@dataclass(frozen=True)
class CapacityPlan:
    clusters: tuple[ClusterPlan, ...]
    warnings: tuple[str, ...]
    survives_zone_loss: bool
    window_hours: float = 0.0
    # With policy.surviveLoss: the GPUs the option adds over the same plan without it.
    loss_gpus: Figure | None = None

    @property
    def gpus(self) -> int:
        return sum(int(m.gpus.value) for c in self.clusters for m in c.models)

    def cluster(self, name: str) -> ClusterPlan:
        return next(c for c in self.clusters if c.name == name)

    def origin(self, edge: str) -> "OriginPlan":
        """What the edge's origin sees over the whole event: every cluster's shields added up."""
        plans = [c.edge(edge) for c in self.clusters]
        return OriginPlan(edge, sum_figures([p.origin_gbps for p in plans], "Gbps"),
                          sum_figures([p.origin_rps for p in plans], "req/s"),
                          sum_figures([p.egress_gbps for p in plans], "Gbps"),
                          int(sum(p.shields.value for p in plans)), self.window_hours)

    @property
    def late(self) -> tuple[WeightsPlan, ...]:
        """Every model whose weights cannot reach its nodes before the window (plan/weights.py)."""
        return tuple(w for c in self.clusters for w in c.weights if w.late)

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


def profile_row(model: Model, gpu: str) -> profiles.Throughput:
    """The throughput row measured on what the model renders (config guarantees there is one)."""
    return profiles.load().throughput[profiles.row_key(model.model_class, gpu, model.engine.value, model.topology.value)]


def prefill_tps(model: Model, row: profiles.Throughput) -> Figure:
    """Input tokens/s at the model's prefix-cache hit rate: the row's figure counts its own hits,
    and only the missed tokens cost compute, so it scales by (1 - row's rate) / (1 - model's)."""
    h_row, h = row.prefix_cache_hit_rate, model.prefix_cache_hit_rate
    value = row.prefill_tps * (1 - h_row) / (1 - h)
    if h_row == h:
        return Figure(value, f"{value:,.0f} (profile, at prefix-cache hit rate {h:g})")
    return Figure(value, f"{row.prefill_tps:,.0f} x (1 - measured hit rate {h_row:g}) / (1 - prefixCacheHitRate {h:g}) "
                         f"= {value:,.0f}")


def decode_tps(model: Model, row: profiles.Throughput, itl_seconds: float) -> Figure:
    """Output tokens/s: the lower of the profile's figure and the KV-cache memory bound."""
    bound = memory.decode_bound(model, row, itl_seconds)
    if bound.value < row.decode_tps:
        return Figure(bound.value, f"{bound.value:,.0f}: bound by KV-cache memory, below the profile's "
                                   f"{row.decode_tps:,.0f} ({bound.why})")
    return Figure(row.decode_tps, f"{row.decode_tps:,.0f}: the profile's; the KV-cache memory bound allows "
                                  f"{bound.value:,.0f} ({bound.why})")


def replica_tps(model: Model, pool: GpuPool, itl_seconds: float, fabric_name: str) -> Figure:
    """Mixed tokens/s of one colocated replica, on the slowest GPU the pool may be given."""
    return _colocated(model, pool, itl_seconds, fabric_name)[1]


def _colocated(model: Model, pool: GpuPool, itl_seconds: float,
               fabric_name: str) -> tuple[profiles.Throughput, Figure, fabric.Applied]:
    f = model.input_share
    options = []
    for gpu in pool.gpus:
        row = profile_row(model, gpu)
        applied = fabric.apply(row, fabric_name, gpus_per_node(pool))
        rated = fabric.derated(row, applied)
        prefill, decode = prefill_tps(model, rated), decode_tps(model, rated, itl_seconds)
        options.append((1 / (f / prefill.value + (1 - f) / decode.value), row, prefill, decode, applied))
    value, row, prefill, decode, applied = min(options, key=lambda o: o[0])
    return row, Figure(value, f"1/({f:g}/{prefill.value:,.0f} + {1 - f:g}/{decode.value:,.0f}) = {value:,.0f} tok/s "
                              f"per {row.gpus_per_replica}x{row.gpu} replica, {row.topology.describe()} ({row.source}); "
                              f"prefill {prefill.why}; decode {decode.why}; {applied.why}"), applied


PHASES = ("prefill", "decode")


def workload_names(model: Model) -> tuple[str, ...]:
    """The names of the model's workloads (ModelPlan.name): its own, or one per phase."""
    if not model.disaggregated:
        return (model.name,)
    return tuple(f"{model.name}-{phase}" for phase in PHASES)


def workloads(model: Model, pool: GpuPool, itl_seconds: float,
              fabric_name: str) -> list[tuple[Model, str, profiles.Throughput, Figure, fabric.Applied]]:
    """(model, phase, row, tokens/s of one replica, what the fabric did to the row) per workload of
    the model, on `fabric_name` (fabric.rendered: the pool's instance types' in the cluster). A
    colocated model is one workload. A disaggregated model is two: prefill groups and decode groups,
    each sized separately against the model's whole token rate, so both read the same demand and
    autoscaler signal: one prefill group serves prefill / f tokens/s of the model's mix (f its input
    share), one decode group decode / (1 - f); on the slowest GPU the pool may be given."""
    if not model.disaggregated:
        row, tps, applied = _colocated(model, pool, itl_seconds, fabric_name)
        return [(model, "", row, tps, applied)]
    f = model.input_share
    out = []
    for phase, share in zip(PHASES, (f, 1 - f)):
        options = []
        for gpu in pool.gpus:
            row = profile_row(model, gpu)
            applied = fabric.apply(row, fabric_name, gpus_per_node(pool))
            rated = fabric.derated(row, applied)
            rate = prefill_tps(model, rated) if phase == "prefill" else decode_tps(model, rated, itl_seconds)
            options.append((rate.value / share, row, rate, applied))
        value, row, rate, applied = min(options, key=lambda o: o[0])
        kind = "input" if phase == "prefill" else "output"
        out.append((model, phase, row, Figure(
            value, f"{rate.value:,.0f} {kind} tok/s per {phase} group / {kind} share {share:g} = {value:,.0f} tok/s of "
                   f"the model's mix per {getattr(row.topology, phase).gpus}x{row.gpu} {phase} group, "
                   f"{row.topology.describe()} ({row.source}); {phase}: {rate.why}; {applied.why}"), applied))
    return out


def mixed_tps(row: profiles.Throughput, input_share: float) -> float:
    """A row's own mixed rate at an input share, before the hit-rate rescale and the memory bound:
    what `peaknight calibrate` scales a row by."""
    return 1 / (input_share / row.prefill_tps + (1 - input_share) / row.decode_tps)


def sizing_row(model: Model, pool: GpuPool, itl_seconds: float, fabric_name: str) -> profiles.Throughput:
    """The row a colocated model is sized by: its slowest GPU's on that fabric (as published, not derated)."""
    return _colocated(model, pool, itl_seconds, fabric_name)[0]


def gpus_per_node(pool: GpuPool) -> int:
    """GPUs one node of the pool brings (config checks every instance type of a pool agrees)."""
    return profiles.load().instance_types[pool.instance_types[0]].gpus


def interconnect(pool: GpuPool, cluster: Cluster) -> profiles.Interconnect | None:
    """The interconnect every instance type of the pool that `cluster` may launch brings (the
    fewest devices of any: a pod requests one count, and a spanning replica may land on any of
    them), or None when one of them has none. Per cluster: where a region sells only p5en, its
    groups request p5en's 16 EFA devices; where it sells only p5 or p5e, their 32."""
    if isinstance(cluster.provisioner, VolcengineVkeSettings):
        return _vke_rdma(cluster.provisioner)
    found = [profiles.load().instance_types[t].interconnect for t in cluster_types(pool, cluster)]
    if not found or any(i is None for i in found) or len({i.resource for i in found if i}) > 1:
        return None
    return min((i for i in found if i), key=lambda i: i.devices)


def _vke_rdma(settings: VolcengineVkeSettings) -> profiles.Interconnect | None:
    """A VKE cluster's RDMA, as its provisioner settings declare it: one HPC cluster per zone, so
    the zone is the network domain a group's workers prefer their leader's."""
    rdma = settings.rdma
    if rdma is None:
        return None
    return profiles.Interconnect(resource=rdma.resource, devices=rdma.devices, network_key="topology.kubernetes.io/zone",
                                 env=vke_rdma.env(rdma.env), annotations=vke_rdma.pod_annotations(rdma.devices))


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
    # Losing the largest zone leaves total - ceil(total / zones) = floor(total x (zones - 1) / zones)
    # replicas, so the smallest total keeping `serving` is ceil(serving x zones / (zones - 1)), in
    # integers: a closed form, never a count up (config requires 2 zones at least for zone loss).
    total = -(-serving * zones // (zones - 1))
    return Figure(total, f"{why}; +{total - serving} so that {serving} survive losing 1 of {zones} zones")


def holding_loss(fig: Figure, demand: float, per_replica: float, spec: StackSpec,
                 absorbed: loss.Absorb | None) -> Figure:
    """`fig` raised to the replicas that carry `demand` (the share after the worst loss) at headroom
    and the policy's loss utilisation, every zone up (plan/loss.py: a loss and a zone loss together
    are not planned); `fig` itself, derivation and all, when it holds the loss already (the
    capacity-after-a-loss figure of `--explain` shows by how much) or there is none to absorb."""
    if absorbed is None:
        return fig
    policy = spec.policy
    n = math.ceil(demand * policy.headroom / (per_replica * policy.loss_utilisation) - 1e-9)
    if n <= fig.value:
        return fig
    return Figure(n, f"{fig.why}; raised to absorb {absorbed.lost}: ceil({demand:,.0f} x headroom {policy.headroom:g} "
                     f"/ ({per_replica:,.0f} x loss util {policy.loss_utilisation:g})) = {n}")


def zone_split(replicas: int, zones: int) -> list[int]:
    """Replicas per zone under a maxSkew-1 topology spread: as even as possible."""
    return [replicas // zones + (1 if z < replicas % zones else 0) for z in range(zones)]


def plan(spec: StackSpec, *, envelope: bool = True) -> CapacityPlan:
    """The whole plan; raises EnvelopeError when any cluster cannot hold it (unless `envelope` is
    false: `calibrate` shows a plan's size even when new figures push it past the envelope)."""
    pools = {p.name: p for p in spec.gpu_pools}
    clusters = tuple(_plan_cluster(spec, c, pools) for c in spec.clusters)
    if envelope:
        _check_envelope(spec, clusters)
    hours = (spec.event.window.end - spec.event.window.start).total_seconds() / 3600
    return CapacityPlan(clusters, (*_warnings(spec), *_idle_fabric(spec, clusters), *_slow_rollouts(spec, clusters),
                                   *weights.warnings(spec)),
                        spec.policy.survive_zone_loss, hours, _loss_gpus(spec, clusters))


def _loss_gpus(spec: StackSpec, clusters: tuple[ClusterPlan, ...]) -> Figure | None:
    """What surviving the loss costs: the GPUs over the same stack planned without the option."""
    if spec.policy.survive_loss is loss.NONE:
        return None
    without = plan(dataclasses.replace(spec, policy=dataclasses.replace(spec.policy, survive_loss=loss.NONE)),
                   envelope=False).gpus
    held = sum(int(m.gpus.value) for c in clusters for m in c.models)
    return Figure(held - without, f"surviving the loss of any one {spec.policy.survive_loss.value} at loss util "
                                  f"{spec.policy.loss_utilisation:g}: {held:,} GPUs - {without:,} without it = "
                                  f"+{held - without:,} GPUs")


def _plan_cluster(spec: StackSpec, cluster: Cluster, pools: dict[str, GpuPool]) -> ClusterPlan:
    models: list[ModelPlan] = []
    pool_nodes: dict[str, list[tuple[int, str]]] = {name: [] for name in pools}
    pool_zones: dict[str, list[list[int]]] = {name: [] for name in pools}
    pool_floor: dict[str, list[list[int]]] = {name: [] for name in pools}
    pool_surge: dict[str, int] = {name: 0 for name in pools}
    pool_burst: dict[str, int] = {name: 0 for name in pools}
    zones = len(cluster.zones)
    absorbed = loss.absorb(spec, cluster)
    # The lead the warm gate is sized for; also how far apart moments must be for floors to fall.
    cold_lead = startup.longest_cold_lead(spec.policy, spec.models)
    floor_gaps = gaps.fall_gaps(spec.event, spec.policy, cold_lead)
    on = {name: fabric.of(pool, cluster) for name, pool in pools.items()}
    hits = {m.name: prefix_hits.planned(spec, cluster, m, pools[m.pool]) for m in spec.models}
    for model, phase, row, per_replica, applied in (
            w for m in spec.models
            for w in workloads(hits[m.name][0], pools[m.pool], spec.slo.itl_p99_seconds, on[m.pool])):
        pool = pools[model.pool]
        gpn = gpus_per_node(pool)
        gpr = row.gpus_per_replica if not phase else getattr(row.topology, phase).gpus
        per_node = max(1, gpn // gpr)
        nodes_per_replica = Topology(gpr, gpn).nodes
        peak = model.peak_tokens_per_minute / 60 * spec.scale * cluster.share
        demand = Figure(peak, f"{model.peak_tokens_per_minute:,.0f} tok/min / 60 x scale {spec.scale:g} "
                              f"x share {cluster.share:g} = {peak:,.0f} tok/s")

        lost_peak = peak / cluster.share * absorbed.share.value if absorbed else 0.0

        def sized(load: float, label: str) -> Figure:
            """Replicas for `load` x peak, and for the loss the policy absorbs, never above the
            model's quota (the plan then reports it short)."""
            fig = holding_loss(replicas_for(peak * load, per_replica.value, spec, zones, label),
                               lost_peak * load, per_replica.value, spec, absorbed)
            quota = model.max_replicas_per_cluster
            if quota is not None and fig.value > quota:
                return Figure(quota, f"{fig.why}; capped at maxReplicasPerCluster {quota}")
            return fig

        replicas = sized(1.0, "peak")
        floor = sized(spec.event.baseline, f"baseline {spec.event.baseline:g} of peak")
        moments = tuple((m.name, sized(m.load, f"{m.name} at {m.load:g} of peak")) for m in spec.event.moments)
        r = int(replicas.value)
        ceiling = max(r, math.ceil(r * model.burst - 1e-9))
        max_replicas = Figure(ceiling, f"ceil({r} x burst {model.burst:g}) = {ceiling}")
        # Nodes the burst adds above the plan (whole groups, or replicas packed per node).
        burst_nodes = ((ceiling - r) * nodes_per_replica if nodes_per_replica > 1
                       else math.ceil((ceiling - r) / per_node))
        # A rolling update's surge replicas need nodes of their own until the old ones drain.
        surge = rollout.surge(model, r, spec.policy)
        surge_nodes = (int(surge.value) * nodes_per_replica if nodes_per_replica > 1
                       else math.ceil(surge.value / per_node))
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
            cluster=cluster.name, model=model.name, phase=phase, serving=row.topology,
            pool=pool.name, gpus_per_replica=gpr, gpus_per_node=gpn,
            nodes_per_replica=nodes_per_replica, replica_tps=per_replica, demand_tps=demand,
            replicas=replicas, max_replicas=max_replicas, floor_replicas=floor, moment_replicas=moments,
            longest_answer=longest_answer(spec, model),
            warmup=startup.ready_seconds(spec.policy, model, warm=False), surge=surge,
            rollout=rollout.duration(spec.policy, model, r, int(surge.value)),
            gpus=Figure(r * gpr, f"{r} replicas x {gpr} GPUs"),
            nodes=Figure(n, f"{n} = {node_why}"),
            capacity_tps=Figure(capacity, f"{cap_replicas} replicas{' (largest zone lost)' if spec.policy.survive_zone_loss else ''}"
                                          f" x {per_replica.value:,.0f} x util {spec.policy.target_utilisation:g}"),
            short=capacity < peak * (1 - 1e-9),
            router_pods=plan_router(spec, cluster, model, peak) if phase == "decode" else None,
            loss_demand_tps=Figure(lost_peak, f"{demand.value:,.0f} tok/s x {absorbed.share.value:.4g} / share "
                                              f"{cluster.share:g} ({absorbed.share.why}) = {lost_peak:,.0f} tok/s")
            if absorbed else None,
            loss_capacity_tps=Figure(r * per_replica.value * spec.policy.loss_utilisation,
                                     f"{r} replicas (no zone lost) x {per_replica.value:,.0f} x loss util "
                                     f"{spec.policy.loss_utilisation:g}") if absorbed else None,
            # Prefill and decode groups also send the KV cache between nodes over it.
            interconnect=interconnect(pool, cluster) if nodes_per_replica > 1 or phase else None,
            node_fabric=on[pool.name],
            gaps=floor_gaps,
            on_fabric=applied,
            prefix_hit_rate=hits[model.name][1],
        ))
        pool_nodes[pool.name].append((n, models[-1].name))
        pool_surge[pool.name] += surge_nodes
        pool_burst[pool.name] += burst_nodes
        pool_zones[pool.name].append(_zone_nodes(r, zones, per_node, nodes_per_replica))
        pool_floor[pool.name].append(_zone_nodes(int(floor.value), zones, per_node, nodes_per_replica))
    plans = []
    for name, pool in pools.items():
        gpn = gpus_per_node(pool)
        nodes = sum(n for n, _ in pool_nodes[name])
        # Room above the plan for whichever is larger: the models' burst or a rolling update's surge.
        extra = max(pool_surge[name], pool_burst[name])
        limit = (nodes + extra) * gpn
        plans.append(PoolPlan(cluster.name, name, gpn,
                              Figure(nodes, " + ".join(f"{n} ({m})" for n, m in pool_nodes[name]) or "no models"),
                              Figure(limit, f"({nodes} planned + max({pool_burst[name]} burst, {pool_surge[name]} "
                                            f"surge) nodes) x {gpn} GPUs"),
                              zone_nodes=_zone_sum(pool_zones[name], zones),
                              zone_floor_nodes=_zone_sum(pool_floor[name], zones),
                              surge_nodes=extra,
                              disk_gib=disk_gib(spec, name),
                              image_disk_gib=image_disk_gib(spec, name),
                              cache_disk_gib=cache_disk_gib(spec, name),
                              groups=tuple(m.name for m in models if m.pool == name and m.nodes_per_replica > 1),
                              gaps=floor_gaps))
    edges = tuple(plan_edge(spec, cluster, e) for e in spec.edges)
    # Each pool's largest zone at its ceiling: the fleet one zone's weight sources must feed.
    fleet = {p.pool: max(p.zone_nodes, default=0) + p.zone_surge_nodes for p in plans}
    return ClusterPlan(cluster.name, tuple(models), tuple(plans), edges, plan_gateway(spec, cluster, models),
                       tuple(weights.plan_cluster(spec, cluster, fleet, cold_lead)))


def longest_answer(spec: StackSpec, model: Model) -> Figure:
    """The longest answer a model may give: maxModelLen tokens at the ITL objective, after the
    first token's objective (a request that runs longer is cut by the route, not served)."""
    slo = spec.slo
    value = math.ceil(slo.ttft_p99_seconds + model.max_model_len * slo.itl_p99_seconds)
    return Figure(value, f"ceil(TTFT {slo.ttft_p99_seconds:g} s + maxModelLen {model.max_model_len} x ITL "
                         f"{slo.itl_p99_seconds:g} s) = {value} s")


def plan_gateway(spec: StackSpec, cluster: Cluster, models: Iterable[ModelPlan]) -> GatewayPlan:
    """Envoy pods for the requests/s every model's peak brings through the Gateway, sized like
    replicas (headroom, utilisation, zone loss): requests = tokens/s / tokens per request, vCPU =
    requests/s x vCPU per 1,000 requests/s, pods of the profile's size; twice that at most."""
    g = profiles.load().gateway
    demands = {m.model: m.demand_tps.value for m in models}  # each model once, whatever its phases
    tps = sum(demands.values())
    rps = tps / g.tokens_per_request
    vcpu = rps / 1000 * g.vcpu_per_1k_rps
    by_rate = replicas_for(vcpu, g.pod_vcpu, spec, len(cluster.zones),
                           f"{tps:,.0f} tok/s / {g.tokens_per_request} tok per request = {rps:,.0f} req/s x "
                           f"{g.vcpu_per_1k_rps:g} vCPU per 1k req/s = {vcpu:,.1f} vCPU over {g.pod_vcpu}-vCPU pods")
    held = streams.total(spec, [(m, demands[m.name]) for m in spec.models if m.name in demands])
    pods = streams.larger(by_rate, streams.pods(spec, held, len(cluster.zones), "Envoy"))
    p = max(2, int(pods.value))  # never one pod: a lost pod is a lost front door
    # No autoscaling: every admission limit is a cluster figure divided over these pods
    # (plan/admission.py), and Envoy's circuit breakers have no cluster-wide mode, so more pods
    # would admit more than the plan.
    return GatewayPlan(Figure(p, pods.why + ("" if p == pods.value else "; at least 2")),
                       Figure(p, f"{p}: pinned (the admission limits are per Envoy pod)"))


# est.: the router is an HTTP proxy like Envoy, so it is sized with the gateway's figure per request.
ROUTER_POD_VCPU = 8


def plan_router(spec: StackSpec, cluster: Cluster, model: Model, tps: float) -> Figure:
    """Router pods for a disaggregated model's requests/s, sized like the Gateway's Envoy pods
    (the profile's vCPU per 1,000 requests/s, and its streams: plan/streams.py; headroom,
    utilisation, zone loss), one per zone at least so a lost zone leaves routers in the others."""
    g = profiles.load().gateway
    rps = tps / g.tokens_per_request
    vcpu = rps / 1000 * g.vcpu_per_1k_rps
    zones = len(cluster.zones)
    by_rate = replicas_for(vcpu, ROUTER_POD_VCPU, spec, zones,
                           f"{tps:,.0f} tok/s / {g.tokens_per_request} tok per request = {rps:,.0f} req/s x "
                           f"{g.vcpu_per_1k_rps:g} vCPU per 1k req/s (est.: the gateway's figure) = {vcpu:,.1f} vCPU "
                           f"over {ROUTER_POD_VCPU}-vCPU pods")
    pods = streams.larger(by_rate, streams.pods(spec, streams.per_model(spec, model, tps), zones, "router"))
    floor = max(2, zones)
    value = max(floor, int(pods.value))
    return Figure(value, pods.why + ("" if value == pods.value else f"; at least {floor} (one per zone, never one)"))


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
    and extracted once more, plus every model's weights twice in the node cache (plan/weights.py):
    the revision serving and the next, while a rollout moves over."""
    classes = _pool_classes(spec, pool)
    if not classes:
        return Figure(DISK_STEP_GIB, f"no models: {DISK_STEP_GIB} GiB")
    images = sum(3 * c.image_gib for c in classes)
    cached = weights.CACHED_REVISIONS * sum(c.weights_gib for c in classes)
    size = math.ceil((images + cached) / DISK_STEP_GIB) * DISK_STEP_GIB
    return Figure(size, f"images 3 x ({' + '.join(f'{c.image_gib:g}' for c in classes)}) GiB + weights {weights.CACHED_REVISIONS} x "
                        f"({' + '.join(f'{c.weights_gib:g}' for c in classes)}) GiB = {images + cached:g} GiB, "
                        f"rounded up to {DISK_STEP_GIB} GiB steps: {size} GiB")


def _pool_classes(spec: StackSpec, pool: str) -> list[profiles.ModelClass]:
    """The model classes of the models the pool serves, once per model (each has its own image)."""
    table = profiles.load()
    return [table.model_classes[m.model_class] for m in spec.models if m.pool == pool]


def _stepped(gib: float) -> int:
    return max(DISK_STEP_GIB, math.ceil(gib / DISK_STEP_GIB) * DISK_STEP_GIB)


def image_disk_gib(spec: StackSpec, pool: str) -> Figure:
    """The images' part of disk_gib, on a disk of its own (the container runtime's)."""
    classes = _pool_classes(spec, pool)
    images = sum(3 * c.image_gib for c in classes)
    size = _stepped(images)
    return Figure(size, f"images 3 x ({' + '.join(f'{c.image_gib:g}' for c in classes) or '0'}) GiB = {images:g} GiB, "
                        f"in {DISK_STEP_GIB} GiB steps: {size} GiB")


def cache_disk_gib(spec: StackSpec, pool: str) -> Figure:
    """The node cache's part of disk_gib, on a disk of its own mounted where the cache lives."""
    classes = _pool_classes(spec, pool)
    cached = weights.CACHED_REVISIONS * sum(c.weights_gib for c in classes)
    size = _stepped(cached)
    return Figure(size, f"weights {weights.CACHED_REVISIONS} x ({' + '.join(f'{c.weights_gib:g}' for c in classes) or '0'})"
                        f" GiB = {cached:g} GiB, in {DISK_STEP_GIB} GiB steps: {size} GiB")


def plan_edge(spec: StackSpec, cluster: Cluster, edge: Edge) -> EdgePlan:
    """Edge pods from egress: viewers x mean bitrate over the pod's egress, sized like a model's
    replicas (headroom, utilisation, zone loss) so both answer the same question the same way."""
    zones, util = len(cluster.zones), spec.policy.target_utilisation
    viewers = edge.peak_viewers * spec.scale * cluster.share
    mix = sum(r.bitrate_kbps * r.share for r in edge.renditions)
    egress = viewers * mix / 1e6
    absorbed = loss.absorb(spec, cluster)
    pods = holding_loss(replicas_for(egress, edge.pod_egress_gbps, spec, zones, f"Gbps over pods of "
                                     f"{edge.pod_egress_gbps:g} Gbps"),
                        egress / cluster.share * absorbed.share.value if absorbed else 0.0,
                        edge.pod_egress_gbps, spec, absorbed)
    p = int(pods.value)
    ceiling = max(p, math.ceil(p * edge.burst - 1e-9))
    serving = p - (max(zone_split(p, zones)) if spec.policy.survive_zone_loss else 0)
    capacity = serving * edge.pod_egress_gbps * util
    per_pod = edge.pod_egress_gbps * 1e6 * util / mix
    shield_fetch, shields, origin_gbps, origin_rps = _shield_tier(spec, cluster, edge, ceiling)
    per_node, nodes, node_gbps = _edge_nodes(spec, cluster, edge, ceiling, int(shields.value))
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
        shield_fetch_gbps=shield_fetch, shields=shields, origin_gbps=origin_gbps, origin_rps=origin_rps,
        pods_per_node=per_node, nodes=nodes, node_gbps=node_gbps,
        lb_targets_per_zone=max(zone_split(ceiling, zones)),
        short=capacity < egress * (1 - 1e-9) or node_gbps.value < egress * (1 - 1e-9),
    )


# LL-HLS: every rendition's bytes are published twice, as parts and as the whole segments (players
# at the live edge fetch parts, the rest whole segments), and a tier that caches both fetches both.
MEDIA_COPIES = 2


def _shield_tier(spec: StackSpec, cluster: Cluster, edge: Edge, edge_pods: int) -> tuple[Figure, Figure, Figure, Figure]:
    """Shields from what the edges fetch: each edge pod fetches every object of the ladder once (its
    own cache), and each object goes to one shield (consistent hashing on the cache key), so the
    origin sees each object once per cluster, whatever the number of edge pods or viewers."""
    ladder = sum(r.bitrate_kbps for r in edge.renditions)
    fetch = edge_pods * ladder * MEDIA_COPIES / 1e6
    fetch_fig = Figure(fetch, f"{edge_pods} edge pods (HPA ceiling) x {ladder:,} kbps ladder x {MEDIA_COPIES} "
                              f"(parts and segments) = {fetch:,.1f} Gbps")
    sized = replicas_for(fetch, edge.shield_egress_gbps, spec, len(cluster.zones),
                         f"Gbps over shields of {edge.shield_egress_gbps:g} Gbps")
    floor = max(edge.min_shields, len(cluster.zones) if spec.policy.survive_zone_loss else 1)
    shields = Figure(max(int(sized.value), floor), f"{sized.why}; at least {floor} (minShields"
                     f"{', one per zone' if spec.policy.survive_zone_loss else ''})")
    origin = ladder * MEDIA_COPIES / 1e6
    origin_fig = Figure(origin, f"{ladder:,} kbps ladder x {MEDIA_COPIES} (parts and segments), once per cluster "
                                f"= {origin:,.3f} Gbps")
    # Per rendition: a segment, the parts, one blocking playlist reload per part (collapsed on the
    # shield that owns its key) and one refresh of the plain playlist per TTL.
    per = 1 / edge.segment_seconds + 2 / edge.part_seconds + 1 / edge.playlist_ttl_seconds
    rps = len(edge.renditions) * per
    rps_fig = Figure(rps, f"{len(edge.renditions)} renditions x (1/{edge.segment_seconds:g} s segment + 2/"
                          f"{edge.part_seconds:g} s part and blocking reload + 1/{edge.playlist_ttl_seconds} s "
                          f"playlist) = {rps:,.1f} req/s")
    return fetch_fig, shields, origin_fig, rps_fig


# CPUs of an edge node left to kubelet, the CNI and the node daemons.
EDGE_NODE_RESERVED_CPUS = 2


def _edge_nodes(spec: StackSpec, cluster: Cluster, edge: Edge, edge_pods: int, shields: int) -> tuple[Figure, Figure, Figure]:
    """The edge's own node pool: pods per node on the tightest of NIC (the internet share of its
    bandwidth), CPU and memory over the pool's least capable instance type, and nodes per zone for
    the edge pods at their HPA ceiling plus the shields."""
    table = profiles.load()
    net = table.edge_network

    def fit(itype: profiles.EdgeInstanceType) -> int:
        return max(1, min(int(net.internet_gbps(itype) // edge.pod_egress_gbps),
                          (itype.vcpus - EDGE_NODE_RESERVED_CPUS) // edge.pod_cpu, itype.memory_gib // edge.pod_memory_gib,
                          cluster.max_pods_per_node - DAEMON_PODS_PER_NODE))

    itype = min((table.edge_instance_types[n] for n in edge.node_instance_types), key=fit)
    per = fit(itype)
    internet = net.internet_gbps(itype)
    per_fig = Figure(per, f"{itype.name}: min({internet:g} Gbps to the internet ({net.internet_share:g} of "
                          f"{itype.network_gbps:g}, {itype.source}) / {edge.pod_egress_gbps:g}, ({itype.vcpus} - "
                          f"{EDGE_NODE_RESERVED_CPUS}) vCPUs / {edge.pod_cpu}, {itype.memory_gib} GiB / "
                          f"{edge.pod_memory_gib}) = {per} pods")
    zones = len(cluster.zones)
    split = [e + s for e, s in zip(zone_split(edge_pods, zones), zone_split(shields, zones))]
    per_zone = [math.ceil(n / per) for n in split]
    nodes = sum(per_zone)
    nodes_fig = Figure(nodes, f"per zone ceil({'/'.join(map(str, split))} edge pods and shields / {per} per node)")
    serving = nodes - (max(per_zone) if spec.policy.survive_zone_loss else 0)
    gbps = serving * internet
    gbps_fig = Figure(gbps, f"{serving} nodes{' (largest zone lost)' if spec.policy.survive_zone_loss else ''} x "
                            f"{internet:g} Gbps = {gbps:,.0f} Gbps")
    return per_fig, nodes_fig, gbps_fig


def _check_envelope(spec: StackSpec, clusters: Iterable[ClusterPlan]) -> None:
    problems = []
    pools = {p.name: p for p in spec.gpu_pools}
    for cluster, plan_ in zip(spec.clusters, clusters):
        if plan_.nodes > cluster.max_nodes:
            problems.append(f"cluster '{cluster.name}': {plan_.nodes:,} nodes planned, envelope {cluster.max_nodes:,}: "
                            f"over by {plan_.nodes - cluster.max_nodes:,} (add a cluster or lower its share)")
        if plan_.pods > cluster.max_pods:
            problems.append(f"cluster '{cluster.name}': {plan_.pods:,} pods planned ({plan_.edge_pods:,} of them live "
                            f"edge pods at their HPA ceiling and shields), envelope {cluster.max_pods:,}: "
                            f"over by {plan_.pods - cluster.max_pods:,}")
        for model in plan_.models:
            per_node = max(1, plan_.pool(model.pool).gpus_per_node // model.gpus_per_replica)
            if per_node + DAEMON_PODS_PER_NODE > cluster.max_pods_per_node:
                problems.append(f"cluster '{cluster.name}': model '{model.model}' packs {per_node} pods per node "
                                f"+ {DAEMON_PODS_PER_NODE} daemons, envelope {cluster.max_pods_per_node}")
        net = profiles.load().edge_network
        for edge, e in zip(spec.edges, plan_.edges):
            # Exposed through the cloud's load balancer, every edge pod is one of its targets.
            if edge.source_ranges and (e.lb_targets_per_zone > net.nlb_targets_per_zone
                                       or e.max_pods.value > net.nlb_targets):
                problems.append(f"cluster '{cluster.name}': edge '{edge.name}' puts {e.lb_targets_per_zone:,} pods "
                                f"per zone ({int(e.max_pods.value):,} in all) behind its load balancer; the NLB quota is "
                                f"{net.nlb_targets_per_zone} per zone and {net.nlb_targets:,} in all (raise it, or "
                                f"lower the edge's burst)")
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


def _idle_fabric(spec: StackSpec, clusters: Iterable[ClusterPlan]) -> Iterable[str]:
    """A pool whose instance types in one region bring different EFA counts: its groups request the
    fewest, so on the others part of the fabric sits idle (one warning per pool and region)."""
    pools = {p.name: p for p in spec.gpu_pools}
    by_name = {c.name: c for c in spec.clusters}
    seen: dict[tuple[str, str], list[str]] = {}
    for c in clusters:
        cluster = by_name[c.name]
        for pool in {m.pool for m in c.models if m.interconnect is not None}:
            seen.setdefault((pool, cluster.region), []).append(c.name)
    for (pool, region), names in seen.items():
        table = profiles.load().instance_types
        counts = {t: i.devices for t in cluster_types(pools[pool], by_name[names[0]])
                  if (i := table[t].interconnect) is not None}
        if len(set(counts.values())) > 1:
            fewest = min(counts.values())
            idle = ", ".join(f"{t} {n}" for t, n in counts.items() if n > fewest)
            where = ", ".join(names) if len(names) <= 3 else f"{len(names)} clusters"
            yield (f"pool '{pool}' in {region} ({where}): its groups request {fewest} EFA devices, the fewest of its "
                   f"instance types; on {idle} the rest sit idle (one EFA count per pool uses them all)")


def _slow_rollouts(spec: StackSpec, clusters: Iterable[ClusterPlan]) -> Iterable[str]:
    """A workload whose rolling update cannot finish within policy.rolloutHours even one wave at once."""
    budget = spec.policy.rollout_hours * 3600
    for c in clusters:
        for m in c.models:
            if m.rollout.value > budget:
                yield (f"cluster '{c.name}': a rolling update of '{m.name}' takes {m.rollout.value / 3600:.1f} h "
                       f"({m.rollout.why}), over policy.rolloutHours {spec.policy.rollout_hours:g}")

