"""The GitHub workflows wire what the issue asks for, and point at things that exist: the review
job posts validate + diff for both stacks, previews use the policy pack, broadcast waits for the
protected environment after rehearsal. (GitHub itself is not here to run them.)"""
from __future__ import annotations

import yaml

from conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def _steps(job: dict, uses: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(uses)]


def test_pull_requests_post_validate_and_diff_for_both_stacks() -> None:
    wf = _load("pull-request.yml")
    assert "pull_request" in wf["on"]
    review = wf["jobs"]["review"]
    assert _steps(review, "actions/checkout")[0]["with"]["fetch-depth"] == 0
    script = next(s["run"] for s in review["steps"] if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert "for stack in rehearsal broadcast" in script
    assert 'peaknight validate "$stack"' in script and 'peaknight diff "$stack" --base "$BASE"' in script
    assert review["steps"][-1]["env"]["BASE"] == "origin/${{ github.base_ref }}"


def test_pull_requests_run_the_tests_with_the_real_tools() -> None:
    test = _load("pull-request.yml")["jobs"]["test"]
    runs = "\n".join(s.get("run", "") for s in test["steps"])
    assert ".ci/apt-packages.txt" in runs and "bash .ci/run" in runs


def test_previews_use_the_official_action_and_the_policy_pack() -> None:
    preview = _load("pull-request.yml")["jobs"]["preview"]
    (step,) = _steps(preview, "pulumi/actions@")
    assert step["with"]["command"] == "preview" and step["with"]["diff"] is True
    assert step["with"]["policyPacks"] == "policy" and (ROOT / "policy" / "PulumiPolicy.yaml").exists()
    assert step["if"] == "env.PULUMI_ACCESS_TOKEN != ''"  # no credentials (forks): skipped, not failed
    assert preview["strategy"]["matrix"]["stack"] == ["rehearsal", "broadcast"]


def test_merge_ups_rehearsal_and_broadcast_waits_for_approval() -> None:
    wf = _load("deploy.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    rehearsal, broadcast = wf["jobs"]["rehearsal"], wf["jobs"]["broadcast"]
    assert _steps(rehearsal, "pulumi/actions@")[0]["with"]["command"] == "up"
    assert _steps(rehearsal, "pulumi/actions@")[0]["with"]["stack-name"].endswith("/rehearsal")
    assert broadcast["needs"] == "rehearsal" and broadcast["environment"] == "broadcast"
    assert _steps(broadcast, "pulumi/actions@")[0]["with"]["stack-name"].endswith("/broadcast")
    # The night's stack is never applied while it still carries a placeholder digest or revision.
    assert [s["run"] for s in broadcast["steps"] if "validate" in s.get("run", "")] == [
        ".venv/bin/peaknight validate broadcast --strict"]
    assert wf["concurrency"]["cancel-in-progress"] is False


def test_readme_and_workflows_tell_one_backend_story() -> None:
    """The workflows run every Pulumi step against Pulumi Cloud stacks <PULUMI_ORG>/<stack> with
    PULUMI_ACCESS_TOKEN and no other backend or secrets provider; the README's operator path uses
    those same stacks, and its local-backend path is marked as a separate, migratable one."""
    steps = []
    for name in ("deploy.yml", "pull-request.yml"):
        for job in _load(name)["jobs"].values():
            for step in _steps(job, "pulumi/actions@"):
                steps.append(step)
                assert job["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
                assert "cloud-url" not in step["with"]
                assert step["with"]["stack-name"].startswith("${{ vars.PULUMI_ORG }}/")
    assert len(steps) == 3
    text = "\n".join((WORKFLOWS / n).read_text() for n in ("deploy.yml", "pull-request.yml"))
    assert "pulumi login" not in text and "PULUMI_CONFIG_PASSPHRASE" not in text and "secrets-provider" not in text
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### State backend and secrets: one story")[1].split("\n## ")[0]
    assert "`PULUMI_ACCESS_TOKEN`" in section and "<PULUMI_ORG>/rehearsal" in section
    cloud, local = section.split("**Trying the kit without a Pulumi Cloud account**")
    assert "pulumi stack select <org>/rehearsal" in cloud and "file://" not in cloud
    assert "pulumi login file://" in local and "pulumi stack migrate file://" in local
    assert "pulumi stack init rehearsal" not in readme  # the shipped stack names belong to Pulumi Cloud
