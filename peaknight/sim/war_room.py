"""The simulated event as the war room reads it on a wall screen: landscape, one rate scale per
panel (tok/min; no second axis), the headroom the plan holds above demand as a band, the alert
thresholds the render pages on (PeaknightTokensAboveCapacity at the plan's capacity; for a model
with a ladder, step 1 at target utilisation of the ready replicas' rate), and the moments marked in
every panel and named once, in a strip above the panels, staggered so no two names touch.

Every piece of text has its own place (titles above the panels, one legend below them, the
moments' names in their strip): a war room reads it from across the room, so nothing may overprint.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any

from peaknight.plan.capacity import CapacityPlan
from peaknight.plan.units import READY_MEANING, RATE_UNIT, capacity_meaning, per_minute
from peaknight.sim.plot import SCALE, SCALE_NAME, draw_faults, planned_capacity, title
from peaknight.sim.simulator import NO_FAULTS, Faults, ModelResult
from peaknight.spec.forecast import moment_end
from peaknight.spec.stack import StackSpec

SIZE = (16.0, 9.0)   # inches: a 16:9 screen
GAP_PX = 6.0         # the least room between two moment names on one row of the strip
LINE_SPACING = 1.5   # a strip row's height over its text's


def panel_title(spec: StackSpec, result: ModelResult) -> str:
    """Two short lines: who and how it went; the ladder's shares where the model has one."""
    first = (f"{result.model}: {result.clusters} clusters, peak {max(result.trace.replicas, default=0):,} replicas, "
             f"unmet {result.unmet_pct:.3f}% ({len(result.unmet_minutes)} min)")
    second = f"{result.gpu_hours:,.0f} GPU-h = {result.oracle_ratio:.2f}x oracle"
    if any(m.name == result.model and m.ladder for m in spec.models):
        second += (f"; shortened {result.share(result.shortened_tokens):.3f}%, fallback "
                   f"{result.share(result.fallback_tokens):.3f}%, shed {result.share(result.shed_tokens):.3f}%")
    return first + "\n" + second


def _panel(ax: Any, spec: StackSpec, result: ModelResult, plan: CapacityPlan, faults: Faults,
           start: dt.datetime) -> None:
    tr = result.trace
    when = [start + dt.timedelta(seconds=t) for t in tr.times]
    demand = [per_minute(d) / SCALE for d in tr.demand]
    ready = [per_minute(c) / SCALE for c in tr.capacity]
    planned = planned_capacity(plan, result.model) / SCALE
    ax.fill_between(when, demand, [max(d, planned) for d in demand], color="tab:green", alpha=0.12, lw=0,
                    label="headroom: planned capacity above demand")
    ax.plot(when, demand, color="tab:red", lw=1.6, label="demand")
    ax.plot(when, ready, color="tab:blue", lw=1.3, label="ready throughput (ready replicas x full rate)")
    ax.axhline(planned, color="tab:green", lw=1.4, ls="--",
               label="alert PeaknightTokensAboveCapacity = planned capacity, all clusters")
    if any(m.name == result.model and m.ladder for m in spec.models):
        util = spec.policy.target_utilisation
        ax.plot(when, [util * r for r in ready], color="tab:olive", lw=1.0, ls="-.",
                label=f"alert PeaknightLadderStepActive (step 1): {util:g} x ready throughput")
    for moment in spec.event.moments:
        ax.axvspan(moment.at, moment_end(moment), color="gold", alpha=0.22, lw=0)
        ax.axvline(moment.at, color="goldenrod", lw=0.8)
    draw_faults(ax, spec, result, faults, start, named=False)
    ax.set_ylim(0, max([planned, *demand, *ready, 1e-9]) * 1.08)
    ax.set_ylabel(f"{SCALE_NAME} {RATE_UNIT}", fontsize=9)
    ax.set_title(panel_title(spec, result), fontsize=9, loc="left")
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def stagger(strip: Any, spec: StackSpec, renderer: Any) -> list[list[Any]]:
    """Each moment's name and local time in the strip above a column, at its start (right-aligned at
    its end where it would run past the axes), on the first row where it touches no other name:
    the rows, top first (their heights are set once the strip is sized for them)."""
    rows: list[list[Any]] = []
    for moment in sorted(spec.event.moments, key=lambda m: m.at):
        text = strip.text(moment.at, 0.5, f"{moment.name} {moment.at:%H:%M}", fontsize=8, va="center",
                          ha="left", transform=strip.get_xaxis_transform(), in_layout=False)
        if text.get_window_extent(renderer).x1 > strip.get_window_extent(renderer).x1:
            text.set_x(moment_end(moment))
            text.set_horizontalalignment("right")
        box = text.get_window_extent(renderer)
        row = next((i for i, placed in enumerate(rows) if all(
            box.x0 > b.x1 + GAP_PX or box.x1 < b.x0 - GAP_PX for b in (t.get_window_extent(renderer) for t in placed))),
            len(rows))
        if row == len(rows):
            rows.append([])
        rows[row].append(text)
    return rows


