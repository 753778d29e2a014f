"""Each cluster's GitOps root: what its controller is pointed at once, so the add-ons (their CRDs and
controllers) are running before the kit's objects that need them are applied.

- Argo CD: one root Application (app of apps) syncing the cluster's render directory, which holds
  the add-on Applications (addons/gitops.py) with `argocd.argoproj.io/sync-wave` below 0 (an add-on
  after the add-ons it needs) and the kit's objects at the default wave 0. The root waits for a
  wave's Applications to be Healthy only with the Application health check in `argocd-cm` (removed
  from Argo CD's defaults in 1.8; docs/operations.md gives the snippet). Custom resources whose
  CRD an earlier wave installs cannot be dry-run before it: SkipDryRunOnMissingResource.
- Flux: a GitRepository, a Kustomization for the add-ons' directory (OUT/<cluster>.addons, with
  `wait` so it is Ready only once every HelmRelease is), and one for the kit's objects that
  `dependsOn` it (without `wait`: a broadcast's rollout outlasts any timeout, and the autoscalers
  own the replica counts). One Kustomization holding both never converges: its server-side dry-run fails on
  the custom resources whose CRDs are not installed yet.

Like the add-ons, the roots assume the controller runs in the cluster it manages.
"""
from __future__ import annotations

import re
from typing import Any

from peaknight.addons.gitops import ARGOCD_NAMESPACE, FLUX_INTERVAL, FLUX_NAMESPACE, IN_CLUSTER, TIMEOUT
from peaknight.addons.releases import AddonRelease
from peaknight.builders.objects import meta
from peaknight.spec.stack import Cluster, GitOps, GitOpsRepository, StackSpec

# Flux's render layout puts a cluster's add-ons beside its objects: OUT/<cluster>.addons (a cluster
# name is a DNS label, so never has a '.').
ADDONS_SUFFIX = ".addons"
# The root's file beside the cluster's directory (outside it: the root is applied once by hand, and
# an Application inside the directory it syncs would own itself).
ROOT_SUFFIX = ".root.yaml"
# The autoscalers own the replica counts (Pulumi ignores them too: ignore_changes spec.replicas).
SCALED = (("apps", "Deployment"), ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"))
_COMMIT = re.compile(r"[0-9a-f]{40}")


def root_name(spec: StackSpec) -> str:
    """One root per cluster, in that cluster's own controller: named after the event."""
    return spec.event.name


def cluster_path(repository: GitOpsRepository, cluster: Cluster, suffix: str = "") -> str:
    return f"{repository.path.rstrip('/')}/{cluster.name}{suffix}"


def argocd_root(spec: StackSpec, repository: GitOpsRepository, cluster: Cluster) -> dict[str, Any]:
    """The app of apps: the cluster's directory, synced in waves, nothing pruned (as the add-ons)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": meta(spec, "gitops-root", root_name(spec), ARGOCD_NAMESPACE),
        "spec": {
            "project": "default",
            "source": {"repoURL": repository.url, "targetRevision": repository.revision,
                       "path": cluster_path(repository, cluster), "directory": {"recurse": False}},
            "destination": {"server": IN_CLUSTER},
            "syncPolicy": {"automated": {"prune": False, "selfHeal": True},
                           "syncOptions": ["ServerSideApply=true", "SkipDryRunOnMissingResource=true",
                                           "RespectIgnoreDifferences=true"]},
            "ignoreDifferences": [{"group": group, "kind": kind, "jsonPointers": ["/spec/replicas"]}
                                  for group, kind in SCALED],
        },
    }


def flux_ref(revision: str) -> dict[str, str]:
    """Flux's GitRepository ref for the revision: a commit, a full ref name, or a branch."""
    if _COMMIT.fullmatch(revision):
        return {"commit": revision}
    if revision.startswith("refs/"):
        return {"name": revision}
    return {"branch": revision}


def flux_roots(spec: StackSpec, repository: GitOpsRepository, cluster: Cluster) -> list[dict[str, Any]]:
    """The source and the two Kustomizations, the objects' waiting for the add-ons' to be Ready."""
    name = root_name(spec)
    source = {"kind": "GitRepository", "name": name}

    def kustomization(suffix: str, path: str, depends: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"interval": FLUX_INTERVAL, "sourceRef": source, "path": f"./{path}", "prune": False}
        if depends:
            body["dependsOn"] = [{"name": depends}]
        else:  # the add-ons: Ready only once every HelmRelease is (its CRDs installed, its controller up)
            body |= {"wait": True, "timeout": TIMEOUT}
        return {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                "metadata": meta(spec, "gitops-root", f"{name}-{suffix}", FLUX_NAMESPACE), "spec": body}

    return [
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
         "metadata": meta(spec, "gitops-root", name, FLUX_NAMESPACE),
         "spec": {"url": repository.url, "ref": flux_ref(repository.revision), "interval": FLUX_INTERVAL}},
        kustomization("addons", cluster_path(repository, cluster, ADDONS_SUFFIX), None),
        kustomization("objects", cluster_path(repository, cluster), f"{name}-addons"),
    ]


def roots(spec: StackSpec, cluster: Cluster) -> list[dict[str, Any]]:
    """The cluster's root objects in `spec.gitops` mode; none without GitOps."""
    repository = spec.gitops_repository
    if spec.gitops is None or repository is None:
        return []
    if spec.gitops is GitOps.ARGOCD:
        return [argocd_root(spec, repository, cluster)]
    return flux_roots(spec, repository, cluster)
