"""The rehearsal report: per model, what the plan promised against what the load replay measured.

From the same results `peaknight calibrate` reads (plan/loadresults.py), per model over all
clusters:
- planned: the plan's capacity (plan/units.py: planned replicas x per-replica rate x target
  utilisation) and the replay's peak demand, tokens/min;
- achieved: the highest throughput the replicas served in one stage (all clusters' pods summed,
  stage by stage: every cluster replays the same steps), tokens/min;
- TTFT and ITL p99: the worst stage's (the worst pod's p99, an upper bound of the fleet's);
- unmet demand: tokens of the requests that failed, as a share of the tokens sent;
- autoscaler lead: per moment and cluster, from its pre-scale cron (autoscaling.moment_floors:
  the moment minus its lead) to the first sample of the cluster's Prometheus export with at least
  the moment's planned replicas up; "n/a" without an export, "not reached" if it never was.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peaknight.builders import autoscaling
from peaknight.plan.capacity import CapacityPlan
from peaknight.plan.loadresults import ModelResults, StageResult
from peaknight.plan.report import si
from peaknight.plan.units import RATE_UNIT, per_minute
from peaknight.spec import timeline
from peaknight.spec.stack import StackSpec


@dataclass(frozen=True)
class Lead:
    cluster: str
    moment: str
    cron: dt.datetime                   # local time the pre-scale fires
    ready: dt.datetime | None           # local time the moment's replicas were first all up
    replicas: int

    @property
    def seconds(self) -> float | None:
        return None if self.ready is None else (self.ready - self.cron).total_seconds()


@dataclass(frozen=True)
class ModelReport:
    model: str
    planned_tpm: float
    demand_tpm: float
    achieved_tpm: float
    ttft_p99: float
    itl_p99: float
    unmet_pct: float
    steps: tuple[tuple[int, float, float, float], ...]   # (seconds, requested, achieved tok/min, replicas), summed
    leads: tuple[Lead, ...]


def _summed(results: list[ModelResults]) -> dict[int, list[StageResult]]:
    by_stage: dict[int, list[StageResult]] = defaultdict(list)
    for r in results:
        for s in r.stages:
            by_stage[s.index].append(s)
    return dict(sorted(by_stage.items()))


def _leads(spec: StackSpec, plan: CapacityPlan, results: ModelResults) -> list[Lead]:
    """Per moment, when the cluster's export first shows the moment's replicas up after its cron."""
    if not results.replicas_up:
        return []
    model = next(m for m in spec.models if m.name == results.model)
    out = []
    for name, start, _, replicas, _ in autoscaling.moment_floors(spec, model,
                                                                 plan.cluster(results.cluster).bounding(model.name)):
        cron = timeline.to_utc(spec, start).timestamp()
        ready = next((t for t, v in results.replicas_up if t >= cron and v >= replicas), None)
        local = None if ready is None else dt.datetime.fromtimestamp(ready, timeline.zone(spec)).replace(tzinfo=None)
        out.append(Lead(results.cluster, name, start, local, replicas))
    return out


def report(spec: StackSpec, plan: CapacityPlan, measured: list[ModelResults]) -> list[ModelReport]:
    out = []
    for model in spec.models:
        mine = [r for r in measured if r.model == model.name]
        if not mine:
            continue
        stages = _summed(mine)
        steps = tuple((ss[0].seconds, per_minute(sum(s.requested_tps for s in ss)),
                       per_minute(sum(s.tokens_per_second for s in ss)), sum(s.replicas for s in ss))
                      for ss in stages.values())
        every = [s for ss in stages.values() for s in ss]
        sent = sum(s.sent * s.request_tokens for s in every)
        failed = sum(s.failures * s.request_tokens for s in every)
        out.append(ModelReport(
            model.name,
            planned_tpm=per_minute(sum(c.bounding(model.name).capacity_tps.value for c in plan.clusters
                                       if c.name in {r.cluster for r in mine})),
            demand_tpm=max(s[1] for s in steps), achieved_tpm=max(s[2] for s in steps),
            ttft_p99=max(s.ttft_p99 for s in every), itl_p99=max(s.itl_p99 for s in every),
            unmet_pct=100 * failed / sent if sent else 0.0, steps=steps,
            leads=tuple(lead for r in mine for lead in _leads(spec, plan, r))))
    return out


def table(reports: list[ModelReport]) -> str:
    lines = [f"{'model':<12} {'planned':>10} {'peak demand':>12} {'achieved':>10} {'TTFT p99':>9} {'ITL p99':>8} "
             f"{'unmet':>8}  autoscaler lead (pre-scale cron -> moment's replicas up)"]
    for r in reports:
        done = [lead for lead in r.leads if lead.seconds is not None]
        missed = [f"{lead.cluster}/{lead.moment}" for lead in r.leads if lead.seconds is None]
        lead = ("n/a (no prometheus.json)" if not r.leads else
                (f"{min(x.seconds or 0 for x in done) / 60:.1f}-{max(x.seconds or 0 for x in done) / 60:.1f} min "
                 f"over {len(done)} moment(s)" if done else "")
                + (f"; NOT REACHED: {', '.join(missed)}" if missed else ""))
        lines.append(f"{r.model:<12} {si(r.planned_tpm):>10} {si(r.demand_tpm):>12} {si(r.achieved_tpm):>10} "
                     f"{r.ttft_p99:>8.3f}s {r.itl_p99:>7.3f}s {r.unmet_pct:>7.3f}%  {lead}")
    return "\n".join(lines)


def write_plot(spec: StackSpec, reports: list[ModelReport], path: Path) -> None:
    """One panel per model on the replay's clock (the window's start plus the stages' lengths):
    requested and achieved tokens/min, replicas on the right axis, moments shaded (sim/plot.py's
    conventions and units)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from peaknight.sim.plot import SCALE, SCALE_NAME, mark_moments

    fig, axes = plt.subplots(len(reports), 1, figsize=(13, 3.6 * len(reports)), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], reports):
        x = [spec.event.window.start]
        for step in r.steps:
            x.append(x[-1] + dt.timedelta(seconds=step[0]))
        ax.step(x, [s[1] / SCALE for s in r.steps] + [r.steps[-1][1] / SCALE], where="post", color="tab:red", lw=1.6,
                label="demand replayed")
        ax.step(x, [s[2] / SCALE for s in r.steps] + [r.steps[-1][2] / SCALE], where="post", color="tab:blue", lw=1.4,
                label="achieved (served, all load pods)")
        ax.axhline(r.planned_tpm / SCALE, color="tab:green", lw=1.2, ls=":", label="planned capacity")
        ax.set_ylabel(f"{SCALE_NAME} {RATE_UNIT}")
        ax.set_ylim(bottom=0)
        right = ax.twinx()
        right.step(x, [s[3] for s in r.steps] + [r.steps[-1][3]], where="post", color="tab:gray", lw=1, ls="--",
                   label="replicas serving")
        right.set_ylabel("replicas")
        right.set_ylim(bottom=0)
        mark_moments(ax, spec)
        ax.set_title(f"{r.model}: achieved peak {si(r.achieved_tpm)} of {si(r.demand_tpm)} {RATE_UNIT} replayed, "
                     f"TTFT p99 {r.ttft_p99:.2f} s, ITL p99 {r.itl_p99 * 1000:.0f} ms, unmet {r.unmet_pct:.3f}%",
                     fontsize=10, loc="left")
        handles: list[Any] = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8, bbox_to_anchor=(0, 0.9))
        ax.grid(alpha=0.3)
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    axes[-1, 0].set_xlabel(f"local time ({spec.event.time_zone}), on the replay's clock")
    fig.suptitle(f"{spec.event.name}: rehearsal measured by the load replay", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
