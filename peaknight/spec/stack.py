"""The typed event spec: what a stack file means once it has been validated.

These frozen dataclasses are the only shape later layers see. Field names are snake_case here and
camelCase in the stack file (``peakTokensPerMinute``); ``config.py`` turns one into the other and
reports every problem at once. Per-field ``description`` text doubles as the config reference that
``peaknight schema`` prints and the README quotes.
"""
from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel, to_snake
from pydantic.dataclasses import dataclass

from peaknight.spec import origins as origin_grammar
from peaknight.provisioners.settings import ProvisionerSettings, default_settings
from peaknight.spec import formats
from peaknight.spec.weights_from import HubSource, WeightsFrom
from peaknight.spec.registry_mirror import RegistryMirror

# Stack files must use the camelCase aliases (config.parse validates with by_name=False); code may
# build and dataclasses.replace() specs by field name.
# No NaN or infinity anywhere: every number reaches a manifest, a command line or nginx.conf.
STRICT = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_alias=True, validate_by_name=True,
                    frozen=True, allow_inf_nan=False)

# Names become object names and label values (formats.py says which grammar and why); a model's
# and an edge's name also name a Service, which must start with a letter.
Name = formats.DnsLabel
ServiceName = formats.ServiceName


def _origin(value: str) -> str:
    """Origins reach nginx.conf: only what parses as scheme, host and port is kept (origins.py)."""
    origin_grammar.parse(value)
    return value
Fraction = Annotated[float, Field(gt=0, le=1)]
# What one edge or shield pod sends: at most one 400 Gb/s port.
EgressGbps = Annotated[float, Field(gt=0, le=400)]
# An edge or shield pod's cache volume: at most 4 TiB, what a node's local disk holds (nginx's
# max_size is rendered from it in MB).
CacheGib = Annotated[int, Field(gt=0, le=4096)]
# USD per instance-hour: above 0 (a free node would hide the cost of a change) and at most 10,000
# (100x the dearest GPU instance on sale), so a night's cost stays a finite, printable figure.
InstancePrice = Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)]


class Stage(str, Enum):
    """What kind of night a stack is for; it sets the policy defaults."""

    BROADCAST = "broadcast"
    REHEARSAL = "rehearsal"


class LossScope(str, Enum):
    """What a stack plans to survive losing whole (plan/loss.py): nothing, any one cluster, or any
    one region with every cluster in it."""

    NONE = "none"
    CLUSTER = "cluster"
    REGION = "region"


class CapacityType(str, Enum):
    """How a pool's nodes are bought, in the order the kit prefers them; each provisioner maps
    these to its cloud's terms."""

    RESERVED = "reserved"
    ON_DEMAND = "on-demand"
    SPOT = "spot"


class Engine(str, Enum):
    VLLM = "vllm"
    SGLANG = "sglang"


class ServingMode(str, Enum):
    """How a model's replicas split the work (profiles.yaml rows say which one each figure was
    measured on): colocated replicas prefill and decode; disaggregated prefill and decode groups
    run on their own nodes and hand the KV cache over, behind the engine's router."""

    COLOCATED = "colocated"
    DISAGGREGATED = "disaggregated"


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

    start: formats.LocalTime
    end: formats.LocalTime


@dataclass(config=STRICT, kw_only=True)
class Moment:
    """A scheduled peak of the night: known in advance, so the kit pre-scales for it."""

    name: Name
    at: formats.LocalTime = Field(description="local time the moment starts")
    load: Fraction = Field(description="demand at the moment as a fraction of each model's peak")
    duration_minutes: int = Field(gt=0, le=240, description="how long the load is held")
    ramp_minutes: int = Field(default=2, ge=0, le=60, description="rise from baseline to load")


# The runbook the alerts link to: this repository's docs/runbook.md on main. A team that deploys
# from its own copy points `event.runbookUrl` at that copy's file.
DEFAULT_RUNBOOK_URL = "https://github.com/peaknight/peaknight/blob/main/docs/runbook.md"


