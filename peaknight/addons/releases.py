"""Cluster add-ons: which pinned charts (charts/) a cluster gets and the values derived for it.

Pure (no Pulumi): the Pulumi shell turns each AddonRelease into a Helm Release and makes every
object whose kind needs a CRD depend on the release that brings it. Values are the chart's
values.yaml, then values-<stage>.yaml, then what is derived here from the spec and the plan,
because the numbers that matter on the night must follow the night, not a copied file.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

import yaml

from peaknight.provisioners import registry as provisioners
from peaknight.builders import autoscaling, podpolicy
from peaknight.spec import profiles
from peaknight.plan.capacity import ClusterPlan
from peaknight.builders.objects import Obj
from peaknight.spec.registry_mirror import RegistryMirror
from peaknight.spec.stack import AutoscalerKind, Cluster, StackSpec

CHARTS = Path(__file__).with_name("charts")  # package data: pinned charts and values

# Add-on ids: the charts/ folder names and the fields of spec.Addons (with '-' for '_'). A
# provisioner's controller is an add-on too, named by the provisioner (provisioners/).
GPU_OPERATOR, KEDA, LWS, PROMETHEUS_STACK = "gpu-operator", "keda", "lws", "prometheus-stack"
PROMETHEUS_ADAPTER = "prometheus-adapter"
EFA_DEVICE_PLUGIN = "efa-device-plugin"
# Envoy AI Gateway: the extension server behind every HTTPRoute -> InferencePool, and its CRDs.
AI_GATEWAY, AI_GATEWAY_CRDS = "ai-gateway", "ai-gateway-crds"
# The stack key (spec.Addons field) of an add-on that is not named after its own: the CRDs go with
# the controller they serve.
ADDON_KEY = {AI_GATEWAY_CRDS: AI_GATEWAY}
# Add-ons that must be installed before another starts (beyond the CRDs of kinds a release creates):
# the AI Gateway's controller watches its own CRDs and does not start without them.
STARTS_AFTER = {AI_GATEWAY: (AI_GATEWAY_CRDS,)}
# The device plugin that advertises each interconnect resource the instance catalog names.
INTERCONNECT_ADDON = {"vpc.amazonaws.com/efa": EFA_DEVICE_PLUGIN}

# The add-on whose chart brings the CRD of each custom kind the kit (or an add-on) creates.
# Gateway and HTTPRoute are not here: they come with the cluster's gateway implementation
# (Cluster.gateway_class), which the operator brings.
CRD_ADDON: dict[str, str] = {
    "ScaledObject": KEDA, "TriggerAuthentication": KEDA,
    "LeaderWorkerSet": LWS,
    "ServiceMonitor": PROMETHEUS_STACK, "PodMonitor": PROMETHEUS_STACK, "PrometheusRule": PROMETHEUS_STACK,
    **{kind: p.addon for p in provisioners.REGISTRY.values() if p.addon for kind in p.crd_kinds},
}

# The autoscalers' timings, as the simulator replays them: the kit's ScaledObjects poll every
# autoscaling.POLLING_SECONDS (KEDA's default is 30 s) and the HPA syncs every 15 s. Scraping at
# the faster of the two means every poll and every sync reads a sample no older than one interval.
SCRAPE_SECONDS = min(autoscaling.POLLING_SECONDS, autoscaling.HPA_SYNC_SECONDS)
# Keep the night (and the rehearsal, a week before it) queryable until the review after the
# broadcast: the window plus two weeks.
REVIEW_DAYS = 14
# est.: KEDA's documented default resources (100m / 100Mi requests) serve this many ScaledObjects
# polling every 30 s; each further block of them gets another default's worth.
SCALED_OBJECTS_PER_DEFAULT = 100
KEDA_DEFAULT_REQUESTS = {"cpu_millis": 100, "memory_mib": 100}
# HPA metric types only a metrics adapter serves (Resource metrics come from metrics-server): Pods
# from the custom metrics API, External from the external metrics API.
ADAPTER_METRIC_TYPES = ("Pods", "External")
# The PromQL behind each External metric the kit's HPAs read: (series to discover, query template).
EXTERNAL_QUERIES = {s.external_metric: (s.series, s.query) for s in autoscaling.SIGNALS}


@dataclass(frozen=True)
class ImageKey:
    """One values key of a pinned chart that names where an image is pulled from (chart.yaml `images`).

    `form` says what the chart does with the value: `repository` (`<registry>/<path>`, the chart
    appends the rest of `image`'s path and the tag) or `registry` (the registry alone, the chart
    appends the image's path). `default` is the chart's own value at the pin, `image` the image (no
    tag) the chart renders from it."""

    key: str
    form: str
    default: str
    image: str


@dataclass(frozen=True)
class Chart:
    """One pinned chart: charts/<addon>/chart.yaml."""

    addon: str
    repository: str
    name: str
    version: str
    namespace: str
    uses: tuple[str, ...]
    images: tuple[ImageKey, ...] = ()

    @property
    def oci(self) -> bool:
        return self.repository.startswith("oci://")

    @property
    def ref(self) -> str:
        """How Helm names the chart: the full OCI reference, or the name within its repository."""
        return f"{self.repository}/{self.name}" if self.oci else self.name


@dataclass(frozen=True)
class AddonRelease:
    """One Helm release of an add-on on one cluster, with its final values."""

    addon: str
    name: str
    chart: Chart
    values: dict[str, Any]
    needs: tuple[str, ...]  # add-ons (enabled here) whose CRDs the release's own objects use


def _read(path: Path) -> Any:
    """A chart file's content, a private copy: callers may change what they get."""
    return copy.deepcopy(_parsed(path))


@cache
def _parsed(path: Path) -> Any:
    """Each chart file parsed once per process (C loader): the same files serve every cluster."""
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if path.exists() else None


@cache
def chart(addon: str) -> Chart:
    raw = _read(CHARTS / addon / "chart.yaml")
    return Chart(addon, raw["repository"], raw["name"], str(raw["version"]), raw["namespace"],
                 tuple(raw.get("uses", ())), tuple(ImageKey(**row) for row in raw.get("images", ())))


def all_addons() -> tuple[str, ...]:
    """Every add-on with a pinned chart."""
    return tuple(sorted(p.parent.name for p in CHARTS.glob("*/chart.yaml")))


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's rule for values files: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def file_values(addon: str, stage: str) -> dict[str, Any]:
    """values.yaml overlaid with values-<stage>.yaml, when there is one."""
    folder = CHARTS / addon
    return merge(_read(folder / "values.yaml") or {}, _read(folder / f"values-{stage}.yaml") or {})


def enabled(cluster: Cluster, addon: str) -> bool:
    provisioner = provisioners.for_cluster(cluster)
    if addon == provisioner.addon:
        return provisioner.installs_addon(cluster)
    return bool(getattr(cluster.addons, ADDON_KEY.get(addon, addon).replace("-", "_")))


@dataclass(frozen=True, order=True)
class MetricUse:
    """One custom or external metric an HPA reads, in the HPA's namespace."""

    type: str
    name: str
    namespace: str


def metric_uses(obj: Obj) -> tuple[MetricUse, ...]:
    """The metrics of an HPA that only an adapter serves; none for any other object."""
    if obj.kind != "HorizontalPodAutoscaler":
        return ()
    return tuple(MetricUse(m["type"], m[m["type"].lower()]["metric"]["name"], obj.namespace or "")
                 for m in obj.manifest["spec"]["metrics"] if m["type"] in ADAPTER_METRIC_TYPES)


def needed_addons(obj: Obj) -> tuple[str, ...]:
    """The add-ons an object waits for: the one that brings its kind's CRD and, for an HPA on
    custom or external metrics, the adapter that serves them (a core kind needs no CRD, but its
    metrics API must answer before the HPA can scale)."""
    needs = (CRD_ADDON.get(obj.kind), PROMETHEUS_ADAPTER if metric_uses(obj) else None)
    return tuple(addon for addon in needs if addon)


def routes_to_pool(obj: Obj) -> bool:
    """An HTTPRoute with an InferencePool backend: it resolves only through Envoy AI Gateway."""
    return obj.kind == "HTTPRoute" and any(ref.get("kind") == "InferencePool" for rule in obj.manifest["spec"]["rules"]
                                           for ref in rule.get("backendRefs", []))


def scaled_objects(spec: StackSpec, cluster: Cluster) -> int:
    """One ScaledObject per model on a KEDA cluster (the autoscaler issue's objects)."""
    return len(spec.models) if cluster.autoscaler is AutoscalerKind.KEDA else 0


# ---- derived values ------------------------------------------------------------------------------

def gpu_operator_values(gpus: set[str], driver_baked: bool) -> dict[str, Any]:
    """Driver settings for the cluster's GPU types. Where the node image carries the driver and
    container toolkit (what the simulator's cold start assumes), the operator installs neither;
    otherwise it installs the newest driver any of the types needs."""
    if driver_baked:
        return {"driver": {"enabled": False}, "toolkit": {"enabled": False},
                "dcgmExporter": {"serviceMonitor": {"interval": f"{SCRAPE_SECONDS}s"}}}
    table = _read(CHARTS / GPU_OPERATOR / "drivers.yaml")
    rows = [table[gpu] for gpu in sorted(gpus)]
    newest = max(rows, key=lambda row: tuple(int(part) for part in row["version"].split(".")))
    return {"driver": {"enabled": True, "version": newest["version"],
                       "kernelModuleType": newest["kernelModuleType"]},
            "toolkit": {"enabled": True},
            "dcgmExporter": {"serviceMonitor": {"interval": f"{SCRAPE_SECONDS}s"}}}


def controller_replicas(spec: StackSpec) -> int:
    """Two where the stack must survive a zone's loss (one in another zone), one otherwise."""
    return 2 if spec.policy.survive_zone_loss else 1


def keda_values(spec: StackSpec, scaled: int) -> dict[str, Any]:
    """Operator and metrics server for `scaled` ScaledObjects: a standby replica in another zone
    where the stack must survive a zone's loss (only the leader works), resources per block."""
    replicas = controller_replicas(spec)
    blocks = max(1, math.ceil(scaled / SCALED_OBJECTS_PER_DEFAULT))
    cpu, memory = KEDA_DEFAULT_REQUESTS["cpu_millis"] * blocks, KEDA_DEFAULT_REQUESTS["memory_mib"] * blocks
    resources = {"requests": {"cpu": f"{cpu}m", "memory": f"{memory}Mi"},
                 "limits": {"cpu": f"{10 * cpu}m", "memory": f"{10 * memory}Mi"}}
    return {"operator": {"replicaCount": replicas}, "metricsServer": {"replicaCount": replicas},
            "resources": {"operator": resources, "metricServer": resources}}


def prometheus_values(spec: StackSpec) -> dict[str, Any]:
    """Scrape as often as the autoscalers read; keep the night until its review."""
    window = spec.event.window.end - spec.event.window.start
    days = math.ceil(window.total_seconds() / 86400) + REVIEW_DAYS
    interval = f"{SCRAPE_SECONDS}s"
    return {"prometheus": {"prometheusSpec": {"scrapeInterval": interval, "evaluationInterval": interval,
                                              "retention": f"{days}d"}}}


def from_mirror(pinned: Chart, mirror: RegistryMirror | None) -> Chart:
    """The chart at its pinned name and version, from the mirror's chart repository when it names one."""
    if mirror is None or mirror.charts is None:
        return pinned
    return dataclasses.replace(pinned, repository=mirror.charts)


def mirror_value(key: ImageKey, mirror: RegistryMirror) -> str:
    """What `key` must hold for the chart to render `key.image` by the mirror's rule: the mirror's
    prefix for a registry; the mirrored `<registry>/<path>` for a repository."""
    return mirror.prefix if key.form == "registry" else mirror.image(key.default)


def mirror_values(pinned: Chart, mirror: RegistryMirror | None) -> dict[str, Any]:
    """Every image-bearing values key of the chart pointed at the mirror (none without one), so the
    add-ons' images are pulled by the same rule as the kit's own."""
    values: dict[str, Any] = {}
    if mirror is None:
        return values
    for key in pinned.images:
        *parents, leaf = key.key.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = mirror_value(key, mirror)
    return values


def custom_rule(use: MetricUse) -> dict[str, Any]:
    """A Pods metric: the series of that name per pod in the HPA's namespace, as it is scraped (a
    gauge per pod, e.g. the edge exporter's active connections), which the HPA then averages."""
    return {"seriesQuery": f'{use.name}{{namespace="{use.namespace}",pod!=""}}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
            "name": {"matches": f"^{use.name}$", "as": use.name},
            "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"}


def external_rule(use: MetricUse) -> dict[str, Any]:
    """An External metric: the kit's own query for it, with the adapter's matchers (the HPA's
    selector and namespace) where the kit's query has the model's; one rule per name."""
    series, query = EXTERNAL_QUERIES[use.name]
    return {"seriesQuery": series(f'namespace="{use.namespace}"'),
            "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
            "name": {"matches": ".*", "as": use.name},
            "metricsQuery": query("<<.LabelMatchers>>")}


def prometheus_adapter_values(spec: StackSpec, cluster: Cluster, release: str,
                              uses: Iterable[MetricUse]) -> dict[str, Any]:
    """Rules for exactly the metrics the cluster's HPAs read, from the Prometheus KEDA reads. Where
    KEDA runs, its metrics server owns the external metrics APIService (one server per API), so the
    adapter serves custom metrics only: no external rules, so the chart creates no external
    APIService (the kit's HPAs there read none; one that did is refused). Replicas spread over
    zones so a lost zone leaves the APIs answering."""
    distinct = sorted(set(uses))
    external = [external_rule(u) for u in distinct if u.type == "External"]
    if external and cluster.autoscaler is AutoscalerKind.KEDA:
        raise ValueError(f"cluster {cluster.name}: an HPA reads an External metric, but KEDA's metrics server "
                         "owns that API there; read it through a ScaledObject")
    prometheus = urlsplit(cluster.prometheus_url)
    pods = {"app.kubernetes.io/name": chart(PROMETHEUS_ADAPTER).name, "app.kubernetes.io/instance": release}
    return {"prometheus": {"url": f"{prometheus.scheme}://{prometheus.hostname}", "port": prometheus.port},
            "replicas": controller_replicas(spec),
            "topologySpreadConstraints": podpolicy.zone_spread(pods),
            "rules": {"custom": [custom_rule(u) for u in distinct if u.type == "Pods"],
                      "external": external}}


# ---- which releases a cluster gets ---------------------------------------------------------------

def _needed(spec: StackSpec, plan: ClusterPlan, cluster: Cluster,
            objects: Iterable[Obj]) -> list[tuple[str, str, dict[str, Any]]]:
    """(addon, release name, derived values) for every add-on the cluster's objects need."""
    gpus = {gpu for pool in spec.gpu_pools for gpu in pool.gpus}
    out = [(PROMETHEUS_STACK, "kube-prometheus-stack", prometheus_values(spec)),
           (GPU_OPERATOR, "gpu-operator",
            gpu_operator_values(gpus, profiles.load().timings.gpu_driver_seconds == 0)),
           ]
    provisioner = provisioners.for_cluster(cluster)
    if provisioner.addon:
        out.append((provisioner.addon, provisioner.addon, provisioner.addon_values(cluster)))
    scaled = scaled_objects(spec, cluster)
    if scaled:
        out.append((KEDA, "keda", keda_values(spec, scaled)))
    if any(m.nodes_per_replica > 1 for m in plan.models):
        out.append((LWS, "lws", {}))
    # An interconnect whose device plugin the cloud manages (VKE's RDMA component) has no chart here.
    for resource in sorted({m.interconnect.resource for m in plan.models if m.interconnect} & set(INTERCONNECT_ADDON)):
        out.append((INTERCONNECT_ADDON[resource], INTERCONNECT_ADDON[resource], {}))
    if any(routes_to_pool(obj) for obj in objects):
        out.append((AI_GATEWAY_CRDS, "aieg-crd", {}))
        out.append((AI_GATEWAY, "aieg", {"controller": {"replicaCount": controller_replicas(spec)}}))
    uses = [use for obj in objects for use in metric_uses(obj)]
    if uses:
        release = "prometheus-adapter"
        out.append((PROMETHEUS_ADAPTER, release, prometheus_adapter_values(spec, cluster, release, uses)))
    return out


def build(spec: StackSpec, plan: ClusterPlan, cluster: Cluster, objects: Iterable[Obj]) -> tuple[AddonRelease, ...]:
    """The releases of one cluster: needed by its `objects` and not switched off in its config.
    A release that creates another add-on's kinds (a ServiceMonitor) needs that release first."""
    stage = spec.policy.stage.value
    wanted = [(addon, name, derived) for addon, name, derived in _needed(spec, plan, cluster, objects)
              if enabled(cluster, addon)]
    present = {addon for addon, _, _ in wanted}
    releases = []
    for addon, name, derived in wanted:
        pinned = from_mirror(chart(addon), spec.registry_mirror)
        needs = tuple(sorted(({CRD_ADDON[kind] for kind in pinned.uses} | set(STARTS_AFTER.get(addon, ())))
                             & present - {addon}))
        values = merge(merge(file_values(addon, stage), derived), mirror_values(pinned, spec.registry_mirror))
        releases.append(AddonRelease(addon, name, pinned, values, needs))
    return tuple(releases)
