"""Planning for the loss of a whole cluster or region (policy.surviveLoss, plan/loss.py): the
shares the survivors carry, the replicas they hold for it, what it costs in GPUs, and the SHORT
lines of a plan that cannot absorb it."""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

import nights
from peaknight.cli import main as cli
from peaknight.plan import capacity, gate, loss
from peaknight.spec.stack import LossScope, StackSpec
from test_config import write_variant


def surviving(scope: str, util: float | None = None, zone_loss: bool = True) -> StackSpec:
    spec = nights.spec("broadcast")
    policy = dataclasses.replace(spec.policy, survive_loss=LossScope(scope), survive_zone_loss=zone_loss,
                                 **({"loss_utilisation": util} if util else {}))
    return dataclasses.replace(spec, policy=policy)


def test_the_survivors_carry_the_lost_share_in_proportion_to_their_own():
    region = surviving("region")
    east = next(c for c in region.clusters if c.region == "us-east-1")
    a = loss.absorb(region, east)
    # 24 of 64 clusters in us-west-2 (as many as in us-east-1, which holds this one): 0.015625 / 0.625.
    assert a is not None and a.lost == "region 'us-west-2'" and a.lost_share == pytest.approx(0.375)
    assert a.share.value == pytest.approx(0.025)
    one = loss.absorb(surviving("cluster"), east)
    assert one is not None and one.share.value == pytest.approx(1 / 63)
    assert loss.absorb(surviving("none"), east) is None


def test_every_workload_carries_its_share_after_the_loss_at_the_loss_utilisation():
    spec = surviving("region", util=0.85)
    plan, plain = capacity.plan(spec), capacity.plan(surviving("none"))
    for c, p in zip(plan.clusters, plain.clusters):
        for m, normal in zip(c.models, p.models):
            assert m.loss_demand_tps and m.loss_capacity_tps
            assert m.loss_demand_tps.value == pytest.approx(m.demand_tps.value * 1.6)   # 0.1 / 0.0625
            assert m.loss_capacity_tps.value >= m.loss_demand_tps.value
            need = math.ceil(m.loss_demand_tps.value * spec.policy.headroom / (m.replica_tps.value * 0.85) - 1e-9)
            assert m.replicas.value == max(need, normal.replicas.value)
            if need > normal.replicas.value:   # the why names the loss where it decides the count
                assert m.replicas.why.endswith(f"x loss util 0.85)) = {need}")
                assert m.replicas.why.startswith(normal.replicas.why + "; raised to absorb region 'us-")
            else:
                assert m.replicas == normal.replicas
    assert gate.stack(spec, plan) == []


def test_the_plan_says_what_the_loss_costs_in_gpus():
    without = capacity.plan(surviving("none")).gpus
    # At 0.85, a region's loss (the survivors carry 1.6x) outgrows N+1 by zone (1.5x): it costs GPUs.
    region = capacity.plan(surviving("region", util=0.85))
    assert region.loss_gpus is not None and region.loss_gpus.value == region.gpus - without > 0
    # At the default 0.95, 1.6 x 0.85 / 0.95 = 1.43 < 1.5: the zone reserve already absorbs it, so
    # the shipped night asks for it at no cost.
    assert capacity.plan(surviving("region")).loss_gpus.value == 0  # type: ignore[union-attr]
    shipped = capacity.plan(nights.spec("broadcast"))
    assert shipped.loss_gpus is not None and shipped.loss_gpus.value == 0 and shipped.gpus == without
    # Without N+1 by zone, one cluster's loss (16/15 the share) at the plan's own 0.85 costs GPUs;
    # at the default 0.95, 16/15 x 0.85 / 0.95 = 0.95 < 1: the plan's utilisation margin absorbs it.
    no_zone = capacity.plan(surviving("cluster", util=0.85, zone_loss=False))
    assert no_zone.loss_gpus is not None and no_zone.loss_gpus.value > 0
    assert capacity.plan(surviving("cluster", zone_loss=False)).loss_gpus.value == 0  # type: ignore[union-attr]
    assert capacity.plan(surviving("none")).loss_gpus is None


def test_plan_prints_the_cost_and_explains_the_figures(tmp_path, capsys):
    def region(cfg):
        cfg["peaknight:policy"].update(surviveLoss="region", lossUtilisation=0.85)
    path = write_variant(tmp_path, region)
    assert cli.main(["plan", str(path), "--explain", "--cluster", "gala-bj-01", "--model", "chat"]) == 0
    out = capsys.readouterr().out
    gpus = capacity.plan(surviving("region", util=0.85)).loss_gpus
    assert gpus is not None and f"loss: {gpus.why}" in out
    assert f"= +{int(gpus.value):,} GPUs" in out
    assert "  forecast after a loss: " in out and "after losing region 'us-west-2' (share 0.375)" in out
    assert "  capacity after a loss: " in out and "loss util 0.85" in out


