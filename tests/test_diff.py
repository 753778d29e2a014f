"""`peaknight diff`: in a scratch git repository holding the kit, one more red-packet round shows
up as its manifests, its planned pre-scale and its simulated night; both sides are rendered by the
installed kit, so the repository's own code never runs (a marker file proves it)."""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from peaknight.builders import shards
from peaknight.plan import capacity, picker
from peaknight.plan.report import duration, si
from peaknight.cli import main as cli
from peaknight.review import diff as review
from peaknight.spec import config

from conftest import ROOT, STACKS
NEW_ROUND = '      - {name: red-packet-4, at: "2026-02-16T23:15:00", load: 0.9, durationMinutes: 10, rampMinutes: 1}\n'


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com",
                           *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The kit's committed peaknight/ and the tests' stacks, committed again in a fresh repository."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD", "peaknight"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    shutil.copytree(STACKS, tmp_path / "stacks")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def _diff(capsys: pytest.CaptureFixture, stack: Path, base: str = "HEAD") -> tuple[int, str, str]:
    code = cli.main(["diff", str(stack), "--base", base])
    out = capsys.readouterr()
    return code, out.out, out.err


def _add_round(stack: Path) -> None:
    text = stack.read_text()
    anchor = next(line for line in text.splitlines(keepends=True) if "name: red-packet-3" in line)
    stack.write_text(text.replace(anchor, anchor + NEW_ROUND))


def test_one_more_red_packet_round(repo: Path, capsys: pytest.CaptureFixture) -> None:
    stack = repo / "stacks" / "Pulumi.broadcast.yaml"
    _add_round(stack)
    code, out, _ = _diff(capsys, stack)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"peaknight diff stacks/Pulumi.broadcast.yaml: HEAD -> working tree ({repo})"
    # Manifests: each workload's autoscaler gains the round's cron floor, in every cluster; nothing
    # else (chat and deep-think are disaggregated: prefill and decode groups each have one).
    # greetings, colocated, is split into endpoint-picker shards, each with its own autoscaler.
    workloads = ("chat-prefill", "chat-decode", "greetings", "deep-think-prefill", "deep-think-decode")
    spec = config.load_stack(str(stack)).spec
    plan = capacity.plan(spec)
    greetings = next(m for m in spec.models if m.name == "greetings")
    pickers = {int(picker.plan(spec.policy, greetings, c.model("greetings")).shards.value) for c in plan.clusters}
    assert len(pickers) == 1 and (n := pickers.pop()) > 1
    autoscalers = [w for w in workloads if w != "greetings"] + shards.names(greetings, n)
    assert f"objects: 0 added, 0 removed, {64 * len(autoscalers)} changed (over 64 clusters)" in lines
    for name in autoscalers:
        block = out.split(f"~ ScaledObject gala-2026-inference/{name}  [all 64 clusters]\n")[1]
        assert block.splitlines()[1].strip().startswith("+ spec.triggers[red-packet-4]: ")
    # Capacity: the pre-scale for the new round, as the plan of the changed stack has it.
    for name in workloads:
        replicas = sum(c.model(name).replicas_for("red-packet-4") for c in plan.clusters)
        block = out.split(f"\n  {name}:\n")[1]
        assert f"    pre-scale replicas: red-packet-4 none -> {replicas:,}" in block.splitlines()
    limits = sum(int(p.gpu_limit.value) for c in plan.clusters for p in c.pools)
    assert f"  node pool GPU limits: {limits:,} (unchanged)" in lines
    # The simulated night: more demand, served (unmet stays 0), more GPU-hours for a perfect scaler.
    chat = out.split("\n  chat-decode:\n")[1].splitlines()
    night = next(i for i, line in enumerate(chat) if line.startswith("    simulated night: "))
    assert chat[night].startswith("    simulated night: unmet tokens: 0.000% (unchanged); GPU-hours: ")
    assert chat[night + 1].startswith("      oracle GPU-hours: ") and "(+" in chat[night + 1]
    assert "; policy oracle GPU-hours: " in chat[night + 1]
    assert chat[night + 2].startswith("      cost: $") and chat[night + 2].split("; demand tokens: ")[1].count("(+") == 1


MARKER_CODE = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


