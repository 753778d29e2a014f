"""The capacity plan as the tables SREs read (per cluster and model, per cluster and edge, and
totals) and as `--format json` gives it: one row per figure set, clusters with the same plan together."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from peaknight.builders.objects import Unit
from peaknight.plan.cost import PlanCost, unpriced, usd, window_hours
from peaknight.plan.capacity import CapacityPlan, ClusterPlan, EdgePlan, ModelPlan, OriginPlan, PoolPlan
from peaknight.plan.weights import WeightsPlan
from peaknight.plan.units import RATE_UNIT, capacity_meaning, per_minute


T = TypeVar("T")
# (cluster, workload) -> the serving recipe it follows, or UNPROVEN and why (plan/serving_recipes.py).
RecipeNotes = Mapping[tuple[str, str], str]


def si(x: float) -> str:
    """1.23G, 45.60M, 7.89k: big numbers at a glance."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def _columns(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Align a header row and its data: the first two columns left, numbers right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
    return lines


@dataclass(frozen=True)
class Selection:
    """What a fleet's report shows: the named clusters and models (None: all of them)."""

    clusters: frozenset[str] | None = None
    models: frozenset[str] | None = None

    def cluster(self, name: str) -> bool:
        return self.clusters is None or name in self.clusters

    def model(self, name: str) -> bool:
        """`name` is a model's (a workload's model for a disaggregated model's phases)."""
        return self.models is None or name in self.models


EVERYTHING = Selection()


@dataclass(frozen=True)
class Column:
    """One figure of a table: its key in `--format json`, its header and how the table shows it."""

    key: str
    header: str
    show: Callable[[Any], str]


def _count(x: float) -> str:
    return f"{int(x):,}"


def _ratio(x: float) -> str:
    return f"{x:.3f}"


def _slack(seconds: float) -> str:
    return duration(seconds) if seconds >= 0 else f"-{duration(-seconds)}"


MODEL_COLUMNS = (Column("replicas", "replicas", _count), Column("floor", "floor", _count),
                 Column("gpus", "GPUs", _count), Column("nodes", "nodes", _count),
                 Column("capacity_tpm", f"capacity {RATE_UNIT}", si), Column("forecast_tpm", f"forecast {RATE_UNIT}", si),
                 Column("headroom", "headroom", _ratio), Column("warmup_s", "warm-up", lambda x: duration(x)),
                 Column("surge", "surge", _count), Column("rollout_s", "rollout", lambda x: duration(x)),
                 Column("status", "", str))
# With costs: the workload's planned nodes over the window, before the status.
COSTED_MODEL_COLUMNS = (*MODEL_COLUMNS[:-1], Column("cost_usd", "cost", usd), MODEL_COLUMNS[-1])
WEIGHT_COLUMNS = (Column("staging_s", "staging", lambda x: duration(x)), Column("source_gib", "source/zone GiB", _count),
                  Column("source_mbps", "source MB/s", lambda x: f"{x:,.0f}"), Column("fill_s", "node fill", lambda x: duration(x)),
                  Column("slack_s", "slack", _slack), Column("status", "", str))
EDGE_COLUMNS = (Column("pods", "pods", _count), Column("max_pods", "max pods", _count), Column("shields", "shields", _count),
                Column("nodes", "nodes", _count), Column("viewers", "viewers", si),
                Column("capacity_gbps", "capacity Gbps", lambda x: f"{x:,.0f}"),
                Column("forecast_gbps", "forecast Gbps", lambda x: f"{x:,.0f}"),
                Column("origin_gbps", "origin Gbps", lambda x: f"{x:,.3f}"), Column("headroom", "headroom", _ratio),
                Column("status", "", str))


