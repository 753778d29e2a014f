"""Prefix- and load-aware routing per model: the Gateway API Inference Extension as llm-d deploys it.

Per model and cluster: an `InferencePool` (inference.networking.k8s.io/v1) selecting the pods that
serve the model's HTTP (inference.serving_pods: a multi-node group's leader), and its endpoint
picker (EPP: llm-d-router v0.10.0) with its config, ServiceAccount and RBAC, Service, monitor and
PDB. The model's HTTPRoute sends to the pool (inference.route); for each request the gateway asks
the EPP (Envoy ext_proc, gRPC on EPP_GRPC_PORT) which pod to send to, and the EPP scores the pods on
the prefix it has seen them serve (prefix-cache-scorer), their queue (queue-scorer, load-aware-
scorer) and their KV-cache use (kv-cache-utilization-scorer), read from the engines' own /metrics
under the names engines/*.py state.

Sources (read at the revisions named):
- llm-d/llm-d-router v0.10.0, config/charts/routerlib/templates: the EPP Deployment's flags, ports
  (9002 ext_proc, 9003 gRPC health, 9090 metrics), probes (gRPC service "inference-extension"),
  RBAC (pods, inferencepools; InferenceObjective / InferenceModelRewrite read, skipped when their
  CRDs are absent: pkg/epp/server/controller_manager.go) and the default plugin profile (queue 2,
  KV cache 2, prefix 3); pkg/epp/framework/plugins/datalayer/extractor/metrics/factories.go: the
  core-metrics-extractor's engineConfigs; Dockerfile.epp: runs as 65532.
- kubernetes-sigs/gateway-api-inference-extension: the InferencePool CRD (pinned in
  review/crds.lock.yaml); its README: the EPP moved to llm-d-router.
- envoyproxy/ai-gateway v1.1.0, internal/extensionserver/inferencepool.go: Envoy Gateway routes to an
  InferencePool only through Envoy AI Gateway's extension server (docs: the
  examples/inference-pool/envoy-gateway-values-addon.yaml `extensionManager.backendResources`); it
  reaches the EPP as a STRICT_DNS cluster on `<endpointPickerRef.name>.<ns>.svc` with TLS (no
  verification) and LEAST_REQUEST, and never fails open (FailureModeAllow false).
"""
from __future__ import annotations

from typing import Any

import yaml

from peaknight.builders import inference, podpolicy
from peaknight.builders.inference import INFERENCE_POOL_GROUP as POOL_GROUP, serving_pods
from peaknight.builders.objects import Obj, Scope, Unit, inference_namespace, meta, priority_class
from peaknight.engines import registry as engines
from peaknight.engines.base import PORT
from peaknight.builders import shards as sharding
from peaknight.plan import picker, saturation
from peaknight.plan.capacity import ModelPlan
from peaknight.plan.figure import Figure
from peaknight.spec import profiles
from peaknight.spec.stack import Model, StackSpec

EPP_GRPC_PORT = 9002
EPP_HEALTH_PORT = 9003
EPP_METRICS_PORT = 9090
EPP_USER = 65532  # Dockerfile.epp: USER 65532:65532
CONFIG_FILE = "epp.yaml"
# The chart's grace period: "should mirror the longest grace period of the pods within the pool" is
# its own note; an EPP that stops only ends routing decisions, the streams stay on the gateway.
EPP_GRACE_SECONDS = 130
# The gateway never fails open (ai-gateway v1.1.0): one EPP down is the model down. Two pods under
# leader election (`--ha-enable-leader-election`, llm-d-router v0.10.0 cmd/epp options: "readiness
# probes will only pass on the leader"): the leader serves with one prefix index, the other stands by.
EPP_REPLICAS = 2
# llm-d-router v0.10.0 chart default profile weights (routerlib/templates/_config.yaml).
WEIGHTS = {"queue-scorer": 2, "kv-cache-utilization-scorer": 2, "prefix-cache-scorer": 3, "load-aware-scorer": 1}


def epp_name(model: Model) -> str:
    return f"{model.name}-epp"


def epp_selector(scope: Scope, model: Model) -> dict[str, str]:
    return {"app.kubernetes.io/name": epp_name(model), "peaknight.io/event": scope.event.name}


def pickers(spec: StackSpec, model: Model, plan: ModelPlan) -> picker.PickerPlan:
    """The model's shards and each picker's size (plan/picker.py)."""
    return picker.plan(spec.policy, model, plan)