@dataclass(config=STRICT, kw_only=True)
class Event:
    name: Name
    time_zone: formats.TimeZone = Field(description="IANA zone, e.g. Asia/Shanghai")
    window: Window
    baseline: Fraction = Field(description="demand between moments, as a fraction of peak")
    moments: tuple[Moment, ...] = Field(min_length=1)
    runbook_url: formats.HttpUrl = Field(default=DEFAULT_RUNBOOK_URL, description="the runbook every alert links to "
                                         "(`runbook_url` annotation: this URL + `#` + the alert's anchor)")
    over: bool = Field(default=False, description="set true after the window and `pulumi up`: the moment "
                       "floors (cron triggers) and the node-pool freeze are removed, because their five-field "
                       "crons carry no year and would fire again on the same date next year")


# Policy the stack leaves out is filled in from its stage, in stack-file spelling, before validation.
POLICY_DEFAULTS: dict[str, dict[str, Any]] = {
    # Broadcast: capacity that cannot be reclaimed mid-show, N+1 by zone, everything pinned.
    "broadcast": dict(capacityTypes=["reserved", "on-demand"], protect=True, scaleToZero=False,
                                requireImageDigests=True, targetUtilisation=0.85, headroom=1.05,
                                surviveZoneLoss=True, surviveLoss="none", lossUtilisation=0.95, rolloutHours=3, warmupHours=12,
                                weightsFillMinutes=60, floorsFallBetweenMoments=False,
                                allowUnproven=False),
    # Rehearsal: cheap capacity, nothing held outside the rehearsal window.
    "rehearsal": dict(capacityTypes=["spot", "on-demand"], protect=False, scaleToZero=True,
                                requireImageDigests=False, targetUtilisation=0.85, headroom=1.0,
                                surviveZoneLoss=False, surviveLoss="none", lossUtilisation=0.95, rolloutHours=3,
                                warmupHours=12, weightsFillMinutes=60, floorsFallBetweenMoments=False,
                                allowUnproven=False),
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
    # At least 1%: the edges' HPA renders it as a whole percent (averageUtilization must be at least
    # 1, live.py), and every replica count grows as 1 / it.
    target_utilisation: Annotated[float, Field(ge=0.01, le=1)]
    headroom: Annotated[float, Field(ge=1, le=5)]
    survive_zone_loss: bool
    # Whole-cluster or whole-region loss: the others are sized to absorb its share (plan/loss.py),
    # at `loss_utilisation` of their replicas' throughput (an incident runs hotter than the plan).
    survive_loss: LossScope
    loss_utilisation: Annotated[float, Field(ge=0.01, le=1)]
    rollout_hours: Annotated[float, Field(gt=0, le=48)]
    # How long before the window `pulumi up` creates the warm gate: the budget in which weights are
    # staged into every zone's source and the floor's node caches filled (plan/weights.py).
    warmup_hours: Annotated[float, Field(gt=0, le=168)]
    # How long a zone's whole peak fleet may take to fill its node caches from the zone's source:
    # the source is sized for it, and a cold replica's start counts it.
    weights_fill_minutes: Annotated[int, Field(gt=0, le=1440)]
    # Broadcast: let the floors (and the pools' nodes) fall to the baseline in gaps between moments
    # long enough for it (plan/gaps.py); off, each moment's floor is held to the window's end.
    floors_fall_between_moments: bool
    # Serving combinations and throughput figures no public source has run on the rendered fabric
    # (issue 24): refused with a config error unless this is set; with it, the plan prints each as
    # UNPROVEN and discounts it where a cited derating exists.
    allow_unproven: bool

    @classmethod
    def for_stage(cls, stage: Stage, **overrides: Any) -> "Policy":
        """The stage's defaults with `overrides` (field names) on top."""
        defaults = {to_snake(k): v for k, v in POLICY_DEFAULTS[stage.value].items()}
        return cls(**{**defaults, "stage": stage, **overrides})


@dataclass(config=STRICT, kw_only=True)
class Slo:
    unmet_tokens_pct: float = Field(default=0.5, ge=0, le=100, description="max % of tokens unserved")
    ttft_p99_seconds: float = Field(default=2.0, gt=0, le=600)
    itl_p99_seconds: float = Field(default=0.05, ge=0.001, le=60, description="at least 1 ms: the memory bound "
                                   "decodes concurrency / this tokens/s, and a p99 under a millisecond is finer than "
                                   "the engines' latency histograms can tell (an objective no alert could check)")
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
    efa_device_plugin: bool = Field(default=True, description="AWS EFA device plugin, where a replica spans "
                                    "nodes of a pool whose instances bring EFA (vpc.amazonaws.com/efa)")
    prometheus_stack: bool = Field(default=True, description="kube-prometheus-stack: ServiceMonitor, "
                                   "PrometheusRule CRDs and Prometheus; off = bring your own")
    prometheus_adapter: bool = Field(default=True, description="prometheus-adapter, where an HPA reads a custom "
                                     "or external metric: those metrics APIs from Prometheus; off = bring your own")
    ai_gateway: bool = Field(default=True, description="Envoy AI Gateway (controller and CRDs), where a route "
                             "sends to an InferencePool (a colocated model): Envoy Gateway's extension server for "
                             "it; off = bring your own (its Envoy Gateway must name it the extension manager)")


@dataclass(config=STRICT, kw_only=True)
class WeightSource:
    """The per-zone file system a model's weights are staged into and every node cache is filled
    from. Its throughput grows with its size (FSx for Lustre: MB/s per TiB), so the plan sizes it
    for the fleet it must feed. Defaults: FSx for Lustre PERSISTENT_2 at 1,000 MB/s/TiB, created
    at 1,200 GiB and grown in 2,400 GiB steps, up to 1,200 Gb/s per client (docs/facts.md)."""

    mbps_per_tib: float = Field(default=1000, ge=1, le=100000, description="read throughput per TiB provisioned "
                                "(at least 1: the source is sized fleet MB/s / this, and the slowest class sold, FSx "
                                "for Lustre HDD, gives 12; below 1 the size outgrows any storage request)")
    min_gib: int = Field(default=1200, gt=0, le=10**7, description="smallest size the class provisions")
    step_gib: int = Field(default=2400, gt=0, le=10**7, description="sizes above the smallest grow in these steps")
    client_gbps: float = Field(default=1200, ge=1, le=100000, description="the most one node reads from it "
                               "(FSx for Lustre: up to 1,200 Gb/s per client with EFA; a node without EFA "
                               "reads at its ENA bandwidth)")


@dataclass(config=STRICT, kw_only=True)
class Cluster:
    name: Name
    region: formats.LabelValue = Field(description="the cloud region (a topology.kubernetes.io/region value)")
    zones: tuple[formats.LabelValue, ...] = Field(min_length=1)
    share: Fraction = Field(description="share of the night's traffic this cluster serves")
    autoscaler: AutoscalerKind = AutoscalerKind.KEDA
    provisioner: ProvisionerSettings = Field(default_factory=default_settings,
                                             description="how the cluster gets GPU nodes (peaknight/provisioners/)")
    gateway_class: formats.Subdomain = Field(default="eg", description="GatewayClass the model routes attach to")
    gateway_namespace: formats.DnsLabel = Field(
        default="envoy-gateway-system", description="where Envoy Gateway runs the Gateway's Envoy proxies (its "
        "controller's namespace): the only namespace the NetworkPolicies admit them from")
    api_server_cidrs: tuple[formats.Cidr, ...] = Field(
        default=(), max_length=64, description="the API server's addresses (the kubernetes Service's endpoints): "
        "the only addresses the endpoint pickers and routers may reach; none: any address on 443/6443, a warning")
    prometheus_url: formats.HttpUrl = Field(default="http://prometheus-operated.monitoring.svc:9090",
                                description="Prometheus that KEDA and prometheus-adapter query: the "
                                "prometheusStack add-on's (namespace monitoring), or your own")
    model_cache_class: formats.StorageClasses = Field(
        default="fsx-lustre", description="ReadWriteMany StorageClass of the per-zone weight sources: one class "
        "that provisions in its first consumer's zone (WaitForFirstConsumer), or one class per zone")
    weight_source: WeightSource = Field(default_factory=WeightSource, description="throughput of the weight "
                                        "sources' class, for sizing them")
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
    max_gpus_per_cluster: Optional[int] = Field(default=None, gt=0, le=5000 * 16, description="the pool's own cap "
                                                "(at most the envelope: 5,000 nodes of 16 GPUs)")
    shares_instance_types: bool = Field(default=False, description="this pool knowingly lists instance types "
                                        "another pool lists too (they compete for the same stock); every pool "
                                        "sharing one must say so")


class AuthType(str, Enum):
    """How the gateway authenticates a model's clients (an Envoy Gateway SecurityPolicy)."""

    API_KEY = "apiKey"
    JWT = "jwt"
    NONE = "none"


@dataclass(config=STRICT, kw_only=True)
class Auth:
    type: AuthType = Field(default=AuthType.API_KEY, description="apiKey: keys in the Secret <model>-api-keys, "
                           "sent in the x-api-key header; jwt: bearer tokens checked against jwksUri; none: open "
                           "(refused in a broadcast stack)")
    jwks_uri: Optional[formats.PublicHttpsUrl] = Field(default=None, description="jwt: where the issuer publishes "
                                                       "its keys (https: a key set fetched in clear can be swapped)")
    issuer: Optional[formats.HttpUrl] = Field(default=None, description="jwt: the iss claim a token must carry")
    audiences: tuple[formats.Audience, ...] = Field(default=(), max_length=8, description="jwt: aud claims accepted "
                                                    "(one at least: a token the issuer minted for another service "
                                                    "is refused)")


class ModelTier(str, Enum):
    """Which pods a shortage preempts last: the assistant's, then the extras' (PriorityClasses)."""

    ASSISTANT = "assistant"
    EXTRA = "extra"


@dataclass(config=STRICT, kw_only=True)
class Admission:
    """What the gateway admits for a model (an Envoy Gateway BackendTrafficPolicy on its route,
    peaknight/builders/admission.py): per-client rate limits, and the concurrency and queue limits
    the plan derives; over any of them a client gets 429 with Retry-After."""

    client_tokens_per_minute: Optional[int] = Field(
        default=None, gt=0, le=10**12, description="per client id (the API key's id, or the JWT's sub): tokens "
        "a minute, charged per request at the gateway's tokens-per-request estimate; none: no per-client limit")
    retry_after_seconds: int = Field(default=10, ge=1, le=3600, description="the Retry-After a refused client "
                                     "gets (429)")


@dataclass(config=STRICT, kw_only=True)
class Ladder:
    """What a model does when its demand outruns its ready replicas, step by step (thresholds from
    the plan: peaknight/plan/ladder.py): cap output length, send a share of new sessions to a
    fallback model, shed with 429."""

    cap_output_tokens: int = Field(gt=0, le=2**24, description="step 1: the max_tokens clients are asked "
                                   "to send while the model saturates")
    cap_saving: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.2, description="share of the model's output tokens the cap removes (est. from the night's "
        "answer lengths): what the simulator counts as shortened")
    fallback: Optional[ServiceName] = Field(default=None, description="step 2: the model that takes a share of "
                                            "new sessions (served under this model's name too)")
    fallback_share: Fraction = Field(default=0.3, description="step 2: share of new sessions routed to the "
                                     "fallback (the HTTPRoute backend weight the step sets)")


