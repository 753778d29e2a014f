"""Offline render: every object validates, renders are stable, any stack file works, no Pulumi import."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import nights
from peaknight.cli import main as cli
from peaknight.spec import config
from peaknight.review import schema as k8s_schema
from peaknight.cli import render
from conftest import ROOT, STACKS


def _stack(name: str) -> Path:
    """The stack file a render test reads: broadcast as one cluster per shape (its 64 clusters are
    3 shapes, which render alike up to their names: test_cluster_shapes), the rehearsal whole."""
    return nights.per_shape(name) if name == "broadcast" else nights.path(name)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name in ("broadcast", "rehearsal"):
        d = tmp_path_factory.mktemp(name)
        assert cli.main(["render", str(_stack(name)), "--out", str(d)]) == 0
        out[name] = d
    return out


def test_every_rendered_object_validates_against_api_schemas_and_crds(rendered, stack_name):
    problems = []
    files = sorted(rendered[stack_name].glob("*/*.yaml"))
    assert files
    for path in files:
        manifest = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)  # libyaml: 2,592 files in broadcast
        problems += [f"{path.relative_to(rendered[stack_name])}: {p}" for p in k8s_schema.validate(manifest)]
    assert problems == []


def test_schema_validation_catches_a_bad_object():
    bad = {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "x"},
           "spec": {"template": {"spec": {"requirements": [], "nodeClassRef": {"group": "g", "kind": "k", "name": "n"}}},
                    "disruption": {"budgets": [{"nodes": "zero"}]}}}
    assert any("NodePool/x" in p and "budgets" in p for p in k8s_schema.validate(bad))
    core = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"bogus": 1}}
    assert k8s_schema.validate(core) == ["Service/s: Additional properties are not allowed ('bogus' was unexpected) "
                                         "at spec"]


def test_one_file_per_object_under_each_cluster_with_sorted_keys(rendered, stack_name):
    spec = nights.spec_at(_stack(stack_name))
    ev = nights.objects_at(_stack(stack_name))
    for c in ev.clusters:
        files = sorted(p.name for p in (rendered[stack_name] / c.cluster.name).iterdir())
        assert files == sorted(f"{o.key}.yaml" for u in c.units for o in u.objects)
    text = next((rendered[stack_name] / spec.clusters[0].name).glob("deployment.*")).read_text()
    assert text == render.dump(yaml.safe_load(text)), "keys sorted, one stable layout"


def test_two_renders_are_identical(rendered, tmp_path, stack_name):
    """A second render, in a fresh directory, writes what the module's render wrote, byte for byte."""
    assert cli.main(["render", str(_stack(stack_name)), "--out", str(tmp_path / "b")]) == 0
    diff = subprocess.run(["diff", "-r", str(rendered[stack_name]), str(tmp_path / "b")], capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout


def test_a_stack_file_outside_the_repo_renders(tmp_path, capsys):
    outside = tmp_path / "elsewhere" / "Pulumi.night.yaml"
    outside.parent.mkdir()
    shutil.copy(STACKS / "Pulumi.rehearsal.yaml", outside)
    assert cli.main(["render", str(outside), "--out", str(tmp_path / "out")]) == 0
    assert "rendered stack 'night'" in capsys.readouterr().out
    assert (tmp_path / "out" / "reh-bj-01" / "nodepool.h200.yaml").exists()


@pytest.mark.realtool  # the installed kit run as its own process
def test_render_stays_off_the_pulumi_sdk(tmp_path):
    code = ("import sys; from peaknight.cli import main as cli; rc = cli.main(['render', 'rehearsal', '--out', sys.argv[1]]); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_kubernetes')); "
            "print(bad); sys.exit(rc or bool(bad))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.realtool  # the installed kit run as its own process
def test_the_console_script_runs_the_main_job(tmp_path):
    exe = Path(sys.executable).parent / "peaknight"
    result = subprocess.run([str(exe), "render", "broadcast", "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "total: 64 clusters" in result.stdout and "all models and edges covered" in result.stdout
    assert "\nUNPROVEN: chat-prefill (gala-bj-01 +63) on efa: measured on infiniband" in result.stdout


def test_placeholder_digests_are_warned_about(capsys, tmp_path):
    """One warning per key (file, key path, what to set); `validate --strict` refuses the same lines."""
    # One cluster per shape (nights.per_shape): each cluster adds the same line, and rendering all
    # 64 only writes the same files more times.
    stack = nights.per_shape("broadcast")
    loaded = config.load_stack(str(stack))
    lines = [str(p) for p in config.placeholders(loaded.spec, str(loaded.path))]
    # 3 model images, the edge's 3 images, the endpoint picker's, and 3 weights revisions; each of
    # the 3 clusters' API server addresses, which only the cluster knows; and the global names'
    # hosted zone and domain (peaknight:steering).
    assert len(lines) == 10 + 3 + 2
    assert len(config.placeholders(nights.spec("broadcast"), "broadcast")) == 10 + 64 + 2
    assert cli.main(["render", str(stack), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    for line in lines:  # on stderr: stdout stays the render's summary
        assert f"warning: {line}\n" in out.err
    assert "warning:" not in out.out
    assert (f"{loaded.path}: peaknight:models[0].image: expected your registry's digest of lmsysorg/sglang:v0.5.4 "
            "(crane digest lmsysorg/sglang:v0.5.4); found the all-zero placeholder digest") in lines
    assert (f"{loaded.path}: peaknight:models[0].weightsRevision: expected the commit of deepseek-ai/DeepSeek-V3 your "
            "mirror holds (40 hex); found the all-zero placeholder revision") in lines
    assert (f"{loaded.path}: peaknight:clusters[2].apiServerCidrs: expected the API server's addresses, so the "
            "endpoint pickers and routers reach it alone (kubectl get endpointslices -n default -l "
            "kubernetes.io/service-name=kubernetes); found nothing (any address on 443/6443)") in lines
    assert (f"{loaded.path}: peaknight:steering.zoneId: expected your hosted zone's ID (aws route53 "
            "list-hosted-zones-by-name); found the all-zero placeholder zone") in lines
    assert (f"{loaded.path}: peaknight:steering.domain: expected your event's domain (the hosted zone's); found "
            "'gala.example.com', under example.com (reserved for examples, RFC 2606)") in lines
    assert config.placeholders(config.load_stack("rehearsal").spec, "rehearsal") == []


def test_a_misspelt_field_of_a_custom_resource_is_an_error():
    """CRD schemas omit additionalProperties; validation treats unknown fields as the API server's
    strict field validation does, so a typo in a ScaledObject or an Application cannot pass."""
    scaled = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "m"},
              "spec": {"scaleTargetRef": {"name": "m"}, "pollingIntervl": 5,
                       "triggers": [{"type": "cpu", "metadata": {"value": "50"}}]}}
    assert k8s_schema.validate(scaled) == ["ScaledObject/m: Additional properties are not allowed ('pollingIntervl' "
                                           "was unexpected) at spec"]
