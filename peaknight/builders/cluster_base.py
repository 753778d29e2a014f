"""What every cluster of the event gets first: its namespaces, its PriorityClasses and its Gateway."""
from __future__ import annotations

from typing import Any

from peaknight.builders import podpolicy
from peaknight.builders.objects import (Obj, Scope, Tier, Unit, edge_namespace, inference_namespace, meta,
                                       monitoring_namespace, priority_class, priority_value, weights_namespace)
from peaknight.plan.capacity import GatewayPlan
from peaknight.provisioners import registry as provisioners
from peaknight.spec import profiles
from peaknight.spec.stack import Cluster



# Envoy Gateway labels the data-plane pods of a Gateway with its name and namespace.
OWNING_GATEWAY_NAME = "gateway.envoyproxy.io/owning-gateway-name"
OWNING_GATEWAY_NAMESPACE = "gateway.envoyproxy.io/owning-gateway-namespace"
# The Gateway's one listener: HTTPS with the certificate in this Secret (the operator creates it, or
# cert-manager does: README "Security"). No HTTP listener, not even a redirect: a client that
# follows one has already sent its API key or bearer token in clear.
HTTPS_PORT = 443
TLS_SECRET_SUFFIX = "-gateway-tls"

_TIER_MEANING = {Tier.ASSISTANT: "the assistant's model servers (models[].tier assistant)",
                 Tier.SERVING: "the other model servers and the live edge",
                 Tier.WARM: "image pre-pullers and weight staging: preempted first"}


def gateway_name(scope: Scope) -> str:
    return f"{scope.event.name}-gateway"


def tls_secret(scope: Scope) -> str:
    """The kubernetes.io/tls Secret (tls.crt, tls.key) the Gateway's HTTPS listener serves, in the
    inference namespace beside the Gateway."""
    return f"{scope.event.name}{TLS_SECRET_SUFFIX}"


def envoy_proxy(scope: Scope, plan: GatewayPlan) -> dict[str, Any]:
    """Envoy Gateway's data plane for the event's Gateway (gateway.envoyproxy.io/v1alpha1
    EnvoyProxy, referenced by the Gateway's infrastructure.parametersRef): the planned pods, spread
    over zones, at most one down at a time, and no autoscaler: the admission limits are per Envoy
    pod, divided over exactly these (plan/admission.py). Its default is one Envoy replica per Gateway."""
    g = profiles.load().gateway
    ns = inference_namespace(scope)
    pods = {OWNING_GATEWAY_NAME: gateway_name(scope), OWNING_GATEWAY_NAMESPACE: ns}
    resources = {"requests": {"cpu": str(g.pod_vcpu), "memory": f"{g.pod_memory_gib}Gi"},
                 "limits": {"memory": f"{g.pod_memory_gib}Gi"}}
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyProxy",
        "metadata": {**meta(scope, "gateway", gateway_name(scope), ns),
                     "annotations": {"peaknight.io/envoy-pods": plan.pods.why}},
        "spec": {"provider": {"type": "Kubernetes", "kubernetes": {
            "envoyDeployment": {
                "replicas": int(plan.pods.value),
                "container": {"resources": resources},
                "pod": {"topologySpreadConstraints": podpolicy.zone_spread(pods, by_node=True)},
            },
            "envoyPDB": {"maxUnavailable": 1},
        }}},
    }


def build(scope: Scope, cluster: Cluster, gateway: GatewayPlan | None = None) -> Unit:
    # Restricted Pod Security on every namespace the kit owns: the admission controller enforces
    # what the builders already write, so a hand edit cannot slip a privileged pod in. The weights
    # namespace enforces baseline for its node-cache fillers (podpolicy.NODE_CACHE_ENFORCE).
    namespaces = [(inference_namespace(scope), "restricted"), (edge_namespace(scope), "restricted"),
                  (monitoring_namespace(scope), "restricted"), (weights_namespace(scope), podpolicy.NODE_CACHE_ENFORCE)]
    objs = [Obj({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": meta(scope, "namespace", ns, **podpolicy.namespace_security(enforce))},
                protect=scope.policy.protect)
            for ns, enforce in namespaces]
    broadcast = scope.policy.stage.value == "broadcast"
    objs += [Obj({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": meta(scope, "priority", priority_class(scope, tier)),
        # Broadcast serving outranks every ordinary workload (system-* classes stay above); the
        # warm gate never evicts anything to get a place, a rehearsal nothing at all.
        "value": priority_value(scope, tier),
        "globalDefault": False,
        "preemptionPolicy": "PreemptLowerPriority" if broadcast and tier is not Tier.WARM else "Never",
        "description": f"{scope.event.name} {scope.policy.stage.value}: {_TIER_MEANING[tier]}",
    }) for tier in Tier]
    gateway_spec: dict[str, Any] = {
        "gatewayClassName": cluster.gateway_class,
        "listeners": [{"name": "https", "protocol": "HTTPS", "port": HTTPS_PORT,
                       "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": tls_secret(scope)}]},
                       "allowedRoutes": {"namespaces": {"from": "Same"}}}],
    }
    if gateway is not None:
        objs.append(Obj(envoy_proxy(scope, gateway)))
        gateway_spec["infrastructure"] = {"parametersRef": {
            "group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": gateway_name(scope)}}
    objs.append(Obj({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": meta(scope, "gateway", gateway_name(scope), inference_namespace(scope)),
        "spec": gateway_spec,
    }))
    # The provisioner's cloud resources of the whole cluster (VKE's RDMA component), under the
    # cluster's cloud provider like its node pools.
    return Unit("ClusterBase", cluster.name, tuple(objs), provisioners.for_cluster(cluster).cluster_resources(scope, cluster))
