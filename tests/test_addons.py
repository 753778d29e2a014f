"""Cluster add-ons: pinned charts, the Releases the program declares, and the CRD ordering.

The mock tests run the program (pulumi_harness) and assert on what it recorded, after the
`@pulumi.runtime.test` function ran, so a missing Release or dependency fails them.
"""
from __future__ import annotations

import re

import nights
from peaknight.addons import releases as addons
from peaknight.provisioners import karpenter
from peaknight.pulumi.addons import RELEASE_TYPE
from pulumi_harness import normalise, run_program
from test_config import write_variant

EXACT = re.compile(r"^v?\d+\.\d+\.\d+$")


def releases_of(mocks, cluster: str) -> dict[str, object]:
    return {r.name: r for r in mocks.resources if r.typ == RELEASE_TYPE and r.name.startswith(cluster + "/")}


def expected_releases(stack: str) -> dict[str, dict[str, addons.AddonRelease]]:
    """The releases of every cluster the session's program run (`runs`) covers."""
    objects = nights.program_objects(stack)
    return {c.cluster.name: {f"{c.cluster.name}/{r.name}": r for r in addons.build(
                objects.spec, objects.plan.cluster(c.cluster.name), c.cluster,
                [obj for unit in c.units for obj in unit.objects])}
            for c in objects.clusters}


def kind_of(typ: str) -> str:
    return typ.rsplit(":", 1)[1]


def test_every_pinned_chart_has_an_exact_version():
    pinned = [addons.chart(a) for a in addons.all_addons()]
    assert {c.addon for c in pinned} == {addons.GPU_OPERATOR, karpenter.ADDON, addons.KEDA, addons.LWS,
                                         addons.PROMETHEUS_STACK, addons.PROMETHEUS_ADAPTER, addons.EFA_DEVICE_PLUGIN,
                                         addons.AI_GATEWAY, addons.AI_GATEWAY_CRDS}
    for chart in pinned:
        assert EXACT.match(chart.version), f"charts/{chart.addon}/chart.yaml: version {chart.version!r} is not exact"
        assert chart.repository.startswith(("https://", "oci://")), chart.addon


def test_every_enabled_addon_is_a_release_with_its_pin_and_values(runs, stack_name):
    mocks = runs[stack_name]
    protect = stack_name == "broadcast"
    for cluster, expected in expected_releases(stack_name).items():
        declared = releases_of(mocks, cluster)
        assert sorted(declared) == sorted(expected), cluster
        for name, release in expected.items():
            r = declared[name]
            pinned = release.chart
            assert r.inputs["chart"] == pinned.ref and r.inputs["version"] == pinned.version
            assert r.inputs["namespace"] == pinned.namespace and r.inputs["createNamespace"] is True
            assert r.inputs["atomic"] is True and r.inputs["skipAwait"] is False
            assert r.inputs.get("repositoryOpts") == (None if pinned.oci else {"repo": pinned.repository})
            assert r.inputs.get("values", {}) == normalise(release.values), name
            assert r.protect is protect and r.provider == cluster and r.parent == f"{cluster}/addons"


def test_release_values_follow_the_night(runs):
    """Spot checks against hand-worked numbers, not the functions that made them."""
    for stack, keda_replicas in (("broadcast", 2), ("rehearsal", 1)):
        for cluster, declared in ((c, releases_of(runs[stack], c)) for c in expected_releases(stack)):
            values = {name.split("/", 1)[1]: r.inputs.get("values", {}) for name, r in declared.items()}
            # Window 19:30-00:45 is 5 h 15 min: one day, plus two weeks to the review.
            spec = values["kube-prometheus-stack"]["prometheus"]["prometheusSpec"]
            assert (spec["scrapeInterval"], spec["retention"]) == ("15s", "15d")
            assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False
            assert values["gpu-operator"]["driver"] == {"enabled": False}  # baked into the AMI
            assert values["karpenter"]["settings"]["clusterName"] == cluster
            assert "lws" in values  # deep-think spans two nodes in every cluster
            if cluster == "reh-hk-01":
                assert "keda" not in values  # its autoscaler is a plain HPA
            else:
                keda = values["keda"]
                assert keda["operator"]["replicaCount"] == keda["metricsServer"]["replicaCount"] == keda_replicas
                assert keda["resources"]["operator"]["requests"] == {"cpu": "100m", "memory": "100Mi"}
    assert releases_of(runs["broadcast"], "gala-bj-01")["gala-bj-01/kube-prometheus-stack"].inputs["values"][
        "prometheus"]["prometheusSpec"]["replicas"] == 2  # values-broadcast.yaml


def reads_adapter_metrics(r) -> bool:
    """An HPA with a Pods or External metric: only a metrics adapter serves those."""
    return kind_of(r.typ) == "HorizontalPodAutoscaler" and any(
        m["type"] in ("Pods", "External") for m in r.inputs["spec"]["metrics"])


def test_objects_depend_on_the_release_that_brings_their_crd_or_metrics_api(runs, stack_name):
    mocks = runs[stack_name]
    expected = expected_releases(stack_name)
    checked = set()
    for r in mocks.resources:
        if not r.typ.startswith("kubernetes:") or r.typ == RELEASE_TYPE:
            continue
        cluster = r.name.split("/")[0]
        by_addon = {rel.addon: name for name, rel in expected[cluster].items()}
        addon = addons.CRD_ADDON.get(kind_of(r.typ)) or (addons.PROMETHEUS_ADAPTER if reads_adapter_metrics(r) else None)
        assert r.depends_on == ((by_addon[addon],) if addon else ()), r.name
        if addon:
            checked.add(kind_of(r.typ))
    assert {"NodePool", "EC2NodeClass", "ScaledObject", "LeaderWorkerSet", "ServiceMonitor",
            "PrometheusRule", "HorizontalPodAutoscaler"} <= checked


