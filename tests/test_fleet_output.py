"""Output for a fleet: clusters with the same plan share their rows, `--cluster` / `--model` narrow
the report (an unknown name is one line with a did-you-mean, exit 2), and `--format json` carries
every figure the table shows (README, "Output for pipelines")."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

import nights
from peaknight.cli import main as cli
from peaknight.cli import simulate
from peaknight.plan import report
from peaknight.spec import config
from test_config import write_variant
from test_diff import repo  # noqa: F401  (the fixture: the kit in a scratch git repository)
from test_gate import quota


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def cells(label: str, row: dict, first: str, columns: tuple[report.Column, ...]) -> list[str]:
    """The table line of a JSON row, split on whitespace as a reader's eye does."""
    return " ".join([label, row[first], *(c.show(row[c.key]) for c in columns)]).split()


@pytest.fixture(scope="module")
def broadcast_plan() -> tuple[str, dict]:
    """`peaknight plan broadcast`, as text and as JSON (capsys is per test: stdout redirected here)."""
    text, doc = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(text):
        assert cli.main(["plan", "broadcast"]) == 0
    with contextlib.redirect_stdout(doc):
        assert cli.main(["plan", "broadcast", "--format", "json"]) == 0
    return text.getvalue(), json.loads(doc.getvalue())


def test_sixty_four_identical_clusters_are_one_set_of_rows(broadcast_plan):
    text, doc = broadcast_plan
    spec = config.load_stack("broadcast").spec
    (group,) = doc["groups"]
    assert group["clusters"] == [c.name for c in spec.clusters]
    assert [r["model"] for r in group["models"]] == ["chat-prefill", "chat-decode", "greetings", "deep-think-prefill",
                                                     "deep-think-decode"]  # 5 rows, not 320
    assert sum(line.startswith("gala-bj-01 +63  ") for line in text.splitlines()) == 5 + 3 + 1
    assert "gala-bj-01 +63: the same plan in each of 64 clusters (figures are per cluster): gala-bj-01, gala-bj-02" in text


def test_json_carries_every_figure_of_the_table(broadcast_plan):
    text, doc = broadcast_plan
    lines = [line.split() for line in text.splitlines()]
    for group in doc["groups"]:
        label = group["clusters"][0] + (f" +{len(group['clusters']) - 1}" if len(group["clusters"]) > 1 else "")
        for part, first, columns in (("models", "model", report.COSTED_MODEL_COLUMNS), ("weights", "model", report.WEIGHT_COLUMNS),
                                     ("edges", "edge", report.EDGE_COLUMNS)):
            assert group[part]
            for row in group[part]:
                assert cells(label, row, first, columns) in lines, (part, row[first])
    assert [report.origin_line(o) for o in doc["origins"]] == [line for line in text.splitlines()
                                                               if line.startswith("origin of ")]
    total = doc["total"]
    assert (f"total: {total['clusters']} clusters, {total['gpus']:,} GPUs on {total['nodes']:,} nodes; forecast "
            f"{report.si(total['forecast_tpm'])} tok/min, capacity {report.si(total['capacity_tpm'])} tok/min; all models "
            "and edges covered") in text
    # Figures are per cluster: the groups add up to the night's total, 64 x (18,784 + 14,592 + 464 +
    # 1,152 + 1,792 = 36,784 GPUs).
    assert sum(len(g["clusters"]) * sum(m["gpus"] for m in g["models"]) for g in doc["groups"]) == total["gpus"] == 2_354_176
    assert doc["short"] == [] and doc["stack"] == "broadcast"
    assert all(isinstance(w, str) for w in doc["warnings"])


def test_cluster_and_model_narrow_the_report(capsys):
    code, out, _ = run(capsys, "plan", "broadcast", "--cluster", "gala-nx-02", "--model", "chat")
    assert code == 0
    rows = [line.split()[:2] for line in out.splitlines() if line.startswith("gala-")]
    assert rows == [["gala-nx-02", "chat-prefill"], ["gala-nx-02", "chat-decode"], ["gala-nx-02", "chat"]]
    assert "edge" not in out.split("total:")[0]
    code, out, _ = run(capsys, "plan", "broadcast", "--cluster", "gala-nx-02", "--cluster", "gala-hk-01",
                       "--model", "greetings", "--format", "json")
    doc = json.loads(out)
    assert [g["clusters"] for g in doc["groups"]] == [["gala-nx-02", "gala-hk-01"]]
    assert [r["model"] for r in doc["groups"][0]["models"]] == ["greetings"]
    assert doc["groups"][0]["edges"] == [] and doc["origins"] == []
    assert doc["total"]["clusters"] == 64  # the gate's total stays the whole night's


@pytest.mark.parametrize("argv, line", [
    (["--cluster", "gala-bj-7"], "--cluster: --cluster: expected a cluster of the stack (gala-bj-01, gala-bj-02, "
                                 "gala-bj-03, gala-bj-04, gala-bj-05, gala-bj-06, gala-bj-07, gala-bj-08, …); found "
                                 "'gala-bj-7' (did you mean 'gala-bj-17'?)"),
    (["--model", "chatt"], "--model: --model: expected a model of the stack (chat, greetings, deep-think); found "
                           "'chatt' (did you mean 'chat'?)"),
])
def test_an_unknown_name_is_one_line_and_exit_2(capsys, argv, line):
    code, out, err = run(capsys, "plan", "broadcast", *argv)
    assert (code, out, err) == (2, "", line + "\n")


