"""Live edges: the nginx edge-cache tier in front of the stream's origins, one unit per edge per cluster.

The pods run the config edge_nginx renders (a ConfigMap, rolled by its checksum), unprivileged,
with every writable path on one emptyDir. Two sidecars export metrics: nginx-prometheus-exporter
(stub_status: connections, for the HPA) and prometheus-nginxlog-exporter (edge_logs: per-request
status and cache status, for the hit ratio, origin egress and 5xx rate), both on one metrics Service. Their count comes from the plan (capacity.plan_edge);
an HPA moves it on CPU and on connections per pod, never under the plan in a broadcast stack.
The signed-URL secret comes from a Secret the operator creates (edge_nginx.secret_name, key
edge_nginx.SECRET_KEY): it is never rendered, because rendered manifests are plain text.
"""
from __future__ import annotations

import math
from typing import Any

from peaknight.edges import logs as edge_logs
from peaknight.edges import nginx as edge_nginx
from peaknight.plan.capacity import EdgePlan
from peaknight.builders import podpolicy
from peaknight.builders.objects import Obj, Scope, Tier, Unit, edge_namespace, labels, meta, priority_class
from peaknight.provisioners import registry as provisioners
from peaknight.spec import profiles
from peaknight.spec.stack import Cluster, Edge

RUN_AS_USER = 101                  # the nginx image's unprivileged user
EXPORTER_PORT = 9113
CONF_DIR = "/etc/nginx/edge"
LOG_EXPORTER_CONF_DIR = "/etc/log-exporter"
SECRET_DIR = "/etc/nginx/secret"
CHECKSUM_ANNOTATION = "peaknight.io/config-sha256"
LOG_EXPORTER_CHECKSUM_ANNOTATION = "peaknight.io/log-exporter-config-sha256"
CONNECTIONS_METRIC = "nginx_connections_active"   # from the exporter, served to the HPA by prometheus-adapter
DRAIN_SECONDS = 5                  # endpoints drop the pod before nginx starts its graceful quit


SHIELD_PORT = 80
ORIGIN_CA_VOLUME = "origin-ca"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"   # set by the StatefulSet controller on each pod


def selector(scope: Scope, edge: Edge, role: str = "edge") -> dict[str, str]:
    return {"app.kubernetes.io/name": workload_name(edge, role), "peaknight.io/event": scope.event.name}


def workload_name(edge: Edge, role: str) -> str:
    return edge.name if role == "edge" else shield_name(edge)


def shield_name(edge: Edge) -> str:
    return f"{edge.name}-shield"


def metrics_name(edge: Edge, role: str = "edge") -> str:
    return f"{workload_name(edge, role)}-metrics"


def node_pool_name(edge: Edge) -> str:
    """The edge's own node pool (podpolicy.POOL_LABEL value), made by the cluster's provisioner."""
    return f"{edge.name}-nodes"


def shield_addresses(scope: Scope, edge: Edge, shields: int) -> tuple[str, ...]:
    """One Service per shield pod: a stable virtual IP per ordinal, so the edges' consistent hash
    ring (resolved once when nginx starts) survives a shield pod being replaced on a new IP."""
    return tuple(f"{shield_name(edge)}-{i}.{edge_namespace(scope)}.svc:{SHIELD_PORT}" for i in range(shields))


def log_exporter_config_name(edge: Edge) -> str:
    return f"{edge.name}-log-exporter"


