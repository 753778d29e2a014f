"""LiveEdge objects: what each carries, that they validate, and that no secret is rendered."""
from __future__ import annotations

import dataclasses
import math

import pytest

import nights
from peaknight.plan import capacity
from peaknight.edges import logs as edge_logs
from peaknight.edges import nginx as edge_nginx
from peaknight.edges import live as edges
from peaknight.builders import event, podpolicy
from peaknight.review import schema as k8s_schema
from peaknight.cli import render


def edge_units(stack: str):
    return [(c.cluster, u) for c in nights.objects(stack).clusters
            for u in c.units if u.component == "LiveEdge"]


@pytest.fixture(scope="module")
def broadcast_edge():
    cluster, unit = edge_units("broadcast")[0]
    suffixes = ("-metrics", "-log-exporter")
    return {o.kind + next(("/" + s[1:] for s in suffixes if o.name.endswith(s)), ""): o for o in unit.objects
            if "-shield" not in o.name}


@pytest.fixture(scope="module")
def broadcast_shield():
    cluster, unit = edge_units("broadcast")[0]
    return [o for o in unit.objects if "-shield" in o.name]


def test_every_cluster_of_both_stacks_gets_each_edge_and_all_validate(stack_name):
    spec = nights.spec(stack_name)
    units = edge_units(stack_name)
    assert len(units) == len(spec.clusters) * len(spec.edges)
    plan = capacity.plan(spec)
    # The schemas over one cluster per shape (the others render the same objects up to their names:
    # test_cluster_shapes); the kinds over every cluster.
    checked = {c.cluster.name for c in nights.representatives(stack_name)}
    for cluster, unit in units:
        shields = int(plan.cluster(getattr(cluster, "name", cluster)).edge(unit.name).shields.value)
        assert sorted(o.kind for o in unit.objects) == sorted(
            ["ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service",
             "Service", "ServiceAccount", "ServiceMonitor"]                                 # the edge pods
            + ["ConfigMap", "StatefulSet", "PodDisruptionBudget", "Service", "Service", "ServiceMonitor"]  # shields
            + ["Service"] * shields                                                          # one per shield
            + ["EC2NodeClass", "NodePool"])                                                 # the edge's nodes
        for obj in unit.objects if cluster.name in checked else ():
            assert k8s_schema.validate(obj.manifest) == []


def _rolled_annotations(spec, **changes) -> dict[str, str]:
    changed = dataclasses.replace(spec, edges=(dataclasses.replace(spec.edges[0], **changes),))
    unit = next(u for u in event.build(changed).clusters[0].units if u.component == "LiveEdge")
    return next(o for o in unit.objects if o.kind == "Deployment").manifest["spec"]["template"]["metadata"]["annotations"]


def test_configmaps_hold_the_renders_and_the_pods_roll_on_their_checksums(broadcast_edge):
    spec = nights.spec("broadcast")
    conf = broadcast_edge["ConfigMap"].manifest["data"]["nginx.conf"]
    log_conf = broadcast_edge["ConfigMap/log-exporter"].manifest["data"][edge_logs.CONFIG_FILE]
    shields = edges.shield_addresses(spec, spec.edges[0], 3)
    assert conf == edge_nginx.render(spec.edges[0], edge_nginx.edge_tier(shields))
    assert shields[0] == "gala-live-shield-0.gala-2026-edge.svc:80"
    assert log_conf == edge_logs.exporter_config(spec.edges[0])
    annotations = broadcast_edge["Deployment"].manifest["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {edges.CHECKSUM_ANNOTATION: edge_nginx.checksum(conf),
                           edges.LOG_EXPORTER_CHECKSUM_ANNOTATION: edge_nginx.checksum(log_conf)}
    assert _rolled_annotations(spec, playlist_ttl_seconds=2)[edges.CHECKSUM_ANNOTATION] != edge_nginx.checksum(conf)
    # A new rendition changes the exporter's label whitelist: that alone rolls the pods too.
    renditions = (*spec.edges[0].renditions[:-1], dataclasses.replace(spec.edges[0].renditions[-1], name="360p"))
    rolled = _rolled_annotations(spec, renditions=renditions)
    assert rolled[edges.LOG_EXPORTER_CHECKSUM_ANNOTATION] != edge_nginx.checksum(log_conf)


