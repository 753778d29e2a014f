"""policy.floorsFallBetweenMoments: in a broadcast, floors (and the GPU pools' nodes) fall to the
baseline between moments far enough apart (plan/gaps.py), and `simulate` prints the money that saves
and the tokens it leaves unserved when a surge lands in the gap."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

import nights
from peaknight.builders import event
from peaknight.cli import main as cli
from peaknight.plan import gaps, startup
from peaknight.provisioners.karpenter import KarpenterAws
from peaknight.spec import config
from peaknight.spec.forecast import moment_end
from peaknight.spec.timeline import cron_at, to_utc
from conftest import ROOT
from test_config import write_variant

CLUSTER = "gala-bj-01"


def _falls(cfg: dict, on: bool = True, early_opening: bool = True) -> None:
    """The broadcast night, the option set; with `early_opening` the opening moves to 15:00 (the
    window from 14:30), four hours before red-packet-1: a gap long enough."""
    cfg["peaknight:policy"]["floorsFallBetweenMoments"] = on
    if early_opening:
        cfg["peaknight:event"]["window"]["start"] = "2026-02-16T14:30:00"
        cfg["peaknight:event"]["moments"][0]["at"] = "2026-02-16T15:00:00"


def _spec(tmp_path: Path, **kw):
    return config.load_stack(str(write_variant(tmp_path, lambda c: _falls(c, **kw), clusters=[CLUSTER]))).spec


def test_off_by_default_the_broadcast_holds_its_floors() -> None:
    spec = nights.spec("broadcast")
    assert spec.policy.floors_fall_between_moments is False
    assert all(m.gaps == () for c in nights.plan("broadcast").clusters for m in c.models)


def test_the_shipped_broadcast_moments_are_too_close_for_floors_to_fall(tmp_path: Path) -> None:
    """The gap is derived from the plan's cold lead (81 min): the shipped night's moments are at
    most 76 min apart from one's load back at the baseline to the next, so the option changes
    nothing there, as the README says."""
    spec = _spec(tmp_path, early_opening=False)
    lead = startup.longest_cold_lead(spec.policy, spec.models)
    moments = sorted(spec.event.moments, key=lambda m: m.at)
    spacing = max(n.at - moment_end(m) for m, n in zip(moments, moments[1:]))
    assert (lead, spacing) == (4860, dt.timedelta(minutes=76))
    assert spacing.total_seconds() < lead + gaps.min_gap(lead).value
    assert gaps.fall_gaps(spec.event, spec.policy, lead) == ()
    readme = (ROOT / "README.md").read_text()
    assert "81 min on the shipped broadcast, whose moments are at most 76 min apart" in readme


def _scaled_object(objects, cluster: str, name: str) -> dict:
    (c,) = [c for c in objects.clusters if c.cluster.name == cluster]
    return next(o.manifest for u in c.units if u.component == "Autoscaler" for o in u.objects if o.name == name)


def _gpu_node_pools(objects) -> list:
    return [o for c in objects.clusters for u in c.units if u.component == "GpuNodePool" for o in u.objects
            if o.kind == "NodePool"]


def test_in_a_long_gap_floors_fall_and_the_node_freeze_opens(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    lead = startup.longest_cold_lead(spec.policy, spec.models)
    (gap,) = gaps.fall_gaps(spec.event, spec.policy, lead)
    opening, red1 = sorted(spec.event.moments, key=lambda m: m.at)[:2]
    assert (gap.after, gap.before, gap.start) == ("opening", "red-packet-1", moment_end(opening))
    assert gap.end == red1.at - dt.timedelta(seconds=lead)
    objects = event.build(spec)
    model = spec.models[0]
    workload = objects.plan.cluster(CLUSTER).phases(model.name)[-1]
    crons = {t["name"]: t["metadata"] for t in _scaled_object(objects, CLUSTER, workload.name)["spec"]["triggers"]
             if t["type"] == "cron"}
    assert crons["opening"]["end"] == cron_at(gap.start)  # the floor falls after the opening
    assert crons["red-packet-1"]["end"] == cron_at(spec.event.window.end)  # no gap after it: held
    cold = startup.lead(spec.policy, model, warm=False).value
    assert crons["red-packet-1"]["start"] == cron_at(red1.at - dt.timedelta(seconds=cold))  # rises cold
    pools = _gpu_node_pools(objects)
    (tmp_path / "held").mkdir()
    held = _spec(tmp_path / "held", on=False)
    assert pools
    for pool in pools:
        frozen = [b for b in pool.manifest["spec"]["disruption"]["budgets"] if b.get("nodes") == "0"]
        assert len(frozen) == 2 and frozen[1]["schedule"] == cron_at(to_utc(spec, gap.end))  # again from the pre-scale
        assert list(KarpenterAws().frozen_findings(spec, [pool])) == []
        # The same budgets without the option leave the window open: the policy check says so; and
        # with it, a freeze open across a moment (the second span gone) is refused too.
        assert [m for _, m in KarpenterAws().frozen_findings(held, [pool])]
        manifest = json.loads(json.dumps(pool.manifest))
        manifest["spec"]["disruption"]["budgets"].remove(frozen[1])
        assert [m for _, m in KarpenterAws().frozen_findings(spec, [dataclasses.replace(pool, manifest=manifest)])]


def test_simulate_prints_the_money_saved_and_the_risk_of_a_surge_in_the_gap(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    stack = write_variant(tmp_path, _falls, clusters=[CLUSTER])
    runs = {}
    for surge in ((), ("--surge", "17:00:0.9:20")):
        cli.main(["simulate", str(stack), "--format", "json", *surge])
        runs[bool(surge)] = json.loads(capsys.readouterr().out)["night"]["floors_fall"]
    calm, surged = runs[False], runs[True]
    assert [(g["after"], g["before"]) for g in calm["gaps"]] == [("opening", "red-packet-1")]
    for f in (calm, surged):
        assert f["gpu_hours"] < f["held_gpu_hours"] and f["saved_usd"] > 0
        assert f["saved_usd"] == pytest.approx(f["held_cost_usd"] - f["cost_usd"])
    assert calm["unserved_pct"] == calm["held_unserved_pct"] == 0  # the forecast alone: no risk taken
    assert surged["unserved_pct"] > surged["held_unserved_pct"]   # a surge in the gap meets the baseline
    cli.main(["simulate", str(stack), "--surge", "17:00:0.9:20"])
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("floors fall between moments"))
    assert "opening -> red-packet-1" in line and f"saves ${surged['saved_usd']:,.0f}" in line


def test_without_the_option_simulate_prints_no_comparison(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stack = write_variant(tmp_path, lambda c: _falls(c, on=False), clusters=[CLUSTER])
    cli.main(["simulate", str(stack), "--format", "json"])
    assert "floors_fall" not in json.loads(capsys.readouterr().out)["night"]
