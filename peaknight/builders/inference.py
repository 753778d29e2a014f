"""Inference services: the model servers on the GPUs, one unit per model per cluster.

A replica that fits one node is a Deployment; one that spans nodes is a LeaderWorkerSet group.
Either way the pod is sized from the plan (GPUs, tensor parallelism), probed with a start-up
budget that covers the model's load, drained before it stops, spread over zones, and pinned to
its GPU pool, and reads its weights from its node's cache (builders/warmup.py). Beside it: Service,
PDB, ServiceMonitor and the HTTPRoute.
"""
from __future__ import annotations

from typing import Any

from peaknight.engines import recipes, registry as engines
from peaknight.engines import sglang
from peaknight.engines.base import JIT_CACHE_DIR, MODEL_DIR, PORT, SERVING_PATHS, Role
from peaknight.spec import profiles
from peaknight.plan import admission as admission_plan, rollout, serving_recipes
from peaknight.plan.capacity import ROUTER_POD_VCPU, ModelPlan
from peaknight.plan.figure import Figure
from peaknight.builders.cluster_base import gateway_name
from peaknight.builders import admission, podpolicy, warmup
from peaknight.builders.objects import Obj, Scope, Tier, Unit, inference_namespace, labels, meta, priority_class
from peaknight.spec.stack import AuthType, Cluster, Model, ModelTier

# A long answer at 20 tok/s (DeepSeek's per-user rate) is about 5 min; the rollout plan counts it.
DRAIN_SECONDS = rollout.DRAIN_SECONDS
STARTUP_FLOOR_SECONDS = 600  # the anchors' smallest start-up budget (ai-on-eks, KServe)
CPU_PER_GPU = 20           # p5/p5e: 192 vCPU for 8 GPUs, minus the node's daemons
MEMORY_GIB_PER_GPU = 200   # p5/p5e: 2 TiB for 8 GPUs, minus the node's daemons
LWS_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
# The Gateway API Inference Extension's group: each model's route sends to its InferencePool, named
# as the model (builders/routing.py builds it).
INFERENCE_POOL_GROUP = "inference.networking.k8s.io"
API_KEYS_SUFFIX = "-api-keys"
API_KEY_HEADER = "x-api-key"
# LWS labels every pod of a group with the group's unique key (api/leaderworkerset/v1 GroupUniqueHashLabelKey).
LWS_GROUP_KEY_LABEL = "leaderworkerset.sigs.k8s.io/group-key"
PHASE_LABEL = "peaknight.io/phase"


def selector(scope: Scope, model: Model) -> dict[str, str]:
    """Every model-server pod of the model (both phases of a disaggregated one; not its router)."""
    return {"app.kubernetes.io/name": model.name, "peaknight.io/event": scope.event.name}


def pool_name(model: Model) -> str:
    """The InferencePool a colocated model's HTTPRoute sends to (builders/routing.py): named as the model."""
    return model.name


def serving_pods(scope: Scope, model: Model, plan: ModelPlan) -> dict[str, str]:
    """The labels of the pods of workload `plan` that serve HTTP: every pod of a one-node replica,
    a group's leader where a replica spans nodes. The one answer the Services, the InferencePool,
    the endpoint picker's NetworkPolicy, SGLang's router and the leaders' zone spread read."""
    pods = workload_selector(scope, model, plan)
    return {**pods, LWS_INDEX_LABEL: "0"} if plan.nodes_per_replica > 1 else pods


def workload_selector(scope: Scope, model: Model, plan: ModelPlan) -> dict[str, str]:
    """The pods of one workload: the model's, or one phase of a disaggregated model."""
    return {**selector(scope, model), PHASE_LABEL: plan.phase} if plan.phase else selector(scope, model)


def router_selector(scope: Scope, model: Model) -> dict[str, str]:
    return {"app.kubernetes.io/name": router_name(model), "peaknight.io/event": scope.event.name}


def router_name(model: Model) -> str:
    return f"{model.name}-router"


def fallback_for(scope: Scope, model: Model) -> tuple[str, ...]:
    """The models whose ladder falls back to `model`: it answers to their names too. A scope
    without models (a program composing the components itself) has no ladder."""
    return tuple(m.name for m in getattr(scope, "models", ()) if m.ladder and m.ladder.fallback == model.name)


