"""Grafana dashboards for the night, one ConfigMap per cluster for Grafana's dashboard sidecar.

Each panel reads what the kit's own recording rules (builders/monitoring.py) or the series those
rules read produce, against the figure the plan or the SLO set for it: tokens/min against capacity
and forecast, latencies against the objectives, GPUs against the pool's limit. The dashboards are
built with Grafana's foundation SDK (typed builders, not hand-written JSON); tests/test_dashboards.py
checks that every query names only metrics the rules, engines and exporters produce.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as gc, dashboard as gd, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard as gm

from peaknight.builders import monitoring
from peaknight.builders.objects import Obj, meta, monitoring_namespace, weights_namespace
from peaknight.plan.capacity import ClusterPlan
from peaknight.provisioners import registry as provisioners
from peaknight.spec.stack import Cluster, StackSpec

NAME = "peaknight-dashboards"
# kube-prometheus-stack's Grafana sidecar loads every ConfigMap carrying this label, in any namespace
# (chart values grafana.sidecar.dashboards: label grafana_dashboard, labelValue "1", searchNamespace ALL).
SIDECAR_LABEL = {"grafana_dashboard": "1"}
# Every panel reads the dashboard's Prometheus data source, picked from a variable.
DATASOURCE = gm.DataSourceRef(type_val="prometheus", uid="${datasource}")
WIDTH = 12  # two panels a row on Grafana's 24-column grid


def _query(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)


def panel(title: str, unit: str, queries: Sequence[tuple[str, str]], limits: Sequence[tuple[float, str]] = (),
          description: str = "") -> timeseries.Panel:
    """A time series of `queries` (PromQL, legend), with each of `limits` (value, colour) drawn as a
    dashed line: the plan's or the SLO's figure the series is read against."""
    legend = gc.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST) \
        .placement(common.LegendPlacement.BOTTOM)
    p = (timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE).span(WIDTH)
         .height(8).legend(legend))
    for i, (expr, name) in enumerate(queries):
        p = p.with_target(_query(expr, name, chr(ord("A") + i)))
    steps = [gm.Threshold(value=None, color="transparent")] + [gm.Threshold(value=v, color=c) for v, c in sorted(limits)]
    p = p.thresholds(gd.ThresholdsConfig().mode(gm.ThresholdsMode.ABSOLUTE).steps(steps))
    if limits:
        p = p.thresholds_style(gc.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED))
    return p


def _new(spec: StackSpec, cluster: Cluster, kind: str, title: str) -> gd.Dashboard:
    # One Grafana's sidecar reads one cluster, so the event and the kind tell its dashboards apart
    # (at most 40 characters, Grafana's limit, whatever the event's name).
    uid = "peaknight-" + hashlib.sha256(f"{spec.event.name}/{kind}".encode()).hexdigest()[:20]
    return (gd.Dashboard(f"{spec.event.name} {cluster.name}: {title}").uid(uid)
            .tags(["peaknight", spec.event.name, cluster.name]).refresh("30s").time("now-6h", "now")
            .timezone(spec.event.time_zone)
            .with_variable(gd.DatasourceVariable("datasource").label("Prometheus").type("prometheus")))


def models_dashboard(spec: StackSpec, cluster: Cluster, plan: ClusterPlan) -> gd.Dashboard:
    """Per model: tokens/min against the plan, ladder step, TTFT/ITL against the SLO, queue and KV;
    then the GPU pools and the warm gate."""
    slo, util = spec.slo, spec.policy.target_utilisation
    board = _new(spec, cluster, "models", "models")
    for model in spec.models:
        bound = plan.bounding(model.name)
        rec = f'{{model="{model.name}"}}'
        board = board.with_row(gd.Row(model.name))
        board = board.with_panel(panel(
            "tokens/min against the plan", "short",
            [(f"model:tokens_per_minute:rate{monitoring.RATE_WINDOW}{rec}", "served")],
            [(bound.demand_tps.value * 60, "orange"), (bound.capacity_tps.value * 60, "red")],
            f"Forecast peak (orange) {bound.demand_tps.value * 60:,.0f} tok/min; planned capacity (red) "
            f"{bound.capacity_tps.value * 60:,.0f} tok/min: {bound.capacity_tps.why}"))
        if model.ladder is not None:
            board = board.with_panel(panel(
                "degradation ladder step", "none", [(f"model:ladder_step:current{rec}", "step")],
                [(1, "yellow"), (2, "orange"), (3, "red")], "0 none, 1 cap, 2 fallback, 3 shed with 429 "
                "(runbook: PeaknightLadderStepActive)"))
        board = board.with_panel(panel(
            "time to first token", "s",
            [(f"model:ttft_seconds:p99{rec}", "p99"), (f"model:ttft_seconds:p50{rec}", "p50")],
            [(slo.ttft_p99_seconds, "red")], f"slo.ttftP99Seconds = {slo.ttft_p99_seconds:g} s"))
        board = board.with_panel(panel(
            "inter-token latency", "s",
            [(f"model:itl_seconds:p99{rec}", "p99"), (f"model:itl_seconds:p50{rec}", "p50")],
            [(slo.itl_p99_seconds, "red")], f"slo.itlP99Seconds = {slo.itl_p99_seconds:g} s"))
        board = board.with_panel(panel(
            "requests waiting and running", "short",
            [(f"model:requests_waiting:sum{rec}", "waiting"), (f"model:requests_running:sum{rec}", "running")]))
        board = board.with_panel(panel(
            "KV cache in use", "percentunit", [(f"model:kv_cache_usage:avg{rec}", "KV cache")],
            [(util, "red")], f"policy.targetUtilisation {util:g}: the autoscaler's KV-cache target"))
    return _pools_and_warm_gate(spec, cluster, plan, board.with_row(gd.Row("GPU nodes and the warm gate")))


def _pools_and_warm_gate(spec: StackSpec, cluster: Cluster, plan: ClusterPlan, board: gd.Dashboard) -> gd.Dashboard:
    """GPUs in use per pool against its limit (node launches show as steps up), the provisioner's
    launch failures where it has a signal, and the warm gate: staging pods done, fillers ready."""
    for pool in plan.pools:
        board = board.with_panel(panel(
            f"pool {pool.pool}: GPUs in use (node launches)", "short",
            [(f'nodepool:gpus_in_use:max{{nodepool="{pool.pool}"}}', "GPUs in use")],
            [(pool.gpu_limit.value, "red")], f"limit {pool.gpu_limit.value:,.0f} = {pool.gpu_limit.why}"))
    failures = provisioners.for_cluster(cluster).launch_failures()
    if failures:
        board = board.with_panel(panel("node launch errors over 10m", "short",
                                       [(f.expr, f.alert) for f in failures]))
    ns = weights_namespace(spec)
    return board.with_panel(panel(
        "warm gate", "short",
        [(f'sum(kube_pod_status_phase{{namespace="{ns}", pod=~"stage-.*", phase="Succeeded"}})',
          "staging pods done"),
         (f'sum(kube_pod_status_ready{{namespace="{ns}", pod=~"fill-.*", condition="true"}})',
          "node cache fillers ready")],
        description="Staging Jobs (one per model and zone) done, and fillers ready: a filler is ready once its "
                    "node holds its pool's models (runbook: Wait for the warm gate)"))


def edges_dashboard(spec: StackSpec, cluster: Cluster, plan: ClusterPlan) -> gd.Dashboard:
    """Per live edge: hit ratio and 5xx against the SLO, egress against capacity, origin load."""
    slo, w = spec.slo, monitoring.RATE_WINDOW
    board = _new(spec, cluster, "edges", "live edges")
    for edge in spec.edges:
        ep = plan.edge(edge.name)
        rec = f'{{edge="{edge.name}"}}'
        board = (board.with_row(gd.Row(edge.name))
                 .with_panel(panel("cache hit ratio", "percentunit", [(f"edge:hit_ratio:rate{w}{rec}", "hit ratio")],
                                   [(slo.edge_hit_ratio, "red")], f"slo.edgeHitRatio = {slo.edge_hit_ratio:g}"))
                 .with_panel(panel("egress", "Gbits", [(f"edge:egress_gbps:rate{w}{rec}", "egress")],
                                   [(ep.egress_gbps.value, "orange"), (ep.capacity_gbps.value, "red")],
                                   f"forecast peak (orange) {ep.egress_gbps.value:,.1f} Gbps; capacity (red) "
                                   f"{ep.capacity_gbps.value:,.1f} Gbps"))
                 .with_panel(panel("origin load", "Gbits",
                                   [(f"edge:origin_gbps:rate{w}{rec}", "from the origins"),
                                    (f"edge:shield_fetch_gbps:rate{w}{rec}", "edge fills from the shields")]))
                 .with_panel(panel("requests by cache status and 5xx", "reqps",
                                   [(f"edge_cache:requests:rate{w}{rec}", "{{cache}}"),
                                    (f"edge:requests:rate{w}{rec}", "all")]))
                 .with_panel(panel("5xx ratio", "percentunit", [(f"edge:error_ratio:rate{w}{rec}", "5xx")],
                                   [(slo.edge_error_ratio, "red")], f"slo.edgeErrorRatio = {slo.edge_error_ratio:g}")))
    return board


def dashboards(spec: StackSpec, cluster: Cluster, plan: ClusterPlan) -> dict[str, str]:
    """The cluster's dashboards as the sidecar reads them: file name -> dashboard JSON."""
    boards = {"peaknight-models.json": models_dashboard(spec, cluster, plan)}
    if spec.edges:
        boards["peaknight-edges.json"] = edges_dashboard(spec, cluster, plan)
    return {name: json.dumps(b.build(), cls=JSONEncoder, sort_keys=True) for name, b in boards.items()}


def build(spec: StackSpec, cluster: Cluster, plan: ClusterPlan) -> Obj:
    """The ConfigMap the sidecar loads, in the event's monitoring namespace."""
    m = meta(spec, "monitoring", NAME, monitoring_namespace(spec), **SIDECAR_LABEL)
    return Obj({"apiVersion": "v1", "kind": "ConfigMap", "metadata": m, "data": dashboards(spec, cluster, plan)})
