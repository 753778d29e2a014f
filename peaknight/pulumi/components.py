"""The public Pulumi components: ClusterBase, GpuNodePool, InferenceService, InferenceRouter,
Autoscaler, WarmGate, LiveEdge, ClusterStack.

A program of one's own composes them so that everything an object references is registered too:
ClusterBase holds the namespaces, PriorityClasses and Gateway the others' objects name,
InferenceRouter a colocated model's InferencePool and endpoint picker (its route's backend), and
WarmGate the node cache its servers mount (README, "Using the components in your own program").

Each is a `pulumi.ComponentResource` that takes the typed Args of builders/parts.py, records them
(`.args`), registers every object of `args.unit` (the same Unit `peaknight render` writes) as its
typed pulumi-kubernetes resource, and every cloud resource of the unit as a resource of its
provider package, and exposes what a program composing them needs as outputs.

Providers: pass the cluster's `pulumi_kubernetes.Provider` as `opts.provider` (or in
`opts.providers`); every Kubernetes object gets it explicitly, so nothing lands on a default
provider by accident. Cloud resources inherit their package's provider from the component's
`providers`.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import pulumi
import pulumi_kubernetes as k8s

from peaknight.addons import releases
from peaknight.builders import parts
from peaknight.builders.objects import CloudResource, Obj, Unit
from peaknight.builders.podpolicy import POOL_LABEL
from peaknight.engines.base import PORT
from peaknight.pulumi.addons import ClusterAddons

# Typed pulumi-kubernetes classes for every core kind the kit renders (tests/test_typed_kinds.py
# holds this to the kinds of the render and to pulumi-kubernetes' own classes); anything else is a
# CustomResource (its CRD comes from an add-on). Dict inputs with camelCase keys pass through to the
# object unchanged.
TYPED: dict[tuple[str, str], Callable[..., pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "PersistentVolume"): k8s.core.v1.PersistentVolume,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
    ("batch/v1", "Job"): k8s.batch.v1.Job,
    ("batch/v1", "CronJob"): k8s.batch.v1.CronJob,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("scheduling.k8s.io/v1", "PriorityClass"): k8s.scheduling.v1.PriorityClass,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
}

# Kinds registered as CustomResources (type `kubernetes:<apiVersion>:<kind>`) before they had a row
# above: the alias keeps their URNs, so an existing stack updates them in place instead of
# replacing them (broadcast protects its weight volumes, which a replacement would have to delete).
FORMERLY_CUSTOM = {("v1", "PersistentVolume"), ("apps/v1", "StatefulSet"), ("batch/v1", "CronJob")}

# What a component's objects wait for: the add-on releases that serve their CRDs or metrics APIs
# (ClusterStack passes its ClusterAddons.needed_by; a program of one's own may pass nothing).
NeededBy = Callable[[Obj], Sequence[pulumi.Resource]]


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def resource_for(obj: Obj, name: str, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """The typed resource for a core kind, a CustomResource otherwise, from the manifest dict."""
    manifest = obj.manifest
    key = (manifest["apiVersion"], manifest["kind"])
    ctor = TYPED.get(key)
    fields = {_snake(k): v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    if ctor is not None:
        if key in FORMERLY_CUSTOM:
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                aliases=[pulumi.Alias(type_=f"kubernetes:{key[0]}:{key[1]}")]))
        return ctor(name, opts=opts, **fields)
    return k8s.apiextensions.CustomResource(name, api_version=manifest["apiVersion"], kind=manifest["kind"],
                                            opts=opts, **fields)


def kubernetes_provider(opts: pulumi.ResourceOptions | None) -> pulumi.ProviderResource | None:
    """The Kubernetes provider a component was given, in `provider` or `providers`."""
    if opts is None:
        return None
    if isinstance(opts.provider, k8s.Provider):
        return opts.provider
    given = opts.providers
    candidates = given.values() if isinstance(given, dict) else (given or [])
    return next((p for p in candidates if isinstance(p, k8s.Provider)), None)


def refuse(lines: Sequence[str]) -> None:
    """Stop the program with the gate's SHORT lines (plan/gate.py), as `peaknight plan` prints
    them, before anything is registered: one line each, no traceback."""
    if lines:
        raise pulumi.RunError("\n".join(lines))


class _UnitComponent(pulumi.ComponentResource):
    """Registers one Unit: the shared body of every component below. `prefix` names the resources
    (`<prefix>/<kind>.<namespace>.<name>`); it defaults to the component's own name. A public
    component passes its args' `refusals`: it registers nothing for a plan the gate refuses."""

    _unit: Unit

    def __init__(self, component: str, name: str, args: parts.PartArgs, opts: pulumi.ResourceOptions | None,
                 prefix: str | None, needed_by: NeededBy | None, refusals: Sequence[str] = ()):
        refuse(refusals)
        super().__init__(f"peaknight:index:{component}", name, None, opts)
        self.args = args
        self._unit = args.unit
        self.resources: dict[str, pulumi.CustomResource] = {}
        provider = kubernetes_provider(opts)
        prefix = prefix or name
        for obj in self._unit.objects:
            self.resources[obj.key] = resource_for(obj, f"{prefix}/{obj.key}", pulumi.ResourceOptions(
                parent=self, provider=provider, protect=obj.protect, ignore_changes=list(obj.ignore_changes) or None,
                depends_on=list(needed_by(obj)) if needed_by else None))
        self.cloud_resources: dict[str, pulumi.CustomResource] = {}
        for cloud in self._unit.cloud:
            self.cloud_resources[cloud.key] = _cloud_resource(cloud, f"{prefix}/{cloud.key}", self, self.cloud_resources)

    def _object(self, kind: str, name: str) -> pulumi.CustomResource:
        """The registered resource of this unit's object of `kind` named `name`."""
        obj = next(o for o in self._unit.objects if o.kind == kind and o.name == name)
        return self.resources[obj.key]


