"""From what the rehearsal measured to profile rows: per-replica tokens/s at the latency objective.

For each model in each cluster, a stage *meets the objective* when its TTFT p99 is at most
`slo.ttftP99Seconds`, its inter-token latency p99 at most `slo.itlP99Seconds` and no request
failed. The best of those stages, per replica serving it, is what one replica served at the
objective. When every stage met it, the replicas were never pushed to their limit and the figure
is a floor of what they can do (`saturated` is false, and the CLI says so).

One request mix measures one mixed rate: the new row keeps the shipped row's prefill:decode ratio,
both scaled by k = measured / the shipped row's mixed rate at the measured input share, so that
capacity.mixed_tps(new row, that share) equals the measurement exactly. The row replaced is the one
the plan sized the model by (capacity.sizing_row: the slowest GPU its pool may be given); where
several clusters or models measure one row, the lowest measurement wins: the plan must hold in
every cluster. A disaggregated model is not calibrated here: one replica's mixed rate says nothing
of its prefill and decode groups apart (rows() returns it as skipped).

A derived row outside the plausible range of the shipped row it replaces (profiles.implausible:
at most 4x faster, a thousandth as fast) is never a row: the results that made it are bad input.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable

from peaknight.builders import loadreplay
from peaknight.plan import capacity, fabric
from peaknight.plan.loadresults import ModelResults, StageResult
from peaknight.spec import profiles
from peaknight.spec.config import ConfigError, Problem
from peaknight.spec.stack import StackSpec


@dataclass(frozen=True)
class Calibrated:
    """One profile row: the shipped (or previously calibrated) one and its measured replacement."""

    old: profiles.Throughput
    new: dict[str, Any]          # as calibration.yaml holds it (profiles.calibrated_rows)
    results: ModelResults
    stage: StageResult
    saturated: bool              # some stage missed the objective: the best one is near the limit

    @property
    def key(self) -> tuple[str, str, str, str]:
        return profiles.mapping_key(self.new)

    @property
    def input_share(self) -> float:
        return self.stage.input_tps / self.stage.tokens_per_second


def meets(spec: StackSpec, stage: StageResult) -> bool:
    return (stage.failures == 0 and stage.tokens_per_second > 0 and stage.ttft_p99 <= spec.slo.ttft_p99_seconds
            and stage.itl_p99 <= spec.slo.itl_p99_seconds)


def _row(spec: StackSpec, stack: str, results: ModelResults) -> Calibrated | None:
    good = [s for s in results.stages if meets(spec, s)]
    if not good:
        return None
    best = max(good, key=lambda s: s.per_replica)
    model = next(m for m in spec.models if m.name == results.model)
    pool = next(p for p in spec.gpu_pools if p.name == model.pool)
    cluster = next(c for c in spec.clusters if c.name == results.cluster)
    on = fabric.of(pool, cluster)
    old = capacity.sizing_row(model, pool, spec.slo.itl_p99_seconds, on)
    share = best.input_tps / best.tokens_per_second
    k = best.per_replica / capacity.mixed_tps(old, share)
    when = best.start.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    measured = f"rehearsal stack '{stack}' {when}, {loadreplay.TOOL} {loadreplay.TOOL_VERSION}"
    new = {**dataclasses.asdict(old), "prefill_tps": round(old.prefill_tps * k, 1),
           "decode_tps": round(old.decode_tps * k, 1),
           "latency_target": f"TTFT p99 <= {spec.slo.ttft_p99_seconds:g} s, ITL p99 <= {spec.slo.itl_p99_seconds:g} s",
           "source": (f"measured: {measured}; {results.cluster}/{results.model} stage {best.index}: "
                      f"{best.per_replica:,.0f} tok/s per replica over {best.replicas:g} at input share {share:.2f}; "
                      f"prefill:decode ratio of the row it replaces"),
           "measured": measured,
           # Measured where the rehearsal ran: on that fabric the row now applies as published
           # (plan/fabric.py), not derated again like the row it replaces. A row inside one node keeps its own.
           "fabric": on if on and fabric.crosses_nodes(old, capacity.gpus_per_node(pool)) else old.fabric}
    return Calibrated(old, new, results, best, saturated=len(good) < len(results.stages))


def rows(spec: StackSpec, stack: str,
         measured: Iterable[ModelResults]) -> tuple[list[Calibrated], list[ModelResults], list[ModelResults]]:
    """The calibrated rows (lowest measurement per row), the results no stage of which met the
    objective (nothing to calibrate from), and those of disaggregated models (not calibrated)."""
    best: dict[tuple[str, str, str, str], Calibrated] = {}
    missed, skipped, problems = [], [], []
    colocated = {m.name for m in spec.models if not m.disaggregated}
    for results in measured:
        if results.model not in colocated:
            skipped.append(results)
            continue
        row = _row(spec, stack, results)
        wrong = row and profiles.implausible(profiles.shipped_rows()[row.key], row.new["prefill_tps"],
                                             row.new["decode_tps"])
        if row is None:
            missed.append(results)
        elif wrong:
            problems.append(Problem(results.source, f"stage {row.stage.index}", f"a measurement giving {wrong}",
                                    f"{row.stage.per_replica:,.6g} tok/s per replica over {row.stage.replicas:g} "
                                    f"replicas: prefill {row.new['prefill_tps']:,.6g}, decode "
                                    f"{row.new['decode_tps']:,.6g}"))
        elif row.key not in best or row.new["prefill_tps"] < best[row.key].new["prefill_tps"]:
            best[row.key] = row
    if problems:
        raise ConfigError(problems)
    return sorted(best.values(), key=lambda r: r.key), missed, skipped


@dataclass(frozen=True)
class ClusterDelta:
    cluster: str
    gpus: tuple[int, int]        # before, after
    nodes: tuple[int, int]


def plan_delta(spec: StackSpec, calibrated: Iterable[Calibrated]) -> tuple[list[ClusterDelta], list[str]]:
    """The plan of `spec` (the broadcast) per cluster, with the current profiles and with the new
    rows; and, when the new plan does not fit a cluster's envelope, why (one line per excess)."""
    before = capacity.plan(spec, envelope=False)
    problems: list[str] = []
    with profiles.with_rows(c.new for c in calibrated):
        after = capacity.plan(spec, envelope=False)
        try:
            capacity.plan(spec)
        except capacity.EnvelopeError as err:
            problems = err.problems

    def gpus(plan: capacity.ClusterPlan) -> int:
        return sum(int(m.gpus.value) for m in plan.models)

    return [ClusterDelta(b.name, (gpus(b), gpus(a)), (b.nodes, a.nodes))
            for b, a in zip(before.clusters, after.clusters)], problems
