"""PriorityClasses per tier and the inference namespace's GPU quota: a shortage preempts the warm
gate first, then the extras, and the quota holds exactly what the plan can ask for."""
from __future__ import annotations

import pytest

import nights


def _cluster(stack: str):
    objects = nights.objects(stack)
    first = objects.clusters[0]
    return objects, first, [o for u in first.units for o in u.objects]


@pytest.mark.parametrize("stack, values, preempting", [
    ("broadcast", {"assistant": 1_000_000, "serving": 900_000, "warm": 100_000}, {"assistant", "serving"}),
    ("rehearsal", {"assistant": 10_000, "serving": 9_000, "warm": 1_000}, set()),
])
def test_one_class_per_tier_in_order(stack: str, values: dict[str, int], preempting: set[str]) -> None:
    objects, _, objs = _cluster(stack)
    prefix = objects.spec.event.name + "-"
    classes = {o.name.removeprefix(prefix): o.manifest for o in objs if o.kind == "PriorityClass"}
    assert {k: c["value"] for k, c in classes.items()} == values
    assert {k for k, c in classes.items() if c["preemptionPolicy"] == "PreemptLowerPriority"} == preempting
    assert not any(c["globalDefault"] for c in classes.values())


def test_each_pod_gets_its_tiers_class() -> None:
    _, _, objs = _cluster("broadcast")
    by_name = {}
    for o in objs:
        for key in ("template", "leaderWorkerTemplate"):
            spec = o.manifest.get("spec", {}).get(key)
            if spec:
                pod = spec["spec"] if key == "template" else spec["leaderTemplate"]["spec"]
                by_name[f"{o.kind}/{o.name}"] = pod.get("priorityClassName")
    # Everything on the assistant's request path: its prefill and decode groups and its router.
    assert {by_name[n] for n in ("LeaderWorkerSet/chat-prefill", "LeaderWorkerSet/chat-decode",
                                 "Deployment/chat-router")} == {"gala-2026-assistant"}
    assert by_name["Deployment/greetings-s0"] == by_name["Deployment/greetings-s0-epp"] == "gala-2026-serving"
    assert by_name["LeaderWorkerSet/deep-think-prefill"] == by_name["LeaderWorkerSet/deep-think-decode"] == "gala-2026-serving"
    assert by_name["Deployment/gala-live"] == "gala-2026-serving"
    assert {v for k, v in by_name.items() if k.startswith("DaemonSet/prepull-")} == {"gala-2026-warm"}


def test_the_gpu_quota_is_every_model_at_its_ceiling_plus_a_wave() -> None:
    objects, cluster, objs = _cluster("broadcast")
    quota = next(o.manifest for o in objs if o.kind == "ResourceQuota")
    plan = objects.plan.cluster(cluster.cluster.name)
    expected = sum(int(m.max_replicas.value + m.surge.value) * m.gpus_per_replica for m in plan.models)
    assert quota["metadata"]["namespace"] == "gala-2026-inference"
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": str(expected)}
    # Every GPU the rendered workloads can ask for at their autoscalers' ceilings fits under it.
    assert expected >= sum(int(m.max_replicas.value) * m.gpus_per_replica for m in plan.models)
