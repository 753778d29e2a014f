"""`peaknight`: the offline CLI (render, plan, ...). No Pulumi SDK, no cloud, no cluster.

Exit codes: 0 ok; 1 a check failed (capacity short, envelope exceeded, validation); 2 bad input,
one line per problem naming the file, the key path and what was expected, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from peaknight.plan import capacity
from peaknight.provisioners import registry as provisioners
from peaknight.spec import config
from peaknight.builders import event
from peaknight.review import schema as k8s_schema
from peaknight.plan import report as plan_report
from peaknight.review import policy
from peaknight.cli import render
from peaknight.review import diff as review
from peaknight.cli import simulate as simulate_cmd
from peaknight.spec.stack import StackSpec

OK, CHECK_FAILED, BAD_INPUT = 0, 1, 2


def _render(args: argparse.Namespace) -> int:
    loaded = config.load_stack(args.stack)
    objects = event.build(loaded.spec)
    problems = provisioners.problems(loaded.spec, objects.plan)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return CHECK_FAILED
    out = Path(args.out) if args.out else Path("build") / loaded.name
    counts = render.write(objects, out)
    print(f"rendered stack '{loaded.name}' ({loaded.path}) to {out}/")
    for cluster, n in counts.items():
        print(f"  {cluster}: {n} objects")
    print(plan_report.summary(objects.plan))
    _warn_placeholders(loaded.spec)
    for warning in (*objects.plan.warnings, *provisioners.warnings(loaded.spec)):
        print(f"warning: {warning}")
    return OK


def _warn_placeholders(spec: StackSpec) -> None:
    """One line per image a shipped stack pins to the placeholder digest."""
    for image in config.placeholder_images(spec):
        print(f"warning: {image.split('@')[0]} is pinned to the placeholder digest: set your registry's digest "
              "(crane digest <image>) before the night")


def _plan(args: argparse.Namespace) -> int:
    loaded = config.load_stack(args.stack)
    plan = capacity.plan(loaded.spec)
    print(f"capacity plan for stack '{loaded.name}' ({loaded.path})")
    print(plan_report.table(plan, explain=args.explain))
    pools = plan_report.cloud_pools(event.pool_units(loaded.spec, plan))
    if pools:
        print("")
        print(pools)
    for warning in provisioners.warnings(loaded.spec):
        print(f"warning: {warning}")
    problems = provisioners.problems(loaded.spec, plan)
    for problem in problems:
        print(f"SHORT: {problem}")
    return CHECK_FAILED if plan.short or problems else OK


def _validate(args: argparse.Namespace) -> int:
    loaded = config.load_stack(args.stack)
    crds = Path(args.crds) if args.crds else k8s_schema.DEFAULT_CRDS
    if not crds.is_dir():
        raise config.ConfigError([config.Problem(str(crds), "--crds", "a directory of CRD YAML files", "no such directory")])
    objects = event.build(loaded.spec)
    problems = [str(v) for v in policy.check_event(objects)]
    count = 0
    seen: dict[str, list[str]] = {}  # clusters repeat most objects verbatim: validate each once
    for cluster in objects.clusters:
        for obj in (o for u in cluster.units for o in u.objects):
            count += 1
            key = json.dumps(obj.manifest, sort_keys=True)
            if key not in seen:
                seen[key] = k8s_schema.validate(obj.manifest, crds)
            problems += [f"{cluster.cluster.name}: {p} [schema]" for p in seen[key]]
    for problem in problems:
        print(problem)
    verdict = f"{len(problems)} violation(s)" if problems else "policy checks and API/CRD schemas pass"
    _warn_placeholders(loaded.spec)
    print(f"stack '{loaded.name}': {count} objects in {len(objects.clusters)} clusters: {verdict}")
    return CHECK_FAILED if problems else OK


def _diff(args: argparse.Namespace) -> int:
    print(review.report(args.stack, args.base))
    return OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"render": _render, "plan": _plan, "validate": _validate,
                                                            "diff": _diff, "simulate": simulate_cmd.run}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peaknight", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    stack_help = "stack name (stacks/Pulumi.<name>.yaml) or a path to any stack file"
    r = sub.add_parser("render", help="write every object as YAML, one file per object")
    r.add_argument("stack", help=stack_help)
    r.add_argument("--out", help="output directory (default build/<stack>)")
    pl = sub.add_parser("plan", help="print the capacity plan; exit 1 if any model is short")
    pl.add_argument("stack", help=stack_help)
    pl.add_argument("--explain", action="store_true", help="show how every figure was derived")
    v = sub.add_parser("validate", help="policy checks + API schema and CRD validation of every object; exit 1 "
                                        "listing every violation")
    v.add_argument("stack", help=stack_help)
    v.add_argument("--crds", help=f"directory of CustomResourceDefinitions (default {k8s_schema.DEFAULT_CRDS})")
    d = sub.add_parser("diff", help="what a change does: objects, planned capacity and the simulated night, "
                                    "GITREF -> working tree")
    d.add_argument("stack", help=stack_help)
    d.add_argument("--base", required=True, help="git revision to compare with (e.g. origin/main)")
    simulate_cmd.add_parser(sub, stack_help)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except config.ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return BAD_INPUT
    except capacity.EnvelopeError as err:
        print("the plan does not fit the Kubernetes envelope:", file=sys.stderr)
        for line in err.problems:
            print(f"  {line}", file=sys.stderr)
        return CHECK_FAILED


if __name__ == "__main__":
    sys.exit(main())