@dataclass(config=STRICT, kw_only=True)
class Model:
    name: ServiceName
    model_class: str = Field(description="model class from the profile table (shipped, or the stack's own "
                             "profiles file), e.g. moe-671b")
    engine: Engine
    image: formats.Image
    weights: formats.Weights = Field(description="model id or path the engine loads")
    weights_revision: Optional[formats.Commit] = Field(
        default=None, description="the weights' commit (40 hex): staged exactly, as images are pinned by digest; "
        "required where policy.requireImageDigests")
    weights_from: WeightsFrom = Field(default_factory=HubSource, description="where the staging Jobs download "
                                         "the weights from: the hub (kind hub: endpoint, tokenSecret) or object "
                                         "storage (kind s3: uri, image, endpointUrl, region, credentialsSecret)")
    pool: Name
    peak_tokens_per_minute: float = Field(gt=0, le=1e13, description="forecast peak, before scale (at most "
                                          "1e13: 150 times the gala's 63.3 B record)")
    input_share: Annotated[float, Field(gt=0, lt=1)] = Field(description="input tokens / all tokens")
    max_model_len: int = Field(default=8192, gt=0, le=2**24, description="context length the engine is started "
                               "with (at most 16 M tokens)")
    burst: float = Field(default=1.25, ge=1, le=5, description="the autoscaler's maximum as a multiple of the "
                         "planned peak replicas, for demand beyond the forecast; the pool's GPU limit holds it")
    auth: Auth = Field(default_factory=Auth, description="client authentication at the gateway")
    prefix_cache_hit_rate: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.0, description="share of input tokens expected to be served from the prefix cache: the "
        "planner credits it to prefill capacity, the router makes it reachable, an alert watches the achieved rate")
    max_replicas_per_cluster: Optional[int] = Field(default=None, gt=0, le=150000, description="a quota: the plan "
                                                    "caps replicas here and reports the model short")
    topology: ServingMode = Field(default=ServingMode.COLOCATED, description="colocated (each replica prefills and "
                                  "decodes) or disaggregated (prefill and decode groups and a router); the model's "
                                  "(modelClass, GPU, engine, topology) must have a throughput row in profiles.yaml")
    mean_context_tokens: Optional[int] = Field(default=None, gt=0, le=2**24, description="mean tokens a request holds "
                                               "in the KV cache while it decodes (input + half the output): the "
                                               "memory bound's concurrency; default the profile row's")
    tier: ModelTier = Field(default=ModelTier.EXTRA, description="assistant: its servers outrank the other "
                            "models' (and the live edge's) when a cluster runs short; extra: the rest")
    admission: Admission = Field(default_factory=Admission, description="gateway admission: per-client "
                                 "limits, concurrency and queue limits from the plan, 429 with Retry-After")
    ladder: Optional[Ladder] = Field(default=None, description="the degradation ladder as the model saturates; "
                                     "none: demand above the ready replicas queues and, past the TTFT SLO, is unmet")

    @property
    def disaggregated(self) -> bool:
        """Prefill and decode groups behind a router, rather than replicas that do both."""
        return self.topology is ServingMode.DISAGGREGATED


