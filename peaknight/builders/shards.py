"""A colocated model whose pool outgrows one endpoint picker, split into shards (plan/picker.py).

Each shard is a Deployment of the model's servers (`<model>-s<i>`, labelled `peaknight.io/shard`),
its own InferencePool over those pods and its own picker under leader election (builders/routing.py),
and its own autoscaler. The HTTPRoute divides requests over the pools by weight, in proportion to
their pods. What spans every shard stays one object: the Service named after the model (the
ladder's fallback and the health route reach every shard through it), its ServiceMonitor and PDB.

The shards are split here, after the model's objects are built, so the builders of one workload
(inference.py, autoscaling.py) stay as they are. A shard's autoscaler reads the model's whole signal,
as before, against the shards' count times the per-replica target: its share of the fleet.
"""
from __future__ import annotations

import copy
from typing import Any

from peaknight.builders.inference import INFERENCE_POOL_GROUP, pool_name
from peaknight.builders.objects import Obj, Unit
from peaknight.plan import picker
from peaknight.plan.capacity import ModelPlan
from peaknight.plan.picker import shard_pods
from peaknight.spec.stack import Model, Policy

SHARD_LABEL = "peaknight.io/shard"
SHARD_ANNOTATION = "peaknight.io/shard"   # on a shard's Deployment and autoscaler: which of how many


def count(policy: Policy, model: Model, plan: ModelPlan) -> int:
    """A workload's endpoint-picker shards: a colocated model's (plan/picker.py); 1 for a
    disaggregated model's groups, which a router serves, not a picker."""
    return 1 if model.disaggregated else int(picker.plan(policy, model, plan).shards.value)


def surge(total: int, shards: int, index: int) -> int:
    """Shard `index`'s share of the plan's surge (the pool holds that many more pods), one at least:
    a Deployment may not have both maxSurge and maxUnavailable at 0."""
    return max(1, shard_pods(total, shards, index))


def names(model: Model, shards: int) -> list[str]:
    """The shards' names: the model's own when there is one (nothing is renamed)."""
    return [pool_name(model)] if shards == 1 else [f"{model.name}-s{i}" for i in range(shards)]


def label(shards: int, index: int) -> dict[str, str]:
    """The label that tells a shard's pods from the others' (none with one shard)."""
    return {} if shards == 1 else {SHARD_LABEL: f"s{index}"}


def _deployment(obj: Obj, model: Model, shards: int, index: int) -> Obj:
    m = copy.deepcopy(obj.manifest)
    name = names(model, shards)[index]
    m["metadata"]["name"] = name
    m["metadata"]["annotations"][SHARD_ANNOTATION] = (
        f"shard {index + 1} of {shards}: ceil-spread of the model's replicas over its shards")
    spec = m["spec"]
    spec["replicas"] = shard_pods(spec["replicas"], shards, index)
    rolling = spec["strategy"]["rollingUpdate"]
    rolling["maxSurge"] = surge(rolling["maxSurge"], shards, index)
    spec["selector"]["matchLabels"].update(label(shards, index))
    spec["template"]["metadata"]["labels"].update(label(shards, index))
    return Obj(m, obj.protect, obj.ignore_changes)


def _route(obj: Obj, model: Model, shards: int, max_pods: int) -> Obj:
    """The pool backend replaced by one per shard, weighted by the shard's pods at the ceiling."""
    m = copy.deepcopy(obj.manifest)
    for rule in m["spec"]["rules"]:
        refs: list[dict[str, Any]] = []
        for ref in rule["backendRefs"]:
            if ref.get("kind") == "InferencePool" and ref.get("name") == pool_name(model):
                refs += [{"group": INFERENCE_POOL_GROUP, "kind": "InferencePool", "name": n,
                          "weight": shard_pods(max_pods, shards, i)} for i, n in enumerate(names(model, shards))]
            else:
                refs.append(ref)
        rule["backendRefs"] = refs
    return Obj(m, obj.protect, obj.ignore_changes)


def split_service(unit: Unit, model: Model, shards: int, max_pods: int) -> Unit:
    """The model's InferenceService with its Deployment split into `shards` and its route sending
    to every shard's pool; the unit itself with one shard."""
    if shards == 1:
        return unit
    objs: list[Obj] = []
    for obj in unit.objects:
        if obj.kind == "Deployment" and obj.name == model.name:
            objs += [_deployment(obj, model, shards, i) for i in range(shards)]
        elif obj.kind == "HTTPRoute" and obj.name == model.name:
            objs.append(_route(obj, model, shards, max_pods))
        else:
            objs.append(obj)
    return Unit(unit.component, unit.name, tuple(objs), unit.cloud)


