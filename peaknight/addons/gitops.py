"""The add-ons as GitOps objects: Argo CD Applications, or Flux HelmReleases + HelmRepositories.

With `peaknight:gitops` set, a cluster's add-ons are not Helm releases that Pulumi installs but
objects its GitOps controller installs from the same pinned charts (charts/<addon>/chart.yaml) with
the same values (releases.build). That is the only way `peaknight:renderDirectory` can carry them:
pulumi-kubernetes cannot render a helm.v3.Release to a directory (pulumi/pulumi-kubernetes#1716).
They are one more part of each cluster (builders/parts.py), so the offline render and the Pulumi
program cannot differ.

Both kinds assume the GitOps controller runs in the cluster it manages and syncs that cluster's
render directory (OUT/<cluster>/): Applications go to its `argocd` namespace with the in-cluster
destination, Flux objects to `flux-system`.
"""
from __future__ import annotations

from typing import Any, Iterable

from peaknight.addons import releases
from peaknight.addons.releases import AddonRelease
from peaknight.builders.objects import Obj, Unit, meta
from peaknight.plan.capacity import ClusterPlan
from peaknight.spec.stack import Cluster, GitOps, StackSpec

ARGOCD_NAMESPACE = "argocd"
FLUX_NAMESPACE = "flux-system"
IN_CLUSTER = "https://kubernetes.default.svc"
COMPONENT = "GitOpsAddons"
# How often Flux reconciles the releases and re-reads the chart index: drift is undone within it.
FLUX_INTERVAL = "10m"
# Same budget the Pulumi shell gives a Helm release (pulumi/addons.py TIMEOUT_SECONDS).
TIMEOUT = "900s"
# Argo CD applies a sync's resources wave by wave, lowest first (the default wave is 0).
SYNC_WAVE = "argocd.argoproj.io/sync-wave"


def waves(releases: tuple[AddonRelease, ...]) -> dict[str, int]:
    """Add-on -> its Application's sync wave: below 0 (the kit's objects' default wave), each
    add-on one wave after the deepest add-on it needs (their CRDs are in its chart's objects)."""
    by_addon = {r.addon: r for r in releases}
    depth: dict[str, int] = {}

    def level(addon: str) -> int:
        if addon not in depth:
            depth[addon] = 1 + max((level(n) for n in by_addon[addon].needs if n in by_addon), default=-1)
        return depth[addon]

    deepest = max((level(a) for a in by_addon), default=0)
    return {addon: level(addon) - deepest - 1 for addon in by_addon}


def argocd_application(spec: StackSpec, release: AddonRelease, wave: int) -> dict[str, Any]:
    """One Application: the pinned chart at its pinned version with the release's values. An OCI
    chart is Argo CD's native OCI source (oci://registry/chart, path '.'); a classic one names its
    repository and chart. Automated sync without pruning: nothing is deleted on broadcast night by
    a sync, as with the kit's own objects. `wave` orders it in the cluster's root (bootstrap.py)."""
    chart = release.chart
    if chart.oci:
        source: dict[str, Any] = {"repoURL": chart.ref, "path": ".", "targetRevision": chart.version}
    else:
        source = {"repoURL": chart.repository, "chart": chart.name, "targetRevision": chart.version}
    source["helm"] = {"releaseName": release.name, "valuesObject": release.values}
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {**meta(spec, "addon", release.name, ARGOCD_NAMESPACE),
                     "annotations": {SYNC_WAVE: str(wave)}},
        "spec": {
            "project": "default",
            "source": source,
            "destination": {"server": IN_CLUSTER, "namespace": chart.namespace},
            "syncPolicy": {"automated": {"prune": False, "selfHeal": True},
                           "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"]},
        },
    }


def flux_repository_name(release: AddonRelease) -> str:
    """One HelmRepository per add-on, named after it (two add-ons may share a URL; harmless)."""
    return release.addon


def flux_repository(spec: StackSpec, release: AddonRelease) -> dict[str, Any]:
    chart = release.chart
    body: dict[str, Any] = {"url": chart.repository, "interval": FLUX_INTERVAL}
    if chart.oci:
        body["type"] = "oci"
    return {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": meta(spec, "addon", flux_repository_name(release), FLUX_NAMESPACE), "spec": body}


def flux_release(spec: StackSpec, release: AddonRelease) -> dict[str, Any]:
    """One HelmRelease: pinned chart and version, the release's values, CRDs installed and upgraded,
    and `dependsOn` the releases whose CRDs its own objects use (the order Pulumi's depends_on gives)."""
    chart = release.chart
    body: dict[str, Any] = {
        "interval": FLUX_INTERVAL,
        "releaseName": release.name,
        "targetNamespace": chart.namespace,
        "timeout": TIMEOUT,
        "chart": {"spec": {"chart": chart.name, "version": chart.version,
                           "sourceRef": {"kind": "HelmRepository", "name": flux_repository_name(release),
                                         "namespace": FLUX_NAMESPACE}}},
        "install": {"createNamespace": True, "crds": "CreateReplace", "remediation": {"retries": 3}},
        "upgrade": {"crds": "CreateReplace", "remediation": {"retries": 3, "remediateLastFailure": True}},
        "values": release.values,
    }
    if release.needs:
        body["dependsOn"] = [{"name": name, "namespace": FLUX_NAMESPACE} for name in release.needs]
    return {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": meta(spec, "addon", release.addon, FLUX_NAMESPACE), "spec": body}


def gitops_objects(spec: StackSpec, cluster_releases: tuple[AddonRelease, ...]) -> tuple[Obj, ...]:
    """The GitOps objects of one cluster's add-ons, as `spec.gitops` chooses."""
    protect = bool(spec.policy.protect)
    if spec.gitops is GitOps.ARGOCD:
        wave = waves(cluster_releases)
        return tuple(Obj(argocd_application(spec, r, wave[r.addon]), protect=protect) for r in cluster_releases)
    out = []
    for r in cluster_releases:
        out += [Obj(flux_repository(spec, r), protect=protect), Obj(flux_release(spec, r), protect=protect)]
    return tuple(out)


def unit(spec: StackSpec, plan: ClusterPlan, cluster: Cluster, objects: Iterable[Obj]) -> Unit:
    """The GitOps unit of one cluster: its add-on releases (those its `objects` need) as objects."""
    return Unit(COMPONENT, "addons", gitops_objects(spec, releases.build(spec, plan, cluster, objects)))