def test_pods_are_restricted_unprivileged_and_write_only_to_their_emptydir(broadcast_edge):
    pod = broadcast_edge["Deployment"].manifest["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 101
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["allowPrivilegeEscalation"] is False and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    nginx, exporter, log_exporter, guard = pod["containers"]
    assert nginx["ports"][0]["containerPort"] == 8080 > 1024
    assert {m["mountPath"]: m.get("readOnly", False) for m in nginx["volumeMounts"]} == {
        "/etc/nginx/edge": True, "/etc/nginx/secret": True, edge_nginx.POD.state_dir: False}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["emptyDir"] == {"sizeLimit": "20Gi"}
    assert volumes["secure-link"]["secret"]["secretName"] == "gala-live-secure-link"
    assert exporter["args"][0] == "--nginx.scrape-uri=http://127.0.0.1:8081/stub_status"
    assert log_exporter["args"] == ["-config-file", "/etc/log-exporter/log-exporter.yaml"]
    assert log_exporter["volumeMounts"] == [{"name": "log-exporter-conf", "mountPath": "/etc/log-exporter",
                                             "readOnly": True}]
    assert log_exporter["image"].startswith("quay.io/martinhelmich/prometheus-nginxlog-exporter:v1.11.0@sha256:")
    # The cache guard: the nginx image's own shell, the state volume, and the 5% threshold of 20 GiB.
    assert guard["image"] == nginx["image"] and guard["command"][:2] == ["sh", "-c"]
    assert f"-lt {math.ceil(20 * 1024 * 1024 * 0.05)} ]" in guard["command"][2]
    assert guard["volumeMounts"] == [{"name": "state", "mountPath": edge_nginx.POD.state_dir}]
    assert [t["topologyKey"] for t in pod["topologySpreadConstraints"]] == ["topology.kubernetes.io/zone",
                                                                           "kubernetes.io/hostname"]


def test_hpa_floor_is_the_plan_in_broadcast_and_its_ceiling_counts_in_the_envelope(broadcast_edge):
    plan = capacity.plan(nights.spec("broadcast")).cluster("gala-bj-01").edge("gala-live")
    hpa = broadcast_edge["HorizontalPodAutoscaler"].manifest["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (129, 258)
    assert broadcast_edge["Deployment"].manifest["spec"]["replicas"] == 129
    assert broadcast_edge["Deployment"].ignore_changes == ("spec.replicas",)
    cpu, conns = hpa["metrics"]
    assert cpu["resource"]["target"]["averageUtilization"] == 85
    assert conns["pods"]["target"]["averageValue"] == str(int(plan.viewers_per_pod.value)) == "4775"
    _, rehearsal = edge_units("rehearsal")[0]
    reh = next(o for o in rehearsal.objects if o.kind == "HorizontalPodAutoscaler").manifest["spec"]
    assert (reh["minReplicas"], reh["maxReplicas"]) == (3, 28)


def test_services_pdb_and_monitor(broadcast_edge):
    viewers, metrics = broadcast_edge["Service"].manifest["spec"], broadcast_edge["Service/metrics"].manifest["spec"]
    # Broadcast: an AWS NLB (Karpenter-on-AWS provisioner) with the pods as targets, one address per zone.
    assert (viewers["type"], viewers["loadBalancerClass"], viewers["loadBalancerSourceRanges"]) == (
        "LoadBalancer", "service.k8s.aws/nlb", ["0.0.0.0/0"])
    annotations = broadcast_edge["Service"].manifest["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-attributes"] == "load_balancing.cross_zone.enabled=false"
    assert [p["port"] for p in viewers["ports"]] == [80]
    _, rehearsal = edge_units("rehearsal")[0]
    assert next(o for o in rehearsal.objects if o.kind == "Service" and o.name == "gala-live").manifest["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"]) for p in metrics["ports"]] == [("metrics", 9113), ("log-metrics", 4040)]
    assert broadcast_edge["PodDisruptionBudget"].manifest["spec"]["maxUnavailable"] == "10%"
    monitor = broadcast_edge["ServiceMonitor"].manifest["spec"]
    assert monitor["selector"]["matchLabels"] == {"app.kubernetes.io/name": "gala-live-metrics"}
    assert [e["port"] for e in monitor["endpoints"]] == ["metrics", "log-metrics"]
    spec = nights.spec("broadcast")
    closed = dataclasses.replace(spec.edges[0], source_ranges=())
    assert edges._viewer_service(closed, {}, {"annotations": {"a": "b"}}) == ({}, {
        "type": "ClusterIP", "selector": {}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]})


