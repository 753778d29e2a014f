"""The rendered PrometheusRules, with the real promtool: `check rules` on every group, and `test
rules` cases that fire and do not fire each alert at thresholds from the plan, over one cluster of
each shape (tests/test_cluster_shapes.py: the other clusters of a shape render the same rules but
for their names)."""
from __future__ import annotations

import copy
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_tool

import nights
from peaknight.edges import logs as edge_logs
from peaknight.edges import live as edges
from peaknight.engines import registry as engines
from peaknight.builders import event
from peaknight.review import schema as k8s_schema
from peaknight.builders import autoscaling, monitoring, routing, shards
from peaknight.plan import admission
from peaknight.plan.capacity import EdgePlan, ModelPlan
from peaknight.builders.inference import startup_budget
from peaknight.builders.objects import edge_namespace, inference_namespace
from peaknight.spec.stack import Edge, Engine, Model, StackSpec

EVAL = "1m"


def _rule_objects(stack: str):
    """The PrometheusRules of one cluster per shape (nights.py: the others differ only by name)."""
    objects = nights.objects(stack)
    for cluster in nights.representatives(stack):
        for unit in cluster.units:
            for obj in unit.objects:
                if obj.kind == "PrometheusRule":
                    yield objects, cluster.cluster.name, obj


def _write_rule_files(stack: str, tmp_path: Path) -> list[tuple[Any, str, Path]]:
    out = []
    for objects, cluster, obj in _rule_objects(stack):
        path = tmp_path / f"{cluster}.{obj.name}.yaml"
        path.write_text(yaml.safe_dump(obj.manifest["spec"]))
        out.append((objects, cluster, path))
    return out


