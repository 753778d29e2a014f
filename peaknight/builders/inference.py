"""Inference services: the model servers on the GPUs, one unit per model per cluster.

A replica that fits one node is a Deployment; one that spans nodes is a LeaderWorkerSet group.
Either way the pod is sized from the plan (GPUs, tensor parallelism), probed with a start-up
budget that covers the model's load, drained before it stops, spread over zones, and pinned to
its GPU pool. Beside it: weights volume, Service, PDB, ServiceMonitor and the HTTPRoute.
"""
from __future__ import annotations

import math
from typing import Any

from peaknight.engines import base as engines
from peaknight.spec import profiles
from peaknight.plan.capacity import ModelPlan
from peaknight.builders.cluster_base import gateway_name
from peaknight.builders import podpolicy
from peaknight.builders.objects import Scope, Obj, Unit, inference_namespace, labels, meta, priority_class
from peaknight.spec.stack import Cluster, Model

DRAIN_SECONDS = 300        # a long answer at 20 tok/s (DeepSeek's per-user rate) is about 5 min
STARTUP_FLOOR_SECONDS = 600  # the anchors' smallest start-up budget (ai-on-eks, KServe)
RUN_AS_USER = 1000
CPU_PER_GPU = 20           # p5/p5e: 192 vCPU for 8 GPUs, minus the node's daemons
MEMORY_GIB_PER_GPU = 200   # p5/p5e: 2 TiB for 8 GPUs, minus the node's daemons
LWS_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


def selector(scope: Scope, model: Model) -> dict[str, str]:
    return {"app.kubernetes.io/name": model.name, "peaknight.io/event": scope.event.name}


def startup_budget(model: Model) -> int:
    """Seconds the startup probe allows: twice the profile's load time, never under the floor."""
    load = profiles.load().model_classes[model.model_class].startup_seconds
    return max(STARTUP_FLOOR_SECONDS, 2 * load)


def shm_gib(gpus: int) -> int:
    """/dev/shm for NCCL and the engine's workers: 2 GiB per GPU, at least 8 (FACTS: 15-50 Gi multi-GPU)."""
    return max(8, 2 * gpus)


def _container(scope: Scope, model: Model, plan: ModelPlan, gpus: int, serves_http: bool) -> dict[str, Any]:
    e = engines.info(model)
    container: dict[str, Any] = {
        "name": "engine",
        "image": model.image,
        "imagePullPolicy": "IfNotPresent",
        "command": engines.command(model, gpus, plan.nodes_per_replica),
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "HOME", "value": "/tmp"}],
        "resources": {
            "requests": {"nvidia.com/gpu": str(gpus), "cpu": str(CPU_PER_GPU * gpus),
                         "memory": f"{MEMORY_GIB_PER_GPU * gpus}Gi"},
            "limits": {"nvidia.com/gpu": str(gpus), "memory": f"{MEMORY_GIB_PER_GPU * gpus}Gi"},
        },
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "weights", "mountPath": engines.MODEL_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": podpolicy.container_security(),
    }
    if serves_http:
        container["ports"] = [{"name": "http", "containerPort": engines.PORT, "protocol": "TCP"}]
        container["startupProbe"] = {"httpGet": {"path": e.health_path, "port": "http"},
                                     "periodSeconds": 10, "failureThreshold": math.ceil(startup_budget(model) / 10)}
        container["readinessProbe"] = {"httpGet": {"path": e.ready_path, "port": "http"},
                                       "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3}
        # Generous: a short liveness timeout restarted a busy server under load (production-stack #448).
        container["livenessProbe"] = {"httpGet": {"path": e.health_path, "port": "http"},
                                      "periodSeconds": 15, "timeoutSeconds": 10, "failureThreshold": 8}
        container["lifecycle"] = {"preStop": {"exec": {"command": ["python3", "-c",
                                                                    engines.drain_script(model, DRAIN_SECONDS)]}}}
    return container


def pod_spec(scope: Scope, model: Model, plan: ModelPlan, serves_http: bool = True) -> dict[str, Any]:
    gpus = plan.gpus_per_replica // plan.nodes_per_replica
    return {
        "priorityClassName": priority_class(scope),
        "terminationGracePeriodSeconds": DRAIN_SECONDS + 30,
        "securityContext": podpolicy.pod_security(RUN_AS_USER),
        "containers": [_container(scope, model, plan, gpus, serves_http)],
        **podpolicy.gpu_placement(model.pool),
        "topologySpreadConstraints": podpolicy.zone_spread(selector(scope, model)),
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(gpus)}Gi"}},
            {"name": "weights", "persistentVolumeClaim": {"claimName": weights_claim(model), "readOnly": True}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "50Gi"}},
        ],
    }


