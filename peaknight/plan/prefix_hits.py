"""The prefix-cache hit rate the routing can deliver: what the planner credits prefill with.

`models[].prefixCacheHitRate` says how much of the input a cache that saw every earlier request
would hold (a chat turn re-sends the conversation). A hit needs the request on the very cache that
holds its prefix. For a disaggregated SGLang model (issue 24, finding 5):

- the gateway balances requests over the router pods by load, not by prefix, and each
  sglang-router pod keeps its own prefix tree (`cache_aware`): the router that served the previous
  turn sees the next one with probability 1/R (R router pods; another router, whose tree lacks the
  prefix, picks a server by load: the chance it picks the same one is left out, under 1/servers);
- inside the prefill server each DP rank has its own radix cache, and in PD mode the rank is
  `bootstrap_room % dp_size` with a random bootstrap_room (sglang 0.5.4
  srt/managers/data_parallel_controller.py `round_robin_scheduler`): the same rank with
  probability 1/D. sglang-router's `--dp-aware` would pick the rank, but the decode server reads the
  same request field as the prefill server's rank (srt/disaggregation/decode.py), and nothing
  public runs it with DP attention on both sides: the kit does not render it (docs/facts.md).

So the planned rate is h x 1/R x 1/D. A colocated model's endpoint picker (one leader per pool,
prefix-aware) keeps the stack's rate within its pool. `policy.allowUnproven` does not keep the
stack's rate: what the rendered routing delivers is known, not unproven, and planning above it would
leave prefill short on the night. DeepSeek's 56.3% came from a KV cache shared on disk by every
prefill server (3FS), which the kit does not render.
"""
from __future__ import annotations

import dataclasses

from peaknight.plan.figure import Figure
from peaknight.spec.profiles import Throughput
from peaknight.spec.stack import Cluster, GpuPool, Model, StackSpec


def achievable(model: Model, row: Throughput, router_pods: Figure | None) -> Figure:
    """The hit rate prefill is planned at: the stack's, times the chances that the request reaches
    the router and the DP rank holding its prefix (disaggregated), or the stack's (colocated)."""
    h = model.prefix_cache_hit_rate
    if not model.disaggregated or router_pods is None or h == 0:
        return Figure(h, f"prefixCacheHitRate {h:g}" + ("" if model.disaggregated or h == 0 else
                                                          " (the endpoint picker routes by prefix within its pool)"))
    routers = int(router_pods.value)
    dp = row.topology.prefill.dp if row.topology.prefill else 1
    value = h / routers / dp
    return Figure(value, f"prefixCacheHitRate {h:g} x 1/{routers} (the router pod whose prefix tree holds the "
                         f"conversation: {routers} pods, balanced by load) x 1/{dp} (the prefill DP rank whose radix "
                         f"cache holds it: bootstrap_room % {dp}, random, sglang 0.5.4) = {value:.4g} achievable")


def planned(spec: StackSpec, cluster: Cluster, model: Model, pool: GpuPool) -> tuple[Model, Figure]:
    """The model as the planner sizes it in `cluster`, at its achievable hit rate, and that rate:
    the router pods are the plan's for the cluster's peak (plan_router), the DP size the row's."""
    from peaknight.plan import capacity   # capacity calls this module while it is being planned
    row = capacity.profile_row(model, pool.gpus[0])
    peak = model.peak_tokens_per_minute / 60 * spec.scale * cluster.share
    routers = capacity.plan_router(spec, cluster, model, peak) if model.disaggregated else None
    rate = achievable(model, row, routers)
    return dataclasses.replace(model, prefix_cache_hit_rate=rate.value), rate
