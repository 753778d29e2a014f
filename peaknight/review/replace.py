"""What `pulumi up` does with a changed object: update it in place, roll its pods, or replace it
(delete and create: every pod at once, a volume's data gone, a Service's address changed).

Replacement follows pulumi-kubernetes' own table of the fields it will not patch
(provider/pkg/provider/diff.go, `forceNew`, pulumi/pulumi-kubernetes 4.x; the kit pins 4.34.2),
which mirrors what the Kubernetes API refuses to change in place:

- Deployment: `spec.selector` (apps/v1: a label selector is immutable after creation; a
  DaemonSet's is too, but the table spells that kind `Daemonset`, so Pulumi attempts an update the
  API server refuses: not listed here);
- StatefulSet: `spec.selector`, `spec.volumeClaimTemplates`, `spec.serviceName`,
  `spec.podManagementPolicy`, `spec.revisionHistoryLimit` (the API server forbids updates to any
  StatefulSet spec field but replicas, ordinals, template, updateStrategy,
  persistentVolumeClaimRetentionPolicy and minReadySeconds: k8s pkg/apis/apps/validation);
- Job: `spec.template`, `spec.selector`, `spec.completions`, `spec.parallelism` (a Job's pod
  template is immutable: k8s pkg/apis/batch/validation);
- PersistentVolumeClaim: its whole `spec` (the API allows only resources.requests to grow on a
  bound claim; Pulumi replaces on any change, e.g. `spec.storageClassName`);
- PersistentVolume: its volume source; Service: `spec.clusterIP` (immutable once set);
- ConfigMap: `data`, `binaryData`, and Secret: `data`, `stringData`, `type` (the provider treats
  them as immutable unless `enableConfigMapMutable`/`enableSecretMutable`, which the kit does not set);
- StorageClass: `parameters`, `provisioner`; RoleBinding, ClusterRoleBinding: `roleRef` (immutable);
- any object: `metadata.name`, `metadata.namespace` (the diff shows those as removed and added).

A change under a workload's pod template (`spec.template`; a LeaderWorkerSet's
`spec.leaderWorkerTemplate`) that does not replace it is a rolling update of its pods.
"""
from __future__ import annotations

import re
from typing import Any

_SELECTOR = ("spec.selector",)
# (API group, kind) -> field paths whose change makes Pulumi replace the object; "[*]" any list item.
FORCE_NEW: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "Deployment"): _SELECTOR,
    ("apps", "StatefulSet"): (*_SELECTOR, "spec.podManagementPolicy", "spec.revisionHistoryLimit", "spec.serviceName",
                              "spec.volumeClaimTemplates"),
    ("batch", "Job"): (*_SELECTOR, "spec.completions", "spec.parallelism", "spec.template"),
    ("", "ConfigMap"): ("binaryData", "data"),
    ("", "Secret"): ("type", "stringData", "data"),
    ("", "PersistentVolumeClaim"): ("spec",),
    ("", "PersistentVolume"): tuple(f"spec.{source}" for source in (
        "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume", "flocker",
        "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local", "nfs", "photonPersistentDisk",
        "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume")),
    ("", "ResourceQuota"): ("spec.scopes",),
    ("", "Service"): ("spec.clusterIP",),
    ("storage.k8s.io", "StorageClass"): ("parameters", "provisioner"),
    ("rbac.authorization.k8s.io", "RoleBinding"): ("roleRef",),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): ("roleRef",),
}
# The pod template a workload rolls its pods to when it changes.
POD_TEMPLATE: dict[tuple[str, str], str] = {
    ("apps", "Deployment"): "spec.template", ("apps", "DaemonSet"): "spec.template",
    ("apps", "StatefulSet"): "spec.template",
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): "spec.leaderWorkerTemplate",
}


def kind_of(manifest: dict[str, Any]) -> tuple[str, str]:
    """(API group, kind): the core group is ""."""
    api = str(manifest.get("apiVersion", ""))
    return (api.split("/")[0] if "/" in api else "", str(manifest.get("kind", "")))


def changed_path(line: str) -> str:
    """The field a change line (`~ spec.x[name].y: a -> b`) is about, list items as `[*]`."""
    return re.sub(r"\[[^\]]*\]", "[*]", line[2:].split(": ", 1)[0])


def _under(path: str, field: str) -> bool:
    return path == field or path.startswith(field + ".") or path.startswith(field + "[")


def forcing(manifest: dict[str, Any], lines: list[str] | tuple[str, ...]) -> list[str]:
    """The fields among the changed ones that make Pulumi replace the object, in table order."""
    paths = [changed_path(line) for line in lines]
    return [f for f in FORCE_NEW.get(kind_of(manifest), ()) if any(_under(p, f) for p in paths)]


def rolls(manifest: dict[str, Any], lines: list[str] | tuple[str, ...]) -> bool:
    """Whether the change rolls the workload's pods (a pod template change it can make in place)."""
    template = POD_TEMPLATE.get(kind_of(manifest))
    return template is not None and not forcing(manifest, lines) and any(
        _under(changed_path(line), template) for line in lines)