def _cloud_resource(cloud: CloudResource, name: str, parent: pulumi.Resource,
                    earlier: dict[str, pulumi.CustomResource]) -> pulumi.CustomResource:
    """A cloud resource by its type token: the provider package's plugin serves it, with the
    provider the component inherited for that package. A property naming an earlier resource of
    the unit (CloudResource.ref) is that resource's `id` output."""
    properties = {k: _resolve(v, earlier) for k, v in cloud.properties.items()}
    return pulumi.CustomResource(cloud.type, name, properties,
                                 pulumi.ResourceOptions(parent=parent, protect=cloud.protect))


def _resolve(value: Any, earlier: dict[str, pulumi.CustomResource]) -> Any:
    """`${<key>.id}` (CloudResource.ref) as the `id` output of the unit's resource of that key."""
    if isinstance(value, str) and value.startswith("${") and value.endswith(".id}"):
        return earlier[value[2:-4]].id
    return value


class ClusterBase(_UnitComponent):
    """What every other component's objects stand on in one cluster: the event's namespaces
    (inference, edge, monitoring, weights), its PriorityClasses (assistant, serving, warm) and the
    Gateway the models' routes attach to (with its Envoy data plane when `args.gateway` is planned).
    Declare it first and let the others depend on it.

    Outputs: `namespaces` (the four namespace names), `priority_classes`, `gateway_name`."""

    def __init__(self, name: str, args: parts.ClusterBaseArgs, opts: pulumi.ResourceOptions | None = None, *,
                 prefix: str | None = None, needed_by: NeededBy | None = None):
        super().__init__("ClusterBase", name, args, opts, prefix, needed_by)
        names = {kind: [o.name for o in self._unit.objects if o.kind == kind]
                 for kind in ("Namespace", "PriorityClass", "Gateway")}
        self.namespaces: pulumi.Output[list[str]] = pulumi.Output.from_input(names["Namespace"])
        self.priority_classes: pulumi.Output[list[str]] = pulumi.Output.from_input(names["PriorityClass"])
        self.gateway_name: pulumi.Output[str] = pulumi.Output.from_input(names["Gateway"][0])
        self.register_outputs({"namespaces": self.namespaces, "priority_classes": self.priority_classes,
                               "gateway_name": self.gateway_name})


