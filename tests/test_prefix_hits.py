"""Issue 24, finding 5: prefill is planned at the prefix-cache hit rate the routing can deliver.
In PD mode each sglang-router pod keeps its own prefix tree (the gateway balances over them by load)
and the prefill DP rank is bootstrap_room % dp_size with a random room (sglang 0.5.4
data_parallel_controller.py), each rank with its own radix cache: h x 1/R x 1/D."""
from __future__ import annotations

import dataclasses

import pytest

import nights
from peaknight.builders import monitoring
from peaknight.plan import capacity, report
from peaknight.spec import profiles


def _strict(spec):
    """The shipped broadcast without policy.allowUnproven: the planner's own rate."""
    return dataclasses.replace(spec, policy=dataclasses.replace(spec.policy, allow_unproven=False))


def test_chat_prefill_is_planned_at_what_the_routing_delivers():
    shipped = nights.spec("broadcast")
    spec = _strict(shipped)
    plan = capacity.plan(spec, envelope=False)   # 16 clusters no longer hold it: 5,101 nodes each
    c = plan.clusters[0]
    prefill, decode = c.model("chat-prefill"), c.model("chat-decode")
    routers = int(decode.router_pods.value)
    assert routers == 36
    # 0.5 x 1/36 router pods x 1/32 prefill DP ranks (the row's prefill group: dp 32)
    h = 0.5 / 36 / 32
    assert prefill.prefix_hit_rate.value == pytest.approx(h) == decode.prefix_hit_rate.value
    assert "1/36" in prefill.prefix_hit_rate.why and "1/32" in prefill.prefix_hit_rate.why
    row = profiles.load().throughput[profiles.row_key("moe-671b", "H200-141G", "sglang", "disaggregated")]
    assert row.topology.prefill.dp == 32
    # Prefill per group: the row's 294,800 input tok/s counting its 56.3% hits, rescaled to h.
    assert prefill.replica_tps.value == pytest.approx(294_800 * (1 - 0.563) / (1 - h) / 0.75)
    kept = nights.plan("broadcast").clusters[0].model("chat-prefill")   # the shipped stack keeps 0.5
    assert kept.replica_tps.value == pytest.approx(294_800 * (1 - 0.563) / (1 - 0.5) / 0.75)
    # About twice the prefill groups: what finding 5 said the plan was missing.
    assert 1.9 < prefill.replicas.value / kept.replicas.value < 2.1
    assert plan.gpus > nights.plan("broadcast").gpus
    # The decode groups do not move: only prefill reads the cache.
    assert decode.replicas.value == nights.plan("broadcast").clusters[0].model("chat-decode").replicas.value
    # --explain names the derivation.
    lines = "\n".join(report._explain(report.Group((c.name,), c, {}), report.Selection()))
    assert "prefix-cache hit rate: prefixCacheHitRate 0.5 x 1/36" in lines


def test_allow_unproven_keeps_the_stacks_rate_and_says_so():
    c = nights.plan("broadcast").clusters[0]   # the shipped broadcast opts in (its policy comment says why)
    assert nights.spec("broadcast").policy.allow_unproven
    rate = c.model("chat-prefill").prefix_hit_rate
    assert rate.value == 0.5 and rate.why.startswith("UNPROVEN: prefixCacheHitRate 0.5 kept")
    assert "0.000434 achievable" in rate.why
    # A colocated model's picker routes by prefix within its pool: its rate is the stack's.
    assert c.model("greetings").prefix_hit_rate.why == "prefixCacheHitRate 0"


def test_the_hit_rate_alert_reads_the_planned_rate():
    """Planned at what the routing delivers (about 0), chat's prefill fits a cold cache: no alert.
    Kept at 0.5 (allowUnproven), the alert pages below 1 - 0.5 / 0.85."""
    shipped = nights.spec("broadcast")
    chat = next(m for m in shipped.models if m.name == "chat")
    kept = nights.plan("broadcast").clusters[0].model("chat-prefill")
    assert monitoring.prefix_cache_floor(shipped, chat, kept) == pytest.approx(1 - 0.5 / 0.85)
    strict = capacity.plan(_strict(shipped), envelope=False).clusters[0].model("chat-prefill")
    assert monitoring.prefix_cache_floor(shipped, chat, strict) < 0