def _backends(model: Model, primary: dict[str, Any]) -> list[dict[str, Any]]:
    """The route's backends: the model itself (`primary`), and its ladder's fallback (its Service) at
    weight 0 until step 2 sets its share (builders/admission.py: the step is a patch of these weights)."""
    refs: list[dict[str, Any]] = [primary]
    if model.ladder and model.ladder.fallback:
        refs[0]["weight"] = 100
        refs.append({"name": model.ladder.fallback, "port": PORT, "weight": 0})
    return refs


def startup_budget(model: Model) -> int:
    """Seconds the startup probe allows (startup_budget_figure says how)."""
    return int(startup_budget_figure(model).value)


def startup_budget_figure(model: Model) -> Figure:
    """Twice the profile's load time plus the engine's cold compile (a node's first start finds its
    JIT caches empty), never under the floor. A probe that gave up sooner would kill a first start
    mid-compile, and a group's restart policy (RecreateGroupOnPodRestart) would start the whole
    group cold again: a loop."""
    load = profiles.load().model_classes[model.model_class].startup_seconds
    engine = engines.engine_for(model)
    value = max(STARTUP_FLOOR_SECONDS, 2 * load + engine.cold_compile_seconds)
    return Figure(value, f"max(floor {STARTUP_FLOOR_SECONDS}, 2 x load {load} + cold compile "
                         f"{engine.cold_compile_seconds} ({engine.cold_compile_source})) = {value} s")


def shm_gib(gpus: int) -> int:
    """/dev/shm for NCCL and the engine's workers: 2 GiB per GPU, at least 8 (FACTS: 15-50 Gi multi-GPU)."""
    return max(8, 2 * gpus)


def _container(scope: Scope, model: Model, plan: ModelPlan, role: Role) -> dict[str, Any]:
    engine = engines.engine_for(model)
    match = serving_recipes.match(model, plan)
    fabric = recipes.fabric(match.combination.fabric)
    topology = serving_recipes.topology(model, plan)
    gpus = topology.gpus_per_pod
    devices = {"nvidia.com/gpu": str(gpus)}
    if plan.interconnect:  # a replica spanning nodes talks over the pool's high-speed network
        devices[plan.interconnect.resource] = str(plan.interconnect.devices)
        if fabric.hugepages and plan.interconnect.hugepages_mib:  # libfabric's EFA buffers (recipes.yaml)
            devices["hugepages-2Mi"] = f"{plan.interconnect.hugepages_mib}Mi"
    container: dict[str, Any] = {
        "name": "engine",
        "image": model.image,
        "imagePullPolicy": "IfNotPresent",
        "command": engine.command(model, topology, role, fallback_for(scope, model)),
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}, *engine.identity_env(), *engine.cache_env(model),
                *engine.env(), *({"name": k, "value": v} for k, v in fabric.env.items()),
                # the cluster's own fabric settings (VKE RDMA: GID index, bootstrap interface; vke_rdma.py)
                *({"name": k, "value": v} for k, v in (plan.interconnect.env if plan.interconnect else ()))],
        "resources": {
            "requests": {**devices, "cpu": str(CPU_PER_GPU * gpus), "memory": f"{MEMORY_GIB_PER_GPU * gpus}Gi"},
            "limits": {**devices, "memory": f"{MEMORY_GIB_PER_GPU * gpus}Gi"},
        },
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "weights", "mountPath": MODEL_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "jit", "mountPath": JIT_CACHE_DIR}],
        # Read-only root: the engine writes only /tmp (HOME), /dev/shm and its JIT caches on the node.
        "securityContext": podpolicy.container_security(),
    }
    if engine.serves_http(role):
        container["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    if plan.phase == "prefill" and role is Role.LEADER:
        container["ports"] = [*container.get("ports", []),
                              {"name": "bootstrap", "containerPort": sglang.BOOTSTRAP_PORT, "protocol": "TCP"}]
    container.update(engine.probes(topology, role, startup_budget(model)).manifest())
    # The leader drains its answers; a worker waits for its leader to finish them, so deleting a
    # group does not break tensor parallelism under a draining leader.
    container["lifecycle"] = {"preStop": {"exec": {"command": engine.drain_command(role, DRAIN_SECONDS)}}}
    return container


def _placement(scope: Scope, model: Model, plan: ModelPlan, role: Role) -> dict[str, Any]:
    """A replica on one node: pods spread over zones. A group: leaders spread over zones (one
    group counts once), each worker in its leader's zone and, preferably, network domain."""
    placement = podpolicy.gpu_placement(model.pool)
    pods = workload_selector(scope, model, plan)
    if plan.nodes_per_replica == 1:
        return {**placement, "topologySpreadConstraints": podpolicy.zone_spread(pods)}
    leaders = serving_pods(scope, model, plan)
    if role is Role.LEADER:
        return {**placement, "topologySpreadConstraints": podpolicy.zone_spread(leaders)}
    network = plan.interconnect.network_key if plan.interconnect else None
    affinity = {**placement["affinity"], "podAffinity": podpolicy.follow_leader(leaders, LWS_GROUP_KEY_LABEL, network)}
    return {**placement, "affinity": affinity}


def pod_spec(scope: Scope, model: Model, plan: ModelPlan, role: Role = Role.LEADER) -> dict[str, Any]:
    gpus = plan.topology.gpus_per_pod
    return {
        "priorityClassName": priority_class(scope, tier(model)),
        "serviceAccountName": service_account(model),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": DRAIN_SECONDS + 30,
        "securityContext": podpolicy.pod_security(engines.engine_for(model).recipe.uid),
        # The engine starts once its node's cache holds the model's revision (builders/warmup.py).
        "initContainers": [warmup.wait_for_weights(model)],
        "containers": [_container(scope, model, plan, role)],
        **_placement(scope, model, plan, role),
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(gpus)}Gi"}},
            {"name": "weights", "persistentVolumeClaim": {"claimName": warmup.cache_claim(model.pool), "readOnly": True}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "50Gi"}},
            {"name": "jit", "persistentVolumeClaim": {"claimName": warmup.jit_claim(model.pool)}},
        ],
    }


