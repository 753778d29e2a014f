"""GitOps mode: with `peaknight:gitops` the add-ons are Argo CD Applications or Flux HelmReleases +
HelmRepositories, pinned to the charts and values the Helm releases have, valid against their
CRDs, declared by the Pulumi program into the render directory (no Helm release, no kubeconfig)
and written by `peaknight render` the same."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from peaknight.addons import bootstrap
from peaknight.addons.gitops import SYNC_WAVE
from peaknight.builders import event
from peaknight.cli import main as cli
from peaknight.review import crds
from peaknight.review import schema as k8s_schema
from peaknight.spec import config
import nights
from conftest import STACKS
from pulumi_harness import normalise, run_program

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
REPOSITORY = {"url": "https://git.example/peaknight-manifests.git", "revision": "release/2026", "path": "deploy/night"}


def gitops_stack(tmp_path: Path, mode: str, render_directory: str | None = None, base: str = "rehearsal",
                 clusters: list[str] | None = None) -> Path:
    """A GitOps variant of a stack; cut to `clusters` (nights.keep_clusters) for a Pulumi program run."""
    doc = yaml.safe_load((STACKS / f"Pulumi.{base}.yaml").read_text())
    if clusters:
        nights.keep_clusters(doc["config"], clusters)
    doc["config"]["peaknight:gitops"] = mode
    doc["config"]["peaknight:gitopsRepository"] = REPOSITORY
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
    """(cluster, object) of a kind, from the clusters' directories and (Flux) their add-ons' ones."""
    return [(p.parent.name.removesuffix(bootstrap.ADDONS_SUFFIX), yaml.safe_load(p.read_text()))
            for p in sorted(directory.glob(f"*/{kind.lower()}.*.yaml"))]


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
    under its cluster's rendering provider, and needs no kubeconfig. One cluster of each autoscaler
    (KEDA, HPA): their add-ons differ."""
    stack = gitops_stack(tmp_path, mode, render_directory="out", clusters=["reh-bj-01", "reh-hk-01"])
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


# ---- the per-cluster roots (addons/bootstrap.py) ------------------------------------------------

# Flux's GitRepository and Kustomization, as their pinned CRDs (crds.lock.yaml: source-controller
# 39b711b1, kustomize-controller 186fb3b2) define the fields the roots use: the offline mirror lacks
# those two files, so the tests check the roots against this hand-written excerpt (required fields,
# patterns, enums, no unknown field in spec).
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
_FLUX_META = {"type": "object", "required": ["name", "namespace"]}
FLUX_ROOT_SCHEMAS = {
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"metadata": _FLUX_META, "spec": {
            "type": "object", "required": ["interval", "url"], "additionalProperties": False,
            "properties": {
                "interval": _DURATION, "url": {"type": "string", "pattern": "^(http|https|ssh)://.*$"},
                "ref": {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
                        "properties": {k: {"type": "string"} for k in ("branch", "commit", "name", "semver", "tag")}}}}}},
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"metadata": _FLUX_META, "spec": {
            "type": "object", "required": ["interval", "prune", "sourceRef"], "additionalProperties": False,
            "properties": {
                "interval": _DURATION, "timeout": _DURATION, "path": {"type": "string"},
                "prune": {"type": "boolean"}, "wait": {"type": "boolean"},
                "dependsOn": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                         "additionalProperties": False,
                                                         "properties": {"name": {"type": "string"},
                                                                        "namespace": {"type": "string"}}}},
                "sourceRef": {"type": "object", "required": ["kind", "name"], "additionalProperties": False,
                              "properties": {"kind": {"enum": ["OCIRepository", "GitRepository", "Bucket",
                                                               "ExternalArtifact"]},
                                             "name": {"type": "string"}, "namespace": {"type": "string"}}}}}}},
}


