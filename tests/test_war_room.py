"""`simulate --plot-style war-room`: the landscape picture of the event. No two pieces of text
overlap and none leaves the figure, measured with the renderer's text extents (not by eye); one
rate scale per panel, the headroom band, the alert thresholds, titles from the event."""
from __future__ import annotations

import dataclasses
import datetime as dt
import struct
from pathlib import Path
from typing import Any

import pytest

import nights
from peaknight.cli import main as cli, simulate
from peaknight.sim import plot, simulator, war_room
from peaknight.spec.stack import StackSpec


def drawn_texts(fig: Any) -> list[Any]:
    """Every Text artist the figure draws: visible, not empty, and, for tick labels, only the ticks
    inside their axis' view (the locator keeps a few beyond it, which are never drawn)."""
    from matplotlib.text import Text

    in_view: dict[int, bool] = {}
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for label in (tick.label1, tick.label2):
                    in_view[id(label)] = lo <= tick.get_loc() <= hi
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and in_view.get(id(t), True)]


def overlaps(fig: Any) -> list[str]:
    """Pairs of texts whose window extents intersect, and texts that leave the figure."""
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn_texts(fig)]
    width, height = fig.bbox.width, fig.bbox.height
    found = [f"{text!r} leaves the figure" for text, b in boxes
             if b.x0 < 0 or b.y0 < 0 or b.x1 > width or b.y1 > height]
    for i, (a, p) in enumerate(boxes):
        for b, q in boxes[i + 1:]:
            if p.x0 < q.x1 and q.x0 < p.x1 and p.y0 < q.y1 and q.y0 < p.y1:
                found.append(f"{a!r} overlaps {b!r}")
    return found


@pytest.fixture(scope="module")
def broadcast() -> tuple[StackSpec, Any, list[simulator.ModelResult]]:
    spec = nights.spec("broadcast")
    objects = nights.objects("broadcast")
    return spec, objects.plan, simulator.simulate(spec, objects, 30.0)


def _close(fig: Any) -> None:
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_the_broadcast_war_room_has_no_overlapping_text_and_titles_from_the_event(broadcast) -> None:
    spec, plan, results = broadcast
    fig = war_room.figure(spec, results, plan)
    try:
        assert fig.get_figwidth() > fig.get_figheight()   # landscape
        assert overlaps(fig) == []
        title = fig.get_suptitle()
        assert title.startswith("gala-2026, 2026-02-16 19:30 to 2026-02-17 00:45 Asia/Shanghai")
        assert "night" not in title
        texts = [t.get_text() for t in drawn_texts(fig)]
        strips = [ax for ax in fig.axes if not ax.get_ylabel()]   # one above each column of panels
        for moment in spec.event.moments:    # named once a column, with its local time
            assert texts.count(f"{moment.name} {moment.at:%H:%M}") == len(strips)
    finally:
        _close(fig)


def test_each_panel_has_one_scale_the_headroom_band_and_the_alert_thresholds(broadcast) -> None:
    spec, plan, results = broadcast
    fig = war_room.figure(spec, results, plan)
    try:
        panels = [ax for ax in fig.axes if ax.get_ylabel()]
        assert len(panels) == len(results)
        # One scale a panel: no twin axes, so every axes is a panel or a column's moment strip.
        assert all(ax.get_ylabel() == "G tok/min" for ax in panels)
        assert len(fig.axes) - len(panels) in (1, 2) and not any(ax.get_yticks().size for ax in fig.axes
                                                                 if not ax.get_ylabel())
        for ax, result in zip(panels, results):
            lines = {line.get_label(): line for line in ax.get_lines()}
            alert = lines["alert PeaknightTokensAboveCapacity = planned capacity, all clusters"]
            assert list(alert.get_ydata()) == pytest.approx([plot.planned_capacity(plan, result.model) / 1e9] * 2)
            band = [c for c in ax.collections if c.get_label() == "headroom: planned capacity above demand"]
            assert len(band) == 1
            assert result.model in ax.get_title(loc="left")
    finally:
        _close(fig)


def test_a_fault_and_crowded_moments_still_overprint_nothing(broadcast) -> None:
    """A zone lost is named in the legend, not over the curves; moments two minutes apart are
    staggered onto rows of the strip."""
    spec, plan, results = broadcast
    moments = [dataclasses.replace(m, at=spec.event.moments[2].at + dt.timedelta(minutes=2 * i))
               for i, m in enumerate(spec.event.moments)]
    crowded = dataclasses.replace(spec, event=dataclasses.replace(spec.event, moments=moments))
    faults = simulator.Faults(lose_zone="us-east-1a", lose_at=7800.0, surge=(4500.0, 0.9, 10.0))
    fig = war_room.figure(crowded, results, plan, faults, simulate.describe(spec, faults))   # the title's two lines
    try:
        assert overlaps(fig) == []
        strip = fig.axes[0]
        rows = {round(t.get_position()[1], 3) for t in strip.texts}
        assert len(rows) > 1
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "zone us-east-1a lost" in legend
    finally:
        _close(fig)


def test_the_overlap_check_sees_overprinted_text(broadcast) -> None:
    """The check can fail: the planning chart's moment names sit on its legend's corner."""
    spec, plan, results = broadcast
    fig = plot.figure(spec, results, plan)
    try:
        fig.canvas.draw()
        assert overlaps(fig)
    finally:
        _close(fig)


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_simulate_writes_the_war_room_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "war-room.png"
    assert cli.main(["simulate", "rehearsal", "--step", "30", "--plot", str(target), "--plot-style", "war-room"]) == 0
    width, height = _png_size(target)
    assert width > height
    assert f"plot written to {target}" in capsys.readouterr().out
