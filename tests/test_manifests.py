"""Rendered objects: node pools and inference services carry the fields the night depends on."""
from __future__ import annotations

import datetime as dt
import math

import pytest

from peaknight.plan import capacity
from peaknight.spec import config
from peaknight.engines import base as engines
from peaknight.builders import event
from peaknight.builders import inference
from peaknight.spec import profiles
from peaknight.builders.objects import Obj


@pytest.fixture(scope="module")
def built():
    return {name: event.build(config.load_stack(name).spec) for name in ("broadcast", "rehearsal")}


def objects_of(ev, cluster: str) -> dict[str, Obj]:
    c = next(c for c in ev.clusters if c.cluster.name == cluster)
    return {o.key: o for u in c.units for o in u.objects}


def first(ev) -> tuple[str, dict[str, Obj]]:
    name = ev.clusters[0].cluster.name
    return name, objects_of(ev, name)


def test_node_pool_limits_budgets_capacity_types_and_taints(built):
    for stack, ev in built.items():
        name, objs = first(ev)
        for pool in ev.spec.gpu_pools:
            np_ = objs[f"nodepool.{pool.name}"]
            spec = np_.manifest["spec"]
            plan = ev.plan.cluster(name).pool(pool.name)
            assert spec["limits"] == {"nvidia.com/gpu": str(int(plan.gpu_limit.value))}
            reqs = {r["key"]: r["values"] for r in spec["template"]["spec"]["requirements"]}
            # Only the pool's types the cluster's region sells (first clusters: us-east-1, no p5e).
            assert ev.spec.clusters[0].region == "us-east-1"
            assert reqs["node.kubernetes.io/instance-type"] == [t for t in pool.instance_types if t != "p5e.48xlarge"]
            assert reqs["karpenter.sh/capacity-type"] == (["reserved", "on-demand"] if stack == "broadcast"
                                                           else ["spot", "on-demand"])
            assert spec["template"]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true",
                                                           "effect": "NoSchedule"}]
            # The nodes carry the kit's pool label: what the pool's pods select.
            assert spec["template"]["metadata"]["labels"]["peaknight.io/pool"] == pool.name
            assert spec["template"]["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                                "name": pool.name}
            assert f"ec2nodeclass.{pool.name}" in objs
            freeze, normal = spec["disruption"]["budgets"]
            assert normal == {"nodes": "10%"}
            assert np_.protect is (stack == "broadcast")
            # The freeze starts freezeLeadMinutes (default 60) before the window's start, in UTC
            # (Asia/Shanghai is UTC+8), and lasts to the window's end: 5h15m + 1h.
            start = ev.spec.event.window.start - dt.timedelta(hours=8, minutes=60)
            assert freeze == {"nodes": "0", "schedule": f"{start.minute} {start.hour} {start.day} {start.month} *",
                              "duration": "6h15m"}


def test_inference_deployment_is_sized_and_hardened_from_the_plan(built):
    ev = built["broadcast"]
    name, objs = first(ev)
    for model in ev.spec.models:
        mplan = ev.plan.cluster(name).model(model.name)
        kind = "deployment" if mplan.nodes_per_replica == 1 else "leaderworkerset"
        workload = objs[f"{kind}.gala-2026-inference.{model.name}"]
        assert workload.ignore_changes == ("spec.replicas",)
        spec = workload.manifest["spec"]
        assert spec["replicas"] == mplan.floor_replicas.value
        pod = (spec["template"] if kind == "deployment" else spec["leaderWorkerTemplate"]["leaderTemplate"])["spec"]
        c = pod["containers"][0]
        gpus = mplan.gpus_per_replica // mplan.nodes_per_replica
        assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)
        tp_flag = "--tensor-parallel-size" if model.engine.value == "vllm" else "--tp"
        assert c["command"][c["command"].index(tp_flag) + 1] == str(mplan.gpus_per_replica)
        probe = c["startupProbe"]
        load = profiles.load().model_classes[model.model_class].startup_seconds
        assert probe["periodSeconds"] * probe["failureThreshold"] >= 2 * load
        assert c["readinessProbe"]["httpGet"]["path"] == "/v1/models"
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        drain = c["lifecycle"]["preStop"]["exec"]["command"]
        assert drain[:2] == ["python3", "-c"] and engines.info(model).waiting_metric in drain[2]
        assert pod["terminationGracePeriodSeconds"] > inference.DRAIN_SECONDS
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
        assert volumes["weights"]["persistentVolumeClaim"]["claimName"] == f"{model.name}-weights"
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        # By the kit's label, which the pool's provisioner puts on its nodes (not a provisioner's own).
        assert term == [{"matchExpressions": [{"key": "peaknight.io/pool", "operator": "In",
                                               "values": [model.pool]}]}]
        assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
        assert pod["priorityClassName"] == "gala-2026-broadcast-critical"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert model.image.split("@")[1].startswith("sha256:") and c["image"] == model.image