def _roots(directory: Path) -> dict[str, list[dict]]:
    return {p.name.removesuffix(".root.yaml"): list(yaml.safe_load_all(p.read_text()))
            for p in sorted(directory.glob("*.root.yaml"))}


def _clusters(directory: Path) -> list[str]:
    return yaml.safe_load((directory / ".peaknight-render.yaml").read_text())["clusters"]


def test_argocd_root_per_cluster_syncs_its_directory_from_the_repository(rendered: dict[str, Path]) -> None:
    out = rendered["argocd"]
    roots = _roots(out)
    assert sorted(roots) == sorted(_clusters(out))
    for cluster, docs in roots.items():
        (root,) = docs
        assert root["kind"] == "Application" and root["metadata"]["namespace"] == "argocd"
        assert root["spec"]["source"] == {"repoURL": REPOSITORY["url"], "targetRevision": REPOSITORY["revision"],
                                          "path": f"{REPOSITORY['path']}/{cluster}", "directory": {"recurse": False}}
        assert root["spec"]["destination"] == {"server": "https://kubernetes.default.svc"}
        assert root["spec"]["syncPolicy"]["automated"] == {"prune": False, "selfHeal": True}
        assert "SkipDryRunOnMissingResource=true" in root["spec"]["syncPolicy"]["syncOptions"]
        assert k8s_schema.validate(root) == []  # the pinned Application CRD
        assert not (out / f"{cluster}.addons").exists()  # Argo CD's add-ons stay in the cluster's directory


def test_argocd_waves_put_each_add_on_after_those_it_needs_and_before_the_objects(rendered: dict[str, Path],
                                                                                  runs) -> None:
    out = rendered["argocd"]
    for cluster in _clusters(out):
        apps = {doc["spec"]["source"]["helm"]["releaseName"]: int(doc["metadata"]["annotations"][SYNC_WAVE])
                for c, doc in _docs(out, "Application") if c == cluster}
        assert apps and max(apps.values()) < 0  # before every object of the default wave 0
        for name, wave in apps.items():
            for need in _depends(runs["rehearsal"], cluster, name):
                assert apps[need.split("/", 1)[1]] < wave, (cluster, name, need)
        assert min(apps.values()) < max(apps.values())  # the rehearsal's add-ons do wait for one another
        others = [yaml.safe_load(p.read_text()) for p in (out / cluster).glob("*.yaml")
                  if not p.name.startswith("application.")]
        assert others and all(SYNC_WAVE not in (o["metadata"].get("annotations") or {}) for o in others)


def test_flux_roots_apply_the_add_ons_first_then_the_objects(rendered: dict[str, Path]) -> None:
    import jsonschema

    out = rendered["flux"]
    roots = _roots(out)
    assert sorted(roots) == sorted(_clusters(out))
    for cluster, docs in roots.items():
        for doc in docs:
            jsonschema.validate(doc, FLUX_ROOT_SCHEMAS[(doc["apiVersion"], doc["kind"])])
        (repo,) = [d for d in docs if d["kind"] == "GitRepository"]
        assert repo["spec"]["url"] == REPOSITORY["url"] and repo["spec"]["ref"] == {"branch": REPOSITORY["revision"]}
        kustomizations = {d["spec"]["path"]: d for d in docs if d["kind"] == "Kustomization"}
        addons = kustomizations.pop(f"./{REPOSITORY['path']}/{cluster}.addons")
        (objects,) = kustomizations.values()
        assert objects["spec"]["path"] == f"./{REPOSITORY['path']}/{cluster}"
        assert objects["spec"]["dependsOn"] == [{"name": addons["metadata"]["name"]}]
        assert addons["spec"]["wait"] is True and "dependsOn" not in addons["spec"]  # Ready once its releases are
        for k in (addons, objects):
            assert k["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
        # The add-ons' directory holds the HelmRepositories and HelmReleases, the objects' none of them.
        addon_kinds = {p.name.split(".", 1)[0] for p in (out / f"{cluster}.addons").glob("*.yaml")}
        assert addon_kinds == {"helmrelease", "helmrepository"}
        assert not list((out / cluster).glob("helmrelease.*")) and not list((out / cluster).glob("helmrepository.*"))


def test_the_hand_written_flux_schema_refuses_what_the_crds_refuse() -> None:
    """The excerpt can fail: a root without its sourceRef, an scp-like URL, an unknown field."""
    import jsonschema

    kustomization = FLUX_ROOT_SCHEMAS[("kustomize.toolkit.fluxcd.io/v1", "Kustomization")]
    repository = FLUX_ROOT_SCHEMAS[("source.toolkit.fluxcd.io/v1", "GitRepository")]
    meta = {"name": "x", "namespace": "flux-system"}
    for schema, spec in ((kustomization, {"interval": "10m", "prune": False}),
                         (kustomization, {"interval": "10m", "prune": False, "sourceRef": {"kind": "Git", "name": "x"}}),
                         (repository, {"interval": "10m", "url": "git@git.example:org/repo.git"}),
                         (repository, {"interval": "10m", "url": "https://git.example/r", "branch": "main"})):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"apiVersion": "v", "kind": "k", "metadata": meta, "spec": spec}, schema)