def tier(model: Model) -> Tier:
    """The priority of everything on the model's request path: its servers, and its router or
    endpoint picker (without them the model is down)."""
    return Tier.ASSISTANT if model.tier is ModelTier.ASSISTANT else Tier.SERVING


def service_account(model: Model) -> str:
    """The model servers' own account (`-server`: no model name can collide with the warm gate's)."""
    return f"{model.name}-server"


def _workload(scope: Scope, model: Model, plan: ModelPlan) -> Obj:
    ns = inference_namespace(scope)
    pods = workload_selector(scope, model, plan)
    template_meta: dict[str, Any] = {"labels": {**labels(scope, "inference", model.name), **pods}}
    if plan.interconnect and plan.interconnect.annotations:  # the fabric's interfaces attached to the pod (VKE)
        template_meta["annotations"] = dict(plan.interconnect.annotations)
    leader_meta = template_meta
    if plan.phase == "prefill":  # where the router finds the prefill server's bootstrap port
        leader_meta = {**template_meta, "annotations": {**template_meta.get("annotations", {}),
                                                        sglang.BOOTSTRAP_ANNOTATION: str(sglang.BOOTSTRAP_PORT)}}
    annotations = {"peaknight.io/planned-replicas": plan.replicas.why, "peaknight.io/replica-tps": plan.replica_tps.why,
                   "peaknight.io/startup-budget": startup_budget_figure(model).why,
                   "peaknight.io/recipe": serving_recipes.note(model, plan),
                   "peaknight.io/rollout": f"surge {plan.surge.why}; {plan.rollout.why}"}
    floor = int(plan.floor_replicas.value)
    if plan.nodes_per_replica == 1:
        manifest = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {**meta(scope, "inference", plan.name, ns), "annotations": annotations},
            "spec": {
                "replicas": floor,
                "selector": {"matchLabels": pods},
                # The plan's surge finishes a full update within policy.rolloutHours; the pool's
                # GPU limit holds it.
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": int(plan.surge.value), "maxUnavailable": 0}},
                "template": {"metadata": leader_meta, "spec": pod_spec(scope, model, plan)},
            },
        }
    else:
        manifest = {
            "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {**meta(scope, "inference", plan.name, ns), "annotations": annotations},
            "spec": {
                "replicas": floor,
                "startupPolicy": "LeaderCreated",
                "rolloutStrategy": {"type": "RollingUpdate",
                                    "rollingUpdateConfiguration": {"maxUnavailable": 0,
                                                                   "maxSurge": int(plan.surge.value)}},
                "leaderWorkerTemplate": {
                    "size": plan.nodes_per_replica,
                    "restartPolicy": "RecreateGroupOnPodRestart",
                    "leaderTemplate": {"metadata": leader_meta, "spec": pod_spec(scope, model, plan)},
                    "workerTemplate": {"metadata": template_meta,
                                       "spec": pod_spec(scope, model, plan, Role.WORKER)},
                },
            },
        }
    # The autoscaler owns the replica count once the object exists; Pulumi must not reset it.
    return Obj(manifest, ignore_changes=("spec.replicas",))


