"""Inference services: the model servers on the GPUs, one unit per model per cluster.

A replica that fits one node is a Deployment; one that spans nodes is a LeaderWorkerSet group.
Either way the pod is sized from the plan (GPUs, tensor parallelism), probed with a start-up
budget that covers the model's load, drained before it stops, spread over zones, and pinned to
its GPU pool. Beside it: weights volume, Service, PDB, ServiceMonitor and the HTTPRoute.
"""
from __future__ import annotations

import math
from typing import Any

from peaknight.engines import registry as engines
from peaknight.engines.base import MODEL_DIR, PORT, SERVING_PATHS, Role
from peaknight.spec import profiles
from peaknight.plan import rollout
from peaknight.plan.capacity import ModelPlan
from peaknight.builders.cluster_base import gateway_name
from peaknight.builders import admission, podpolicy
from peaknight.builders.objects import Obj, Scope, Tier, Unit, inference_namespace, labels, meta, priority_class
from peaknight.spec.stack import AuthType, Cluster, Model, ModelTier

# A long answer at 20 tok/s (DeepSeek's per-user rate) is about 5 min; the rollout plan counts it.
DRAIN_SECONDS = rollout.DRAIN_SECONDS
STARTUP_FLOOR_SECONDS = 600  # the anchors' smallest start-up budget (ai-on-eks, KServe)
RUN_AS_USER = 1000
CPU_PER_GPU = 20           # p5/p5e: 192 vCPU for 8 GPUs, minus the node's daemons
MEMORY_GIB_PER_GPU = 200   # p5/p5e: 2 TiB for 8 GPUs, minus the node's daemons
LWS_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
API_KEYS_SUFFIX = "-api-keys"
API_KEY_HEADER = "x-api-key"
# LWS labels every pod of a group with the group's unique key (api/leaderworkerset/v1 GroupUniqueHashLabelKey).
LWS_GROUP_KEY_LABEL = "leaderworkerset.sigs.k8s.io/group-key"


def selector(scope: Scope, model: Model) -> dict[str, str]:
    return {"app.kubernetes.io/name": model.name, "peaknight.io/event": scope.event.name}


def fallback_for(scope: Scope, model: Model) -> tuple[str, ...]:
    """The models whose ladder falls back to `model`: it answers to their names too. A scope
    without models (a program composing the components itself) has no ladder."""
    return tuple(m.name for m in getattr(scope, "models", ()) if m.ladder and m.ladder.fallback == model.name)


def _backends(model: Model) -> list[dict[str, Any]]:
    """The route's backends: the model itself, and its ladder's fallback at weight 0 until step 2
    sets its share (builders/admission.py: the step is a patch of these weights)."""
    refs: list[dict[str, Any]] = [{"name": model.name, "port": PORT}]
    if model.ladder and model.ladder.fallback:
        refs[0]["weight"] = 100
        refs.append({"name": model.ladder.fallback, "port": PORT, "weight": 0})
    return refs


def startup_budget(model: Model) -> int:
    """Seconds the startup probe allows: twice the profile's load time, never under the floor."""
    load = profiles.load().model_classes[model.model_class].startup_seconds
    return max(STARTUP_FLOOR_SECONDS, 2 * load)


def shm_gib(gpus: int) -> int:
    """/dev/shm for NCCL and the engine's workers: 2 GiB per GPU, at least 8 (FACTS: 15-50 Gi multi-GPU)."""
    return max(8, 2 * gpus)