def test_flux_revision_is_a_branch_a_ref_or_a_commit() -> None:
    assert bootstrap.flux_ref("main") == {"branch": "main"}
    assert bootstrap.flux_ref("refs/tags/v1.2.0") == {"name": "refs/tags/v1.2.0"}
    assert bootstrap.flux_ref("0123456789abcdef0123456789abcdef01234567") == {
        "commit": "0123456789abcdef0123456789abcdef01234567"}


def test_render_keeps_its_bookkeeping_of_roots_and_add_on_directories(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """A cluster taken out loses its directory, its add-ons' directory and its root; switching from
    Flux to Argo CD leaves no stale add-ons' directory for a Kustomization to apply."""
    out = tmp_path / "out"
    flux = gitops_stack(tmp_path, "flux")
    assert cli.main(["render", str(flux), "--out", str(out)]) == 0
    clusters = _clusters(out)
    gone = clusters[-1]
    assert {p.name for p in out.iterdir()} == {".peaknight-render.yaml", *clusters,
                                              *(f"{c}.addons" for c in clusters), *(f"{c}.root.yaml" for c in clusters)}
    doc = yaml.safe_load(flux.read_text())
    doc["config"]["peaknight:clusters"] = [c for c in doc["config"]["peaknight:clusters"] if c["name"] != gone]
    doc["config"]["peaknight:clusters"][0]["share"] += next(
        c["share"] for c in yaml.safe_load(flux.read_text())["config"]["peaknight:clusters"] if c["name"] == gone)
    flux.write_text(yaml.safe_dump(doc, sort_keys=False))
    capsys.readouterr()
    assert cli.main(["render", str(flux), "--out", str(out)]) == 0
    assert f"  {gone}: removed (no longer in the stack)" in capsys.readouterr().out
    assert not [p for p in out.iterdir() if p.name.startswith(gone)]
    argocd = gitops_stack(tmp_path, "argocd")
    argocd.write_text(flux.read_text().replace("peaknight:gitops: flux", "peaknight:gitops: argocd"))
    assert cli.main(["render", str(argocd), "--out", str(out)]) == 0
    assert not list(out.glob("*.addons")) and list(out.glob("*/application.*"))


GIT_URL = ("a Git repository URL: https://host[:port]/path or ssh://[user@]host[:port]/path (no query, password or "
           "spaces; not the scp-like user@host:path, which Flux refuses)")
GIT_REVISION = ("a branch, tag or commit as a git ref name (git check-ref-format): '/'-separated parts of letters, "
                "digits, '.', '_', '-', none starting with '.' or '-', no '..'")
REPO_PATH = ("a relative directory inside the repository: letters, digits, '.', '_', '-' and '/', no leading '/' and "
             "no segment starting with '.'")
BAD_REPOSITORY = {
    "scp-like url": ("url", "git@github.com:org/manifests.git", GIT_URL),
    "plain http": ("url", "http://git.example/manifests.git", GIT_URL),
    "password in url": ("url", "https://user:pw@git.example/m.git", GIT_URL),
    "query in url": ("url", "https://git.example/m.git?x=1", GIT_URL),
    "newline in url": ("url", "https://git.example/m.git\n", GIT_URL),
    "option as revision": ("revision", "-main", GIT_REVISION),
    "dot-dot revision": ("revision", "main..evil", GIT_REVISION),
    "lock revision": ("revision", "refs/heads/main.lock", GIT_REVISION),
    "space in revision": ("revision", "main branch", GIT_REVISION),
    "absolute path": ("path", "/etc", REPO_PATH),
    "path climbing out": ("path", "../other", REPO_PATH),
}


@pytest.mark.parametrize("case", sorted(BAD_REPOSITORY))
def test_a_bad_repository_value_is_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    key, value, expected = BAD_REPOSITORY[case]
    path = gitops_stack(tmp_path, "argocd")
    doc = yaml.safe_load(path.read_text())
    doc["config"]["peaknight:gitopsRepository"] = {**REPOSITORY, key: value}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert cli.main(["render", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"{path}: peaknight:gitopsRepository.{key}: expected {expected}; found {value!r}\n"
    assert not (tmp_path / "out").exists()


def test_gitops_without_a_repository_and_a_repository_without_gitops_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = gitops_stack(tmp_path, "flux")
    doc = yaml.safe_load(path.read_text())
    del doc["config"]["peaknight:gitopsRepository"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert cli.main(["plan", str(path)]) == 2
    assert capsys.readouterr().err == (f"{path}: peaknight:gitopsRepository: expected the Git repository of the rendered "
                                       "manifests ({url, revision, path}) when peaknight:gitops is set; found nothing\n")
    doc["config"]["peaknight:gitopsRepository"] = REPOSITORY
    del doc["config"]["peaknight:gitops"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert cli.main(["plan", str(path)]) == 2
    assert capsys.readouterr().err == (f"{path}: peaknight:gitops: expected argocd or flux when "
                                       "peaknight:gitopsRepository is set; found nothing\n")


def test_validate_checks_the_roots_and_names_only_the_unvalidated_kinds_the_stack_renders(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a mirror without the Flux pins: the flux stack's roots are named as not validated
    against their CRD, the argocd stack's (its root checked against the pinned Application CRD) warn
    of nothing it does not render."""
    mirror = crds.files()[0].parent
    bare = tmp_path / "mirror"
    bare.mkdir()
    flux_pins = {p.file for p in crds.pins() if "fluxcd.io/" in (p.mirror_optional or "")}
    for pin in crds.pins():
        if pin.file not in flux_pins and (mirror / pin.file).is_file():
            (bare / pin.file).symlink_to(mirror / pin.file)
    monkeypatch.setenv(crds.ENV, str(bare))
    for mode in ("flux", "argocd"):
        stack = gitops_stack(tmp_path, mode)
        assert cli.main(["validate", str(stack)]) == 0
        out, err = capsys.readouterr()
        warned = sorted(line.split(":")[1].strip() for line in err.splitlines() if "its pinned CRD is not in" in line)
        assert warned == (["kustomize.toolkit.fluxcd.io/Kustomization", "source.toolkit.fluxcd.io/GitRepository"]
                          if mode == "flux" else [])
        spec = config.load_stack(str(stack)).spec
        objects = sum(len(u.objects) for c in event.build(spec).clusters for u in c.units)
        roots = len(spec.clusters) * (3 if mode == "flux" else 1)
        assert f": {objects + roots} objects in {len(spec.clusters)} clusters: policy checks and API/CRD schemas pass" in out
