"""The warm gate: images pre-pulled on every GPU node and weights staged before the night.

A replica is *warm* when it lands on a node that already holds its image (the pre-puller put it
there) and reads weights the staging Job already wrote: only the model load remains. It is *cold*
when the provisioner must first find a node: batch, boot, GPU driver, image pull, then the model load.
The autoscaler's pre-scale lead and the simulator both take their start-up times from here.

Schedule: the staging Job is created by `pulumi up` but not awaited (`pulumi.com/skipAwait`: it
runs for hours, beyond pulumi-kubernetes' Job wait); its `peaknight.io/wait` annotation is the
explicit wait (`kubectl wait ... --timeout=<the Job's deadline>`) the runbook runs after `pulumi
up`, and `peaknight.io/must-finish-before` the latest time it must have finished (the first
moment's cold pre-scale), with the Job's own deadline as the budget. Weights are staged at the
model's pinned `weightsRevision`.
The deadline is the window's start minus the longest cold pre-scale lead of any model, which is
before every pre-scale of the night. The pre-puller is a DaemonSet: it fills every pool node as
soon as the node joins, so the floor's nodes and every node a pre-scale adds stay warm.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Iterable, Sequence

from peaknight.spec import profiles
from peaknight.plan.figure import Figure
from peaknight.plan.startup import ready_seconds
from peaknight.engines.base import MODEL_DIR
from peaknight.builders.inference import RUN_AS_USER, weights_claim
from peaknight.builders import podpolicy
from peaknight.builders.objects import Obj, Scope, Tier, Unit, inference_namespace, literal_arg, meta, priority_class
from peaknight.spec.stack import Cluster, Model

# Pinned by digest like every image of the night (policy immutable-images): a tag can be repointed.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
# The staging Job copies weights at the registry pull rate (profiles timings: 27 s/GiB, BentoML's
# 20 GB image); its deadline allows twice that before it is declared failed.
STAGING_DEADLINE_FACTOR = 2
# pulumi-kubernetes: a resource with this annotation is created without awaiting its readiness.
SKIP_AWAIT = "pulumi.com/skipAwait"
# Slack on top of a replica's ready time before its moment: one HPA sync (15 s, kube-controller-
# manager default), a readiness probe cycle (5 s period x 3) and room for a slow scheduler.
PRESCALE_SLACK_SECONDS = 120
# The warm gate's own ServiceAccount, without a token: neither the pullers nor the staging Jobs
# talk to the API server.
SERVICE_ACCOUNT = "warm-gate"
_TINY = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}


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
                    "priorityClassName": priority_class(scope, Tier.WARM),
                    "securityContext": podpolicy.pod_security(RUN_AS_USER),
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    **podpolicy.gpu_placement(pool),
                    "initContainers": init,
                    "containers": [{"name": "pause", "image": PAUSE_IMAGE, "resources": _TINY,
                                    "securityContext": podpolicy.container_security()}],
                },
            },
        },
    })


def staging_name(model: Model) -> str:
    """The staging Job's name and its pods' app.kubernetes.io/name (the network policy selects it)."""
    return f"stage-{model.name}"


def _staging_job(scope: Scope, model: Model, deadline: dt.datetime) -> Obj:
    """Download the weights into the model's weights volume (idempotent: files present are skipped)."""
    name = staging_name(model)
    expected = staging_seconds(model)
    target = f"{MODEL_DIR}/{model.weights}"
    revision = f", revision={model.weights_revision!r}" if model.weights_revision else ""
    script = ("from huggingface_hub import snapshot_download\n"
              f"snapshot_download(repo_id={model.weights!r}, local_dir={target!r}{revision})\n")
    deadline_seconds = STAGING_DEADLINE_FACTOR * expected
    manifest = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {**meta(scope, "warm-gate", name, inference_namespace(scope)), "annotations": {
            "peaknight.io/must-finish-before": f"{deadline.isoformat()} {scope.event.time_zone} (the earliest "
                                               "cold pre-scale)",
            "peaknight.io/expected-seconds": f"{expected} = weights at the registry pull rate (profiles.yaml)",
            # Staging takes hours; pulumi-kubernetes would wait for the Job (10 min by default) and
            # fail the update. It is created and not awaited; the runbook waits explicitly.
            SKIP_AWAIT: "true",
            "peaknight.io/wait": (f"kubectl wait --for=condition=complete job/{name} -n {inference_namespace(scope)} "
                                  f"--timeout={deadline_seconds}s"),
        }},
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": deadline_seconds,
            "template": {
                "metadata": {"labels": meta(scope, "warm-gate", name)["labels"]},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "securityContext": podpolicy.pod_security(RUN_AS_USER),
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "containers": [{
                        "name": "stage", "image": model.image, "imagePullPolicy": "IfNotPresent",
                        "command": ["python3", "-c", literal_arg(script)],
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
    objs = [Obj({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": meta(scope, "warm-gate", SERVICE_ACCOUNT, inference_namespace(scope)),
                 "automountServiceAccountToken": False})]
    objs += [_prepuller(scope, pool, images) for pool, images in pools.items()]
    objs += [_staging_job(scope, model, deadline) for model in models]
    return Unit("WarmGate", cluster.name, tuple(objs))
