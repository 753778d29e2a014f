"""Global steering (builders/steering.py): the render writes each cluster's weighted records and
health checks with its cloud resources, the program registers them under the cluster's cloud
provider, a stack without a cluster re-weights the rest, and the new keys refuse hostile input."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import nights
from peaknight.builders import steering
from peaknight.cli import main as cli
from peaknight.spec import config
from pulumi_harness import run_under_mocks, secret_keys
from test_config import write_variant
from test_provisioners import pulumi_config, two_vke_clusters

STEERING = {"domain": "gala.example.com", "zoneId": "Z0123456789ABCDEFGHIJ", "ttlSeconds": 30,
            "healthCheck": {"intervalSeconds": 10, "failureThreshold": 3, "apiPath": "/healthz"}}


def cloud_docs(out: Path, cluster: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["type"], d["name"]): d for d in yaml.safe_load_all((out / f"{cluster}.cloud.yaml").read_text())}


def test_render_writes_each_clusters_weighted_records_and_health_checks(tmp_path, capsys):
    out = tmp_path / "out"
    stack = nights.per_shape("broadcast")   # one cluster per shape: the rest differ only in names
    assert cli.main(["render", str(stack), "--out", str(out)]) == 0
    capsys.readouterr()
    spec = nights.spec_at(stack)
    for cluster in spec.clusters:
        docs = cloud_docs(out, cluster.name)
        for part, name, path in (("api", "api.gala-2026.gala.example.com", "/healthz"),
                                 ("gala-live", "gala-live.live.gala-2026.gala.example.com", "/healthz")):
            target = name.replace(".gala-2026.", f".{cluster.name}.gala-2026.", 1) if part == "api" else \
                f"gala-live.{cluster.name}.gala-2026.gala.example.com"
            check = docs[(steering.HEALTH_CHECK, f"{cluster.name}-{part}")]["properties"]
            # The API's Gateway listens on HTTPS 443 alone; the live edge serves plain HTTP on 80.
            scheme, port = ("HTTPS", 443) if part == "api" else ("HTTP", 80)
            assert check["fqdn"] == target and check["resourcePath"] == path and check["type"] == scheme
            assert check["requestInterval"] == 10 and check["failureThreshold"] == 3 and check["port"] == port
            assert check.get("enableSni", False) is (part == "api")
            record = docs[(steering.RECORD, f"{cluster.name}-{part}")]
            assert record["protect"] is False   # taking a cluster out of the stack takes its records
            props = record["properties"]
            assert props["name"] == name and props["records"] == [target] and props["type"] == "CNAME"
            assert props["setIdentifier"] == cluster.name and props["ttl"] == 30
            assert props["zoneId"] == "Z0000000000000000000"
            # Equal shares (1/64 each; 1/3 each cut to one cluster per shape): each the largest, each 255.
            assert props["weightedRoutingPolicies"] == [{"weight": 255}]
            assert props["healthCheckId"] == f"${{healthcheck.{cluster.name}-{part}.id}}"


def _load_dir(folder: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(f.read_text()) for f in sorted(folder.glob("*.yaml"))]


def test_the_gateway_routes_exactly_what_the_api_health_check_probes_without_credentials(tmp_path, capsys):
    """Issue 27: each cluster's gateway answers `healthCheck.apiPath` over the scheme and port Route
    53 probes, to the assistant's readiness, and no SecurityPolicy or BackendTrafficPolicy covers it."""
    out = tmp_path / "out"
    stack = nights.per_shape("broadcast")   # one cluster per shape: test_cluster_shapes proves the rest alike
    assert cli.main(["render", str(stack), "--out", str(out)]) == 0
    capsys.readouterr()
    spec = nights.spec_at(stack)
    for cluster in spec.clusters:
        check = cloud_docs(out, cluster.name)[(steering.HEALTH_CHECK, f"{cluster.name}-api")]["properties"]
        objs = _load_dir(out / cluster.name)
        (gateway,) = [o for o in objs if o["kind"] == "Gateway"]
        listeners = [(ls["protocol"], ls["port"]) for ls in gateway["spec"]["listeners"]]
        assert listeners == [(check["type"], check["port"])]
        routes = [o for o in objs if o["kind"] == "HTTPRoute"
                  and any(ref["name"] == gateway["metadata"]["name"] for ref in o["spec"]["parentRefs"])]
        answering = [(r["metadata"]["name"], rule) for r in routes for rule in r["spec"]["rules"]
                     for m in rule["matches"] if m["path"] == {"type": "Exact", "value": check["resourcePath"]}]
        (name, rule), = answering   # exactly one rule answers the probed path
        assert rule["matches"] == [{"method": "GET", "path": {"type": "Exact", "value": "/healthz"}}]
        # chat, the assistant, is disaggregated: its router's readiness (200 once it has healthy servers).
        assert rule["backendRefs"] == [{"name": "chat", "port": 8000}]
        assert rule["filters"][0]["urlRewrite"]["path"] == {"type": "ReplaceFullPath", "replaceFullPath": "/readiness"}
        assert [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "chat"]
        # No credentials and no admission limits on it: nothing targets the health route.
        targeted = {ref["name"] for o in objs if o["kind"] in ("SecurityPolicy", "BackendTrafficPolicy")
                    for ref in o["spec"].get("targetRefs", [])}
        assert name == steering.HEALTH_ROUTE and name not in targeted and "chat" in targeted


