"""A line per test file as it finishes, when pytest-xdist runs the tests.

`make test` runs each tier on two workers; xdist's terminal then shows a row of dots with no file
names, and a slow file looks like a hang. This prints `tests/test_x.py: 12 passed in 3.4 s` as the
last test of each file finishes (files run whole on one worker: `--dist loadfile`).
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest


class FileProgress:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.left: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = {}
        self.worst: dict[str, str] = {}  # a test's outcome over its setup, call and teardown
        self.started: dict[str, float] = {}

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if not self.left:  # every worker collects the same tests
            self.left.update(nodeid.split("::")[0] for nodeid in ids)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        """A worker starts a test (before its fixtures): the file's clock starts at its first."""
        self.started.setdefault(nodeid.split("::")[0], time.monotonic())

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path = report.nodeid.split("::")[0]
        rank = ("passed", "skipped", "failed")
        worst = self.worst.get(report.nodeid, "passed")
        self.worst[report.nodeid] = max(worst, report.outcome, key=rank.index)
        if report.when != "teardown":
            return
        self.outcomes.setdefault(path, Counter())[self.worst.pop(report.nodeid)] += 1
        self.left[path] -= 1
        if self.left[path] == 0:
            counts = ", ".join(f"{n} {what}" for what, n in sorted(self.outcomes[path].items()))
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                if reporter._width_of_current_line:  # after xdist's dots
                    reporter.write("\n")
                reporter.write_line(f"{path}: {counts} in {time.monotonic() - self.started[path]:.1f} s")


def register(config: pytest.Config) -> None:
    """On xdist's controller only (its workers report to it)."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        config.pluginmanager.register(FileProgress(config), "file-progress")
