"""The night's Grafana dashboards: one ConfigMap per cluster that Grafana's sidecar loads, valid
dashboard JSON, every query naming only metrics the kit's rules record or read, the engines export
or the edge's exporters produce, and each panel's limit the plan's or the SLO's figure."""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

import nights
from peaknight.builders import dashboards
from peaknight.edges import logs as edge_logs
from peaknight.engines import registry as engines
from peaknight.review import schema as k8s_schema

STACKS = ["broadcast", "rehearsal"]
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers left once strings, label matchers,
    ranges and label lists are taken out, less functions (followed by a parenthesis) and keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = {m.group() for m in re.finditer(r"(?<![\w:.])[A-Za-z_:][\w:]*", text)
             if not text[m.end():].lstrip().startswith("(")}
    return names - KEYWORDS


def produced(manifests: list[dict[str, Any]]) -> set[str]:
    """Metrics a dashboard may read: what the cluster's rules record and read (kube-state-metrics,
    Karpenter, DCGM, KEDA, the engines), every engine's own names, the edge log exporter's."""
    rules = [r for m in manifests if m["kind"] == "PrometheusRule" for g in m["spec"]["groups"] for r in g["rules"]]
    names = {r["record"] for r in rules if "record" in r}
    names |= {n for r in rules for n in metric_names(r["expr"])}
    for engine in engines.ENGINES.values():
        for value in dataclasses.asdict(engine.metrics).values():
            names |= {value} if isinstance(value, str) else set(value)
    names |= {edge_logs.RESPONSES, edge_logs.RESPONSE_BYTES}
    return names - {""}


def configmaps(stack: str, cluster: str) -> list[dict[str, Any]]:
    return [m for m in nights.manifests(stack, cluster) if m["kind"] == "ConfigMap" and m["metadata"]["name"] == dashboards.NAME]


def boards(configmap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in configmap["data"].items()}


def queries(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] if p["type"] != "row" for t in p["targets"]]


def unknown_metrics(board: dict[str, Any], allowed: set[str]) -> list[str]:
    return sorted({f"{n} in {q}" for q in queries(board) for n in metric_names(q) - allowed})


@pytest.mark.parametrize("stack", STACKS)
def test_every_cluster_has_its_dashboards_for_the_sidecar(stack):
    for cluster in nights.objects(stack).clusters:
        (cm,) = configmaps(stack, cluster.cluster.name)
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"].endswith("-monitoring")
        assert k8s_schema.validate(cm) == []
        assert sum(len(v.encode()) for v in cm["data"].values()) < 1_000_000   # a ConfigMap holds at most 1 MiB
        loaded = boards(cm)
        assert set(loaded) == {"peaknight-models.json", "peaknight-edges.json"}
        for board in loaded.values():
            assert board["title"].startswith(f"{nights.spec(stack).event.name} {cluster.cluster.name}: ")
            assert all(p["type"] in ("row", "timeseries") for p in board["panels"])
            assert all(p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
                       for p in board["panels"] if p["type"] != "row")
        uids = [b["uid"] for b in loaded.values()]
        assert len(set(uids)) == len(uids) and all(len(u) <= 40 for u in uids)   # Grafana's uid limit


@pytest.mark.parametrize("stack", STACKS)
def test_every_query_names_only_metrics_the_kit_produces(stack):
    for shape in nights.representatives(stack):
        name = shape.cluster.name
        allowed = produced(nights.manifests(stack, name))
        (cm,) = configmaps(stack, name)
        for board in boards(cm).values():
            assert queries(board)
            assert unknown_metrics(board, allowed) == []


def test_a_query_on_a_metric_nobody_produces_is_caught():
    allowed = produced(nights.manifests("broadcast", "gala-bj-01"))
    board = {"panels": [{"type": "timeseries", "targets": [
        {"expr": 'sum by (model) (rate(vllm:num_requests_waitin{model_name="chat"}[2m])) / on(model) model:ready_replicas:count'}]}]}
    assert unknown_metrics(board, allowed) == ['vllm:num_requests_waitin in ' + board["panels"][0]["targets"][0]["expr"]]


def test_the_metric_names_of_a_query():
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket'
                        '{model_name="a", x=~"b|c"}[5m]))) > 2e-3 and on() up{job="x"} == 1 or vector(0)') == \
        {"vllm:time_to_first_token_seconds_bucket", "up"}


def test_the_panels_read_against_the_plan_and_the_slo():
    plan = nights.plan("broadcast").cluster("gala-bj-01")
    spec = nights.spec("broadcast")
    (cm,) = configmaps("broadcast", "gala-bj-01")
    models, edges = boards(cm)["peaknight-models.json"], boards(cm)["peaknight-edges.json"]

    def limits(board: dict[str, Any], expr: str) -> list[float]:
        (p,) = [p for p in board["panels"] if p["type"] != "row" and p["targets"][0]["expr"] == expr]
        return [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]

    chat = plan.bounding("chat")
    assert limits(models, 'model:tokens_per_minute:rate2m{model="chat"}') == \
        pytest.approx([chat.demand_tps.value * 60, chat.capacity_tps.value * 60])
    assert limits(models, 'model:ttft_seconds:p99{model="chat"}') == [spec.slo.ttft_p99_seconds]
    assert limits(models, 'model:ladder_step:current{model="greetings"}') == [1, 2, 3]
    pool = plan.pools[0]
    assert limits(models, f'nodepool:gpus_in_use:max{{nodepool="{pool.pool}"}}') == [pool.gpu_limit.value]
    assert limits(edges, 'edge:hit_ratio:rate2m{edge="gala-live"}') == [spec.slo.edge_hit_ratio]
    assert limits(edges, 'edge:egress_gbps:rate2m{edge="gala-live"}') == \
        pytest.approx([plan.edge("gala-live").egress_gbps.value, plan.edge("gala-live").capacity_gbps.value])