def model_row(m: ModelPlan) -> dict[str, Any]:
    return {"model": m.name, "replicas": int(m.replicas.value), "floor": int(m.floor_replicas.value),
            "gpus": int(m.gpus.value), "nodes": int(m.nodes.value), "capacity_tpm": per_minute(m.capacity_tps.value),
            "forecast_tpm": per_minute(m.demand_tps.value), "headroom": m.headroom, "warmup_s": m.warmup.value,
            "surge": int(m.surge.value), "rollout_s": m.rollout.value, "status": "SHORT" if m.short else "ok"}


def weight_row(w: WeightsPlan) -> dict[str, Any]:
    return {"model": w.model, "staging_s": w.staging.value, "source_gib": int(w.source_gib.value),
            "source_mbps": w.source_mbps.value, "fill_s": w.fill.value, "slack_s": w.slack.value,
            "status": "LATE" if w.late else "ok"}


def edge_row(e: EdgePlan) -> dict[str, Any]:
    sends = min(e.capacity_gbps.value, e.node_gbps.value)  # pods or nodes, whichever sends less
    return {"edge": e.edge, "pods": int(e.pods.value), "max_pods": int(e.max_pods.value), "shields": int(e.shields.value),
            "nodes": int(e.nodes.value), "viewers": e.viewers.value, "capacity_gbps": sends,
            "forecast_gbps": e.egress_gbps.value, "origin_gbps": e.origin_gbps.value,
            "headroom": sends / e.egress_gbps.value, "status": "SHORT" if e.short else "ok"}


def pool_row(p: PoolPlan) -> dict[str, Any]:
    return {"pool": p.pool, "nodes": int(p.nodes.value), "gpu_limit": int(p.gpu_limit.value),
            "zone_nodes": list(p.zone_nodes), "zone_floor_nodes": list(p.zone_floor_nodes), "disk_gib": int(p.disk_gib.value)}


@dataclass(frozen=True)
class Group:
    """Clusters whose plans show the same figures: one set of rows for all of them (16 identical
    clusters are 5 model rows, not 80). `plan` is the first cluster's, for `--explain`."""

    clusters: tuple[str, ...]
    plan: ClusterPlan
    rows: dict[str, list[dict[str, Any]]]

    @property
    def label(self) -> str:
        return _label(self.clusters)


def same(items: Iterable[tuple[str, T]]) -> list[tuple[tuple[str, ...], T]]:
    """(clusters, value) for each distinct value of (cluster, value) pairs, in first-seen order."""
    found: dict[str, tuple[list[str], T]] = {}
    for cluster, value in items:
        found.setdefault(json.dumps(value, sort_keys=True, default=str), ([], value))[0].append(cluster)
    return [(tuple(names), value) for names, value in found.values()]


def groups(plan: CapacityPlan, selection: Selection = EVERYTHING, costs: PlanCost | None = None) -> list[Group]:
    """The selected clusters, grouped by the figures the report shows of them (with `costs`, each
    workload's cost too: clusters at different prices are different groups)."""
    plans = {c.name: c for c in plan.clusters}
    every = selection.models is None

    def model(m: ModelPlan) -> dict[str, Any]:
        return {**model_row(m), "cost_usd": costs.of(m)} if costs else model_row(m)

    def rows(c: ClusterPlan) -> dict[str, list[dict[str, Any]]]:
        return {"models": [model(m) for m in c.models if selection.model(m.model)],
                "weights": [weight_row(w) for w in c.weights if selection.model(w.model)],
                "edges": [edge_row(e) for e in c.edges] if every else [],
                "pools": [pool_row(p) for p in c.pools] if every else [],
                "gateway": [{"pods": int(c.gateway.pods.value), "max_pods": int(c.gateway.max_pods.value)}]
                if every and c.gateway else []}
    return [Group(names, plans[names[0]], r)
            for names, r in same((c.name, rows(c)) for c in plan.clusters if selection.cluster(c.name))]


def _table(found: list[Group], part: str, first: str, columns: tuple[Column, ...]) -> list[str]:
    rows = [("cluster", first, *(c.header for c in columns))]
    rows += [(g.label, r[first], *(c.show(r[c.key]) for c in columns)) for g in found for r in g.rows[part]]
    return _columns(rows) if len(rows) > 1 else []


