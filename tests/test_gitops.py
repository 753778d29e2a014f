"""GitOps mode: with `peaknight:gitops` the add-ons are Argo CD Applications or Flux HelmReleases +
HelmRepositories, pinned to the charts and values the Helm releases have, valid against their
CRDs, declared by the Pulumi program into the render directory (no Helm release, no kubeconfig)
and written by `peaknight render` the same."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from peaknight.builders import event
from peaknight.cli import main as cli
from peaknight.review import schema as k8s_schema
from peaknight.spec import config
from conftest import STACKS
from pulumi_harness import normalise, run_program

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def gitops_stack(tmp_path: Path, mode: str, render_directory: str | None = None, base: str = "rehearsal") -> Path:
    doc = yaml.safe_load((STACKS / f"Pulumi.{base}.yaml").read_text())
    doc["config"]["peaknight:gitops"] = mode
    if render_directory:
        doc["config"]["peaknight:renderDirectory"] = render_directory
    path = tmp_path / f"Pulumi.gitops-{mode}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`peaknight render` of the rehearsal stack in each GitOps mode."""
    out = {}
    for mode in ("argocd", "flux"):
        tmp = tmp_path_factory.mktemp(mode)
        assert cli.main(["render", str(gitops_stack(tmp, mode)), "--out", str(tmp / "out")]) == 0
        out[mode] = tmp / "out"
    return out


def _docs(directory: Path, kind: str) -> list[tuple[str, dict]]:
    return [(p.parent.name, yaml.safe_load(p.read_text())) for p in sorted(directory.glob(f"*/{kind.lower()}.*.yaml"))]


def _helm_releases(mocks) -> dict[tuple[str, str], dict]:
    """(cluster, release name) -> inputs of the Helm release the program declares without GitOps."""
    return {(r.name.split("/")[0], r.inputs["name"]): r.inputs for r in mocks.resources if r.typ == HELM_RELEASE}


@pytest.mark.parametrize("mode", ["argocd", "flux"])
def test_rendered_gitops_objects_validate_against_their_crds(rendered: dict[str, Path], mode: str) -> None:
    kinds = ("Application",) if mode == "argocd" else ("HelmRelease", "HelmRepository")
    for kind in kinds:
        docs = _docs(rendered[mode], kind)
        assert docs, kind
        problems = [p for _, doc in docs for p in k8s_schema.validate(doc)]
        assert problems == []


def test_argocd_applications_pin_the_helm_releases_charts_and_values(rendered: dict[str, Path], runs) -> None:
    helm = _helm_releases(runs["rehearsal"])
    apps = {(cluster, doc["spec"]["source"]["helm"]["releaseName"]): doc
            for cluster, doc in _docs(rendered["argocd"], "Application")}
    assert sorted(apps) == sorted(helm)  # the same add-ons on the same clusters
    for key, release in helm.items():
        source = apps[key]["spec"]["source"]
        assert source["targetRevision"] == release["version"]
        assert normalise(source["helm"]["valuesObject"]) == release["values"]
        if release["chart"].startswith("oci://"):  # Argo CD's native OCI source
            assert (source["repoURL"], source["path"]) == (release["chart"], ".")
        else:
            assert (source["repoURL"], source["chart"]) == (release["repositoryOpts"]["repo"], release["chart"])
        assert apps[key]["spec"]["destination"]["namespace"] == release["namespace"]