def route(scope: Scope, model: Model, plan: ModelPlan) -> dict[str, Any]:
    """`/<model>/v1/chat/completions` and the other serving paths, each to the same path on the
    model's InferencePool (builders/routing.py: its endpoint picker chooses the pod), or, for a
    disaggregated model (`plan` one of its phases), on its router's Service (SGLang's router chooses
    the prefill and decode servers, cache-aware); nothing else of the server is reachable through
    the public Gateway. The timeout is the longest answer the model may give (maxModelLen at the ITL
    objective)."""
    backend = ({"name": model.name, "port": PORT} if plan.phase else
               {"group": INFERENCE_POOL_GROUP, "kind": "InferencePool", "name": pool_name(model)})
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": meta(scope, "inference", model.name, inference_namespace(scope)),
        "spec": {
            "parentRefs": [{"name": gateway_name(scope)}],
            "rules": [{
                "matches": [{"path": {"type": "Exact", "value": f"/{model.name}{path}"}}],
                "filters": [{"type": "URLRewrite", "urlRewrite": {
                    "path": {"type": "ReplaceFullPath", "replaceFullPath": path}}}],
                "backendRefs": _backends(model, backend),
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
                                    "issuer": auth.issuer, "audiences": list(auth.audiences),
                                    **admission.client_header(model)}
        body["jwt"] = {"providers": [provider]}
    return {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "SecurityPolicy",
            "metadata": meta(scope, "inference", model.name, inference_namespace(scope)), "spec": body}


def _service(scope: Scope, name: str, pods: dict[str, str]) -> Obj:
    return Obj({"apiVersion": "v1", "kind": "Service", "metadata": meta(scope, "inference", name, inference_namespace(scope)),
                "spec": {"type": "ClusterIP", "selector": pods,
                         "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]}})


def _serving(scope: Scope, model: Model, plan: ModelPlan) -> list[Obj]:
    """One workload and what watches it: its PDB and ServiceMonitor (and, for a phase of a
    disaggregated model, the Service the monitor scrapes through: Prometheus labels its series
    `service="<model>-<phase>"`, which is how the autoscaler reads the decode servers alone)."""
    ns = inference_namespace(scope)
    pods = workload_selector(scope, model, plan)
    objs = [_workload(scope, model, plan)]
    if plan.phase:
        objs.append(_service(scope, plan.name, serving_pods(scope, model, plan)))
    objs += [
        Obj({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
             "metadata": meta(scope, "inference", plan.name, ns),
             # One pod at a time: evicting one pod of a group takes the whole group down (it is
             # recreated together), and its pods then count as unavailable until it is back, so a
             # second group cannot go while the first recovers. Counting a group's pods
             # (maxUnavailable = pods per group) let one pod of each of two groups go at once.
             "spec": {"maxUnavailable": 1, "selector": {"matchLabels": pods}}}),
        Obj({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
             "metadata": meta(scope, "inference", plan.name, ns),
             "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": plan.name,
                                                   "peaknight.io/event": scope.event.name}},
                      "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]}}),
    ]
    return objs


# The router: SGLang's sglang-router in the model's image (launch_router), sized by the plan.
ROUTER_MEMORY_GIB = 16
ROUTER_RUN_AS_USER = 1000
# sglang-router drops a discovered pod only when it is deleted, not when it goes NotReady, and its
# own health check defaults to every 60 s, 3 failures (sglang_router/router_args.py, wheels 0.2.1
# and 0.3.2). It checks the engine's /health, the readiness probe's signal: every 5 s, 2 failures,
# with the probe's own timeout (SGLang's /health may take its 20 s verdict, engines/sglang.py), so a
# server that refuses or answers 503 leaves routing within 2 x 5 = 10 s (a hung one within
# 2 x (5 + 25) = 60 s), and one success brings it back.
ROUTER_HEALTH_INTERVAL_SECONDS = 5
ROUTER_HEALTH_FAILURES = 2


def router_command(scope: Scope, model: Model, prefill: ModelPlan, decode: ModelPlan) -> list[str]:
    """sglang-router in PD mode, finding the prefill and decode servers itself (Kubernetes service
    discovery: a Service in front would send the decode server's KV bootstrap to another prefill
    server than the one that prefilled), cache-aware: requests sharing a prefix go to the prefill
    server that holds it. Only group leaders (worker index 0) serve HTTP."""
    def selector_args(plan: ModelPlan) -> list[str]:
        return [f"{k}={v}" for k, v in serving_pods(scope, model, plan).items()]
    limit = str(int(admission_plan.router_requests(decode).value))
    return ["python3", "-m", "sglang_router.launch_router", "--host", "0.0.0.0", "--port", str(PORT),
            "--pd-disaggregation", "--policy", "cache_aware",
            "--service-discovery", "--service-discovery-namespace", inference_namespace(scope),
            "--service-discovery-port", str(PORT),
            "--prefill-selector", *selector_args(prefill), "--decode-selector", *selector_args(decode),
            "--worker-startup-timeout-secs", str(startup_budget(model)),
            # Bounded (sglang-router's defaults: -1, no limit; 5 attempts): plan/admission.router_requests.
            "--max-concurrent-requests", limit, "--rate-limit-tokens-per-second", limit, "--queue-size", "0",
            "--retry-max-retries", str(admission_plan.ROUTER_ATTEMPTS),
            "--retry-max-backoff-ms", str(admission_plan.ROUTER_RETRY_BACKOFF_MS),
            "--health-check-endpoint", "/health",
            "--health-check-interval-secs", str(ROUTER_HEALTH_INTERVAL_SECONDS),
            # as long as the server's own readiness probe waits (its recipe: above SGLANG_HEALTH_CHECK_TIMEOUT)
            "--health-check-timeout-secs", str(recipes.engine_recipe("sglang").probes["leader"]["readiness"].timeout),
            "--health-failure-threshold", str(ROUTER_HEALTH_FAILURES), "--health-success-threshold", "1"]


def _router(scope: Scope, model: Model, prefill: ModelPlan, decode: ModelPlan) -> list[Obj]:
    """The router in front of a disaggregated model: Deployment, its Service (named after the
    model, so the HTTPRoute and the in-cluster URL are those of a colocated model), PDB, and the
    ServiceAccount and Role that let it watch the namespace's pods (service discovery)."""
    ns = inference_namespace(scope)
    name, pods = router_name(model), router_selector(scope, model)
    assert decode.router_pods is not None
    replicas = int(decode.router_pods.value)
    probe = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
    container = {
        "name": "router", "image": model.image, "imagePullPolicy": "IfNotPresent",
        "command": router_command(scope, model, prefill, decode),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": str(ROUTER_POD_VCPU), "memory": f"{ROUTER_MEMORY_GIB}Gi"},
                      "limits": {"memory": f"{ROUTER_MEMORY_GIB}Gi"}},
        "readinessProbe": {"httpGet": {"path": "/readiness", "port": "http"}, **probe},
        "livenessProbe": {"httpGet": {"path": "/liveness", "port": "http"}, **probe, "failureThreshold": 6},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": podpolicy.container_security(),
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {**meta(scope, "router", name, ns), "annotations": {
            "peaknight.io/replicas": decode.router_pods.why,
            "peaknight.io/max-concurrent-requests": admission_plan.router_requests(decode).why}},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": pods},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {**labels(scope, "router", name), **pods}}, "spec": {
                "priorityClassName": priority_class(scope, tier(model)),
                "serviceAccountName": name,
                # The router lists and watches pods (service discovery): it needs its token.
                "automountServiceAccountToken": True,
                "securityContext": podpolicy.pod_security(ROUTER_RUN_AS_USER),
                "containers": [container],
                "topologySpreadConstraints": podpolicy.zone_spread(pods),
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
            }},
        },
    }
    return [
        Obj(deployment),
        _service(scope, model.name, pods),
        Obj({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(scope, "router", name, ns),
             "spec": {"maxUnavailable": 1, "selector": {"matchLabels": pods}}}),
        # The account mounts no token by default: only the router's own pods opt in (they read the API).
        Obj({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(scope, "router", name, ns),
             "automountServiceAccountToken": False}),
        Obj({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(scope, "router", name, ns),
             "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]}),
        Obj({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": meta(scope, "router", name, ns),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}),
    ]


def build(scope: Scope, cluster: Cluster, model: Model, plan: ModelPlan, prefill: ModelPlan | None = None) -> Unit:
    """The model's objects; `plan` is its workload, or its decode groups when `prefill` is given."""
    ns = inference_namespace(scope)
    objs: list[Obj] = []
    if prefill is None:
        objs += _serving(scope, model, plan)
        objs.insert(1, _service(scope, model.name, serving_pods(scope, model, plan)))
    else:
        objs += _serving(scope, model, prefill) + _serving(scope, model, plan) + _router(scope, model, prefill, plan)
    objs += [
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