def test_weights_follow_the_shares_and_a_removed_cluster_re_weights_the_rest(tmp_path, capsys):
    def uneven(cfg: dict[str, Any]) -> None:
        cfg["peaknight:clusters"][0]["share"] = 0.3
        cfg["peaknight:clusters"][1]["share"] = 0.7
    path = write_variant(tmp_path, uneven, clusters=["gala-bj-01", "gala-nx-01"])
    spec = config.load_stack(str(path)).spec
    a, b = spec.clusters
    assert steering.weight(spec, a, 255) == 109 and steering.weight(spec, b, 255) == 255   # 0.3 / 0.7 x 255
    # Three clusters of a third each; take one out and the two left answer half each.
    three = write_variant(tmp_path, lambda cfg: None, clusters=["gala-bj-01", "gala-nx-01", "gala-hk-01"])
    out = tmp_path / "out"
    assert cli.main(["render", str(three), "--out", str(out)]) == 0
    assert all(cloud_docs(out, c)[(steering.RECORD, f"{c}-api")]["properties"]["weightedRoutingPolicies"]
               == [{"weight": 255}] for c in ("gala-bj-01", "gala-nx-01", "gala-hk-01"))
    # Two clusters left each absorb the other's region when it is lost (the policy's region loss):
    # at the night's per-cluster load that is 5,497 nodes, over the 5,000 envelope. The weights read
    # only the shares, so the two render at 0.8 of the load.
    two = write_variant(tmp_path, lambda cfg: cfg.__setitem__("peaknight:scale", cfg["peaknight:scale"] * 0.8),
                        clusters=["gala-bj-01", "gala-nx-01"])
    assert cli.main(["render", str(two), "--out", str(out)]) == 0
    assert "gala-hk-01: removed (no longer in the stack)" in capsys.readouterr().out
    assert not (out / "gala-hk-01.cloud.yaml").exists()
    left = [cloud_docs(out, c)[(steering.RECORD, f"{c}-api")]["properties"] for c in ("gala-bj-01", "gala-nx-01")]
    weights = [p["weightedRoutingPolicies"][0]["weight"] for p in left]
    assert [w / sum(weights) for w in weights] == [0.5, 0.5]