def _promtool(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_rules_validate_against_the_prometheus_operator_crd(stack_name: str) -> None:
    problems = [p for _, _, obj in _rule_objects(stack_name) for p in k8s_schema.validate(obj.manifest)]
    assert problems == []


def test_promtool_check_rules_on_every_group(stack_name: str, tmp_path: Path) -> None:
    files = [path for _, _, path in _write_rule_files(stack_name, tmp_path)]
    spec = nights.spec(stack_name)
    assert len(files) == len(nights.representatives(stack_name)) * (len(spec.models) + 1 + len(spec.edges))
    result = _promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


# ---- promtool unit tests: each alert fires above its threshold and stays quiet below ----------

def _alert_rule(rule_file: dict, name: str, **labels: str) -> dict:
    return next(r for g in rule_file["groups"] for r in g["rules"]
                if r.get("alert") == name and all(r["labels"].get(k) == v for k, v in labels.items()))


def _case(series: list[tuple[str, str]], alert: dict, at: str, fires: bool, **expr_labels: str) -> dict:
    """One promtool test: `series` as (selector, values); expect `alert` firing at `at` (or not)."""
    expected = []
    if fires:
        annotations = {k: v.replace("{{ $labels.pod }}", expr_labels.get("pod", "")) for k, v in alert["annotations"].items()}
        expected = [{"exp_labels": {**alert["labels"], **expr_labels}, "exp_annotations": annotations}]
    return {"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [{"eval_time": at, "alertname": alert["alert"], "exp_alerts": expected}]}


def _series(metric: str, **labels: str) -> str:
    return metric + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _ids(spec: StackSpec, model: Model, workloads: tuple[ModelPlan, ...]) -> dict[str, str]:
    """The labels of the series a model's rules read: a disaggregated model's from its decode
    servers' Service (every request ends there, counted once)."""
    ids = {"namespace": inference_namespace(spec), "model_name": model.name}
    return {**ids, "service": f"{model.name}-decode"} if len(workloads) > 1 else ids


def _model_cases(spec: StackSpec, model: Model, plan: ModelPlan, rules: dict,
                 workloads: tuple[ModelPlan, ...]) -> list[dict]:
    e = engines.metrics(model)
    ids = _ids(spec, model, workloads)
    cases = []

    alert = _alert_rule(rules, "PeaknightTokensAboveCapacity", model=model.name)
    cap_min = plan.capacity_tps.value * 60
    for factor, fires in ((1.1, True), (0.9, False)):
        per_min = cap_min * factor  # split 3:1 input/output: the alert must add both counters
        cases.append(_case([(_series(e.prompt_tokens_metric, **ids), f"0+{per_min * 0.75:.6e}x30"),
                            (_series(e.generation_tokens_metric, **ids), f"0+{per_min * 0.25:.6e}x30")],
                           alert, "10m", fires))

    alert = _alert_rule(rules, "PeaknightReplicaNotReady", model=model.name)
    budget_min = startup_budget(model) // 60
    at = f"{budget_min + 2}m"
    for workload in workloads:  # a worker pod of a group, or a Deployment's pod
        pod = _pod(workload, group=3, worker=1)
        pending = _series("kube_pod_status_phase", namespace=ids["namespace"], pod=pod, phase="Pending")
        unready = _series("kube_pod_status_ready", namespace=ids["namespace"], pod=pod, condition="false")
        # Pending, then running but not ready: still inside the alert across the whole budget.
        cases.append(_case([(pending, f"1x5 0x{budget_min + 5}"), (unready, f"0x5 1x{budget_min + 5}")],
                           alert, at, True, pod=pod))
        cases.append(_case([(pending, f"1x5 0x{budget_min + 5}"), (unready, f"0x5 1x{budget_min - 8} 0x20")],
                           alert, at, False))

    cases += _router_cases(spec, model, rules, workloads)

    slo = spec.slo
    for name, histogram, threshold in [("PeaknightTtftP99OverSlo", e.ttft_histogram, slo.ttft_p99_seconds),
                                       *[("PeaknightItlP99OverSlo", h, slo.itl_p99_seconds) for h in e.itl_histograms]]:
        alert = _alert_rule(rules, name, model=model.name)
        for slow, fires in ((True, True), (False, False)):
            low, high = ("0+0x20", "0+10x20") if slow else ("0+10x20", "0+10x20")
            buckets = [(f"{threshold / 2:g}", low), (f"{threshold * 4:g}", high), ("+Inf", high)]
            cases.append(_case([(_series(f"{histogram}_bucket", **ids, le=le), v) for le, v in buckets],
                               alert, "15m", fires))
    return cases


def _rank_labels(model: Model, rank: int) -> dict[str, str]:
    """The per-scheduler labels of an engine's gauges: SGLang 0.5.4 labels each DP rank's
    (srt/managers/scheduler_metrics_mixin.py init_metrics), vLLM 0.11.0 each engine's
    (vllm/v1/metrics/loggers.py)."""
    if model.engine is Engine.SGLANG:
        return {"engine_type": "unified", "tp_rank": str(rank), "pp_rank": "0", "dp_rank": str(rank)}
    return {"engine": str(rank)}


def _pod(workload: ModelPlan, group: int = 0, worker: int = 0) -> str:
    """A pod of the workload: a Deployment's `<name>-<hash>-<5>`, or an LWS group's leader
    `<name>-<group>` (worker 0) or worker `<name>-<group>-<worker>`."""
    if workload.nodes_per_replica == 1:
        return f"{workload.name}-7d9f8c6b5-{'x2k9q' if group % 2 == 0 else 'p4m2z'}"
    return f"{workload.name}-{group}" + (f"-{worker}" if worker else "")


def _router_cases(spec: StackSpec, model: Model, rules: dict, workloads: tuple[ModelPlan, ...]) -> list[dict]:
    """The endpoint picker: down when no pod of it is up; erroring above slo.unmetTokensPct of requests.
    A disaggregated model has none (SGLang's router in front of it), and no alert on one."""
    names = {r.get("alert") for g in rules["groups"] for r in g["rules"]}
    if len(workloads) > 1:
        assert not names & {"PeaknightEndpointPickerDown", "PeaknightEndpointPickerErrors"}
        return []
    # One picker per shard (builders/shards.py: broadcast greetings has 8): down when any shard has
    # no pod up, quiet while every shard has one.
    k = int(routing.pickers(spec, model, workloads[0]).shards.value)
    services = [f"{name}-epp" for name in shards.names(model, k)]
    ids = {"namespace": inference_namespace(spec), "service": services[0]}
    up = [(_series("up", **ids, pod=f"{services[0]}-{i}"), values) for i, values in enumerate(("1x3 0x20", "0x30"))]
    others = [(_series("up", namespace=ids["namespace"], service=svc, pod=f"{svc}-0"), "1x30") for svc in services[1:]]
    alert = _alert_rule(rules, "PeaknightEndpointPickerDown", model=model.name)
    cases = [_case(up + others, alert, "10m", True), _case([(up[0][0], "1x30"), up[1]] + others, alert, "10m", False)]
    alert = _alert_rule(rules, "PeaknightEndpointPickerErrors", model=model.name)
    allowed = spec.slo.unmet_tokens_pct / 100
    for factor, fires in ((2, True), (0.5, False)):
        cases.append(_case([(_series("llm_d_epp_request_total", **ids), "0+60000x20"),
                            (_series("llm_d_epp_request_error_total", **ids, error_code="Internal"),
                             f"0+{60000 * allowed * factor:g}x20")], alert, "10m", fires))
    return cases


def _ladder_cases(spec: StackSpec, model: Model, plan: ModelPlan, rules: dict,
                  workloads: tuple[ModelPlan, ...]) -> list[dict]:
    """The ladder's step from two ready replicas of the bounding workload (`plan`): quiet at half
    their rate, step 1 at 0.95 of it (over targetUtilisation), step 3 once the engines hold 0.9 of
    the plan's queue per replica. A group's workers and the other phase's ready pods are no replicas
    of it: were they counted, step 1 would not fire."""
    if model.ladder is None:
        return []
    e = engines.metrics(model)
    ns = inference_namespace(spec)
    ids = _ids(spec, model, workloads)
    alert = _alert_rule(rules, "PeaknightLadderStepActive", model=model.name)
    pods = [_pod(plan, group=0), _pod(plan, group=1)]
    others = [_pod(w, group=g) for w in workloads if w is not plan for g in (0, 1)]
    if plan.nodes_per_replica > 1:
        others += [_pod(plan, group=0, worker=1), _pod(plan, group=1, worker=1)]
    ready = [(_series("kube_pod_status_ready", namespace=ns, pod=p, condition="true"), "1x30") for p in pods + others]
    queue = admission.queue(spec, plan).value
    cases = []
    for share, waiting, step in ((0.5, 0, 0), (0.95, 0, 1), (0.95, (math.ceil(0.9 * queue) + 1) * 2, 3)):
        per_second = share * 2 * plan.replica_tps.value
        series = ready + [(_series(e.prompt_tokens_metric, **ids), _counter(per_second * model.input_share)),
                          (_series(e.generation_tokens_metric, **ids), _counter(per_second * (1 - model.input_share)))]
        # The waiting requests as the engine exports them: the two replicas' leaders, one series per
        # scheduler rank on the leader's node (tests/test_engine_metric_fixtures.py says whose
        # shape), sharing `waiting` evenly; the other phase's servers idle.
        for w in workloads:
            ranks = autoscaling.ranks(model, w)
            per_pod = max(1, ranks // w.nodes_per_replica)
            share_of = waiting / (2 * ranks) if w is plan else 0
            labels = {"namespace": ns, "model_name": model.name, **({"service": w.name} if w.phase else {})}
            series += [(_series(e.waiting_metric, **labels, pod=_pod(w, group=g), **_rank_labels(model, r)),
                        f"{share_of:g}x30") for g in (0, 1) for r in range(per_pod)]
        case = _case(series, alert, "10m", step > 0)
        for expected in case["alert_rule_test"][0]["exp_alerts"]:
            expected["exp_annotations"] = {k: v.replace("{{ $value }}", str(step))
                                           for k, v in expected["exp_annotations"].items()}
        cases.append(case)
    return cases


def _signal_cases(spec: StackSpec, cluster: str, model: Model, rules: dict,
                  workloads: tuple[ModelPlan, ...]) -> list[dict]:
    """Engine metrics missing while a replica (of any workload) is ready: for a disaggregated model,
    missing from its decode servers, which the tokens and the autoscaler read, even while its prefill
    servers' are scraped; KEDA's scaler errors on any workload's ScaledObject, then its fallback."""
    e = engines.metrics(model)
    ns = inference_namespace(spec)
    ids = _ids(spec, model, workloads)
    tokens = (_series(e.generation_tokens_metric, **ids), _counter(1000))
    alert = _alert_rule(rules, "PeaknightEngineMetricsMissing", model=model.name)
    cases = []
    for workload in workloads:
        ready = (_series("kube_pod_status_ready", namespace=ns, pod=_pod(workload, group=3, worker=1),
                         condition="true"), "1x30")
        # absent() carries the selector's equality labels.
        cases += [_case([ready], alert, "10m", True, **ids),
                  _case([ready, tokens], alert, "10m", False),
                  _case([(ready[0], "0x30")], alert, "10m", False)]
        if len(workloads) > 1:
            prefill = (_series(e.generation_tokens_metric, **{**ids, "service": f"{model.name}-prefill"}), _counter(1000))
            cases.append(_case([ready, prefill], alert, "10m", True, **ids))
    if next(c for c in spec.clusters if c.name == cluster).autoscaler.value != "keda":
        return cases
    for workload in workloads:  # one ScaledObject per workload
        errors = _series("keda_scaler_detail_errors_total", namespace="keda", exported_namespace=ns,
                         scaledObject=workload.name, scaler="prometheusScaler", triggerIndex="0", type="scaledobject")
        for name in ("PeaknightKedaScalerErrors", "PeaknightKedaFallbackActive"):
            alert = _alert_rule(rules, name, model=model.name)
            cases += [_case([(errors, "0+4x30")], alert, "10m", True), _case([(errors, "7x30")], alert, "10m", False)]
    return cases


def _launch_cases(scope: StackSpec, cluster: str, rules: dict) -> list[dict]:
    """Karpenter's Create errors: any error but capacity pages as a launch failure, capacity warns."""
    names = {r.get("alert") for g in rules["groups"] for r in g["rules"]}
    if "PeaknightNodeLaunchFailing" not in names:
        kind = next(c for c in scope.clusters if c.name == cluster).provisioner.kind
        assert kind != "karpenter-aws" and "PeaknightInsufficientCapacity" not in names
        return []
    def errors(error: str) -> str:
        return _series("karpenter_cloudprovider_errors_total", controller="nodeclaim.lifecycle", method="Create",
                       provider="aws", error=error)
    launch = _alert_rule(rules, "PeaknightNodeLaunchFailing")
    ice = _alert_rule(rules, "PeaknightInsufficientCapacity")
    return [_case([(errors("CreateError"), "0+1x30")], launch, "10m", True),
            _case([(errors("InsufficientCapacityError"), "0+1x30")], launch, "10m", False),
            _case([(errors("InsufficientCapacityError"), "0+1x30")], ice, "10m", True),
            _case([(errors("CreateError"), "0+1x30")], ice, "10m", False)]


def _pool_cases(plan, rules: dict) -> list[dict]:
    cases = []
    for pool in plan.pools:
        alert = _alert_rule(rules, "PeaknightNodePoolAtGpuLimit", nodepool=pool.pool)
        usage = _series("karpenter_nodepools_usage", nodepool=pool.pool, resource_type="nvidia.com/gpu")
        limit = int(pool.gpu_limit.value)
        cases.append(_case([(usage, f"{limit}x15")], alert, "10m", True))
        cases.append(_case([(usage, f"{limit - pool.gpus_per_node}x15")], alert, "10m", False))
    return cases


def _counter(per_second: float) -> str:
    """promtool values of a counter growing at `per_second` (samples a minute apart)."""
    return f"0+{per_second * 60:.6e}x30"


def _edge_traffic(spec: StackSpec, edge: Edge, rates: dict[tuple[str, str], float], egress_gbps: float,
                  bytes_per_s: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """Input series of one edge pod: requests/s per (cache status, status) and bytes/s per cache
    status as the log exporter counts them, and its NIC's transmit bytes as cAdvisor does."""
    pod = {"namespace": edge_namespace(spec), "pod": f"{edge.name}-5d8f7c9b4-q7w2e"}
    logged = {**pod, "service": edges.metrics_name(edge), "kind": "segment", "rendition": edge.renditions[0].name}
    series = [(_series(edge_logs.RESPONSES, **logged, cache=cache, status=status), _counter(rate))
              for (cache, status), rate in rates.items()]
    series += [(_series(edge_logs.RESPONSE_BYTES, **logged, cache=cache, status="200"), _counter(rate))
               for cache, rate in (bytes_per_s or {}).items()]
    nic = _series("container_network_transmit_bytes_total", **pod, interface="eth0")
    return series + [(nic, _counter(egress_gbps * 1e9 / 8))]


def _hit_ratio_cases(spec: StackSpec, edge: Edge, plan: EdgePlan, rules: dict) -> list[dict]:
    """Request hit ratio against the SLO, counting stale answers as hits and never the 403s that
    reach no cache; quiet while the stream is idle."""
    alert = _alert_rule(rules, "PeaknightEdgeHitRatioLow", edge=edge.name)
    peak, slo = plan.egress_gbps.value, spec.slo.edge_hit_ratio
    cases = []
    for misses, unsigned, egress, fires in ((2 * (1 - slo), 0, peak / 2, True),       # misses doubled
                                            ((1 - slo) / 2, 50, peak / 2, False),     # halved, many 403s
                                            (2 * (1 - slo), 0, peak / 1000, False)):  # idle stream
        hits = 100 * (1 - misses)
        rates = {("HIT", "200"): hits / 2, ("STALE", "200"): hits / 4, ("UPDATING", "200"): hits / 4,
                 ("MISS", "200"): 100 * misses / 2, ("EXPIRED", "200"): 100 * misses / 2, ("-", "403"): unsigned}
        cases.append(_case(_edge_traffic(spec, edge, rates, egress), alert, "15m", fires))
    return cases


def _error_ratio_cases(spec: StackSpec, edge: Edge, plan: EdgePlan, rules: dict) -> list[dict]:
    """5xx share of all responses against the SLO, while at least 1% of the peak's segment requests
    (viewers / segment duration) arrive."""
    alert = _alert_rule(rules, "PeaknightEdgeErrorRatioHigh", edge=edge.name)
    slo, live = spec.slo.edge_error_ratio, plan.viewers.value / edge.segment_seconds * 0.01
    cases = []
    for share, per_s, fires in ((2 * slo, live * 4, True), (slo / 2, live * 4, False), (2 * slo, live / 4, False)):
        rates = {("HIT", "200"): per_s * (1 - share), ("MISS", "502"): per_s * share / 2,
                 ("-", "504"): per_s * share / 2}
        cases.append(_case(_edge_traffic(spec, edge, rates, plan.egress_gbps.value / 2), alert, "10m", fires))
    return cases


def _edge_records_case(spec: StackSpec, edge: Edge) -> dict:
    """Recorded values from known traffic: 8 of 10 cacheable requests hits (the 10 403s/s aside),
    1 in 40 responses a 5xx, shield fetches the bytes of the edges' misses alone (2 Gbps of 82), and
    origin egress the bytes of the shields' misses alone (0.5 Gbps of the shields' 2)."""
    rates = {("HIT", "200"): 6, ("STALE", "200"): 1, ("UPDATING", "200"): 1, ("MISS", "200"): 1,
             ("MISS", "504"): 0.5, ("EXPIRED", "200"): 0.5, ("-", "403"): 10}
    gbyte = 1e9 / 8
    series = _edge_traffic(spec, edge, rates, 82, {"HIT": 80 * gbyte, "MISS": gbyte, "EXPIRED": gbyte})
    shield = {"namespace": edge_namespace(spec), "pod": f"{edge.name}-shield-0",
              "service": edges.metrics_name(edge, "shield"), "kind": "segment", "rendition": edge.renditions[0].name}
    series += [(_series(edge_logs.RESPONSE_BYTES, **shield, cache=cache, status="200"), _counter(rate))
               for cache, rate in (("HIT", 1.5 * gbyte), ("MISS", gbyte / 2))]
    window, rec = monitoring.RATE_WINDOW, f'{{edge="{edge.name}"}}'
    expected = [(f"edge:hit_ratio:rate{window}", rec, 0.8), (f"edge:error_ratio:rate{window}", rec, 0.025),
                (f"edge:shield_fetch_gbps:rate{window}", rec, 2.0), (f"edge:origin_gbps:rate{window}", rec, 0.5),
                (f"edge:egress_gbps:rate{window}", rec, 82.0),
                (f"edge:requests:rate{window}", rec, 20.0),
                (f"edge_cache:requests:rate{window}", f'{{cache="MISS", edge="{edge.name}"}}', 1.5)]
    return {"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [{"expr": name + labels, "eval_time": "10m",
                                  "exp_samples": [{"labels": name + labels, "value": value}]}
                                 for name, labels, value in expected]}


def _edge_cases(spec: StackSpec, edge: Edge, plan: EdgePlan, rules: dict) -> list[dict]:
    alert = _alert_rule(rules, "PeaknightEdgeEgressAboveCapacity", edge=edge.name)
    capacity = [_case(_edge_traffic(spec, edge, {}, plan.capacity_gbps.value * factor), alert, "10m", fires)
                for factor, fires in ((1.1, True), (0.9, False))]
    return (_hit_ratio_cases(spec, edge, plan, rules) + _error_ratio_cases(spec, edge, plan, rules) + capacity
            + [_edge_records_case(spec, edge)])


def _headline_case(spec: StackSpec, model: Model, workloads: tuple[ModelPlan, ...]) -> dict:
    """The recorded tokens/min is input + output per minute (6 B/min in, 6 B/min recorded); a
    disaggregated model's prefill servers count the prompts again, and are not added."""
    e = engines.metrics(model)
    ids = _ids(spec, model, workloads)
    again = [{"series": _series(e.prompt_tokens_metric, **{**ids, "service": f"{model.name}-prefill"}),
              "values": "0+4.5e9x20"}] if len(workloads) > 1 else []
    return {"interval": "1m",
            "input_series": [{"series": _series(e.prompt_tokens_metric, **ids), "values": "0+4.5e9x20"},
                             {"series": _series(e.generation_tokens_metric, **ids), "values": "0+1.5e9x20"}, *again],
            "promql_expr_test": [{"expr": f'model:tokens_per_minute:rate{monitoring.RATE_WINDOW}{{model="{model.name}"}}',
                                  "eval_time": "10m",
                                  "exp_samples": [{"labels": f'model:tokens_per_minute:rate{monitoring.RATE_WINDOW}'
                                                             f'{{model="{model.name}"}}', "value": 6e9}]}]}


@pytest.mark.realtool
def test_promtool_unit_tests_fire_and_stay_quiet(stack_name: str, tmp_path: Path) -> None:
    written = _write_rule_files(stack_name, tmp_path)
    spec = written[0][0].spec
    test_files = []
    for objects, cluster, path in written:
        rules = yaml.safe_load(path.read_text())
        cplan = objects.plan.cluster(cluster)
        model = next((m for m in spec.models if path.name == f"{cluster}.rules-{m.name}.yaml"), None)
        edge = next((e for e in spec.edges if path.name == f"{cluster}.rules-edge-{e.name}.yaml"), None)
        if model:
            cases = (_model_cases(spec, model, cplan.bounding(model.name), rules, cplan.phases(model.name))
                     + [_headline_case(spec, model, cplan.phases(model.name))]
                     + _ladder_cases(spec, model, cplan.bounding(model.name), rules, cplan.phases(model.name))
                     + _signal_cases(spec, cluster, model, rules, cplan.phases(model.name)))
        elif path.name == f"{cluster}.rules-pools.yaml":
            cases = _pool_cases(cplan, rules) + _launch_cases(spec, cluster, rules)
        else:
            cases = _edge_cases(spec, edge, cplan.edge(edge.name), rules)
        test = tmp_path / f"{path.stem}.test.yaml"
        test.write_text(yaml.safe_dump({"rule_files": [path.name], "evaluation_interval": EVAL, "tests": cases}))
        test_files.append(test)
    result = _promtool("test", "rules", *test_files)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert result.stdout.count("SUCCESS") == len(test_files)


def test_a_wrong_threshold_is_caught(tmp_path: Path) -> None:
    """The unit tests have teeth: a tokens alert at twice the plan's capacity fails its fire case."""
    objects, cluster, obj = next(_rule_objects("rehearsal"))
    rules = copy.deepcopy(obj.manifest["spec"])  # the night is shared (nights.py)
    alert = _alert_rule(rules, "PeaknightTokensAboveCapacity")
    spec = objects.spec
    model = next(m for m in spec.models if m.name == alert["labels"]["model"])
    cplan = objects.plan.cluster(cluster)
    cases = _model_cases(spec, model, cplan.bounding(model.name), rules, cplan.phases(model.name))[:1]
    threshold = float(alert["expr"].rsplit(">", 1)[1])
    alert["expr"] = alert["expr"].replace(f"> {monitoring._num(threshold)}", f"> {monitoring._num(threshold * 2)}")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"rule_files": ["r.yaml"], "evaluation_interval": EVAL,
                                                     "tests": cases}))
    result = _promtool("test", "rules", tmp_path / "t.yaml")
    assert result.returncode == 1
    assert "PeaknightTokensAboveCapacity" in result.stdout + result.stderr