def table(plan: CapacityPlan, refused: Sequence[str], explain: bool = False,
          selection: Selection = EVERYTHING, costs: PlanCost | None = None, recipes: RecipeNotes | None = None) -> str:
    """The plan's tables and its total line; `refused` are the gate's SHORT lines (plan/gate.py).
    Clusters with the same figures share their rows (`<first> +N`, listed below the tables).
    With `costs`, a cost column and the night's cost per workload and in total."""
    found = groups(plan, selection, costs)
    lines = _table(found, "models", "model", COSTED_MODEL_COLUMNS if costs else MODEL_COLUMNS)
    lines += [""] + _table(found, "weights", "model", WEIGHT_COLUMNS)
    edges = _table(found, "edges", "edge", EDGE_COLUMNS)
    if edges:
        lines += [""] + edges
        lines += [origin_line(origin_row(plan.origin(name))) for name in _edges(found)]
    shared = [g for g in found if len(g.clusters) > 1]
    if shared:
        lines.append("")
        lines += [f"{g.label}: the same plan in each of {len(g.clusters)} clusters (figures are per cluster): "
                  + ", ".join(g.clusters) for g in shared]
    lines.append("")
    lines.append(f"{capacity_meaning(plan.survives_zone_loss)}; headroom = capacity / forecast")
    lines.append(summary(plan, refused))
    if plan.loss_gpus:
        lines.append(f"loss: {plan.loss_gpus.why}")
    if costs:
        lines.append(cost_line(costs, selection))
    lines += unproven(plan)
    if explain:
        lines.append("")
        lines.append(f"(rates below are tokens/s, the profiles' unit; the tables show them x 60 in {RATE_UNIT})")
        for g in found:
            lines += _explain(g, selection, recipes)
    return "\n".join(lines)


def _explain(group: Group, selection: Selection, recipes: RecipeNotes | None = None) -> list[str]:
    """How each figure of a group's plan was derived (the same in each of its clusters), and the
    serving recipe each workload follows."""
    c, name, lines = group.plan, group.label, []
    for m in (m for m in c.models if selection.model(m.model)):
        lines.append(f"{name}/{m.name}:")
        for label, fig in (("per replica", m.replica_tps), ("prefix-cache hit rate", m.prefix_hit_rate),
                           ("forecast", m.demand_tps), ("replicas", m.replicas),
                           ("floor", m.floor_replicas), ("GPUs", m.gpus), ("nodes", m.nodes),
                           ("capacity", m.capacity_tps), ("max replicas", m.max_replicas),
                           ("warm-up", m.warmup), ("surge", m.surge), ("rollout", m.rollout),
                           ("route timeout", m.longest_answer), ("forecast after a loss", m.loss_demand_tps),
                           ("capacity after a loss", m.loss_capacity_tps)):
            if fig is not None:
                lines.append(f"  {label}: {fig.why}")
        w = c.weight(m.model)
        for label, fig in (("weights staging", w.staging), ("weight source per zone", w.source_gib),
                           ("source throughput", w.source_mbps), ("node cache fill", w.fill),
                           ("warm-gate slack", w.slack)):
            lines.append(f"  {label}: {fig.why}")
        if recipes:
            lines.append(f"  recipe: {recipes[(c.name, m.name)]}")
    if selection.models is not None:
        return lines
    for p in c.pools:
        zones = "/".join(map(str, p.zone_nodes))
        floors = "/".join(map(str, p.zone_floor_nodes))
        lines.append(f"{name}/pool {p.pool}: nodes {p.nodes.why}; GPU limit {p.gpu_limit.why}; "
                     f"per zone {zones} (floor {floors}); local disk {p.disk_gib.why}")
    if c.gateway:
        lines.append(f"{name}/gateway: Envoy pods {c.gateway.pods.why}; at most {c.gateway.max_pods.why}")
    for e in c.edges:
        lines.append(f"{name}/edge {e.edge}:")
        for label, fig in (("viewers", e.viewers), ("mix", e.mix_kbps), ("egress", e.egress_gbps),
                           ("pods", e.pods), ("max pods", e.max_pods), ("capacity", e.capacity_gbps),
                           ("shield fetch", e.shield_fetch_gbps), ("shields", e.shields),
                           ("origin egress", e.origin_gbps), ("origin requests", e.origin_rps),
                           ("pods per node", e.pods_per_node), ("nodes", e.nodes), ("node egress", e.node_gbps)):
            lines.append(f"  {label}: {fig.why}")
    return lines