def test_releases_that_create_servicemonitors_wait_for_the_prometheus_stack(runs):
    declared = releases_of(runs["rehearsal"], "reh-bj-01")
    for name in ("gpu-operator", "karpenter", "keda"):
        assert declared[f"reh-bj-01/{name}"].depends_on == ("reh-bj-01/kube-prometheus-stack",), name
    assert declared["reh-bj-01/kube-prometheus-stack"].depends_on == ()


def test_a_disabled_addon_is_absent_and_nothing_depends_on_it(tmp_path):
    def switch_off(cfg):
        cfg["peaknight:clusters"][0]["addons"] = {"prometheusStack": False}
        cfg["peaknight:clusters"][0]["provisioner"] = {"kind": "karpenter-aws", "install": False}
    mocks = run_program(write_variant(tmp_path, switch_off, base="rehearsal", clusters=["reh-bj-01", "reh-bj-02"]))
    gone = {"reh-bj-01/karpenter", "reh-bj-01/kube-prometheus-stack"}
    assert not gone & set(releases_of(mocks, "reh-bj-01"))
    assert {"reh-bj-01/gpu-operator", "reh-bj-01/keda", "reh-bj-01/lws"} <= set(releases_of(mocks, "reh-bj-01"))
    assert {"reh-bj-02/karpenter", "reh-bj-02/kube-prometheus-stack"} <= set(releases_of(mocks, "reh-bj-02"))
    in_cluster = [r for r in mocks.resources if r.name.startswith("reh-bj-01/")]
    assert not [r.name for r in in_cluster if gone & set(r.depends_on)]
    node_pools = [r for r in in_cluster if kind_of(r.typ) == "NodePool"]
    assert node_pools and all(r.depends_on == () for r in node_pools)  # the CRD is assumed present


def test_the_ai_gateway_comes_with_every_route_to_an_inference_pool():
    """Issue 24, finding 9: an HTTPRoute -> InferencePool resolves only through Envoy AI Gateway's
    extension server. Where a route sends to a pool the cluster gets the pinned controller after its
    CRDs; where none does, neither; switched off (`addons.aiGateway: false`), the operator's own."""
    import dataclasses

    objects = nights.objects("broadcast")
    c = objects.clusters[0]
    objs = [o for u in c.units for o in u.objects]
    plan = objects.plan.cluster(c.cluster.name)
    assert [o.name for o in objs if addons.routes_to_pool(o)] == ["greetings"]   # the colocated model's route
    by_addon = {r.addon: r for r in addons.build(objects.spec, plan, c.cluster, objs)}
    controller, crds = by_addon[addons.AI_GATEWAY], by_addon[addons.AI_GATEWAY_CRDS]
    assert (controller.chart.ref, controller.chart.version) == ("oci://docker.io/envoyproxy/ai-gateway-helm", "v1.1.0")
    assert (crds.chart.ref, crds.chart.version) == ("oci://docker.io/envoyproxy/ai-gateway-crds-helm", "v1.1.0")
    assert controller.chart.namespace == crds.chart.namespace == "envoy-ai-gateway-system"
    assert controller.needs == (addons.AI_GATEWAY_CRDS,) and crds.needs == ()
    # Two controllers under leader election where the night survives a zone's loss, as KEDA's.
    assert controller.values["controller"] == {"replicaCount": 2, "leaderElection": {"enabled": True}}
    without = [o for o in objs if not addons.routes_to_pool(o)]
    assert not {addons.AI_GATEWAY, addons.AI_GATEWAY_CRDS} & {r.addon for r in addons.build(objects.spec, plan, c.cluster, without)}
    off = dataclasses.replace(c.cluster, addons=dataclasses.replace(c.cluster.addons, ai_gateway=False))
    assert not {addons.AI_GATEWAY, addons.AI_GATEWAY_CRDS} & {r.addon for r in addons.build(objects.spec, plan, off, objs)}


def test_gpu_operator_installs_the_newest_driver_the_pools_need_when_the_image_has_none():
    values = addons.gpu_operator_values({"H100-80G", "H200-141G"}, driver_baked=False)
    assert values["driver"] == {"enabled": True, "version": "580.126.20", "kernelModuleType": "open"}
    assert values["toolkit"] == {"enabled": True}


def test_keda_resources_grow_with_the_scaled_objects():
    spec = nights.spec("rehearsal")
    values = addons.keda_values(spec, 250)  # three blocks of 100
    assert values["resources"]["operator"]["requests"] == {"cpu": "300m", "memory": "300Mi"}
    assert values["resources"]["metricServer"]["limits"] == {"cpu": "3000m", "memory": "3000Mi"}


def test_default_prometheus_url_is_the_one_the_prometheus_stack_addon_installs():
    """KEDA's trigger and prometheus-adapter query clusters[].prometheusUrl: by default it must name
    the Service the prometheus-operator creates in the namespace the add-on installs into."""
    from urllib.parse import urlsplit

    from peaknight.addons import releases as addons
    from peaknight.spec import stack as spec

    default = spec.Cluster(name="x", region="r", zones=("a",), share=1.0).prometheus_url
    host = urlsplit(default).hostname
    assert host == f"prometheus-operated.{addons.chart(addons.PROMETHEUS_STACK).namespace}.svc"
