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
import progress  # noqa: E402  (tests/ is on the path from here on)


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
    progress.register(config)
    pinned_crds_or_exit()


# Fixtures that run a real program at length: every test that uses one is in the real-tool tier.
# `measured` runs inference-perf against a fake replica (test_calibrate.py, about 45 s); `live`
# starts nginx shields and edges with viewers (test_edge_e2e.py); `repo` commits the kit's stacks
# to a git repository of its own, and its tests run `peaknight diff` against it, git and both
# sides' whole nights included (test_diff.py, about 2-3 s a test).
REAL_TOOL_FIXTURES = {"measured", "live", "repo"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_TOOL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realtool)


def require_tool(name: str) -> str:
    """Path of a program the test runs. Missing is a failure, never a skip: `make test` installs
    .ci/apt-packages.txt through .ci/install-tools."""
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if path:
        return path
    pytest.fail(f"{name} is not installed (make test installs .ci/apt-packages.txt via .ci/install-tools)")


@pytest.fixture(scope="session", autouse=True)
def shared_nights_stay_unchanged():
    """The builds in nights.py are shared by every test: one that wrote into them would change what
    the tests after it see. Fail the run if any did (edit a copy.deepcopy instead)."""
    import nights

    yield
    assert nights.changed() == [], "a test wrote into a shared night (nights.py): edit a copy.deepcopy of it"


@pytest.fixture(params=["broadcast", "rehearsal"])
def stack_name(request) -> str:
    return request.param


class _Runs(dict):
    """Stack name -> its program run. Under xdist the workers share one run of each stack through
    files in the session's common temporary directory: a worker runs a stack's program unless
    another has, under a lock, and reads the other's records from its pickle."""

    def __init__(self, shared: Path) -> None:
        super().__init__()
        self.shared = shared

    def __missing__(self, name: str):
        import fcntl
        import pickle

        import nights
        from pulumi_harness import run_program

        done = self.shared / f"program-run-{name}.pickle"
        with open(self.shared / f"program-run-{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if done.exists():
                self[name] = pickle.loads(done.read_bytes())
            else:
                self[name] = run_program(nights.program_stack(name), preview=name == "broadcast")
                done.write_bytes(pickle.dumps(self[name]))
        return self[name]


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    """The Pulumi program of both stacks under Pulumi's mocks, run once for every test that reads
    the recorded resources (the records are read-only data): broadcast as one cluster per shape
    (nights.program_stack; compare with nights.program_objects), the rehearsal whole. Broadcast runs
    as `pulumi preview` does: its `pulumi up` refuses the shipped placeholder digests. The first two
    workers start from different stacks, so each runs one program and reads the other's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    made = _Runs(tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp())
    order = ["broadcast", "rehearsal"]
    for name in order[::-1] if worker == "gw1" else order:
        made[name]
    return made