def _containers(edge: Edge, role: str) -> list[dict[str, Any]]:
    layout = edge_nginx.POD
    # Edges check the viewers' signed URLs; shields hold the origins' CA bundle when it is not the image's.
    mounts = ([{"name": "secure-link", "mountPath": SECRET_DIR, "readOnly": True}] if role == "edge" else
              [{"name": ORIGIN_CA_VOLUME, "mountPath": edge_nginx.ORIGIN_CA_DIR, "readOnly": True}]
              if edge.origin_ca_secret else [])
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2}
    nginx = {
        "name": "nginx",
        "image": edge.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["nginx", "-c", f"{CONF_DIR}/nginx.conf", "-e", "stderr", "-g", "daemon off;"],
        "ports": [{"name": "http", "containerPort": layout.http_port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": str(edge.pod_cpu), "memory": f"{edge.pod_memory_gib}Gi"},
                      "limits": {"memory": f"{edge.pod_memory_gib}Gi"}},
        "readinessProbe": {**probe, "failureThreshold": 2},
        "livenessProbe": {**probe, "failureThreshold": 6},
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
        "volumeMounts": [{"name": "conf", "mountPath": CONF_DIR, "readOnly": True}, *mounts,
                         {"name": "state", "mountPath": layout.state_dir}],
        "securityContext": podpolicy.container_security(),
    }
    exporter = {
        "name": "exporter",
        "image": edge.exporter_image,
        "imagePullPolicy": "IfNotPresent",
        "args": [f"--nginx.scrape-uri=http://127.0.0.1:{layout.status_port}/stub_status",
                 f"--web.listen-address=:{EXPORTER_PORT}"],
        "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": podpolicy.container_security(),
    }
    log_exporter = {
        "name": "log-exporter",
        "image": edge.log_exporter_image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["-config-file", f"{LOG_EXPORTER_CONF_DIR}/{edge_logs.CONFIG_FILE}"],
        "ports": [{"name": "log-metrics", "containerPort": edge_logs.EXPORTER_PORT, "protocol": "TCP"}],
        # One parsed line per viewer request: more CPU than the stub_status scraper, still small.
        "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [{"name": "log-exporter-conf", "mountPath": LOG_EXPORTER_CONF_DIR, "readOnly": True}],
        "securityContext": podpolicy.container_security(),
    }
    guard = {
        "name": "cache-guard",
        # The nginx image's own sh, df, awk and sleep: no other image to pin.
        "image": edge.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", edge_nginx.cache_guard_script(edge_nginx.cache_gib(edge, role))],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
        "volumeMounts": [{"name": "state", "mountPath": layout.state_dir}],
        "securityContext": podpolicy.container_security(),
    }
    return [nginx, exporter, log_exporter, guard]



def _pod(scope: Scope, edge: Edge, role: str, conf: str, log_conf: str) -> dict[str, Any]:
    """The pod template both tiers share: the tier's nginx.conf, its two metrics sidecars, zone and
    node spread, and the volumes its role needs."""
    hold = math.ceil(edge_nginx.reload_hold_ms(edge) / 1000)
    sel = selector(scope, edge, role)
    name = workload_name(edge, role)
    volumes: list[dict[str, Any]] = [
        {"name": "conf", "configMap": {"name": f"{name}-nginx"}},
        {"name": "log-exporter-conf", "configMap": {"name": log_exporter_config_name(edge)}},
    ]
    if role == "edge":
        # Created by the operator; the pod does not start without it (unsigned links never served).
        volumes.append({"name": "secure-link", "secret": {"secretName": edge_nginx.secret_name(edge),
                                                          "items": [{"key": edge_nginx.SECRET_KEY, "path": edge_nginx.SECRET_KEY}],
                                                          "defaultMode": 0o440}})
    elif edge.origin_ca_secret:
        volumes.append({"name": ORIGIN_CA_VOLUME, "secret": {
            "secretName": edge.origin_ca_secret, "defaultMode": 0o444,
            "items": [{"key": edge_nginx.ORIGIN_CA_KEY, "path": edge_nginx.ORIGIN_CA_KEY}]}})
    volumes.append({"name": "state", "emptyDir": {"sizeLimit": f"{edge_nginx.cache_gib(edge, role)}Gi"}})
    return {
        "metadata": {"labels": {**labels(scope, "live-edge", name), **sel},
                     # A changed config changes the template, so the pods roll onto it.
                     "annotations": {CHECKSUM_ANNOTATION: edge_nginx.checksum(conf),
                                     LOG_EXPORTER_CHECKSUM_ANNOTATION: edge_nginx.checksum(log_conf)}},
        "spec": {
            "priorityClassName": priority_class(scope, Tier.SERVING),
            # The edge's own account, without a token: nginx and its sidecars never call the API server.
            "serviceAccountName": edge.name,
            "automountServiceAccountToken": False,
            # A viewer's held LL-HLS reload finishes before the pod is killed.
            "terminationGracePeriodSeconds": DRAIN_SECONDS + hold + 5,
            "securityContext": podpolicy.pod_security(RUN_AS_USER),
            "containers": _containers(edge, role),
            # Egress is the NIC's: the edge's own nodes, and spread over them too, where the scheduler can.
            **podpolicy.edge_placement(node_pool_name(edge)),
            "topologySpreadConstraints": podpolicy.zone_spread(sel, by_node=True),
            "volumes": volumes,
        },
    }


def _deployment(scope: Scope, cluster: Cluster, edge: Edge, plan: EdgePlan, conf: str, log_conf: str) -> Obj:
    ns = edge_namespace(scope)
    manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {**meta(scope, "live-edge", edge.name, ns),
                     "annotations": {"peaknight.io/planned-pods": plan.pods.why,
                                     "peaknight.io/egress": plan.egress_gbps.why}},
        "spec": {
            "replicas": _min_replicas(scope, cluster, plan),
            "selector": {"matchLabels": selector(scope, edge)},
            # A new pod starts cold and fills from the shields: replace a tenth at a time, never drop one first.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "10%", "maxUnavailable": 0}},
            "template": _pod(scope, edge, "edge", conf, log_conf),
        },
    }
    # The HPA owns the replica count once the object exists; Pulumi must not reset it.
    return Obj(manifest, ignore_changes=("spec.replicas",))