def epp_config(spec: StackSpec, model: Model, plan: ModelPlan) -> dict[str, Any]:
    """The EndpointPickerConfig (llm-d.ai/v1alpha1): the engine's metric names for the extractor, a
    prefix index matching whole prompts (up to maxModelLen), and the scorers."""
    engine = engines.engine_for(model)
    m = engine.metrics
    queue = saturation.queue_target(spec.policy, spec.slo, plan)
    metrics_spec = {"name": engine.engine.value, "queuedRequestsSpec": m.waiting_metric,
                    "runningRequestsSpec": m.running_metric, "kvUsageSpec": m.kv_cache_gauges[0],
                    "loraSpec": "", "cacheInfoSpec": m.cache_config_info}
    plugins: list[dict[str, Any]] = [
        {"type": "metrics-data-source", "parameters": {"scheme": "http", "path": "/metrics"}},
        {"type": "core-metrics-extractor", "parameters": {"defaultEngine": engine.engine.value,
                                                          "engineConfigs": [metrics_spec]}},
        {"type": "approx-prefix-cache-producer", "parameters": {"maxPrefixTokensToMatch": model.max_model_len}},
        {"type": "prefix-cache-scorer"},
        {"type": "queue-scorer"},
        {"type": "kv-cache-utilization-scorer"},
        # Scores 0 at the autoscaler's queue target: a replica whose queue will not clear within the
        # TTFT objective gets no new request while any other can take it.
        {"type": "load-aware-scorer", "parameters": {"threshold": int(queue.value)}},
        {"type": "max-score-picker"},
    ]
    profile = [{"pluginRef": name, "weight": weight} for name, weight in WEIGHTS.items()]
    return {"apiVersion": "llm-d.ai/v1alpha1", "kind": "EndpointPickerConfig", "plugins": plugins,
            "schedulingProfiles": [{"name": "default", "plugins": [*profile, {"pluginRef": "max-score-picker"}]}]}


def inference_pool(scope: Scope, model: Model, plan: ModelPlan, shards: int = 1, index: int = 0) -> dict[str, Any]:
    """The pool of shard `index` (the model's one pool when there is one shard): its pods and picker."""
    name = sharding.names(model, shards)[index]
    return {
        "apiVersion": f"{POOL_GROUP}/v1", "kind": "InferencePool",
        "metadata": meta(scope, "router", name, inference_namespace(scope)),
        "spec": {
            "selector": {"matchLabels": {**serving_pods(scope, model, plan), **sharding.label(shards, index)}},
            "targetPorts": [{"number": PORT}],
            "appProtocol": "http",
            # llm-d's default. Envoy AI Gateway v1.1.0 does not read it (its ext_proc filter never
            # fails open), so the EPP runs at least two replicas and its absence pages.
            "endpointPickerRef": {"name": f"{name}-epp", "port": {"number": EPP_GRPC_PORT},
                                  "failureMode": "FailOpen"},
        },
    }