def test_the_program_registers_them_under_the_clusters_aws_provider(runs):
    mocks = runs["broadcast"]
    spec = nights.program_objects("broadcast").spec
    providers = {r.name: r for r in mocks.resources if r.typ == "pulumi:providers:aws"}
    assert sorted(providers) == sorted(f"aws-{c.name}" for c in spec.clusters)
    assert all(providers[f"aws-{c.name}"].inputs["region"] == c.region for c in spec.clusters)
    checks = {r.name: r for r in mocks.resources if r.typ == steering.HEALTH_CHECK}
    records = [r for r in mocks.resources if r.typ == steering.RECORD]
    assert len(records) == len(checks) == 2 * len(spec.clusters)
    for r in records:
        cluster = r.name.split("/")[0]
        assert f"::aws-{cluster}::" in r.provider_ref and r.parent == f"{cluster}/steering"
        check = r.name.replace("/record.", "/healthcheck.")
        assert f"::aws-{cluster}::" in checks[check].provider_ref
        # The record names the health check the program registered (the mocks' ID: `<name>_id`).
        assert r.inputs["healthCheckId"] == f"{check}_id"
        assert r.inputs["weightedRoutingPolicies"] == [{"weight": 255}] and r.inputs["setIdentifier"] == cluster


def test_vke_clusters_get_trafficroute_weighted_records_under_their_volcengine_provider():
    raw = two_vke_clusters()
    raw["steering"] = dict(STEERING, zoneId="123456")
    spec = config.parse(raw, "test")

    def main() -> None:
        from peaknight.pulumi import program
        program.main()
    cfg = pulumi_config(raw)
    mocks = run_under_mocks(main, "gala-vke", cfg, secret_keys(cfg), preview=True)
    records = [r for r in mocks.resources if r.typ == steering.TRAFFICROUTE_RECORD]
    assert len(records) == 2 * len(spec.clusters)   # the assistant and the one edge, per cluster
    assert not [r for r in mocks.resources if r.typ.startswith("aws:") or r.typ == "pulumi:providers:aws"]
    for r in records:
        cluster = r.name.split("/")[0]
        assert f"::volcengine-{cluster}::" in r.provider_ref
        assert r.inputs["zid"] == 123456 and r.inputs["weight"] == 100 and r.inputs["ttl"] == 30
        assert r.inputs["type"] == "CNAME" and r.inputs["value"].split(".")[1] == cluster
        assert r.inputs["host"] in (f"api.{spec.event.name}", f"{spec.edges[0].name}.live.{spec.event.name}")


def test_users_move_after_the_health_checks_fail_and_the_ttl_runs_out():
    spec = nights.spec("broadcast")
    assert steering.move_seconds(spec) == 10 * 3 + 30
    assert steering.move_seconds(dataclasses.replace(spec, steering=None)) == float("inf")


def test_on_vke_without_health_checks_a_dark_clusters_users_stay(tmp_path, capsys):
    """TrafficRoute's records carry no health check here: simulate says so and nobody moves."""
    raw = two_vke_clusters()
    raw["steering"] = dict(STEERING, zoneId="123456")
    path = tmp_path / "Pulumi.vke.yaml"
    path.write_text(yaml.safe_dump({"config": {f"peaknight:{k}": v for k, v in raw.items()}}))
    spec = config.load_stack(str(path)).spec
    assert steering.move_seconds(spec) == float("inf")
    assert cli.main(["simulate", str(path), "--step", "30", "--lose-cluster", spec.clusters[0].name,
                     "--at", spec.event.moments[0].name]) == 1
    assert (f"cluster {spec.clusters[0].name} lost at") in (out := capsys.readouterr().out)
    assert "its DNS has no health check (TrafficRoute), so its users stay on it until the on-call disables its records" in out


