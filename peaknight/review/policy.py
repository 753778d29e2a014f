"""Policy checks over the rendered objects: what must hold before anything reaches a cluster.

One module, two callers: `peaknight validate` runs the checks over the offline render, and the
Pulumi policy pack (policy/) runs the same functions over the resources of `pulumi preview`. Each
check takes the stack's spec and plan (for stage, window and peak replicas) and one cluster's
objects, and names the object in every violation it reports.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from peaknight.plan.capacity import CapacityPlan
from peaknight.plan.picker import shard_pods
from peaknight.spec.config import IMAGE_DIGEST
from peaknight.builders import loadreplay
from peaknight.builders.event import EventObjects
from peaknight.provisioners import registry as provisioners
from peaknight.builders.podpolicy import GPU_TAINT, NODE_CACHE_ENFORCE
from peaknight.builders.objects import Obj, weights_namespace
from peaknight.spec.stack import Stage, StackSpec

GPU = "nvidia.com/gpu"
WORKLOADS = ("Deployment", "LeaderWorkerSet")
_TEMPLATED = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


@dataclass(frozen=True)
class Context:
    """What the checks need beyond the objects: the stage, the window and the plan's peaks."""

    spec: StackSpec
    plan: CapacityPlan


@dataclass(frozen=True)
class Violation:
    check: str
    cluster: str
    obj: str
    message: str

    def __str__(self) -> str:
        return f"{self.cluster}: {self.obj}: {self.message} [{self.check}]"


Finding = tuple[Obj, str]
Check = Callable[[Context, str, Sequence[Obj]], Iterable[Finding]]


def describe(obj: Obj) -> str:
    """`Kind namespace/name`, the way an operator would `kubectl get` it."""
    return f"{obj.kind} {obj.namespace}/{obj.name}" if obj.namespace else f"{obj.kind} {obj.name}"


