"""Upgrades: a stack written for an earlier format is told, in one run, where every moved key went;
CHANGELOG.md lists the same moves under their release."""
from __future__ import annotations

import re

import pytest

from peaknight.cli import main as cli
from peaknight.spec import config, moved
from conftest import ROOT
from pulumi_harness import run_program
from test_config import write_variant


def previous_format(cfg: dict) -> None:
    """Two clusters as the format before provisioners spelt them."""
    clusters = cfg["peaknight:clusters"]
    clusters[0]["nodeRole"] = "KarpenterNodeRole-gala"
    clusters[1]["addons"] = {"karpenter": False, "keda": True}


EXPECTED = [
    "peaknight:clusters[0].nodeRole: expected clusters[0].provisioner.nodeRole instead: the key moved in 0.1.0 "
    "(move the value under `provisioner`, whose kind karpenter-aws is the default; CHANGELOG.md); found a key of an "
    "earlier stack format",
    "peaknight:clusters[1].addons.karpenter: expected clusters[1].provisioner.kind and .install instead: the key moved "
    "in 0.1.0 (Karpenter on AWS is `provisioner: {kind: karpenter-aws, install: <the old value>}`; nodes from "
    "elsewhere choose that provisioner's kind (volcengine-vke, existing); CHANGELOG.md); found a key of an earlier "
    "stack format",
]


def test_every_moved_key_is_named_with_its_replacement_in_one_run(tmp_path, capsys):
    path = write_variant(tmp_path, previous_format, "rehearsal")
    assert cli.main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"{path}: {line}" for line in EXPECTED]


def test_the_program_names_them_the_same(tmp_path):
    path = write_variant(tmp_path, previous_format, "rehearsal")
    with pytest.raises(Exception) as err:
        run_program(path)
    assert [line for line in str(err.value).splitlines() if line.startswith("Pulumi config of stack variant: ")] == [
        f"Pulumi config of stack variant: {line}" for line in EXPECTED]


def test_an_unknown_key_that_never_existed_is_still_a_spelling_question(tmp_path, capsys):
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:clusters"][0].update(nodeRoles="x"), "rehearsal")
    assert cli.main(["plan", str(path)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"{path}: peaknight:clusters[0].nodeRoles: expected a known key (")
    assert line.endswith("found an unknown key")


def test_the_changelog_lists_every_moved_key_under_its_release():
    text = (ROOT / "CHANGELOG.md").read_text()
    sections = dict(re.findall(r"^## (\S+)\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    assert moved.MOVED
    for row in moved.MOVED:
        assert f"`{row.old}` → `{row.new.split(' and ')[0]}`" in sections[row.release], row.old
    listed = re.findall(r"^- `([^`]+)` → ", sections["0.1.0"], re.M)
    assert sorted(listed) == sorted(r.old for r in moved.MOVED if r.release == "0.1.0")


def test_each_row_is_a_key_the_format_no_longer_has():
    """A row for a key the format still has would hide it: set alone, each old key is refused with
    its row's replacement (a stale row would parse, or fail for another reason)."""
    for row in moved.MOVED:
        raw = config.read_stack_file(ROOT / "tests" / "stacks" / "Pulumi.rehearsal.yaml")
        *parents, leaf = row.old.split(".")
        target = raw
        for part in parents:
            target = target[part[:-2]][0] if part.endswith("[]") else target.setdefault(part, {})
        target[leaf] = "x"
        with pytest.raises(config.ConfigError) as err:
            config.parse(raw, "old")
        path = row.old.replace("[]", "[0]")
        assert [str(p) for p in err.value.problems] == [
            f"old: peaknight:{path}: expected {row.new_at(path)} instead: the key moved in {row.release} ({row.edit}; "
            "CHANGELOG.md); found a key of an earlier stack format"]
