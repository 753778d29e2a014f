"""Karpenter on AWS: a Karpenter v1 NodePool and its EC2NodeClass per pool per cluster.

The only module that knows Karpenter exists. The pool's GPU limit comes from the capacity plan,
its nodes carry the kit's pool label and GPU taint (podpolicy), and its disruption budget closes
voluntary disruption (consolidation, drift, expiry) across the broadcast window: no node that
serves the night is taken away during it.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Sequence

from peaknight.builders import podpolicy
from peaknight.builders.objects import Obj, Scope, Unit, meta
from peaknight.plan.capacity import PoolPlan
from peaknight.provisioners.base import Finding, offered
from peaknight.provisioners.settings import KarpenterAwsSettings
from peaknight.spec.stack import CapacityType, Cluster, GpuPool
from peaknight.spec.timeline import cron_at, go_duration, parse_go_duration, to_utc

ADDON = "karpenter"
CLOUD = "aws"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
# Karpenter's own gauge of what a NodePool holds, by resource type.
USAGE_METRIC = "karpenter_nodepools_usage"
# Pinned AMI release: a node that joins mid-night must boot the image that was rehearsed.
AMI_ALIAS = "al2023@v20260209"


def freeze_budget(scope: Scope, lead_minutes: int) -> dict[str, str]:
    """`nodes: "0"` from `lead_minutes` before the window's start (UTC cron, as Karpenter reads it)
    to its end: no reason (consolidation, emptiness, drift) may take a node in that time."""
    begin = scope.event.window.start - dt.timedelta(minutes=lead_minutes)
    return {"nodes": "0", "schedule": cron_at(to_utc(scope, begin)),
            "duration": go_duration(scope.event.window.end - begin)}


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


def _build(scope: Scope, cluster: Cluster, pool: GpuPool, plan: PoolPlan) -> Unit:
    protect = scope.policy.protect
    settings = _settings(cluster)
    reservations = capacity_reservations(settings)
    node_class: dict[str, Any] = {
        "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
        "metadata": meta(scope, "gpu-node-pool", pool.name),
        "spec": {
            "role": settings.node_role,
            "amiSelectorTerms": [{"alias": AMI_ALIAS}],
            "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster.name}}],
            "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster.name}}],
            # The root volume holds the OS and, on an instance type without local NVMe, the images:
            # room for two 20 GiB model images and their extracted layers, at the throughput and
            # IOPS a 20 GiB pull needs (gp3's baseline is 125 MiB/s, 3,000 IOPS).
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {
                "volumeSize": "500Gi", "volumeType": "gp3", "encrypted": True,
                "throughput": settings.root_volume_throughput, "iops": settings.root_volume_iops}}],
            # Where the instance has local NVMe (every P5-family type), Karpenter makes it one RAID0
            # volume for kubelet and containerd: images and the weights read locally land there.
            "instanceStorePolicy": "RAID0",
            "tags": {"peaknight.io/event": scope.event.name, "peaknight.io/pool": pool.name},
        },
    }
    if reservations:
        node_class["spec"]["capacityReservationSelectorTerms"] = reservations
    node_pool = {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {**meta(scope, "gpu-node-pool", pool.name), "annotations": {
            "peaknight.io/gpu-limit": plan.gpu_limit.why, "peaknight.io/planned-nodes": plan.nodes.why}},
        "spec": {
            "template": {
                "metadata": {"labels": {podpolicy.POOL_LABEL: pool.name, "nvidia.com/gpu.present": "true"}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": pool.name},
                    "requirements": [
                        {"key": "node.kubernetes.io/instance-type", "operator": "In",
                         "values": offered(pool, CLOUD, cluster.region)},
                        {"key": CAPACITY_TYPE, "operator": "In",
                         "values": [c.value for c in scope.policy.capacity_types]},
                        {"key": podpolicy.ZONE, "operator": "In", "values": list(cluster.zones)},
                    ],
                    "taints": [podpolicy.GPU_TAINT],
                    # Broadcast nodes never expire on their own; rehearsal nodes recycle monthly.
                    "expireAfter": "Never" if protect else "720h",
                },
            },
            "limits": {"nvidia.com/gpu": str(int(plan.gpu_limit.value))},
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": "10m",
                # Outside the window Karpenter may consolidate 10% of nodes at a time.
                "budgets": [freeze_budget(scope, settings.freeze_lead_minutes), {"nodes": "10%"}],
            },
        },
    }
    return Unit("GpuNodePool", pool.name, (Obj(node_class, protect=protect), Obj(node_pool, protect=protect)))


def _covers(budget: dict[str, str], window: dict[str, str]) -> bool:
    """A nodes-0 budget for every reason whose span holds the window's (cron minute hour day month)."""
    if budget.get("nodes") != "0" or budget.get("reasons") or "schedule" not in budget:
        return False
    try:
        start = _cron_time(budget["schedule"])
        end = start + parse_go_duration(budget["duration"])
        w_start = _cron_time(window["schedule"])
    except (KeyError, ValueError):
        return False
    return start <= w_start and end >= w_start + parse_go_duration(window["duration"])


def _cron_time(cron: str) -> dt.datetime:
    minute, hour, day, month, _ = cron.split()
    return dt.datetime(2000, int(month), int(day), int(hour), int(minute))


class KarpenterAws:
    """The provisioner of `clusters[].provisioner.kind: karpenter-aws`."""

    kind = "karpenter-aws"
    addon: str | None = ADDON
    crd_kinds: tuple[str, ...] = ("NodePool", "EC2NodeClass")

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
            if obj.kind == "NodePool" and not any(_covers(b, budget) for b in budgets):
                yield obj, (f"disruption budgets do not close the window: expected {budget} "
                            f"(nodes 0 from the window's start in UTC for its length), found {budgets}")

    def problems(self, cluster: Cluster, plan: PoolPlan) -> list[str]:
        """Karpenter launches what the NodePool's limit allows: nothing to refuse here."""
        return []

    def warnings(self, scope: Scope, cluster: Cluster) -> list[str]:
        """`reserved` with no reservation selected is a label only: every launch is on-demand."""
        if CapacityType.RESERVED in scope.policy.capacity_types and not capacity_reservations(_settings(cluster)):
            return [f"cluster '{cluster.name}' allows reserved capacity but selects no capacity reservation "
                    "(provisioner.capacityReservationIds or capacityReservationTags): Karpenter launches on-demand"]
        return []

    def gpus_in_use(self, pool: str) -> str:
        return f'max({USAGE_METRIC}{{nodepool="{pool}",resource_type="{podpolicy.GPU_TAINT["key"]}"}})'
