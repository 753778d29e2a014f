"""Fabric-true capacity (issue 24: 12): profile rows say which fabric and recipe they were measured
with, the planner prices a row on the fabric the cluster renders (as published, or by a cited
derating, saying "unproven"), `plan --explain` names the fabric and source behind every throughput
figure, and bench/throughput compares only same-recipe, same-fabric sources and lists the rest."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import yaml

import nights
from conftest import ROOT
from peaknight.cli import main as cli
from peaknight.plan import capacity, fabric
from peaknight.spec import config, profiles


def test_every_shipped_row_and_instance_type_records_its_fabric():
    for row in profiles.load().throughput.values():
        assert row.fabric in profiles.FABRICS and row.recipe is not None and row.recipe.engine, row.key
    types = profiles.load().instance_types
    assert {t: types[t].fabric for t in ("p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge")} == dict.fromkeys(
        ("p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge"), "efa")
    assert types["ecs.hpcpni3ln.45xlarge"].fabric == "roce"
    assert fabric.rendered(["p5e.48xlarge", "p5en.48xlarge"]) == "efa"
    assert fabric.rendered(["p5.48xlarge", "ecs.hpcpni3ln.45xlarge"]) == fabric.MIXED


def _row(key):
    return profiles.load().throughput[key]


def test_a_deepep_infiniband_row_is_derated_on_efa_and_called_unproven():
    row = _row(("moe-671b", "H200-141G", "sglang", "disaggregated"))
    assert (row.fabric, row.recipe.moe_a2a) == ("infiniband", "deepep")
    applied = fabric.apply(row, "efa", 8)
    assert (applied.prefill, applied.decode, applied.proven) == (0.303, 0.2, False)
    assert applied.why.startswith("fabric: UNPROVEN on efa: measured on infiniband")
    assert "lmsys.org/blog/2025-05-05-large-scale-ep" in applied.why
    derated = fabric.derated(row, applied)
    assert (derated.prefill_tps, derated.decode_tps) == pytest.approx((294_800 * 0.303, 338_720 * 0.2))
    # On the fabric it was measured on, as published.
    same = fabric.apply(row, "infiniband", 8)
    assert (same.prefill, same.decode, same.proven) == (1.0, 1.0, True) and fabric.derated(row, same) is row


def test_a_row_on_another_fabric_without_a_derating_is_unproven_and_undiscounted():
    row = dataclasses.replace(_row(("moe-671b", "H20-96G", "sglang", "disaggregated")), fabric="roce")
    applied = fabric.apply(row, "efa", 8)   # no roce -> efa derating is cited
    assert (applied.prefill, applied.decode, applied.proven) == (1.0, 1.0, False)
    assert "UNPROVEN on efa" in applied.why and "no cited derating, undiscounted" in applied.why


def test_a_row_inside_one_node_applies_on_any_fabric():
    row = _row(("dense-8b", "H100-80G", "vllm", "colocated"))
    applied = fabric.apply(row, "efa", 8)
    assert applied.proven and (applied.prefill, applied.decode) == (1.0, 1.0)
    assert applied.why.startswith("fabric: within one node")
    # A colocated replica over two nodes crosses the fabric: DeepSeek's IB figures are derated on EFA.
    two_nodes = _row(("moe-671b", "H100-80G", "sglang", "colocated"))
    assert not fabric.apply(two_nodes, "efa", 8).proven


def test_broadcast_prices_its_multi_node_workloads_on_efa_and_gala_vke_on_roce_as_published():
    broadcast = nights.plan("broadcast").cluster("gala-bj-01")
    unproven = {m.name for m in broadcast.models if not m.on_fabric.proven}
    assert unproven == {"chat-prefill", "chat-decode", "deep-think-prefill", "deep-think-decode"}
    assert broadcast.model("greetings").on_fabric.proven
    vke = nights.plan("gala-vke")
    assert all(m.on_fabric.proven for c in vke.clusters for m in c.models)
    assert not nights.spec("gala-vke").policy.allow_unproven   # proven rows need no opt-in
    assert "measured on roce, as rendered" in vke.clusters[0].model("chat-decode").replica_tps.why


def test_explain_names_the_fabric_and_source_behind_every_throughput_figure(capsys):
    assert cli.main(["plan", "broadcast", "--explain"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  per replica:")]
    assert len(lines) == 5    # one per workload shape (64 clusters share one plan)
    for line in lines:
        assert "; fabric: " in line and "source: " in line and "recipe: " in line
    assert sum("fabric: UNPROVEN on efa: measured on infiniband" in line for line in lines) == 4


def test_a_stack_profiles_row_with_an_unknown_fabric_is_one_config_line(tmp_path, capsys):
    own = (ROOT / "tests" / "own_model" / "profiles.yaml").read_text().replace("fabric: nvlink", "fabric: ethernet")
    (tmp_path / "profiles.yaml").write_text(own)
    (tmp_path / "Pulumi.own-model.yaml").write_text((ROOT / "tests" / "own_model" / "Pulumi.own-model.yaml").read_text())
    assert cli.main(["plan", str(tmp_path / "Pulumi.own-model.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{tmp_path / 'profiles.yaml'}: throughput[0].fabric: expected the network between the source's "
                   "nodes: one of infiniband, roce, efa, nvlink; found 'ethernet'"]


def test_bench_throughput_compares_same_fabric_sources_only_and_lists_the_unproven_workloads():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "throughput")], capture_output=True, text=True,
                         cwd=ROOT, check=False).stdout
    compared, _, rest = out.partition("Skipped")
    assert "lmsys 2025-05-05" in compared and "infiniband, as published" in compared
    assert "DeepSeek open-infra Day 6" not in compared and "Ant" not in compared
    assert "the row's own source" in rest and "its fabric is unpublished" in rest
    # The one published DeepSeek figure on EFA ran another recipe: named, never compared.
    assert "AWS awsome-distributed-ai" not in compared and "nor the rendered one (SGLang 0.5.4" in rest
    unproven = rest.partition("Rendered workloads with no same-fabric source (8):\n")[2].rstrip("\n").splitlines()
    assert len(unproven) == 8 and all(line.startswith(("  broadcast: ", "  rehearsal: ")) for line in unproven)
    assert ("  broadcast: chat-decode (gala-bj-01 +63) on efa: measured on infiniband (source: est. from DeepSeek "
            "open-infra-index Day 6 H800 node figures); derated prefill x0.303, decode x0.2") in unproven[1]
    assert "gala-vke" not in rest.partition("Rendered workloads")[2]


def _without_allow_unproven(tmp_path):
    text = (ROOT / "tests" / "stacks" / "Pulumi.broadcast.yaml").read_text()
    assert text.count("    allowUnproven: true\n") == 1
    path = tmp_path / "Pulumi.broadcast.yaml"
    path.write_text(text.replace("    allowUnproven: true\n", ""))
    return path


def test_unproven_throughput_without_allow_unproven_is_one_config_line_per_model(tmp_path, capsys):
    path = _without_allow_unproven(tmp_path)
    assert cli.main(["plan", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    # Each model's image is refused too, for its recipe (tests/test_recipes.py): here, the figures.
    recipes = [line for line in err.splitlines() if ".image: expected a serving combination a public recipe" in line]
    assert len(recipes) == 2  # chat and deep-think
    assert [line for line in err.strip().splitlines() if line not in recipes] == [
        f"{path}: peaknight:policy.allowUnproven: expected true to plan models[0] ('chat') on pool 'h200' in "
        "gala-bj-01 +63, whose nodes' fabric is efa: its H200-141G throughput row was measured on infiniband "
        "(source: est. from DeepSeek open-infra-index Day 6 H800 node figures) and no public source ran it on efa "
        "(docs/operations.md, 'Capacity on the rendered fabric'); found false",
        f"{path}: peaknight:policy.allowUnproven: expected true to plan models[2] ('deep-think') on pool 'h100' in "
        "gala-bj-01 +63, whose nodes' fabric is efa: its H100-80G throughput row was measured on infiniband "
        "(source: DeepSeek open-infra-index Day 6 (H800 nodes; H800 has the H100's compute and 80 GB)) and no "
        "public source ran it on efa (docs/operations.md, 'Capacity on the rendered fabric'); found false"]


def test_plan_prints_an_unproven_line_per_workload_without_explain(capsys):
    assert cli.main(["plan", "broadcast"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("UNPROVEN: ")]
    assert [line.split(" (")[0] for line in lines] == [
        "UNPROVEN: chat-prefill", "UNPROVEN: chat-decode", "UNPROVEN: deep-think-prefill", "UNPROVEN: deep-think-decode"]
    for line in lines:
        assert "(gala-bj-01 +63) on efa: measured on infiniband (source: " in line
        assert line.endswith("derated prefill x0.303, decode x0.2; planned under policy.allowUnproven")
    assert cli.main(["plan", "broadcast", "--format", "json"]) == 0
    # JSON: the same lines, then the recipes' (tests/test_recipes.py)
    unproven = json.loads(capsys.readouterr().out)["unproven"]
    assert unproven[:len(lines)] == lines and all(": UNPROVEN: recipe " in line for line in unproven[len(lines):])


def test_a_row_the_rehearsal_calibrated_on_efa_applies_there_as_published(tmp_path):
    """`peaknight calibrate` records the fabric the rehearsal measured on (plan/calibration.py), so a
    calibrated row is not derated again like the row it replaces; any other fabric is refused."""
    key = ("moe-671b", "H100-80G", "sglang", "colocated")   # TP16 over two nodes: crosses the fabric
    shipped = profiles.shipped_rows()[key]
    calibration = tmp_path / profiles.CALIBRATION_FILE
    calibration.write_text(yaml.safe_dump({"throughput": [{**shipped, "fabric": "efa", "measured": "rehearsal"}]}))
    try:
        profiles.use_calibration(calibration)
        row = profiles.load().throughput[key]
        assert row.fabric == "efa" and fabric.apply(row, "efa", 8).proven
        calibration.write_text(yaml.safe_dump({"throughput": [{**shipped, "fabric": "ethernet"}]}))
        profiles.use_calibration(calibration)
        with pytest.raises(config.ConfigError) as err:
            profiles.load()
        assert [str(p) for p in err.value.problems] == [
            f"{calibration}: throughput[0].fabric: expected the network the rehearsal measured it on: one of "
            "infiniband, roce, efa, nvlink; found 'ethernet'"]
    finally:
        profiles.use_calibration(None)
    assert not fabric.apply(profiles.load().throughput[key], "efa", 8).proven
