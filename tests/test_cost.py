"""What the night costs: on-demand prices per instance type and region (the stack's `prices` above
the catalog's), the plan's cost, the replayed night's beside its GPU-hours and both oracles', and
the policy oracle (the plan's own headroom and zone N+1, ready exactly when needed)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import nights
from peaknight.cli import main as cli
from peaknight.plan import cost
from peaknight.sim import simulator


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _stack(tmp_path: Path, name: str, edit: Any) -> Path:
    """The tests' copy of a stack with `edit(config)` applied, written to tmp_path."""
    doc = yaml.safe_load(nights.path(name).read_text())
    edit(doc["config"])
    path = tmp_path / f"Pulumi.{name}-priced.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_stacks_price_is_above_the_catalogs() -> None:
    spec = nights.spec("broadcast")
    assert cost.instance_price(spec, "p5en.48xlarge", "us-east-1") == 60.54   # the catalog's (est.)
    assert cost.instance_price(spec, "p5en.48xlarge", "eu-north-1") is None   # no price there
    mine = dataclasses.replace(spec, prices={"p5en.48xlarge": {"us-east-1": 40.0}})
    assert cost.instance_price(mine, "p5en.48xlarge", "us-east-1") == 40.0
    assert cost.instance_price(mine, "p5en.48xlarge", "us-west-2") == 60.54


def test_a_pools_gpu_hour_is_its_dearest_instance_type_sold_in_the_region() -> None:
    spec = nights.spec("broadcast")
    h200 = next(p for p in spec.gpu_pools if "p5en.48xlarge" in p.instance_types)
    assert cost.gpu_hour_price(spec, h200.name, "us-east-1") == pytest.approx(60.54 / 8)
    cheaper = dataclasses.replace(spec, prices={t: {"us-east-1": 8.0} for t in h200.instance_types})
    assert cost.gpu_hour_price(cheaper, h200.name, "us-east-1") == pytest.approx(1.0)
    dearer_one = dataclasses.replace(spec, prices={"p5en.48xlarge": {"us-east-1": 800.0}})
    assert cost.gpu_hour_price(dearer_one, h200.name, "us-east-1") == pytest.approx(100.0)


def test_plan_prints_the_nights_cost_per_model_and_in_total(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "plan", "broadcast")
    assert code == 0
    spec, plan = nights.spec("broadcast"), nights.plan("broadcast")
    costs = cost.PlanCost(spec, plan)
    per = costs.per_workload()
    # The planned nodes held over the whole window, at each pool's GPU-hour price.
    hours = (spec.event.window.end - spec.event.window.start).total_seconds() / 3600
    m = plan.clusters[0].model("chat-decode")
    assert costs.of(m) == pytest.approx(m.nodes.value * m.gpus_per_node * hours * 60.54 / 8)
    line = next(line for line in out.splitlines() if line.startswith("cost: "))
    assert line.startswith(f"cost: ${costs.night():,.0f} for the 5.25 h window at on-demand prices")
    assert all(f"{name} ${x:,.0f}" in line for name, x in per.items())
    assert costs.night() == pytest.approx(sum(per.values()))
    assert f"${costs.of(m):,.0f}" in next(line for line in out.splitlines() if "chat-decode" in line)


def test_plan_json_carries_the_cost(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "plan", "broadcast", "--format", "json")
    doc = json.loads(out)
    night = doc["cost"]["night_usd"]
    assert code == 0 and doc["cost"]["window_hours"] == 5.25
    assert sum(len(g["clusters"]) * sum(m["cost_usd"] for m in g["models"]) for g in doc["groups"]) == pytest.approx(night)
    assert sum(doc["cost"]["models"].values()) == pytest.approx(night)


def test_a_stack_price_halves_the_plans_cost(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    spec = nights.spec("broadcast")
    regions = sorted({c.region for c in spec.clusters})
    types = sorted({t for p in spec.gpu_pools for t in p.instance_types})

    def halve(cfg: dict[str, Any]) -> None:
        cfg["peaknight:prices"] = {t: {r: cost.instance_price(spec, t, r) / 2 for r in regions
                                       if cost.instance_price(spec, t, r)} for t in types}
    _, base, _ = _run(capsys, "plan", "broadcast", "--format", "json")
    _, half, _ = _run(capsys, "plan", str(_stack(tmp_path, "broadcast", halve)), "--format", "json")
    assert json.loads(half)["cost"]["night_usd"] == pytest.approx(json.loads(base)["cost"]["night_usd"] / 2)


@pytest.mark.parametrize("prices, lines", [
    ({"p5.48xlarge": {"us-east-1": -1, "us-east-2": float("inf"), "us-west-2": 20_000}},
     ["p5.48xlarge.us-east-1: expected greater than 0; found -1",
      "p5.48xlarge.us-east-2: expected a finite number; found inf",
      "p5.48xlarge.us-west-2: expected less than or equal to 10000; found 20000"]),
    ({"p5en.48xlarg": {"us-east-1": 50}},
     ["p5en.48xlarg: expected an instance type from the profile catalog (p5.48xlarge, p5e.48xlarge, p5en.48xlarge, "
      "ecs.hpcpni3ln.45xlarge, ecs.ebmhpcpni2l.32xlarge); found an unknown instance type (did you mean 'p5en.48xlarge'?)"]),
])
def test_a_bad_price_is_one_line_per_problem(prices: dict[str, Any], lines: list[str], capsys: pytest.CaptureFixture,
                                             tmp_path: Path) -> None:
    stack = _stack(tmp_path, "broadcast", lambda cfg: cfg.update({"peaknight:prices": prices}))
    code, out, err = _run(capsys, "plan", str(stack))
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"{stack}: peaknight:prices.{line}" for line in lines]


