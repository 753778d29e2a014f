"""Pod policy, written once: restricted security, GPU placement and zone spread.

Every builder that makes a pod (inference, warm-up, live edge, add-on values) takes these from
here, and review/policy.py checks the rendered objects against the same constants, so the rule a
pod is built by and the rule it is checked by cannot drift apart.

Placement is by the kit's own pool label, never a provisioner's: a provisioner (an autoscaler, a cloud
node pool, an existing node group) puts `POOL_LABEL=<pool>` and `GPU_TAINT` on the nodes it
provides, and the pods select them by that alone.
"""
from __future__ import annotations

from typing import Any

ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"
# The kit's label on every node of a pool, whichever provisioner made the node.
POOL_LABEL = "peaknight.io/pool"
# The NVIDIA GPU Operator's convention: GPU nodes are tainted so that only GPU pods land there.
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
SECCOMP = {"type": "RuntimeDefault"}
# The model servers' and the warm gate's unprivileged user: it owns their volumes (fsGroup).
RUN_AS_USER = 1000
# The live edge's own nodes: their NICs carry the viewers' bytes, so nothing else lands there.
EDGE_TAINT = {"key": "peaknight.io/edge", "value": "true", "effect": "NoSchedule"}


def container_security() -> dict[str, Any]:
    """The restricted Pod Security profile for one container: no escalation, no capabilities,
    not root, the runtime's seccomp profile, and a read-only root filesystem: every path a
    container writes (caches, temp files, nginx state) is an emptyDir the pod mounts."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "seccompProfile": dict(SECCOMP)}


def namespace_security(enforce: str = "restricted") -> dict[str, str]:
    """Pod Security Admission labels: `enforce` at admission, restricted audited and warned of."""
    return {"pod-security.kubernetes.io/enforce": enforce, "pod-security.kubernetes.io/audit": "restricted",
            "pod-security.kubernetes.io/warn": "restricted"}


# The one namespace below restricted: the node-cache fillers write into a directory on the node's
# local disk that the kubelet creates root-owned (a hostPath PersistentVolume, DirectoryOrCreate;
# hostPath takes no fsGroup), so they run as root, with every other restricted rule kept.
NODE_CACHE_ENFORCE = "baseline"


def node_cache_security() -> dict[str, Any]:
    """A node-cache filler's container: root (to write the root-owned cache directory) but no
    capabilities, no escalation, the runtime's seccomp profile and a read-only root filesystem."""
    return {**container_security(), "runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0}


def directory_owner_security() -> dict[str, Any]:
    """A container that creates directories on a root-owned volume and hands them to RUN_AS_USER
    (hostPath and the FSx for Lustre CSI driver apply no fsGroup): root with CHOWN alone, which
    baseline Pod Security allows; every other restricted rule kept."""
    return {**node_cache_security(), "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}


def pod_security(user: int) -> dict[str, Any]:
    """The pod-level half of the restricted profile: one unprivileged user and group own the pod's
    volumes (fsGroup), so a non-root engine can write its caches."""
    return {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user, "fsGroup": user,
            "seccompProfile": dict(SECCOMP)}


def gpu_toleration() -> dict[str, str]:
    return {"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}


def pool_affinity(pool: str) -> dict[str, Any]:
    """Required node affinity to the nodes of one pool, by the kit's label."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": POOL_LABEL, "operator": "In", "values": [pool]}]}]}}}


def gpu_placement(pool: str) -> dict[str, Any]:
    """Pod spec fields that put a pod on its GPU pool's nodes and nowhere else."""
    return {"tolerations": [gpu_toleration()], "affinity": pool_affinity(pool)}


def edge_placement(pool: str) -> dict[str, Any]:
    """Pod spec fields that put a live edge or shield pod on its edge pool's nodes."""
    return {"tolerations": [{"key": EDGE_TAINT["key"], "operator": "Exists", "effect": EDGE_TAINT["effect"]}],
            "affinity": pool_affinity(pool)}


def zone_spread(match_labels: dict[str, str], *, hard: bool = True, by_node: bool = False) -> list[dict[str, Any]]:
    """Spread pods matching `match_labels` evenly over zones (maxSkew 1): a lost zone takes at most
    its share. `hard` refuses to schedule rather than skew; `by_node` also spreads over nodes where
    the scheduler can (for pods whose limit is the node's NIC). Tainted nodes the pod cannot use do
    not count as domains (nodeTaintsPolicy Honor), so a zone whose nodes are all gone or cordoned
    does not hold replacements back."""
    def constraint(key: str, when: str) -> dict[str, Any]:
        return {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when,
                "labelSelector": {"matchLabels": dict(match_labels)}, "nodeTaintsPolicy": "Honor"}
    out = [constraint(ZONE, "DoNotSchedule" if hard else "ScheduleAnyway")]
    if by_node:
        out.append(constraint(HOSTNAME, "ScheduleAnyway"))
    return out


def follow_leader(leader_labels: dict[str, str], group_key: str, network_key: str | None) -> dict[str, Any]:
    """Pod affinity that keeps a multi-node group together: each pod must share its zone with its
    group's leader (the pod matching `leader_labels` whose `group_key` label equals its own, via
    matchLabelKeys), and prefers the leader's network domain (`network_key`), so tensor/pipeline
    traffic never crosses zones and a lost zone takes whole groups, never halves of several."""
    def term(key: str) -> dict[str, Any]:
        return {"labelSelector": {"matchLabels": dict(leader_labels)}, "matchLabelKeys": [group_key],
                "topologyKey": key}
    affinity: dict[str, Any] = {"requiredDuringSchedulingIgnoredDuringExecution": [term(ZONE)]}
    if network_key:
        affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [{"weight": 100, "podAffinityTerm": term(network_key)}]
    return affinity
