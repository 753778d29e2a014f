"""`--cluster`, `--model` and `--format` for the commands that report on a fleet (plan, simulate,
diff): a night of 16 or 40 clusters is read a cluster or a model at a time, or by a pipeline.

An unknown name is bad input like any other (exit 2, one line, did you mean), checked before any
work. `--format json` prints one JSON document on stdout (warnings stay on stderr); README's
"Output for pipelines" gives each command's schema.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from peaknight.cli import errors
from peaknight.plan.report import Selection
from peaknight.spec import config
from peaknight.spec.stack import StackSpec

FORMATS = ("text", "json")
LISTED = 8  # names an error lists before "…"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", action="append", metavar="NAME", help="only this cluster (repeat for more)")
    p.add_argument("--model", action="append", metavar="NAME", help="only this model (repeat for more)")
    p.add_argument("--format", choices=FORMATS, default="text", help="json: one document on stdout for pipelines "
                   "(schema in README)")


def selection(spec: StackSpec, args: argparse.Namespace) -> Selection:
    """The clusters and models the flags name; every unknown name is one line (ConfigError)."""
    problems = []
    for flag, given, known in (("--cluster", args.cluster, [c.name for c in spec.clusters]),
                               ("--model", args.model, [m.name for m in spec.models])):
        listed = ", ".join(known[:LISTED]) + (", …" if len(known) > LISTED else "")
        problems += [config.Problem(flag, flag, f"a {flag[2:]} of the stack ({listed})", repr(name),
                                    errors.closest(name, known)) for name in given or () if name not in known]
    if problems:
        raise config.ConfigError(problems)
    return Selection(frozenset(args.cluster) if args.cluster else None, frozenset(args.model) if args.model else None)


def dump(document: dict[str, Any]) -> None:
    """The document on stdout, for `jq` and friends."""
    json.dump(document, sys.stdout, indent=2)
    print()
