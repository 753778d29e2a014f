"""Volcano Engine VKE: one VKE node pool per GPU pool and zone, as pulumi-volcengine declares it.

The only module that knows VKE exists. Each node pool is a cloud resource
(`volcengine:vke/nodePool:NodePool`, properties by the provider's wire names) that the offline
render lists and the Pulumi program registers under the cluster's Volcano Engine provider. A pool
per zone, because a VKE node pool's autoscaling bounds are one number for all its subnets: per zone,
the bounds follow the plan's zone split (min = the floor's nodes, max = the peak's nodes + one
surge replica), so losing a zone never lets the others shrink below their share.

Freeze: VKE has no time-windowed disruption budget. The cluster autoscaler removes only nodes whose
pods can move, and inside the window the autoscalers hold every moment's floor to its end, so a node
serving the night keeps its replicas and stays; below the floor the pool's minimum holds. Broadcast
pools are Pulumi-protected.
"""
from __future__ import annotations

from typing import Any

from peaknight.builders import podpolicy
from peaknight.builders.objects import CloudResource, Scope, Unit
from peaknight.plan.capacity import PoolPlan
from peaknight.provisioners import vke_rdma
from peaknight.provisioners.base import WithoutController, offered
from peaknight.provisioners.settings import VolcengineVkeSettings
from peaknight.spec import profiles
from peaknight.spec.stack import Cluster, GpuPool, StackSpec

NODE_POOL = "volcengine:vke/nodePool:NodePool"
ADDON = "volcengine:vke/addon:Addon"
CLOUD = "volcengine"
# pulumi-volcengine 0.0.47 NodePoolAutoScaling: maxReplicas "range in 1~2000".
MAX_REPLICAS = 2000
MAX_REPLICAS_SOURCE = 'pulumi-volcengine 0.0.47 vke/_inputs.py NodePoolAutoScalingArgs.max_replicas ("range in 1~2000")'
# Cloud disk types the node pool accepts (NodePoolNodeConfigDataVolume.type); ESSD_PL0 is its default.
DISK_TYPE = "ESSD_PL0"
DISK_TYPE_SOURCE = "pulumi-volcengine 0.0.47 vke/_inputs.py NodePoolNodeConfigDataVolumeArgs.type (its default)"
HPC_SOURCE = "hpcClusterIds: pulumi-volcengine 0.0.47 vke/_inputs.py NodePoolNodeConfigArgs.hpc_cluster_ids (one id)"
SYSTEM_DISK_GIB = 100
# The node cache of weights (builders/warmup.py): the mount point of the pool's second data disk.
WEIGHTS_MOUNT = "/var/lib/peaknight/weights"


def pool_name(pool: GpuPool, zone: str) -> str:
    """One node pool per GPU pool and zone: `<pool>-<zone>` (both DNS-safe by config)."""
    return f"{pool.name}-{zone}"


def node_pool(scope: Scope, cluster: Cluster, pool: GpuPool, plan: PoolPlan, zone_index: int) -> CloudResource:
    """The VKE node pool of `pool` in the cluster's `zone_index`-th zone."""
    settings = cluster.provisioner
    if not isinstance(settings, VolcengineVkeSettings):
        raise TypeError(f"cluster '{cluster.name}' is not provisioned by volcengine-vke")
    zone = cluster.zones[zone_index]
    floor = plan.zone_floor_nodes[zone_index]
    ceiling = plan.zone_nodes[zone_index] + plan.zone_surge_nodes
    name = pool_name(pool, zone)
    labels = {podpolicy.POOL_LABEL: pool.name, "nvidia.com/gpu.present": "true"}
    tags = {"peaknight.io/event": scope.event.name, "peaknight.io/pool": pool.name}
    properties: dict[str, Any] = {
        "clusterId": settings.cluster_id,
        "name": name,
        "nodeConfig": {
            "instanceTypeIds": offered(pool, CLOUD, cluster.region),
            "subnetIds": [settings.subnets[zone]],
            "security": {"securityGroupIds": list(settings.security_group_ids)},
            "instanceChargeType": "PostPaid",
            "systemVolume": {"type": DISK_TYPE, "size": SYSTEM_DISK_GIB},
            # Two data disks: the container runtime's images on the first (additionalContainerStorage),
            # the node cache of weights on the second, mounted where the kit's cache lives
            # (weights_cache_path), so neither lands on the system disk nor crowds the other.
            "additionalContainerStorageEnabled": True,
            "dataVolumes": [{"type": DISK_TYPE, "size": int(plan.image_disk_gib.value)},
                            {"type": DISK_TYPE, "size": int(plan.cache_disk_gib.value), "mountPoint": WEIGHTS_MOUNT}],
            "namePrefix": name,
            # RDMA between nodes: the zone's pool in its HPC cluster (NodePoolNodeConfig.hpc_cluster_ids,
            # one id supported).
            **({"hpcClusterIds": [settings.rdma.hpc_clusters[zone]]} if settings.rdma else {}),
        },
        "kubernetesConfig": {
            "cordon": False,
            "labels": [{"key": k, "value": v} for k, v in labels.items()],
            "taints": [dict(podpolicy.GPU_TAINT)],
        },
        "autoScaling": {"enabled": True, "minReplicas": floor, "desiredReplicas": floor, "maxReplicas": ceiling},
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
    }
    types = ", ".join(properties["nodeConfig"]["instanceTypeIds"])
    summary = (f"{types} in {zone}: min {floor:,} (floor), max {ceiling:,} nodes "
               f"(peak {plan.zone_nodes[zone_index]:,} + surge {plan.zone_surge_nodes}), "
               f"data disks {int(plan.image_disk_gib.value)} GiB (images) + {int(plan.cache_disk_gib.value)} GiB at "
               f"{WEIGHTS_MOUNT} (weights)")
    catalog = profiles.load().instance_types
    sources = "; ".join([*(f"{t}: {catalog[t].source}" for t in properties["nodeConfig"]["instanceTypeIds"]),
                         f"max at most {MAX_REPLICAS:,} nodes: {MAX_REPLICAS_SOURCE}", f"{DISK_TYPE}: {DISK_TYPE_SOURCE}",
                         *([HPC_SOURCE] if settings.rdma else [])])
    return CloudResource(NODE_POOL, name, properties, protect=scope.policy.protect, summary=summary, sources=sources)