def _container(scope: Scope, model: Model, plan: ModelPlan, role: Role) -> dict[str, Any]:
    engine = engines.engine_for(model)
    topology = plan.topology
    gpus = topology.gpus_per_pod
    devices = {"nvidia.com/gpu": str(gpus)}
    if plan.interconnect:  # a replica spanning nodes talks over the pool's high-speed network
        devices[plan.interconnect.resource] = str(plan.interconnect.devices)
    container: dict[str, Any] = {
        "name": "engine",
        "image": model.image,
        "imagePullPolicy": "IfNotPresent",
        "command": engine.command(model, topology, role, fallback_for(scope, model)),
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "HOME", "value": "/tmp"}, *engine.env()],
        "resources": {
            "requests": {**devices, "cpu": str(CPU_PER_GPU * gpus), "memory": f"{MEMORY_GIB_PER_GPU * gpus}Gi"},
            "limits": {**devices, "memory": f"{MEMORY_GIB_PER_GPU * gpus}Gi"},
        },
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "weights", "mountPath": MODEL_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        # Read-only root: the engine writes only /tmp (HOME: its caches), /dev/shm and nothing else.
        "securityContext": podpolicy.container_security(),
    }
    if engine.serves_http(role):
        container["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    container.update(engine.probes(topology, role, startup_budget(model)).manifest())
    # The leader drains its answers; a worker waits for its leader to finish them, so deleting a
    # group does not break tensor parallelism under a draining leader.
    container["lifecycle"] = {"preStop": {"exec": {"command": engine.drain_command(role, DRAIN_SECONDS)}}}
    return container


def _placement(scope: Scope, model: Model, plan: ModelPlan, role: Role) -> dict[str, Any]:
    """A replica on one node: pods spread over zones. A group: leaders spread over zones (one
    group counts once), each worker in its leader's zone and, preferably, network domain."""
    placement = podpolicy.gpu_placement(model.pool)
    if plan.nodes_per_replica == 1:
        return {**placement, "topologySpreadConstraints": podpolicy.zone_spread(selector(scope, model))}
    leaders = {**selector(scope, model), LWS_INDEX_LABEL: "0"}
    if role is Role.LEADER:
        return {**placement, "topologySpreadConstraints": podpolicy.zone_spread(leaders)}
    network = plan.interconnect.network_key if plan.interconnect else None
    affinity = {**placement["affinity"], "podAffinity": podpolicy.follow_leader(leaders, LWS_GROUP_KEY_LABEL, network)}
    return {**placement, "affinity": affinity}


def pod_spec(scope: Scope, model: Model, plan: ModelPlan, role: Role = Role.LEADER) -> dict[str, Any]:
    gpus = plan.topology.gpus_per_pod
    return {
        "priorityClassName": priority_class(scope, Tier.ASSISTANT if model.tier is ModelTier.ASSISTANT else Tier.SERVING),
        "serviceAccountName": service_account(model),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": DRAIN_SECONDS + 30,
        "securityContext": podpolicy.pod_security(RUN_AS_USER),
        "containers": [_container(scope, model, plan, role)],
        **_placement(scope, model, plan, role),
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(gpus)}Gi"}},
            {"name": "weights", "persistentVolumeClaim": {"claimName": weights_claim(model), "readOnly": True}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "50Gi"}},
        ],
    }


def service_account(model: Model) -> str:
    """The model servers' own account (`-server`: no model name can collide with the warm gate's)."""
    return f"{model.name}-server"


def weights_claim(model: Model) -> str:
    return f"{model.name}-weights"


def _workload(scope: Scope, model: Model, plan: ModelPlan) -> Obj:
    ns = inference_namespace(scope)
    template_meta = {"labels": {**labels(scope, "inference", model.name), **selector(scope, model)}}
    annotations = {"peaknight.io/planned-replicas": plan.replicas.why, "peaknight.io/replica-tps": plan.replica_tps.why,
                   "peaknight.io/rollout": f"surge {plan.surge.why}; {plan.rollout.why}"}
    floor = int(plan.floor_replicas.value)
    if plan.nodes_per_replica == 1:
        manifest = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {**meta(scope, "inference", model.name, ns), "annotations": annotations},
            "spec": {
                "replicas": floor,
                "selector": {"matchLabels": selector(scope, model)},
                # The plan's surge finishes a full update within policy.rolloutHours; the pool's
                # GPU limit holds it.
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": int(plan.surge.value), "maxUnavailable": 0}},
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
                                    "rollingUpdateConfiguration": {"maxUnavailable": 0,
                                                                   "maxSurge": int(plan.surge.value)}},
                "leaderWorkerTemplate": {
                    "size": plan.nodes_per_replica,
                    "restartPolicy": "RecreateGroupOnPodRestart",
                    "leaderTemplate": {"metadata": template_meta, "spec": pod_spec(scope, model, plan)},
                    "workerTemplate": {"metadata": template_meta,
                                       "spec": pod_spec(scope, model, plan, Role.WORKER)},
                },
            },
        }
    # The autoscaler owns the replica count once the object exists; Pulumi must not reset it.
    return Obj(manifest, ignore_changes=("spec.replicas",))