class InferenceRouter(_UnitComponent):
    """A colocated model's prefix- and load-aware routing in one cluster: the InferencePool its
    route sends to and the endpoint picker (llm-d-router's EPP: Deployment, Service, config, RBAC)
    the pool asks. A disaggregated model's router is SGLang's, inside its InferenceService.

    Outputs: `pool_name`, `endpoint_picker` (the EPP's Service)."""

    def __init__(self, name: str, args: parts.InferenceRouterArgs, opts: pulumi.ResourceOptions | None = None, *,
                 prefix: str | None = None, needed_by: NeededBy | None = None):
        super().__init__("InferenceRouter", name, args, opts, prefix, needed_by)
        pool = next(o for o in self._unit.objects if o.kind == "InferencePool")
        self.pool_name: pulumi.Output[str] = pulumi.Output.from_input(pool.name)
        self.endpoint_picker: pulumi.Output[str] = pulumi.Output.from_input(
            pool.manifest["spec"]["endpointPickerRef"]["name"])
        self.register_outputs({"pool_name": self.pool_name, "endpoint_picker": self.endpoint_picker})


class GpuNodePool(_UnitComponent):
    """One GPU pool in one cluster, declared by the cluster's provisioner.

    Outputs: `gpu_limit` (the pool's GPU cap), `planned_nodes`, and `node_selector`, the label
    its nodes carry and pods select them by."""

    def __init__(self, name: str, args: parts.GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None, *,
                 prefix: str | None = None, needed_by: NeededBy | None = None):
        super().__init__("GpuNodePool", name, args, opts, prefix, needed_by, args.refusals)
        self.gpu_limit: pulumi.Output[int] = pulumi.Output.from_input(int(args.plan.gpu_limit.value))
        self.planned_nodes: pulumi.Output[int] = pulumi.Output.from_input(int(args.plan.nodes.value))
        self.node_selector: pulumi.Output[dict[str, str]] = pulumi.Output.from_input({POOL_LABEL: args.pool.name})
        self.register_outputs({"gpu_limit": self.gpu_limit, "planned_nodes": self.planned_nodes,
                               "node_selector": self.node_selector})


class InferenceService(_UnitComponent):
    """One model's servers in one cluster: workload, weights volume, Service, PDB, monitor, route.

    Outputs: `service_name`, `namespace`, `url` (in-cluster, OpenAI-compatible base), `floor_replicas`
    and `peak_replicas` from the plan, and `workload_kind` (Deployment or LeaderWorkerSet)."""

    def __init__(self, name: str, args: parts.InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None, *,
                 prefix: str | None = None, needed_by: NeededBy | None = None):
        super().__init__("InferenceService", name, args, opts, prefix, needed_by, args.refusals)
        service = self._object("Service", args.model.name)
        meta = service.metadata  # type: ignore[attr-defined]
        self.service_name: pulumi.Output[str] = meta.apply(lambda m: m["name"])
        self.namespace: pulumi.Output[str] = meta.apply(lambda m: m["namespace"])
        self.url: pulumi.Output[str] = meta.apply(lambda m: f"http://{m['name']}.{m['namespace']}.svc:{PORT}/v1")
        self.floor_replicas: pulumi.Output[int] = pulumi.Output.from_input(int(args.plan.floor_replicas.value))
        self.peak_replicas: pulumi.Output[int] = pulumi.Output.from_input(int(args.plan.replicas.value))
        workload = next(o for o in self._unit.objects if o.kind in ("Deployment", "LeaderWorkerSet"))
        self.workload_kind: pulumi.Output[str] = pulumi.Output.from_input(workload.kind)
        self.register_outputs({"service_name": self.service_name, "namespace": self.namespace, "url": self.url,
                               "floor_replicas": self.floor_replicas, "peak_replicas": self.peak_replicas,
                               "workload_kind": self.workload_kind})


