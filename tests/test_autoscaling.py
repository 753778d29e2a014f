"""Autoscaler and warm-gate manifests: targets, thresholds, cron floors, behaviour, schemas."""
from __future__ import annotations

import datetime as dt
import json
import math

import pytest

import nights
from peaknight.builders import autoscaling, shards
from peaknight.spec import config
from peaknight.builders import event
from peaknight.review import schema as k8s_schema
from peaknight.builders import warmup
from peaknight.plan import startup
from peaknight.spec.stack import Stage


@pytest.fixture(scope="module")
def built():
    return {name: nights.objects(name) for name in ("broadcast", "rehearsal")}


def _units(objects, cluster, component):
    c = next(c for c in objects.clusters if c.cluster.name == cluster)
    return {u.name: u for u in c.units if u.component == component}


def test_every_autoscaler_and_warm_gate_object_validates(built):
    distinct = {json.dumps(o.manifest, sort_keys=True): o.manifest for objects in built.values()
                for c in objects.clusters for u in c.units if u.component in ("Autoscaler", "WarmGate")
                for o in u.objects}
    assert {m["kind"] for m in distinct.values()} == {"ScaledObject", "HorizontalPodAutoscaler", "DaemonSet", "Job",
                                                "ServiceAccount", "PersistentVolume", "PersistentVolumeClaim"}
    for manifest in distinct.values():
        assert k8s_schema.validate(manifest) == []


