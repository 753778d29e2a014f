"""Karpenter on AWS: a Karpenter v1 NodePool and its EC2NodeClass per pool per cluster.

The only module that knows Karpenter exists. The pool's GPU limit comes from the capacity plan,
its nodes carry the kit's pool label and GPU taint (podpolicy), and its disruption budget closes
voluntary disruption (consolidation, drift, expiry) across the broadcast window: no node that
serves the night is taken away during it.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable, Iterator, Sequence

from peaknight.builders import podpolicy
from peaknight.builders.objects import CloudResource, Obj, Scope, Unit, meta
from peaknight.plan.capacity import PoolPlan
from peaknight.plan.gaps import Gap
from peaknight.provisioners.base import Finding, NodeSignal, offered
from peaknight.provisioners.settings import KarpenterAwsSettings
from peaknight.spec.stack import CapacityType, Cluster, GpuPool, StackSpec
from peaknight.spec.timeline import cron_at, go_duration, parse_go_duration, to_utc

ADDON = "karpenter"
CLOUD = "aws"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
# Karpenter's own gauge of what a NodePool holds, by resource type.
USAGE_METRIC = "karpenter_nodepools_usage"
CLOUD_ERRORS_METRIC = "karpenter_cloudprovider_errors_total"
ICE = "InsufficientCapacityError"   # pkg/cloudprovider/metrics/cloudprovider.go: the error label's value
# Pinned AMI release: a node that joins mid-night must boot the image that was rehearsed.
AMI_ALIAS = "al2023@v20260209"


def _nodes_zero(scope: Scope, begin: dt.datetime, end: dt.datetime) -> dict[str, str]:
    """`nodes: "0"` from `begin` to `end` (local; a UTC cron, as Karpenter reads it): no reason
    (consolidation, emptiness, drift) may take a node in that time."""
    return {"nodes": "0", "schedule": cron_at(to_utc(scope, begin)), "duration": go_duration(end - begin)}


def freeze_budget(scope: Scope, lead_minutes: int) -> dict[str, str]:
    """The freeze from `lead_minutes` before the window's start to its end."""
    return _nodes_zero(scope, scope.event.window.start - dt.timedelta(minutes=lead_minutes), scope.event.window.end)


def freeze_budgets(scope: Scope, lead_minutes: int, gaps: Sequence[Gap] = ()) -> list[dict[str, str]]:
    """The freeze, open in the gaps where the floors fall between moments (plan/gaps.py): there the
    pool's emptied nodes may go, and the next moment's pre-scale starts cold on new ones."""
    begin = scope.event.window.start - dt.timedelta(minutes=lead_minutes)
    spans = []
    for gap in gaps:
        spans.append((begin, gap.start))
        begin = gap.end
    spans.append((begin, scope.event.window.end))
    return [_nodes_zero(scope, start, end) for start, end in spans]


def _settings(cluster: Cluster) -> KarpenterAwsSettings:
    """The cluster's settings; the registry only hands this provisioner its own kind's clusters."""
    settings = cluster.provisioner
    if not isinstance(settings, KarpenterAwsSettings):
        raise TypeError(f"cluster '{cluster.name}' is not provisioned by karpenter-aws")
    return settings


def capacity_reservations(settings: KarpenterAwsSettings) -> list[dict[str, Any]]:
    """EC2NodeClass capacityReservationSelectorTerms: each id, and the tags as one term."""
    terms: list[dict[str, Any]] = [{"id": i} for i in settings.capacity_reservation_ids]
    if settings.capacity_reservation_tags:
        terms.append({"tags": dict(settings.capacity_reservation_tags)})
    return terms


def _node_class(scope: Scope, cluster: Cluster, name: str, component: str, volume: str) -> dict[str, Any]:
    """The EC2NodeClass of one of the kit's pools. The root volume holds the OS and, on an
    instance type without local NVMe, the images, at the throughput and IOPS a 20 GiB pull needs
    (gp3's baseline is 125 MiB/s, 3,000 IOPS). Where the instance has local NVMe (every P5-family
    type), Karpenter makes it one RAID0 volume for kubelet and containerd: images and the weights
    read locally land there. Selected capacity reservations are tried first."""
    settings = _settings(cluster)
    spec: dict[str, Any] = {
        "role": settings.node_role,
        "amiSelectorTerms": [{"alias": AMI_ALIAS}],
        "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster.name}}],
        "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster.name}}],
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {
            "volumeSize": volume, "volumeType": "gp3", "encrypted": True,
            "throughput": settings.root_volume_throughput, "iops": settings.root_volume_iops}}],
        "instanceStorePolicy": "RAID0",
        "tags": {"peaknight.io/event": scope.event.name, "peaknight.io/pool": name},
    }
    reservations = capacity_reservations(settings)
    if reservations:
        spec["capacityReservationSelectorTerms"] = reservations
    return {"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": meta(scope, component, name),
            "spec": spec}


