"""The warm gate: images pre-pulled on every GPU node and weights staged before the night.

A replica is *warm* when it lands on a node that already holds its image (the pre-puller put it
there) and reads weights the staging Job already wrote: only the model load remains. It is *cold*
when the provisioner must first find a node: batch, boot, GPU driver, image pull, then the model load.
The autoscaler's pre-scale lead and the simulator both take their start-up times from here.

Schedule: the staging Job is created by `pulumi up`, and pulumi-kubernetes waits for a Job to
complete before it reports the update done, so a finished `pulumi up` means staged weights. Its
annotation names the latest time it must have finished (the first moment's pre-scale) and the
runbook's change freeze puts `pulumi up` before that, with the Job's own deadline as the budget.
The deadline is the window's start minus the longest cold pre-scale lead of any model, which is
before every pre-scale of the night. The pre-puller is a DaemonSet: it fills every pool node as
soon as the node joins, so the floor's nodes and every node a pre-scale adds stay warm.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Iterable, Sequence

from peaknight.spec import profiles
from peaknight.plan.capacity import Figure
from peaknight.engines.base import MODEL_DIR
from peaknight.builders.inference import RUN_AS_USER, weights_claim
from peaknight.builders import podpolicy
from peaknight.builders.objects import Scope, Obj, Unit, inference_namespace, meta, priority_class
from peaknight.spec.stack import Cluster, Model

# Pinned by digest like every image of the night (policy immutable-images): a tag can be repointed.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
# The staging Job copies weights at the registry pull rate (profiles timings: 27 s/GiB, BentoML's
# 20 GB image); its deadline allows twice that before it is declared failed.
STAGING_DEADLINE_FACTOR = 2
# Slack on top of a replica's ready time before its moment: one HPA sync (15 s, kube-controller-
# manager default), a readiness probe cycle (5 s period x 3) and room for a slow scheduler.
PRESCALE_SLACK_SECONDS = 120
_TINY = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}


def ready_seconds(model: Model, warm: bool) -> Figure:
    """Seconds from a replica being created to it serving, from the profile table's timings."""
    table = profiles.load()
    cls, t = table.model_classes[model.model_class], table.timings
    if warm:
        return Figure(cls.startup_seconds, f"warm: model load {cls.startup_seconds} s")
    pull = math.ceil(cls.image_gib * t.image_pull_seconds_per_gib)
    total = t.node_batch_seconds + t.node_ready_seconds + t.gpu_driver_seconds + pull + cls.startup_seconds
    return Figure(total, f"cold: node launch batch {t.node_batch_seconds} + node ready {t.node_ready_seconds} + "
                         f"GPU driver {t.gpu_driver_seconds} + image pull {cls.image_gib:g} GiB x "
                         f"{t.image_pull_seconds_per_gib:g} s = {pull} + model load {cls.startup_seconds} = {total} s")


def staging_seconds(model: Model) -> int:
    """Expected time to copy the weights into the shared volume."""
    table = profiles.load()
    return math.ceil(table.model_classes[model.model_class].weights_gib * table.timings.image_pull_seconds_per_gib)


def _prepuller(scope: Scope, pool: str, images: list[str]) -> Obj:
    """Init containers pull each image and exit; the pause container keeps the pod (and the
    image's last user) on the node, so the kubelet's image GC does not evict it."""
    name = f"prepull-{pool}"
    labels = {"app.kubernetes.io/name": name, "peaknight.io/event": scope.event.name}
    init = [{"name": f"pull-{i}", "image": image, "imagePullPolicy": "IfNotPresent",
             "command": ["/bin/sh", "-c", "exit 0"], "resources": _TINY,
             "securityContext": podpolicy.container_security()}
            for i, image in enumerate(images)]
    return Obj({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": meta(scope, "warm-gate", name, inference_namespace(scope)),
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": {**meta(scope, "warm-gate", name)["labels"], **labels}},
                "spec": {
                    "priorityClassName": priority_class(scope),
                    "securityContext": podpolicy.pod_security(RUN_AS_USER),
                    "automountServiceAccountToken": False,
                    **podpolicy.gpu_placement(pool),
                    "initContainers": init,
                    "containers": [{"name": "pause", "image": PAUSE_IMAGE, "resources": _TINY,
                                    "securityContext": podpolicy.container_security()}],
                },
            },
        },
    })


def _staging_job(scope: Scope, model: Model, deadline: dt.datetime) -> Obj:
    """Download the weights into the model's weights volume (idempotent: files present are skipped)."""
    name = f"stage-{model.name}"
    expected = staging_seconds(model)
    target = f"{MODEL_DIR}/{model.weights}"
    script = ("from huggingface_hub import snapshot_download\n"
              f"snapshot_download(repo_id={model.weights!r}, local_dir={target!r})\n")
    manifest = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {**meta(scope, "warm-gate", name, inference_namespace(scope)), "annotations": {
            "peaknight.io/must-finish-before": f"{deadline.isoformat()} {scope.event.time_zone} (the earliest "
                                               "cold pre-scale); pulumi up waits for this Job",
            "peaknight.io/expected-seconds": f"{expected} = weights at the registry pull rate (profiles.yaml)",
        }},
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": STAGING_DEADLINE_FACTOR * expected,
            "template": {
                "metadata": {"labels": meta(scope, "warm-gate", name)["labels"]},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "securityContext": podpolicy.pod_security(RUN_AS_USER),
                    "automountServiceAccountToken": False,
                    "containers": [{
                        "name": "stage", "image": model.image, "imagePullPolicy": "IfNotPresent",
                        "command": ["python3", "-c", script],
                        "env": [{"name": "HOME", "value": "/tmp"}],
                        "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi"}},
                        "volumeMounts": [{"name": "weights", "mountPath": MODEL_DIR},
                                         {"name": "tmp", "mountPath": "/tmp"}],
                        "securityContext": podpolicy.container_security(),
                    }],
                    "volumes": [{"name": "weights", "persistentVolumeClaim": {"claimName": weights_claim(model)}},
                                {"name": "tmp", "emptyDir": {"sizeLimit": "20Gi"}}],
                },
            },
        },
    }
    return Obj(manifest)


def lead(model: Model, warm: bool) -> Figure:
    """How long before a moment its pre-scale starts: the ready time, plus one HPA sync and a
    readiness-probe cycle of slack, rounded up to whole minutes because cron fires on minutes."""
    ready = ready_seconds(model, warm)
    minutes = math.ceil((ready.value + PRESCALE_SLACK_SECONDS) / 60)
    return Figure(minutes * 60, f"ceil(({ready.why}) + slack {PRESCALE_SLACK_SECONDS} s) = {minutes} min")


def must_finish(scope: Scope, models: Iterable[Model]) -> dt.datetime:
    """The warm gate's deadline: before the earliest cold pre-scale of any model (local time)."""
    return scope.event.window.start - dt.timedelta(seconds=max(lead(m, warm=False).value for m in models))


def build(scope: Scope, cluster: Cluster, models: Sequence[Model]) -> Unit:
    """The cluster's pre-pullers (one per GPU pool) and staging Jobs (one per model)."""
    deadline = must_finish(scope, models)
    pools: dict[str, list[str]] = {}
    for model in models:
        images = pools.setdefault(model.pool, [])
        if model.image not in images:
            images.append(model.image)
    objs = [_prepuller(scope, pool, images) for pool, images in pools.items()]
    objs += [_staging_job(scope, model, deadline) for model in models]
    return Unit("WarmGate", cluster.name, tuple(objs))