def weights_claim(model: Model) -> str:
    return f"{model.name}-weights"


def _workload(scope: Scope, model: Model, plan: ModelPlan) -> Obj:
    ns = inference_namespace(scope)
    template_meta = {"labels": {**labels(scope, "inference", model.name), **selector(scope, model)}}
    annotations = {"peaknight.io/planned-replicas": plan.replicas.why, "peaknight.io/replica-tps": plan.replica_tps.why}
    floor = int(plan.floor_replicas.value)
    if plan.nodes_per_replica == 1:
        manifest = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {**meta(scope, "inference", model.name, ns), "annotations": annotations},
            "spec": {
                "replicas": floor,
                "selector": {"matchLabels": selector(scope, model)},
                # One extra replica at a time: the pool's GPU limit holds a surge replica.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": template_meta, "spec": pod_spec(scope, model, plan)},
            },
        }
    else:
        manifest = {
            "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {**meta(scope, "inference", model.name, ns), "annotations": annotations},
            "spec": {
                "replicas": floor,
                "startupPolicy": "LeaderCreated",
                "rolloutStrategy": {"type": "RollingUpdate",
                                    "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 1}},
                "leaderWorkerTemplate": {
                    "size": plan.nodes_per_replica,
                    "restartPolicy": "RecreateGroupOnPodRestart",
                    "leaderTemplate": {"metadata": template_meta, "spec": pod_spec(scope, model, plan)},
                    "workerTemplate": {"metadata": template_meta,
                                       "spec": pod_spec(scope, model, plan, serves_http=False)},
                },
            },
        }
    # The autoscaler owns the replica count once the object exists; Pulumi must not reset it.
    return Obj(manifest, ignore_changes=("spec.replicas",))


def build(scope: Scope, cluster: Cluster, model: Model, plan: ModelPlan) -> Unit:
    ns = inference_namespace(scope)
    weights_gib = profiles.load().model_classes[model.model_class].weights_gib
    serving = dict(selector(scope, model))
    if plan.nodes_per_replica > 1:
        serving[LWS_INDEX_LABEL] = "0"  # only the group's leader serves HTTP
    objs = [
        Obj({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": meta(scope, "inference", weights_claim(model), ns),
             # Many readers (every replica mounts it read-only) and one writer: warmup's staging Job.
             "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": cluster.model_cache_class,
                      "resources": {"requests": {"storage": f"{math.ceil(weights_gib * 1.2)}Gi"}}}},
            protect=scope.policy.protect),
        _workload(scope, model, plan),
        Obj({"apiVersion": "v1", "kind": "Service",
             "metadata": meta(scope, "inference", model.name, ns),
             "spec": {"type": "ClusterIP", "selector": serving,
                      "ports": [{"name": "http", "port": engines.PORT, "targetPort": "http", "protocol": "TCP"}]}}),
        Obj({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
             "metadata": meta(scope, "inference", model.name, ns),
             # One replica (one LWS group of pods) may be voluntarily disrupted at a time.
             "spec": {"maxUnavailable": plan.nodes_per_replica, "selector": {"matchLabels": selector(scope, model)}}}),
        Obj({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
             "metadata": meta(scope, "inference", model.name, ns),
             "spec": {"selector": {"matchLabels": selector(scope, model)},
                      "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]}}),
        Obj({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": meta(scope, "inference", model.name, ns),
             "spec": {
                 "parentRefs": [{"name": gateway_name(scope)}],
                 "rules": [{
                     "matches": [{"path": {"type": "PathPrefix", "value": f"/{model.name}"}}],
                     "filters": [{"type": "URLRewrite", "urlRewrite": {
                         "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
                     "backendRefs": [{"name": model.name, "port": engines.PORT}],
                     "timeouts": {"request": f"{DRAIN_SECONDS}s"},
                 }],
             }}),
    ]
    return Unit("InferenceService", model.name, tuple(objs))
