"""Shared fixtures. A real tool the tests need must be there: in CI (CI=true) its absence fails."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The nights the tests run are the tests' own: copies of the shipped stacks taken when they were last
# reviewed. A user's edit to stacks/ changes what `peaknight plan broadcast` plans for them and fails
# only tests/test_shipped_stacks.py (the shipped stacks still parse and plan), never a figure here.
STACKS = Path(__file__).resolve().parent / "stacks"
SHIPPED = ROOT / "stacks"
sys.path.insert(0, str(Path(__file__).parent))


def pinned_crds_or_exit() -> None:
    """Validation tests need the pinned CRDs: without them (no $PEAKNIGHT_CRDS, no cache, no
    network) the run stops at once with the one line saying what to do, not a dozen failures."""
    from peaknight.review import crds

    try:
        crds.files()
        return
    except crds.CrdsUnavailable:
        pass
    try:
        crds.fetch()
        crds.files()
    except crds.CrdsUnavailable as err:
        raise pytest.UsageError("\n".join(err.problems)) from None


def pytest_configure(config: pytest.Config) -> None:
    # Stack names (`peaknight plan broadcast`, in-process or in a subprocess) resolve to the copies.
    from peaknight.spec.config import STACKS_ENV

    os.environ[STACKS_ENV] = str(STACKS)
    pinned_crds_or_exit()


def require_tool(name: str) -> str:
    """Path of a program the test runs. Missing is a failure, never a skip: `make test` installs
    .ci/apt-packages.txt through .ci/install-tools."""
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if path:
        return path
    pytest.fail(f"{name} is not installed (make test installs .ci/apt-packages.txt via .ci/install-tools)")


@pytest.fixture(params=["broadcast", "rehearsal"])
def stack_name(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def runs():
    """The Pulumi program of both stacks under Pulumi's mocks, run once for every test that reads
    the recorded resources (a run is about ten seconds; the records are read-only data). Broadcast
    runs as `pulumi preview` does: its `pulumi up` refuses the shipped placeholder digests."""
    from pulumi_harness import run_program

    return {name: run_program(STACKS / f"Pulumi.{name}.yaml", preview=name == "broadcast")
            for name in ("broadcast", "rehearsal")}
