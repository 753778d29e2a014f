"""`peaknight simulate STACK [--plot FILE.png] [--step SECONDS]`: replay the night, judge it by the SLO.

Exit 1 when any model leaves more of the forecast's tokens unserved (unmet, or shed with 429) than
the stack's `slo.unmetTokensPct`.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, Callable, Optional

from peaknight.cli import errors, fleet
from peaknight.plan import cost
from peaknight.plan.gaps import Gap
from peaknight.plan.capacity import workload_names
from peaknight.spec import config
from peaknight.builders import event, steering
from peaknight.sim import plot as night_plot
from peaknight.sim import simulator
from peaknight.sim.simulator import ModelResult
from peaknight.spec.stack import StackSpec

# A step of at least a second keeps a 24-hour window to 86,400 steps a model (seconds to run);
# at most a minute, so a moment's one-minute ramp still spans a step.
STEP_RANGE = (1.0, 60.0)


# (JSON key, header) of each figure per workload, and how the table shows it.
COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("clusters", "clusters", str), ("served_pct", "served", lambda x: f"{x:.3f}%"),
    ("fallback_pct", "by fallback", lambda x: f"{x:.3f}%"), ("shortened_pct", "shortened", lambda x: f"{x:.3f}%"),
    ("shed_pct", "shed 429", lambda x: f"{x:.3f}%"), ("unmet_pct", "unmet tokens", lambda x: f"{x:.3f}%"),
    ("unmet_minutes", "unmet min", str), ("gpu_hours", "GPU-hours", lambda x: f"{x:,.0f}"),
    ("oracle_gpu_hours", "oracle GPU-h", lambda x: f"{x:,.0f}"), ("oracle_ratio", "ratio", lambda x: f"{x:.2f}"),
    ("policy_oracle_gpu_hours", "policy oracle GPU-h", lambda x: f"{x:,.0f}"),
    ("policy_ratio", "policy ratio", lambda x: f"{x:.2f}"),
    ("cost_usd", "cost", cost.usd), ("oracle_cost_usd", "oracle cost", cost.usd),
    ("policy_oracle_cost_usd", "policy oracle cost", cost.usd),
    ("unserved_pct", "forecast unserved", lambda x: f"{x:.3f}%"), ("status", "", str))


def replay(spec: StackSpec, only: fleet.Selection, step: float,
           injected: simulator.Faults) -> tuple[event.EventObjects, list[ModelResult]]:
    """The night of the selected clusters, and the selected models' workloads in it. Only the
    selected clusters are replayed (and their plan is the plot's capacity); every model is (a
    ladder's fallback serves another's overflow)."""
    objects = event.build(spec)
    objects = dataclasses.replace(
        objects, clusters=tuple(c for c in objects.clusters if only.cluster(c.cluster.name)),
        plan=dataclasses.replace(objects.plan, clusters=tuple(c for c in objects.plan.clusters if only.cluster(c.name))))
    model_of = {w: m.name for m in spec.models for w in workload_names(m)}
    return objects, [r for r in simulator.simulate(spec, objects, step, injected) if only.model(model_of[r.model])]


def _unmet_pct(results: list[ModelResult]) -> float:
    demand = sum(r.demand_tokens for r in results)
    return 100 * sum(r.unmet_tokens + r.shed_tokens for r in results) / demand if demand else 0.0


def floors_fall(spec: StackSpec, only: fleet.Selection, step: float, injected: simulator.Faults,
                results: list[ModelResult], gaps: tuple[Gap, ...]) -> dict[str, Any]:
    """`policy.floorsFallBetweenMoments` against the same night with the floors held (the default):
    the money the gaps save and the risk they take (tokens unserved, unmet or shed: with `--surge`
    in a gap, what a surge there costs)."""
    held_spec = dataclasses.replace(spec, policy=dataclasses.replace(spec.policy, floors_fall_between_moments=False))
    _, held = replay(held_spec, only, step, injected)
    spent = cost.total(r.cost_usd for r in results)
    held_cost = cost.total(r.cost_usd for r in held)
    return {"gaps": [{"after": g.after, "before": g.before, "start": f"{g.start:%H:%M}", "end": f"{g.end:%H:%M}"}
                     for g in gaps],
            "gpu_hours": sum(r.gpu_hours for r in results), "held_gpu_hours": sum(r.gpu_hours for r in held),
            "cost_usd": spent, "held_cost_usd": held_cost,
            "saved_usd": None if spent is None or held_cost is None else held_cost - spent,
            "unserved_pct": _unmet_pct(results), "held_unserved_pct": _unmet_pct(held)}


def floors_fall_line(f: dict[str, Any], spec: StackSpec) -> str:
    """What letting the floors fall between moments saves and risks, beside holding them."""
    saved = "no price" if f["saved_usd"] is None else cost.usd(f["saved_usd"])
    spans = ", ".join(f"{g['after']} -> {g['before']} {g['start']}-{g['end']}" for g in f["gaps"])
    return (f"floors fall between moments (policy.floorsFallBetweenMoments) in {spans} {spec.event.time_zone}: "
            f"{f['gpu_hours']:,.0f} GPU-hours vs {f['held_gpu_hours']:,.0f} with the floors held, saves {saved}; "
            f"tokens unserved {f['unserved_pct']:.3g}% vs {f['held_unserved_pct']:.3g}% held (a surge in a gap: "
            "--surge)")


def row(r: ModelResult, slo_pct: float) -> dict[str, Any]:
    """One workload's night over the clusters replayed: where its demand went, GPU-hours, the verdict."""
    return {"model": r.model, "clusters": r.clusters, "served_pct": r.share(r.served_tokens),
            "fallback_pct": r.share(r.fallback_tokens), "shortened_pct": r.share(r.shortened_tokens),
            "shed_pct": r.share(r.shed_tokens), "unmet_pct": r.unmet_pct, "unmet_minutes": len(r.unmet_minutes),
            "gpu_hours": r.gpu_hours, "oracle_gpu_hours": r.oracle_gpu_hours, "oracle_ratio": r.oracle_ratio,
            "policy_oracle_gpu_hours": r.policy_oracle_gpu_hours, "policy_ratio": r.policy_ratio,
            "cost_usd": r.cost_usd, "oracle_cost_usd": r.oracle_cost_usd, "policy_oracle_cost_usd": r.policy_oracle_cost_usd,
            "unserved_pct": r.unserved_pct, "status": "ok" if r.unserved_pct <= slo_pct else "OVER SLO"}


