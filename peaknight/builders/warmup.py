"""The warm gate: images pre-pulled on every GPU node and weights on every GPU node's own disk
before the night (plan/weights.py derives the figures).

A replica is *warm* when it lands on a node that already holds its image (the pre-puller put it
there) and its weights (the node-cache filler copied them): only the model load remains. It is
*cold* when the provisioner must first find a node: batch, boot, GPU driver, image pull, the
node-cache fill, then the model load (plan/startup.py).

Weights travel hub (or object storage: models[].weightsFrom) -> per-zone source -> node cache:
- one ReadWriteMany volume per model per zone (`<model>-weights-z<i>`), in the weights namespace,
  sized by the plan for the throughput its zone's fleet needs, and filled by one staging Job per
  zone pinned to that zone (with WaitForFirstConsumer the volume is created where its first
  consumer runs; or the zone's own StorageClass) at the model's pinned `weightsRevision`;
- on every GPU node, a filler (a DaemonSet per pool and zone) copies the pool's models from its
  zone's sources into a directory on the node's local disk (the provisioner says where: the
  instance-store RAID0 on Karpenter/AWS), then marks each revision ready;
- the model servers mount that directory read-only (a hostPath PersistentVolume bound to a claim
  in their namespace, as KServe's LocalModelCache does) and an init container waits for the
  revision's ready mark, so the engine never starts on half a model;
- beside the weights, the engines' JIT and compile caches (`JIT_SUBDIR` of the same directory, a
  second hostPath volume the model servers mount read-write): the filler hands it to the engines'
  user before it copies, so a restart on a node skips the compile its first start did.

Ownership: the node cache is created root-owned and a fresh FSx for Lustre volume's root is
root's (neither hostPath nor the FSx CSI driver applies fsGroup). A short init container, root
with only CHOWN (podpolicy.directory_owner_security, allowed by the weights namespace's baseline
level), creates the directories the unprivileged user writes and gives them to it: the JIT cache
in the filler, the model's directory in each staging Job.

Schedule: the staging Jobs are created by `pulumi up` but not awaited (`pulumi.com/skipAwait`:
they run for hours, beyond pulumi-kubernetes' Job wait); their `peaknight.io/wait` annotation is
the explicit wait (`kubectl wait ... --timeout=<the Job's deadline>`) the runbook runs after
`pulumi up`, and `peaknight.io/must-finish-before` the latest time they must have finished (the
first moment's cold pre-scale). The pre-puller and the fillers are DaemonSets: they fill every
pool node as soon as it joins, so the floor's nodes and every node a pre-scale adds get warm.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any, Iterable, Sequence

from peaknight.builders import podpolicy
from peaknight.builders.objects import (Scope, Obj, Tier, Unit, inference_namespace, literal_arg, meta, priority_class,
                                        weights_namespace)
from peaknight.engines.base import MODEL_DIR, READY_SUFFIX, revision_dir
from peaknight.plan import startup
from peaknight.plan.weights import CACHED_REVISIONS, WeightsPlan, weights_gib
from peaknight.spec.stack import Cluster, Model
from peaknight.spec.weights_from import AWS_KEYS, HF_TOKEN_KEY, MODELSCOPE_TOKEN_KEY, ModelScopeSource, S3Source

# Pinned by digest like every image of the night (policy immutable-images): a tag can be repointed.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
# A staging Job downloads at the hub rate (plan/weights.py staging_seconds); its deadline allows
# twice that before it is declared failed.
STAGING_DEADLINE_FACTOR = 2
# pulumi-kubernetes: a resource with this annotation is created without awaiting its readiness.
SKIP_AWAIT = "pulumi.com/skipAwait"
# The warm gate's own ServiceAccount, without a token: neither the pullers, the staging Jobs nor
# the fillers talk to the API server.
SERVICE_ACCOUNT = "warm-gate"
_TINY = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}


def _node_daemon(scope: Scope, name: str, namespace: str, placement: dict[str, Any], security: dict[str, Any],
                 init: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> Obj:
    """A warm-gate DaemonSet: its init containers do the work on every node of the pool, then the
    pause container holds the pod so it does not restart (and, for a pre-puller, so the image's
    last user stays and the kubelet's image GC does not evict it)."""
    labels = {"app.kubernetes.io/name": name, "peaknight.io/event": scope.event.name}
    spec: dict[str, Any] = {
        "priorityClassName": priority_class(scope, Tier.WARM),
        "securityContext": security,
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        **placement,
        "initContainers": init,
        "containers": [{"name": "pause", "image": PAUSE_IMAGE, "resources": _TINY,
                        "securityContext": podpolicy.container_security()}],
    }
    if volumes:
        spec["volumes"] = volumes
    return Obj({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": meta(scope, "warm-gate", name, namespace),
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {"metadata": {"labels": {**meta(scope, "warm-gate", name)["labels"], **labels}}, "spec": spec},
        },
    })


