"""The pinned CRDs: verified wherever they come from, fetched into the checkout's cache, one clear
line when they cannot be had, and no file of the repository leaning on a sibling directory."""
from __future__ import annotations

import io
import shutil
import subprocess
import urllib.error
from pathlib import Path

import pytest

from peaknight.addons import releases
from peaknight.provisioners import karpenter
from peaknight.cli import main as cli
from peaknight.review import crds
from peaknight.review import schema as k8s_schema
from conftest import ROOT, STACKS, pinned_crds_or_exit


@pytest.fixture
def mirror() -> Path:
    """The directory the suite validates against (PEAKNIGHT_CRDS or the cache), already verified."""
    return crds.files()[0].parent


@pytest.fixture
def clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with an empty cache, no mirror set and no network."""
    (tmp_path / "Pulumi.yaml").write_text("name: peaknight\n")
    shutil.copytree(STACKS, tmp_path / "stacks")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(crds.ENV, raising=False)

    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(crds.urllib.request, "urlopen", offline)
    return tmp_path


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for pin in crds.pins():
        if (src / pin.file).is_file() or not pin.mirror_optional:
            shutil.copy(src / pin.file, dst / pin.file)
    return dst


def test_a_mirror_without_an_optional_pin_names_the_kinds_it_leaves_unvalidated(
        mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a pin marked mirror_optional may be missing; its kinds are then named, never silently
    passed: `validate` warns, and every other kind is still checked against its CRD."""
    optional = [p for p in crds.pins() if p.mirror_optional]
    kinds = ("source.toolkit.fluxcd.io/GitRepository", "kustomize.toolkit.fluxcd.io/Kustomization",
             "gateway.envoyproxy.io/SecurityPolicy")
    assert [k for p in optional for k in p.kinds] == list(kinds)
    bare = _copy(mirror, tmp_path / "mirror")
    for pin in optional:
        (bare / pin.file).unlink(missing_ok=True)
    monkeypatch.setenv(crds.ENV, str(bare))
    assert crds.check(bare) == [] and crds.unvalidated_kinds() == kinds
    policy = {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "SecurityPolicy", "metadata": {"name": "x"}}
    assert k8s_schema.validate(policy, None) == []
    assert k8s_schema.validate({**policy, "kind": "Unknown"}, None) == [
        "Unknown/x: no CRD in crds.lock.yaml serves gateway.envoyproxy.io/v1alpha1 Unknown"]


def test_helm_guard_lines_are_stripped_before_the_hash() -> None:
    pin = next(p for p in crds.pins() if p.transform == "strip-helm-guards")
    body = b"---\napiVersion: apiextensions.k8s.io/v1\n"
    wrapped = b"{{- if .Values.crds.envoyGateway.enabled }}\n" + body + b"{{- end }}\n"
    assert crds._transformed(pin, wrapped) == body


def test_every_pin_names_its_source_revision_and_hash() -> None:
    for pin in crds.pins():
        assert pin.source.startswith("https://raw.githubusercontent.com/") and pin.source.count("/") >= 6, pin
        commit = pin.source.split("/")[5]
        assert len(commit) == 40 and commit in pin.source, pin  # a commit, not a moving branch
        assert len(pin.sha256) == 64 and pin.revision


def test_pins_follow_the_add_on_chart_pins() -> None:
    """Bumping a chart in charts/ without re-pinning the CRDs it brings fails here."""
    pinned = [p for p in crds.pins() if p.addon]
    assert {p.addon for p in pinned} == {karpenter.ADDON, releases.KEDA, releases.LWS, releases.PROMETHEUS_STACK}
    for pin in pinned:
        assert pin.chart == releases.chart(pin.addon).version, pin.file