@dataclass(config=STRICT, kw_only=True)
class Rendition:
    name: Name = Field(description="path segment and metric label of the rendition, e.g. 1080p")
    bitrate_kbps: int = Field(gt=0, le=1_000_000)
    share: Fraction = Field(description="share of viewers on this rendition")


@dataclass(config=STRICT, kw_only=True)
class Edge:
    name: ServiceName
    origins: tuple[Annotated[str, AfterValidator(_origin)], ...] = Field(
        min_length=1, max_length=16, description="host:port, http://host:port or https://host[:port]; first is primary")
    origin_server_name: Optional[Annotated[str, AfterValidator(origin_grammar.check_host)]] = Field(
        default=None, description="https origins: the name sent as SNI and verified in their certificates "
        "(default: the primary's host)")
    origin_ca_secret: Optional[Name] = Field(default=None, description="https origins: Secret (key ca.crt) "
                                             "holding the CA bundle that signs them; default the image's system CAs")
    peak_viewers: int = Field(gt=0, le=10**10, description="peak concurrent viewers, before scale")
    renditions: tuple[Rendition, ...] = Field(min_length=1)
    segment_seconds: float = Field(default=4.0, ge=1, le=20, description="at least 1 s: a playlist's target "
                                   "duration is whole seconds (RFC 8216 EXT-X-TARGETDURATION), and nginx counts the "
                                   "shields' failover window (3 segments) in whole seconds")
    part_seconds: float = Field(default=0.5, ge=0.1, le=2, description="LL-HLS part duration; at least 0.1 s: the "
                                "cache keeps segmentTtlSeconds / partSeconds parts per rendition in one shared keys "
                                "zone (at 0.1 s and a day's TTL, 108 MB per rendition already)")
    origin_latency_seconds: float = Field(default=0.5, ge=0.01, le=10, description="the origins' measured time "
                                          "to answer a part or segment (p99, from where the shields run): the "
                                          "shields wait this plus one segment before they take an origin as hung")
    pod_egress_gbps: EgressGbps = Field(default=20.0, description="egress one edge pod sustains (at most "
                                   "one 400 Gb/s port)")
    image: formats.Image = "nginx:1.27.3"
    exporter_image: formats.Image = Field(default="nginx/nginx-prometheus-exporter:1.4.2",
                                          description="sidecar that turns nginx stub_status into Prometheus metrics")
    log_exporter_image: formats.Image = Field(default="quay.io/martinhelmich/prometheus-nginxlog-exporter:v1.11.0",
                                              description="sidecar that counts nginx's per-request syslog lines by "
                                              "status, cache status, kind and rendition (edge_logs.py)")
    playlist_ttl_seconds: int = Field(default=1, ge=1, le=10, description="how long a playlist is served "
                                      "from cache before a background refresh (nginx counts whole seconds)")
    segment_ttl_seconds: int = Field(default=3600, ge=60, le=86400, description="segments and parts are immutable: "
                                     "cached this long (SRS's edge uses 60 min)")
    negative_ttl_seconds: int = Field(default=1, ge=1, le=10, description="how long a 404 is cached")
    cache_gib: CacheGib = Field(default=20, description="on-pod cache volume (emptyDir) per edge pod")
    pod_cpu: int = Field(default=8, gt=0, le=192, description="CPUs per edge pod; one nginx worker each")
    pod_memory_gib: int = Field(default=8, gt=0, le=2048)
    burst: float = Field(default=2.0, ge=1, le=5, description="HPA maxReplicas as a multiple of the planned "
                         "pods, for viewers beyond the forecast")
    node_instance_types: tuple[str, ...] = Field(default=("c6in.32xlarge",), min_length=1, description="instance "
                                                 "types of the edge's own node pool (profile catalog edge_instance_types)")
    max_token_lifetime_seconds: int = Field(default=21600, ge=20, le=10**8, description="viewer tokens expiring "
                                            "further ahead are refused (nginx compares decimal digits: see README)")
    shield_egress_gbps: EgressGbps = Field(default=20.0, description="egress one shield pod sustains")
    shield_cache_gib: CacheGib = Field(default=50, description="cache volume (emptyDir) per shield pod")
    min_shields: int = Field(default=2, ge=1, le=64, description="shields per cluster at least (the plan "
                             "may need more); with zone loss, at least one per zone")
    source_ranges: tuple[formats.Cidr, ...] = Field(default=(), description="CIDRs (viewer ISPs, CDNs) allowed to the "
                                           "edge's own LoadBalancer; none: a ClusterIP Service behind the cluster's ingress")


