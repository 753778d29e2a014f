"""Policy checks (peaknight/review/policy.py): both stacks pass; each check fails a bad object and names
it; the Pulumi policy pack (policy/) runs the same checks on preview-shaped resources."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import analyzer_pb2_grpc

import nights
from peaknight.review import policy
from peaknight.builders.objects import Obj

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "policy"))
import peaknight_policies  # noqa: E402  (the pack's module, importable without the Pulumi CLI)
from pulumi_policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions, StackValidationArgs  # noqa: E402


def _cluster(stack: str) -> tuple[policy.Context, str, list[Obj]]:
    objects = nights.objects(stack)
    first = objects.clusters[0]
    return (policy.Context(objects.spec, objects.plan), first.cluster.name,
            [o for u in first.units for o in u.objects])


def _edit(objs: list[Obj], kind: str, change: Callable[[dict[str, Any]], None], name: str | None = None,
          **options: Any) -> tuple[list[Obj], str]:
    """A copy of `objs` with the first `kind` (named `name`) changed; returns it and its description."""
    out, target = [], None
    for obj in objs:
        if target is None and obj.kind == kind and name in (None, obj.name):
            manifest = copy.deepcopy(obj.manifest)
            change(manifest)
            obj = Obj(manifest, options.get("protect", obj.protect), obj.ignore_changes)
            target = policy.describe(obj)
        out.append(obj)
    assert target, f"no {kind} {name or ''}"
    return out, target


def _pod(manifest: dict[str, Any]) -> dict[str, Any]:
    return policy.pod_specs(manifest)[0][1]


def _violations(stack: str, check: str, objs: list[Obj] | None = None) -> list[policy.Violation]:
    ctx, cluster, rendered = _cluster(stack)
    return policy.check_cluster(ctx, cluster, objs if objs is not None else rendered, only=[check])


def test_both_stacks_pass_every_check(stack_name: str) -> None:
    assert policy.check_event(nights.objects(stack_name)) == []


def _only(violations: list[policy.Violation], target: str, *fragments: str) -> None:
    assert violations, "expected a violation"
    assert {v.obj for v in violations} == {target}
    text = "\n".join(str(v) for v in violations)
    for fragment in fragments:
        assert fragment in text


def test_gpu_container_without_limit() -> None:
    objs, target = _edit(_cluster("broadcast")[2], "Deployment",
                         lambda m: _pod(m)["containers"][0]["resources"]["limits"].pop("nvidia.com/gpu"), name="greetings-s0")
    _only(_violations("broadcast", "gpu-limits-and-toleration", objs), target,
          "container 'engine' requests nvidia.com/gpu without a limit")


def test_gpu_pod_without_toleration() -> None:
    objs, target = _edit(_cluster("broadcast")[2], "LeaderWorkerSet", lambda m: _pod(m).pop("tolerations"))
    _only(_violations("broadcast", "gpu-limits-and-toleration", objs), target,
          "spec.leaderWorkerTemplate.leaderTemplate.spec: GPU pod does not tolerate the taint nvidia.com/gpu")


def test_deployment_without_pdb() -> None:
    objs = [o for o in _cluster("broadcast")[2] if not (o.kind == "PodDisruptionBudget" and o.name == "greetings")]
    # One PDB spans greetings' 8 picker shards (builders/shards.py): without it, none has one.
    violations = _violations("broadcast", "pdb-per-workload", objs)
    assert {v.obj for v in violations} == {f"Deployment gala-2026-inference/greetings-s{i}" for i in range(8)}
    assert all("no PodDisruptionBudget selects its pods" in str(v) for v in violations)


def test_mutable_tag_in_broadcast_but_not_in_rehearsal() -> None:
    untag = lambda m: _pod(m)["containers"][0].update(image="vllm/vllm-openai:v0.11.0")  # noqa: E731
    objs, target = _edit(_cluster("broadcast")[2], "Deployment", untag)
    _only(_violations("broadcast", "immutable-images", objs), target, "image 'vllm/vllm-openai:v0.11.0' is a mutable tag")
    assert _violations("rehearsal", "immutable-images", _edit(_cluster("rehearsal")[2], "Deployment", untag)[0]) == []


@pytest.mark.parametrize("kind, change, fragment", [
    ("Deployment", lambda m: _pod(m)["containers"][0]["securityContext"].update(privileged=True), "is privileged"),
    ("Deployment", lambda m: _pod(m)["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
     "does not set allowPrivilegeEscalation: false"),
    ("Deployment", lambda m: _pod(m)["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
     "volume 'host' is a hostPath"),
    ("Deployment", lambda m: _pod(m).update(hostNetwork=True), "hostNetwork is true"),
    ("Deployment", lambda m: (_pod(m)["securityContext"].pop("runAsNonRoot"),
                              _pod(m)["containers"][0]["securityContext"].pop("runAsNonRoot")), "may run as root"),
    ("Namespace", lambda m: m["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "baseline"}),
     "pod-security.kubernetes.io/enforce is 'baseline', expected 'restricted'"),
])
def test_restricted_pod_security(kind: str, change: Callable, fragment: str) -> None:
    objs, target = _edit(_cluster("rehearsal")[2], kind, change)
    _only(_violations("rehearsal", "restricted-pod-security", objs), target, fragment)


def test_a_warm_gate_that_outranks_serving_is_reported() -> None:
    _, _, objs = _cluster("broadcast")
    warm = next(o for o in objs if o.kind == "PriorityClass" and o.name.endswith("-warm"))

    def raise_warm(m: dict[str, Any]) -> None:
        m["value"] = 950_000   # above the extras' 900,000, below the assistant's 1,000,000
    bad, _ = _edit(objs, "PriorityClass", raise_warm, name=warm.name)
    violations = _violations("broadcast", "serving-outranks-warm-gate", bad)
    assert violations and {v.obj for v in violations} == {
        # greetings: 8 picker shards, each its servers and its picker (builders/shards.py)
        *(f"Deployment gala-2026-inference/greetings-s{i}{epp}" for i in range(8) for epp in ("", "-epp")),
        "LeaderWorkerSet gala-2026-inference/deep-think-prefill", "LeaderWorkerSet gala-2026-inference/deep-think-decode",
        "Deployment gala-2026-inference/deep-think-router",
        "Deployment gala-2026-edge/gala-live", "StatefulSet gala-2026-edge/gala-live-shield"}
    assert "does not outrank warm-gate DaemonSet gala-2026-inference/prepull-" in str(violations[0])
    assert _violations("broadcast", "serving-outranks-warm-gate") == []


def test_load_balancer_without_source_ranges() -> None:
    objs, target = _edit(_cluster("rehearsal")[2], "Service", lambda m: m["spec"].update(type="LoadBalancer"))
    _only(_violations("rehearsal", "load-balancer-source-ranges", objs), target, "without spec.loadBalancerSourceRanges")
    fixed, _ = _edit(objs, "Service", lambda m: m["spec"].update(loadBalancerSourceRanges=["10.0.0.0/8"]))
    assert _violations("rehearsal", "load-balancer-source-ranges", fixed) == []


def test_broadcast_pool_unprotected() -> None:
    objs, target = _edit(_cluster("broadcast")[2], "NodePool", lambda m: None, protect=False)
    _only(_violations("broadcast", "broadcast-pools-frozen", objs), target, "is not protected")


def test_broadcast_pool_budget_open_over_the_window() -> None:
    objs, target = _edit(_cluster("broadcast")[2], "NodePool",
                         lambda m: m["spec"]["disruption"].update(budgets=[{"nodes": "10%"}]))
    _only(_violations("broadcast", "broadcast-pools-frozen", objs), target,
          "disruption budgets do not close the window: expected {'nodes': '0', 'schedule': '30 11 16 2 *', "
          "'duration': '5h15m'}")


@pytest.mark.parametrize("stack, index, kind, field", [("broadcast", 0, "ScaledObject", "maxReplicaCount"),
                                                     ("rehearsal", -1, "HorizontalPodAutoscaler", "maxReplicas")])
def test_autoscaler_max_under_the_plans_peak(stack: str, index: int, kind: str, field: str) -> None:
    """The rendered autoscaler of `chat`'s decode groups (KEDA, or the plain HPA of a cluster without KEDA), one short."""
    objects = nights.objects(stack)
    cluster = objects.clusters[index]
    ctx = policy.Context(objects.spec, objects.plan)
    objs = [o for u in cluster.units for o in u.objects]
    peak = int(objects.plan.cluster(cluster.cluster.name).model("chat-decode").replicas.value)
    low, target = _edit(objs, kind, lambda m: m["spec"].update({field: peak - 1}), name="chat-decode")
    _only(policy.check_cluster(ctx, cluster.cluster.name, low, only=["autoscaler-covers-peak"]), target,
          f"{field} {peak - 1} is below the plan's peak of {peak} replicas for 'chat-decode'")
    assert policy.check_cluster(ctx, cluster.cluster.name, objs, only=["autoscaler-covers-peak"]) == []


