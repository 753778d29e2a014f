"""The Pulumi shell: one Provider per cluster, one component per unit, one resource per object.

Everything here is Pulumi's part only: names, parents, providers, protect, ignore_changes. The
objects themselves come from the same builders the offline render uses (event.build), so the
program cannot create anything review did not see.
"""
from __future__ import annotations

import re
from typing import Callable

import pulumi
import pulumi_kubernetes as k8s

from peaknight.addons import gitops
from peaknight.addons import releases as addons
from peaknight.plan import capacity
from peaknight.spec import config
from peaknight.builders import event
from peaknight.builders.objects import Obj
from peaknight.pulumi import stack_config
from peaknight.pulumi.addons import ClusterAddons
from peaknight.spec.stack import StackSpec

# Typed pulumi-kubernetes classes for core kinds; anything else is a CustomResource (its CRD comes
# from an add-on). Dict inputs with camelCase keys pass through to the object unchanged.
TYPED: dict[tuple[str, str], Callable[..., pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("batch/v1", "Job"): k8s.batch.v1.Job,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("scheduling.k8s.io/v1", "PriorityClass"): k8s.scheduling.v1.PriorityClass,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def resource_for(obj: Obj, name: str, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """The typed resource for a core kind, a CustomResource otherwise, from the manifest dict."""
    manifest = obj.manifest
    ctor = TYPED.get((manifest["apiVersion"], manifest["kind"]))
    fields = {_snake(k): v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    if ctor is not None:
        return ctor(name, opts=opts, **fields)
    return k8s.apiextensions.CustomResource(name, api_version=manifest["apiVersion"], kind=manifest["kind"],
                                            opts=opts, **fields)


class Cluster(pulumi.ComponentResource):
    """Everything of the event in one cluster; its children all use the cluster's provider
    (passed in `opts.providers` and, explicitly, to every resource)."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions):
        super().__init__("peaknight:index:Cluster", name, None, opts)


class Unit(pulumi.ComponentResource):
    """A GpuNodePool, InferenceService, ...: the component type names the concept."""

    def __init__(self, component: str, name: str, opts: pulumi.ResourceOptions):
        super().__init__(f"peaknight:index:{component}", name, None, opts)


def provider_for(spec: StackSpec, cluster_name: str, adopt_existing: bool) -> k8s.Provider:
    """The cluster's provider: kubeconfig from its secret, or YAML to a directory for GitOps."""
    cfg = pulumi.Config(config.NAMESPACE)
    key = f"{config.KUBECONFIG_PREFIX}{cluster_name}"
    render_dir = f"{spec.render_directory}/{cluster_name}" if spec.render_directory else None
    kubeconfig = cfg.get_secret(key)
    if kubeconfig is None and render_dir is None:
        raise pulumi.RunError(f"Pulumi config of stack {pulumi.get_stack()}: {config.NAMESPACE}:{key}: expected "
                              f"the cluster's kubeconfig as a secret (pulumi config set --secret "
                              f"{config.NAMESPACE}:{key} < kubeconfig); found nothing")
    return k8s.Provider(cluster_name, kubeconfig=kubeconfig, render_yaml_to_directory=render_dir,
                        enable_server_side_apply=True, upsert_existing_objects=adopt_existing)


def deploy(spec: StackSpec) -> event.EventObjects:
    """Declare every object of the event; returns what was declared (for exports and tests).
    With `peaknight:gitops` the add-ons are objects of their own unit (Argo CD / Flux), which a
    render directory can hold; otherwise Helm releases every object that needs one waits for."""
    objects = gitops.build(spec)
    for cluster_objects in objects.clusters:
        cluster = cluster_objects.cluster
        provider = provider_for(spec, cluster.name, cluster.adopt_existing)
        parent = Cluster(cluster.name, pulumi.ResourceOptions(providers=[provider]))
        cluster_addons = None
        if spec.gitops is None:
            releases = addons.build(spec, objects.plan.cluster(cluster.name), cluster,
                                    [obj for unit in cluster_objects.units for obj in unit.objects])
            cluster_addons = ClusterAddons(cluster.name, releases, provider, bool(spec.policy.protect),
                                           pulumi.ResourceOptions(parent=parent, providers=[provider]))
        for unit in cluster_objects.units:
            component = Unit(unit.component, f"{cluster.name}/{unit.name}",
                             pulumi.ResourceOptions(parent=parent, providers=[provider]))
            for obj in unit.objects:
                resource_for(obj, f"{cluster.name}/{obj.key}", pulumi.ResourceOptions(
                    parent=component, provider=provider, protect=obj.protect,
                    ignore_changes=list(obj.ignore_changes) or None,
                    depends_on=cluster_addons.needed_by(obj) if cluster_addons else None))
            component.register_outputs({})
        parent.register_outputs({})
    return objects


def spec_from_pulumi_config() -> StackSpec:
    """Validate every `peaknight:*` key Pulumi passed exactly as the CLI validates the stack file:
    unknown keys and plain-text kubeconfigs included (stack_config.raw_config)."""
    source = f"Pulumi config of stack {pulumi.get_stack()}"
    return config.parse(stack_config.raw_config(source), source)


def main() -> None:
    """Entry point of __main__.py: config errors surface as one line each, no traceback."""
    try:
        objects = deploy(spec_from_pulumi_config())
    except (config.ConfigError, capacity.EnvelopeError) as err:
        raise pulumi.RunError(str(err)) from None
    plan = objects.plan
    pulumi.export("clusters", [c.cluster.name for c in objects.clusters])
    pulumi.export("gpus", sum(int(m.gpus.value) for c in plan.clusters for m in c.models))
    pulumi.export("nodes", sum(c.nodes for c in plan.clusters))