def _shield_objects(scope: Scope, edge: Edge, plan: EdgePlan, log_conf: str) -> list[Obj]:
    """The shield tier: a StatefulSet (stable ordinals) with one ClusterIP Service per ordinal, the
    only pods that talk to the origins. Not autoscaled: the plan sizes it for the edge tier's ceiling."""
    ns = edge_namespace(scope)
    name = shield_name(edge)
    conf = edge_nginx.render(edge, edge_nginx.shield_tier(edge))
    shields = int(plan.shields.value)
    sel = selector(scope, edge, "shield")
    objs = [
        Obj({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(scope, "live-edge", f"{name}-nginx", ns),
             "data": {"nginx.conf": conf}}),
        # The StatefulSet's governing Service (pod DNS); the edges reach shields by the per-ordinal ones.
        Obj({"apiVersion": "v1", "kind": "Service", "metadata": meta(scope, "live-edge", name, ns),
             "spec": {"clusterIP": "None", "selector": sel,
                      "ports": [{"name": "http", "port": SHIELD_PORT, "targetPort": "http", "protocol": "TCP"}]}}),
        Obj({"apiVersion": "apps/v1", "kind": "StatefulSet",
             "metadata": {**meta(scope, "live-edge", name, ns),
                          "annotations": {"peaknight.io/planned-shields": plan.shields.why,
                                          "peaknight.io/shield-fetch": plan.shield_fetch_gbps.why,
                                          "peaknight.io/origin-egress": plan.origin_gbps.why}},
             "spec": {"replicas": shields, "serviceName": name, "podManagementPolicy": "Parallel",
                      "selector": {"matchLabels": sel},
                      # One shield at a time: its keys move to the others (and come back) while it restarts.
                      "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                      "template": _pod(scope, edge, "shield", conf, log_conf)}}),
        Obj({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(scope, "live-edge", name, ns),
             "spec": {"maxUnavailable": 1, "selector": {"matchLabels": sel}}}),
        _metrics_service(scope, edge, "shield"),
        _service_monitor(scope, edge, "shield"),
    ]
    for address in shield_addresses(scope, edge, shields):
        pod = address.split(".", 1)[0]
        objs.append(Obj({"apiVersion": "v1", "kind": "Service", "metadata": meta(scope, "live-edge", pod, ns),
                         "spec": {"type": "ClusterIP", "selector": {**sel, POD_NAME_LABEL: pod},
                                  # Published before the pod is ready: the edges resolve the name when
                                  # they start, and nginx's own health checks skip a shield that is down.
                                  "publishNotReadyAddresses": True,
                                  "ports": [{"name": "http", "port": SHIELD_PORT, "targetPort": "http",
                                             "protocol": "TCP"}]}}))
    return objs


def _min_replicas(scope: Scope, cluster: Cluster, plan: EdgePlan) -> int:
    """Broadcast pins the planned pods (pre-scaled, not reactive); a rehearsal keeps one per zone."""
    planned = int(plan.pods.value)
    return planned if scope.policy.protect else max(1, min(planned, len(cluster.zones)))


def _hpa(scope: Scope, cluster: Cluster, edge: Edge, plan: EdgePlan) -> dict[str, Any]:
    util = round(scope.policy.target_utilisation * 100)
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {**meta(scope, "live-edge", edge.name, edge_namespace(scope)),
                     "annotations": {"peaknight.io/max-pods": plan.max_pods.why,
                                     "peaknight.io/viewers-per-pod": plan.viewers_per_pod.why}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": edge.name},
            "minReplicas": _min_replicas(scope, cluster, plan),
            "maxReplicas": int(plan.max_pods.value),
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "averageUtilization": util}}},
                # One HLS viewer holds about one kept-alive connection.
                {"type": "Pods", "pods": {"metric": {"name": CONNECTIONS_METRIC}, "target": {
                    "type": "AverageValue", "averageValue": str(math.floor(plan.viewers_per_pod.value))}}},
            ],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
                # Audiences return after each act: give pods back slowly.
                "scaleDown": {"stabilizationWindowSeconds": 600,
                              "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]},
            },
        },
    }