@pytest.mark.parametrize("edit, line", [
    (lambda s: s.update(domain="Gala.Example.com"), "peaknight:steering.domain: expected a lower-case DNS subdomain"),
    (lambda s: s.update(zoneId="Z0;rm"), "peaknight:steering.zoneId: expected a hosted zone ID"),
    (lambda s: s.update(ttlSeconds=0), "peaknight:steering.ttlSeconds: expected greater than or equal to 5"),
    (lambda s: s.update(ttlSeconds=1e9), "peaknight:steering.ttlSeconds: expected"),
    (lambda s: s["healthCheck"].update(intervalSeconds=15), "peaknight:steering.healthCheck.intervalSeconds: expected"),
    (lambda s: s["healthCheck"].update(failureThreshold=11), "peaknight:steering.healthCheck.failureThreshold: expected"),
    (lambda s: s["healthCheck"].update(apiPath="/h?x=$(id)"), "peaknight:steering.healthCheck.apiPath: expected a URL path"),
    (lambda s: s["healthCheck"].pop("apiPath"), "peaknight:steering.healthCheck.apiPath: expected this required key"),
    (lambda s: s.update(zoneId="123456"), "peaknight:steering.zoneId: expected a Route 53 hosted zone ID (Z...) for "
                                          "karpenter-aws clusters"),
    # A subdomain of 228 characters: the longest own name (gala-live.gala-bj-01.gala-2026.<domain>) has 259.
    (lambda s: s.update(domain=".".join(["a" * 60] * 3) + "." + "e" * 45),
     "peaknight:steering.domain: expected a domain short enough"),
])
def test_hostile_steering_keys_are_one_line_each(tmp_path, capsys, edit, line):
    def bad(cfg: dict[str, Any]) -> None:
        edit(cfg["peaknight:steering"])
    assert cli.main(["plan", str(write_variant(tmp_path, bad))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    found = [x for x in err.splitlines() if "peaknight:steering" in x]
    assert len(found) == 1 and line in found[0], err


def test_names_that_would_collide_with_the_global_names_are_refused(tmp_path, capsys):
    def colliding(cfg: dict[str, Any]) -> None:
        cfg["peaknight:edges"][0]["name"] = "api"
        cfg["peaknight:clusters"][1]["name"] = "live"
    assert cli.main(["plan", str(write_variant(tmp_path, colliding))]) == 2
    err = capsys.readouterr().err
    assert ("peaknight:edges[0].name: expected a name other than 'api' with peaknight:steering (the assistant's "
            "names); found 'api'") in err
    assert ("peaknight:clusters[1].name: expected a name other than 'live' with peaknight:steering (the edges' "
            "global names); found 'live'") in err


def test_steering_over_clusters_the_kit_declares_no_dns_for_is_refused(tmp_path, capsys):
    def existing(cfg: dict[str, Any]) -> None:
        cfg["peaknight:steering"] = STEERING
        groups = [{"pool": p["name"], "name": f"{p['name']}-a", "nodes": 5000} for p in cfg["peaknight:gpuPools"]]
        cfg["peaknight:clusters"][0]["provisioner"] = {"kind": "existing", "groups": groups}
    assert cli.main(["plan", str(write_variant(tmp_path, existing, "rehearsal"))]) == 2
    err = capsys.readouterr().err
    assert ("peaknight:steering: expected every cluster on one cloud with DNS the kit declares (karpenter-aws: "
            "Route 53, volcengine-vke: TrafficRoute); found reh-bj-01: existing") in err


def test_each_health_check_comes_before_the_record_that_names_it():
    """The program resolves a record's `${<key>.id}` against the resources registered before it."""
    spec = nights.spec("broadcast")
    unit = steering.unit(spec, spec.steering, spec.clusters[0])  # type: ignore[arg-type]
    keys = [c.key for c in unit.cloud]
    assert keys == ["healthcheck.gala-bj-01-api", "record.gala-bj-01-api",
                    "healthcheck.gala-bj-01-gala-live", "record.gala-bj-01-gala-live"]
    assert json.dumps(unit.cloud[1].properties["healthCheckId"]) == '"${healthcheck.gala-bj-01-api.id}"'