class Autoscaler(_UnitComponent):
    """The autoscaler of an InferenceService: a KEDA ScaledObject (token rate plus a cron floor per
    moment) or a plain HPA, as the cluster says.

    Outputs: `kind`, `min_replicas`, `max_replicas` as rendered (of the decode groups' autoscaler
    for a disaggregated model, whose prefill groups have their own)."""

    def __init__(self, name: str, args: parts.AutoscalerArgs, opts: pulumi.ResourceOptions | None = None, *,
                 prefix: str | None = None, needed_by: NeededBy | None = None):
        super().__init__("Autoscaler", name, args, opts, prefix, needed_by, args.refusals)
        obj = self._unit.objects[-1]
        spec: dict[str, Any] = obj.manifest["spec"]
        keda = obj.kind == "ScaledObject"
        self.kind: pulumi.Output[str] = pulumi.Output.from_input(obj.kind)
        self.min_replicas: pulumi.Output[int] = pulumi.Output.from_input(
            int(spec["minReplicaCount" if keda else "minReplicas"]))
        self.max_replicas: pulumi.Output[int] = pulumi.Output.from_input(
            int(spec["maxReplicaCount" if keda else "maxReplicas"]))
        self.register_outputs({"kind": self.kind, "min_replicas": self.min_replicas,
                               "max_replicas": self.max_replicas})


class LiveEdge(_UnitComponent):
    """One live edge tier (nginx edge caches) in one cluster.

    Outputs: `service_name` (the viewers' Service), `service_type` (LoadBalancer when the edge is
    exposed itself, ClusterIP behind the cluster's ingress), `planned_pods`."""

    def __init__(self, name: str, args: parts.LiveEdgeArgs, opts: pulumi.ResourceOptions | None = None, *,
                 prefix: str | None = None, needed_by: NeededBy | None = None):
        super().__init__("LiveEdge", name, args, opts, prefix, needed_by, args.refusals)
        service = self._object("Service", args.edge.name)
        self.service_name: pulumi.Output[str] = service.metadata.apply(  # type: ignore[attr-defined]
            lambda m: m["name"])
        self.service_type: pulumi.Output[str] = service.spec.apply(lambda s: s["type"])  # type: ignore[attr-defined]
        self.planned_pods: pulumi.Output[int] = pulumi.Output.from_input(int(args.plan.pods.value))
        self.register_outputs({"service_name": self.service_name, "service_type": self.service_type,
                               "planned_pods": self.planned_pods})


class WarmGate(_UnitComponent):
    """What makes a cluster's replicas warm: image pre-pullers, one weight source per model and
    zone with its staging Job, and the GPU nodes' weight caches with their fillers. The model
    servers of an InferenceService wait for their node's cache, so declare one beside them.

    Outputs: `staging_waits`, the `kubectl wait` command of each staging Job (run them after
    `pulumi up`: the Jobs are not awaited)."""

    def __init__(self, name: str, args: parts.WarmGateArgs, opts: pulumi.ResourceOptions | None = None, *,
                 prefix: str | None = None, needed_by: NeededBy | None = None):
        super().__init__("WarmGate", name, args, opts, prefix, needed_by, args.refusals)
        self.staging_waits: pulumi.Output[list[str]] = pulumi.Output.from_input(
            [o.manifest["metadata"]["annotations"]["peaknight.io/wait"] for o in args.unit.objects if o.kind == "Job"])
        self.register_outputs({"staging_waits": self.staging_waits})


