"""Every alert the render writes links to its entry in docs/runbook.md, and that entry exists."""
from __future__ import annotations

import dataclasses
import re

import pytest

import nights
from conftest import ROOT
from peaknight.builders import monitoring, runbook
from peaknight.spec.stack import DEFAULT_RUNBOOK_URL

RUNBOOK = ROOT / "docs" / "runbook.md"


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the file's headings (outside code blocks)."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return {runbook.anchor(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def alerts(manifests: list[dict]) -> list[dict]:
    return [r for m in manifests if m["kind"] == "PrometheusRule"
            for g in m["spec"]["groups"] for r in g["rules"] if "alert" in r]


def broken_links(manifests: list[dict], base: str, markdown: str) -> list[str]:
    """`alert: url` of every alert whose runbook_url is not the base plus an anchor the runbook has."""
    have = anchors(markdown)
    bad = []
    for rule in alerts(manifests):
        url = rule["annotations"].get("runbook_url", "")
        page, _, anchor = url.partition("#")
        if page != base or anchor not in have:
            bad.append(f"{rule['alert']}: {url}")
    return bad


@pytest.mark.parametrize("stack", ["broadcast", "rehearsal"])
def test_every_alert_links_to_an_entry_that_exists(stack):
    manifests = nights.manifests(stack)
    assert alerts(manifests)
    assert broken_links(manifests, DEFAULT_RUNBOOK_URL, RUNBOOK.read_text()) == []


def test_an_alert_without_an_entry_is_a_broken_link():
    markdown = RUNBOOK.read_text().replace("### PeaknightEdgeHitRatioLow\n", "### Edge hit ratio\n")
    broken = broken_links(nights.manifests("broadcast", "gala-bj-01"), DEFAULT_RUNBOOK_URL, markdown)
    assert broken and all(b.startswith("PeaknightEdgeHitRatioLow: ") for b in broken)


def test_the_runbook_url_follows_the_stack():
    spec = nights.spec("rehearsal")
    own = dataclasses.replace(spec, event=dataclasses.replace(spec.event, runbook_url="https://git.example/ops/runbook.md"))
    cluster = own.clusters[0]
    plan = nights.plan("rehearsal").cluster(cluster.name)
    rules = [obj.manifest for obj in monitoring.build(own, cluster, plan).objects]
    assert {r["annotations"]["runbook_url"].partition("#")[0] for r in alerts(rules)} == {"https://git.example/ops/runbook.md"}


def test_anchors_are_githubs():
    """The slug rule against links GitHub resolves in this repository's README (the targets' headings
    as GitHub renders them: code spans, punctuation, a doubled hyphen)."""
    assert runbook.anchor("Routing: prefix- and load-aware (`peaknight/builders/routing.py`)") == \
        "routing-prefix--and-load-aware-peaknightbuildersroutingpy"
    assert runbook.anchor("CI/CD (`.github/workflows/`)") == "cicd-githubworkflows"
    assert runbook.anchor("Security: what is enforced") == "security-what-is-enforced"
    assert runbook.anchor("PeaknightTokensAboveCapacity") == "peaknighttokensabovecapacity"


def test_links_into_the_runbook_resolve():
    """Its own links, and the other docs' links to its sections."""
    markdown = RUNBOOK.read_text()
    targets = set(re.findall(r"\]\(#([^)]+)\)", markdown))
    for doc in (ROOT / "README.md", ROOT / "docs" / "operations.md"):
        targets |= set(re.findall(r"\]\((?:docs/)?runbook\.md#([^)]+)\)", doc.read_text()))
    assert len(targets) > 10 and targets - anchors(markdown) == set()
