"""A stack's own model classes, GPUs, instance types and throughput rows (`peaknight:profiles`): a
32 B dense model on L40S plans, renders and validates, `plan --explain` cites its row; a bad own
file is one line per problem; a spec built in code with an unknown model class is the CLI's line;
the README lists the shipped tables as profiles.yaml has them."""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest
import yaml

import peaknight as pk
from peaknight.cli import main as cli
from peaknight.spec import config, profiles
from conftest import ROOT, STACKS

OWN = Path(__file__).parent / "own_model"
ROW_SOURCE = "est. from llm-d optimized-baseline (Qwen3-32B TP2 on H100) and the NVIDIA L40S / H100 datasheets"


@pytest.fixture(autouse=True)
def _shipped_profiles():
    """A stack's own file stays with the stack: later tests see the shipped table."""
    yield
    profiles.use_profiles(None)


def own_stack(tmp_path: Path, edit=None) -> Path:
    """The own-model stack and its profiles file, copied; `edit(profiles_doc)` changes the file."""
    for name in ("Pulumi.own-model.yaml", "profiles.yaml"):
        shutil.copy(OWN / name, tmp_path / name)
    if edit:
        doc = yaml.safe_load((tmp_path / "profiles.yaml").read_text())
        edit(doc)
        (tmp_path / "profiles.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return tmp_path / "Pulumi.own-model.yaml"


def run(capsys, *argv: str) -> tuple[int, str, list[str]]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err.strip().splitlines()


def test_own_model_plans_renders_and_validates(tmp_path, capsys):
    stack = own_stack(tmp_path)
    code, out, _ = run(capsys, "plan", str(stack), "--explain")
    assert code == 0
    # 2e7 tok/min / 60 = 333,333 tok/s over 1/(0.7/14,680 + 0.3/482) = 1,492 tok/s per 2 x L40S at 0.85.
    assert re.search(r"use1-01\s+assistant\s+263\s", out)
    assert f"per 2xL40S-48G replica, vllm colocated (2 GPUs tp2 dp1 ep1, KV bf16) ({ROW_SOURCE})" in out
    assert "decode 482: the profile's" in out
    code, _, _ = run(capsys, "render", str(stack), "--out", str(tmp_path / "out"))
    assert code == 0
    pool = yaml.safe_load((tmp_path / "out" / "use1-01" / "nodepool.l40s.yaml").read_text())
    types = next(r for r in pool["spec"]["template"]["spec"]["requirements"]
                 if r["key"] == "node.kubernetes.io/instance-type")
    assert types["values"] == ["g6e.48xlarge"]
    code, out, _ = run(capsys, "validate", str(stack))
    assert code == 0, out


def test_a_stack_without_its_file_sees_the_shipped_table(tmp_path):
    config.load_stack(str(own_stack(tmp_path)))
    assert "dense-32b" in profiles.load().model_classes
    config.load_stack("rehearsal")
    assert "dense-32b" not in profiles.load().model_classes
    assert "L40S-48G" not in profiles.load().gpus


def _drop_source(doc):
    del doc["throughput"][0]["source"]


def _shipped_gpu(doc):
    doc["gpus"]["H100-80G"] = {"memory_gib": 80, "source": "mine"}


def _bad_topology(doc):
    doc["throughput"][0]["topology"]["kv_dtype"] = "fp4"
    doc["throughput"][0]["topology"]["prefill"] = {"gpus": 2, "tp": 2, "dp": 1, "ep": 1}


def _unknown_gpu(doc):
    doc["instance_types"]["g6e.48xlarge"]["gpu"] = "L40-48G"
    doc["throughput"][0]["gpu"] = "L40-48G"


def _moved_transport(doc):
    doc["instance_types"]["g6e.48xlarge"]["interconnect"] = {
        "resource": "vpc.amazonaws.com/efa", "devices": 2, "network_key": "topology.k8s.aws/network-node-layer-3",
        "kv_transfer": "nixl", "nickname": "x"}


@pytest.mark.parametrize("edit,lines", [
    (_drop_source, ["profiles.yaml: throughput[0].source: expected this required key"]),
    (_shipped_gpu, ["profiles.yaml: gpus.H100-80G: expected a name the shipped profiles do not have (to change a "
                    "shipped figure, add a throughput row); found a shipped one"]),
    (_bad_topology, ["profiles.yaml: throughput[0].topology.kv_dtype: expected one of bf16, fp8; found 'fp4'",
                     "profiles.yaml: throughput[0].topology.prefill: expected no prefill group in mode colocated; "
                     "found one"]),
    (_unknown_gpu, ["profiles.yaml: throughput[0].gpu: expected a GPU of the shipped profiles or of this file "
                    "(A800-80G, H100-80G, H20-96G, H200-141G, L20-48G, L40S-48G); found 'L40-48G'",
                    "profiles.yaml: instance_types.g6e.48xlarge.gpu: expected a GPU of the shipped profiles or of "
                    "this file (A800-80G, H100-80G, H20-96G, H200-141G, L20-48G, L40S-48G); found 'L40-48G'"]),
    # An interconnect's transport moved to the serving recipe: named, never crashed on or dropped.
    (_moved_transport, [f"profiles.yaml: instance_types.g6e.48xlarge.interconnect.{key}: expected a known key "
                        "(resource, devices, network_key, hugepages_mib, env, annotations); found " + found
                        for key, found in (("kv_transfer", "a key now the serving recipe's transport "
                                            "(peaknight/data/recipes.yaml)"), ("nickname", "an unknown key"))]),
])
def test_a_bad_own_file_is_one_line_per_problem(tmp_path, capsys, edit, lines):
    code, _, err = run(capsys, "plan", str(own_stack(tmp_path, edit)))
    assert code == 2
    assert err == [f"{tmp_path}/{line}" for line in lines]


def test_a_missing_own_file_is_named_on_the_stack_key(tmp_path, capsys):
    stack = own_stack(tmp_path)
    (tmp_path / "profiles.yaml").unlink()
    code, _, err = run(capsys, "plan", str(stack))
    assert code == 2
    assert err == [f"{stack}: peaknight:profiles: expected a profiles file (relative to the stack file); found no "
                   f"file at {tmp_path}/profiles.yaml"]


def test_a_spec_built_in_code_with_a_bad_model_class_is_the_cli_line():
    spec = config.load_stack("rehearsal").spec
    bad = dataclasses.replace(spec, models=(dataclasses.replace(spec.models[0], model_class="llama-70b"),
                                            *spec.models[1:]))
    with pytest.raises(pk.ConfigError) as err:
        pk.capacity_plan(bad)
    assert str(err.value) == ("StackSpec built in code: peaknight:models[0].modelClass: expected one of moe-671b, "
                              "dense-8b, dense-70b; found 'llama-70b'")


def test_parse_gives_the_cli_lines_for_config_built_in_code():
    raw = config.read_stack_file(STACKS / "Pulumi.rehearsal.yaml")
    raw["models"][1]["engine"] = "vlm"
    with pytest.raises(pk.ConfigError) as err:
        pk.parse(raw, "my program")
    assert str(err.value) == ("my program: peaknight:models[1].engine: expected one of vllm, sglang; found 'vlm' "
                              "(did you mean 'vllm'?)")


def test_the_readme_lists_the_shipped_tables():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### What ships, and a model of your own\n", 1)[1].split("\n#", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| table")}
    shipped = yaml.safe_load((ROOT / "peaknight" / "data" / "profiles.yaml").read_text())
    named = {table: re.findall(r"`([^`]+)`", row) for table, row in rows.items()}
    assert named == {"model classes": list(shipped["model_classes"]), "GPUs": list(shipped["gpus"]),
                     "instance types": list(shipped["instance_types"]),
                     "edge instance types": list(shipped["edge_instance_types"])}
    # Each instance type's GPU, count, cloud and regions as the table has them.
    for itype, row in shipped["instance_types"].items():
        assert (f"`{itype}` ({row['gpus']} x {row['gpu']}; {row['cloud']} {', '.join(row['regions'])})"
                in rows["instance types"])


def test_calibration_rows_sit_above_the_stacks_own_rows(tmp_path, capsys):
    """One layering: a row measured in a rehearsal (calibration.yaml beside the stack) replaces the
    stack's own row of the same key, as it replaces a shipped one; a bad one is one line."""
    stack = own_stack(tmp_path)
    row = yaml.safe_load((tmp_path / "profiles.yaml").read_text())["throughput"][0]
    measured = {**row, "decode_tps": 600, "source": "measured: rehearsal stack 'own-model'",
                "measured": "2026-12-24T20:00:00Z"}
    (tmp_path / profiles.CALIBRATION_FILE).write_text(yaml.safe_dump({"throughput": [measured]}))
    code, out, _ = run(capsys, "plan", str(stack), "--explain")
    assert code == 0
    assert "KV bf16) (measured: rehearsal stack 'own-model'); prefill 14,680" in out
    assert "decode 600: the profile's" in out
    (tmp_path / profiles.CALIBRATION_FILE).write_text(yaml.safe_dump({"throughput": [{**measured, "gpu": "L4"}]}))
    code, _, err = run(capsys, "plan", str(stack))
    assert code == 2
    assert err == [f"{tmp_path}/calibration.yaml: throughput[0]: expected a row of a model class, GPU, engine and mode "
                   "the profiles have (peaknight/data/profiles.yaml, or the stack's own profiles file); found "
                   "('dense-32b', 'L4', 'vllm', 'colocated')"]


def test_the_pulumi_program_reads_the_stacks_own_file_beside_the_stack_files(tmp_path, monkeypatch):
    """Pulumi passes config, not a file: a relative `profiles` is read from the project's stacks/
    (Pulumi.yaml's stackConfigDir), where the calibration file is read too."""
    from pulumi_harness import run_program

    (tmp_path / "Pulumi.yaml").write_text("name: mine\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    stack = own_stack(tmp_path / "stacks")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(config.STACKS_ENV)   # the project's stacks/, as `pulumi up` in a checkout has it
    mocks = run_program(stack)
    deployment = next(r for r in mocks.resources if r.typ == "kubernetes:apps/v1:Deployment"
                      and r.name == "use1-01/deployment.own-model-inference.assistant")
    # Created at the plan's floor (the autoscaler takes it from there): 0.3 of the 263 at peak.
    assert deployment.inputs["spec"]["replicas"] == 79
    pool = next(r for r in mocks.resources if r.typ == "kubernetes:karpenter.sh/v1:NodePool")
    types = next(r for r in pool.inputs["spec"]["template"]["spec"]["requirements"]
                 if r["key"] == "node.kubernetes.io/instance-type")
    assert types["values"] == ["g6e.48xlarge"]


def test_two_rows_of_one_key_in_the_own_file_are_refused(tmp_path, capsys):
    stack = own_stack(tmp_path, lambda doc: doc["throughput"].append({**doc["throughput"][0], "decode_tps": 900}))
    code, _, err = run(capsys, "plan", str(stack))
    assert code == 2
    assert err == [f"{tmp_path}/profiles.yaml: throughput[1]: expected one row per model class, GPU, engine and mode; "
                   "found the same as throughput[0]"]


def test_an_own_file_is_read_as_warily_as_the_stack_file(tmp_path, capsys):
    """The profiles file is input like the stack: an alias bomb is refused before it is expanded."""
    stack = own_stack(tmp_path)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcd", "bcde"))
    (tmp_path / "profiles.yaml").write_text(bomb)
    code, _, err = run(capsys, "plan", str(stack))
    assert code == 2
    assert err == [f"{tmp_path}/profiles.yaml: line 5: expected at most 100,000 YAML nodes (aliases expanded); "
                   "found more"]


def test_the_shipped_table_passes_the_checks_an_own_file_gets():
    """One validation: every shipped GPU, instance type, model class and row would be accepted in a
    stack's own file (each cites its source), so the rules are the shipped table's own."""
    from peaknight.spec import profile_files

    shipped = yaml.safe_load((ROOT / "peaknight" / "data" / "profiles.yaml").read_text())
    problems = [p for section in ("gpus", "instance_types", "model_classes")
                for name, entry in shipped[section].items()
                for p in profile_files.entry_problems("profiles.yaml", section, f"{section}.{name}", entry)]
    problems += [p for i, row in enumerate(shipped["throughput"]) for p in profile_files.row_problems(
        "profiles.yaml", f"throughput[{i}]", row, shipped["gpus"], shipped["model_classes"])]
    assert problems == []
    assert all(shipped[s][n]["source"] for s in ("gpus", "instance_types", "model_classes") for n in shipped[s])


def _impossible_figures(doc):
    doc["model_classes"]["dense-32b"]["architecture"].update(layers=0, kv_heads=0)
    doc["throughput"][0]["decode_tps"] = float("nan")


def test_figures_the_planner_divides_by_are_finite_and_positive(tmp_path, capsys):
    code, _, err = run(capsys, "plan", str(own_stack(tmp_path, _impossible_figures)))
    assert code == 2
    assert err == [f"{tmp_path}/profiles.yaml: {line}" for line in (
        "model_classes.dense-32b.architecture.layers: expected a finite number above 0; found 0.0",
        "throughput[0].decode_tps: expected a finite number above 0; found nan")]


def test_a_model_class_says_how_its_kv_cache_is_shaped(tmp_path, capsys):
    stack = own_stack(tmp_path, lambda doc: doc["model_classes"]["dense-32b"]["architecture"].update(kv_heads=0))
    code, _, err = run(capsys, "plan", str(stack))
    assert code == 2
    assert err == [f"{tmp_path}/profiles.yaml: model_classes.dense-32b.architecture: expected mla_dims (MLA), or "
                   "kv_heads and head_dim (GQA): what the KV-cache memory bound divides by; found neither"]
