"""Losing a whole cluster or region in the simulator (`simulate --lose-cluster/--lose-region`):
the lost clusters go dark, their users move once the health checks fail and the TTL runs out, the
others take their share in proportion to theirs and scale up, and the SLO judges the night."""
from __future__ import annotations

import re
from typing import Any

import pytest

import nights
from peaknight.builders import event, steering
from peaknight.cli import main as cli
from peaknight.sim import simulator
from test_config import write_variant
from test_simulator import _at, _chat


def without_zone_loss(survive: str):
    """Broadcast without N+1 by zone, so only policy.surviveLoss holds spare capacity."""
    def edit(cfg: dict[str, Any]) -> None:
        cfg["peaknight:policy"].update(surviveZoneLoss=False, surviveLoss=survive)
    return edit


def statuses(out: str) -> list[str]:
    return [line.split()[-1] for line in out.splitlines() if re.match(r"(chat|greetings|deep-think)", line)]


def test_a_stack_that_plans_for_a_region_survives_losing_one_at_the_peak(tmp_path, capsys):
    path = write_variant(tmp_path, without_zone_loss("region"))
    assert cli.main(["simulate", str(path), "--lose-region", "us-east-1", "--at", "red-packet-2"]) == 0
    out = capsys.readouterr().out
    assert ("fault: region us-east-1 lost at 21:40 (24 clusters): its users reach the others 60 s later (3 failed "
            "health checks 10 s apart, then the 30 s TTL)") in out
    assert statuses(out) == ["ok"] * 5
    # The ladder's columns in between: the survivors cap answers while their cold replicas start.
    chat = next(line for line in out.splitlines() if line.startswith("chat-prefill "))
    assert "shortened" in out and "shed 429" in out and float(chat.split()[4].rstrip("%")) > 0


def test_the_same_loss_without_the_option_is_shown_honestly(tmp_path, capsys):
    path = write_variant(tmp_path, without_zone_loss("none"))
    assert cli.main(["simulate", str(path), "--lose-region", "us-east-1", "--at", "red-packet-2"]) == 1
    out = capsys.readouterr().out
    assert statuses(out) == ["SLO"] * 5   # every workload OVER SLO
    chat = next(line for line in out.splitlines() if line.startswith("chat-prefill "))
    assert float(chat.split()[5].rstrip("%")) > 0   # shed with 429 by the survivors' gateways


def test_losing_a_cluster_at_the_opening(tmp_path, capsys):
    path = write_variant(tmp_path, without_zone_loss("cluster"))
    assert cli.main(["simulate", str(path), "--lose-cluster", "gala-bj-01", "--at", "opening",
                     "--plot", str(tmp_path / "loss.png")]) == 0
    out = capsys.readouterr().out
    assert "fault: cluster gala-bj-01 lost at 20:00: its users reach the others 60 s later" in out
    assert statuses(out) == ["ok"] * 5
    assert (tmp_path / "loss.png").stat().st_size > 10_000


def test_without_steering_a_lost_clusters_users_stay_on_it(tmp_path, capsys):
    def no_steering(cfg: dict[str, Any]) -> None:
        del cfg["peaknight:steering"]
    path = write_variant(tmp_path, no_steering)
    assert cli.main(["simulate", str(path), "--lose-cluster", "gala-bj-01", "--at", "opening"]) == 1
    out = capsys.readouterr().out
    assert "fault: cluster gala-bj-01 lost at 20:00: no peaknight:steering, so its users stay on it" in out
    # One cluster of 16 unserved from 20:00 to the window's end: every model over the SLO.
    assert statuses(out) == ["SLO"] * 5


def test_the_dark_cluster_and_a_survivor_replayed_step_by_step():
    spec = nights.spec("broadcast")
    objects = event.build(spec)
    model, plan, manifest = _chat(spec, objects)
    at, move = _at(spec, "red-packet-2"), steering.move_seconds(spec)
    faults = simulator.Faults(lose_clusters=("gala-bj-01",), lose_at=at, lost="cluster gala-bj-01", move_after=move)
    dark = simulator.replay(spec, model, plan, manifest, faults=faults,
                            loss=simulator.losing(spec, faults, "gala-bj-01"))
    i, j = dark.times.index(at), dark.times.index(at + move)
    assert dark.capacity[i - 1] > 0 and set(dark.capacity[i:]) == {0} and set(dark.replicas[i:]) == {0}
    # Its users' tokens are unmet (no gateway to shed them) until they move, then it has no demand.
    assert all(d > 0 for d in dark.demand[i:j]) and set(dark.demand[j:]) == {0}
    assert dark.shed_tokens == 0 and dark.unmet_tokens == pytest.approx(sum(dark.demand[i:j]) * 10, rel=0.05)
    survivor_loss = simulator.losing(spec, faults, "gala-nx-01")
    assert survivor_loss is not None and survivor_loss.factor == pytest.approx(64 / 63)
    survivor = simulator.replay(spec, model, plan, manifest, faults=faults, loss=survivor_loss)
    calm = simulator.replay(spec, model, plan, manifest)
    assert survivor.demand[j] == pytest.approx(calm.demand[j] * 64 / 63)
    assert survivor.demand[i] == pytest.approx(calm.demand[i])   # before the users move
    assert max(survivor.replicas) >= max(calm.replicas)


def test_the_night_s_forecast_is_moved_not_lost():
    spec = nights.spec("broadcast")
    at = _at(spec, "red-packet-2")
    calm = {r.model: r.forecast_tokens for r in simulator.simulate(spec, step=30)}
    faults = simulator.Faults(lose_clusters=tuple(c.name for c in spec.clusters if c.region == "us-east-1"),
                              lose_at=at, lost="region us-east-1", move_after=steering.move_seconds(spec))
    lost = {r.model: r.forecast_tokens for r in simulator.simulate(spec, step=30, faults=faults)}
    assert lost == pytest.approx(calm, rel=1e-9)


@pytest.mark.parametrize("args, line", [
    (["--lose-cluster", "gala-xx-99", "--at", "21:40"],
     "--lose-cluster: --lose-cluster: expected a cluster of the stack (gala-bj-01, "),
    (["--lose-region", "eu-west-1", "--at", "21:40"],
     "--lose-region: --lose-region: expected a region of the stack's clusters (us-east-1, us-east-2, us-west-2); "
     "found 'eu-west-1'"),
    (["--lose-region", "us-east-1"], "--at: --at: expected the time --lose-region happens; found nothing"),
    (["--lose-zone", "us-east-1a", "--lose-cluster", "gala-bj-01", "--at", "21:40"],
     "--lose-cluster: --lose-cluster: expected one of --lose-zone, --lose-cluster, --lose-region (one --at); "
     "found --lose-zone and --lose-cluster"),
])
def test_bad_loss_flags_exit_2_with_one_line(args, line, capsys):
    assert cli.main(["simulate", "broadcast", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line)


@pytest.mark.parametrize("args, fault", [
    (["--lose-region", "us-east-1", "--at", "red-packet-2"], "fault: region us-east-1 lost at 21:40 (24 clusters)"),
    (["--lose-cluster", "gala-hk-01", "--at", "opening"], "fault: cluster gala-hk-01 lost at 20:00"),
])
def test_the_shipped_night_asks_to_survive_a_region_and_does(args, fault, capsys):
    assert nights.spec("broadcast").policy.survive_loss.value == "region"
    assert cli.main(["simulate", "broadcast", *args]) == 0
    out = capsys.readouterr().out
    assert fault in out and statuses(out) == ["ok"] * 5