def test_diff_runs_none_of_the_repositorys_code(repo: Path, capsys: pytest.CaptureFixture, tmp_path_factory) -> None:
    """A vendor's or a pull request's checkout: its peaknight/ (at the base and in the working tree)
    and its sitecustomize would write a marker when imported. Both sides render with the installed
    kit, so the marker never appears; a builder change in that checkout changes nothing either."""
    marker = tmp_path_factory.mktemp("marker") / "ran"
    code_files = [repo / "peaknight" / "__init__.py", repo / "peaknight" / "spec" / "config.py", repo / "sitecustomize.py",
                  repo / "stacks" / "sitecustomize.py"]
    for path in code_files:
        path.write_text(MARKER_CODE.format(marker=str(marker)))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "code that must not run")
    for path in code_files:
        path.write_text(MARKER_CODE.format(marker=str(marker)) + "# the working tree's edit\n")
    stack = repo / "stacks" / "Pulumi.rehearsal.yaml"
    stack.write_text(stack.read_text().replace("stage: rehearsal", "stage: rehearsal\n    headroom: 1.1", 1))
    code, out, err = _diff(capsys, stack)
    assert (code, err) == (0, "")
    assert not marker.exists()
    assert "objects: 0 added, 0 removed, 0 changed" not in out   # the stack change itself shows


def test_the_base_reads_its_own_calibration_file(repo: Path, capsys: pytest.CaptureFixture) -> None:
    """The base side plans with the calibration file as it was at the base: a row measured since
    shows as a change."""
    from peaknight.spec import profiles
    stack = repo / "stacks" / "Pulumi.rehearsal.yaml"
    row = dict(profiles.shipped_rows()[profiles.row_key("dense-8b", "H100-80G", "vllm", "colocated")])
    row.update(prefill_tps=row["prefill_tps"] / 2, decode_tps=row["decode_tps"] / 2, source="measured: test",
               measured="test")
    (repo / "stacks" / profiles.CALIBRATION_FILE).write_text(yaml.safe_dump({"throughput": [row]}))
    try:
        code, out, _ = _diff(capsys, stack)
    finally:
        profiles.use_calibration(None)
    assert code == 0
    block = "\n".join(out.split("\n  greetings:\n")[1].splitlines()[:3])
    assert re.search(r"GPUs: [\d,]+ -> [\d,]+ \(\+", block), block   # half the rate: more GPUs at the head


def test_a_new_stack_file_is_all_added(repo: Path, capsys: pytest.CaptureFixture) -> None:
    new = repo / "stacks" / "Pulumi.dress.yaml"
    new.write_text((repo / "stacks" / "Pulumi.rehearsal.yaml").read_text())
    code, out, _ = _diff(capsys, new)
    assert code == 0
    assert "(the stack file does not exist at HEAD: everything is added)" in out
    assert " 0 removed, 0 changed (over 4 clusters)" in out


