"""What every cluster of the event gets first: its namespaces, its PriorityClass and its Gateway."""
from __future__ import annotations

from peaknight.builders.objects import Scope, Obj, Unit, edge_namespace, inference_namespace, meta, monitoring_namespace, priority_class
from peaknight.spec.stack import Cluster

# Restricted Pod Security on every namespace the kit owns: the admission controller enforces
# what the builders already write, so a hand edit cannot slip a privileged pod in.
_POD_SECURITY = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}


def gateway_name(scope: Scope) -> str:
    return f"{scope.event.name}-gateway"


def build(scope: Scope, cluster: Cluster) -> Unit:
    namespaces = [inference_namespace(scope), edge_namespace(scope), monitoring_namespace(scope)]
    objs = [Obj({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": meta(scope, "namespace", ns, **_POD_SECURITY)}, protect=scope.policy.protect)
            for ns in namespaces]
    broadcast = scope.policy.stage.value == "broadcast"
    objs.append(Obj({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": meta(scope, "priority", priority_class(scope)),
        # Broadcast inference outranks every ordinary workload (system-* classes stay above).
        "value": 1_000_000 if broadcast else 10_000,
        "globalDefault": False,
        "preemptionPolicy": "PreemptLowerPriority" if broadcast else "Never",
        "description": f"{scope.event.name}: {'broadcast-critical inference' if broadcast else 'rehearsal workloads'}",
    }))
    objs.append(Obj({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": meta(scope, "gateway", gateway_name(scope), inference_namespace(scope)),
        "spec": {
            "gatewayClassName": cluster.gateway_class,
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                           "allowedRoutes": {"namespaces": {"from": "Same"}}}],
        },
    }))
    return Unit("ClusterBase", cluster.name, tuple(objs))
