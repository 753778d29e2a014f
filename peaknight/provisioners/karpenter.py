"""GPU node pools: a Karpenter v1 NodePool and its EC2NodeClass per pool per cluster.

The pool's GPU limit comes from the capacity plan, and its disruption budget closes voluntary
disruption (consolidation, drift, expiry) across the broadcast window: no node that serves the
night is taken away during it.
"""
from __future__ import annotations

from peaknight.plan.capacity import PoolPlan
from peaknight.builders.objects import Obj, Unit, meta
from peaknight.spec.stack import Cluster, GpuPool, StackSpec
from peaknight.spec.timeline import cron_at, go_duration, to_utc

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
POOL_LABEL = "karpenter.sh/nodepool"
# Pinned AMI release: a node that joins mid-night must boot the image that was rehearsed.
AMI_ALIAS = "al2023@v20260209"


def freeze_budget(spec: StackSpec) -> dict[str, str]:
    """`nodes: "0"` from the window's start (UTC cron, as Karpenter reads it) for its length."""
    start = to_utc(spec, spec.event.window.start)
    return {"nodes": "0", "schedule": cron_at(start),
            "duration": go_duration(spec.event.window.end - spec.event.window.start)}


def build(spec: StackSpec, cluster: Cluster, pool: GpuPool, plan: PoolPlan) -> Unit:
    protect = spec.policy.protect
    node_class = {
        "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
        "metadata": meta(spec, "gpu-node-pool", pool.name),
        "spec": {
            "role": cluster.node_role,
            "amiSelectorTerms": [{"alias": AMI_ALIAS}],
            "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster.name}}],
            "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster.name}}],
            # Room for two 20 GiB model images and their extracted layers.
            "blockDeviceMappings": [{"deviceName": "/dev/xvda",
                                     "ebs": {"volumeSize": "500Gi", "volumeType": "gp3", "encrypted": True}}],
            "tags": {"peaknight.io/event": spec.event.name, "peaknight.io/pool": pool.name},
        },
    }
    node_pool = {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": meta(spec, "gpu-node-pool", pool.name),
        "spec": {
            "template": {
                "metadata": {"labels": {"peaknight.io/pool": pool.name, "nvidia.com/gpu.present": "true"}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": pool.name},
                    "requirements": [
                        {"key": "node.kubernetes.io/instance-type", "operator": "In",
                         "values": list(pool.instance_types)},
                        {"key": "karpenter.sh/capacity-type", "operator": "In",
                         "values": [c.value for c in spec.policy.capacity_types]},
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": list(cluster.zones)},
                    ],
                    "taints": [GPU_TAINT],
                    # Broadcast nodes never expire on their own; rehearsal nodes recycle monthly.
                    "expireAfter": "Never" if protect else "720h",
                },
            },
            "limits": {"nvidia.com/gpu": str(int(plan.gpu_limit.value))},
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": "10m",
                # Outside the window Karpenter may consolidate 10% of nodes at a time.
                "budgets": [freeze_budget(spec), {"nodes": "10%"}],
            },
        },
    }
    annotations = {"peaknight.io/gpu-limit": plan.gpu_limit.why, "peaknight.io/planned-nodes": plan.nodes.why}
    node_pool["metadata"]["annotations"] = annotations
    return Unit("GpuNodePool", pool.name, (Obj(node_class, protect=protect), Obj(node_pool, protect=protect)))