def test_unknown_base_is_bad_input(repo: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = _diff(capsys, repo / "stacks" / "Pulumi.rehearsal.yaml", base="no-such-branch")
    assert (code, out) == (2, "")
    assert err.strip() == f"{repo}: --base: expected a git revision of this repository; found 'no-such-branch'"


def test_broken_head_stack_is_bad_input(repo: Path, capsys: pytest.CaptureFixture) -> None:
    stack = repo / "stacks" / "Pulumi.rehearsal.yaml"
    stack.write_text(stack.read_text().replace("stage: rehearsal", "stage: rehearsel"))
    code, _, err = _diff(capsys, stack)
    assert code == 2
    assert "working tree: (stack): expected a stack that loads; found " in err
    assert "peaknight:policy.stage: expected one of broadcast, rehearsal" in err


def test_raising_one_models_peak_reads_in_one_screen(repo: Path, capsys: pytest.CaptureFixture) -> None:
    """The reviewer's first screen says what changed in capacity; the per-cluster rules that differ
    only by the cluster's name are shown once; rules are matched by alert name, not position."""
    stack = repo / "stacks" / "Pulumi.broadcast.yaml"
    stack.write_text(stack.read_text().replace("peakTokensPerMinute: 8.0e9", "peakTokensPerMinute: 9.0e9", 1))
    code, out, _ = _diff(capsys, stack)
    assert code == 0
    lines = out.splitlines()
    screen = "\n".join(lines[:25])
    before, after = (capacity.plan(config.load_stack(str(p)).spec) for p in (STACKS / stack.name, stack))

    def total(plan, figure: str) -> float:
        return sum(getattr(c.model("greetings"), figure).value for c in plan.clusters)
    old_cap, new_cap = (si(total(p, "capacity_tps") * 60) for p in (before, after))
    assert f"    capacity tok/min: {old_cap} -> {new_cap} (+" in screen
    assert f"GPUs: {int(total(before, 'gpus')):,} -> {int(total(after, 'gpus')):,} (+" in screen
    assert f"nodes: {int(total(before, 'nodes')):,} -> {int(total(after, 'nodes')):,} (+" in screen
    assert "    simulated night: unmet tokens: 0.000% (unchanged); GPU-hours: " in screen
    assert next(line for line in lines if line.startswith("  unchanged: ")).startswith("  unchanged: chat-decode (")
    # once, for all 64 clusters, the cluster's name in the alert text standing for each
    assert lines.count("  ~ PrometheusRule gala-2026-monitoring/rules-greetings  [all 64 clusters]") == 1
    assert sum("rules-greetings" in line for line in lines) == 1
    assert any("rules[PeaknightTokensAboveCapacity].annotations.summary: greetings in <cluster>: " in line
               for line in lines)
    assert any("rules[PeaknightNodePoolAtGpuLimit{nodepool=hopper}].expr: " in line for line in lines)
    # 12.5% more greetings adds an endpoint-picker shard (plan/picker.py): its objects are new, and
    # each shard's Deployment, picker and autoscaler is an object of its own, shown as such.
    for added in ("Deployment gala-2026-inference/greetings-s2", "InferencePool gala-2026-inference/greetings-s2",
                  "ScaledObject gala-2026-inference/greetings-s2"):
        assert f"  + {added}  [all 64 clusters]" in lines
    # the summary (its cost lines too), then each changed object once for all clusters, with what
    # `pulumi up` does beyond a patch (the dashboards ConfigMap is replaced); the shards' own blocks aside
    blocks, shard = [], False
    for line in lines:
        if line.startswith(("  ~ ", "  + ", "  - ")):
            shard = "/greetings-s" in line
        if not shard:
            blocks.append(line)
    assert len(blocks) < 75


def test_rules_and_containers_are_matched_by_name_not_position() -> None:
    old = {"rules": [{"alert": "A", "expr": "x > 1"}, {"record": "r:sum", "expr": "sum(x)"}, {"alert": "B", "expr": "y"}],
           "containers": [{"name": "engine", "ports": [{"name": "http", "containerPort": 8000}]}, {"name": "sidecar"}]}
    moved = {"rules": [{"alert": "B", "expr": "y"}, {"alert": "A", "expr": "x > 1"}, {"record": "r:sum", "expr": "sum(x)"}],
             "containers": [{"name": "sidecar"}, {"name": "engine", "ports": [{"name": "http", "containerPort": 8000}]}]}
    assert list(review.changes(old, moved)) == []
    changed = {**moved, "rules": [{"alert": "B", "expr": "y > 2"}, *moved["rules"][1:]]}
    assert list(review.changes(old, changed)) == ["~ rules[B].expr: y -> y > 2"]


def test_diff_into_a_closed_pipe_ends_quietly(repo: Path) -> None:
    from test_cli import closed_pipe
    stack = repo / "stacks" / "Pulumi.rehearsal.yaml"
    stack.write_text(stack.read_text().replace("stage: rehearsal", "stage: rehearsal\n    headroom: 1.1", 1))
    result = closed_pipe("diff", str(stack), "--base", "HEAD", cwd=repo)
    assert (result.returncode, result.stderr) == (0, "")


def test_vke_node_pools_show_in_the_diff(repo: Path, capsys: pytest.CaptureFixture) -> None:
    """A cloud resource is reviewed like an object: a scale change shows as its node pools' bounds."""
    text = (repo / "stacks" / "Pulumi.gala-vke.yaml").read_text()
    head, clusters = text.split("  peaknight:clusters:\n")
    first_two = "    - name:" + "    - name:".join(clusters.split("    - name:")[1:3])
    rest = clusters[clusters.index("  peaknight:gpuPools:"):]
    small = repo / "stacks" / "Pulumi.vke-small.yaml"
    small.write_text((head + "  peaknight:clusters:\n" + first_two.replace("share: 0.025", "share: 0.5") + rest)
                     .replace("peaknight:scale: 1.0", "peaknight:scale: 0.01"))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "small vke stack")
    spec = config.load_stack(str(small)).spec
    before = capacity.plan(spec).cluster("vke-bj-01").pool("h20")
    small.write_text(small.read_text().replace("peaknight:scale: 0.01", "peaknight:scale: 0.02"))
    after = capacity.plan(config.load_stack(str(small)).spec).cluster("vke-bj-01").pool("h20")
    code, out, _ = _diff(capsys, small)
    assert code == 0
    assert "cloud resources: 0 added, 0 removed, 6 changed" in out
    assert "  ~ volcengine:vke/nodePool:NodePool h20-cn-beijing-a  [all 2 clusters]" in out
    low, high = before.zone_nodes[0] + before.zone_surge_nodes, after.zone_nodes[0] + after.zone_surge_nodes
    assert f"      ~ properties.autoScaling.maxReplicas: {low} -> {high}" in out