def test_every_kind_the_kit_creates_has_a_pinned_crd(mirror: Path) -> None:
    served = {kind for _, kind in k8s_schema.crd_schemas(crds.files())}
    assert set(releases.CRD_ADDON) - {"TriggerAuthentication"} <= served
    assert {"Gateway", "HTTPRoute", "Application", "HelmRelease", "HelmRepository"} <= served


def test_a_mirror_with_a_changed_file_is_refused(mirror: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bad = _copy(mirror, tmp_path / "mirror")
    victim = bad / crds.pins()[0].file
    victim.chmod(0o644)
    victim.write_text(victim.read_text() + "\n# edited\n")
    (bad / crds.pins()[1].file).unlink()
    problems = crds.check(bad)
    assert len(problems) == 2
    assert problems[0].startswith(f"{victim}: expected sha256 {crds.pins()[0].sha256} (crds.lock.yaml); found ")
    assert problems[1].endswith("found no such file")
    monkeypatch.setenv(crds.ENV, str(bad))
    with pytest.raises(crds.CrdsUnavailable) as err:
        crds.files()
    assert err.value.problems == problems


def test_no_mirror_no_cache_no_network_is_one_clear_line(clone: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(crds.CrdsUnavailable) as err:
        crds.files()
    assert err.value.problems == [crds.HOW_TO.format(why=f" (none in {clone / '.cache' / 'crds'})")]
    assert cli.main(["crds", "fetch"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1
    assert out.err.startswith("the pinned CRDs are not available (downloading ")
    assert "run `peaknight crds fetch` with internet access, or set PEAKNIGHT_CRDS=DIR" in out.err
    # validate: the same line, as bad input (exit 2), before any object is checked
    assert cli.main(["validate", "rehearsal"]) == 2
    assert capsys.readouterr() == ("", out.err)
    # the test suite: stops at once with that line
    with pytest.raises(pytest.UsageError) as stop:
        pinned_crds_or_exit()
    assert str(stop.value).count("\n") == 0 and "PEAKNIGHT_CRDS=DIR" in str(stop.value)


def test_fetch_fills_the_cache_verified_and_keeps_no_bad_download(mirror: Path, clone: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    # The pins whose bytes the mirror holds (an optional pin it lacks has nothing to serve here).
    present = tuple(pin for pin in crds.pins() if (mirror / pin.file).is_file())
    monkeypatch.setattr(crds, "pins", lambda: present)
    by_url = {pin.source: (mirror / pin.file).read_bytes() for pin in crds.pins()}
    tampered = crds.pins()[2]
    served = dict(by_url, **{tampered.source: by_url[tampered.source] + b"\n"})
    monkeypatch.setattr(crds.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(served[url]))
    with pytest.raises(crds.CrdsUnavailable) as err:
        crds.fetch()
    assert err.value.problems[0].startswith(f"{tampered.source}: expected sha256 {tampered.sha256}")
    assert not (clone / ".cache" / "crds" / tampered.file).exists()
    monkeypatch.setattr(crds.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(by_url[url]))
    assert cli.main(["crds", "fetch"]) == 0
    assert capsys.readouterr().out.startswith(f"{len(crds.pins())} pinned CRDs verified in {clone / '.cache' / 'crds'}")
    assert crds.files() == tuple(clone / ".cache" / "crds" / p.file for p in crds.pins())
    assert ".cache/" in (ROOT / ".gitignore").read_text().splitlines()


def test_no_file_in_the_repository_leans_on_a_sibling_directory() -> None:
    """A user's clone has no sibling `shared` folder: only CI's script may use it, as an optional mirror."""
    sibling = "/".join(["..", "shared"])
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True, text=True).stdout.split()
    leaning = [f for f in files if (ROOT / f).is_file() and f != ".ci/run"
               and (sibling in (ROOT / f).read_text(errors="replace") or "FACTS" + ".md" in (ROOT / f).read_text(errors="replace"))]
    assert leaning == []
    assert "PEAKNIGHT_CRDS" in (ROOT / ".ci" / "run").read_text()
