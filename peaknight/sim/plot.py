"""The simulated night as the picture an SRE puts in the review: one panel per model, demand, the
replicas' ready throughput and the plan's capacity (all clusters summed) against local time,
replicas on the right axis, moments shaded, each injected fault drawn where it happens, and, for
a model with a degradation ladder, what each step took (shortened, sent to the fallback, shed).

Rates are in tokens/min, the unit of the plan and of `peaknight diff` (plan/units.py), and the two
supply lines say what they are on the page: the plan's capacity is provisioned replicas at target
utilisation (largest zone lost where the policy says so); ready throughput is what the replicas
ready at each moment serve at their full rate, so it sits above the capacity line when all zones
are up.
"""
from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

from peaknight.plan.capacity import CapacityPlan, workload_names
from peaknight.plan.units import READY_MEANING, RATE_UNIT, capacity_meaning, per_minute
from peaknight.spec.forecast import moment_end
from peaknight.sim.simulator import NO_FAULTS, SURGE_RAMP, Faults, ModelResult
from peaknight.spec.stack import StackSpec

SCALE, SCALE_NAME = 1e9, "G"  # the y axis: billions of tokens per minute
# The ladder's shares of demand, drawn where they are not zero.
LADDER_LINES = (("shortened", "tab:olive", "shortened (ladder step 1: output cap)"),
                ("offloaded", "tab:cyan", "served by the fallback model (step 2)"),
                ("shed", "tab:brown", "shed with 429 (step 3)"))


def planned_capacity(plan: CapacityPlan, model: str) -> float:
    """The plan's capacity of `model`, summed over clusters, in tokens/min."""
    return per_minute(sum(m.capacity_tps.value for c in plan.clusters for m in c.models if m.name == model))


def mark_moments(ax: Any, spec: StackSpec) -> None:
    """Each moment shaded from its start until it is back at baseline, and named."""
    for m in spec.event.moments:
        ax.axvspan(m.at, moment_end(m), color="gold", alpha=0.25, lw=0)
        ax.annotate(m.name, (m.at, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -12),
                    textcoords="offset points", fontsize=8)


TITLE_WIDTH = 120   # characters a line of the title holds on the narrower (planning) figure


def title(spec: StackSpec, labels: tuple[str, ...] | list[str] = ()) -> str:
    """The event's name, local date and window, never a generic "night" (a morning event is none)."""
    window = spec.event.window
    end = f"{window.end:%H:%M}" if window.end.date() == window.start.date() else f"{window.end:%Y-%m-%d %H:%M}"
    text = (f"{spec.event.name}, {window.start:%Y-%m-%d %H:%M} to {end} {spec.event.time_zone}: "
            "replayed through the rendered autoscalers")
    # The injected faults below it, wrapped: a title never runs off the page.
    return "\n".join([text, *textwrap.wrap("; ".join(labels), TITLE_WIDTH)])


def draw_faults(ax: Any, spec: StackSpec, result: ModelResult, faults: Faults, start: dt.datetime,
                named: bool = True) -> None:
    """Each injected fault where it happens, clipped to the plot; a lost zone is named beside its
    line, or (`named` False: the war room, where text has its own places) in the legend."""
    first, last = result.trace.times[0], result.trace.times[-1]

    def at(t: float) -> dt.datetime:
        return start + dt.timedelta(seconds=min(max(t, first), last))

    if faults.surge:
        ax.axvspan(at(faults.surge[0]), at(faults.surge[0] + faults.surge[2] * 60 + 2 * SURGE_RAMP), color="tab:orange",
                   alpha=0.2, lw=0, label=f"unforecast surge ({faults.surge[1]:g} of peak)")
    if faults.lose_zone:
        ax.axvline(at(faults.lose_at), color="black", lw=1.5, ls=":",
                   label=None if named else f"zone {faults.lose_zone} lost")
        if named:
            ax.annotate(f"zone {faults.lose_zone} lost", (at(faults.lose_at), 0.5), xycoords=("data", "axes fraction"),
                        xytext=(3, 0), textcoords="offset points", fontsize=8, rotation=90)
    if faults.lose_clusters:
        # Dark until the users move (health checks, then the TTL); the whole plot when they never do.
        ax.axvline(at(faults.lose_at), color="black", lw=1.5, ls="--")
        ax.axvspan(at(faults.lose_at), at(faults.lose_at + faults.move_after), color="black", alpha=0.12, lw=0,
                   label=f"{faults.lost} dark, users not yet moved")
        ax.annotate(f"{faults.lost} lost", (at(faults.lose_at), 0.5), xycoords=("data", "axes fraction"),
                    xytext=(3, 0), textcoords="offset points", fontsize=8, rotation=90)
    if faults.prometheus_empty_until is not None:
        ax.axvspan(at(first), at(faults.prometheus_empty_until), color="tab:gray", alpha=0.15, lw=0,
                   label="Prometheus empty")
    if faults.prometheus_down:
        ax.axvspan(at(faults.prometheus_down[0]), at(faults.prometheus_down[1]), color="tab:red", alpha=0.2, lw=0,
                   label="Prometheus down")
    if faults.no_capacity and any(result.model in workload_names(m) and m.pool == faults.no_capacity[0]
                                   for m in spec.models):
        ax.axvspan(at(faults.no_capacity[1]), at(faults.no_capacity[2]), color="tab:purple", alpha=0.15, lw=0,
                   label=f"no {faults.no_capacity[0]} capacity")