def capacity_types(scope: Scope, groups: Sequence[str] = ()) -> list[str]:
    """The stage's capacity types, without spot for a pool that holds groups spanning nodes: one
    reclaimed node recreates its whole group (RecreateGroupOnPodRestart), cold, so a rehearsal on
    spot would time its groups' reclaims, not its autoscaler's lead."""
    return [c.value for c in scope.policy.capacity_types if not (groups and c is CapacityType.SPOT)]


def _node_pool(scope: Scope, cluster: Cluster, name: str, component: str, instance_types: Sequence[str],
               labels: dict[str, str], taint: dict[str, str], limits: dict[str, str],
               annotations: dict[str, str], groups: Sequence[str] = (), gaps: Sequence[Gap] = ()) -> dict[str, Any]:
    """A NodePool of one of the kit's pools: its label and taint on every node, the stage's
    capacity types (no spot where `groups` span nodes), the cluster's zones, and no voluntary
    disruption from the freeze's lead before the window to its end, but in `gaps`."""
    budgets = [] if scope.event.over else freeze_budgets(scope, _settings(cluster).freeze_lead_minutes, gaps)
    return {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {**meta(scope, component, name), "annotations": annotations},
        "spec": {
            "template": {
                "metadata": {"labels": {podpolicy.POOL_LABEL: name, **labels}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": name},
                    "requirements": [
                        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(instance_types)},
                        {"key": CAPACITY_TYPE, "operator": "In", "values": capacity_types(scope, groups)},
                        {"key": podpolicy.ZONE, "operator": "In", "values": list(cluster.zones)},
                    ],
                    "taints": [taint],
                    # Broadcast nodes never expire on their own; rehearsal nodes recycle monthly.
                    "expireAfter": "Never" if scope.policy.protect else "720h",
                },
            },
            "limits": limits,
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": "10m",
                # Outside the freeze Karpenter may consolidate 10% of nodes at a time. After the
                # night (event.over) the freeze goes: its cron has no year.
                "budgets": budgets + [{"nodes": "10%"}],
            },
        },
    }


def _build(scope: Scope, cluster: Cluster, pool: GpuPool, plan: PoolPlan) -> Unit:
    protect = scope.policy.protect
    # Room for two 20 GiB model images and their extracted layers.
    node_class = _node_class(scope, cluster, pool.name, "gpu-node-pool", "500Gi")
    node_pool = _node_pool(scope, cluster, pool.name, "gpu-node-pool", offered(pool, CLOUD, cluster.region),
                           {"nvidia.com/gpu.present": "true"}, podpolicy.GPU_TAINT,
                           {"nvidia.com/gpu": str(int(plan.gpu_limit.value))},
                           {"peaknight.io/gpu-limit": plan.gpu_limit.why, "peaknight.io/planned-nodes": plan.nodes.why,
                            **({"peaknight.io/capacity-types": f"no spot: {', '.join(plan.groups)} span nodes"}
                               if plan.groups and CapacityType.SPOT in scope.policy.capacity_types else {})},
                           plan.groups, plan.gaps)
    return Unit("GpuNodePool", pool.name, (Obj(node_class, protect=protect), Obj(node_pool, protect=protect)))


def _span(budget: dict[str, str]) -> tuple[dt.datetime, dt.datetime] | None:
    """A nodes-0 budget for every reason: its span (cron minute hour day month, UTC); else None."""
    if budget.get("nodes") != "0" or budget.get("reasons") or "schedule" not in budget:
        return None
    try:
        start = _cron_time(budget["schedule"])
        return start, start + parse_go_duration(budget["duration"])
    except (KeyError, ValueError):
        return None