def _viewer_service(edge: Edge, sel: dict[str, str], lb: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """Behind the cluster's ingress by default; with source ranges, the edge's own load balancer,
    open to those ranges only (Local: the client address is kept and there is no second hop), with
    the settings the cluster's provisioner says its cloud's load balancer needs (`lb`).
    Returns (annotations, spec)."""
    out: dict[str, Any] = {"type": "ClusterIP", "selector": sel,
                           "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    if not edge.source_ranges:
        return {}, out
    out.update(type="LoadBalancer", externalTrafficPolicy="Local", loadBalancerSourceRanges=list(edge.source_ranges))
    if "loadBalancerClass" in lb:
        out["loadBalancerClass"] = lb["loadBalancerClass"]
    return dict(lb.get("annotations", {})), out


def _metrics_service(scope: Scope, edge: Edge, role: str) -> Obj:
    """Metrics on their own ClusterIP Service: never on the viewers' load balancer."""
    return Obj({"apiVersion": "v1", "kind": "Service",
                "metadata": meta(scope, "live-edge", metrics_name(edge, role), edge_namespace(scope)),
                "spec": {"type": "ClusterIP", "selector": selector(scope, edge, role),
                         "ports": [{"name": "metrics", "port": EXPORTER_PORT, "targetPort": "metrics", "protocol": "TCP"},
                                   {"name": "log-metrics", "port": edge_logs.EXPORTER_PORT, "targetPort": "log-metrics",
                                    "protocol": "TCP"}]}})


def _service_monitor(scope: Scope, edge: Edge, role: str) -> Obj:
    return Obj({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                "metadata": meta(scope, "live-edge", workload_name(edge, role), edge_namespace(scope)),
                "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": metrics_name(edge, role)}},
                         "endpoints": [{"port": port, "path": "/metrics", "interval": "15s"}
                                       for port in ("metrics", "log-metrics")]}})


def _max_vcpus(edge: Edge) -> int:
    """The pool's CPU limit counts nodes at the largest instance type it may be given."""
    return max(profiles.load().edge_instance_types[n].vcpus for n in edge.node_instance_types)


def _viewer_service_obj(scope: Scope, cluster: Cluster, edge: Edge, sel: dict[str, str]) -> Obj:
    annotations, spec = _viewer_service(edge, sel, provisioners.for_cluster(cluster).load_balancer(cluster))
    metadata = meta(scope, "live-edge", edge.name, edge_namespace(scope))
    if annotations:
        metadata["annotations"] = annotations
    return Obj({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec})


def build(scope: Scope, cluster: Cluster, edge: Edge, plan: EdgePlan) -> Unit:
    ns = edge_namespace(scope)
    conf = edge_nginx.render(edge, edge_nginx.edge_tier(shield_addresses(scope, edge, int(plan.shields.value))))
    log_conf = edge_logs.exporter_config(edge)
    sel = selector(scope, edge)
    objs = [
        Obj({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(scope, "live-edge", f"{edge.name}-nginx", ns),
             "data": {"nginx.conf": conf}}),
        Obj({"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": meta(scope, "live-edge", log_exporter_config_name(edge), ns),
             "data": {edge_logs.CONFIG_FILE: log_conf}}),
        Obj({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(scope, "live-edge", edge.name, ns),
             "automountServiceAccountToken": False}),
        _deployment(scope, cluster, edge, plan, conf, log_conf),
        _viewer_service_obj(scope, cluster, edge, sel),
        _metrics_service(scope, edge, "edge"),
        Obj({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(scope, "live-edge", edge.name, ns),
             # Each drained pod's viewers refill another pod's cache: a tenth of the tier at a time.
             "spec": {"maxUnavailable": "10%", "selector": {"matchLabels": sel}}}),
        Obj(_hpa(scope, cluster, edge, plan)),
        _service_monitor(scope, edge, "edge"),
        *_shield_objects(scope, edge, plan, log_conf),
        *provisioners.for_cluster(cluster).edge_pool(
            scope, cluster, node_pool_name(edge), edge.node_instance_types,
            int(plan.nodes.value) * _max_vcpus(edge), f"{plan.nodes.why}; {plan.pods_per_node.why}"),
    ]
    return Unit("LiveEdge", edge.name, tuple(objs))
