"""Keys the stack format moved: a stack written for an earlier format is told where each went.

Without this table an old key is "an unknown key" with at best a spelling hint, and the operator
has to find its replacement in the history. One row per key that an earlier format had and the
current one does not (from `git log -p -- peaknight/spec components/spec.py`); CHANGELOG.md lists
the same rows under the release that moved them (tests/test_moved.py keeps the two in step).
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Moved:
    """One moved key: its old path (`[]` for any list item), what replaces it, the edit to make and
    the release whose stack format moved it."""

    old: str
    new: str
    edit: str
    release: str

    def new_at(self, path: str) -> str:
        """The replacement for the old key at `path`, with its list indices (`clusters[3]...`)."""
        indices = iter(re.findall(r"\[\d+\]", path))
        return re.sub(r"\[\]", lambda _: next(indices, "[]"), self.new)


MOVED: tuple[Moved, ...] = (
    Moved("clusters[].nodeRole", "clusters[].provisioner.nodeRole",
          "move the value under `provisioner`, whose kind karpenter-aws is the default", "0.1.0"),
    Moved("clusters[].addons.karpenter", "clusters[].provisioner.kind and .install",
          "Karpenter on AWS is `provisioner: {kind: karpenter-aws, install: <the old value>}`; nodes from "
          "elsewhere choose that provisioner's kind (volcengine-vke, existing)", "0.1.0"),
)


def find(path: str) -> Moved | None:
    """The row of a key path as config errors spell it, namespace left out (`clusters[3].nodeRole`)."""
    generic = re.sub(r"\[\d+\]", "[]", path)
    return next((m for m in MOVED if m.old == generic), None)