def duration(seconds: float) -> str:
    """2h05m, 24m: how long, at a glance."""
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def origin_row(origin: OriginPlan) -> dict[str, Any]:
    """The origin's figures for the whole night (what `origin_line` says)."""
    return {"edge": origin.edge, "gbps": origin.gbps.value, "rps": origin.rps.value, "shields": origin.shields,
            "night_tb": origin.night_tb, "window_hours": origin.window_hours,
            "viewer_gbps": origin.viewer_gbps.value, "offload": origin.offload}


def origin_line(o: dict[str, Any]) -> str:
    """The origin's view of the whole event: what it must serve, and what a backup inherits on failover."""
    return (f"origin of '{o['edge']}' for the night: {o['gbps']:,.2f} Gbps and {o['rps']:,.0f} req/s "
            f"at peak from {o['shields']:,} shields ({o['night_tb']:,.2f} TB over the {o['window_hours']:g} h "
            f"window); viewers get {o['viewer_gbps'] / 1000:,.1f} Tbps: offload at the origin "
            f"{o['offload']:.4%}; a backup origin takes the same load from the same shields")


def cloud_pools(units: Sequence[tuple[str, Unit]], selection: Selection = EVERYTHING) -> list[tuple[tuple[str, ...], list[dict[str, str]]]]:
    """The cloud's node pools the provisioners declare ({name, holds}), clusters with the same ones together."""
    per_cluster: dict[str, list[dict[str, str]]] = {}
    for cluster, unit in units:
        if selection.cluster(cluster):
            per_cluster.setdefault(cluster, []).extend({"name": c.name, "holds": c.summary,
                                                        **({"sources": c.sources} if c.sources else {})}
                                                       for c in unit.cloud)
    return [(names, pools) for names, pools in same(per_cluster.items()) if pools]


def cloud_table(found: list[tuple[tuple[str, ...], list[dict[str, str]]]], explain: bool = False) -> str:
    """The cloud node pools as a table (cluster, name, what it holds), or nothing; with `explain`,
    where the cloud's figures each uses come from."""
    rows = [("cluster", "cloud node pool", "holds")]
    rows += [(_label(names), p["name"], p["holds"]) for names, pools in found for p in pools]
    shared = [f"{_label(names)}: the same node pools in each of {len(names)} clusters: {', '.join(names)}"
              for names, _ in found if len(names) > 1]
    sources = [f"{_label(names)}/{p['name']} sources: {p['sources']}" for names, pools in found for p in pools
               if explain and "sources" in p]
    return "\n".join([*_columns(rows), *shared, *sources]) if len(rows) > 1 else ""


def _label(clusters: Sequence[str]) -> str:
    """A group's name in a table: its first cluster, and how many more share its rows."""
    return clusters[0] if len(clusters) == 1 else f"{clusters[0]} +{len(clusters) - 1}"


def totals(plan: CapacityPlan, refused: Sequence[str]) -> dict[str, Any]:
    """The night's totals, whatever a report selects: what the gate judged."""
    rates = [r for c in plan.clusters for r in c.model_rates().values()]
    return {"clusters": len(plan.clusters), "gpus": sum(int(m.gpus.value) for c in plan.clusters for m in c.models),
            "nodes": sum(c.nodes for c in plan.clusters), "forecast_tpm": per_minute(sum(d for d, _ in rates)),
            "capacity_tpm": per_minute(sum(c for _, c in rates)), "short": len(refused)}


