"""prometheus-adapter: on exactly the clusters whose HPAs read custom or external metrics, with
rules for exactly those metrics, external ones only where KEDA does not own that API, and every
such HPA ordered after it. Asserted on what the mocked Pulumi program recorded after it ran."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import require_tool

import nights
from peaknight.addons import releases as addons
from peaknight.engines import registry as engines
from peaknight.plan.capacity import workload_names
from pulumi_harness import RecordingMocks, run_program
from test_addons import kind_of, releases_of
from test_config import write_variant

ADAPTER = "prometheus-adapter"


def adapter_values(mocks: RecordingMocks, cluster: str) -> dict | None:
    release = releases_of(mocks, cluster).get(f"{cluster}/{ADAPTER}")
    return None if release is None else release.inputs["values"]


def hpas(mocks: RecordingMocks, cluster: str) -> list:
    return [r for r in mocks.resources
            if kind_of(r.typ) == "HorizontalPodAutoscaler" and r.name.startswith(cluster + "/")]


def metrics_of(hpa, kind: str) -> list[dict]:
    return [m[kind.lower()] for m in hpa.inputs["spec"]["metrics"] if m["type"] == kind]


def test_the_pinned_chart_is_prometheus_communitys_adapter():
    pinned = addons.chart(addons.PROMETHEUS_ADAPTER)
    assert (pinned.repository, pinned.name, pinned.version) == (
        "https://prometheus-community.github.io/helm-charts", "prometheus-adapter", "5.4.0")


def test_the_plain_hpa_cluster_gets_custom_and_external_rules(runs):
    values = adapter_values(runs["rehearsal"], "reh-hk-01")
    assert values is not None
    assert values["rules"]["default"] is False
    assert sorted(r["name"]["as"] for r in values["rules"]["external"]) == [
        "peaknight_model_kv_cache_usage", "peaknight_model_requests_waiting", "peaknight_model_tokens_per_second"]
    assert [r["name"]["as"] for r in values["rules"]["custom"]] == ["nginx_connections_active"]


def test_keda_clusters_get_custom_rules_only(runs):
    """KEDA's metrics server owns v1beta1.external.metrics.k8s.io: the chart creates its external
    APIService only for non-empty rules.external."""
    keda_clusters = [("broadcast", c) for c in ("gala-bj-01", "gala-hk-01")] + [
        ("rehearsal", c) for c in ("reh-bj-01", "reh-bj-02", "reh-nx-01")]
    for stack, cluster in keda_clusters:
        values = adapter_values(runs[stack], cluster)
        assert values is not None, cluster
        assert values["rules"]["external"] == [], cluster
        assert [r["name"]["as"] for r in values["rules"]["custom"]] == ["nginx_connections_active"], cluster


def test_an_external_metric_on_a_keda_cluster_is_refused():
    """Two servers cannot both own v1beta1.external.metrics.k8s.io: no adapter rule would ever answer."""
    spec = nights.spec("rehearsal")
    keda_cluster = next(c for c in spec.clusters if c.name == "reh-bj-01")
    use = addons.MetricUse("External", "peaknight_model_tokens_per_second", "gala-2026-rehearsal-inference")
    with pytest.raises(ValueError, match="reh-bj-01: an HPA reads an External metric"):
        addons.prometheus_adapter_values(spec, keda_cluster, ADAPTER, [use])


def test_the_external_rule_runs_the_query_the_hpa_annotation_shows(runs):
    """The adapter fills <<.LabelMatchers>> with the HPA's selector and its namespace: each External
    metric (tokens/s, waiting requests, KV-cache use) runs the query the HPA's annotation shows."""
    rules = {r["name"]["as"]: r for r in adapter_values(runs["rehearsal"], "reh-hk-01")["rules"]["external"]}
    model_hpas = [h for h in hpas(runs["rehearsal"], "reh-hk-01") if metrics_of(h, "External")]
    assert len(model_hpas) == sum(len(workload_names(m)) for m in nights.spec("rehearsal").models)
    for hpa in model_hpas:
        metrics = metrics_of(hpa, "External")
        assert sorted(m["metric"]["name"] for m in metrics) == sorted(rules) and len(rules) == 3
        shown = dict(q.split(": ", 1) for q in hpa.inputs["metadata"]["annotations"]["peaknight.io/queries"].split("; "))
        for metric in metrics:
            rule = rules[metric["metric"]["name"]]
            labels = {**metric["metric"]["selector"]["matchLabels"], "namespace": hpa.inputs["metadata"]["namespace"]}
            matchers = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            filled = rule["metricsQuery"].replace("<<.LabelMatchers>>", matchers)
            assert filled == shown[rule["name"]["as"]], hpa.name
            assert f'namespace="{labels["namespace"]}"' in rule["seriesQuery"]
        assert shown["peaknight_model_tokens_per_second"] == hpa.inputs["metadata"]["annotations"]["peaknight.io/query"]


def test_the_custom_rule_serves_the_edge_hpas_pods_metric_per_pod_in_their_namespace(runs):
    for stack, cluster in (("broadcast", "gala-bj-01"), ("rehearsal", "reh-hk-01")):
        (rule,) = adapter_values(runs[stack], cluster)["rules"]["custom"]
        edge_hpas = [h for h in hpas(runs[stack], cluster) if metrics_of(h, "Pods")]
        assert edge_hpas, cluster
        for hpa in edge_hpas:
            (metric,) = metrics_of(hpa, "Pods")
            assert rule["name"] == {"matches": f"^{metric['metric']['name']}$", "as": metric["metric"]["name"]}
            namespace = hpa.inputs["metadata"]["namespace"]
            assert rule["seriesQuery"] == f'{metric["metric"]["name"]}{{namespace="{namespace}",pod!=""}}'
            assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}