@pytest.mark.parametrize("pod, matches", [("greetings-7d9f8c6b5-x2k9q", True), ("greetings-3", False),
                                          ("greetings-extra-7d9f8c6b5-x2k9q", False),
                                          # a picker shard's Deployment (builders/shards.py)
                                          ("greetings-s12-7d9f8c6b5-x2k9q", True),
                                          ("greetings-sx-7d9f8c6b5-x2k9q", False)])
def test_pod_pattern_of_a_deployment(pod: str, matches: bool) -> None:
    import re

    spec = nights.spec("rehearsal")
    objects = event.build(spec)
    model = spec.models[1]
    pattern = monitoring.pod_pattern(model.name, objects.plan.clusters[0].model(model.name).nodes_per_replica)
    assert bool(re.fullmatch(pattern, pod)) is matches


@pytest.mark.parametrize("engine_model", ["greetings", "deep-think"])
def test_prefix_cache_alert_fires_when_the_achieved_rate_leaves_the_plans_margin(engine_model, tmp_path: Path):
    """With models[].prefixCacheHitRate 0.563 (DeepSeek's published rate, docs/facts.md) and
    targetUtilisation 0.85, prefill fits down to an achieved 1 - 0.437 / 0.85 = 0.486: a rate of
    0.3 pages, 0.6 does not. greetings runs vLLM colocated (prefix_cache_hits/queries counters),
    deep-think SGLang disaggregated (cached_tokens_total, absent until a first hit: no hit at all must
    page too), its ratio read from its prefill servers (`service="deep-think-prefill"`: where prompts
    are prefilled; read with the decode servers' prompts as well, it would halve and 0.6 would page)
    and its tokens from its decode servers."""
    import dataclasses

    base = nights.spec("broadcast")
    spec = dataclasses.replace(base, models=tuple(dataclasses.replace(m, prefix_cache_hit_rate=0.563)
                                                  for m in base.models))
    objects = event.build(spec)
    cluster = spec.clusters[0].name
    model = next(m for m in spec.models if m.name == engine_model)
    cplan = objects.plan.cluster(cluster)
    plan, workloads = cplan.bounding(model.name), cplan.phases(model.name)
    assert len(workloads) == (2 if engine_model == "deep-think" else 1)
    group = monitoring.model_group(spec, spec.clusters[0], model, plan, workloads)
    assert monitoring.prefix_cache_floor(spec, model) == pytest.approx(1 - 0.437 / 0.85)
    rules = {"groups": [group]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(rules))
    alert = _alert_rule(rules, "PeaknightPrefixCacheHitRateLow", model=model.name)
    e = engines.metrics(model)
    ids = _ids(spec, model, workloads)
    prefilled = {**ids, "service": f"{model.name}-prefill"} if len(workloads) > 1 else ids
    per_s = plan.capacity_tps.value  # at planned capacity: well above the quiet floor
    traffic = [(_series(e.prompt_tokens_metric, **ids), f"0+{per_s * 60 * 0.75:.6e}x40"),
               (_series(e.generation_tokens_metric, **ids), f"0+{per_s * 60 * 0.25:.6e}x40")]
    queries = [] if e.prefix_cache_queries == e.prompt_tokens_metric and prefilled == ids else [
        (_series(e.prefix_cache_queries, **prefilled), f"0+{per_s * 60 * 0.75:.6e}x40")]
    cases = []
    for rate, fires in ((0.3, True), (0.6, False), (0.0, True)):
        hits = [] if rate == 0 and e.prefix_cache_hits.startswith("sglang") else [
            (_series(e.prefix_cache_hits, **prefilled), f"0+{per_s * 60 * 0.75 * rate:.6e}x40")]
        cases.append(_case(traffic + queries + hits, alert, "30m", fires))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"rule_files": ["r.yaml"], "evaluation_interval": EVAL,
                                                     "tests": cases}))
    result = _promtool("test", "rules", tmp_path / "t.yaml")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_no_prefix_cache_alert_where_the_plan_expects_too_little_to_miss():
    """At a prefixCacheHitRate within the plan's margin (0 for greetings and deep-think in the shipped
    broadcast) even a cold cache keeps prefill within it: the alert is not rendered rather than never
    firing. chat's 0.5 is beyond the margin: it has the alert."""
    spec = nights.spec("broadcast")
    objects = event.build(spec)
    cplan = objects.plan.clusters[0]
    rendered = {}
    for model in spec.models:
        group = monitoring.model_group(spec, spec.clusters[0], model, cplan.bounding(model.name),
                                       cplan.phases(model.name))
        has_alert = "PeaknightPrefixCacheHitRateLow" in {r.get("alert") for r in group["rules"]}
        assert has_alert is (monitoring.prefix_cache_floor(spec, model) > 0)
        rendered[model.name] = has_alert
    assert rendered == {"chat": True, "greetings": False, "deep-think": False}
