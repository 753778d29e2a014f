"""The Pulumi program under Pulumi's mocks: providers, parents, protect, and sameness with the render."""
from __future__ import annotations

from pathlib import Path

import pytest

from peaknight.spec import config
from peaknight.builders import event
from conftest import STACKS
from pulumi_harness import normalise, run_program

K8S = "kubernetes:"
PROVIDER = "pulumi:providers:kubernetes"


def kube_objects(mocks):
    """Kubernetes objects registered (Helm releases are add-ons, not rendered objects)."""
    return [r for r in mocks.resources if r.typ.startswith(K8S) and not r.typ.startswith("kubernetes:helm.sh")]


def test_one_provider_per_cluster_and_nothing_on_the_default_provider(runs, stack_name):
    mocks = runs[stack_name]
    spec = config.load_stack(stack_name).spec
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
    assert deployments and all(r.ignore_changes == ("spec.replicas",) for r in deployments)


def test_program_and_offline_render_declare_the_same_objects(runs, stack_name):
    spec = config.load_stack(stack_name).spec
    rendered = {f"{c.cluster.name}/{o.key}": normalise(o.manifest)
                for c in event.build(spec).clusters for u in c.units for o in u.objects}
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
