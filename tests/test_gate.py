"""One gate (plan/gate.py): `plan`, `render`, the Pulumi program and every public component refuse a
plan that cannot serve the night with the same SHORT lines; `validate --strict` and `pulumi up` of
a broadcast stage refuse placeholder digests and revisions, one line per key."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pulumi
import pytest

import nights
import peaknight as pk
from peaknight.cli import main as cli
from peaknight.plan import capacity
from peaknight.spec import config
from conftest import STACKS
from pulumi_harness import run_program
from test_components import parts_of, run_components
from test_config import write_variant

SHORT = "SHORT: "


def small_groups(cfg: dict[str, Any]) -> None:
    """reh-bj-01 on node groups of one node per pool: every pool with a model is short there."""
    groups = [{"pool": p["name"], "name": f"{p['name']}-a", "nodes": 1} for p in cfg["peaknight:gpuPools"]]
    cfg["peaknight:clusters"][0]["provisioner"] = {"kind": "existing", "groups": groups}


def quota(cfg: dict[str, Any]) -> None:
    """A quota of one replica per cluster on greetings (colocated): short in every cluster."""
    next(m for m in cfg["peaknight:models"] if m["name"] == "greetings")["maxReplicasPerCluster"] = 1


def plan_lines(path: Path, capsys) -> tuple[list[str], str]:
    """`peaknight plan`'s SHORT lines and its total line; it must exit 1."""
    assert cli.main(["plan", str(path)]) == 1
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.startswith("total: "))
    return [line for line in out.splitlines() if line.startswith(SHORT)], total


def program_lines(path: Path) -> list[str]:
    """The lines the Pulumi program fails with under mocks."""
    with pytest.raises(Exception) as err:
        run_program(path)
    return [line for line in str(err.value).splitlines() if line.startswith(SHORT)]


