"""Weight distribution: can every GPU node hold its models' weights before it must serve?

The path is hub -> per-zone source -> node cache:
1. The staging Jobs download each model's weights, at its pinned revision, from the model hub (or
   object storage, models[].weightsFrom) into one source file system per zone (in parallel, one Job per zone), at the hub rate of
   profiles.yaml `timings.image_pull_seconds_per_gib`.
2. On every GPU node, a cache filler copies the pool's models from its zone's sources onto the
   node's local disk (instance store); the engine then loads from local NVMe.

A source's throughput grows with its size (FSx for Lustre: MB/s per TiB), so each zone's source is
sized so that the zone's whole fleet at its ceiling (peak nodes plus the burst or rollout surge)
fills its caches within `policy.weightsFillMinutes`; no node reads faster than one client of the
file system may (`weightSource.clientGbps`). A cold replica's start counts that fill time
(plan/startup.py).

The warm gate: `pulumi up` runs `policy.warmupHours` before the window. Staging must finish before
the earliest cold pre-scale of any model of the cluster (builders/warmup.py must_finish), which is
the window's start minus the longest cold lead. When staging does not fit, or one node cannot read
its pool's weights within the fill time, the plan says so, names the model and the shortfall, and
`peaknight plan` exits 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from peaknight.plan.figure import Figure
from peaknight.spec import profiles
from peaknight.provisioners.settings import PROVISIONER_CLOUD
from peaknight.spec.stack import Cluster, Model, Policy, StackSpec, WeightSource
from peaknight.spec.weights_from import ModelScopeSource, S3Source

GIB = 1024 ** 3
GB = 1000 ** 3
# FSx for Lustre and the kit size file systems in GiB; their throughput is quoted per TiB.
GIB_PER_TIB = 1024
# Every source holds the weights with room to spare: a second revision while a new one is staged.
SOURCE_FILL_FACTOR = 2.2
# A node cache holds each model's weights this many times: the revision serving and the next, while
# a rollout moves over (the filler keeps the newest other revision and drops older ones).
CACHED_REVISIONS = 2


@dataclass(frozen=True)
class WeightsPlan:
    """One model's weight distribution in one cluster."""

    cluster: str
    model: str
    staging: Figure        # seconds to download the weights into one zone's source
    source_gib: Figure     # size of each zone's source, for its throughput
    source_mbps: Figure    # read throughput of each zone's source at that size
    fill: Figure           # seconds for the zone's whole fleet to fill its node caches
    slack: Figure          # seconds between staging's end and the earliest cold pre-scale; < 0: late

    @property
    def late(self) -> bool:
        return self.slack.value < 0


def weights_gib(model: Model) -> float:
    return profiles.load().model_classes[model.model_class].weights_gib


def staging_seconds(model: Model) -> Figure:
    """Downloading the weights from where models[].weightsFrom says into one zone's source (zones
    stage in parallel), at the hub rate for either kind (est.: no published figure for one
    `aws s3 sync` stream; rehearse it)."""
    rate = profiles.load().timings.image_pull_seconds_per_gib
    value = math.ceil(weights_gib(model) * rate)
    source = model.weights_from
    origin = (source.uri if isinstance(source, S3Source) else
              f"ModelScope ({source.host}) at {source.revision}" if isinstance(source, ModelScopeSource) else "the hub")
    return Figure(value, f"{weights_gib(model):g} GiB from {origin} x {rate:g} s/GiB (hub rate, profiles timings) "
                         f"= {value} s")


def fill_seconds(policy: Policy) -> Figure:
    """The time a new node's cache takes to fill: the zone sources are sized so the whole zone
    fleet at its ceiling fills within it, so any smaller wave does too."""
    value = policy.weights_fill_minutes * 60
    return Figure(value, f"node cache fill within policy.weightsFillMinutes {policy.weights_fill_minutes} "
                         f"= {value} s (each zone's source is sized for its whole fleet)")