def test_flux_releases_pin_the_helm_releases_charts_and_values_and_wait_like_them(rendered: dict[str, Path],
                                                                                  runs) -> None:
    helm = _helm_releases(runs["rehearsal"])
    repos = {(cluster, doc["metadata"]["name"]): doc["spec"] for cluster, doc in _docs(rendered["flux"], "HelmRepository")}
    flux = {(cluster, doc["spec"]["releaseName"]): doc for cluster, doc in _docs(rendered["flux"], "HelmRelease")}
    assert sorted(flux) == sorted(helm)
    by_addon = {(c, doc["metadata"]["name"]): doc["spec"]["releaseName"] for (c, _), doc in flux.items()}
    for (cluster, name), release in helm.items():
        spec = flux[(cluster, name)]["spec"]
        chart = spec["chart"]["spec"]
        repo = repos[(cluster, chart["sourceRef"]["name"])]
        assert chart["version"] == release["version"]
        assert normalise(spec["values"]) == release["values"]
        assert spec["targetNamespace"] == release["namespace"]
        if release["chart"].startswith("oci://"):
            assert (repo.get("type"), f"{repo['url']}/{chart['chart']}") == ("oci", release["chart"])
        else:
            assert (repo["url"], chart["chart"]) == (release["repositoryOpts"]["repo"], release["chart"])
        # dependsOn: the releases the Helm release's depends_on names, by release name
        waits = sorted(by_addon[(cluster, d["name"])] for d in spec.get("dependsOn", []))
        assert waits == sorted(n.split("/", 1)[1] for n in _depends(runs["rehearsal"], cluster, name))


def _depends(mocks, cluster: str, name: str) -> tuple[str, ...]:
    (release,) = [r for r in mocks.resources if r.typ == HELM_RELEASE and r.name == f"{cluster}/{name}"]
    return release.depends_on


@pytest.mark.parametrize("mode", ["argocd", "flux"])
def test_render_directory_program_declares_the_gitops_objects_and_no_helm_release(tmp_path: Path, mode: str) -> None:
    """pulumi-kubernetes cannot render a helm.v3.Release (pulumi/pulumi-kubernetes#1716): in GitOps
    mode the program declares the same objects `peaknight render` writes, add-ons included, each
    under its cluster's rendering provider, and needs no kubeconfig."""
    stack = gitops_stack(tmp_path, mode, render_directory="out")
    mocks = run_program(stack, kubeconfigs=False)
    assert [r for r in mocks.resources if r.typ.startswith("kubernetes:helm.sh")] == []
    providers = {r.name: r.inputs for r in mocks.resources if r.typ == "pulumi:providers:kubernetes"}
    spec = config.load_stack(str(stack)).spec
    assert {name: p.get("renderYamlToDirectory") for name, p in providers.items()} == {
        c.name: f"out/{c.name}" for c in spec.clusters}
    declared = {r.name: r.inputs for r in mocks.resources
                if r.typ.startswith("kubernetes:") and r.custom and r.typ != "pulumi:providers:kubernetes"}
    built = {f"{c.cluster.name}/{o.key}": normalise(o.manifest)
             for c in event.build(spec).clusters for u in c.units for o in u.objects}
    assert sorted(declared) == sorted(built)
    addon_kinds = {"argocd": {"Application"}, "flux": {"HelmRelease", "HelmRepository"}}[mode]
    addon_objects = [n for n, m in built.items() if m["kind"] in addon_kinds]
    assert len(addon_objects) >= len(spec.clusters)
    for name in addon_objects:
        assert declared[name] == built[name]
        (record,) = [r for r in mocks.resources if r.name == name]
        assert record.provider == name.split("/")[0]


def test_render_directory_without_gitops_is_one_line_in_cli_and_program(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    doc = yaml.safe_load((STACKS / "Pulumi.rehearsal.yaml").read_text())
    doc["config"]["peaknight:renderDirectory"] = "out"
    path = tmp_path / "Pulumi.nogitops.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    line = (f"peaknight:gitops: expected argocd or flux when peaknight:renderDirectory is set (add-ons as GitOps "
            "objects); found nothing")
    assert cli.main(["plan", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}: {line}\n"
    with pytest.raises(Exception) as err:
        run_program(path, kubeconfigs=False)
    assert f"Pulumi config of stack nogitops: {line}" in str(err.value)


def test_without_gitops_render_writes_no_add_on_objects(tmp_path: Path) -> None:
    assert cli.main(["render", "rehearsal", "--out", str(tmp_path)]) == 0
    assert not list(tmp_path.glob("*/application.*")) and not list(tmp_path.glob("*/helmrelease.*"))