def test_every_hpa_on_adapter_metrics_waits_for_the_adapter(runs, stack_name):
    mocks = runs[stack_name]
    checked = 0
    for cluster in nights.program_objects(stack_name).spec.clusters:
        for hpa in hpas(mocks, cluster.name):
            assert metrics_of(hpa, "Pods") or metrics_of(hpa, "External"), hpa.name
            assert hpa.depends_on == (f"{cluster.name}/{ADAPTER}",), hpa.name
            checked += 1
    assert checked


def test_the_adapter_reads_the_prometheus_keda_reads_and_survives_a_zone_in_broadcast(runs):
    for stack, cluster, replicas in (("broadcast", "gala-bj-01", 2), ("rehearsal", "reh-bj-01", 1)):
        values = adapter_values(runs[stack], cluster)
        scaled = next(r for r in runs[stack].resources if kind_of(r.typ) == "ScaledObject")
        server = next(t for t in scaled.inputs["spec"]["triggers"] if t["type"] == "prometheus")["metadata"]["serverAddress"]
        assert f'{values["prometheus"]["url"]}:{values["prometheus"]["port"]}' == server
        assert values["replicas"] == replicas
        assert values["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
        (spread,) = values["topologySpreadConstraints"]
        assert spread["topologyKey"] == "topology.kubernetes.io/zone"
        assert spread["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus-adapter",
                                                           "app.kubernetes.io/instance": "prometheus-adapter"}


def test_only_clusters_whose_hpas_read_adapter_metrics_get_it(tmp_path):
    """Without live edges the KEDA clusters declare no HPA (KEDA makes its own): no adapter there;
    the plain-HPA cluster still needs it for the models' External metric."""
    def no_edges(cfg):
        del cfg["peaknight:edges"]
    mocks = run_program(write_variant(tmp_path, no_edges, base="rehearsal"))
    for cluster in ("reh-bj-01", "reh-bj-02", "reh-nx-01"):
        assert adapter_values(mocks, cluster) is None, cluster
    values = adapter_values(mocks, "reh-hk-01")
    assert values["rules"]["custom"] == [] and len(values["rules"]["external"]) == 3


def test_a_disabled_adapter_is_absent_and_nothing_waits_for_it(tmp_path):
    def switch_off(cfg):
        hk = next(c for c in cfg["peaknight:clusters"] if c["name"] == "reh-hk-01")
        hk["addons"] = {"prometheusAdapter": False}
    mocks = run_program(write_variant(tmp_path, switch_off, base="rehearsal", clusters=["reh-bj-01", "reh-hk-01"]))
    assert adapter_values(mocks, "reh-hk-01") is None
    assert adapter_values(mocks, "reh-bj-01") is not None
    in_cluster = [r for r in mocks.resources if r.name.startswith("reh-hk-01/")]
    assert not [r.name for r in in_cluster if f"reh-hk-01/{ADAPTER}" in r.depends_on]
    assert hpas(mocks, "reh-hk-01") and all(h.depends_on == () for h in hpas(mocks, "reh-hk-01"))


def test_the_shared_token_query_counts_input_and_output_tokens_of_one_model(runs, tmp_path: Path):
    """promtool evaluates the HPA's query (what KEDA and the adapter run): 45 + 15 tokens/s of the
    model, nothing from another model or namespace."""
    hpa = next(h for h in hpas(runs["rehearsal"], "reh-hk-01") if metrics_of(h, "External"))
    query = hpa.inputs["metadata"]["annotations"]["peaknight.io/query"]
    model = metrics_of(hpa, "External")[0]["metric"]["selector"]["matchLabels"]["model_name"]
    namespace = hpa.inputs["metadata"]["namespace"]
    e = engines.metrics(next(m for m in nights.spec("rehearsal").models if m.name == model))
    other = next(o.metrics for o in engines.ENGINES.values() if o.metrics != e)
    selector = metrics_of(hpa, "External")[0]["metric"]["selector"]["matchLabels"]
    own = ",".join(f'{k}="{v}"' for k, v in {**selector, "namespace": namespace, "pod": "p-0"}.items())
    # A disaggregated model's prefill servers count its prompts again: read from its decode servers only.
    again = ([(f'{e.prompt_tokens_metric}{{model_name="{model}",service="{model}-prefill",namespace="{namespace}",'
               f'pod="p-3"}}', "0+6000x10")] if "service" in selector else [])
    series = [*again, (f"{e.prompt_tokens_metric}{{{own}}}", "0+2700x10"),
              (f"{e.generation_tokens_metric}{{{own}}}", "0+900x10"),
              (f'{other.prompt_tokens_metric}{{model_name="other",namespace="{namespace}",pod="p-1"}}', "0+6000x10"),
              (f'{e.prompt_tokens_metric}{{model_name="{model}",namespace="elsewhere",pod="p-2"}}', "0+6000x10")]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "t", "rules": [
        {"record": "tokens_per_second", "expr": query}]}]}))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series],
                   "promql_expr_test": [{"expr": "tokens_per_second", "eval_time": "5m",
                                         "exp_samples": [{"labels": "tokens_per_second", "value": 60}]}]}]}))
    result = subprocess.run([require_tool("promtool"), "test", "rules", "test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
