"""Edge tier sizing: hand-computed egress and pods for both stacks, zone loss, the shared envelope."""
from __future__ import annotations

import dataclasses
import math

import pytest

import nights
from peaknight.plan import capacity


@pytest.fixture(scope="module")
def broadcast():
    return nights.spec("broadcast")


def test_broadcast_edge_per_cluster_by_hand(broadcast):
    # 25,000,000 viewers x scale 1 x share 1/64 = 390,625 per cluster.
    # Mix: 0.35 x 6,000 + 0.40 x 3,000 + 0.20 x 1,200 + 0.05 x 400 = 3,560 kbps.
    # Egress: 390,625 x 3,560 kbps = 1,390.625 Gbps.
    # Serving: ceil(1,390.625 x 1.05 / (20 x 0.85)) = ceil(85.89) = 86.
    # N+1 by zone over 3: T - ceil(T/3) >= 86 first holds at T = 129 (129 - 43 = 86; 128 - 43 = 85).
    e = capacity.plan(broadcast).cluster("gala-bj-01").edge("gala-live")
    assert e.viewers.value == 390_625
    assert e.mix_kbps.value == pytest.approx(3_560)
    assert e.egress_gbps.value == pytest.approx(1_390.625)
    assert e.pods.value == 129
    assert e.max_pods.value == 258                        # burst 2
    assert e.viewers_per_pod.value == pytest.approx(20e6 * 0.85 / 3_560)   # 4,775 viewers at 17 Gbps
    assert e.capacity_gbps.value == pytest.approx(86 * 20 * 0.85)          # 1,462 Gbps with a zone lost
    assert not e.short
    assert "survive losing 1 of 3 zones" in e.pods.why and "3,560 kbps" in e.mix_kbps.why


def test_rehearsal_edge_by_hand():
    # 25 M x 0.01 x 0.25 = 62,500 viewers x 3,560 kbps = 222.5 Gbps; headroom 1, no zone loss:
    # ceil(222.5 / (20 x 0.85)) = ceil(13.09) = 14 pods; capacity 14 x 17 = 238 Gbps.
    e = capacity.plan(nights.spec("rehearsal")).cluster("reh-bj-01").edge("gala-live")
    assert (e.viewers.value, e.egress_gbps.value, e.pods.value) == (62_500, pytest.approx(222.5), 14)
    assert e.capacity_gbps.value == pytest.approx(238.0)
    assert e.max_pods.value == 28


def test_edge_pods_count_in_the_cluster_pod_envelope(broadcast):
    plan = capacity.plan(broadcast).cluster("gala-bj-01")
    without = dataclasses.replace(broadcast, edges=())
    # Edge ceiling + shields, and the daemons of the edge pool's 54 nodes.
    assert plan.pods - capacity.plan(without).cluster("gala-bj-01").pods == 258 + 3 + 54 * capacity.DAEMON_PODS_PER_NODE
    assert plan.edge_pods == 261
    assert plan.nodes - capacity.plan(without).cluster("gala-bj-01").nodes == 54


def test_the_edge_pool_is_sized_by_its_nics_and_exposed_within_the_nlb_quotas(broadcast):
    # c6in.32xlarge: 200 Gbps, half of it to the internet (>= 32 vCPUs) = 100 Gbps / 20 Gbps pods = 5 per
    # node (CPU would allow 126 / 8 = 15, memory 256 / 8 = 32). 258 edge pods + 3 shields over 3
    # zones = 87 per zone / 5 = 18 nodes per zone, 54 in all; 36 left with a zone lost x 100 Gbps
    # = 3,600 Gbps >= the 1,390.625 Gbps peak. 86 pods per zone behind the NLB (quota 500 per zone).
    e = capacity.plan(broadcast).cluster("gala-bj-01").edge("gala-live")
    assert (e.pods_per_node.value, e.nodes.value, e.node_gbps.value) == (5, 54, 3_600)
    assert e.lb_targets_per_zone == 86 and not e.short
    assert "0.5 of 200" in e.pods_per_node.why and "AWS EC2 C6in" in e.pods_per_node.why
    # Nodes too small for the peak: 16-vCPU-class NICs would leave the edge SHORT.
    small = dataclasses.replace(broadcast.edges[0], node_instance_types=("c6in.16xlarge",), burst=1.0)
    tight = capacity.plan(dataclasses.replace(broadcast, edges=(small,))).cluster("gala-bj-01").edge("gala-live")
    assert tight.pods_per_node.value == 2 and tight.nodes.value == 3 * math.ceil(44 / 2)   # (129 + 3) / 3 per zone
    # More pods per zone than the NLB takes is an envelope error naming the quota.
    # 5 Gbps pods: ceil(1,390.625 x 1.05 / 4.25) = 344 serving, 516 with a zone lost, x burst 3 = 1,548.
    wide = dataclasses.replace(broadcast.edges[0], pod_egress_gbps=5.0, burst=3.0)
    with pytest.raises(capacity.EnvelopeError) as err:
        capacity.plan(dataclasses.replace(broadcast, edges=(wide,)))
    assert "516 pods per zone (1,548 in all) behind its load balancer; the NLB quota is 500 per zone" in str(err.value)


def test_shields_and_the_origin_for_the_night_by_hand(broadcast):
    # Edge pods at their ceiling fetch each object once: 258 x (6,000 + 3,000 + 1,200 + 400 kbps)
    # x 2 (parts and segments) = 5.47 Gbps; ceil(5.47 x 1.05 / (20 x 0.85)) = 1 serving shield,
    # 2 to survive a zone, and at least one per zone: 3.
    plan = capacity.plan(broadcast)
    e = plan.cluster("gala-bj-01").edge("gala-live")
    assert e.shield_fetch_gbps.value == pytest.approx(258 * 10_600 * 2 / 1e6)
    assert e.shields.value == 3
    # Each object once per cluster: 10,600 kbps x 2 = 0.0212 Gbps; 4 renditions x (1/4 + 2/0.5 + 1/1) = 21 req/s.
    assert e.origin_gbps.value == pytest.approx(0.0212) and e.origin_rps.value == pytest.approx(21)
    night = plan.origin("gala-live")
    assert night.gbps.value == pytest.approx(64 * 0.0212) and night.rps.value == pytest.approx(64 * 21)
    assert night.shields == 192 and night.window_hours == pytest.approx(5.25)
    assert night.night_tb == pytest.approx(64 * 0.0212 * 5.25 * 3600 / 8 / 1000)
    assert night.offload == pytest.approx(1 - 64 * 0.0212 / (64 * 1_390.625))
    # Without zone loss (rehearsal) the floor is minShields.
    reh = capacity.plan(nights.spec("rehearsal")).cluster("reh-bj-01").edge("gala-live")
    assert reh.shields.value == 2 and "at least 2 (minShields)" in reh.shields.why


def test_an_edge_tier_too_big_for_the_cluster_is_an_envelope_error(broadcast):
    # 0.01 Gbps pods: ceil(1,390.625 x 1.05 / 0.0085) = 171,784 serving pods, over 150,000.
    tiny = dataclasses.replace(broadcast.edges[0], pod_egress_gbps=0.01)
    with pytest.raises(capacity.EnvelopeError) as err:
        capacity.plan(dataclasses.replace(broadcast, edges=(tiny,)))
    assert "live edge pods" in str(err.value) and "envelope 150,000" in str(err.value)