def _container(spec: StackSpec, pool: str, memory_gib: int, vcpu: int) -> dict[str, Any]:
    ns = inference_namespace(spec)
    grpc_probe = {"grpc": {"port": EPP_HEALTH_PORT, "service": "inference-extension"}}
    return {
        "name": "epp",
        "image": spec.router.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--pool-name", pool, "--pool-namespace", ns, "--pool-group", POOL_GROUP,
                 "--ha-enable-leader-election",
                 "--config-file", f"/config/{CONFIG_FILE}", "--grpc-port", str(EPP_GRPC_PORT),
                 "--grpc-health-port", str(EPP_HEALTH_PORT), "--metrics-port", str(EPP_METRICS_PORT),
                 "--zap-encoder", "json", "--tracing=false", "--enable-pprof=false",
                 # Prometheus scrapes without a token; the NetworkPolicy admits only Prometheus.
                 "--metrics-endpoint-auth=false"],
        "env": [{"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "grpc", "containerPort": EPP_GRPC_PORT, "protocol": "TCP"},
                  {"name": "grpc-health", "containerPort": EPP_HEALTH_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": EPP_METRICS_PORT, "protocol": "TCP"}],
        "livenessProbe": {**grpc_probe, "initialDelaySeconds": 5, "periodSeconds": 10},
        "readinessProbe": {**grpc_probe, "periodSeconds": 2},
        "resources": {"requests": {"cpu": str(vcpu), "memory": f"{memory_gib}Gi"},
                      "limits": {"memory": f"{memory_gib}Gi"}},
        "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": podpolicy.container_security(),
    }


def _deployment(spec: StackSpec, model: Model, vcpu: Figure, shards: int, index: int) -> Obj:
    r = profiles.load().router
    ns = inference_namespace(spec)
    pool = sharding.names(model, shards)[index]
    pods = {**epp_selector(spec, model), **sharding.label(shards, index)}
    template = {
        "metadata": {"labels": {**meta(spec, "router", epp_name(model))["labels"], **pods}},
        "spec": {
            "priorityClassName": priority_class(spec, inference.tier(model)),
            "serviceAccountName": epp_name(model),
            # The EPP watches its InferencePool and the pods through the API server.
            "automountServiceAccountToken": True,
            "terminationGracePeriodSeconds": EPP_GRACE_SECONDS,
            "securityContext": podpolicy.pod_security(EPP_USER),
            "containers": [_container(spec, pool, r.pod_memory_gib, int(vcpu.value))],
            "topologySpreadConstraints": podpolicy.zone_spread(pods, by_node=True),
            "volumes": [{"name": "config", "configMap": {"name": epp_name(model)}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
        },
    }
    return Obj({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {**meta(spec, "router", f"{pool}-epp", ns),
                             "annotations": {"peaknight.io/epp-vcpu": vcpu.why}},
                "spec": {"replicas": EPP_REPLICAS, "selector": {"matchLabels": pods},
                         "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                         "template": template}})


def _rbac(spec: StackSpec, model: Model) -> list[Obj]:
    ns = inference_namespace(spec)
    name = epp_name(model)
    read = ["get", "list", "watch"]
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": read},
             {"apiGroups": [POOL_GROUP], "resources": ["inferencepools"], "verbs": read},
             {"apiGroups": ["inference.networking.x-k8s.io", "llm-d.ai"],
              "resources": ["inferenceobjectives", "inferencemodelrewrites"], "verbs": read},
             # Leader election takes a Lease (controller-runtime's resource lock).
             {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
    return [
        Obj({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(spec, "router", name, ns)}),
        Obj({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(spec, "router", name, ns),
             "rules": rules}),
        Obj({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": meta(spec, "router", name, ns),
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}}),
    ]


def _shard(spec: StackSpec, model: Model, plan: ModelPlan, sized: picker.PickerPlan, index: int) -> list[Obj]:
    """One shard's pool, picker, its headless Service and PDB."""
    ns = inference_namespace(spec)
    shards = int(sized.shards.value)
    name = f"{sharding.names(model, shards)[index]}-epp"
    pods = {**epp_selector(spec, model), **sharding.label(shards, index)}
    service_meta = meta(spec, "router", name, ns)
    service_meta["labels"].update(epp_selector(spec, model))   # the one ServiceMonitor finds every shard's
    return [
        Obj(inference_pool(spec, model, plan, shards, index)),
        _deployment(spec, model, sized.vcpu, shards, index),
        # Headless: the gateway's STRICT_DNS cluster then resolves every ready EPP pod and balances
        # requests over them (LEAST_REQUEST), instead of pinning its HTTP/2 connections to whichever
        # pods a ClusterIP's connection balancing picked.
        Obj({"apiVersion": "v1", "kind": "Service", "metadata": service_meta,
             "spec": {"clusterIP": "None", "selector": pods,
                      "ports": [{"name": "grpc-ext-proc", "port": EPP_GRPC_PORT, "targetPort": "grpc",
                                 "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
                                {"name": "http-metrics", "port": EPP_METRICS_PORT, "targetPort": "metrics",
                                 "protocol": "TCP"}]}}),
        Obj({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(spec, "router", name, ns),
             "spec": {"maxUnavailable": 1, "selector": {"matchLabels": pods}}}),
    ]


def build(spec: StackSpec, model: Model, plan: ModelPlan) -> Unit:
    """The model's pools and pickers (one per shard: plan/picker.py), their shared config, RBAC and
    monitor."""
    ns = inference_namespace(spec)
    name = epp_name(model)
    sized = pickers(spec, model, plan)
    config = yaml.safe_dump(epp_config(spec, model, plan), sort_keys=False)
    objs = [
        Obj({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(spec, "router", name, ns),
             "data": {CONFIG_FILE: config}}),
        *_rbac(spec, model),
        *(o for i in range(int(sized.shards.value)) for o in _shard(spec, model, plan, sized, i)),
        Obj({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
             "metadata": meta(spec, "router", name, ns),
             "spec": {"selector": {"matchLabels": epp_selector(spec, model)},
                      "endpoints": [{"port": "http-metrics", "path": "/metrics", "interval": "15s"}]}}),
    ]
    return Unit("InferenceRouter", model.name, tuple(objs))