def test_a_quota_that_keeps_a_cluster_from_absorbing_the_loss_is_short(tmp_path, capsys):
    normal = capacity.plan(surviving("none")).cluster("gala-bj-01").model("greetings").replicas.value

    def capped(cfg):
        cfg["peaknight:policy"].update(surviveLoss="region", lossUtilisation=0.85)
        next(m for m in cfg["peaknight:models"] if m["name"] == "greetings")["maxReplicasPerCluster"] = int(normal)
    assert cli.main(["plan", str(write_variant(tmp_path, capped))]) == 1
    short = [line for line in capsys.readouterr().out.splitlines() if line.startswith("SHORT: ")]
    assert len(short) == 64  # one per cluster: each one's worst loss is another region
    assert short[0].startswith("SHORT: cluster 'gala-bj-01': model 'greetings' cannot absorb the loss: capacity ")
    assert "after losing region 'us-west-2'" in short[0] and "capped at maxReplicasPerCluster" in short[0]


def test_a_stack_in_one_region_cannot_survive_losing_it(tmp_path, capsys):
    def one_region(cfg):
        cfg["peaknight:policy"]["surviveLoss"] = "region"
    path = write_variant(tmp_path, one_region, "rehearsal", clusters=["reh-bj-01", "reh-bj-02"])
    assert cli.main(["plan", str(path)]) == 1
    out = capsys.readouterr().out
    assert ("SHORT: policy.surviveLoss region: the stack's clusters are all in region 'us-east-1'; losing it "
            "leaves none to absorb its share (add a region)") in out.splitlines()


def test_a_stack_with_a_cluster_removed_plans_for_the_loss_of_another(tmp_path, capsys):
    spec = surviving("cluster")
    kept = [c.name for c in spec.clusters if c.name != "gala-hk-04"]

    def sixty_three(cfg):
        cfg["peaknight:policy"]["surviveLoss"] = "cluster"
        for c in cfg["peaknight:clusters"]:
            c["share"] = 1 / 63
        cfg["peaknight:clusters"] = [c for c in cfg["peaknight:clusters"] if c["name"] in kept]
    assert cli.main(["plan", str(write_variant(tmp_path, sixty_three)), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"]["clusters"] == 63 and doc["short"] == [] and doc["loss_gpus"] is not None


@pytest.mark.parametrize("key, value, expected", [
    ("surviveLoss", "zone", "expected one of none, cluster, region; found 'zone'"),
    ("lossUtilisation", 1.5, "expected less than or equal to 1; found 1.5"),
    ("lossUtilisation", "nan", "expected a finite number; found 'nan'"),
    ("lossUtilisation", 0, "expected greater than or equal to 0.01; found 0"),
])
def test_bad_loss_keys_are_one_line_each(tmp_path, capsys, key, value, expected):
    def bad(cfg):
        cfg["peaknight:policy"][key] = value
    assert cli.main(["plan", str(write_variant(tmp_path, bad))]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if f"peaknight:policy.{key}" in line]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err


def test_the_live_edge_holds_the_viewers_it_takes_after_the_loss():
    spec = surviving("region", util=0.85)
    for c in capacity.plan(spec).clusters:
        for e in c.edges:
            edge = next(x for x in spec.edges if x.name == e.edge)
            after = e.egress_gbps.value * 1.6   # share 0.0625 -> 0.1
            need = math.ceil(after * spec.policy.headroom / (edge.pod_egress_gbps * 0.85) - 1e-9)
            assert e.pods.value == need and "raised to absorb region 'us-" in e.pods.why
            assert e.max_pods.value >= need
    plain = capacity.plan(surviving("none")).clusters[0]
    # The shipped night holds the loss already (N+1 by zone): its derivations, and so its rendered
    # objects, are the plain plan's; only --explain's after-a-loss lines tell.
    shipped = capacity.plan(nights.spec("broadcast")).clusters[0]
    assert [e.pods for e in shipped.edges] == [e.pods for e in plain.edges]
    assert [m.replicas for m in shipped.models] == [m.replicas for m in plain.models]
    assert all(m.loss_capacity_tps and m.loss_demand_tps and m.loss_capacity_tps.value >= m.loss_demand_tps.value
               for m in shipped.models)


def test_the_envelope_still_holds_a_plan_for_loss(tmp_path, capsys):
    """gala-vke cut to two clusters plans at 4,963 nodes each; holding the other's share too
    (2x at 0.95 outgrows N+1 by zone's 1.5x) would put 5,914 in each: over the 5,000-node envelope,
    each cluster named, nothing planned."""
    def two(cfg: dict[str, Any]) -> None:
        cfg["peaknight:policy"]["surviveLoss"] = "cluster"
    names = [c.name for c in nights.spec("gala-vke").clusters[:2]]
    assert cli.main(["plan", str(write_variant(tmp_path, lambda cfg: None, "gala-vke", clusters=names))]) == 0
    capsys.readouterr()
    assert cli.main(["plan", str(write_variant(tmp_path, two, "gala-vke", clusters=names))]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    for name in names:
        assert f"cluster '{name}': 5,914 nodes planned, envelope 5,000: over by 914" in text
