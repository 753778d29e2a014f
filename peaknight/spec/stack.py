"""The typed event spec: what a stack file means once it has been validated.

These frozen dataclasses are the only shape later layers see. Field names are snake_case here and
camelCase in the stack file (``peakTokensPerMinute``); ``config.py`` turns one into the other and
reports every problem at once. Per-field ``description`` text doubles as the config reference that
``peaknight schema`` prints and the README quotes.
"""
from __future__ import annotations

import datetime as dt
import re
from enum import Enum
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel, to_snake
from pydantic.dataclasses import dataclass

from peaknight.provisioners.settings import ProvisionerSettings, default_settings

# Stack files must use the camelCase aliases (config.parse validates with by_name=False); code may
# build and dataclasses.replace() specs by field name.
STRICT = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_alias=True, validate_by_name=True,
                    frozen=True)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


def _dns_label(value: str) -> str:
    """Names become Kubernetes object names and label values: keep them DNS labels."""
    if not _DNS_LABEL.match(value):
        raise ValueError("a lower-case DNS label of at most 40 characters (a-z, 0-9, '-')")
    return value


Name = Annotated[str, AfterValidator(_dns_label)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class Stage(str, Enum):
    """What kind of night a stack is for; it sets the policy defaults."""

    BROADCAST = "broadcast"
    REHEARSAL = "rehearsal"


class CapacityType(str, Enum):
    """How a pool's nodes are bought, in the order the kit prefers them; each provisioner maps
    these to its cloud's terms."""

    RESERVED = "reserved"
    ON_DEMAND = "on-demand"
    SPOT = "spot"


class Engine(str, Enum):
    VLLM = "vllm"
    SGLANG = "sglang"


class GitOps(str, Enum):
    """Who installs the add-ons when a GitOps controller applies the kit: Argo CD Applications, or
    Flux HelmReleases with their HelmRepositories (peaknight/addons/gitops.py)."""

    ARGOCD = "argocd"
    FLUX = "flux"


class AutoscalerKind(str, Enum):
    """KEDA where the cluster runs it; a plain HPA where it does not."""

    KEDA = "keda"
    HPA = "hpa"


@dataclass(config=STRICT, kw_only=True)
class Window:
    """Broadcast window in the event's local time (no offset: the time zone says where)."""

    start: dt.datetime
    end: dt.datetime


@dataclass(config=STRICT, kw_only=True)
class Moment:
    """A scheduled peak of the night: known in advance, so the kit pre-scales for it."""

    name: Name
    at: dt.datetime = Field(description="local time the moment starts")
    load: Fraction = Field(description="demand at the moment as a fraction of each model's peak")
    duration_minutes: int = Field(gt=0, le=240, description="how long the load is held")
    ramp_minutes: int = Field(default=2, ge=0, le=60, description="rise from baseline to load")


@dataclass(config=STRICT, kw_only=True)
class Event:
    name: Name
    time_zone: str = Field(description="IANA zone, e.g. Asia/Shanghai")
    window: Window
    baseline: Fraction = Field(description="demand between moments, as a fraction of peak")
    moments: tuple[Moment, ...] = Field(min_length=1)


# Policy the stack leaves out is filled in from its stage, in stack-file spelling, before validation.
POLICY_DEFAULTS: dict[str, dict[str, Any]] = {
    # Broadcast: capacity that cannot be reclaimed mid-show, N+1 by zone, everything pinned.
    "broadcast": dict(capacityTypes=["reserved", "on-demand"], protect=True, scaleToZero=False,
                                requireImageDigests=True, targetUtilisation=0.85, headroom=1.05,
                                surviveZoneLoss=True),
    # Rehearsal: cheap capacity, nothing held outside the rehearsal window.
    "rehearsal": dict(capacityTypes=["spot", "on-demand"], protect=False, scaleToZero=True,
                                requireImageDigests=False, targetUtilisation=0.85, headroom=1.0,
                                surviveZoneLoss=False),
}



@dataclass(config=STRICT, kw_only=True)
class Policy:
    """Stage policy. A stack file may leave any field but `stage` out: config.parse fills it from
    the stage's POLICY_DEFAULTS before validation, so every field here is always set. In code,
    Policy.for_stage does the same."""

    stage: Stage
    capacity_types: tuple[CapacityType, ...] = Field(min_length=1)
    protect: bool
    scale_to_zero: bool
    require_image_digests: bool
    target_utilisation: Fraction
    headroom: Annotated[float, Field(ge=1, le=5)]
    survive_zone_loss: bool

    @classmethod
    def for_stage(cls, stage: Stage, **overrides: Any) -> "Policy":
        """The stage's defaults with `overrides` (field names) on top."""
        defaults = {to_snake(k): v for k, v in POLICY_DEFAULTS[stage.value].items()}
        return cls(**{**defaults, "stage": stage, **overrides})


@dataclass(config=STRICT, kw_only=True)
class Slo:
    unmet_tokens_pct: float = Field(default=0.5, ge=0, le=100, description="max % of tokens unserved")
    ttft_p99_seconds: float = Field(default=2.0, gt=0)
    itl_p99_seconds: float = Field(default=0.05, gt=0)
    edge_hit_ratio: Fraction = Field(default=0.95, description="share of cacheable edge requests answered "
                                     "from the cache (HIT, STALE, UPDATING, REVALIDATED)")
    edge_error_ratio: Fraction = Field(default=0.001, description="most share of live-edge responses that may "
                                       "be 5xx (0.001: 99.9% of viewer requests answered)")


@dataclass(config=STRICT, kw_only=True)
class Addons:
    """Which add-ons (charts/) the kit installs on a cluster that needs them. Switch one off where
    the cluster already runs it (a managed cluster): nothing is installed and the kit's objects
    then assume its CRDs exist."""

    gpu_operator: bool = Field(default=True, description="NVIDIA GPU Operator: device plugin, DCGM exporter")
    keda: bool = Field(default=True, description="KEDA, on clusters whose autoscaler is keda")
    lws: bool = Field(default=True, description="LeaderWorkerSet, where a model replica spans nodes")
    prometheus_stack: bool = Field(default=True, description="kube-prometheus-stack: ServiceMonitor, "
                                   "PrometheusRule CRDs and Prometheus; off = bring your own")
    prometheus_adapter: bool = Field(default=True, description="prometheus-adapter, where an HPA reads a custom "
                                     "or external metric: those metrics APIs from Prometheus; off = bring your own")


@dataclass(config=STRICT, kw_only=True)
class Cluster:
    name: Name
    region: str = Field(min_length=1)
    zones: tuple[str, ...] = Field(min_length=1)
    share: Fraction = Field(description="share of the night's traffic this cluster serves")
    autoscaler: AutoscalerKind = AutoscalerKind.KEDA
    provisioner: ProvisionerSettings = Field(default_factory=default_settings,
                                             description="how the cluster gets GPU nodes (peaknight/provisioners/)")
    gateway_class: str = Field(default="eg", description="GatewayClass the model routes attach to")
    prometheus_url: str = Field(default="http://prometheus-operated.monitoring.svc:9090",
                                description="Prometheus that KEDA and prometheus-adapter query: the "
                                "prometheusStack add-on's (namespace monitoring), or your own")
    model_cache_class: str = Field(default="fsx-lustre", description="ReadWriteMany StorageClass for weights")
    adopt_existing: bool = Field(default=False, description="upsert objects that already exist")
    max_nodes: int = Field(default=5000, gt=0, le=5000, description="Kubernetes envelope")
    max_pods: int = Field(default=150000, gt=0, le=150000)
    max_pods_per_node: int = Field(default=110, gt=0, le=110)
    addons: Addons = Field(default_factory=Addons, description="add-ons to install (all by default)")


@dataclass(config=STRICT, kw_only=True)
class GpuPool:
    name: Name
    gpus: tuple[str, ...] = Field(min_length=1, description="acceptable GPU types, e.g. [H200-141G]")
    instance_types: tuple[str, ...] = Field(min_length=1, description="from the profile catalog")
    max_gpus_per_cluster: Optional[int] = Field(default=None, gt=0, description="the pool's own cap")
    shares_instance_types: bool = Field(default=False, description="this pool knowingly lists instance types "
                                        "another pool lists too (they compete for the same stock); every pool "
                                        "sharing one must say so")


@dataclass(config=STRICT, kw_only=True)
class Model:
    name: Name
    model_class: str = Field(description="model class from the profile table, e.g. moe-671b")
    engine: Engine
    image: str = Field(min_length=1)
    weights: str = Field(min_length=1, description="model id or path the engine loads")
    pool: Name
    peak_tokens_per_minute: float = Field(gt=0, description="forecast peak, before scale")
    input_share: Annotated[float, Field(gt=0, lt=1)] = Field(description="input tokens / all tokens")
    max_model_len: int = Field(default=8192, gt=0)
    max_replicas_per_cluster: Optional[int] = Field(default=None, gt=0, description="a quota: the plan "
                                                    "caps replicas here and reports the model short")


@dataclass(config=STRICT, kw_only=True)
class Rendition:
    name: Name
    bitrate_kbps: int = Field(gt=0)
    share: Fraction = Field(description="share of viewers on this rendition")


@dataclass(config=STRICT, kw_only=True)
class Edge:
    name: Name
    origins: tuple[str, ...] = Field(min_length=1, description="host:port of origins, first is primary")
    peak_viewers: int = Field(gt=0, description="peak concurrent viewers, before scale")
    renditions: tuple[Rendition, ...] = Field(min_length=1)
    segment_seconds: float = Field(default=4.0, gt=0, le=20)
    part_seconds: float = Field(default=0.5, gt=0, le=2, description="LL-HLS part duration")
    pod_egress_gbps: float = Field(default=20.0, gt=0, description="egress one edge pod sustains")
    image: str = "nginx:1.27.3"
    exporter_image: str = Field(default="nginx/nginx-prometheus-exporter:1.4.2",
                                description="sidecar that turns nginx stub_status into Prometheus metrics")
    log_exporter_image: str = Field(default="quay.io/martinhelmich/prometheus-nginxlog-exporter:v1.11.0",
                                    description="sidecar that counts nginx's per-request syslog lines by status, "
                                    "cache status, kind and rendition (edge_logs.py)")
    playlist_ttl_seconds: int = Field(default=1, ge=1, le=10, description="how long a playlist is served "
                                      "from cache before a background refresh (nginx counts whole seconds)")
    segment_ttl_seconds: int = Field(default=3600, ge=60, description="segments and parts are immutable: "
                                     "cached this long (SRS's edge uses 60 min)")
    negative_ttl_seconds: int = Field(default=1, ge=1, le=10, description="how long a 404 is cached")
    cache_gib: int = Field(default=20, gt=0, description="on-pod cache volume (emptyDir) per edge pod")
    pod_cpu: int = Field(default=8, gt=0, description="CPUs per edge pod; one nginx worker each")
    pod_memory_gib: int = Field(default=8, gt=0)
    burst: float = Field(default=2.0, ge=1, le=5, description="HPA maxReplicas as a multiple of the planned "
                         "pods, for viewers beyond the forecast")
    source_ranges: tuple[str, ...] = Field(default=(), description="CIDRs (viewer ISPs, CDNs) allowed to the "
                                           "edge's own LoadBalancer; none: a ClusterIP Service behind the cluster's ingress")


@dataclass(config=STRICT, kw_only=True)
class StackSpec:
    event: Event
    policy: Policy
    clusters: tuple[Cluster, ...] = Field(min_length=1)
    gpu_pools: tuple[GpuPool, ...] = Field(min_length=1)
    models: tuple[Model, ...] = Field(min_length=1)
    scale: float = Field(default=1.0, gt=0, le=10, description="multiplies every forecast")
    slo: Slo = Field(default_factory=Slo)
    edges: tuple[Edge, ...] = ()
    render_directory: Optional[str] = Field(default=None, description="GitOps output of pulumi up")
    gitops: Optional[GitOps] = Field(default=None, description="add-ons as Argo CD or Flux objects, not Helm "
                                     "releases; required with renderDirectory")
