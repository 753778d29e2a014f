"""The capacity plan as the tables SREs read: per cluster and model, per cluster and edge, and totals."""
from __future__ import annotations

from typing import Sequence

from peaknight.builders.objects import Unit
from peaknight.plan.capacity import CapacityPlan, OriginPlan
from peaknight.plan.units import RATE_UNIT, capacity_meaning, per_minute


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


def table(plan: CapacityPlan, refused: Sequence[str], explain: bool = False) -> str:
    """The plan's tables and its total line; `refused` are the gate's SHORT lines (plan/gate.py)."""
    rows = [("cluster", "model", "replicas", "floor", "GPUs", "nodes", f"capacity {RATE_UNIT}",
             f"forecast {RATE_UNIT}", "headroom", "warm-up", "surge", "rollout", "")]
    for c in plan.clusters:
        for m in c.models:
            rows.append((c.name, m.name, f"{int(m.replicas.value):,}", f"{int(m.floor_replicas.value):,}",
                         f"{int(m.gpus.value):,}", f"{int(m.nodes.value):,}", si(per_minute(m.capacity_tps.value)),
                         si(per_minute(m.demand_tps.value)), f"{m.headroom:.3f}", duration(m.warmup.value),
                         f"{int(m.surge.value):,}", duration(m.rollout.value), "SHORT" if m.short else "ok"))
    lines = _columns(rows)
    weights = [("cluster", "model", "staging", "source/zone GiB", "source MB/s", "node fill", "slack", "")]
    for c in plan.clusters:
        for w in c.weights:
            weights.append((c.name, w.model, duration(w.staging.value), f"{int(w.source_gib.value):,}",
                            f"{w.source_mbps.value:,.0f}", duration(w.fill.value),
                            duration(w.slack.value) if not w.late else f"-{duration(-w.slack.value)}",
                            "LATE" if w.late else "ok"))
    lines += [""] + _columns(weights)
    edges = [("cluster", "edge", "pods", "max pods", "shields", "nodes", "viewers", "capacity Gbps", "forecast Gbps",
              "origin Gbps", "headroom", "")]
    for c in plan.clusters:
        for e in c.edges:
            edges.append((c.name, e.edge, f"{int(e.pods.value):,}", f"{int(e.max_pods.value):,}",
                          f"{int(e.shields.value):,}", f"{int(e.nodes.value):,}", si(e.viewers.value),
                          f"{min(e.capacity_gbps.value, e.node_gbps.value):,.0f}",
                          f"{e.egress_gbps.value:,.0f}", f"{e.origin_gbps.value:,.3f}",
                          f"{min(e.capacity_gbps.value, e.node_gbps.value) / e.egress_gbps.value:.3f}",
                          "SHORT" if e.short else "ok"))
    if len(edges) > 1:
        lines += [""] + _columns(edges)
        lines += [origin_line(plan.origin(name)) for name in dict.fromkeys(e.edge for c in plan.clusters for e in c.edges)]
    lines.append("")
    lines.append(f"{capacity_meaning(plan.survives_zone_loss)}; headroom = capacity / forecast")
    lines.append(summary(plan, refused))
    if explain:
        lines.append("")
        lines.append(f"(rates below are tokens/s, the profiles' unit; the tables show them x 60 in {RATE_UNIT})")
        for c in plan.clusters:
            for m in c.models:
                lines.append(f"{c.name}/{m.name}:")
                for label, fig in (("per replica", m.replica_tps), ("forecast", m.demand_tps), ("replicas", m.replicas),
                                   ("floor", m.floor_replicas), ("GPUs", m.gpus), ("nodes", m.nodes),
                                   ("capacity", m.capacity_tps), ("max replicas", m.max_replicas),
                                   ("warm-up", m.warmup), ("surge", m.surge), ("rollout", m.rollout),
                                   ("route timeout", m.longest_answer)):
                    lines.append(f"  {label}: {fig.why}")
                w = c.weight(m.model)
                for label, fig in (("weights staging", w.staging), ("weight source per zone", w.source_gib),
                                   ("source throughput", w.source_mbps), ("node cache fill", w.fill),
                                   ("warm-gate slack", w.slack)):
                    lines.append(f"  {label}: {fig.why}")
            for p in c.pools:
                zones = "/".join(map(str, p.zone_nodes))
                floors = "/".join(map(str, p.zone_floor_nodes))
                lines.append(f"{c.name}/pool {p.pool}: nodes {p.nodes.why}; GPU limit {p.gpu_limit.why}; "
                             f"per zone {zones} (floor {floors}); local disk {p.disk_gib.why}")
            if c.gateway:
                lines.append(f"{c.name}/gateway: Envoy pods {c.gateway.pods.why}; at most {c.gateway.max_pods.why}")
            for e in c.edges:
                lines.append(f"{c.name}/edge {e.edge}:")
                for label, fig in (("viewers", e.viewers), ("mix", e.mix_kbps), ("egress", e.egress_gbps),
                                   ("pods", e.pods), ("max pods", e.max_pods), ("capacity", e.capacity_gbps),
                                   ("shield fetch", e.shield_fetch_gbps), ("shields", e.shields),
                                   ("origin egress", e.origin_gbps), ("origin requests", e.origin_rps),
                                   ("pods per node", e.pods_per_node), ("nodes", e.nodes), ("node egress", e.node_gbps)):
                    lines.append(f"  {label}: {fig.why}")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """2h05m, 24m: how long, at a glance."""
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def origin_line(origin: OriginPlan) -> str:
    """The origin's view of the whole event: what it must serve, and what a backup inherits on failover."""
    return (f"origin of '{origin.edge}' for the night: {origin.gbps.value:,.2f} Gbps and {origin.rps.value:,.0f} req/s "
            f"at peak from {origin.shields:,} shields ({origin.night_tb:,.2f} TB over the {origin.window_hours:g} h "
            f"window); viewers get {origin.viewer_gbps.value / 1000:,.1f} Tbps: offload at the origin "
            f"{origin.offload:.4%}; a backup origin takes the same load from the same shields")


def cloud_pools(units: Sequence[tuple[str, Unit]]) -> str:
    """The cloud's node pools the provisioners declare (cluster, name, summary), or nothing."""
    rows = [("cluster", "cloud node pool", "holds")]
    rows += [(cluster, c.name, c.summary) for cluster, unit in units for c in unit.cloud]
    return "\n".join(_columns(rows)) if len(rows) > 1 else ""


def summary(plan: CapacityPlan, refused: Sequence[str]) -> str:
    """One line of the night's totals: "covered" only when the gate refuses nothing."""
    models = [m for c in plan.clusters for m in c.models]
    gpus = sum(int(m.gpus.value) for m in models)
    nodes = sum(c.nodes for c in plan.clusters)
    rates = [r for c in plan.clusters for r in c.model_rates().values()]
    demand = per_minute(sum(d for d, _ in rates))
    capacity = per_minute(sum(c for _, c in rates))
    return (f"total: {len(plan.clusters)} clusters, {gpus:,} GPUs on {nodes:,} nodes; forecast {si(demand)} {RATE_UNIT}, "
            f"capacity {si(capacity)} {RATE_UNIT}; "
            + (f"{len(refused)} SHORT" if refused else "all models and edges covered"))
