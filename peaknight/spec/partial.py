"""A stack with bad values, still cross-checked: every problem of a file in one pass.

Pydantic reports the bad values; the checks across keys (config's cross-checks) need a whole spec,
so a file with one bad value used to hide its cross-key problems until that value was fixed (the
held-out World Cup stack: 4 problems, then 8 more). Here each bad value is set aside: a key with a
default falls back to it (a policy key to its stage's), an unknown key is dropped, and a list item
whose required value is bad is taken out. The cross-checks then run on what remains; their
problems are read back in the file's own indices, and any that could stem from what was set aside
is left out (the bad value itself is reported already): one at or under a set-aside key (for a
value inside a provisioner, the whole provisioner: its kind may be what is wrong) or beside it
naming it (a check on the same object that reads a defaulted key says which), one over all items
of a list that lost an item (`[*]`), one naming a removed item or the top-level list that lost it
(a reference to it), one inside the object owning a nested list that lost an item (a cluster that
lost a zone no longer matches its subnets).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

from pydantic_core import ErrorDetails

from peaknight.spec import keys
from peaknight.spec.stack import POLICY_DEFAULTS

UNKNOWN_KEY = ("extra_forbidden", "unexpected_keyword_argument")   # pydantic's two words for one thing


@dataclass
class Aside:
    """The raw config with its bad values set aside, and what was set aside."""

    raw: dict[str, Any]
    cleared: list[tuple] = field(default_factory=list)                # locations defaulted, dropped or removed
    removed: dict[tuple, list[int]] = field(default_factory=dict)     # list location -> indices taken out
    names: set[str] = field(default_factory=set)                      # names of the items taken out

    def original(self, loc: tuple) -> tuple:
        """A location in the remaining config as the file has it: indices past removed items shift back."""
        out: tuple = ()
        for part in loc:
            if isinstance(part, int):
                for gone in sorted(self.removed.get(out, [])):
                    if gone <= part:
                        part += 1
            out += (part,)
        return out

    def hides(self, loc: tuple, text: str) -> bool:
        """Whether a cross-check problem at (original) `loc` could stem from what was set aside."""
        for c in self.cleared:
            if loc[:len(c)] == c or (isinstance(c[-1], str) and loc[:len(c) - 1] == c[:-1] and c[-1] in text):
                return True
        for c in self.removed:
            owner = c[:-1] if len(c) > 1 else None
            if loc[:len(c) + 1] == c + ("*",) or (owner and loc[:len(owner)] == owner) \
                    or (owner is None and keys.path(c) in text):
                return True
        return any(f"'{name}'" in text for name in self.names)


def set_aside(raw: dict[str, Any], errors: Iterable[ErrorDetails]) -> Aside | None:
    """`raw` with every erroneous value set aside, or None when one cannot be (a required key with
    no default outside any list: the stage, the event's window)."""
    aside = Aside(copy.deepcopy(raw))
    removals: dict[tuple, set[int]] = {}
    keyed: list[tuple] = []      # keys defaulted or dropped: what was inside them went with them
    for error in errors:
        loc = tuple(error["loc"])
        point = loc if error["type"] in UNKNOWN_KEY else _repair_point(loc)
        if point is None:
            return None
        spelled = keys.untagged(point)
        union = next((i for i in range(len(loc)) if keys.is_tag(loc, i)), None)
        if union is not None:
            aside.cleared.append(keys.untagged(loc[:union]))
        aside.cleared.append(spelled)
        if isinstance(spelled[-1], int):
            removals.setdefault(spelled[:-1], set()).add(spelled[-1])
            continue
        keyed.append(spelled)
        if spelled[0] == "policy" and len(spelled) == 2:
            stage = aside.raw["policy"].get("stage")
            if stage not in POLICY_DEFAULTS or spelled[1] not in POLICY_DEFAULTS[stage]:
                return None
            aside.raw["policy"][spelled[1]] = copy.deepcopy(POLICY_DEFAULTS[stage][spelled[1]])
        else:
            parent = _at(aside.raw, spelled[:-1])
            if isinstance(parent, dict):
                parent.pop(spelled[-1], None)
    # Deepest lists first: taking out a cluster shifts the indices every list inside a later one is found by.
    for container, indices in sorted(removals.items(), key=lambda item: -len(item[0])):
        if any(container[:len(k)] == k for k in keyed):
            continue
        items = _at(aside.raw, container)
        if not isinstance(items, list) or max(indices) >= len(items):
            return None
        for i in sorted(indices, reverse=True):
            name = items[i].get("name") if isinstance(items[i], dict) else None
            if isinstance(name, str):
                aside.names.add(name)
            del items[i]
        aside.removed[container] = sorted(indices)
    return aside


def _repair_point(loc: tuple) -> tuple | None:
    """The nearest location at or above `loc` that can be set aside: a key with a default, a policy
    key (its stage's default), or a list item."""
    for end in range(len(loc), 0, -1):
        point = loc[:end]
        if keys.is_tag(point, end - 1):
            continue
        if isinstance(point[-1], int) or (point[0] == "policy" and end == 2 and point[1] != "stage"):
            return point
        found = keys.field_at(point)
        if found is not None and keys.has_default(found):
            return point
    return None


def _at(node: Any, loc: tuple) -> Any:
    """The value at a file location, or None where there is none."""
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node
