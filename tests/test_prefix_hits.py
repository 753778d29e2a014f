"""Issue 24, finding 5: prefill is planned at the prefix-cache hit rate the routing can deliver.
In PD mode each sglang-router pod keeps its own prefix tree (the gateway balances over them by load)
and the prefill DP rank is bootstrap_room % dp_size with a random room (sglang 0.5.4
data_parallel_controller.py), each rank with its own radix cache: h x 1/R x 1/D. The rate is known,
not unproven: policy.allowUnproven does not keep the stack's rate above it."""
from __future__ import annotations

import dataclasses

import pytest

import nights
from peaknight.builders import monitoring
from peaknight.plan import capacity, report
from peaknight.spec import profiles


def _strict(spec):
    """The shipped broadcast without policy.allowUnproven."""
    return dataclasses.replace(spec, policy=dataclasses.replace(spec.policy, allow_unproven=False))


def _cold(spec):
    """The shipped broadcast with chat's prefixCacheHitRate 0: no cache credited at all."""
    models = tuple(dataclasses.replace(m, prefix_cache_hit_rate=0.0) if m.name == "chat" else m for m in spec.models)
    return dataclasses.replace(spec, models=models)


def test_chat_prefill_is_planned_at_what_the_routing_delivers():
    shipped = nights.plan("broadcast")
    c = shipped.clusters[0]
    prefill, decode = c.model("chat-prefill"), c.model("chat-decode")
    routers = int(decode.router_pods.value)
    assert routers == 9
    # 0.5 x 1/9 router pods x 1/32 prefill DP ranks (the row's prefill group: dp 32) = 0.001736
    h = 0.5 / 9 / 32
    assert prefill.prefix_hit_rate.value == pytest.approx(h) == decode.prefix_hit_rate.value
    assert "1/9" in prefill.prefix_hit_rate.why and "1/32" in prefill.prefix_hit_rate.why
    row = profiles.load().throughput[profiles.row_key("moe-671b", "H200-141G", "sglang", "disaggregated")]
    assert row.topology.prefill.dp == 32
    derate = profiles.load().fabric_deratings[0]
    assert (derate.measured_on, derate.rendered_on, derate.prefill) == ("infiniband", "efa", 0.303)
    # Prefill per group: the row's 294,800 input tok/s counting its 56.3% hits, rescaled to h, over
    # input share 0.75, derated x0.303 on EFA.
    assert prefill.replica_tps.value == pytest.approx(294_800 * (1 - 0.563) / (1 - h) / 0.75 * 0.303)
    # Had the stack's 0.5 been credited, a group would carry (1 - h) / (1 - 0.5) = 2x as much: about
    # half the prefill groups, what finding 5 said the plan was missing.
    credited = 294_800 * (1 - 0.563) / (1 - 0.5) / 0.75 * 0.303
    assert 1.99 < credited / prefill.replica_tps.value < 2.0
    # 16,484,375 tok/s x 1.05 / (52,137 x 0.85) = 391 groups hold the peak; 587 so that 391 survive a zone.
    assert prefill.replicas.value == 587 and 587 - -(-587 // 3) >= 391 > 586 - -(-586 // 3)
    # With no cache credited at all, prefill needs one group more in each cluster; decode does not
    # move: only prefill reads the cache.
    cold = capacity.plan(_cold(nights.spec("broadcast")), envelope=False)
    assert cold.clusters[0].model("chat-prefill").replicas.value == 588
    assert cold.gpus == shipped.gpus + 64 * 32
    assert cold.clusters[0].model("chat-decode").replicas.value == decode.replicas.value
    # --explain names the derivation.
    lines = "\n".join(report._explain(report.Group((c.name,), c, {}), report.Selection()))
    assert "prefix-cache hit rate: prefixCacheHitRate 0.5 x 1/9" in lines


def test_allow_unproven_does_not_keep_the_stacks_rate():
    """The shipped broadcast opts in (its DeepSeek rows are unproven on EFA); the opt-in covers what no
    public source ran, not a hit rate the rendered routing is known not to deliver."""
    spec = nights.spec("broadcast")
    assert spec.policy.allow_unproven
    c = nights.plan("broadcast").clusters[0]
    strict = capacity.plan(_strict(spec)).clusters[0]
    for name in ("chat-prefill", "chat-decode"):
        rate, same = c.model(name).prefix_hit_rate, strict.model(name).prefix_hit_rate
        assert rate == same and rate.value == pytest.approx(0.5 / 9 / 32)
        assert "UNPROVEN" not in rate.why and "kept" not in rate.why and rate.why.endswith("= 0.001736 achievable")
    assert c.model("chat-prefill").replicas.value == strict.model("chat-prefill").replicas.value == 587
    # A colocated model's picker routes by prefix within its pool: its rate is the stack's.
    assert c.model("greetings").prefix_hit_rate.why == "prefixCacheHitRate 0"


def test_the_hit_rate_alert_reads_the_planned_rate():
    """Planned at what the routing delivers (0.0017), chat's prefill fits a cold cache: no alert,
    with or without allowUnproven. Credited the stack's 0.5, it would page below 1 - 0.5 / 0.85."""
    shipped = nights.spec("broadcast")
    chat = next(m for m in shipped.models if m.name == "chat")
    planned = nights.plan("broadcast").clusters[0].model("chat-prefill")
    h = 0.5 / 9 / 32
    floor = monitoring.prefix_cache_floor(shipped, chat, planned)
    assert floor == pytest.approx(1 - (1 - h) / 0.85) and floor < 0
    strict = capacity.plan(_strict(shipped)).clusters[0].model("chat-prefill")
    assert monitoring.prefix_cache_floor(shipped, chat, strict) < 0
    # Without a plan the stack's own rate is what is credited: the alert's floor at 0.5.
    assert monitoring.prefix_cache_floor(shipped, chat) == pytest.approx(1 - 0.5 / 0.85)
    rules = [r for u in nights.objects("broadcast").clusters[0].units for o in u.objects
             if o.kind == "PrometheusRule" for g in o.manifest["spec"]["groups"] for r in g["rules"]]
    assert any(r.get("alert") for r in rules)
    assert not any(r.get("alert") == "PeaknightPrefixCacheHitRateLow" and r["labels"].get("model") == "chat"
                   for r in rules)
