"""The simulator: HPA/KEDA logic on hand-worked cases, the rendered settings, the night itself."""
from __future__ import annotations

import copy
import time

import pytest

from peaknight.cli import main as cli
from peaknight.spec import config
from peaknight.builders import event
from peaknight.sim import simulator
from peaknight.sim.simulator import CronFloor, Hpa, Rules, ScalingPolicy, metric_replicas


def test_tolerance_band():
    assert metric_replicas(105, 10, 10) == 10     # 5% over target: inside the 10% band
    assert metric_replicas(111, 10, 10) == 12     # 11% over: ceil(111 / 10)
    assert metric_replicas(89, 10, 10) == 9       # 11% under: ceil(8.9)
    assert metric_replicas(95, 10, 10) == 10


def test_scale_down_stabilisation_keeps_the_highest_recent_recommendation():
    down = Rules(300, "Max", (ScalingPolicy("Percent", 100, 15),))
    hpa = Hpa(1, 100, simulator.DEFAULT_UP, down)
    assert hpa.sync(0, 10, 10) == 10
    assert hpa.sync(15, 10, 5) == 10              # 10 was recommended within 300 s
    assert hpa.sync(290, 10, 5) == 10
    assert hpa.sync(316, 10, 5) == 5              # the 10 at t=0 and 15 have aged out


def test_scale_up_policies_and_disabled_scale_down():
    up = Rules(0, "Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 60)))
    hpa = Hpa(1, 100, up, Rules(0, "Disabled", (ScalingPolicy("Percent", 100, 15),)))
    assert hpa.sync(0, 10, 50) == 20              # max(10 + 4, 10 x 2)
    assert hpa.sync(15, 20, 50) == 24             # the doubling's 60 s period started at 10: 14 vs 20 + 4
    assert hpa.sync(30, 24, 3) == 24              # scale-down disabled
    assert Hpa(5, 100, up, up).sync(45, 2, 1) == 5  # below minReplicas: straight to it


def test_cron_floor_and_max_over_triggers():
    crons = (CronFloor(0, 600, 40), CronFloor(300, 900, 60))
    assert simulator.cron_floor(crons, -1) is None
    assert simulator.cron_floor(crons, 100) == 40
    assert simulator.cron_floor(crons, 400) == 60
    cfg = simulator.Settings(True, 10, 100, 1000.0, 1.0, 120, crons, simulator.DEFAULT_UP, simulator.DEFAULT_DOWN, 15, 300)
    assert simulator.recommend(cfg, 30_000, 40, 20) == 40    # the cron floor beats tokens (30)
    assert simulator.recommend(cfg, 50_000, 40, 20) == 50    # tokens beat the floor
    assert simulator.recommend(cfg, 30_000, 21, 20) == 30    # a floor within 10% of current does nothing alone


@pytest.fixture(scope="module")
def broadcast():
    spec = config.load_stack("broadcast").spec
    return spec, event.build(spec)


def _chat(spec, objects):
    cluster = objects.clusters[0]
    unit = next(u for u in cluster.units if u.component == "Autoscaler" and u.name == "chat")
    return (next(m for m in spec.models if m.name == "chat"), objects.plan.cluster(cluster.cluster.name).model("chat"),
            unit.objects[0].manifest)


def test_simulator_reads_the_rendered_scaled_object(broadcast):
    spec, objects = broadcast
    _, _, manifest = _chat(spec, objects)
    cfg = simulator.settings(spec, manifest)
    s = manifest["spec"]
    assert (cfg.min_replicas, cfg.max_replicas, cfg.polling, cfg.cooldown) == (
        s["minReplicaCount"], s["maxReplicaCount"], s["pollingInterval"], s["cooldownPeriod"])
    assert cfg.target_tps == float(s["triggers"][0]["metadata"]["threshold"]) and cfg.rate_window == 120
    assert (cfg.down.select, cfg.down.stabilization) == ("Max", 3600) and len(cfg.crons) == len(spec.event.moments)
    assert cfg.crons[0].start == 9 * 60 and cfg.crons[0].replicas == int(s["triggers"][1]["metadata"]["desiredReplicas"])
    edited = copy.deepcopy(manifest)
    edited["spec"]["triggers"][0]["metadata"]["threshold"] = "123"
    assert simulator.settings(spec, edited).target_tps == 123


def test_reactive_autoscaler_misses_the_moments_the_kit_serves(broadcast):
    spec, objects = broadcast
    model, plan, manifest = _chat(spec, objects)
    reactive = copy.deepcopy(manifest)
    reactive["spec"]["triggers"] = [t for t in reactive["spec"]["triggers"] if t["type"] != "cron"]
    kit, late = simulator.replay(spec, model, plan, manifest), simulator.replay(spec, model, plan, reactive)
    slo = spec.slo.unmet_tokens_pct
    assert 100 * kit.unmet_tokens / kit.demand_tokens <= slo and not kit.unmet_minutes
    assert 100 * late.unmet_tokens / late.demand_tokens > slo
    countdown = int((spec.event.moments[-1].at - spec.event.window.start).total_seconds() // 60)
    assert late.unmet_minutes & set(range(countdown, countdown + 12))   # the midnight countdown is missed


def test_simulate_broadcast_is_within_slo_and_fast(capsys):
    started = time.perf_counter()
    assert cli.main(["simulate", "broadcast"]) == 0
    assert time.perf_counter() - started < 5
    out = capsys.readouterr().out
    assert "chat" in out and "ratio" in out and "OVER SLO" not in out


def test_simulate_rehearsal_covers_keda_and_hpa_clusters(tmp_path, capsys):
    assert cli.main(["simulate", "rehearsal", "--step", "30", "--plot", str(tmp_path / "night.png")]) == 0
    assert (tmp_path / "night.png").stat().st_size > 10_000
    results = simulator.simulate(config.load_stack("rehearsal").spec)
    assert all(r.clusters == 4 and r.unmet_pct == 0 and r.oracle_ratio > 1 for r in results)