def table(rows: list[dict[str, Any]]) -> str:
    """Per workload: where its demand went (served, by the fallback, shortened, shed with 429,
    unmet), then GPU-hours against the oracle."""
    cells: list[tuple[str, ...]] = [("model", *(header for _, header, _ in COLUMNS))]
    cells += [(r["model"], *(show(r[key]) for key, _, show in COLUMNS)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def night_line(night: dict[str, Any]) -> str:
    """The event's totals: what it holds and costs against both oracles."""
    def ratio(oracle: float) -> str:
        return f"{night['gpu_hours'] / oracle:.2f}x" if oracle else "n/a"
    return (f"total: {night['gpu_hours']:,.0f} GPU-hours, {cost.usd(night['cost_usd'])}; oracle "
            f"{night['oracle_gpu_hours']:,.0f} GPU-hours, {cost.usd(night['oracle_cost_usd'])} "
            f"({ratio(night['oracle_gpu_hours'])}); policy oracle {night['policy_oracle_gpu_hours']:,.0f} GPU-hours, "
            f"{cost.usd(night['policy_oracle_cost_usd'])} ({ratio(night['policy_oracle_gpu_hours'])}: the waste the "
            "scaling can act on); on-demand prices per GPU-hour of each pool's dearest instance type in its "
            "cluster's region (peaknight:prices overrides)")


def when(spec: StackSpec, flag: str, value: str) -> float:
    """Seconds from the window's start of a moment's name, a local HH:MM on the night (after the
    window's start), or a local YYYY-MM-DDTHH:MM[:SS]; a ConfigError naming the flag otherwise."""
    window = spec.event.window
    moment = next((m for m in spec.event.moments if m.name == value), None)
    at: Optional[dt.datetime] = moment.at if moment else None
    if at is None:
        try:
            at = dt.datetime.fromisoformat(value)
        except ValueError:
            try:
                clock = dt.time.fromisoformat(value)
            except ValueError:
                clock = None
            if clock is not None:
                at = dt.datetime.combine(window.start.date(), clock)
                if at < window.start:
                    at += dt.timedelta(days=1)
    if at is None or not window.start - dt.timedelta(hours=12) <= at <= window.end:
        names = ", ".join(m.name for m in spec.event.moments)
        raise config.ConfigError([config.Problem(flag, flag, f"a moment ({names}), a local HH:MM or "
                                                 f"YYYY-MM-DDTHH:MM up to the window's end", repr(value))])
    return (at - window.start).total_seconds()


# A surge's load, as a fraction of each model's peak, and how long it holds.
SURGE_LOAD_MAX = 5.0
SURGE_MINUTES_MAX = 240


def parse_surge(spec: StackSpec, value: str) -> tuple[float, float, float]:
    """`TIME:LOAD:MINUTES` (TIME as --at takes it, so it may hold colons) as (start s, load, minutes)."""
    parts = value.rsplit(":", 2)
    expected = (f"TIME:LOAD:MINUTES (e.g. 19:45:0.9:10: a moment or local time, load 0-{SURGE_LOAD_MAX:g} "
                f"of peak, 1-{SURGE_MINUTES_MAX} minutes)")
    try:
        load, minutes = float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        raise config.ConfigError([config.Problem("--surge", "--surge", expected, repr(value))]) from None
    if not (0 < load <= SURGE_LOAD_MAX and 0 < minutes <= SURGE_MINUTES_MAX):   # also refuses nan
        raise config.ConfigError([config.Problem("--surge", "--surge", expected, repr(value))])
    return when(spec, "--surge", parts[0]), load, minutes


def faults(spec: StackSpec, args: argparse.Namespace) -> simulator.Faults:
    """The fault flags as the simulator's Faults; every bad flag is reported."""
    problems = []
    zones = {z for c in spec.clusters for z in c.zones}
    pools = {p.name for p in spec.gpu_pools}
    if args.lose_zone is not None and args.lose_zone not in zones:
        problems.append(config.Problem("--lose-zone", "--lose-zone", "a zone of the stack's clusters ("
                                       + ", ".join(sorted(zones)) + ")", repr(args.lose_zone)))
    clusters = {c.name for c in spec.clusters}
    regions = {c.region for c in spec.clusters}
    if args.lose_cluster is not None and args.lose_cluster not in clusters:
        problems.append(config.Problem("--lose-cluster", "--lose-cluster", "a cluster of the stack ("
                                       + ", ".join(sorted(clusters)) + ")", repr(args.lose_cluster)))
    if args.lose_region is not None and args.lose_region not in regions:
        problems.append(config.Problem("--lose-region", "--lose-region", "a region of the stack's clusters ("
                                       + ", ".join(sorted(regions)) + ")", repr(args.lose_region)))
    losses = [f for f, v in (("--lose-zone", args.lose_zone), ("--lose-cluster", args.lose_cluster),
                             ("--lose-region", args.lose_region)) if v is not None]
    if len(losses) > 1:
        problems.append(config.Problem(losses[1], losses[1], "one of --lose-zone, --lose-cluster, --lose-region "
                                       "(one --at)", " and ".join(losses)))
    if losses and args.at is None:
        problems.append(config.Problem("--at", "--at", f"the time {losses[0]} happens", "nothing"))
    if args.no_capacity is not None and args.no_capacity not in pools:
        problems.append(config.Problem("--no-capacity", "--no-capacity", "a pool of the stack ("
                                       + ", ".join(sorted(pools)) + ")", repr(args.no_capacity)))
    for flag, minutes in (("--down-minutes", args.down_minutes), ("--no-capacity-minutes", args.no_capacity_minutes)):
        if minutes <= 0:
            problems.append(config.Problem(flag, flag, "a positive number of minutes", str(minutes)))
    surge = None
    try:
        surge = parse_surge(spec, args.surge) if args.surge is not None else None
    except config.ConfigError as err:
        problems += err.problems
    try:
        lose_at = when(spec, "--at", args.at) if args.at is not None else 0.0
        empty = when(spec, "--prometheus-empty-until", args.prometheus_empty_until) \
            if args.prometheus_empty_until is not None else None
        down = when(spec, "--prometheus-down", args.prometheus_down) if args.prometheus_down is not None else None
        blocked = (when(spec, "--no-capacity-at", args.no_capacity_at) if args.no_capacity_at is not None
                   else -12 * 3600.0) if args.no_capacity is not None else None
    except config.ConfigError as err:
        problems += err.problems
        raise config.ConfigError(problems) from None
    if problems:
        raise config.ConfigError(problems)
    lost = tuple(c.name for c in spec.clusters if c.name == args.lose_cluster or c.region == args.lose_region)
    return simulator.Faults(
        surge=surge,
        lose_zone=args.lose_zone, lose_at=lose_at, prometheus_empty_until=empty,
        lose_clusters=lost, move_after=steering.move_seconds(spec),
        lost=f"cluster {args.lose_cluster}" if args.lose_cluster else f"region {args.lose_region}" if lost else "",
        prometheus_down=(down, down + 60 * args.down_minutes) if down is not None else None,
        no_capacity=(args.no_capacity, blocked, blocked + 60 * args.no_capacity_minutes)
        if args.no_capacity is not None and blocked is not None else None)


def moved(spec: StackSpec, f: simulator.Faults) -> str:
    """When the lost clusters' users reach the others, and why then."""
    if spec.steering is None:
        return "no peaknight:steering, so its users stay on it"
    if not steering.health_checked(spec):
        return "its DNS has no health check (TrafficRoute), so its users stay on it until the on-call disables its records"
    check = spec.steering.health_check
    if len(f.lose_clusters) == len(spec.clusters):
        return "no cluster is left for its users"
    return (f"its users reach the others {f.move_after:g} s later ({check.failure_threshold} failed health "
            f"checks {check.interval_seconds} s apart, then the {spec.steering.ttl_seconds} s TTL)")


def describe(spec: StackSpec, f: simulator.Faults) -> list[str]:
    """One line per fault, in local time."""
    start = spec.event.window.start

    def clock(t: float) -> str:
        return f"{start + dt.timedelta(seconds=t):%H:%M}"
    out = []
    if f.surge:
        out.append(f"unforecast surge to {f.surge[1]:g} of peak at {clock(f.surge[0])} for {f.surge[2]:g} min")
    if f.lose_zone:
        out.append(f"zone {f.lose_zone} lost at {clock(f.lose_at)} in every cluster that has it")
    if f.lose_clusters:
        many = f" ({len(f.lose_clusters)} clusters)" if len(f.lose_clusters) > 1 else ""
        out.append(f"{f.lost} lost at {clock(f.lose_at)}{many}: " + moved(spec, f))
    if f.prometheus_empty_until is not None:
        out.append(f"Prometheus answers with no series until {clock(f.prometheus_empty_until)}")
    if f.prometheus_down:
        out.append(f"Prometheus down {clock(f.prometheus_down[0])}-{clock(f.prometheus_down[1])}")
    if f.no_capacity:
        begin = "from the start" if f.no_capacity[1] < -6 * 3600 else clock(f.no_capacity[1])
        out.append(f"no capacity for pool {f.no_capacity[0]} {begin} to {clock(f.no_capacity[2])}")
    return out


def run(args: argparse.Namespace) -> int:
    if not STEP_RANGE[0] <= args.step <= STEP_RANGE[1]:   # also refuses nan
        raise config.ConfigError([config.Problem("--step", "--step", f"seconds from {STEP_RANGE[0]:g} to "
                                                 f"{STEP_RANGE[1]:g}", str(args.step))])
    loaded = config.load_stack(args.stack)
    spec = loaded.spec
    only = fleet.selection(spec, args)
    injected = faults(spec, args)
    if args.plot:
        errors.writable_file(Path(args.plot), "--plot")  # before the night is replayed, not after
    objects, results = replay(spec, only, args.step, injected)
    rows = [row(r, spec.slo.unmet_tokens_pct) for r in results]
    code = 1 if any(r["status"] != "ok" for r in rows) else 0
    night = {"gpu_hours": sum(r["gpu_hours"] for r in rows), "oracle_gpu_hours": sum(r["oracle_gpu_hours"] for r in rows),
             "cost_usd": cost.total(r["cost_usd"] for r in rows),
             "oracle_cost_usd": cost.total(r["oracle_cost_usd"] for r in rows),
             "policy_oracle_gpu_hours": sum(r["policy_oracle_gpu_hours"] for r in rows),
             "policy_oracle_cost_usd": cost.total(r["policy_oracle_cost_usd"] for r in rows)}
    gaps = objects.plan.clusters[0].models[0].gaps if objects.plan.clusters else ()
    if gaps:
        night["floors_fall"] = floors_fall(spec, only, args.step, injected, results, gaps)
    if args.format == "json":
        fleet.dump({"stack": loaded.name, "file": str(loaded.path), "step_s": args.step,
                    "clusters": [c.cluster.name for c in objects.clusters], "faults": describe(spec, injected),
                    "slo_unmet_tokens_pct": spec.slo.unmet_tokens_pct, "models": rows, "night": night})
        return code
    print(f"simulated night of stack '{loaded.name}' ({loaded.path}), {args.step:g} s steps, "
          f"{spec.event.window.start:%Y-%m-%d %H:%M} to {spec.event.window.end:%H:%M} {spec.event.time_zone}")
    if only.clusters is not None:
        print(f"clusters: {', '.join(c.cluster.name for c in objects.clusters)} (of {len(spec.clusters)})")
    for line in describe(spec, injected):
        print(f"fault: {line}")
    print(table(rows))
    print(night_line(night))
    if gaps:
        print(floors_fall_line(night["floors_fall"], spec))
    print("served: by the model's own replicas in full; by fallback: its ladder's fallback model (step 2); "
          "shortened: output the cap removed (step 1); shed 429: refused at the gateway with Retry-After "
          "(step 3); unmet: queued past the TTFT SLO")
    print(f"SLO: at most {spec.slo.unmet_tokens_pct:g}% of the forecast's tokens unserved (unmet: it would wait past "
          f"the {spec.slo.ttft_p99_seconds:g} s TTFT SLO, or shed with 429; a surge's own demand is not the "
          "forecast's); oracle = ready exactly when needed at target utilisation; policy oracle = ready exactly "
          f"when needed with the plan's own headroom ({spec.policy.headroom:g})"
          + (" and zone N+1 (surviving the loss of a zone)" if spec.policy.survive_zone_loss else "")
          + ": GPU-hours over it are the waste the scaling can act on")
    if args.plot:
        try:
            night_plot.write(spec, results, Path(args.plot), objects.plan, injected, describe(spec, injected),
                             args.plot_style)
        except OSError as err:  # what the check cannot foresee: a full disk
            raise config.ConfigError([config.Problem(args.plot, "--plot", "a writable file path",
                                                     err.strerror or str(err))]) from None
        print(f"plot written to {args.plot}")
    return code


def add_parser(sub: argparse._SubParsersAction, stack_help: str) -> None:
    s = sub.add_parser("simulate", help="replay the night through the autoscalers; exit 1 if unmet demand "
                                        "exceeds the SLO")
    s.add_argument("stack", help=stack_help)
    s.add_argument("--plot", help="write demand, ready capacity and replicas through the night to this PNG")
    s.add_argument("--plot-style", choices=night_plot.STYLES, default="planning",
                   help="planning: portrait, a panel per workload with replicas on a second axis (default); "
                        "war-room: landscape 16:9, one rate scale per panel, the headroom band, the alert "
                        "thresholds and the moments named above the panels")
    s.add_argument("--step", type=float, default=10.0, help="simulation step in seconds (default 10)")
    fleet.add_arguments(s)
    when_help = "a moment's name, a local HH:MM on the night, or YYYY-MM-DDTHH:MM"
    s.add_argument("--lose-zone", metavar="ZONE", help="lose this zone (in every cluster that has it) --at a time")
    s.add_argument("--lose-cluster", metavar="NAME", help="lose this whole cluster --at a time")
    s.add_argument("--lose-region", metavar="REGION", help="lose every cluster in this region --at a time")
    s.add_argument("--at", metavar="WHEN", help=f"when --lose-zone, --lose-cluster or --lose-region happens: {when_help}")
    s.add_argument("--prometheus-empty-until", metavar="WHEN",
                   help=f"Prometheus answers with no series from the start (first install) until {when_help}")
    s.add_argument("--prometheus-down", metavar="WHEN", help=f"Prometheus fails from {when_help} ...")
    s.add_argument("--down-minutes", type=float, default=10.0, help="... for this many minutes (default 10)")
    s.add_argument("--no-capacity", metavar="POOL", help="no new node of this pool can launch ...")
    s.add_argument("--no-capacity-at", metavar="WHEN", help=f"... from {when_help} (default: from before the "
                   "first pre-scale) ...")
    s.add_argument("--no-capacity-minutes", type=float, default=30.0, help="... for this many minutes (default 30)")
    s.add_argument("--surge", metavar="TIME:LOAD:MINUTES", help="unforecast demand: LOAD (fraction of each model's "
                   f"peak) from TIME ({when_help}) for MINUTES, on top of the forecast")