# The endpoint picker llm-d deploys in front of each InferencePool: llm-d-router's EPP image at its
# v0.10.0 release (config/charts/routerlib/values.yaml: ghcr.io/llm-d/llm-d-router-endpoint-picker).
EPP_IMAGE = "ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0"


@dataclass(config=STRICT, kw_only=True)
class Router:
    """The prefix- and load-aware router in front of every model (builders/routing.py)."""

    image: formats.Image = Field(default=EPP_IMAGE, description="the endpoint picker's image (llm-d-router "
                                 "v0.10.0); pinned by digest where policy.requireImageDigests")


@dataclass(config=STRICT, kw_only=True)
class LoadReplay:
    """Rehearsal only: per model and cluster, a load generator (inference-perf) replays the night's
    demand curve against the model, so the rehearsal measures what the plan assumed
    (builders/loadreplay.py; `peaknight calibrate` reads its results)."""

    image: formats.Image = Field(description="the inference-perf image (quay.io/inference-perf/inference-perf, "
                                 "the release the kit pins: v0.7.0), by digest where the policy asks")
    step_minutes: int = Field(default=1, ge=1, le=60, description="the curve is replayed as constant-rate stages "
                              "this long (a ramp becomes steps)")
    request_tokens: int = Field(default=2000, ge=2, le=1_000_000, description="tokens per request, input plus "
                                "output, split by the model's inputShare")
    pod_requests_per_second: float = Field(default=200, ge=1, le=10_000, description="most requests/s one load "
                                           "pod sends: the Job runs enough pods for the model's peak (at least 1: "
                                           "the pods are the peak's requests/s over this, a Job's count an int32)")
    results_gib: int = Field(default=10, ge=1, le=1000, description="size of the cluster's results volume")