def test_no_secret_and_no_secret_object_is_rendered(stack_name):
    for cluster, unit in edge_units(stack_name):
        for obj in unit.objects:
            assert obj.kind != "Secret"
            assert "set $secure_link_secret" not in render.dump(obj.manifest)


def test_shields_are_a_statefulset_with_one_stable_service_per_ordinal(broadcast_shield):
    """The edges' hash ring names each shield by its own Service (a virtual IP that survives the pod
    being replaced); the shields alone hold the origins' config and no viewer secret."""
    spec = nights.spec("broadcast")
    plan = capacity.plan(spec).cluster("gala-bj-01").edge("gala-live")
    by = {(o.kind, o.name): o.manifest for o in broadcast_shield}
    sts = by[("StatefulSet", "gala-live-shield")]["spec"]
    assert sts["replicas"] == int(plan.shields.value) == 3 and sts["serviceName"] == "gala-live-shield"
    assert by[("Service", "gala-live-shield")]["spec"]["clusterIP"] == "None"
    for i in range(3):
        svc = by[("Service", f"gala-live-shield-{i}")]["spec"]
        assert svc["selector"][edges.POD_NAME_LABEL] == f"gala-live-shield-{i}"
        assert svc["publishNotReadyAddresses"] is True and svc["ports"][0]["port"] == 80
    pod = sts["template"]["spec"]
    assert {v["name"] for v in pod["volumes"]} == {"conf", "log-exporter-conf", "state"}
    assert pod["volumes"][-1]["emptyDir"] == {"sizeLimit": "50Gi"}
    conf = by[("ConfigMap", "gala-live-shield-nginx")]["data"]["nginx.conf"]
    assert conf == edge_nginx.render(spec.edges[0], edge_nginx.shield_tier(spec.edges[0]))
    assert sts["template"]["metadata"]["annotations"][edges.CHECKSUM_ANNOTATION] == edge_nginx.checksum(conf)
    assert by[("PodDisruptionBudget", "gala-live-shield")]["spec"]["maxUnavailable"] == 1
    for o in broadcast_shield:
        assert k8s_schema.validate(o.manifest) == []
    tls = dataclasses.replace(spec.edges[0], origins=("https://origin-a.live.internal",), origin_ca_secret="origin-ca")
    shield = next(o for o in edges._shield_objects(spec, tls, plan, "") if o.kind == "StatefulSet").manifest
    volumes = {v["name"]: v for v in shield["spec"]["template"]["spec"]["volumes"]}
    assert volumes["origin-ca"]["secret"]["secretName"] == "origin-ca"
    mounts = shield["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "origin-ca", "mountPath": "/etc/nginx/origin-ca", "readOnly": True} in mounts


def test_edge_and_shield_pods_run_on_the_edge_pool_the_provisioner_makes(broadcast_edge, broadcast_shield):
    spec = nights.spec("broadcast")
    plan = capacity.plan(spec).cluster("gala-bj-01").edge("gala-live")
    cluster, unit = edge_units("broadcast")[0]
    pool = next(o for o in unit.objects if o.kind == "NodePool").manifest
    assert pool["metadata"]["name"] == "gala-live-nodes"
    template = pool["spec"]["template"]
    assert template["metadata"]["labels"][podpolicy.POOL_LABEL] == "gala-live-nodes"
    assert template["spec"]["taints"] == [podpolicy.EDGE_TAINT]
    assert template["spec"]["requirements"][0]["values"] == ["c6in.32xlarge"]
    assert pool["spec"]["limits"] == {"cpu": str(54 * 128)} and plan.nodes.why in pool["metadata"]["annotations"]["peaknight.io/planned-nodes"]
    sts = next(o for o in broadcast_shield if o.kind == "StatefulSet").manifest
    for pod in (broadcast_edge["Deployment"].manifest["spec"]["template"]["spec"], sts["spec"]["template"]["spec"]):
        assert pod["affinity"] == podpolicy.pool_affinity("gala-live-nodes")
        assert pod["tolerations"] == [{"key": "peaknight.io/edge", "operator": "Exists", "effect": "NoSchedule"}]