@pytest.mark.parametrize("edit", [small_groups, quota], ids=["existing groups too small", "quota"])
def test_plan_render_and_the_program_refuse_with_the_same_lines(edit, tmp_path, capsys):
    path = write_variant(tmp_path, edit, "rehearsal")
    short, total = plan_lines(path, capsys)
    assert short
    # The total never says "covered" above a SHORT line (it did for groups too small).
    assert total.endswith(f"; {len(short)} SHORT") and "covered" not in total
    assert cli.main(["render", str(path), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.splitlines() == short
    assert not (tmp_path / "out").exists()
    assert program_lines(path) == short


def test_the_lines_name_the_cluster_the_part_and_the_figures(tmp_path, capsys):
    path = write_variant(tmp_path, small_groups, "rehearsal")
    short, _ = plan_lines(path, capsys)
    spec = config.load_stack(str(path)).spec
    pool = capacity.plan(spec).cluster("reh-bj-01").pool("h200")
    need = int(pool.nodes.value) + pool.surge_nodes
    assert (f"SHORT: cluster 'reh-bj-01': pool 'h200' is short: its node groups hold 1 (h200-a) = 1 nodes, the plan "
            f"needs {need:,} ({int(pool.nodes.value):,} planned + {pool.surge_nodes} surge)") in short
    assert all(line.startswith("SHORT: cluster 'reh-bj-01': pool '") for line in short)
    short, _ = plan_lines(write_variant(tmp_path, quota, "rehearsal"), capsys)
    assert len(short) == 4  # one per cluster
    assert short[0].startswith("SHORT: cluster 'reh-bj-01': model 'greetings' is short: capacity ")
    assert "capped at maxReplicasPerCluster 1)" in short[0]


def test_late_weights_stop_the_program_with_the_plans_line(tmp_path, capsys):
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:policy"].update(warmupHours=6), "rehearsal")
    short, _ = plan_lines(path, capsys)
    assert any("model 'chat' weights cannot be warm before the window" in line for line in short)
    assert program_lines(path) == short


def test_each_public_component_alone_refuses_its_own_lines(tmp_path, capsys):
    """A program of one's own built from the components: each refuses what `plan` says about its part."""
    path = write_variant(tmp_path, lambda cfg: (small_groups(cfg), quota(cfg),
                                                cfg["peaknight:policy"].update(warmupHours=6)), "rehearsal")
    short, _ = plan_lines(path, capsys)
    spec = config.load_stack(str(path)).spec
    parts = parts_of(spec, capacity.plan(spec), "reh-bj-01")
    service, autoscaler = next((s, a) for s, a in parts.services if s.model.name == "greetings")
    pool = next(p for p in parts.pools if p.pool.name == "h200")
    cases: list[tuple[Any, Any, str]] = [
        (pk.InferenceService, service, "model 'greetings' is short"),
        (pk.Autoscaler, autoscaler, "model 'greetings' is short"),
        (pk.GpuNodePool, pool, "pool 'h200' is short"),
        (pk.WarmGate, parts.warm_gate, "weights cannot be warm"),
    ]
    for component, args, what in cases:
        expected = [line for line in short if line.startswith("SHORT: cluster 'reh-bj-01': ") and what in line]
        assert expected and args.refusals == expected
        with pytest.raises(Exception) as err:
            run_components(lambda p: {"x": component("x", args, pulumi.ResourceOptions(provider=p)).urn})
        assert [line for line in str(err.value).splitlines() if line.startswith(SHORT)] == expected, component
    cluster = pk.ClusterStackArgs(spec=spec, plan=capacity.plan(spec).cluster("reh-bj-01"), cluster=spec.clusters[0])
    assert cluster.refusals == [line for line in short if "cluster 'reh-bj-01'" in line]


def test_a_plan_the_gate_accepts_is_not_refused(capsys):
    assert cli.main(["plan", "rehearsal"]) == 0
    assert "all models and edges covered" in capsys.readouterr().out


# ---- placeholders ---------------------------------------------------------------------------

def test_validate_strict_refuses_the_placeholders_the_default_validate_warns_about(capsys):
    stack = nights.per_shape("broadcast")   # one cluster per shape: validating 64 repeats the same objects
    loaded = config.load_stack(str(stack))
    lines = [str(p) for p in config.placeholders(loaded.spec, str(loaded.path))]
    assert len(lines) == 10 + 3 + 2   # test_render: the pins, each cluster's API server addresses, the steering's zone and domain
    assert cli.main(["validate", str(stack)]) == 0
    err = capsys.readouterr().err
    assert all(f"warning: {line}" in err for line in lines)
    assert cli.main(["validate", str(stack), "--strict"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == lines
    objects = sum(1 for c in nights.objects_at(stack).clusters for u in c.units for o in u.objects)
    assert out[-1] == f"stack 'broadcast': {objects} objects in 3 clusters: {len(lines)} violation(s)"
    assert cli.main(["validate", "rehearsal", "--strict"]) == 0


def test_pulumi_up_of_a_broadcast_stage_refuses_placeholders_and_a_preview_warns(runs):
    loaded = config.load_stack("broadcast")
    lines = [str(p).replace(str(loaded.path), "Pulumi config of stack broadcast")
             for p in config.placeholders(loaded.spec, str(loaded.path))]
    with pytest.raises(Exception) as err:
        run_program(STACKS / "Pulumi.broadcast.yaml")
    assert [line for line in str(err.value).splitlines() if line.startswith("Pulumi config of stack")] == lines
    # The pull-request preview of the shipped stack still runs (the session's broadcast run is one).
    assert any(r.typ == "peaknight:index:ClusterStack" for r in runs["broadcast"].resources)


def test_a_broadcast_stack_that_never_mentions_router_is_told_what_to_set(tmp_path):
    path = write_variant(tmp_path, lambda cfg: cfg.pop("peaknight:router"))
    with pytest.raises(config.ConfigError) as err:
        config.load_stack(str(path))
    image = "ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0"
    assert [str(p) for p in err.value.problems] == [
        f"{path}: peaknight:router.image: expected an image pinned by digest (…@sha256:<64 hex>) in a broadcast stack: "
        f"set peaknight:router.image to {image}@sha256:<your registry's digest> (crane digest {image}); found "
        f"'{image}', the kit's default for a stack that does not set it"]


def test_an_edge_short_of_its_egress_is_refused_by_its_component():
    """No shipped sizing leaves an edge short (pods and nodes are sized for the egress), so the
    plan is made short by hand: the LiveEdge says what `plan` would."""
    spec = config.load_stack("rehearsal").spec
    args = parts_of(spec, capacity.plan(spec), "reh-bj-01").edges[0]
    short = dataclasses.replace(args, plan=dataclasses.replace(args.plan, short=True))
    (line,) = short.refusals
    e = args.plan
    assert line == (f"SHORT: cluster 'reh-bj-01': edge 'gala-live' is short: it sends "
                    f"{min(e.capacity_gbps.value, e.node_gbps.value):,.0f} Gbps for a forecast of "
                    f"{e.egress_gbps.value:,.0f} Gbps (pods: {e.capacity_gbps.why}; nodes: {e.node_gbps.why})")
    assert args.refusals == []
    with pytest.raises(Exception) as err:
        run_components(lambda p: {"x": pk.LiveEdge("edge", short, pulumi.ResourceOptions(provider=p)).urn})
    assert line in str(err.value).splitlines()
