"""The Pulumi program under Pulumi's mocks: providers, parents, protect, and sameness with the render."""
from __future__ import annotations

from pathlib import Path

import pytest

import nights
from conftest import STACKS
from pulumi_harness import normalise, run_program

K8S = "kubernetes:"
PROVIDER = "pulumi:providers:kubernetes"


def kube_objects(mocks):
    """Kubernetes objects registered (Helm releases are add-ons, not rendered objects)."""
    return [r for r in mocks.resources if r.typ.startswith(K8S) and not r.typ.startswith("kubernetes:helm.sh")]


def test_one_provider_per_cluster_and_nothing_on_the_default_provider(runs, stack_name):
    mocks = runs[stack_name]
    spec = nights.program_objects(stack_name).spec
    providers = {r.name: r for r in mocks.resources if r.typ == PROVIDER}
    assert sorted(providers) == sorted(c.name for c in spec.clusters)
    assert all(p.inputs["kubeconfig"] for p in providers.values())
    objects = kube_objects(mocks)
    assert objects
    for r in objects:
        cluster = r.name.split("/")[0]
        assert r.provider == cluster, f"{r.name} must use its cluster's provider, not {r.provider!r}"


def test_every_object_sits_under_its_unit_under_its_cluster(runs, stack_name):
    mocks = runs[stack_name]
    by_name = {r.name: r for r in mocks.resources if r.typ.startswith("peaknight:index:")}
    clusters = {r.name for r in by_name.values() if r.typ == "peaknight:index:ClusterStack"}
    for r in kube_objects(mocks):
        unit = by_name[r.parent]
        assert unit.typ != "peaknight:index:ClusterStack" or r.typ.startswith("kubernetes:helm.sh")
        assert unit.parent in clusters and r.name.startswith(unit.parent + "/")
    for name, unit in by_name.items():
        if unit.typ == "peaknight:index:ClusterStack":
            assert unit.parent is None
            # Renamed from Cluster: the alias keeps every URN beneath it, so stacks update in place.
            assert unit.aliases == ("peaknight:index:Cluster",)


def test_broadcast_protects_node_pools_and_rehearsal_does_not(runs):
    for stack, expected in (("broadcast", True), ("rehearsal", False)):
        pools = [r for r in kube_objects(runs[stack]) if r.typ in ("kubernetes:karpenter.sh/v1:NodePool",
                                                                   "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")]
        assert pools and all(r.protect is expected for r in pools)
    deployments = [r for r in kube_objects(runs["broadcast"]) if r.typ == "kubernetes:apps/v1:Deployment"
                   and "inference" in r.name]
    # The autoscalers own the model servers' replicas; the endpoint pickers' and the routers' are the
    # plan's (no autoscaler), kept by Pulumi.
    servers = [r for r in deployments if not r.name.endswith(("-epp", "-router"))]
    assert servers and all(r.ignore_changes == ("spec.replicas",) for r in servers)
    assert len(deployments) > len(servers) and all(r.ignore_changes == () for r in deployments if r not in servers)


def test_program_and_offline_render_declare_the_same_objects(runs, stack_name):
    rendered = {f"{c.cluster.name}/{o.key}": normalise(o.manifest)
                for c in nights.program_objects(stack_name).clusters for u in c.units for o in u.objects}
    declared = {r.name: {k: v for k, v in r.inputs.items()} for r in kube_objects(runs[stack_name])}
    assert sorted(declared) == sorted(rendered)
    for name, manifest in rendered.items():
        assert declared[name] == manifest, name


def test_missing_kubeconfig_is_one_clear_error(tmp_path):
    from pulumi_harness import run_program as run
    with pytest.raises(Exception) as err:
        run(STACKS / "Pulumi.rehearsal.yaml", kubeconfigs=False)
    assert "peaknight:kubeconfig-reh-bj-01: expected the cluster's kubeconfig as a secret" in str(err.value)


def test_bad_config_under_pulumi_is_reported_like_the_cli(tmp_path):
    from test_config import write_variant
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:models"][0].update(engine="vlm"))
    with pytest.raises(Exception) as err:
        run_program(Path(path))
    assert ("Pulumi config of stack variant: peaknight:models[0].engine: expected one of vllm, sglang; found 'vlm' "
            "(did you mean 'vllm'?)") in str(err.value)


def test_the_program_rejects_exactly_what_the_cli_rejects(tmp_path, capsys):
    """An unknown key and a plain-text kubeconfig: under mocks the program used to register 291
    resources; now it fails with the CLI's lines, one per problem, before registering anything."""
    from peaknight.cli import main as cli
    from test_config import write_variant

    def edit(cfg):
        cfg["peaknight:edgez"] = []
        cfg["peaknight:kubeconfig-reh-bj-01"] = "apiVersion: v1\nkind: Config\n"   # not --secret
    path = write_variant(tmp_path, edit, base="rehearsal")
    assert cli.main(["plan", str(path)]) == 2
    cli_lines = capsys.readouterr().err.splitlines()
    assert len(cli_lines) == 2
    with pytest.raises(Exception) as err:
        run_program(path, kubeconfigs=False, secret=False)
    message = str(err.value)
    program_lines = [line.replace("Pulumi config of stack variant", str(path)) for line in message.splitlines()
                     if line.startswith("Pulumi config of stack variant: ")]
    assert program_lines == cli_lines
    assert "peaknight:edgez: expected a known key; found an unknown key (did you mean 'peaknight:edges'?)" in message
    assert "peaknight:kubeconfig-reh-bj-01: expected a Pulumi secret" in message


def test_a_kubeconfig_set_without_secret_is_refused_under_pulumi():
    """`pulumi config set` without --secret: the value is plain text in the stack file."""
    with pytest.raises(Exception) as err:
        run_program(STACKS / "Pulumi.rehearsal.yaml", secret=False)
    lines = [line for line in str(err.value).splitlines() if line.startswith("Pulumi config of stack rehearsal: ")]
    assert len(lines) == 4  # one per cluster, nothing else
    assert all("expected a Pulumi secret (pulumi config set --secret kubeconfig-" in line and
               line.endswith("; found a plain-text value") for line in lines)