def rdma_addon(scope: Scope, cluster: Cluster) -> tuple[CloudResource, ...]:
    """VKE's RDMA device plugin component on the cluster, as `provisioner.rdma.addon` names it
    (pulumi-volcengine 0.0.47 vke.Addon: clusterId, name, version); protected like the node pools,
    since VKE refuses to remove some add-ons (the provider's docs: "can not be removed")."""
    settings = cluster.provisioner
    if not isinstance(settings, VolcengineVkeSettings) or settings.rdma is None or settings.rdma.addon is None:
        return ()
    addon = settings.rdma.addon
    properties: dict[str, Any] = {"clusterId": settings.cluster_id, "name": addon.name,
                                  **({"version": addon.version} if addon.version else {})}
    summary = (f"VKE add-on {addon.name} {addon.version or '(console version)'}: advertises "
               f"{settings.rdma.resource} ({settings.rdma.devices} per node)")
    return (CloudResource(ADDON, addon.name, properties, protect=scope.policy.protect, summary=summary),)


class VolcengineVke(WithoutController):
    """The provisioner of `clusters[].provisioner.kind: volcengine-vke`."""

    kind = "volcengine-vke"

    def cluster_resources(self, scope: Scope, cluster: Cluster) -> tuple[CloudResource, ...]:
        return rdma_addon(scope, cluster)

    def warnings(self, spec: StackSpec, cluster: Cluster) -> list[str]:
        """What about VKE no public source confirms: the RDMA component's name (VKE's guide could not
        be read), the environment values the kit estimates (vke_rdma.py); and the live edges, sized
        from another cloud's instance catalog, whose node group the kit does not declare here."""
        settings = cluster.provisioner
        if not isinstance(settings, VolcengineVkeSettings):
            return []
        lines = []
        rdma = settings.rdma
        if rdma is not None:
            component = (f"RDMA device plugin VKE add-on '{rdma.addon.name}' is unverified (no public source names "
                         "VKE's component: check vke.get_support_addons)" if rdma.addon else
                         "no RDMA device plugin declared (provisioner.rdma.addon): install VKE's RDMA component "
                         "from the console")
            guesses = vke_rdma.estimated(rdma.env)
            env = (f"; est. RDMA environment {', '.join(guesses)} (no public VKE source: confirm with show_gids "
                   "on a node, or set provisioner.rdma.env)" if guesses else "")
            lines.append(f"cluster '{cluster.name}': {component}{env}")
        for edge in spec.edges:
            lines.append(f"cluster '{cluster.name}': edge '{edge.name}' is sized from {', '.join(edge.node_instance_types)} "
                         "(edge_instance_types: no cited Volcano Engine catalog) and the kit declares no VKE node pool "
                         "for it: provide a node group with that bandwidth per node, labelled and tainted for the "
                         "edge (docs/operations.md)")
        return lines

    def pool(self, scope: Scope, cluster: Cluster, pool: GpuPool, plan: PoolPlan) -> Unit:
        cloud = tuple(node_pool(scope, cluster, pool, plan, z) for z in range(len(cluster.zones)))
        return Unit("GpuNodePool", pool.name, (), cloud)

    def weights_cache_path(self) -> str:
        """The second data disk's mount point: the node cache never shares the runtime's disk."""
        return WEIGHTS_MOUNT

    def problems(self, cluster: Cluster, plan: PoolPlan) -> list[str]:
        """What the cloud would refuse: a zone's node pool above VKE's autoscaling maximum; and groups
        that span nodes without RDMA between them (DeepEP's and Mooncake's devices would be missing)."""
        settings = cluster.provisioner
        rdma = [] if not plan.groups or not isinstance(settings, VolcengineVkeSettings) or settings.rdma else [
            f"cluster '{cluster.name}': pool '{plan.pool}' runs groups that span nodes ({', '.join(plan.groups)}) "
            f"without RDMA: set clusters[].provisioner.rdma (resource, devices, hpcClusters)"]
        ceilings = [n + plan.zone_surge_nodes for n in plan.zone_nodes]
        return rdma + [f"cluster '{cluster.name}': pool '{plan.pool}' needs {c:,} nodes in {z}, a VKE node pool holds at "
                f"most {MAX_REPLICAS:,} (add a cluster or lower its share)"
                for z, c in zip(cluster.zones, ceilings) if c > MAX_REPLICAS]