def test_a_picker_shards_autoscaler_under_its_share_of_the_peak() -> None:
    """broadcast greetings' 8 shard autoscalers (builders/shards.py): each must reach its share of
    the workload's peak; one capped under it is reported, naming the shard."""
    objects = nights.objects("broadcast")
    cluster = objects.clusters[0]
    ctx = policy.Context(objects.spec, objects.plan)
    objs = [o for u in cluster.units for o in u.objects]
    peak = int(objects.plan.cluster(cluster.cluster.name).model("greetings").replicas.value)
    share = peak // 8 + (1 if 3 < peak % 8 else 0)
    low, target = _edit(objs, "ScaledObject", lambda m: m["spec"].update({"maxReplicaCount": share - 1}),
                        name="greetings-s3")
    _only(policy.check_cluster(ctx, cluster.cluster.name, low, only=["autoscaler-covers-peak"]), target,
          f"maxReplicaCount {share - 1} is below the plan's peak of {peak} replicas for 'greetings', shard 3 of 8: {share}")
    assert policy.check_cluster(ctx, cluster.cluster.name, objs, only=["autoscaler-covers-peak"]) == []


# ---- the Pulumi policy pack ----------------------------------------------------------------

def _resources(stack: str, objs: list[Obj], cluster: str) -> list[PolicyResource]:
    """The objects as the policy engine hands them to a stack policy during `pulumi preview`."""
    out = []
    for obj in objs:
        api = obj.manifest["apiVersion"]
        typ = f"kubernetes:{'core/' + api if '/' not in api else api}:{obj.kind}"
        name = f"{cluster}/{obj.key}"
        opts = PolicyResourceOptions(obj.protect, list(obj.ignore_changes), None, [], PolicyCustomTimeouts(0, 0, 0), [])
        out.append(PolicyResource(typ, copy.deepcopy(obj.manifest), f"urn:pulumi:{stack}::peaknight::{typ}::{name}",
                                  name, opts, None, None, [], {}))
    return out