def test_json_of_a_short_plan_carries_the_gates_lines(tmp_path, capsys):
    path = write_variant(tmp_path, quota, "rehearsal")
    code, text, _ = run(capsys, "plan", str(path))
    code_json, out, _ = run(capsys, "plan", str(path), "--format", "json")
    doc = json.loads(out)
    assert code == code_json == 1
    assert doc["short"] == [line for line in text.splitlines() if line.startswith("SHORT: ")] and len(doc["short"]) == 4
    assert doc["total"]["short"] == 4
    assert {r["status"] for g in doc["groups"] for r in g["models"] if r["model"] == "greetings"} == {"SHORT"}


# ---- simulate ---------------------------------------------------------------------------------

def test_simulate_json_carries_the_table_and_the_filters_narrow_the_night(capsys):
    # One cluster per shape (3 of the 64, each planned as in the whole stack): replaying the other
    # 61 repeats the same plans.
    stack = str(nights.per_shape("broadcast"))
    code, text, _ = run(capsys, "simulate", stack)
    code_json, out, _ = run(capsys, "simulate", stack, "--format", "json")
    doc = json.loads(out)
    assert code == code_json == 0
    lines = [line.split() for line in text.splitlines()]
    for r in doc["models"]:  # a row per workload, over the clusters replaying it: not one per cluster
        assert " ".join([r["model"], *(show(r[key]) for key, _, show in simulate.COLUMNS)]).split() in lines
        assert r["clusters"] == 3
    assert len(doc["clusters"]) == 3 and doc["faults"] == []
    code, out, _ = run(capsys, "simulate", stack, "--cluster", "gala-hk-01", "--model", "chat",
                       "--format", "json")
    one = json.loads(out)
    assert one["clusters"] == ["gala-hk-01"]
    assert [(r["model"], r["clusters"]) for r in one["models"]] == [("chat-prefill", 1), ("chat-decode", 1)]
    whole = {r["model"]: r for r in doc["models"]}
    for r in one["models"]:  # the 3 clusters have the same plan: one of them holds a third
        assert r["gpu_hours"] * 3 == pytest.approx(whole[r["model"]]["gpu_hours"])
    code, out, err = run(capsys, "simulate", stack, "--cluster", "gala-hk-9")
    assert (code, out) == (2, "") and err.startswith("--cluster: --cluster: expected a cluster of the stack (")


# ---- diff -------------------------------------------------------------------------------------

def test_diff_narrows_to_a_cluster_and_a_model_and_speaks_json(repo, capsys):
    stack = repo / "stacks" / "Pulumi.rehearsal.yaml"  # greetings' engine moves to the next patch release
    stack.write_text(stack.read_text().replace("image: vllm/vllm-openai:v0.11.0", "image: vllm/vllm-openai:v0.11.1", 1))
    code, out, _ = run(capsys, "diff", str(stack), "--base", "HEAD", "--cluster", "reh-bj-01", "--model", "greetings",
                       "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["objects"]
    assert all(c["clusters"] == ["reh-bj-01"] and "greetings" in c["object"] for c in doc["objects"])
    (deployment,) = [c for c in doc["objects"] if c["object"] == "Deployment gala-2026-rehearsal-inference/greetings"]
    assert deployment["change"] == "~"
    assert "~ spec.template.spec.containers[engine].image: vllm/vllm-openai:v0.11.0 -> vllm/vllm-openai:v0.11.1" \
        in deployment["lines"]
    assert list(doc["models"]) == ["greetings"] and doc["models"]["greetings"]["head"]["gpus"] > 0
    code, out, _ = run(capsys, "diff", str(stack), "--base", "HEAD", "--cluster", "reh-bj-01", "--model", "greetings")
    assert "  ~ Deployment gala-2026-rehearsal-inference/greetings  [reh-bj-01]" in out.splitlines()
    assert "(over 1 clusters)" in out and "chat" not in out.split("objects:")[1]


def test_the_plot_of_one_cluster_draws_that_clusters_capacity(tmp_path, monkeypatch, capsys):
    """Demand replayed for one cluster is drawn against that cluster's planned capacity, not the fleet's."""
    drawn = {}
    monkeypatch.setattr(simulate.night_plot, "write", lambda spec, results, path, plan, *rest: drawn.update(
        plan=plan, models=[r.model for r in results]))
    code, _, _ = run(capsys, "simulate", "rehearsal", "--step", "30", "--cluster", "reh-nx-01", "--model", "greetings",
                     "--plot", str(tmp_path / "night.png"))
    assert code == 0
    assert [c.name for c in drawn["plan"].clusters] == ["reh-nx-01"] and drawn["models"] == ["greetings"]


def test_json_of_a_plan_over_the_envelope_names_the_excess(tmp_path, capsys):
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:gpuPools"][2].update(maxGpusPerCluster=1000))
    code, out, _ = run(capsys, "plan", str(path), "--format", "json")
    doc = json.loads(out)
    assert code == 1 and set(doc) == {"stack", "file", "envelope"} and len(doc["envelope"]) == 64
    assert doc["envelope"][0] == ("cluster 'gala-bj-01': pool 'h100' needs 3,744 GPUs, its maxGpusPerCluster is 1,000: "
                                  "over by 2,744")
    assert run(capsys, "plan", str(path))[0] == 1  # the text keeps its lines on stderr
