"""NetworkPolicies: every namespace the kit owns denies all traffic, then allows exactly the night's flows.

Allowed, and nothing else:
- every pod -> the cluster DNS (kube-dns in kube-system, port 53);
- the Gateway's Envoy proxies -> each model server's HTTP port (the only way in for clients), or
  the model's router where it is disaggregated. A proxy is known by its namespace (the
  `kubernetes.io/metadata.name` label the API server sets, clusters[].gatewayNamespace: Envoy
  Gateway's controller namespace, where it runs the proxies) and Envoy Gateway's `owning-gateway`
  labels: labels alone any pod in any namespace could wear, and so pass authentication;
- Prometheus -> the metrics ports it scrapes (the model servers serve /metrics on their HTTP port);
- the Gateway's Envoy proxies -> each model's endpoint picker (EPP) on its ext_proc gRPC port; the
  EPP -> the pods that serve the model's HTTP (it reads their /metrics there) and -> the API server
  (it watches its InferencePool and pods; the API server has no pod labels to select, so its
  addresses, clusters[].apiServerCidrs, on 443/6443: only the cluster knows them, and without
  them any address on those ports, which `validate` warns about);
- the pods of one model <-> each other, where a replica spans nodes (the LeaderWorkerSet group's
  rendezvous and NCCL traffic use ports the engines choose) or the model is disaggregated (the
  decode servers fetch the KV cache from the prefill servers: bootstrap port and transfer side
  channels);
- a colocated model's endpoint picker: from the Gateway's Envoy proxies (ext-proc) and Prometheus;
  to its model servers' HTTP port and the API server (builders/routing.py);
- a disaggregated model's router: from the Gateway's Envoy proxies; to its model servers' HTTP
  port, and to the API server's port (it watches the namespace's pods to find them);
- the weights staging Jobs -> HTTPS (they download from the model hub or S3) and the ports of the
  endpoints models[].weightsFrom names; the node-cache fillers have no network at all;
- rehearsal only: the load replay's pods -> each model server's HTTP port (builders/loadreplay.py);
- viewers -> each live edge's HTTP port (from its source ranges when it has them); the edge pods
  -> their shields' HTTP port; the shields -> the origins' ports (an origin given by IP address:
  that address only). Only the shields reach the origins.
The kubelet's probes come from the node and are not subject to these policies in the common
CNIs (Calico, Cilium, the VPC CNI's policy agent). The monitoring namespace holds rules only, so
it denies everything but DNS.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from peaknight.addons import releases
from peaknight.builders import loadreplay, routing, warmup
from peaknight.builders.cluster_base import OWNING_GATEWAY_NAME, OWNING_GATEWAY_NAMESPACE, gateway_name
from peaknight.builders import inference
from peaknight.builders.inference import selector as model_selector, serving_pods
from peaknight.builders.objects import (Obj, Unit, edge_namespace, inference_namespace, meta, monitoring_namespace,
                                       weights_namespace)
from peaknight.edges import live, logs as edge_logs
from peaknight.edges import nginx as edge_nginx
from peaknight.engines import base as engines
from peaknight.plan.capacity import ClusterPlan
from peaknight.spec import origins as origin_grammar
from peaknight.spec import weights_from
from peaknight.spec.stack import Cluster, StackSpec

NAMESPACE_LABEL = "kubernetes.io/metadata.name"   # set by the API server on every namespace
KUBE_DNS = {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
# prometheus-operator labels every Prometheus pod it runs with this name.
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}
HTTPS = 443
# The Kubernetes API server: 443 (EKS, VKE endpoints, the kubernetes Service) or 6443 (kubeadm's default).
API_SERVER_PORTS = (443, 6443)
_IN_CLUSTER = re.compile(r"https?://[^./:]+\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?(?::\d+)?(?:/.*)?")


def prometheus_namespace(cluster: Cluster) -> str:
    """Where the Prometheus that scrapes runs: the namespace in an in-cluster prometheusUrl
    (`<service>.<namespace>.svc`), else the prometheusStack add-on's."""
    match = _IN_CLUSTER.fullmatch(cluster.prometheus_url)
    return match.group(1) if match else releases.chart(releases.PROMETHEUS_STACK).namespace