def _prepuller(scope: Scope, pool: str, images: list[str]) -> Obj:
    """Init containers pull each image and exit."""
    init = [{"name": f"pull-{i}", "image": image, "imagePullPolicy": "IfNotPresent",
             "command": ["/bin/sh", "-c", "exit 0"], "resources": _TINY,
             "securityContext": podpolicy.container_security()}
            for i, image in enumerate(images)]
    return _node_daemon(scope, f"prepull-{pool}", inference_namespace(scope), podpolicy.gpu_placement(pool),
                        podpolicy.pod_security(podpolicy.RUN_AS_USER), init, [])


# Where the staging Job writes and the filler reads one source, and where the filler writes the cache.
SOURCE_MOUNT = "/source"
SOURCES_MOUNT = "/sources"
CACHE_MOUNT = "/cache"
# A source's revision is complete once this file sits beside it (the staging Job writes it last).
STAGED_SUFFIX = ".staged"
# Files the filler copies at once: a node reads a Lustre file system fastest with many streams.
FILL_STREAMS = 16
STAGING_ROLE = {"peaknight.io/role": "weights-staging"}
# The engines' JIT and compile caches: this subdirectory of the node cache (the filler's prune
# works inside each model's weights directory and never reaches it).
JIT_SUBDIR = ".jit"
# The claim's nominal size (a hostPath volume enforces none): DeepGEMM's kernels for every M, the
# inductor, triton and FlashInfer artefacts of a few models fit in a few tens of GiB.
JIT_CACHE_GIB = 100
# Creates each directory named after the user id (parents root's), hands it to that user and
# leaves it readable to others (the root filler, with no DAC override, reads the staged weights).
OWN_SCRIPT = ("import os,sys\n"
              "uid=int(sys.argv[1])\n"
              "for path in sys.argv[2:]:\n"
              "    os.makedirs(path,exist_ok=True)\n"
              "    os.chown(path,uid,uid)\n"
              "    os.chmod(path,0o755)\n")


def own_directories(image: str, mounts: list[dict[str, Any]], paths: Sequence[str]) -> dict[str, Any]:
    """The init container that creates `paths` and gives them to the pods' unprivileged user."""
    return {"name": "own-dirs", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", literal_arg(OWN_SCRIPT), str(podpolicy.RUN_AS_USER),
                        *(literal_arg(p) for p in paths)],
            "resources": _TINY, "volumeMounts": mounts, "securityContext": podpolicy.directory_owner_security()}


def staging_name(model: Model, zone: int) -> str:
    return f"stage-{model.name}-z{zone}"


def source_claim(model: Model, zone: int) -> str:
    """The model's weight source in the cluster's `zone`-th zone (zones by index: a zone's name
    need not be a valid object name)."""
    return f"{model.name}-weights-z{zone}"


def cache_claim(pool: str) -> str:
    """The node cache's claim, of the same name in the weights and the inference namespace."""
    return f"{pool}-weights-cache"


def jit_claim(pool: str) -> str:
    """The claim of the engines' JIT caches on the pool's nodes (inference namespace)."""
    return f"{pool}-jit-cache"


def _service_account(scope: Scope, namespace: str) -> Obj:
    return Obj({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": meta(scope, "warm-gate", SERVICE_ACCOUNT, namespace),
                "automountServiceAccountToken": False})


