"""The simulator: HPA/KEDA logic on hand-worked cases, the rendered settings, the night itself."""
from __future__ import annotations

import copy
import dataclasses
import math
import time

import pytest

import nights
from peaknight.cli import main as cli
from peaknight.builders import event
from peaknight.plan import startup
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
    spec = nights.spec("broadcast")
    return spec, event.build(spec)


def _chat(spec, objects):
    """chat's decode groups: the workload that streams every answer (the model is disaggregated)."""
    cluster = objects.clusters[0]
    unit = next(u for u in cluster.units if u.component == "Autoscaler" and u.name == "chat")
    scaled = next(o for o in unit.objects if o.name == "chat-decode")
    return (next(m for m in spec.models if m.name == "chat"),
            objects.plan.cluster(cluster.cluster.name).model("chat-decode"), scaled.manifest)


def test_simulator_reads_the_rendered_scaled_object(broadcast):
    spec, objects = broadcast
    _, _, manifest = _chat(spec, objects)
    cfg = simulator.settings(spec, manifest)
    s = manifest["spec"]
    assert (cfg.min_replicas, cfg.max_replicas, cfg.polling, cfg.cooldown) == (
        s["minReplicaCount"], s["maxReplicaCount"], s["pollingInterval"], s["cooldownPeriod"])
    assert cfg.target_tps == float(s["triggers"][0]["metadata"]["threshold"]) and cfg.rate_window == 120
    assert (cfg.down.select, cfg.down.stabilization) == ("Max", 3600) and len(cfg.crons) == len(spec.event.moments)
    # Opening at 20:00 less its 81 min cold lead: 18:39, 51 min before the window opens at 19:30.
    assert cfg.crons[0].start == -51 * 60 and cfg.crons[0].replicas == int(s["triggers"][3]["metadata"]["desiredReplicas"])
    assert (cfg.queue_target, cfg.kv_target) == (float(s["triggers"][1]["metadata"]["threshold"]), 0.85)
    edited = copy.deepcopy(manifest)
    edited["spec"]["triggers"][0]["metadata"]["threshold"] = "123"
    edited["spec"]["triggers"][1]["metadata"]["threshold"] = "9"
    assert (simulator.settings(spec, edited).target_tps, simulator.settings(spec, edited).queue_target) == (123, 9)
    # A trigger the replay does not model stops it instead of being skipped.
    edited["spec"]["triggers"][2]["name"] = "gpu-power"
    with pytest.raises(ValueError, match="ScaledObject/chat-decode: the replay does not model gpu-power"):
        simulator.settings(spec, edited)


def test_queue_and_kv_signals_raise_the_recommendation_above_the_token_rate(broadcast):
    """With the token rate at its target, a queue over the waiting target or KV cache over its
    target asks for more replicas: the HPA takes the highest metric (k8s horizontal.go)."""
    spec, objects = broadcast
    _, _, manifest = _chat(spec, objects)
    cfg = simulator.settings(spec, manifest)
    current = 100
    at_target = cfg.target_tps * current
    assert simulator.recommend(cfg, at_target, None, current) == current
    assert simulator.recommend(cfg, at_target, None, current, waiting=cfg.queue_target * 150) == 150
    assert simulator.recommend(cfg, at_target, None, current, kv_in_use=cfg.kv_target * 130) == 130
    # Within the HPA's 10% tolerance nothing moves.
    assert simulator.recommend(cfg, at_target, None, current, waiting=cfg.queue_target * 105) == current


def test_reactive_autoscaler_misses_the_moments_the_kit_serves(broadcast):
    spec, objects = broadcast
    model, plan, manifest = _chat(spec, objects)
    # Without its ladder: what the late fleet cannot hold then waits past the TTFT SLO (unmet)
    # instead of being refused with 429 (test_admission.py covers the ladder).
    model = dataclasses.replace(model, ladder=None)
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
    results = simulator.simulate(nights.spec("rehearsal"))
    # deep-think's decode needs its one group all night in every cluster: the oracle can do no better.
    assert all(r.clusters == 4 and r.unmet_pct == 0 and r.oracle_ratio >= 1 for r in results)
    assert sum(r.oracle_ratio > 1 for r in results) >= 4


def _at(spec, moment: str) -> float:
    m = next(m for m in spec.event.moments if m.name == moment)
    return (m.at - spec.event.window.start).total_seconds()


