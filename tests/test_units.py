"""One meaning per number: the plan's table, its summary, the simulated night's plot and the diff
show fleet token rates in tok/min and say what "capacity" is in the same words."""
from __future__ import annotations

import pytest

import nights
from peaknight.builders import event
from peaknight.plan import report, units
from peaknight.plan.report import si
from peaknight.sim import plot, simulator


@pytest.fixture(scope="module")
def night():
    spec = nights.spec("rehearsal")
    objects = event.build(spec)
    return spec, objects.plan, simulator.simulate(spec, objects, 30.0)


def test_the_plan_table_is_in_tokens_per_minute_like_its_summary(stack_name: str) -> None:
    plan = nights.objects(stack_name).plan
    lines = report.table(plan, [], explain=True).splitlines()
    header = lines[0].split()
    assert "tok/min" in header and "tok/s" not in header
    first = plan.clusters[0].models[0]
    label = report.groups(plan)[0].label  # the first cluster, and how many more share its plan
    assert lines[2].startswith(label + " ")
    row = lines[2][len(label):].split()
    assert row[0] == first.name
    assert row[5:7] == [si(first.capacity_tps.value * 60), si(first.demand_tps.value * 60)]
    assert f"{units.capacity_meaning(plan.survives_zone_loss)}; headroom = capacity / forecast" in lines
    # A disaggregated model counts once, at its scarcer phase's capacity.
    capacity = sum(min(m.capacity_tps.value for m in c.phases(name)) for c in plan.clusters
                   for name in {m.model for m in c.models})
    assert "capacity " + si(capacity * 60) + " tok/min" in report.summary(plan, [])
    # --explain derives per-replica rates in tokens/s and says so before it does
    assert "(rates below are tokens/s, the profiles' unit; the tables show them x 60 in tok/min)" in lines


def test_the_plot_shows_the_plans_capacity_and_the_ready_throughput_labelled_in_tok_per_min(night) -> None:
    spec, plan, results = night
    fig = plot.figure(spec, results, plan)
    try:
        for ax, result in zip(fig.axes[:len(results)], results):  # the twin (replica) axes come after
            assert ax.get_ylabel() == "G tok/min"
            by_label = {line.get_label(): line for line in ax.get_lines()}
            planned = by_label["planned capacity (target utilisation)"]  # rehearsal: no zone-loss policy
            capacity = sum(c.model(result.model).capacity_tps.value for c in plan.clusters) * 60 / 1e9
            assert list(planned.get_ydata()) == pytest.approx([capacity, capacity])
            ready = by_label["ready throughput (ready replicas x full rate)"]
            assert max(ready.get_ydata()) == pytest.approx(max(result.trace.capacity) * 60 / 1e9)
            demand = by_label["demand"]
            assert max(demand.get_ydata()) == pytest.approx(max(result.trace.demand) * 60 / 1e9)
        legend = [t.get_text() for t in fig.texts]
        assert f"{units.capacity_meaning(False)}; {units.READY_MEANING}" in legend
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
