"""The rehearsal-to-broadcast loop: the kit's load replay config run for real by inference-perf 0.7.0
against a fake model server of known speed (tests/openai_fake.py), then `peaknight calibrate` on
the reports it wrote: derived rates, provenance, the broadcast plan's change, `--write` read back
by the planner, and bad or partial results as exit 2, one line each.

The tool runs from its own virtualenv (`make loadtool`, Python 3.12: inference-perf requires it);
missing, the tests fail rather than skip.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import openai_fake
from conftest import STACKS
import nights
from peaknight.builders import autoscaling, loadreplay
from peaknight.cli import main as cli
from peaknight.plan import capacity
from peaknight.spec import config, profiles, timeline

ROOT = Path(__file__).resolve().parent.parent
TOOL = Path(os.environ.get("PEAKNIGHT_LOADTOOL", ROOT / ".venv-loadtool" / "bin" / "inference-perf"))
MODEL = "greetings"            # dense-8b on the hopper pool: the plan sizes it by the H100 row
CLUSTER = "reh-bj-01"
REQUEST_TOKENS = 250           # with greetings' inputShare 0.6: 150 prompt + 100 output tokens
# Requests/s per stage against one fake replica that prefills 1,500 tok/s one prompt at a time
# (10 req/s of 150-token prompts at most): well under, near, and three times over its limit, where
# prompts queue for seconds and the time to first token passes the rehearsal's 2 s objective.
STAGES = [3.0, 7.0, 30.0]
# The fake emits a token every 10 ms; the test stack's ITL objective (0.25 s instead of the
# rehearsal's 0.05 s) leaves room for a loaded CI machine's scheduling jitter, so only TTFT decides.
ITL_OBJECTIVE = 0.25
STAGE_SECONDS = 6


def _tool() -> Path:
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is not installed (make loadtool; make test installs it)")
    return TOOL


def _project(tmp: Path) -> Path:
    """A copy of the shipped stacks where calibrate may write its file (the stacks read the same)."""
    (tmp / "stacks").mkdir(parents=True)
    for name in ("rehearsal", "broadcast"):
        shutil.copy(STACKS / f"Pulumi.{name}.yaml", tmp / "stacks" / f"Pulumi.{name}.yaml")
    # The fake replica is some ten times slower than an H100: with the shipped 8 B tok/min the
    # broadcast's greetings fleet would outgrow its clusters. A quarter of it keeps the grown plan
    # inside the envelope, so the tests read a plan that fits (test_a_plan_past_the_envelope...
    # covers one that does not).
    text = (tmp / "stacks" / "Pulumi.broadcast.yaml").read_text()
    assert text.count("peakTokensPerMinute: 8.0e9") == 1
    (tmp / "stacks" / "Pulumi.broadcast.yaml").write_text(text.replace("peakTokensPerMinute: 8.0e9",
                                                                        "peakTokensPerMinute: 2.0e9"))
    text = (tmp / "stacks" / "Pulumi.rehearsal.yaml").read_text()
    (tmp / "stacks" / "Pulumi.rehearsal.yaml").write_text(
        text.replace("requestTokens: 2000", f"requestTokens: {REQUEST_TOKENS}")
        .replace("itlP99Seconds: 0.05 ", f"itlP99Seconds: {ITL_OBJECTIVE} "))
    return tmp / "stacks" / "Pulumi.rehearsal.yaml"


@pytest.fixture(autouse=True)
def _shipped_profiles():
    """Calibrate points the profiles at its stack's calibration file: put them back afterwards."""
    yield
    profiles.use_calibration(None)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the kit's inference-perf config (the rehearsal's greetings Job, short stages, pointed at
    the fake replica) once; the reports land where the Job writes them: <cluster>/<model>/pod-0."""
    tool = _tool()
    tmp = tmp_path_factory.mktemp("calibrate")
    stack = _project(tmp / "project")
    spec = config.load_stack(str(stack)).spec
    plan = capacity.plan(spec).cluster(CLUSTER).model(MODEL)
    model = next(m for m in spec.models if m.name == MODEL)
    assert spec.load_replay is not None
    cfg = loadreplay.tool_config(spec, model, plan, spec.load_replay)
    tokenizer = openai_fake.tokenizer_dir(tmp / "tokenizer", tool.parent / "python")
    results = tmp / "results"
    with openai_fake.FakeReplica(MODEL) as replica:
        cfg["load"]["stages"] = [{"rate": r, "duration": STAGE_SECONDS} for r in STAGES]
        cfg["load"]["num_workers"] = 2
        cfg["load"]["base_seed"] = 19  # the same Poisson arrivals on every run
        cfg["server"]["base_url"] = replica.url
        cfg["tokenizer"]["pretrained_model_name_or_path"] = str(tokenizer)
        (tmp / "config.yml").write_text(yaml.safe_dump(cfg))
        started = time.time()
        run = subprocess.run([str(tool), "--config_file", str(tmp / "config.yml"), "--storage.local_storage.path",
                              str(results / CLUSTER / MODEL / "pod-0")],
                             env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
        ended = time.time()
    assert run.returncode == 0, run.stderr[-3000:]
    profiles.use_calibration(None)
    return {"project": stack.parent.parent, "stack": stack, "results": results, "started": started, "ended": ended}


def _calibrate(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["calibrate", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _prometheus(path: Path, start: float, end: float, replicas: int, extra: list[list[Any]] = ()) -> None:
    """A Prometheus range-query answer for the documented query: `replicas` up every second of the
    run, and `extra` samples beside them."""
    values = [[t, str(replicas)] for t in range(int(start) - 5, int(end) + 5)] + list(extra)
    path.write_text(json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"service": MODEL}, "values": sorted(values)}]}}))


def _stage_lines(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.startswith(f"{CLUSTER} ")]


def test_calibrate_derives_the_row_at_the_objective(measured, capsys):
    code, out, err = _calibrate(capsys, str(measured["stack"]), "--results", str(measured["results"]),
                                "--replicas", "1")
    assert code == 0, out + err
    stages = _stage_lines(out)
    assert [s[3] for s in stages] == ["0", "1", "2"]
    # Twice past the replica's limit, prompts queue: the last stage misses the 2 s TTFT objective.
    assert [s[-1] for s in stages] == ["yes", "yes", "no"]
    assert float(stages[2][8].rstrip("s")) > 2.0
    # The best stage at the objective is the busier one; what the replica served there is near its
    # request rate x request size (7 req/s x 250 tokens), less the stage's tail of last answers.
    best = float(stages[1][7].replace(",", ""))
    assert 0.4 * STAGES[1] * REQUEST_TOKENS < best < 1.1 * STAGES[1] * REQUEST_TOKENS

    spec = config.load_stack(str(measured["stack"])).spec
    old = profiles.load().throughput[profiles.row_key("dense-8b", "H100-80G", "vllm", "colocated")]
    match = re.search(r"new: prefill\s+([\d,.]+)\s+decode\s+([\d,.]+)\s+mixed\s+([\d,]+)\s+\((.*)\)", out)
    assert match, out
    prefill, decode = (float(match.group(i).replace(",", "")) for i in (1, 2))
    # One mix measures one rate: the shipped prefill:decode ratio is kept, and the new row's mixed
    # rate at the measured mix (150:100) is exactly what the replica served.
    assert prefill / decode == pytest.approx(old.prefill_tps / old.decode_tps, rel=1e-4)
    new = dataclasses.replace(old, prefill_tps=prefill, decode_tps=decode)
    assert capacity.mixed_tps(new, 0.6) == pytest.approx(best, rel=1e-3)
    assert "dense-8b on 1xH100-80G, at input share 0.60" in out
    # Provenance: stack, time (the stage's own, UTC), tool and version.
    source = match.group(4)
    when = re.search(r"rehearsal stack 'rehearsal' (\S+), inference-perf 0.7.0", source)
    assert when, source
    stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(measured["started"]))
    assert stamp[:13] <= when.group(1) <= time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(measured["ended"]))
    assert f"{CLUSTER}/{MODEL} stage 1" in source
    assert (spec.slo.ttft_p99_seconds, spec.slo.itl_p99_seconds) == (2.0, ITL_OBJECTIVE)
    assert "not written: --write puts these rows in" in out


def test_calibrate_shows_and_writes_the_broadcast_change(measured, capsys, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(measured["project"], project)
    stack = project / "stacks" / "Pulumi.rehearsal.yaml"
    broadcast = config.load_stack(str(project / "stacks" / "Pulumi.broadcast.yaml"))
    before = capacity.plan(broadcast.spec)
    plot = tmp_path / "rehearsal.png"
    code, out, err = _calibrate(capsys, str(stack), "--results", str(measured["results"]), "--replicas", "1", "--write",
                                "--plot", str(plot))
    assert code == 0, out + err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.startswith("  gala-") or line.startswith("  total")}
    assert len(rows) == len(broadcast.spec.clusters) + 1
    # The planner, reading the written file above the shipped table, plans what calibrate showed.
    target = project / "stacks" / profiles.CALIBRATION_FILE
    assert f"written: {target} (1 row(s) calibrated, 1 in the file)" in out
    after = capacity.plan(config.load_stack(str(project / "stacks" / "Pulumi.broadcast.yaml")).spec)
    for b, a in zip(before.clusters, after.clusters):
        gpus = [sum(int(m.gpus.value) for m in p.models) for p in (b, a)]
        assert rows[b.name][:3] == [f"{gpus[0]:,}", f"{gpus[1]:,}", f"{gpus[1] - gpus[0]:+,}"]
        assert rows[b.name][3:5] == [f"{b.nodes:,}", f"{a.nodes:,}"]
    # Measured slower than the shipped estimate: the greetings fleet grows, the other models do not.
    greet = [(b.model(MODEL), a.model(MODEL)) for b, a in zip(before.clusters, after.clusters)]
    assert all(a.replicas.value > b.replicas.value for b, a in greet)
    assert all(b.bounding("chat").gpus.value == a.bounding("chat").gpus.value for b, a in zip(before.clusters, after.clusters))
    # plan --explain says the figure is measured, and when.
    code = cli.main(["plan", str(project / "stacks" / "Pulumi.broadcast.yaml"), "--explain"])
    explained = capsys.readouterr().out
    assert re.search(r"per 1xH100-80G replica, vllm colocated \([^)]*\) \(measured: rehearsal stack 'rehearsal' "
                     r"\d{4}-\d\d-\d\dT\d\d:\d\dZ, "
                     r"inference-perf 0.7.0", explained), explained[:3000]
    written = yaml.safe_load(target.read_text())["throughput"]
    assert [(r["model_class"], r["gpu"]) for r in written] == [("dense-8b", "H100-80G")]
    assert written[0]["measured"].startswith("rehearsal stack 'rehearsal' ")


def test_replicas_and_leads_come_from_the_prometheus_export(measured, capsys, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(measured["results"], results)
    spec = config.load_stack(str(measured["stack"])).spec
    model = next(m for m in spec.models if m.name == MODEL)
    floors = autoscaling.moment_floors(spec, model, capacity.plan(spec).cluster(CLUSTER).model(MODEL))
    # Around each moment's pre-scale cron: nothing up until 5 minutes after it, then the moment's
    # replicas (the kit's own floors say how many and when the cron fires).
    leads = []
    for _, start, _, replicas, _ in floors:
        cron = timeline.to_utc(spec, start).timestamp()
        leads += [[cron + t, str(replicas if t >= 300 else 0)] for t in range(-60, 601, 30)]
    _prometheus(results / CLUSTER / "prometheus.json", measured["started"], measured["ended"], replicas=2, extra=leads)
    code, out, err = _calibrate(capsys, str(measured["stack"]), "--results", str(results))
    one = _calibrate(capsys, str(measured["stack"]), "--results", str(measured["results"]), "--replicas", "1")[1]
    two = _stage_lines(out)
    assert [s[6] for s in two] == ["2", "2", "2"]
    for a, b in zip(_stage_lines(one), two):
        assert float(b[7].replace(",", "")) == pytest.approx(float(a[7].replace(",", "")) / 2, abs=1)
    report = next(line for line in out.splitlines() if line.startswith(f"{MODEL} "))
    assert report.endswith(f"5.0-5.0 min over {len(floors)} moment(s)")
    assert "n/a (no prometheus.json)" in next(line for line in one.splitlines() if line.startswith(f"{MODEL} "))
    assert code == 0, out + err


def test_a_plan_past_the_envelope_is_shown_and_not_written(measured, capsys, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(measured["project"], project)
    # Eighty replicas sharing what one served: an eightieth of the rate each, a greetings fleet about
    # four hundred times the shipped plan's, past every broadcast cluster's 5,000 nodes (64 clusters,
    # 1/64 of the night each: twenty replicas no longer pass them all on a fast run).
    code, out, err = _calibrate(capsys, str(project / "stacks" / "Pulumi.rehearsal.yaml"), "--results",
                                str(measured["results"]), "--replicas", "80", "--write")
    assert code == 1, out + err
    unfit = [line for line in out.splitlines() if line.startswith("DOES NOT FIT: ")]
    assert len(unfit) == 64 and unfit[0].startswith("DOES NOT FIT: cluster 'gala-bj-01': ")
    assert "not written: with these rows the broadcast plan does not fit its clusters" in out
    assert not (project / "stacks" / profiles.CALIBRATION_FILE).exists()


def _bad(capsys, measured, tmp_path, change, *extra: str) -> list[str]:
    results = tmp_path / "results"
    shutil.copytree(measured["results"], results)
    change(results / CLUSTER / MODEL / "pod-0")
    code, out, err = _calibrate(capsys, str(measured["stack"]), "--results", str(results), *extra)
    assert code == 2, out + err
    assert out == ""
    return err.splitlines()


def test_a_partial_run_is_one_line_naming_the_missing_file(measured, capsys, tmp_path):
    lines = _bad(capsys, measured, tmp_path, lambda pod: (pod / "stage_2_lifecycle_metrics.json").unlink(),
                 "--replicas", "1")
    pod = tmp_path / "results" / CLUSTER / MODEL / "pod-0"
    assert lines == [f"{pod}/stage_2_lifecycle_metrics.json: (file): expected inference-perf 0.7.0's per-stage "
                     "report; found no such file"]


def test_malformed_reports_are_one_line_each(measured, capsys, tmp_path):
    def spoil(pod: Path) -> None:
        (pod / "stage_0_lifecycle_metrics.json").write_text("{not json")
        data = json.loads((pod / "stage_1_lifecycle_metrics.json").read_text())
        del data["successes"]["latency"]["time_to_first_token"]["p99"]
        (pod / "stage_1_lifecycle_metrics.json").write_text(json.dumps(data))
    lines = _bad(capsys, measured, tmp_path, spoil, "--replicas", "1")
    pod = tmp_path / "results" / CLUSTER / MODEL / "pod-0"
    assert len(lines) == 2
    assert lines[0].startswith(f"{pod}/stage_0_lifecycle_metrics.json: (file): expected inference-perf 0.7.0's "
                               "per-stage report; found ")
    assert lines[1] == (f"{pod}/stage_1_lifecycle_metrics.json: successes.latency.time_to_first_token.p99: expected "
                        "a number (inference-perf 0.7.0's per-stage report), a finite number above 0 and at most 86,400; "
                        "found nothing")


def test_replicas_must_be_known(measured, capsys, tmp_path):
    lines = _bad(capsys, measured, tmp_path, lambda pod: None)
    assert lines == [f"{tmp_path / 'results' / CLUSTER / 'prometheus.json'}: (file): expected the replicas serving "
                     "each model (a Prometheus export) or --replicas N; found no such file"]


def test_results_of_an_unknown_cluster_are_refused(measured, capsys, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(measured["results"] / CLUSTER, results / "reh-zz-09")
    code, out, err = _calibrate(capsys, str(measured["stack"]), "--results", str(results), "--replicas", "1")
    assert code == 2
    assert err.splitlines() == [f"{results / 'reh-zz-09'}: (directory): expected a cluster of the stack (reh-bj-01, "
                                "reh-bj-02, reh-hk-01, reh-nx-01); found 'reh-zz-09'"]


@pytest.mark.realtool
def test_the_rendered_configs_are_what_inference_perf_accepts(tmp_path):
    """Every model's rendered ConfigMap parses under inference-perf's own config model (its
    read_config, at the pinned release), stages and all."""
    tool = _tool()
    spec = nights.spec("rehearsal")
    plan = capacity.plan(spec)
    paths = []
    for model in spec.models:
        assert spec.load_replay is not None
        path = tmp_path / f"{model.name}.yml"
        path.write_text(yaml.safe_dump(loadreplay.tool_config(spec, model, plan.cluster(CLUSTER).bounding(model.name),
                                                              spec.load_replay)))
        paths.append(str(path))
    script = ("import sys, json\nfrom inference_perf.config import read_config\n"
              "print(json.dumps([[s.rate for s in read_config(p).load.stages] for p in sys.argv[1:]]))")
    run = subprocess.run([str(tool.parent / "python"), "-c", script, *paths], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rates = json.loads(run.stdout.splitlines()[-1])
    assert [len(r) for r in rates] == [len(loadreplay.steps(spec, plan.cluster(CLUSTER).bounding(m.name), spec.load_replay))
                                       for m in spec.models]


def test_a_malformed_prometheus_export_is_one_line(measured, capsys, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(measured["results"], results)
    (results / CLUSTER / "prometheus.json").write_text('{"status": "error", "error": "timeout"}')
    code, out, err = _calibrate(capsys, str(measured["stack"]), "--results", str(results), "--replicas", "1")
    assert code == 2
    assert err.splitlines() == [f"{results / CLUSTER / 'prometheus.json'}: data.result: expected a list of series "
                                "(resultType matrix); found None"]


@pytest.mark.parametrize("argv, line", [
    (["--results", "/nonexistent/results"], "/nonexistent/results: --results: expected a directory of load replay "
                                            "results (DIR/<cluster>/<model>/pod-<i>/); found no such directory"),
    (["--results", ".", "--replicas", "0"], "(command line): --replicas: expected a whole number from 1 to 150,000; found 0"),
])
def test_bad_arguments_are_one_line(capsys, argv, line):
    code, out, err = _calibrate(capsys, "rehearsal", *argv)
    assert (code, out, err.splitlines()) == (2, "", [line])