class _ClusterPart(_UnitComponent):
    """The parts of a cluster that are not public components (monitoring, network policies,
    admission, load replay, GitOps add-ons)."""

    def __init__(self, name: str, args: parts.PartArgs, opts: pulumi.ResourceOptions, *, prefix: str,
                 needed_by: NeededBy | None):
        super().__init__(args.unit.component, name, args, opts, prefix, needed_by)
        self.register_outputs({})


class ClusterStack(pulumi.ComponentResource):
    """Everything of the event in one cluster: its add-ons and every part, each under the cluster's
    provider. Resource names are `<cluster>/<kind>.<namespace>.<name>`, as `peaknight render`
    names its files.

    Outputs: `gpus` and `nodes` planned for the cluster, and `model_urls` (model -> in-cluster URL)."""

    def __init__(self, name: str, args: parts.ClusterStackArgs, opts: pulumi.ResourceOptions):
        refuse(args.refusals)
        # Formerly `peaknight:index:Cluster`: the alias keeps every URN under it, so an existing
        # stack updates in place instead of replacing (protected) resources.
        super().__init__("peaknight:index:ClusterStack", name, None, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="peaknight:index:Cluster")])))
        self.args = args
        cluster_parts = args.parts
        provider = kubernetes_provider(opts)
        child = pulumi.ResourceOptions(parent=self, providers=[provider] if provider else None)
        # Helm releases Pulumi installs, unless a GitOps controller installs the add-ons (a part then).
        needed_by: NeededBy | None = None
        if cluster_parts.gitops_addons is None:
            objects = [o for part in cluster_parts.kit() for o in part.unit.objects]
            needed_by = ClusterAddons(name, releases.build(args.spec, args.plan, args.cluster, objects), provider,
                                      bool(args.spec.policy.protect), child).needed_by

        def declare(component: Callable[..., _UnitComponent], part: parts.PartArgs) -> Any:
            return component(f"{name}/{part.unit.name}", part, child, prefix=name, needed_by=needed_by)

        self.base: ClusterBase = declare(ClusterBase, cluster_parts.base)
        self.pools: list[GpuNodePool] = [declare(GpuNodePool, p) for p in cluster_parts.pools]
        self.services: list[InferenceService] = []
        self.autoscalers: list[Autoscaler] = []
        for service_args, autoscaler_args in cluster_parts.services:
            self.services.append(declare(InferenceService, service_args))
            self.autoscalers.append(declare(Autoscaler, autoscaler_args))
        self.routers: list[InferenceRouter] = [declare(InferenceRouter, r) for r in cluster_parts.routers]
        declare(WarmGate, cluster_parts.warm_gate)
        declare(_ClusterPart, cluster_parts.monitoring)
        self.edges: list[LiveEdge] = [declare(LiveEdge, e) for e in cluster_parts.edges]
        declare(_ClusterPart, cluster_parts.network)
        declare(_ClusterPart, cluster_parts.admission)
        if cluster_parts.load_replay is not None:
            declare(_ClusterPart, cluster_parts.load_replay)
        if cluster_parts.steering is not None:
            declare(_ClusterPart, cluster_parts.steering)
        if cluster_parts.gitops_addons is not None:
            declare(_ClusterPart, cluster_parts.gitops_addons)
        self.gpus: pulumi.Output[int] = pulumi.Output.from_input(sum(int(m.gpus.value) for m in args.plan.models))
        self.nodes: pulumi.Output[int] = pulumi.Output.from_input(args.plan.nodes)
        names = [s.model.name for s, _ in cluster_parts.services]
        self.model_urls: pulumi.Output[dict[str, str]] = pulumi.Output.all(*[s.url for s in self.services]).apply(
            lambda urls: dict(zip(names, urls)))
        self.register_outputs({"gpus": self.gpus, "nodes": self.nodes, "model_urls": self.model_urls})