def _greetings_image(stack: Path, tag: str) -> None:
    """greetings' engine image to another tag (the one vllm image of the stack)."""
    text = stack.read_text()
    assert text.count("vllm/vllm-openai:v0.11.0@") == 1
    stack.write_text(text.replace("vllm/vllm-openai:v0.11.0@", f"vllm/vllm-openai:{tag}@"))


def test_an_image_change_prints_its_rollout_and_cost(repo: Path, capsys: pytest.CaptureFixture) -> None:
    """The Deployment rolls its peak replicas in every cluster for as long as the plan says; the
    staging Jobs, whose pod template Pulumi cannot patch, are replaced; the cost does not move."""
    stack = repo / "stacks" / "Pulumi.broadcast.yaml"
    _greetings_image(stack, "v0.11.1")
    code, out, _ = _diff(capsys, stack)
    assert code == 0
    spec = config.load_stack(str(stack)).spec
    plan = capacity.plan(spec)
    greetings = [c.model("greetings") for c in plan.clusters]
    longest = max(m.rollout.value for m in greetings)
    # Each endpoint-picker shard's Deployment rolls its share of the replicas and of the surge
    # (builders/shards.py), in the model's time: the shards together roll the model's replicas.
    model = next(m for m in spec.models if m.name == "greetings")
    counts = {int(picker.plan(spec.policy, model, m).shards.value) for m in greetings}
    assert len(counts) == 1 and (n := counts.pop()) > 1
    names = shards.names(model, n)
    rolled = 0
    for i, name in enumerate(names):
        each = [picker.shard_pods(int(m.replicas.value), n, i) for m in greetings]
        surge = max(1, picker.shard_pods(int(greetings[0].surge.value), n, i))
        block = out.split(f"~ Deployment gala-2026-inference/{name}  [all 64 clusters]\n")[1].split("\n  ~ ")[0]
        assert (f"=> rolling update: {sum(each):,} replicas over 64 clusters, {duration(longest)} per the plan "
                f"({surge} a wave, at peak replicas)") in block
        rolled += sum(each)
    assert rolled == sum(int(m.replicas.value) for m in greetings)
    job = out.split("~ Job gala-2026-weights/stage-greetings-z0  [all 64 clusters]\n")[1].split("\n  ~ ")[0]
    assert "=> replaced, not updated (pulumi-kubernetes will not patch spec.template)" in job
    rollout = next(line for line in out.splitlines() if line.startswith("rollout: "))
    assert f"the longest {duration(longest)} (Deployment gala-2026-inference/{names[0]})" in rollout
    assert "192 objects replaced" in rollout   # three staging Jobs in 64 clusters
    night = next(line for line in out.splitlines() if line.startswith("  the night's cost: "))
    assert re.fullmatch(r"  the night's cost: by the plan \$[0-9,]+ \(unchanged\); simulated \$[0-9,]+ \(unchanged\)", night)
    code = cli.main(["diff", str(stack), "--base", "HEAD", "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    change = next(c for c in doc["objects"] if c["object"] == f"Deployment gala-2026-inference/{names[0]}")
    assert change["rollout"] == {"replicas": sum(picker.shard_pods(int(m.replicas.value), n, 0) for m in greetings),
                                 "clusters": 64, "seconds": longest,
                                 "surge": max(1, picker.shard_pods(int(greetings[0].surge.value), n, 0))}
    assert change["replaced_by"] == []
    assert doc["cost_usd"]["base"] == doc["cost_usd"]["head"] > 0


def test_a_price_change_shows_in_the_diffs_cost(repo: Path, capsys: pytest.CaptureFixture) -> None:
    stack = repo / "stacks" / "Pulumi.broadcast.yaml"
    stack.write_text(stack.read_text().replace("  peaknight:scale: 1.0\n", "  peaknight:scale: 1.0\n  peaknight:prices:\n"
                                               "    p5.48xlarge: {us-east-1: 1.0, us-east-2: 1.0, us-west-2: 1.0}\n"))
    code = cli.main(["diff", str(stack), "--base", "HEAD", "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["objects"] == []          # a price changes no object
    assert doc["cost_usd"]["head"] < doc["cost_usd"]["base"]
    assert doc["cost_usd"]["night_head"] < doc["cost_usd"]["night_base"]
    code, out, _ = _diff(capsys, stack)
    night = next(line for line in out.splitlines() if line.startswith("  the night's cost: "))
    assert re.fullmatch(r"  the night's cost: by the plan \$[0-9,]+ -> \$[0-9,]+ \(-\$[0-9,]+\); "
                        r"simulated \$[0-9,]+ -> \$[0-9,]+ \(-\$[0-9,]+\)", night)