def _source_size(cluster: Cluster, model: Model, fleet: int, fill: float) -> tuple[Figure, Figure]:
    """The smallest source that feeds `fleet` nodes the model's weights within `fill` seconds."""
    src = cluster.weight_source
    w = weights_gib(model)
    need_mbps = fleet * w * GIB / fill / 1e6
    need_gib = max(w * SOURCE_FILL_FACTOR, need_mbps / src.mbps_per_tib * GIB_PER_TIB)
    steps = max(0, math.ceil((need_gib - src.min_gib) / src.step_gib - 1e-9))
    size = src.min_gib + steps * src.step_gib
    mbps = size / GIB_PER_TIB * src.mbps_per_tib
    size_fig = Figure(size, f"{fleet} nodes x {w:g} GiB within {fill:.0f} s = {need_mbps:,.0f} MB/s at "
                            f"{src.mbps_per_tib:g} MB/s/TiB, at least {SOURCE_FILL_FACTOR:g} x the weights: "
                            f"{need_gib:,.0f} GiB, in the class's sizes ({src.min_gib} GiB + {src.step_gib} GiB "
                            f"steps) = {size:,} GiB")
    return size_fig, Figure(mbps, f"{size:,} GiB / {GIB_PER_TIB} x {src.mbps_per_tib:g} MB/s/TiB = {mbps:,.0f} MB/s")


def plan_cluster(spec: StackSpec, cluster: Cluster, zone_fleet: dict[str, int], cold_lead: float) -> list[WeightsPlan]:
    """Every model's distribution in `cluster`. `zone_fleet` is each pool's largest zone fleet at
    its ceiling (nodes); `cold_lead` the longest cold pre-scale lead of the cluster's models."""
    policy = spec.policy
    fill = fill_seconds(policy)
    budget = policy.warmup_hours * 3600
    plans = []
    for model in spec.models:
        pool_gib = sum(weights_gib(m) for m in spec.models if m.pool == model.pool)
        one_node = pool_gib * GIB / (cluster.weight_source.client_gbps * GB / 8)
        size, mbps = _source_size(cluster, model, max(1, zone_fleet[model.pool]), fill.value)
        staging = staging_seconds(model)
        slack = budget - cold_lead - staging.value
        why = (f"policy.warmupHours {policy.warmup_hours:g} h = {budget:.0f} s - longest cold lead {cold_lead:.0f} s "
               f"- staging {staging.value:.0f} s = {slack:.0f} s")
        if one_node > fill.value:
            # No source size helps: one node cannot read its pool's weights within the fill time.
            slack = min(slack, fill.value - one_node)
            why += (f"; one node reads its pool's {pool_gib:g} GiB at {cluster.weight_source.client_gbps:g} Gb/s in "
                    f"{one_node:.0f} s, over policy.weightsFillMinutes ({fill.value:.0f} s)")
        plans.append(WeightsPlan(cluster.name, model.name, staging, size, mbps, fill, Figure(slack, why)))
    return plans


def warnings(spec: StackSpec) -> list[str]:
    """A cluster outside AWS sizing its weight sources with the FSx for Lustre defaults: the kit
    ships no published figure for another cloud's file system, so the operator must give one. A
    provisioner that names no cloud (`existing`) is where its region is."""
    default = WeightSource()
    names = [c.name for c in spec.clusters if c.weight_source == default
             and (PROVISIONER_CLOUD[c.provisioner.kind] or profiles.region_cloud(c.region)) != "aws"]
    if not names:
        return []
    which = ", ".join(names) if len(names) <= 3 else f"{len(names)} clusters ({names[0]}, ...)"
    return [f"{which} size their weight sources with FSx for Lustre's figures ({default.mbps_per_tib:g} MB/s/TiB) "
            "outside AWS: set clusters[].weightSource to your file system's measured ones"]


def shortfall(plan: WeightsPlan) -> str:
    """The line `peaknight plan` prints for a model that cannot be warm in time."""
    return (f"cluster '{plan.cluster}': model '{plan.model}' weights cannot be warm before the window: "
            f"short by {-plan.slack.value:.0f} s ({plan.slack.why})")