def pod_specs(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, pod spec) of every pod template an object carries."""
    kind, spec = manifest.get("kind"), manifest.get("spec") or {}
    if kind == "Pod":
        return [("spec", spec)]
    if kind in _TEMPLATED:
        return [("spec.template.spec", spec.get("template", {}).get("spec", {}))]
    if kind == "CronJob":
        return [("spec.jobTemplate.spec.template.spec", spec["jobTemplate"]["spec"]["template"]["spec"])]
    if kind == "LeaderWorkerSet":
        lwt = spec.get("leaderWorkerTemplate", {})
        return [(f"spec.leaderWorkerTemplate.{t}.spec", lwt[t]["spec"]) for t in ("leaderTemplate", "workerTemplate")
                if t in lwt]
    return []


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])


def _pod_labels(manifest: dict[str, Any]) -> list[dict[str, str]]:
    spec = manifest.get("spec") or {}
    if manifest["kind"] == "LeaderWorkerSet":
        lwt = spec.get("leaderWorkerTemplate", {})
        return [lwt[t].get("metadata", {}).get("labels", {}) for t in ("leaderTemplate", "workerTemplate") if t in lwt]
    return [spec.get("template", {}).get("metadata", {}).get("labels", {})]


# ---- the checks ------------------------------------------------------------------------------

def _tolerates_gpu_taint(pod: dict[str, Any]) -> bool:
    for t in pod.get("tolerations", []):
        key_ok = t.get("key") == GPU_TAINT["key"] or (not t.get("key") and t.get("operator") == "Exists")
        value_ok = t.get("operator") == "Exists" or t.get("value") == GPU_TAINT["value"]
        if key_ok and value_ok and t.get("effect") in (None, "", GPU_TAINT["effect"]):
            return True
    return False


def gpu_limits_and_toleration(ctx: Context, cluster: str, objs: Sequence[Obj]) -> Iterable[Finding]:
    """GPUs are only scheduled by limit, and GPU nodes carry the taint: a GPU container without
    either never lands, or lands on a GPU it did not reserve."""
    for obj in objs:
        for path, pod in pod_specs(obj.manifest):
            gpu_containers = [c for c in _containers(pod) if any(GPU in (c.get("resources", {}).get(k) or {})
                                                                 for k in ("requests", "limits"))]
            for c in gpu_containers:
                res = c.get("resources", {})
                limit, request = (res.get("limits") or {}).get(GPU), (res.get("requests") or {}).get(GPU)
                if limit is None:
                    yield obj, f"{path}: container '{c['name']}' requests {GPU} without a limit"
                elif request is not None and str(request) != str(limit):
                    yield obj, f"{path}: container '{c['name']}' {GPU} request {request} != limit {limit}"
            if gpu_containers and not _tolerates_gpu_taint(pod):
                yield obj, (f"{path}: GPU pod does not tolerate the taint "
                            f"{GPU_TAINT['key']}={GPU_TAINT['value']}:{GPU_TAINT['effect']}")


def _selects(pdb: Obj, workload: Obj) -> bool:
    selector = pdb.manifest.get("spec", {}).get("selector") or {}
    wanted = selector.get("matchLabels") or {}
    if selector.get("matchExpressions"):
        return False  # not evaluated here: write PDBs with matchLabels
    return pdb.namespace == workload.namespace and all(
        all(labels.get(k) == v for k, v in wanted.items()) for labels in _pod_labels(workload.manifest))


def pdb_per_workload(ctx: Context, cluster: str, objs: Sequence[Obj]) -> Iterable[Finding]:
    """A drain without a PDB may take every replica of a model at once."""
    pdbs = [o for o in objs if o.kind == "PodDisruptionBudget"]
    for obj in objs:
        if obj.kind in WORKLOADS and not any(_selects(p, obj) for p in pdbs):
            yield obj, "no PodDisruptionBudget selects its pods"


def immutable_images(ctx: Context, cluster: str, objs: Sequence[Obj]) -> Iterable[Finding]:
    """On the night a tag can be repointed under us; a digest cannot. Broadcast stacks only."""
    if ctx.spec.policy.stage is not Stage.BROADCAST:
        return
    for obj in objs:
        for path, pod in pod_specs(obj.manifest):
            for c in _containers(pod):
                if not IMAGE_DIGEST.search(c.get("image", "")):
                    yield obj, f"{path}: container '{c['name']}' image '{c.get('image')}' is a mutable tag (pin @sha256:...)"


def _pod_security(pod: dict[str, Any], root_allowed: bool = False) -> Iterator[str]:
    """Pod Security Standards, `restricted` profile (the namespaces enforce it as well); with
    `root_allowed`, every rule but running as root and adding CHOWN (the node-cache fillers and
    the containers that hand directories to the engines' user: podpolicy.directory_owner_security)."""
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            yield f"{field} is true"
    for v in pod.get("volumes", []):
        if "hostPath" in v:
            yield f"volume '{v['name']}' is a hostPath"
    psc = pod.get("securityContext") or {}
    for c in _containers(pod):
        sc = c.get("securityContext") or {}
        name = f"container '{c['name']}'"
        if sc.get("privileged"):
            yield f"{name} is privileged"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{name} does not set allowPrivilegeEscalation: false"
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield f"{name} does not drop ALL capabilities"
        allowed = {"NET_BIND_SERVICE", "CHOWN"} if root_allowed else {"NET_BIND_SERVICE"}
        if set(caps.get("add") or []) - allowed:
            yield f"{name} adds capabilities {sorted(set(caps['add']) - allowed)}"
        if not root_allowed and not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            yield f"{name} may run as root (runAsNonRoot not true)"
        if not root_allowed and sc.get("runAsUser", psc.get("runAsUser")) == 0:
            yield f"{name} runs as user 0"
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"{name} has no RuntimeDefault/Localhost seccomp profile"
        if any(p.get("hostPort") for p in c.get("ports", [])):
            yield f"{name} uses a hostPort"


def restricted_pod_security(ctx: Context, cluster: str, objs: Sequence[Obj]) -> Iterable[Finding]:
    """Every pod meets the restricted profile and every namespace enforces it, but for the one
    exception: the weights namespace enforces baseline, and its pods (the node-cache fillers) may
    run as root, every other restricted rule kept (podpolicy.NODE_CACHE_ENFORCE says why)."""
    exempt = weights_namespace(ctx.spec)
    for obj in objs:
        if obj.kind == "Namespace":
            mode = obj.manifest["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
            expected = NODE_CACHE_ENFORCE if obj.name == exempt else "restricted"
            if mode != expected:
                yield obj, f"pod-security.kubernetes.io/enforce is {mode!r}, expected {expected!r}"
        root_allowed = obj.manifest["metadata"].get("namespace") == exempt
        for path, pod in pod_specs(obj.manifest):
            for problem in _pod_security(pod, root_allowed):
                yield obj, f"{path}: {problem}"


def load_balancer_source_ranges(ctx: Context, cluster: str, objs: Sequence[Obj]) -> Iterable[Finding]:
    """A LoadBalancer without source ranges is open to the whole internet on the busiest night."""
    for obj in objs:
        spec = obj.manifest.get("spec") or {}
        if obj.kind == "Service" and spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerSourceRanges"):
            yield obj, "type LoadBalancer without spec.loadBalancerSourceRanges"


def broadcast_pools_frozen(ctx: Context, cluster: str, objs: Sequence[Obj]) -> Iterable[Finding]:
    """Broadcast node pools are protected from `pulumi destroy` and closed to voluntary disruption
    (consolidation, drift, expiry) for the whole window."""
    if ctx.spec.policy.stage is not Stage.BROADCAST:
        return
    found = next((c for c in ctx.spec.clusters if c.name == cluster), None)
    if found is not None:
        yield from provisioners.for_cluster(found).frozen_findings(ctx.spec, objs)


def autoscaler_covers_peak(ctx: Context, cluster: str, objs: Sequence[Obj]) -> Iterable[Finding]:
    """An autoscaler capped under the plan's peak replicas caps the night below its forecast."""
    models = {m.name: m for m in ctx.plan.cluster(cluster).models}  # by workload: the scale target's name
    for obj in objs:
        spec = obj.manifest.get("spec") or {}
        if obj.kind == "ScaledObject":
            field, top = "maxReplicaCount", spec.get("maxReplicaCount", 100)  # KEDA's default
        elif obj.kind == "HorizontalPodAutoscaler":
            field, top = "maxReplicas", spec.get("maxReplicas")
        else:
            continue
        target = spec.get("scaleTargetRef", {}).get("name", "")
        model, need, of = models.get(target), 0, ""
        if model is not None:
            need = int(model.replicas.value)
        elif (shard := re.fullmatch(r"(.+)-s([0-9]+)", target)) and shard.group(1) in models:
            # A picker shard (builders/shards.py): its share of the workload's peak.
            model = models[shard.group(1)]
            count = sum(1 for o in objs if o.kind == obj.kind and re.fullmatch(
                rf"{re.escape(shard.group(1))}-s[0-9]+", (o.manifest.get("spec") or {}).get("scaleTargetRef", {}).get("name", "")))
            need = shard_pods(int(model.replicas.value), count, int(shard.group(2)))
            of = f", shard {shard.group(2)} of {count}: {need}"
        if model is not None and top is not None and top < need:
            yield obj, (f"{field} {top} is below the plan's peak of {int(model.replicas.value)} replicas "
                        f"for '{model.name}'{of} ({model.replicas.why})")


def no_load_replay_in_broadcast(ctx: Context, cluster: str, objs: Sequence[Obj]) -> Iterable[Finding]:
    """Synthetic load belongs to rehearsals: on the night it would take capacity from viewers."""
    if ctx.spec.policy.stage is not Stage.BROADCAST:
        return
    for obj in objs:
        labels = [obj.manifest["metadata"].get("labels") or {}, *_pod_labels(obj.manifest)]
        if any(lab.get("app.kubernetes.io/component") == loadreplay.COMPONENT for lab in labels):
            yield obj, f"a {loadreplay.COMPONENT} object in a broadcast stack (rehearsal stages only)"


def _priority(pod: dict[str, Any], classes: dict[str, int]) -> int:
    """A pod's priority as the admission controller sets it (no class, no global default: 0)."""
    return classes.get(pod.get("priorityClassName", ""), 0)


def serving_outranks_warm_gate(ctx: Context, cluster: str, objs: Sequence[Obj]) -> Iterable[Finding]:
    """In a shortage the scheduler preempts lower priorities first: every model server, router
    (SGLang's, or an endpoint picker: without it the model is down) and edge pod must outrank every
    warm-gate pod (pre-pullers, node-cache fillers), or a pre-puller could hold the place a replica
    needs."""
    classes = {o.name: int(o.manifest.get("value", 0)) for o in objs if o.kind == "PriorityClass"}
    component = lambda o: o.manifest["metadata"].get("labels", {}).get("app.kubernetes.io/component")  # noqa: E731
    warm = [(o, _priority(pod, classes)) for o in objs if component(o) == "warm-gate" for _, pod in pod_specs(o.manifest)]
    if not warm:
        return
    top, highest = max(warm, key=lambda w: w[1])
    for obj in objs:
        if component(obj) not in ("inference", "router", "live-edge"):
            continue
        for path, pod in pod_specs(obj.manifest):
            if _priority(pod, classes) <= highest:
                yield obj, (f"{path}.priorityClassName '{pod.get('priorityClassName', '')}' ({_priority(pod, classes)}) "
                            f"does not outrank warm-gate {describe(top)} ({highest})")


CHECKS: dict[str, Check] = {
    "gpu-limits-and-toleration": gpu_limits_and_toleration,
    "pdb-per-workload": pdb_per_workload,
    "immutable-images": immutable_images,
    "restricted-pod-security": restricted_pod_security,
    "load-balancer-source-ranges": load_balancer_source_ranges,
    "broadcast-pools-frozen": broadcast_pools_frozen,
    "autoscaler-covers-peak": autoscaler_covers_peak,
    "no-load-replay-in-broadcast": no_load_replay_in_broadcast,
    "serving-outranks-warm-gate": serving_outranks_warm_gate,
}


def check_cluster(ctx: Context, cluster: str, objs: Sequence[Obj], only: Iterable[str] | None = None) -> list[Violation]:
    """Every violation of the named checks (all by default) among one cluster's objects."""
    return [Violation(name, cluster, describe(obj), message)
            for name in (only or CHECKS) for obj, message in CHECKS[name](ctx, cluster, objs)]


def check_event(objects: EventObjects) -> list[Violation]:
    ctx = Context(objects.spec, objects.plan)
    return [v for c in objects.clusters
            for v in check_cluster(ctx, c.cluster.name, [o for u in c.units for o in u.objects])]
