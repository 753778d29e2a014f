"""How many endpoint pickers a colocated model needs in one cluster, and how big each is.

The picker (llm-d-router's EPP) runs active-passive under leader election: one pod, the leader,
reads every prompt and scrapes every pod of its InferencePool, so more replicas add no capacity
(llm-d-router docs/operations.md, v0.10.0, "Scaling Modes"). Its cost per pod of the pool is the
prompts that pod receives plus the idle scraping cost, 7.5 cores per 100 pods ("Idle CPU Scaling").
A pool large enough to need a picker bigger than `router.max_pod_vcpu` (the guide's own 32-core
example) is split into shards: several InferencePools, each with its own picker over at most N pods,
the HTTPRoute dividing requests over them by weight in proportion to their pods. Each shard keeps
its own prefix index, like separate pools: a prompt's prefix is found only in its shard's pods.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from peaknight.plan.capacity import ModelPlan
from peaknight.plan.figure import Figure
from peaknight.spec import profiles
from peaknight.spec.stack import Model, Policy


@dataclass(frozen=True)
class PickerPlan:
    """One model's pickers in one cluster."""

    shards: Figure            # InferencePools (each with its own picker)
    pods_per_shard: Figure    # the most serving pods one picker scrapes, at the autoscaler's ceiling
    vcpu: Figure              # the leader's vCPU request in each shard


def shard_pods(total: int, shards: int, index: int) -> int:
    """Serving pods of shard `index` when `total` are spread over `shards` as evenly as possible."""
    return total // shards + (1 if index < total % shards else 0)


def plan(policy: Policy, model: Model, m: ModelPlan) -> PickerPlan:
    """N = floor(max vCPU x util / headroom / per-pod cost): the pods one picker of the largest
    size holds, where a pod costs its share of the prompts plus its idle scraping; shards =
    ceil(pods / N); each shard's vCPU from its own pods, at most the largest size."""
    r = profiles.load().router
    pods = max(1, int(m.max_replicas.value))   # one serving pod per replica: the pool's endpoints
    input_tps = m.demand_tps.value * model.input_share
    load = input_tps / r.input_tokens_per_core          # cores reading prompts, whole pool
    idle_per_pod = r.idle_cores_per_100_pods / 100
    per_pod = load / pods + idle_per_pod
    budget = r.max_pod_vcpu * policy.target_utilisation / policy.headroom
    most = max(1, math.floor(budget / per_pod))
    shards = math.ceil(pods / most)
    biggest = shard_pods(pods, shards, 0)
    cores = biggest * per_pod
    vcpu = math.ceil(cores * policy.headroom / policy.target_utilisation - 1e-9)
    cost = (f"{m.demand_tps.value:,.0f} tok/s x input share {model.input_share:g} / {r.input_tokens_per_core:,.0f} "
            f"input tok/s per core (llm-d-router benchmark: {r.bench_requests_per_s:g} req/s x "
            f"{r.bench_input_tokens:,} tok on {r.bench_cores:g} cores) = {load:,.1f} cores over {pods:,} serving pods "
            f"at the ceiling + {r.idle_cores_per_100_pods:g} idle cores per 100 pods = {per_pod:.4f} cores a pod")
    most_fig = Figure(most, f"{cost}; floor({r.max_pod_vcpu} vCPU (the guide's largest EPP) x util "
                            f"{policy.target_utilisation:g} / headroom {policy.headroom:g} / {per_pod:.4f}) = {most} "
                            f"pods per picker at most")
    return PickerPlan(
        shards=Figure(shards, f"ceil({pods:,} pods / {most} per picker) = {shards} InferencePool"
                              f"{'s' if shards > 1 else ''}, each with its own picker"),
        pods_per_shard=most_fig,
        vcpu=Figure(vcpu, f"{cost}; ceil({biggest:,} pods in the largest shard x {per_pod:.4f} x headroom "
                          f"{policy.headroom:g} / util {policy.target_utilisation:g}) = {vcpu} vCPU in the "
                          f"leader's pod (at most {r.max_pod_vcpu})"))