def _holes(budgets: Sequence[dict[str, str]], w_start: dt.datetime,
           w_end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The parts of the window (w_start, w_end) no nodes-0 budget covers."""
    holes, at = [], w_start
    for start, end in sorted(s for s in map(_span, budgets) if s):
        if start > at:
            holes.append((at, min(start, w_end)))
        at = max(at, end)
        if at >= w_end:
            break
    if at < w_end:
        holes.append((at, w_end))
    return [(a, b) for a, b in holes if a < b]


def _cron_time(cron: str) -> dt.datetime:
    minute, hour, day, month, _ = cron.split()
    return dt.datetime(2000, int(month), int(day), int(hour), int(minute))


# AWS Load Balancer Controller annotations: an NLB with the pods as IP targets, one node (and
# address) per zone with cross-zone balancing off, so each zone's viewers stay on its pods and a
# lost zone takes only its own address out of DNS.
NLB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
    "service.beta.kubernetes.io/aws-load-balancer-attributes": "load_balancing.cross_zone.enabled=false",
}
NLB_CLASS = "service.k8s.aws/nlb"


# NodePool (karpenter.sh/v1) rules on spec.template and spec.disruption, with the CRD's messages.
_KARPENTER_ALLOWED = ("karpenter.sh/capacity-type", "karpenter.sh/nodepool")


def _restricted_key(key: str) -> str | None:
    domain = key.split("/", 1)[0]
    if key == "karpenter.sh/nodepool":
        return 'label "karpenter.sh/nodepool" is restricted'
    if key == "kubernetes.io/hostname":
        return 'label "kubernetes.io/hostname" is restricted'
    if key not in _KARPENTER_ALLOWED and domain.endswith("karpenter.sh"):
        return 'label domain "karpenter.sh" is restricted'
    return None


def node_pool_rules(spec: dict[str, Any]) -> Iterator[str]:
    """The NodePool CRD's validation rules (CEL) on the fields the kit sets, with its messages."""
    template = spec.get("template", {})
    for key in template.get("metadata", {}).get("labels", {}):
        if message := _restricted_key(key):
            yield f"spec.template.metadata.labels: {message}"
    for i, req in enumerate(template.get("spec", {}).get("requirements", [])):
        at = f"spec.template.spec.requirements[{i}]"
        values, op = req.get("values", []), req.get("operator")
        if op == "In" and not values:
            yield f"{at}: requirements with operator 'In' must have a value defined"
        if op in ("Gt", "Lt", "Gte", "Lte") and not (len(values) == 1 and str(values[0]).isdigit()):
            yield f"{at}: requirements operator 'Gt', 'Lt', 'Gte', or 'Lte' must have a single positive integer value"
        if op == "In" and "minValues" in req and len(values) < req["minValues"]:
            yield (f"{at}: requirements with 'minValues' must have at least that many values specified in the "
                   "'values' field")
        if message := _restricted_key(req.get("key", "")):
            yield f"{at}.key: {message}"
    ref = template.get("spec", {}).get("nodeClassRef", {})
    for field in ("group", "kind", "name"):
        if ref.get(field) == "":
            yield f"spec.template.spec.nodeClassRef.{field}: {field} may not be empty"
    for i, budget in enumerate(spec.get("disruption", {}).get("budgets", [])):
        if ("schedule" in budget) != ("duration" in budget):
            yield f"spec.disruption.budgets[{i}]: 'schedule' must be set with 'duration'"


class KarpenterAws:
    """The provisioner of `clusters[].provisioner.kind: karpenter-aws`."""

    kind = "karpenter-aws"
    addon: str | None = ADDON
    crd_kinds: tuple[str, ...] = ("NodePool", "EC2NodeClass")
    api_rules: dict[tuple[str, str], Callable[[dict[str, Any]], Iterator[str]]] = {
        ("karpenter.sh/v1", "NodePool"): node_pool_rules}

    def installs_addon(self, cluster: Cluster) -> bool:
        return _settings(cluster).install

    def addon_values(self, cluster: Cluster) -> dict[str, Any]:
        """Karpenter discovers subnets and security groups by the tag the EC2NodeClasses select on;
        with reservations, the ReservedCapacity gate lets NodePools launch into them first (a
        `reserved` requirement is tried before `on-demand`); with a queue, it drains nodes ahead of
        EC2's interruption and maintenance events."""
        settings = _settings(cluster)
        values: dict[str, Any] = {"clusterName": cluster.name}
        if capacity_reservations(settings):
            # BETA and on by default in chart 1.14.1 (values.yaml): said explicitly, so an upgrade
            # that changes the default cannot switch reservations off unnoticed.
            values["featureGates"] = {"reservedCapacity": True}
        if settings.interruption_queue:
            values["interruptionQueue"] = settings.interruption_queue
        return {"settings": values}

    def pool(self, scope: Scope, cluster: Cluster, pool: GpuPool, plan: PoolPlan) -> Unit:
        return _build(scope, cluster, pool, plan)

    def frozen_findings(self, scope: Scope, objs: Sequence[Obj]) -> Iterable[Finding]:
        """Broadcast pools are protected from `pulumi destroy` and their NodePools carry the
        window's nodes-0 budget."""
        for obj in objs:
            if obj.kind not in self.crd_kinds:
                continue
            if not obj.protect:
                yield obj, "broadcast node pool is not protected (protect=True)"
            budgets = obj.manifest.get("spec", {}).get("disruption", {}).get("budgets", [])
            budget = freeze_budget(scope, 0)
            # After the night (event.over) the freeze is removed on purpose; with floors that fall
            # between moments it is open between them (plan/gaps.py), never across a moment.
            if obj.kind != "NodePool" or scope.event.over:
                continue
            moments = [_cron_time(cron_at(to_utc(scope, m.at))) for m in scope.event.moments]
            w_start = _cron_time(budget["schedule"])
            w_end = w_start + parse_go_duration(budget["duration"])
            holes = [(a, b) for a, b in _holes(budgets, w_start, w_end)
                     if not scope.policy.floors_fall_between_moments or any(a <= m < b for m in moments)]
            if holes:
                yield obj, (f"disruption budgets do not close the window: expected {budget} "
                            f"(nodes 0 from the window's start in UTC for its length"
                            f"{', open only between moments' if scope.policy.floors_fall_between_moments else ''}), "
                            f"found {budgets}")

    def edge_pool(self, scope: Scope, cluster: Cluster, name: str, instance_types: Sequence[str],
                  cpu_limit: int, why: str) -> tuple[Obj, ...]:
        """The live edge's own nodes: network-optimised instances, tainted for the edge alone."""
        protect = scope.policy.protect
        node_class = _node_class(scope, cluster, name, "edge-node-pool", "200Gi")
        node_pool = _node_pool(scope, cluster, name, "edge-node-pool", instance_types, {}, podpolicy.EDGE_TAINT,
                               {"cpu": str(cpu_limit)}, {"peaknight.io/planned-nodes": why})
        return Obj(node_class, protect=protect), Obj(node_pool, protect=protect)

    def load_balancer(self, cluster: Cluster) -> dict[str, Any]:
        """Service fields of the viewers' load balancer: an AWS NLB per cluster, one address per zone."""
        return {"annotations": dict(NLB_ANNOTATIONS), "loadBalancerClass": NLB_CLASS}

    def problems(self, cluster: Cluster, plan: PoolPlan) -> list[str]:
        """Karpenter launches what the NodePool's limit allows: nothing to refuse here."""
        return []

    def warnings(self, spec: StackSpec, cluster: Cluster) -> list[str]:
        """`reserved` with no reservation selected is a label only: every launch is on-demand."""
        if CapacityType.RESERVED in spec.policy.capacity_types and not capacity_reservations(_settings(cluster)):
            return [f"cluster '{cluster.name}' allows reserved capacity but selects no capacity reservation "
                    "(provisioner.capacityReservationIds or capacityReservationTags): Karpenter launches on-demand"]
        return []

    def cluster_resources(self, scope: Scope, cluster: Cluster) -> tuple[CloudResource, ...]:
        """The controller is a chart (the add-on), the EFA device plugin too: nothing in the cloud."""
        return ()

    def weights_cache_path(self) -> str:
        """On the instance-store RAID0 the EC2NodeClass asks for: the EKS AMI's setup-local-disks
        mounts the array at /mnt/k8s-disks/0 (awslabs/amazon-eks-ami,
        templates/shared/runtime/bin/setup-local-disks, maybe_raid0: array_mount_point)."""
        return "/mnt/k8s-disks/0/peaknight-weights"

    def launch_failures(self) -> tuple[NodeSignal, ...]:
        """Karpenter's cloud-provider errors on Create (kubernetes-sigs/karpenter v1.14,
        pkg/cloudprovider/metrics/cloudprovider.go: karpenter_cloudprovider_errors_total by
        controller, method, provider, error; no node pool label, so per cluster). An insufficient
        capacity error is EC2 out of the type in that zone: Karpenter tries the pool's other types
        and zones, so it warns; any other launch error (quota, IAM, launch template) pages."""
        def errors(match: str) -> str:
            return f'sum(increase({CLOUD_ERRORS_METRIC}{{method="Create", error{match}"{ICE}"}}[10m])) > 0'
        return (
            NodeSignal("PeaknightNodeLaunchFailing", errors("!="), "5m", "critical",
                       "Karpenter cannot launch nodes (not a capacity shortage)",
                       f"{CLOUD_ERRORS_METRIC}{{method=\"Create\"}} counted errors other than {ICE} over 10m: an "
                       "EC2 quota, IAM role, subnet or launch template problem. Replicas that need a new node stay "
                       "pending: `kubectl -n kube-system logs deploy/karpenter | grep -i error`, "
                       "`kubectl get nodeclaims`."),
            NodeSignal("PeaknightInsufficientCapacity", errors("="), "5m", "warning",
                       f"EC2 has no capacity for some of the GPU pools' instance types ({ICE})",
                       f"{CLOUD_ERRORS_METRIC}{{error=\"{ICE}\"}} over 10m. Karpenter falls back to the pool's "
                       "other instance types and zones, then on-demand after reserved; if replicas stay pending, "
                       "the reservation or the region is out of the type: `kubectl get nodeclaims`, and "
                       "`peaknight simulate STACK --no-capacity POOL` shows what the night loses."),
        )

    def gpus_in_use(self, pool: str) -> str:
        return f'max({USAGE_METRIC}{{nodepool="{pool}",resource_type="{podpolicy.GPU_TAINT["key"]}"}})'