def test_a_replica_bigger_than_a_node_is_a_leader_worker_set(built):
    ev = built["broadcast"]
    name, objs = first(ev)
    lws = objs["leaderworkerset.gala-2026-inference.deep-think"].manifest["spec"]
    assert lws["leaderWorkerTemplate"]["size"] == 2
    worker = lws["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    assert "--node-rank" in worker["command"] and "startupProbe" not in worker
    assert objs["service.gala-2026-inference.deep-think"].manifest["spec"]["selector"][
        "leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    assert objs["poddisruptionbudget.gala-2026-inference.deep-think"].manifest["spec"]["maxUnavailable"] == 2


def test_service_monitor_route_and_pdb_per_model(built):
    ev = built["rehearsal"]
    name, objs = first(ev)
    for model in ev.spec.models:
        sm = objs[f"servicemonitor.gala-2026-rehearsal-inference.{model.name}"].manifest["spec"]
        assert sm["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
        svc = objs[f"service.gala-2026-rehearsal-inference.{model.name}"].manifest
        assert all(svc["metadata"]["labels"][k] == v for k, v in sm["selector"]["matchLabels"].items())
        route = objs[f"httproute.gala-2026-rehearsal-inference.{model.name}"].manifest["spec"]
        assert route["parentRefs"] == [{"name": "gala-2026-rehearsal-gateway"}]
        assert route["rules"][0]["matches"][0]["path"] == {"type": "PathPrefix", "value": f"/{model.name}"}
        assert route["rules"][0]["backendRefs"] == [{"name": model.name, "port": engines.PORT}]
        assert f"poddisruptionbudget.gala-2026-rehearsal-inference.{model.name}" in objs
        pvc = objs[f"persistentvolumeclaim.gala-2026-rehearsal-inference.{model.name}-weights"].manifest["spec"]
        weights = profiles.load().model_classes[model.model_class].weights_gib
        assert pvc["resources"]["requests"]["storage"] == f"{math.ceil(weights * 1.2)}Gi"
        pod = objs[f"{'leaderworkerset' if model.name == 'deep-think' else 'deployment'}."
                   f"gala-2026-rehearsal-inference.{model.name}"].manifest["spec"]
        assert "rehearsal" in str(pod)


def test_object_counts_equal_the_plan(built):
    for ev in built.values():
        for c in ev.clusters:
            kinds = [o.kind for u in c.units for o in u.objects]
            n_models = len(ev.plan.cluster(c.cluster.name).models)
            assert kinds.count("NodePool") == len(ev.spec.gpu_pools) == kinds.count("EC2NodeClass")
            assert kinds.count("Deployment") + kinds.count("LeaderWorkerSet") >= n_models
            for k in ("Service", "PodDisruptionBudget", "ServiceMonitor"):
                assert kinds.count(k) >= n_models
            assert kinds.count("HTTPRoute") == n_models


def test_envelope_error_stops_the_build(tmp_path):
    from test_config import write_variant
    path = write_variant(tmp_path, lambda cfg: cfg.__setitem__("peaknight:scale", 5.0))
    with pytest.raises(capacity.EnvelopeError):
        event.build(config.load_stack(str(path)).spec)