def unproven(plan: CapacityPlan) -> list[str]:
    """One UNPROVEN line per workload whose throughput figure no public source measured on the
    fabric it renders on (plan/fabric.py; config refuses it without policy.allowUnproven), with the
    clusters it is so in, the row's fabric, source and recipe, and the derating applied."""
    found = same((c.name, [m.name, m.on_fabric.brief]) for c in plan.clusters for m in c.models
                 if m.on_fabric is not None and not m.on_fabric.proven)
    return [f"UNPROVEN: {name} ({_label(clusters)}) {brief}; planned under policy.allowUnproven"
            for clusters, (name, brief) in found]


def summary(plan: CapacityPlan, refused: Sequence[str]) -> str:
    """One line of the night's totals: "covered" only when the gate refuses nothing."""
    t = totals(plan, refused)
    return (f"total: {t['clusters']} clusters, {t['gpus']:,} GPUs on {t['nodes']:,} nodes; forecast "
            f"{si(t['forecast_tpm'])} {RATE_UNIT}, capacity {si(t['capacity_tpm'])} {RATE_UNIT}; "
            + (f"{t['short']} SHORT" if t["short"] else "all models and edges covered"))


def cost_document(costs: PlanCost, selection: Selection = EVERYTHING) -> dict[str, Any]:
    """The night's cost by the plan: each selected workload over every cluster, and the stack's."""
    models = {m.name: m.model for c in costs.plan.clusters for m in c.models}
    return {"window_hours": window_hours(costs.spec), "night_usd": costs.night(),
            "models": {name: x for name, x in costs.per_workload().items() if selection.model(models[name])}}


def cost_line(costs: PlanCost, selection: Selection = EVERYTHING) -> str:
    """One line: the stack's cost and each selected workload's (all clusters), and what it counts."""
    doc = cost_document(costs, selection)
    return (f"cost: {usd(doc['night_usd'])} for the {doc['window_hours']:g} h window at on-demand prices "
            "(planned GPU nodes held all window, each pool's dearest instance type; peaknight:prices overrides): "
            + ", ".join(f"{name} {usd(x)}" for name, x in doc["models"].items())
            + "".join(f"; no price for {t} in {region}: set peaknight:prices" for t, region in unpriced(costs.spec)))


def _edges(found: list[Group]) -> list[str]:
    return list(dict.fromkeys(r["edge"] for g in found for r in g.rows["edges"]))


def document(plan: CapacityPlan, refused: Sequence[str], warnings: Sequence[str], selection: Selection,
             cloud: list[tuple[tuple[str, ...], list[dict[str, str]]]], explain: bool = False,
             costs: PlanCost | None = None, recipes: RecipeNotes | None = None,
             unproven: Sequence[str] = ()) -> dict[str, Any]:
    """`peaknight plan --format json`: every figure of the tables (unrounded), the origin lines, the
    cloud node pools, the total, the cost, the SHORT lines, the UNPROVEN workloads and the warnings
    (README, "plan --format json")."""
    found = groups(plan, selection, costs)
    return {"groups": [{"clusters": list(g.clusters), **g.rows,
                        **({"explain": _explain(g, selection, recipes)} if explain else {})}
                       for g in found],
            "origins": [origin_row(plan.origin(name)) for name in _edges(found)],
            "cloud_pools": [{"clusters": list(names), "pools": pools} for names, pools in cloud],
            "total": totals(plan, refused), **({"cost": cost_document(costs, selection)} if costs else {}),
            "short": list(refused), "unproven": list(unproven), "warnings": list(warnings),
            "loss_gpus": int(plan.loss_gpus.value) if plan.loss_gpus else None}