def test_losing_a_zone_at_the_peak_meets_the_slo(capsys, tmp_path):
    """The zone's groups vanish (a third of chat's replicas in bj clusters), the controller
    recreates them cold elsewhere, and the survivors carry the peak meanwhile (N+1 by zone)."""
    assert cli.main(["simulate", "broadcast", "--lose-zone", "us-east-1a", "--at", "red-packet-2",
                     "--plot", str(tmp_path / "zone.png")]) == 0
    out = capsys.readouterr().out
    assert "fault: zone us-east-1a lost at 21:40 in every cluster that has it" in out and "OVER SLO" not in out
    spec = nights.spec("broadcast")
    objects = event.build(spec)
    model, plan, manifest = _chat(spec, objects)
    at = _at(spec, "red-packet-2")
    trace = simulator.replay(spec, model, plan, manifest, faults=simulator.Faults(lose_zone="us-east-1a", lose_at=at),
                             zone=(0, 3))
    i = trace.times.index(at)
    before, after = trace.capacity[i - 1], trace.capacity[i]
    lost = math.ceil(trace.replicas[i - 1] / 3)
    assert after == pytest.approx(before * (1 - lost / trace.replicas[i - 1]))
    assert trace.unmet_tokens == 0
    back = i + int(startup.ready_seconds(spec.policy, model, warm=False).value // 10) + 1
    assert trace.capacity[back] == pytest.approx(before)   # recreated cold in the other zones


def test_prometheus_empty_at_install_holds_the_floor_not_the_peak(broadcast):
    """Nothing scraped yet: the kit's trigger reads it as no load; the old trigger
    (ignoreNullValues false, fallback = peak, static) scaled to the peak on install."""
    spec, objects = broadcast
    model, plan, manifest = _chat(spec, objects)
    empty = simulator.Faults(prometheus_empty_until=_at(spec, "opening"))
    kit = simulator.replay(spec, model, plan, manifest, faults=empty)
    old = copy.deepcopy(manifest)
    old["spec"]["triggers"][0]["metadata"]["ignoreNullValues"] = "false"
    old["spec"]["fallback"] = {"failureThreshold": 3, "replicas": int(plan.replicas.value)}
    jumped = simulator.replay(spec, model, plan, old, faults=empty)
    # Until the opening (20:00) Prometheus answers nothing: the kit holds what the schedule has due
    # by then (the pre-scaled floors of the moments whose cold lead has begun), never more; the old
    # trigger jumps to the peak.
    opening = _at(spec, "opening")
    before = [i for i, t in enumerate(kit.times) if t < opening]
    due = max(c.replicas for c in simulator.settings(spec, manifest).crons if c.start < opening)
    assert due < plan.replicas.value
    assert max(kit.replicas[i] for i in before) == due
    assert max(jumped.replicas[i] for i in before) == plan.replicas.value


def test_prometheus_down_at_the_peak_holds_the_fleet(broadcast):
    spec, objects = broadcast
    model, plan, manifest = _chat(spec, objects)
    at = _at(spec, "red-packet-2")
    down = simulator.replay(spec, model, plan, manifest, faults=simulator.Faults(prometheus_down=(at, at + 600)))
    i = down.times.index(at)
    assert min(down.replicas[i:i + 60]) >= down.replicas[i - 1] and down.unmet_tokens == 0


def test_no_capacity_for_a_pool_delays_cold_replicas_and_is_reported(capsys):
    """Rehearsal scales from zero: with no h200 node until 20:10, chat has nothing for the opening."""
    assert cli.main(["simulate", "rehearsal", "--step", "30", "--no-capacity", "h200",
                     "--no-capacity-minutes", "760"]) == 1
    out = capsys.readouterr().out
    assert "fault: no capacity for pool h200 from the start to 20:10" in out
    for phase in ("prefill", "decode"):
        chat = next(line for line in out.splitlines() if line.startswith(f"chat-{phase} "))
        assert chat.endswith("OVER SLO") and "greetings" in out


@pytest.mark.parametrize("args, line", [
    (["--lose-zone", "cn-north-9z", "--at", "21:40"],
     "--lose-zone: --lose-zone: expected a zone of the stack's clusters (us-east-1a, us-east-1b, us-east-1c, "
     "us-east-2a, us-east-2b, us-east-2c, us-west-2a, us-west-2b, us-west-2c); found 'cn-north-9z'"),
    (["--lose-zone", "us-east-1a", "--at", "lunch"],
     "--at: --at: expected a moment (opening, red-packet-1, red-packet-2, red-packet-3, countdown), a local HH:MM "
     "or YYYY-MM-DDTHH:MM up to the window's end; found 'lunch'"),
    (["--prometheus-down", "21:40", "--down-minutes", "0"],
     "--down-minutes: --down-minutes: expected a positive number of minutes; found 0.0"),
])
def test_bad_fault_flags_exit_2_with_one_line(args, line, capsys):
    assert cli.main(["simulate", "broadcast", *args]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [line]
