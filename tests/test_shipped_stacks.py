"""The shipped stacks, as the user has them: each still parses and plans.

These are the only tests that read stacks/. Every other test runs the tests' own copies
(tests/stacks, see conftest.py), so a user who raises a peak or adds a cluster in stacks/ sees
these tests judge the edit and no other test move.
"""
from __future__ import annotations

import pytest

from conftest import SHIPPED
from peaknight.cli import main as cli

SHIPPED_STACKS = sorted(p.name for p in SHIPPED.glob("Pulumi.*.yaml"))


def test_make_plan_has_its_stack() -> None:
    """`make plan`, the README's first command, renders the broadcast stack."""
    assert "Pulumi.broadcast.yaml" in SHIPPED_STACKS


@pytest.mark.parametrize("name", SHIPPED_STACKS)
def test_a_shipped_stack_parses_and_plans(name: str, capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["plan", str(SHIPPED / name)])
    out = capsys.readouterr()
    assert code == 0, out.out[-2000:] + out.err[-2000:]
    assert "SHORT" not in out.out and out.err.count("Traceback") == 0