@dataclass(config=STRICT, kw_only=True)
class HealthCheck:
    """How the global name's DNS tells a dark cluster: the cloud's checkers probe each cluster's
    own name, and a cluster failing `failure_threshold` probes in a row leaves the answers."""

    interval_seconds: Literal[10, 30] = Field(default=10, description="seconds between probes (Route 53 "
                                              "RequestInterval: 10 or 30)")
    failure_threshold: int = Field(default=3, ge=1, le=10, description="probes failed in a row before the "
                                   "cluster leaves the answers (Route 53 FailureThreshold: 1-10)")
    api_path: formats.UrlPath = Field(description="the path each cluster's gateway answers 2xx to without "
                                      "credentials (the kit routes it to the assistant's readiness: HTTPRoute steering-health)")


@dataclass(config=STRICT, kw_only=True)
class Steering:
    """One global name per event for the AI endpoints and one per live edge, resolved to the
    clusters by weight (their shares) with health checks, in the clusters' cloud DNS
    (builders/steering.py)."""

    domain: formats.Subdomain = Field(description="the hosted zone's domain; the names are api.<event>.<domain> "
                                      "and <edge>.live.<event>.<domain>")
    zone_id: formats.DnsZoneId = Field(description="the hosted zone: a Route 53 zone ID on AWS, the TrafficRoute "
                                       "zone ID (digits) on Volcano Engine")
    ttl_seconds: int = Field(default=30, ge=5, le=3600, description="seconds resolvers cache an answer: part of "
                             "how long a lost cluster's users wait")
    health_check: HealthCheck

    def api_name(self, event: str, cluster: str | None = None) -> str:
        """The assistant's global name, or with `cluster` that cluster's own name for it
        (`api.<cluster>.<event>.<domain>`): the operator points it at the cluster's gateway load
        balancer, and the health check probes it."""
        return f"api.{cluster + '.' if cluster else ''}{event}.{self.domain}"

    def edge_name(self, event: str, edge: str, cluster: str | None = None) -> str:
        """A live edge's global name, or with `cluster` that cluster's own name for it."""
        return f"{edge}.{cluster or 'live'}.{event}.{self.domain}"