@pytest.fixture(scope="module")
def broadcast_night() -> list[simulator.ModelResult]:
    return simulator.simulate(nights.spec("broadcast"), nights.objects("broadcast"), 30.0)


def test_the_replayed_cost_is_its_gpu_hours_at_the_pools_price(broadcast_night) -> None:
    spec, plan = nights.spec("broadcast"), nights.plan("broadcast")
    for r in broadcast_night:
        pool = plan.clusters[0].model(r.model).pool
        price = cost.gpu_hour_price(spec, pool, spec.clusters[0].region)   # every region prices it alike
        assert r.cost_usd == pytest.approx(r.gpu_hours * price)
        assert r.oracle_cost_usd == pytest.approx(r.oracle_gpu_hours * price)
        assert r.policy_oracle_cost_usd == pytest.approx(r.policy_oracle_gpu_hours * price)


def test_the_policy_oracle_sits_between_the_oracle_and_the_night(broadcast_night) -> None:
    """Headroom 1.05 and zone N+1 (3 zones: 3/2) cost the raw oracle about 1.58x; the night holds
    floors at peak level between moments: about 2.1x the policy oracle."""
    gpu_h = sum(r.gpu_hours for r in broadcast_night)
    oracle = sum(r.oracle_gpu_hours for r in broadcast_night)
    policy = sum(r.policy_oracle_gpu_hours for r in broadcast_night)
    assert 1.5 < policy / oracle < 1.05 * 1.5 * 1.05
    assert 2.0 < gpu_h / policy < 2.3
    assert all(r.oracle_gpu_hours < r.policy_oracle_gpu_hours < r.gpu_hours for r in broadcast_night)
    assert all(r.policy_ratio == pytest.approx(r.gpu_hours / r.policy_oracle_gpu_hours) for r in broadcast_night)


def test_without_headroom_or_zone_loss_the_policy_oracle_is_the_oracle() -> None:
    spec = nights.spec("rehearsal")
    assert spec.policy.headroom == 1 and not spec.policy.survive_zone_loss
    for r in simulator.simulate(spec, nights.objects("rehearsal"), 30.0):
        assert r.policy_oracle_gpu_hours == pytest.approx(r.oracle_gpu_hours)


def test_simulate_prints_cost_beside_gpu_hours_and_both_oracles(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "simulate", "broadcast", "--step", "30", "--format", "json")
    doc = json.loads(out)
    night = doc["night"]
    assert code == 0
    assert night["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in doc["models"]))
    assert night["policy_oracle_gpu_hours"] == pytest.approx(sum(r["policy_oracle_gpu_hours"] for r in doc["models"]))
    code, out, _ = _run(capsys, "simulate", "broadcast", "--step", "30")
    header = out.splitlines()[1]
    for column in ("GPU-hours", "oracle GPU-h", "policy oracle GPU-h", "policy ratio", "cost", "oracle cost",
                   "policy oracle cost"):
        assert column in header
    total = next(line for line in out.splitlines() if line.startswith("total: "))
    assert total.startswith(f"total: {night['gpu_hours']:,.0f} GPU-hours, ${night['cost_usd']:,.0f}; oracle ")
    assert f"policy oracle {night['policy_oracle_gpu_hours']:,.0f} GPU-hours, ${night['policy_oracle_cost_usd']:,.0f}" in total


def test_a_type_without_price_is_no_price_not_a_guess(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """The own-model stack's g6e.48xlarge has no price in its profiles file: plan says what to set,
    simulate and its JSON say no price (null), never 0."""
    own = Path(__file__).parent / "own_model" / "Pulumi.own-model.yaml"
    code, out, _ = _run(capsys, "plan", str(own))
    line = next(line for line in out.splitlines() if line.startswith("cost: "))
    assert line.startswith("cost: no price for the") and "no price for g6e.48xlarge in us-east-1: set peaknight:prices" in line
    code, out, _ = _run(capsys, "simulate", str(own), "--step", "60", "--format", "json")
    doc = json.loads(out)
    assert doc["night"]["cost_usd"] is None and all(r["cost_usd"] is None for r in doc["models"])