def _policy(spec: StackSpec, name: str, namespace: str, pods: dict[str, Any], ingress: list[dict[str, Any]] | None,
            egress: list[dict[str, Any]] | None) -> Obj:
    """A policy for `pods`; a direction given (even empty) is restricted to its rules."""
    body: dict[str, Any] = {"podSelector": pods, "policyTypes": []}
    for kind, rules in (("Ingress", ingress), ("Egress", egress)):
        if rules is not None:
            body["policyTypes"].append(kind)
            body[kind.lower()] = rules
    return Obj({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": meta(spec, "network-policy", name, namespace), "spec": body})


def _ports(*ports: int | str, protocol: str = "TCP") -> list[dict[str, Any]]:
    return [{"protocol": protocol, "port": p} for p in ports]


def _namespace_baseline(spec: StackSpec, namespace: str) -> list[Obj]:
    """Deny everything in the namespace, then let every pod resolve names."""
    return [_policy(spec, "default-deny", namespace, {}, [], []),
            _policy(spec, "allow-dns", namespace, {}, None,
                    [{"to": [KUBE_DNS], "ports": _ports(53, protocol="UDP") + _ports(53)}])]


def _prometheus(cluster: Cluster) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: prometheus_namespace(cluster)}},
            "podSelector": {"matchLabels": PROMETHEUS_POD}}


def _api_server(cluster: Cluster) -> dict[str, Any]:
    """Egress to the API server: its addresses where the stack gives them, else its ports alone."""
    rule: dict[str, Any] = {"ports": _ports(*API_SERVER_PORTS)}
    if cluster.api_server_cidrs:
        rule["to"] = [{"ipBlock": {"cidr": cidr}} for cidr in cluster.api_server_cidrs]
    return rule


def gateway_proxies(spec: StackSpec, cluster: Cluster) -> dict[str, Any]:
    """The Gateway's Envoy proxies as a peer no other pod can pass for: Envoy Gateway's namespace
    by the label the API server sets, and the labels it gives the event Gateway's proxies."""
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: cluster.gateway_namespace}},
            "podSelector": {"matchLabels": {OWNING_GATEWAY_NAME: gateway_name(spec),
                                            OWNING_GATEWAY_NAMESPACE: inference_namespace(spec)}}}


def _inference(spec: StackSpec, cluster: Cluster, plan: ClusterPlan) -> list[Obj]:
    ns = inference_namespace(spec)
    gateway = gateway_proxies(spec, cluster)
    objs = _namespace_baseline(spec, ns)
    # Rehearsal: the load replay's pods (in the weights namespace, beside the weight sources whose
    # tokenizer they read) call the model servers directly (builders/loadreplay.py).
    load = [_load_pods(spec)] if loadreplay.enabled(spec) else []
    for model in spec.models:
        pods = {"matchLabels": model_selector(spec, model)}
        workloads = plan.phases(model.name)
        if model.disaggregated:
            # Clients reach a disaggregated model through its router only; the router: from the
            # Gateway, to the servers' HTTP port and to the API server (it watches the namespace's pods).
            router = {"matchLabels": inference.router_selector(spec, model)}
            objs.append(_policy(spec, f"{model.name}-serving", ns, pods,
                                [{"from": [{"podSelector": router}, _prometheus(cluster), *load],
                                  "ports": _ports(engines.PORT)}], None))
            objs.append(_policy(spec, inference.router_name(model), ns, router,
                                [{"from": [gateway], "ports": _ports(engines.PORT)}],
                                [{"to": [{"podSelector": pods}], "ports": _ports(engines.PORT)},
                                 _api_server(cluster)]))
        else:
            # The Gateway's Envoy sends to the pod its InferencePool's endpoint picker chose.
            epp = {"podSelector": {"matchLabels": routing.epp_selector(spec, model)}}
            objs.append(_policy(spec, f"{model.name}-serving", ns, pods,
                                [{"from": [gateway, _prometheus(cluster), epp, *load], "ports": _ports(engines.PORT)}],
                                None))
            serving = {"podSelector": {"matchLabels": serving_pods(spec, model, workloads[0])}}
            objs.append(_policy(spec, routing.epp_name(model), ns, epp["podSelector"],
                                [{"from": [gateway], "ports": _ports(routing.EPP_GRPC_PORT)},
                                 {"from": [_prometheus(cluster)], "ports": _ports(routing.EPP_METRICS_PORT)}],
                                [{"to": [serving], "ports": _ports(engines.PORT)},
                                 _api_server(cluster)]))
        if model.disaggregated or any(w.nodes_per_replica > 1 for w in workloads):
            # A group's rendezvous and NCCL, and between prefill and decode servers the KV bootstrap
            # and transfer side channels: ports the engines choose.
            group = [{"podSelector": pods}]
            objs.append(_policy(spec, f"{model.name}-group", ns, pods, [{"from": group}], [{"to": group}]))
    return objs