def storage_class(cluster: Cluster, zone: int) -> str:
    """The ReadWriteMany class for a volume in the cluster's `zone`-th zone."""
    cls = cluster.model_cache_class
    return cls if isinstance(cls, str) else cls[cluster.zones[zone]]


def _source(scope: Scope, cluster: Cluster, model: Model, zone: int, plan: WeightsPlan) -> Obj:
    """One zone's ReadWriteMany source of the model's weights, sized for its throughput."""
    return Obj({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {**meta(scope, "warm-gate", source_claim(model, zone), weights_namespace(scope)),
                             "annotations": {"peaknight.io/zone": cluster.zones[zone],
                                             "peaknight.io/size": plan.source_gib.why,
                                             "peaknight.io/throughput": plan.source_mbps.why}},
                "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": storage_class(cluster, zone),
                         "resources": {"requests": {"storage": f"{int(plan.source_gib.value)}Gi"}}}},
               protect=scope.policy.protect)


# The hub: huggingface_hub's snapshot_download in the model's image (vLLM's and SGLang's carry it),
# which reads HF_ENDPOINT and HF_TOKEN from the environment. Its inputs arrive as arguments, never
# as text of the script: repo id, target directory, revision ("" for the newest).
HUB_SCRIPT = ("import sys\n"
              "from huggingface_hub import snapshot_download\n"
              "repo, target, revision = sys.argv[1:4]\n"
              "snapshot_download(repo_id=repo, local_dir=target, revision=revision or None)\n"
              f"open(target + {STAGED_SUFFIX!r}, 'w').close()\n")
# ModelScope: modelscope's snapshot_download (modelscope 1.31.0 hub/snapshot_download.py: model_id,
# revision, local_dir), logged in first when MODELSCOPE_API_TOKEN is set (HubApi.login reads it).
# Inputs as arguments, as for the hub.
MODELSCOPE_SCRIPT = ("import os, sys\n"
                     "from modelscope.hub.api import HubApi\n"
                     "from modelscope.hub.snapshot_download import snapshot_download\n"
                     "repo, target, revision = sys.argv[1:4]\n"
                     f"if os.environ.get({MODELSCOPE_TOKEN_KEY!r}):\n"
                     "    HubApi().login()\n"
                     "snapshot_download(model_id=repo, revision=revision, local_dir=target)\n"
                     f"open(target + {STAGED_SUFFIX!r}, 'w').close()\n")
# Object storage: `aws s3 sync` (idempotent: present files of the same size are skipped), then the
# mark, by the model's image once the sync has exited 0.
MARK_SCRIPT = f"import sys\nopen(sys.argv[1] + {STAGED_SUFFIX!r}, 'w').close()\n"


def _secret_env(secret: str, *keys: str) -> list[dict[str, Any]]:
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for key in keys]