@dataclass(config=STRICT, kw_only=True)
class GitOpsRepository:
    """The Git repository holding `peaknight render`'s output: each cluster's root (an Argo CD
    Application, or a Flux GitRepository with its Kustomizations) syncs `path/<cluster>` from it
    (peaknight/addons/bootstrap.py)."""

    url: formats.GitUrl = Field(description="https:// or ssh:// URL the GitOps controller clones")
    revision: formats.GitRevision = Field(default="main", description="branch, tag or commit the roots follow")
    path: formats.RepositoryPath = Field(description="the render directory (`render --out`) inside the repository")


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
    router: Router = Field(default_factory=Router, description="the models' endpoint picker")
    render_directory: Optional[formats.Directory] = Field(default=None, description="GitOps output of pulumi up")
    gitops: Optional[GitOps] = Field(default=None, description="add-ons as Argo CD or Flux objects, not Helm "
                                     "releases; required with renderDirectory")
    steering: Optional[Steering] = Field(default=None, description="global names steered to the clusters by "
                                         "weight with health checks")
    gitops_repository: Optional[GitOpsRepository] = Field(default=None, description="where the rendered "
                                                          "manifests are committed: what each cluster's GitOps "
                                                          "root syncs; required with gitops")
    load_replay: Optional[LoadReplay] = Field(default=None, description="rehearsal only: replay the night's "
                                              "demand curve against each model (inference-perf)")
    prices: dict[formats.Subdomain, dict[formats.LabelValue, InstancePrice]] = Field(
        default_factory=dict, description="instance type -> region -> on-demand USD per instance-hour, above the "
        "profile catalog's prices (your contract's)")
    registry_mirror: Optional[RegistryMirror] = Field(
        default=None, description="pull every rendered image from this registry (spec/registry_mirror.py's rule); "
        "required on volcengine-vke in a broadcast stack")
    profiles: Optional[formats.FilePath] = Field(default=None, description="the stack's own profiles file (model "
                                                 "classes, GPUs, instance types, throughput rows), relative to the "
                                                 "stack file; read above the shipped profiles.yaml")