def _load_pods(spec: StackSpec) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: weights_namespace(spec)}},
            "podSelector": {"matchLabels": loadreplay.pod_selector(spec)}}


def _weights(spec: StackSpec) -> list[Obj]:
    """The staging Jobs download over HTTPS (the hub, S3) and from the ports of the endpoints the
    models' weightsFrom name (a hub mirror, an S3-compatible store); the fillers need no network
    (the kubelet mounts their volumes), so the namespace's default deny holds them. Rehearsal: the
    load replay's pods reach the model servers' port and nothing else."""
    ns = weights_namespace(spec)
    ports = sorted({HTTPS, *(weights_from.port(url) for m in spec.models for url in m.weights_from.endpoints)})
    objs = [*_namespace_baseline(spec, ns),
            _policy(spec, "weights-download", ns, {"matchLabels": warmup.STAGING_ROLE}, None,
                    [{"ports": _ports(*ports)}])]
    if loadreplay.enabled(spec):
        servers = [{"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: inference_namespace(spec)}},
                    "podSelector": {"matchLabels": model_selector(spec, m)}} for m in spec.models]
        objs.append(_policy(spec, loadreplay.COMPONENT, ns, _load_pods(spec)["podSelector"], [],
                            [{"to": servers, "ports": _ports(engines.PORT)}]))
    return objs


def _origin_peer(origin: origin_grammar.Origin) -> dict[str, Any]:
    """Egress to one origin: its address where it is an IP, its port alone where it is a name
    (a NetworkPolicy cannot match DNS names)."""
    rule: dict[str, Any] = {"ports": _ports(origin.port)}
    try:
        address = ipaddress.ip_address(origin.host.strip("[]"))
    except ValueError:
        return rule
    rule["to"] = [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}]
    return rule


def _edges(spec: StackSpec, cluster: Cluster) -> list[Obj]:
    ns = edge_namespace(spec)
    objs = _namespace_baseline(spec, ns)
    for edge in spec.edges:
        pods = {"matchLabels": live.selector(spec, edge)}
        shields = {"matchLabels": live.selector(spec, edge, "shield")}
        viewers: dict[str, Any] = {"ports": _ports(edge_nginx.HTTP_PORT)}
        if edge.source_ranges:
            viewers["from"] = [{"ipBlock": {"cidr": cidr}} for cidr in edge.source_ranges]
        scrape = {"from": [_prometheus(cluster)], "ports": _ports(live.EXPORTER_PORT, edge_logs.EXPORTER_PORT)}
        to_shields = {"to": [{"podSelector": shields}], "ports": _ports(edge_nginx.HTTP_PORT)}
        objs.append(_policy(spec, f"{edge.name}-viewers", ns, pods, [viewers, scrape], [to_shields]))
        from_edges = {"from": [{"podSelector": pods}], "ports": _ports(edge_nginx.HTTP_PORT)}
        origins = list({repr(rule): rule for rule in map(_origin_peer, origin_grammar.of(edge))}.values())
        objs.append(_policy(spec, f"{edge.name}-shields", ns, shields, [from_edges, scrape], origins))
    return objs


def build(spec: StackSpec, cluster: Cluster, plan: ClusterPlan) -> Unit:
    objs = _inference(spec, cluster, plan) + _edges(spec, cluster)
    objs += _namespace_baseline(spec, monitoring_namespace(spec)) + _weights(spec)
    return Unit("NetworkPolicies", cluster.name, tuple(objs))
