"""What every cluster of the event gets first: its namespaces, its PriorityClass and its Gateway."""
from __future__ import annotations

from peaknight.builders.objects import Obj, Unit, edge_namespace, inference_namespace, meta, monitoring_namespace, priority_class
from peaknight.spec.stack import Cluster, StackSpec

# Restricted Pod Security on every namespace the kit owns: the admission controller enforces
# what the builders already write, so a hand edit cannot slip a privileged pod in.
_POD_SECURITY = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}


def gateway_name(spec: StackSpec) -> str:
    return f"{spec.event.name}-gateway"


def build(spec: StackSpec, cluster: Cluster) -> Unit:
    namespaces = [inference_namespace(spec), edge_namespace(spec), monitoring_namespace(spec)]
    objs = [Obj({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": meta(spec, "namespace", ns, **_POD_SECURITY)}, protect=spec.policy.protect)
            for ns in namespaces]
    broadcast = spec.policy.stage.value == "broadcast"
    objs.append(Obj({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": meta(spec, "priority", priority_class(spec)),
        # Broadcast inference outranks every ordinary workload (system-* classes stay above).
        "value": 1_000_000 if broadcast else 10_000,
        "globalDefault": False,
        "preemptionPolicy": "PreemptLowerPriority" if broadcast else "Never",
        "description": f"{spec.event.name}: {'broadcast-critical inference' if broadcast else 'rehearsal workloads'}",
    }))
    objs.append(Obj({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": meta(spec, "gateway", gateway_name(spec), inference_namespace(spec)),
        "spec": {
            "gatewayClassName": cluster.gateway_class,
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                           "allowedRoutes": {"namespaces": {"from": "Same"}}}],
        },
    }))
    return Unit("ClusterBase", cluster.name, tuple(objs))