def _staging_containers(cluster: Cluster, model: Model, target: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(init containers, main container) that put the model's weights into `target` and mark it
    staged, from where `models[].weightsFrom` says: every value an argument or an env var."""
    source = model.weights_from
    common = {"imagePullPolicy": "IfNotPresent", "securityContext": podpolicy.container_security(),
              "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi"}},
              "volumeMounts": [{"name": "source", "mountPath": SOURCE_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}]}
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
    if isinstance(source, S3Source):
        env.append({"name": "AWS_DEFAULT_REGION", "value": source.region or cluster.region})
        if source.credentials_secret:
            env += _secret_env(source.credentials_secret, *AWS_KEYS)
        sync = ["aws", "s3", "sync", source.uri, target, "--only-show-errors",
                *(["--endpoint-url", source.endpoint_url] if source.endpoint_url else [])]
        init = [{"name": "sync", "image": source.image, "command": [literal_arg(a) for a in sync], "env": env,
                 **common}]
        return init, {"name": "stage", "image": model.image, **common,
                      "command": ["python3", "-c", literal_arg(MARK_SCRIPT), literal_arg(target)],
                      "env": [{"name": "HOME", "value": "/tmp"}]}
    if isinstance(source, ModelScopeSource):
        env.append({"name": "MODELSCOPE_DOMAIN", "value": source.host})
        if source.token_secret:
            env += _secret_env(source.token_secret, MODELSCOPE_TOKEN_KEY)
        args = [source.model_id or model.weights, target, source.revision]
        return [], {"name": "stage", "image": source.image, **common, "env": env,
                    "command": ["python3", "-c", *(literal_arg(a) for a in (MODELSCOPE_SCRIPT, *args))]}
    if source.endpoint:
        env.append({"name": "HF_ENDPOINT", "value": source.endpoint})
    if source.token_secret:
        env += _secret_env(source.token_secret, HF_TOKEN_KEY)
    args = [model.weights, target, model.weights_revision or ""]
    return [], {"name": "stage", "image": model.image, **common, "env": env,
                "command": ["python3", "-c", *(literal_arg(a) for a in (HUB_SCRIPT, *args))]}


def _staging_job(scope: Scope, cluster: Cluster, model: Model, zone: int, plan: WeightsPlan,
                 deadline: dt.datetime) -> Obj:
    """Download the weights at their pinned revision into one zone's source (idempotent: files
    present are skipped), then mark the revision staged."""
    name = staging_name(model, zone)
    ns = weights_namespace(scope)
    init, stage = _staging_containers(cluster, model, f"{SOURCE_MOUNT}/{revision_dir(model)}")
    # The revision and its staged mark go into the model's directory, which the Job's user owns.
    init = [own_directories(model.image, [{"name": "source", "mountPath": SOURCE_MOUNT}],
                            [f"{SOURCE_MOUNT}/{model.weights}"]), *init]
    deadline_seconds = int(STAGING_DEADLINE_FACTOR * plan.staging.value)
    labels = {**meta(scope, "warm-gate", name)["labels"], **STAGING_ROLE}
    pod: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "securityContext": podpolicy.pod_security(podpolicy.RUN_AS_USER),
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        # In the source's zone: a WaitForFirstConsumer class creates the volume there.
        "nodeSelector": {podpolicy.ZONE: cluster.zones[zone]},
        "initContainers": init,
        "containers": [stage],
        "volumes": [{"name": "source", "persistentVolumeClaim": {"claimName": source_claim(model, zone)}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "20Gi"}}],
    }
    return Obj({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {**meta(scope, "warm-gate", name, ns), "annotations": {
            "peaknight.io/must-finish-before": f"{deadline.isoformat()} {scope.event.time_zone} (the earliest "
                                               "cold pre-scale)",
            "peaknight.io/expected-seconds": plan.staging.why,
            # Staging takes hours; pulumi-kubernetes would wait for the Job (10 min by default) and
            # fail the update. It is created and not awaited; the runbook waits explicitly.
            SKIP_AWAIT: "true",
            "peaknight.io/wait": f"kubectl wait --for=condition=complete job/{name} -n {ns} --timeout={deadline_seconds}s",
        }},
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": deadline_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    })


def _cache_volume(scope: Scope, pool: str, path: str, gib: int, writer: bool) -> list[Obj]:
    """A hostPath PersistentVolume of the node-cache directory on the pool's nodes, pre-bound to
    its claim: read-write for the fillers (weights namespace), read-only for the model servers
    (inference namespace). A claim, not a hostPath volume in the pod, keeps the model servers
    under restricted Pod Security (KServe's LocalModelCache binds its node cache the same way)."""
    ns = weights_namespace(scope) if writer else inference_namespace(scope)
    name = f"{scope.event.name}-{pool}-weights-cache-{'rw' if writer else 'ro'}"
    modes = ["ReadWriteOnce"] if writer else ["ReadOnlyMany"]
    storage = {"storage": f"{gib}Gi"}
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta(scope, "warm-gate", name),
          "spec": {"capacity": storage, "accessModes": modes, "persistentVolumeReclaimPolicy": "Retain",
                   "storageClassName": "", "hostPath": {"path": path, "type": "DirectoryOrCreate"},
                   "nodeAffinity": {"required": podpolicy.pool_affinity(pool)["nodeAffinity"][
                       "requiredDuringSchedulingIgnoredDuringExecution"]},
                   "claimRef": {"namespace": ns, "name": cache_claim(pool)}}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(scope, "warm-gate", cache_claim(pool), ns),
           "spec": {"accessModes": modes, "storageClassName": "", "volumeName": name,
                    "resources": {"requests": storage}}}
    return [Obj(pv), Obj(pvc)]