def _run_pack(stack: str, objs: list[Obj], cluster: str) -> list[tuple[str, str | None]]:
    reported: list[tuple[str, str | None]] = []
    args = StackValidationArgs(_resources(stack, objs, cluster))
    for p in peaknight_policies.POLICIES:
        p.validate(args, lambda message, urn=None: reported.append((message, urn)))
    return reported


def test_pack_has_one_policy_per_check() -> None:
    assert [p.name for p in peaknight_policies.POLICIES] == list(policy.CHECKS)


def test_pack_passes_a_clean_preview(stack_name: str) -> None:
    ctx, cluster, objs = _cluster(stack_name)
    assert _run_pack(stack_name, objs, cluster) == []


def test_pack_reports_a_violation_against_the_resource() -> None:
    _, cluster, objs = _cluster("broadcast")
    bad, target = _edit(objs, "NodePool", lambda m: None, protect=False)
    reported = _run_pack("broadcast", bad, cluster)
    assert len(reported) == 1
    message, urn = reported[0]
    assert f"{cluster}: {target}: broadcast node pool is not protected" in message
    assert urn == f"urn:pulumi:broadcast::peaknight::kubernetes:karpenter.sh/v1:NodePool::{cluster}/nodepool.h200"


def test_pack_serves_its_policies_to_the_engine() -> None:
    """Start policy/__main__.py as the Pulumi CLI would and ask it, over gRPC, what it enforces."""
    proc = subprocess.Popen([sys.executable, "__main__.py"], cwd=ROOT / "policy", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        port = int(proc.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = analyzer_pb2_grpc.AnalyzerStub(channel).GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert info.name == "peaknight"
    assert [p.name for p in info.policies] == list(policy.CHECKS)