def _threshold(value: str, shards: int) -> str:
    scaled = float(value) * shards
    # 12 significant digits: the per-replica target (written with at most 6) comes back exactly.
    return str(int(scaled)) if scaled.is_integer() else f"{scaled:.12g}"


def _unscaled(value: str, shards: int) -> str:
    whole = float(value) / shards
    return str(int(whole)) if whole.is_integer() else f"{whole:g}"


def _autoscaler(obj: Obj, model: Model, shards: int, index: int) -> Obj:
    m = copy.deepcopy(obj.manifest)
    name = names(model, shards)[index]
    m["metadata"]["name"] = name
    spec = m["spec"]
    spec["scaleTargetRef"]["name"] = name
    if obj.kind == "ScaledObject":
        for key in ("minReplicaCount", "maxReplicaCount"):
            spec[key] = shard_pods(spec[key], shards, index)
        spec["fallback"]["replicas"] = shard_pods(spec["fallback"]["replicas"], shards, index)
        for policy in spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["policies"]:
            policy["value"] = spec["maxReplicaCount"]
        for trigger in spec["triggers"]:
            meta = trigger["metadata"]
            if trigger["type"] == "cron":
                meta["desiredReplicas"] = str(shard_pods(int(meta["desiredReplicas"]), shards, index))
            else:
                meta["threshold"] = _threshold(meta["threshold"], shards)
    else:
        for key in ("minReplicas", "maxReplicas"):
            spec[key] = shard_pods(spec[key], shards, index)
        for policy in spec["behavior"]["scaleUp"]["policies"]:
            policy["value"] = spec["maxReplicas"]
        for metric in spec["metrics"]:
            target = metric["external"]["target"]
            target["averageValue"] = _threshold(target["averageValue"], shards)
    m["metadata"]["annotations"][SHARD_ANNOTATION] = (
        f"shard {index + 1} of {shards}: the model's signals against {shards} x the per-replica target")
    return Obj(m, obj.protect, obj.ignore_changes)


def split_autoscaler(unit: Unit, model: Model, shards: int) -> Unit:
    """One autoscaler per shard (the unit itself with one shard)."""
    if shards == 1:
        return unit
    objs: list[Obj] = []
    for obj in unit.objects:
        if obj.name == model.name:
            objs += [_autoscaler(obj, model, shards, i) for i in range(shards)]
        else:
            objs.append(obj)
    return Unit(unit.component, unit.name, tuple(objs), unit.cloud)


def replayed(unit: Unit, model: Model) -> list[tuple[str, dict[str, Any]]]:
    """(workload, autoscaler manifest) per workload of the model, as the simulator replays them: a
    sharded model's shards as the one autoscaler they add up to (each reads the same signal against
    its share of the target, so together they ask for what the whole would)."""
    mine = [o for o in unit.objects if SHARD_ANNOTATION in o.manifest["metadata"].get("annotations", {})]
    if not mine:
        return [(o.name, o.manifest) for o in unit.objects]
    shards = len(mine)
    m = copy.deepcopy(mine[0].manifest)
    m["metadata"]["name"] = model.name
    del m["metadata"]["annotations"][SHARD_ANNOTATION]
    spec = m["spec"]
    spec["scaleTargetRef"]["name"] = model.name
    every = [o.manifest["spec"] for o in mine]
    if mine[0].kind == "ScaledObject":
        for key in ("minReplicaCount", "maxReplicaCount"):
            spec[key] = sum(s[key] for s in every)
        spec["fallback"]["replicas"] = sum(s["fallback"]["replicas"] for s in every)
        for policy in spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["policies"]:
            policy["value"] = spec["maxReplicaCount"]
        for t, trigger in enumerate(spec["triggers"]):
            meta = trigger["metadata"]
            if trigger["type"] == "cron":
                meta["desiredReplicas"] = str(sum(int(s["triggers"][t]["metadata"]["desiredReplicas"]) for s in every))
            else:
                meta["threshold"] = _unscaled(meta["threshold"], shards)
    else:
        for key in ("minReplicas", "maxReplicas"):
            spec[key] = sum(s[key] for s in every)
        for policy in spec["behavior"]["scaleUp"]["policies"]:
            policy["value"] = spec["maxReplicas"]
        for metric in spec["metrics"]:
            target = metric["external"]["target"]
            target["averageValue"] = _unscaled(target["averageValue"], shards)
    return [(model.name, m)]