def _jit_volume(scope: Scope, pool: str, path: str) -> list[Obj]:
    """The engines' JIT caches on the pool's nodes: a hostPath PersistentVolume of the node cache's
    JIT_SUBDIR, pre-bound to its claim in the inference namespace, read-write (every node its own
    directory, many pods writing: the caches' files are written to temporaries and renamed)."""
    ns = inference_namespace(scope)
    name = f"{scope.event.name}-{pool}-jit-cache"
    storage = {"storage": f"{JIT_CACHE_GIB}Gi"}
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta(scope, "warm-gate", name),
          "spec": {"capacity": storage, "accessModes": ["ReadWriteMany"], "persistentVolumeReclaimPolicy": "Retain",
                   "storageClassName": "", "hostPath": {"path": f"{path}/{JIT_SUBDIR}", "type": "DirectoryOrCreate"},
                   "nodeAffinity": {"required": podpolicy.pool_affinity(pool)["nodeAffinity"][
                       "requiredDuringSchedulingIgnoredDuringExecution"]},
                   "claimRef": {"namespace": ns, "name": jit_claim(pool)}}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(scope, "warm-gate", jit_claim(pool), ns),
           "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": name,
                    "resources": {"requests": storage}}}
    return [Obj(pv), Obj(pvc)]


def fill_script(models: Sequence[Model], sources: str = SOURCES_MOUNT, cache: str = CACHE_MOUNT) -> str:
    """Copy each model's staged revision from its source into the node cache with parallel
    streams (files already there at full size are skipped, so a restart resumes), mark it
    ready, and keep the newest other revision (a rollout's) while dropping older ones."""
    copies = [(f"{sources}/{m.name}/{revision_dir(m)}", f"{cache}/{revision_dir(m)}") for m in models]
    return (
        "import os,shutil,time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        f"COPIES={copies!r}\n"
        "def copy(src,dst,path):\n"
        "    out=os.path.join(dst,os.path.relpath(path,src))\n"
        "    if os.path.exists(out) and os.path.getsize(out)==os.path.getsize(path):\n"
        "        return\n"
        "    os.makedirs(os.path.dirname(out),exist_ok=True)\n"
        "    shutil.copyfile(path,out+'.part')\n"
        "    os.replace(out+'.part',out)\n"
        f"while not all(os.path.exists(src+{STAGED_SUFFIX!r}) for src,_ in COPIES):\n"
        "    time.sleep(30)\n"
        f"with ThreadPoolExecutor({FILL_STREAMS}) as pool:\n"
        "    list(pool.map(lambda job:copy(*job),[(s,d,os.path.join(r,n)) for s,d in COPIES for r,_,ns in os.walk(s) for n in ns]))\n"
        "for src,dst in COPIES:\n"
        f"    open(dst+{READY_SUFFIX!r},'w').close()\n"
        "    base,mine=os.path.split(dst)\n"
        f"    others=sorted((e[:-{len(READY_SUFFIX)}] for e in os.listdir(base) if e.endswith({READY_SUFFIX!r}) and e!=mine+{READY_SUFFIX!r}),\n"
        f"                  key=lambda e:os.path.getmtime(os.path.join(base,e+{READY_SUFFIX!r})))\n"
        "    for old in others[:-1]:\n"
        f"        os.remove(os.path.join(base,old+{READY_SUFFIX!r}))\n"
        "        shutil.rmtree(os.path.join(base,old),ignore_errors=True)\n"
    )


