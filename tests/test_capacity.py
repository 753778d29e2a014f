"""Capacity planner: hand-computed figures, zone-loss survival, the envelope, rounding up, `peaknight plan`."""
from __future__ import annotations

import dataclasses
import math

import pytest

import nights
from peaknight.plan import capacity
from peaknight.cli import main as cli
from peaknight.spec import config
from peaknight.plan.capacity import replicas_for, zone_split
from test_config import write_variant


@pytest.fixture(scope="module")
def broadcast():
    return nights.spec("broadcast")


def test_replica_throughput_mixes_prefill_and_decode_by_input_share(broadcast):
    greetings = next(m for m in broadcast.models if m.name == "greetings")
    pool = next(p for p in broadcast.gpu_pools if p.name == greetings.pool)   # H100 or H200: the slower
    # H100: prefill 20,400; decode min(5,103, memory bound): (79.6 GiB x 0.92 - 9 GiB) / (2 x 36 x 8 x
    # 128 x 2 B) = 467,723 tokens / (2,048 + 128/2) = 221 concurrent / 0.05 s = 4,420 tok/s.
    tokens = int((79.6 * 0.92 - 9) * 2**30 // (2 * 36 * 8 * 128 * 2))
    decode = (tokens // 2112) / 0.05
    assert decode == 4_420
    # By hand: 1 / (0.6 / 20,400 + 0.4 / 4,420) = 8,340.3 tok/s per 1xH100 (the H200 is faster).
    figure = capacity.replica_tps(greetings, pool, broadcast.slo.itl_p99_seconds, "efa")
    assert figure.value == pytest.approx(1 / (0.6 / 20_400 + 0.4 / decode)) == pytest.approx(8_340.3, rel=1e-4)
    assert "MLPerf v5.1" in figure.why and "bound by KV-cache memory" in figure.why


def test_the_63_3_billion_tokens_per_minute_peak_on_a_published_figure(broadcast):
    # The whole night on DeepSeek's production H800 node figures (H100-class, 16-GPU replica):
    # 1 / (0.75/147,400 + 0.25/29,600) = 73,887 tok/s per replica. 63.3e9/60 = 1.055e9 tok/s;
    # x headroom 1.05 / (73,887 x util 0.85) = 17,638.2 -> 17,639 replicas, 282,224 GPUs.
    per_replica = 1 / (0.75 / 147_400 + 0.25 / 29_600)
    no_zone_loss = dataclasses.replace(broadcast, policy=dataclasses.replace(broadcast.policy, survive_zone_loss=False))
    r = replicas_for(63.3e9 / 60, per_replica, no_zone_loss, zones=3, label="night")
    assert r.value == 17_639
    assert r.value * 16 == 282_224  # within FACTS' estimate of 2.1e5-7e5 GPUs for the night
    # With N+1 by zone over 3 zones: R - ceil(R/3) >= 17,639 first holds at R = 26,459.
    assert replicas_for(63.3e9 / 60, per_replica, broadcast, zones=3, label="night").value == 26_459


@pytest.mark.parametrize("zones", [2, 3, 4, 6])
def test_rounding_never_under_provisions_and_is_minimal(broadcast, zones):
    policy = broadcast.policy
    per_replica = 45_484.41
    for demand in [1, 999, 38_000, 38_662, 1e5, 3.3e6, 65_937_500, 1.055e9]:
        r = int(replicas_for(demand, per_replica, broadcast, zones, "x").value)
        survivors = r - math.ceil(r / zones)
        need = demand * policy.headroom
        assert survivors * per_replica * policy.target_utilisation >= need
        fewer = (r - 1) - math.ceil((r - 1) / zones)
        assert fewer * per_replica * policy.target_utilisation < need, "the plan must be the smallest that fits"


def test_every_broadcast_model_is_covered_with_its_largest_zone_lost(broadcast):
    plan = capacity.plan(broadcast)
    assert not plan.short
    for cluster, spec_cluster in zip(plan.clusters, broadcast.clusters):
        zones = len(spec_cluster.zones)
        for m in cluster.models:
            r = int(m.replicas.value)
            assert sum(zone_split(r, zones)) == r
            lost = max(zone_split(r, zones))
            assert (r - lost) * m.replica_tps.value * 0.85 >= m.demand_tps.value * 1.05
            assert m.capacity_tps.value == pytest.approx((r - lost) * m.replica_tps.value * 0.85)


def test_nodes_gpus_and_pool_limits_follow_the_replicas(broadcast):
    cluster = capacity.plan(broadcast).cluster("gala-bj-01")
    greetings = cluster.model("greetings")   # 1 GPU per replica, 8 per node, spread over 3 zones
    per_zone = zone_split(int(greetings.replicas.value), 3)
    assert greetings.nodes.value == sum(math.ceil(z / 8) for z in per_zone)
    # deep-think is disaggregated: prefill groups of 32 GPUs (4 nodes), decode groups of 128 (16 nodes).
    prefill, decode = cluster.model("deep-think-prefill"), cluster.model("deep-think-decode")
    assert (prefill.nodes_per_replica, decode.nodes_per_replica) == (4, 16)
    assert prefill.nodes.value == 4 * prefill.replicas.value and decode.nodes.value == 16 * decode.replicas.value
    assert decode.gpus.value == 128 * decode.replicas.value
    h100 = cluster.pool("h100")
    # Room above the plan for the larger of the burst (ceil(peak x 1.25) - peak groups of their
    # nodes) and each workload's surge groups for a rollout.
    burst = sum((math.ceil(m.replicas.value * 1.25) - m.replicas.value) * m.nodes_per_replica for m in (prefill, decode))
    surge = sum(m.surge.value * m.nodes_per_replica for m in (prefill, decode))
    assert h100.gpu_limit.value == (prefill.nodes.value + decode.nodes.value + max(burst, surge)) * 8


def test_single_sku_pool_is_warned_about_per_region(broadcast):
    """h100 lists one type everywhere; h200 lists two, but only us-east-2 sells p5e (profiles.yaml)."""
    tail = "one SKU running out leaves it without capacity"
    assert capacity.plan(broadcast).warnings == (
        f"pool 'h200' can be satisfied by a single instance type (p5en.48xlarge) in us-east-1 (24 clusters): {tail}",
        f"pool 'h200' can be satisfied by a single instance type (p5en.48xlarge) in us-west-2 (24 clusters): {tail}",
        f"pool 'h100' can be satisfied by a single instance type (p5.48xlarge) in us-east-1 (24 clusters): {tail}",
        f"pool 'h100' can be satisfied by a single instance type (p5.48xlarge) in us-west-2 (24 clusters): {tail}",
        f"pool 'h100' can be satisfied by a single instance type (p5.48xlarge) in us-east-2 (16 clusters): {tail}",
        # Issue 24, finding 11: where p5e and p5en both launch, chat's groups can request only p5en's 16 EFA.
        "pool 'h200' in us-east-2 (16 clusters): its groups request 16 EFA devices, the fewest of its instance "
        "types; on p5e.48xlarge 32 the rest sit idle (one EFA count per pool uses them all)")


def test_a_plan_beyond_the_envelope_is_an_error_naming_cluster_and_excess(broadcast, tmp_path, capsys):
    def four_clusters(cfg):
        cfg["peaknight:clusters"] = cfg["peaknight:clusters"][:4]
        for c in cfg["peaknight:clusters"]:
            c["share"] = 0.25
    path = write_variant(tmp_path, four_clusters)
    spec = config.load_stack(str(path)).spec
    with pytest.raises(capacity.EnvelopeError) as err:
        capacity.plan(spec)
    pools = {p.name: p for p in spec.gpu_pools}
    nodes = capacity._plan_cluster(spec, spec.clusters[0], pools)  # what the cluster would need
    assert err.value.problems[0] == (f"cluster 'gala-bj-01': {nodes.nodes:,} nodes planned, envelope 5,000: over by "
                                     f"{nodes.nodes - 5000:,} (add a cluster or lower its share)")
    assert len([p for p in err.value.problems if "nodes planned" in p]) == 4
    assert cli.main(["render", str(path), "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists(), "nothing is emitted for a plan that does not fit"
    assert "over by" in capsys.readouterr().err


def test_a_pool_cap_is_part_of_the_envelope(tmp_path):
    # deep-think (on EFA, derated: issue 24, 12): 36 prefill groups x 4 nodes + 14 decode groups x 16
    # + max(9 x 4 + 4 x 16 burst, 5 x 4 + 2 x 16 surge) = 468 nodes x 8 GPUs = 3,744.
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:gpuPools"][2].update(maxGpusPerCluster=1000))
    with pytest.raises(capacity.EnvelopeError) as err:
        capacity.plan(config.load_stack(str(path)).spec)
    assert err.value.problems == ["cluster '%s': pool 'h100' needs 3,744 GPUs, its maxGpusPerCluster is 1,000: "
                                  "over by 2,744" % c for c in
                                  [f"gala-{r}-{i:02d}" for r, n in (("bj", 24), ("nx", 24), ("hk", 16))
                                   for i in range(1, n + 1)]]


def test_plan_exits_1_and_says_short_when_a_quota_caps_a_model(tmp_path, capsys):
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:models"][0].update(maxReplicasPerCluster=100))
    assert cli.main(["plan", str(path)]) == 1
    out = capsys.readouterr().out
    assert "SHORT" in out and "128 SHORT" in out  # chat-prefill (294) and chat-decode (114) over 100 in 64 clusters


def test_plan_command_prints_the_table_and_exits_0(capsys):
    assert cli.main(["plan", "broadcast", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "all models and edges covered" in out
    assert "gala-bj-01 +63  chat-prefill" in out  # 64 clusters with the same plan: one row each
    # chat-prefill: 294,800 x (1 - 0.563) / (1 - 0.001736 achievable) / input share 0.75 x 0.303 (EFA)
    # = 52,137 tok/s a group; ceil(16,484,375 x 1.05 / (52,137 x 0.85)) = 391, 587 to survive a zone.
    assert "peak: ceil(16,484,375 x headroom 1.05 / (52,137 x util 0.85)) = 391; +196 so that 391 survive losing 1 of 3 zones" in out


def test_a_full_rollout_finishes_within_the_policy_hours(broadcast):
    """maxSurge 1 on 2,687 chat replicas was about a month per cluster. The plan's surge fits
    policy.rolloutHours (3 h): first wave cold start + drain, then warm start + drain per wave."""
    from peaknight.builders import event
    from peaknight.plan.startup import ready_seconds
    objs = event.build(broadcast)
    cluster = objs.clusters[0]
    plan = objs.plan.cluster(cluster.cluster.name)
    for model in broadcast.models:
        for m in plan.phases(model.name):
            first = ready_seconds(broadcast.policy, model, warm=False).value + 300
            wave = ready_seconds(broadcast.policy, model, warm=True).value + 300
            waves = math.ceil(m.replicas.value / m.surge.value)
            assert m.rollout.value == first + (waves - 1) * wave <= 3 * 3600
            # One wave fewer would not fit: the surge is the smallest that finishes in time.
            assert m.surge.value == 1 or first + math.ceil(m.replicas.value / (m.surge.value - 1) - 1) * wave > 3 * 3600
    objects = {(o.kind, o.name): o.manifest for u in cluster.units for o in u.objects}
    # greetings' 2 picker shards (builders/shards.py: ceil(580 pods at the ceiling / 304 per picker))
    # share the plan's surge: the pool holds no more.
    assert ("Deployment", "greetings-s2") not in objects
    surges = [objects[("Deployment", f"greetings-s{i}")]["spec"]["strategy"]["rollingUpdate"] for i in range(2)]
    assert {s["maxUnavailable"] for s in surges} == {0} and min(s["maxSurge"] for s in surges) >= 1
    assert sum(s["maxSurge"] for s in surges) == max(2, int(plan.model("greetings").surge.value)) == 34
    for name in ("chat-prefill", "chat-decode", "deep-think-prefill", "deep-think-decode"):
        lws = objects[("LeaderWorkerSet", name)]["spec"]
        assert lws["rolloutStrategy"]["rollingUpdateConfiguration"]["maxSurge"] == int(plan.model(name).surge.value)


def test_a_rollout_that_cannot_finish_in_time_is_reported(tmp_path, capsys):
    # 0.25 h = 900 s is less than one cold chat wave (4,740 s start, the node-cache fill's 3,600 s
    # among them, + 300 s drain): even every replica in one wave cannot finish in time.
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:policy"].update(rolloutHours=0.25), "rehearsal")
    assert cli.main(["plan", str(path)]) == 0
    out = capsys.readouterr().err  # warnings go to stderr
    assert ("warning: cluster 'reh-bj-01': a rolling update of 'chat-prefill' takes 1.4 h (1 waves of 60: 5040 s + 0 x "
            "780 s = 5040 s), over policy.rolloutHours 0.25") in out