def figure(spec: StackSpec, results: list[ModelResult], plan: CapacityPlan, faults: Faults = NO_FAULTS,
           labels: tuple[str, ...] | list[str] = ()) -> Any:
    """The matplotlib figure (Agg backend): tests read its lines and labels, write() saves it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(13, 3.6 * len(results)), sharex=True, squeeze=False)
    start = spec.event.window.start
    for ax, result in zip(axes[:, 0], results):
        tr = result.trace
        when = [start + dt.timedelta(seconds=t) for t in tr.times]
        ax.plot(when, [per_minute(d) / SCALE for d in tr.demand], color="tab:red", lw=1.6, label="demand")
        ax.plot(when, [per_minute(c) / SCALE for c in tr.capacity], color="tab:blue", lw=1.4,
                label="ready throughput (ready replicas x full rate)")
        for series, color, label in LADDER_LINES:
            values = getattr(tr, series)
            if any(values):
                ax.plot(when, [per_minute(v) / SCALE for v in values], color=color, lw=1.2, label=label)
        ax.axhline(planned_capacity(plan, result.model) / SCALE, color="tab:green", lw=1.2, ls=":",
                   label="planned capacity (target utilisation" + (", largest zone lost)" if plan.survives_zone_loss
                                                                   else ")"))
        ax.set_ylabel(f"{SCALE_NAME} {RATE_UNIT}")
        ax.set_ylim(bottom=0)
        right = ax.twinx()
        right.step(when, tr.replicas, where="post", color="tab:gray", lw=1, ls="--", label="replicas")
        right.set_ylabel("replicas")
        right.set_ylim(bottom=0)
        mark_moments(ax, spec)
        draw_faults(ax, spec, result, faults, start)
        ladder = (f"; shortened {result.share(result.shortened_tokens):.3f}%, by fallback "
                  f"{result.share(result.fallback_tokens):.3f}%, shed 429 {result.share(result.shed_tokens):.3f}%"
                  if any(m.name == result.model and m.ladder for m in spec.models) else "")
        ax.set_title(f"{result.model}: {result.clusters} clusters, unmet {result.unmet_pct:.3f}% of tokens "
                     f"({len(result.unmet_minutes)} min){ladder}, {result.gpu_hours:,.0f} GPU-h = "
                     f"{result.oracle_ratio:.2f}x oracle", fontsize=10, loc="left")
        lines = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(lines, [h.get_label() for h in lines], loc="upper left", fontsize=8, bbox_to_anchor=(0, 0.9))
        ax.grid(alpha=0.3)
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    axes[-1, 0].set_xlabel(f"local time ({spec.event.time_zone})")
    fig.suptitle(title(spec, labels), fontsize=12)
    fig.text(0.01, 0.002, f"{capacity_meaning(plan.survives_zone_loss)}; {READY_MEANING}", fontsize=8)
    fig.tight_layout(rect=(0, 0.015, 1, 1))
    return fig


# `simulate --plot-style`: the planning chart (portrait, replicas on a second axis) or the war
# room's landscape screen (peaknight/sim/war_room.py).
STYLES = ("planning", "war-room")


def write(spec: StackSpec, results: list[ModelResult], path: Path, plan: CapacityPlan, faults: Faults = NO_FAULTS,
          labels: tuple[str, ...] | list[str] = (), style: str = "planning") -> None:
    import matplotlib.pyplot as plt

    from peaknight.sim import war_room

    fig = (war_room.figure if style == "war-room" else figure)(spec, results, plan, faults, labels)
    fig.savefig(path, dpi=110)
    plt.close(fig)