def _filler(scope: Scope, cluster: Cluster, pool: str, zone: int, models: Sequence[Model]) -> Obj:
    """On every node of `pool` in the cluster's `zone`-th zone: copy the pool's models from the
    zone's sources into the node cache."""
    placement = podpolicy.gpu_placement(pool)
    term = placement["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    term["matchExpressions"].append({"key": podpolicy.ZONE, "operator": "In", "values": [cluster.zones[zone]]})
    mounts: list[dict[str, Any]] = [{"name": "cache", "mountPath": CACHE_MOUNT}]
    volumes: list[dict[str, Any]] = [{"name": "cache", "persistentVolumeClaim": {"claimName": cache_claim(pool)}}]
    for i, model in enumerate(models):
        mounts.append({"name": f"source-{i}", "mountPath": f"{SOURCES_MOUNT}/{model.name}", "readOnly": True})
        volumes.append({"name": f"source-{i}", "persistentVolumeClaim": {"claimName": source_claim(model, zone),
                                                                          "readOnly": True}})
    fill = {"name": "fill", "image": models[0].image, "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", literal_arg(fill_script(models))],
            "resources": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
            "volumeMounts": mounts, "securityContext": podpolicy.node_cache_security()}
    # The JIT cache is the engines' before the first revision is marked ready (and so before any
    # engine on the node starts: each waits for that mark).
    own = own_directories(models[0].image, [{"name": "cache", "mountPath": CACHE_MOUNT}], [f"{CACHE_MOUNT}/{JIT_SUBDIR}"])
    # Root in the pod (podpolicy.NODE_CACHE_ENFORCE): no runAsNonRoot at the pod level.
    return _node_daemon(scope, f"fill-{pool}-z{zone}", weights_namespace(scope), placement,
                        {"seccompProfile": dict(podpolicy.SECCOMP)}, [own, fill], volumes)


def wait_for_weights(model: Model) -> dict[str, Any]:
    """The model server's init container: wait until the node cache holds the model's revision
    (the filler marks it ready last), so the engine never loads half a model."""
    ready = f"{MODEL_DIR}/{revision_dir(model)}{READY_SUFFIX}"
    script = f"import os,time\nwhile not os.path.exists({ready!r}):\n    time.sleep(10)\n"
    return {"name": "wait-weights", "image": model.image, "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", literal_arg(script)], "resources": _TINY,
            "volumeMounts": [{"name": "weights", "mountPath": MODEL_DIR, "readOnly": True}],
            "securityContext": podpolicy.container_security()}


def must_finish(scope: Scope, models: Iterable[Model]) -> dt.datetime:
    """The warm gate's deadline: before the earliest cold pre-scale of any model (local time)."""
    return scope.event.window.start - dt.timedelta(seconds=startup.longest_cold_lead(scope.policy, models))


def build(scope: Scope, cluster: Cluster, models: Sequence[Model], weights: Sequence[WeightsPlan],
          cache_path: str) -> Unit:
    """The cluster's pre-pullers (one per GPU pool); per model and zone a weight source and its
    staging Job; per pool its node cache (volumes, and a filler per zone)."""
    deadline = must_finish(scope, models)
    plans = {w.model: w for w in weights}
    pools: dict[str, list[Model]] = {}
    for model in models:
        pools.setdefault(model.pool, []).append(model)
    objs = [_service_account(scope, inference_namespace(scope)), _service_account(scope, weights_namespace(scope))]
    for pool, served in pools.items():
        objs.append(_prepuller(scope, pool, list(dict.fromkeys(m.image for m in served))))
        gib = math.ceil(CACHED_REVISIONS * sum(weights_gib(m) for m in served))
        objs += _cache_volume(scope, pool, cache_path, gib, writer=True)
        objs += _cache_volume(scope, pool, cache_path, gib, writer=False)
        objs += _jit_volume(scope, pool, cache_path)
        objs += [_filler(scope, cluster, pool, zone, served) for zone in range(len(cluster.zones))]
    for model in models:
        for zone in range(len(cluster.zones)):
            objs.append(_source(scope, cluster, model, zone, plans[model.name]))
            objs.append(_staging_job(scope, cluster, model, zone, plans[model.name], deadline))
    return Unit("WarmGate", cluster.name, tuple(objs))