def figure(spec: StackSpec, results: list[ModelResult], plan: CapacityPlan, faults: Faults = NO_FAULTS,
           labels: tuple[str, ...] | list[str] = ()) -> Any:
    """The landscape figure (Agg backend), laid out and frozen: tests read its text extents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    cols = 1 if len(results) <= 3 else 2
    rows = math.ceil(len(results) / cols)
    fig: Any = plt.figure(figsize=SIZE, layout="constrained")
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[0.2] + [1.0] * rows)   # the strip: resized below
    start = spec.event.window.start
    strips: list[Any] = [fig.add_subplot(grid[0, c]) for c in range(cols)]
    panels: list[Any] = []
    for i, result in enumerate(results):
        ax = fig.add_subplot(grid[1 + i // cols, i % cols], sharex=strips[i % cols])
        _panel(ax, spec, result, plan, faults, start)
        panels.append(ax)
    for c, strip in enumerate(strips):
        strip.set_xlim(start, spec.event.window.end)
        strip.set_yticks([])
        strip.tick_params(axis="x", labelbottom=False, length=0)
        for side in ("left", "right", "top"):
            strip.spines[side].set_visible(False)
        for moment in spec.event.moments:
            strip.axvspan(moment.at, moment_end(moment), color="gold", alpha=0.22, lw=0)
        column = [ax for i, ax in enumerate(panels) if i % cols == c]
        for ax in column[:-1]:
            ax.tick_params(axis="x", labelbottom=False)
        column[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        column[-1].set_xlabel(f"local time ({spec.event.time_zone})", fontsize=9)
    handles: dict[str, Any] = {}
    for ax in panels:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    # The legend's title says what the two supply figures mean, below the panels with the legend.
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=3, fontsize=8, frameon=False,
               title=f"{capacity_meaning(plan.survives_zone_loss)}; {READY_MEANING}", title_fontsize=8)
    fig.suptitle(title(spec, labels), fontsize=12)
    # Lay out once to measure the names, size the strips for their rows, lay out again and freeze:
    # each row then gets a line's height of its strip.
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    staggered = [stagger(strip, spec, renderer) for strip in strips]
    texts = [t for rows_ in staggered for row in rows_ for t in row]
    line = max([t.get_window_extent(renderer).height for t in texts] + [1.0]) * LINE_SPACING
    needed = max([len(r) for r in staggered] + [1]) * line
    grid.set_height_ratios([needed / panels[0].get_window_extent(renderer).height] + [1.0] * rows)
    fig.canvas.draw()
    fig.set_layout_engine("none")
    for rows_ in staggered:
        for i, row in enumerate(rows_):
            for text in row:
                text.set_y(1 - (i + 0.5) / len(rows_))
    return fig