def test_targets_deployment_or_leaderworkerset(built):
    units = _units(built["broadcast"], "gala-bj-01", "Autoscaler")
    # broadcast greetings: one autoscaler per picker shard (builders/shards.py), each on its Deployment.
    assert [o.manifest["spec"]["scaleTargetRef"] for o in units["greetings"].objects] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"greetings-s{i}"} for i in range(8)]
    # A disaggregated model: one autoscaler per group kind, each on its own LeaderWorkerSet.
    assert [o.manifest["spec"]["scaleTargetRef"] for o in units["deep-think"].objects] == [
        {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": f"deep-think-{phase}"}
        for phase in ("prefill", "decode")]


def test_broadcast_scaled_object_floors_threshold_and_held_floors(built):
    objects = built["broadcast"]
    spec, plan = objects.spec, objects.plan.cluster("gala-bj-01").model("chat-decode")
    so = _units(objects, "gala-bj-01", "Autoscaler")["chat"].objects[1].manifest["spec"]
    # Burst above the plan: ceil(peak x models[].burst), and the pool's GPU limit holds it.
    assert so["minReplicaCount"] == plan.floor_replicas.value
    assert so["maxReplicaCount"] == math.ceil(plan.replicas.value * 1.25) > plan.replicas.value
    pool = objects.plan.cluster("gala-bj-01").pool("h200")
    burst_nodes = (so["maxReplicaCount"] - plan.replicas.value) * plan.nodes_per_replica
    assert pool.gpu_limit.value >= (pool.nodes.value + burst_nodes) * 8
    prom, queue, kv, *crons = so["triggers"]
    assert prom["metadata"]["threshold"] == str(math.floor(plan.replica_tps.value * 0.85))
    # What saturates first: waiting requests against the queue one replica clears within the TTFT
    # objective (its completions at target utilisation, 1,000 tokens a request), and KV-cache use
    # against the same share of the replica the plan uses (plan/saturation.py).
    assert (queue["name"], kv["name"]) == ("queue", "kv-cache")
    # chat-decode: a 16-node decode group's share of the model's mix (derated for EFA, issue 24: 12),
    # 460 waiting requests, over its 128 DP ranks (each queues its own, and the trigger reads a server's mean over its ranks).
    replica_queue = math.floor(plan.replica_tps.value * 0.85 / 1000 * 2.0)
    assert (replica_queue, plan.topology.group.dp) == (460, 128)
    assert queue["metadata"]["threshold"] == f"{replica_queue / 128:g}" == "3.59375"
    assert kv["metadata"]["threshold"] == "0.85"
    # The engines' own names (vLLM 0.11.0: vllm/v1/metrics/loggers.py; SGLang 0.5.4, which chat runs),
    # read from the decode servers (their Service's label), averaged per server over its ranks.
    where = '{model_name="chat",namespace="gala-2026-inference",service="chat-decode"}'
    assert queue["metadata"]["query"].startswith(f"sum(avg by (pod) (vllm:num_requests_waiting{where}))")
    assert kv["metadata"]["query"].startswith(f"sum(avg by (pod) (vllm:kv_cache_usage_perc{where}))")
    assert "sglang:num_queue_reqs" in queue["metadata"]["query"] and "sglang:token_usage" in kv["metadata"]["query"]
    # The prefill groups scale on their own queue and KV cache, and on the tokens the decode servers count.
    pre = _units(objects, "gala-bj-01", "Autoscaler")["chat"].objects[0].manifest["spec"]["triggers"]
    assert 'service="chat-decode"' in pre[0]["metadata"]["query"]
    assert all('service="chat-prefill"' in t["metadata"]["query"] and "chat-decode" not in t["metadata"]["query"]
               for t in pre[1:3])
    # Only the token rate wakes a model from zero; an empty answer is no load for all three.
    assert [t["metadata"]["activationThreshold"] for t in (prom, queue, kv)] == ["1", "0", "0"]
    assert {t["metadata"]["ignoreNullValues"] for t in (prom, queue, kv)} == {"true"}
    assert [c["name"] for c in crons] == [m.name for m in spec.event.moments]
    # Opening at 20:00, cold lead 81 min (4,740 s ready, the node-cache fill's 3,600 s among them,
    # + 120 s slack): the floor rises at 18:39 and, in a broadcast, holds until the window ends at
    # 00:45 the next day.
    assert crons[0]["metadata"] == {"timezone": "Asia/Shanghai", "start": "39 18 16 2 *", "end": "45 0 17 2 *",
                                    "desiredReplicas": str(plan.replicas_for("opening"))}
    assert all(c["metadata"]["end"] == "45 0 17 2 *" for c in crons)
    down = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["selectPolicy"] == "Max" and down["stabilizationWindowSeconds"] == 3600


@pytest.mark.parametrize("stack", ["broadcast", "rehearsal"])
def test_a_missing_metric_and_a_failing_prometheus_get_different_answers(built, stack):
    """Empty answer (nothing scraped yet at first install): no load, the schedule's floors hold,
    never the peak. Failing Prometheus: after 3 failed reads hold the replicas running, at least
    the baseline floor (KEDA fallback.behavior currentReplicasIfHigher): blind, never down, never
    a jump to the peak."""
    objects = built[stack]
    cluster = objects.spec.clusters[0].name
    models = {m.name: m for m in objects.spec.models}
    # A sharded model's shards (builders/shards.py) as the one autoscaler they add up to.
    for name, manifest in (w for n, unit in _units(objects, cluster, "Autoscaler").items()
                           for w in shards.replayed(unit, models[n])):
        so = manifest["spec"]
        if manifest["kind"] != "ScaledObject":
            continue
        plan = objects.plan.cluster(cluster).model(name)
        assert so["triggers"][0]["metadata"]["ignoreNullValues"] == "true"
        assert so["fallback"] == {"failureThreshold": 3, "replicas": int(plan.floor_replicas.value),
                                  "behavior": "currentReplicasIfHigher"}
        # Never the peak, unless the baseline already needs the peak's groups (one decode group).
        assert so["fallback"]["replicas"] < plan.replicas.value or plan.floor_replicas.value == plan.replicas.value


def test_lead_is_cold_only_when_a_moment_needs_new_nodes(built):
    spec = built["rehearsal"].spec
    model = next(m for m in spec.models if m.name == "chat")
    plan = built["rehearsal"].plan.cluster("reh-bj-01").model("chat-prefill")
    leads = {name: lead.value for name, _, _, _, lead in autoscaling.moment_floors(spec, model, plan)}
    # Cold: node batch + ready + driver + image pull + node-cache fill (policy.weightsFillMinutes) + load.
    assert startup.ready_seconds(spec.policy, model, warm=False).value == 10 + 110 + 0 + 20 * 27 + 60 * 60 + 480
    assert leads == {"opening": 81 * 60, "red-packet-1": 81 * 60, "red-packet-2": 81 * 60,
                     "red-packet-3": 10 * 60, "countdown": 10 * 60}


def test_rehearsal_scales_to_zero_outside_a_window_cron(built):
    objects = built["rehearsal"]
    assert objects.spec.policy.stage is Stage.REHEARSAL
    so = _units(objects, "reh-bj-01", "Autoscaler")["chat"].objects[0].manifest["spec"]
    window = next(t for t in so["triggers"] if t.get("name") == "window")
    assert so["minReplicaCount"] == 0
    assert window["metadata"]["start"] == "9 18 9 2 *" and window["metadata"]["end"] == "45 0 10 2 *"
    assert so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_hpa_cluster_holds_the_highest_moment_floor(built):
    objects = built["rehearsal"]
    plan = objects.plan.cluster("reh-hk-01").model("chat-decode")
    hpa = _units(objects, "reh-hk-01", "Autoscaler")["chat"].objects[1].manifest
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["minReplicas"] == max(plan.replicas_for(m.name) for m in objects.spec.event.moments)
    assert "cannot pre-scale" in hpa["metadata"]["annotations"]["peaknight.io/limitation"]


def test_warm_gate_prepulls_on_gpu_nodes_and_stages_before_the_first_prescale(built):
    objects = built["broadcast"]
    gate = next(u for u in objects.clusters[0].units if u.component == "WarmGate")
    ds = next(o.manifest for o in gate.objects if o.name == "prepull-h200")
    pod = ds["spec"]["template"]["spec"]
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu"}
    assert [c["image"] for c in pod["initContainers"]] == [objects.spec.models[0].image]
    assert pod["containers"][0]["image"] == warmup.PAUSE_IMAGE
    job = next(o.manifest for o in gate.objects if o.name == "stage-chat-z0")
    assert job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "chat-weights-z0"
    deadline = warmup.must_finish(objects.spec, objects.spec.models)
    assert deadline == dt.datetime(2026, 2, 16, 18, 9)   # window 19:30 - 81 min cold lead
    assert deadline.isoformat() in job["metadata"]["annotations"]["peaknight.io/must-finish-before"]


def test_staging_is_not_awaited_by_pulumi_and_the_wait_is_explicit(built):
    """A multi-hour staging Job would outlast pulumi-kubernetes' Job wait (10 min by default) and
    fail `pulumi up`: it carries pulumi.com/skipAwait, and its own annotation is the wait the
    runbook runs, bounded by the Job's deadline. Weights are staged at the pinned revision."""
    objects = built["broadcast"]
    gate = next(u for u in objects.clusters[0].units if u.component == "WarmGate")
    job = next(o.manifest for o in gate.objects if o.name == "stage-chat-z0")
    notes = job["metadata"]["annotations"]
    assert notes["pulumi.com/skipAwait"] == "true"
    assert notes["peaknight.io/wait"] == ("kubectl wait --for=condition=complete job/stage-chat-z0 -n gala-2026-weights "
                                          f"--timeout={job['spec']['activeDeadlineSeconds']}s")
    # The revision is the script's last argument (test_weights_from runs the script).
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "0" * 40


def test_after_the_night_nothing_scheduled_remains(tmp_path):
    """KEDA's cron and Karpenter's budget schedule have no year: with event.over the kit renders
    no cron trigger and no freeze, and the policy checks accept it."""
    from peaknight.review import policy
    from test_config import write_variant

    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:event"].update(over=True))
    spec = config.load_stack(str(path)).spec
    objects = event.build(spec)
    manifests = [o.manifest for c in objects.clusters for u in c.units for o in u.objects]
    scaled = [m for m in manifests if m["kind"] == "ScaledObject"]
    assert scaled and all(t["type"] == "prometheus" for m in scaled for t in m["spec"]["triggers"])
    pools = [m for m in manifests if m["kind"] == "NodePool"]
    assert pools and all(m["spec"]["disruption"]["budgets"] == [{"nodes": "10%"}] for m in pools)
    assert policy.check_event(objects) == []