def route(scope: Scope, model: Model, plan: ModelPlan) -> dict[str, Any]:
    """`/<model>/v1/chat/completions` and the other serving paths, each to the same path on the
    model's Service; nothing else of the server is reachable through the public Gateway. The
    timeout is the longest answer the model may give (maxModelLen at the ITL objective)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": meta(scope, "inference", model.name, inference_namespace(scope)),
        "spec": {
            "parentRefs": [{"name": gateway_name(scope)}],
            "rules": [{
                "matches": [{"path": {"type": "Exact", "value": f"/{model.name}{path}"}}],
                "filters": [{"type": "URLRewrite", "urlRewrite": {
                    "path": {"type": "ReplaceFullPath", "replaceFullPath": path}}}],
                "backendRefs": _backends(model),
                "timeouts": {"request": f"{int(plan.longest_answer.value)}s"},
            } for path in SERVING_PATHS],
        },
    }


def api_keys_secret(model: Model) -> str:
    """The Secret the operator creates for apiKey auth: one key per client id, its API key as value."""
    return f"{model.name}{API_KEYS_SUFFIX}"


def security_policy(scope: Scope, model: Model) -> dict[str, Any]:
    """Envoy Gateway's SecurityPolicy on the model's route: API keys (from a Secret the operator
    creates, stripped before the request reaches the engine) or JWTs checked against the issuer's
    keys. `none` is an empty policy: only a rehearsal may have it (config refuses it in a broadcast)."""
    auth = model.auth
    body: dict[str, Any] = {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                            "name": model.name}]}
    if auth.type is AuthType.API_KEY:
        body["apiKeyAuth"] = {"credentialRefs": [{"name": api_keys_secret(model)}],
                              "extractFrom": [{"headers": [API_KEY_HEADER]}], "sanitize": True,
                              **admission.client_header(model)}
    elif auth.type is AuthType.JWT:
        provider: dict[str, Any] = {"name": model.name, "remoteJWKS": {"uri": auth.jwks_uri},
                                    **admission.client_header(model)}
        if auth.issuer:
            provider["issuer"] = auth.issuer
        body["jwt"] = {"providers": [provider]}
    return {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "SecurityPolicy",
            "metadata": meta(scope, "inference", model.name, inference_namespace(scope)), "spec": body}


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
                      "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]}}),
        Obj({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
             "metadata": meta(scope, "inference", model.name, ns),
             # One pod at a time: evicting one pod of a group takes the whole group down (it is
             # recreated together), and its pods then count as unavailable until it is back, so a
             # second group cannot go while the first recovers. Counting a group's pods
             # (maxUnavailable = pods per group) let one pod of each of two groups go at once.
             "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(scope, model)}}}),
        Obj({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
             "metadata": meta(scope, "inference", model.name, ns),
             "spec": {"selector": {"matchLabels": selector(scope, model)},
                      "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]}}),
        # A ladder's step 2 sets the backends' weights on the live route: Pulumi leaves them.
        Obj(route(scope, model, plan), ignore_changes=("spec.rules[*].backendRefs[*].weight",)
            if model.ladder and model.ladder.fallback else ()),
        Obj(security_policy(scope, model)),
        Obj({"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": meta(scope, "inference", service_account(model), ns),
             # The engine never calls the API server: no token in the pod.
             "automountServiceAccountToken": False}),
    ]
    return Unit("InferenceService", model.name, tuple(objs))
