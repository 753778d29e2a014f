"""`peaknight`: the offline CLI (render, plan, ...). No Pulumi SDK, no cloud, no cluster.

Exit codes: 0 ok; 1 a check failed (capacity short, envelope exceeded, validation); 2 bad input,
one line per problem naming the file, the key path and what was expected, never a traceback
(cli/errors.py). Warnings go to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

from peaknight.addons import bootstrap
from peaknight.builders import event
from peaknight.cli import errors, fleet
from peaknight.cli.errors import BAD_INPUT, CHECK_FAILED, OK
from peaknight.plan import capacity, cost, gate, serving_recipes
from peaknight.provisioners import registry as provisioners
from peaknight.spec import config
from peaknight.review import crds as pinned_crds
from peaknight.review import schema as k8s_schema
from peaknight.plan import report as plan_report
from peaknight.review import apiserver, policy
from peaknight.review.cel import Unevaluated
from peaknight.cli import render
from peaknight.review import diff as review
from peaknight.cli import simulate as simulate_cmd
from peaknight.cli import calibrate as calibrate_cmd

def _render(args: argparse.Namespace) -> int:
    loaded = config.load_stack(args.stack)
    out = Path(args.out) if args.out else Path("build") / loaded.name
    errors.writable_dir(out, "--out")
    render.previous_clusters(out)  # refuse a foreign directory before the (slower) build
    objects = event.build(loaded.spec)
    refused = gate.stack(loaded.spec, objects.plan)
    for line in refused:
        print(line, file=sys.stderr)
    if refused:
        return CHECK_FAILED
    try:
        written = render.write(objects, out)
    except OSError as err:  # what the check cannot foresee: a /proc path, a full disk
        raise config.ConfigError([config.Problem(str(out), "--out", "a directory this user may write",
                                                 err.strerror or str(err))]) from None
    print(f"rendered stack '{loaded.name}' ({loaded.path}) to {out}/")
    for cluster, n in written.counts.items():
        print(f"  {cluster}: {n} objects")
    for cluster in written.removed:
        print(f"  {cluster}: removed (no longer in the stack)")
    print(plan_report.summary(objects.plan, refused))
    # policy.allowUnproven let these render: said beside the totals, as `plan` says them.
    for line in _unproven(loaded.spec, objects.plan):
        print(line)
    _warn_placeholders(loaded)
    for warning in (*objects.plan.warnings, *provisioners.warnings(loaded.spec)):
        errors.warn(warning)
    return OK


def _unproven(spec: config.StackSpec, plan: capacity.CapacityPlan) -> list[str]:
    """Every UNPROVEN line policy.allowUnproven let through: the figures priced off their fabric
    (plan/fabric.py), then the serving combinations no recipe proves (plan/serving_recipes.py)."""
    return [*plan_report.unproven(plan), *serving_recipes.unproven(spec, plan)]


def _warn_placeholders(loaded: config.LoadedStack) -> None:
    """One line per key a shipped stack pins to a placeholder (validate --strict refuses them)."""
    for problem in config.placeholders(loaded.spec, str(loaded.path)):
        errors.warn(str(problem))


def _plan(args: argparse.Namespace) -> int:
    loaded = config.load_stack(args.stack)
    only = fleet.selection(loaded.spec, args)
    try:
        plan = capacity.plan(loaded.spec)
    except capacity.EnvelopeError as err:
        if args.format != "json":
            raise
        fleet.dump({"stack": loaded.name, "file": str(loaded.path), "envelope": err.problems})
        return CHECK_FAILED
    refused = gate.stack(loaded.spec, plan)  # the whole stack's, whatever the flags show
    warnings = [*plan.warnings, *provisioners.warnings(loaded.spec)]
    cloud = plan_report.cloud_pools(event.pool_units(loaded.spec, plan), only)
    costs = cost.PlanCost(loaded.spec, plan)
    notes = serving_recipes.notes(loaded.spec, plan)
    if args.format == "json":
        fleet.dump({"stack": loaded.name, "file": str(loaded.path),
                    **plan_report.document(plan, refused, warnings, only, cloud, args.explain, costs, notes,
                                           _unproven(loaded.spec, plan))})
    else:
        print(f"capacity plan for stack '{loaded.name}' ({loaded.path})")
        print(plan_report.table(plan, refused, explain=args.explain, selection=only, costs=costs, recipes=notes))
        pools = plan_report.cloud_table(cloud, explain=args.explain)
        if pools:
            print("")
            print(pools)
        # policy.allowUnproven let these render: say so every time, not only with --explain (the
        # table says the figures priced off their fabric; here, the recipes).
        for line in serving_recipes.unproven(loaded.spec, plan):
            print(line)
    for warning in warnings:
        errors.warn(warning)
    if args.format == "text":
        for line in refused:
            print(line)
    return CHECK_FAILED if refused else OK


def _validate(args: argparse.Namespace) -> int:
    loaded = config.load_stack(args.stack)
    crds = Path(args.crds) if args.crds else None
    if crds is not None and not crds.is_dir():
        raise config.ConfigError([config.Problem(str(crds), "--crds", "a directory of CRD YAML files", "no such directory")])
    if crds is None:
        _pinned_crds()
    objects = event.build(loaded.spec)
    problems = [str(v) for v in policy.check_event(objects)]
    count = 0
    seen: dict[str, list[str]] = {}  # clusters repeat most objects verbatim: validate each once
    unevaluated: set[Unevaluated] = set()  # CRD rules the CEL engine cannot evaluate, said once each
    kinds = set()
    for cluster in objects.clusters:
        # The objects and, with gitops, the cluster's root that `render` writes beside them.
        roots = bootstrap.roots(loaded.spec, cluster.cluster)
        for manifest in (*(o.manifest for u in cluster.units for o in u.objects), *roots):
            count += 1
            kinds.add(k8s_schema.kind_of(manifest))
            key = json.dumps(manifest, sort_keys=True)
            if key not in seen:
                seen[key] = ([f"{p} [schema]" for p in k8s_schema.validate(manifest, crds)]
                             + [f"{p} [api]" for p in apiserver.validate(manifest)])
                unevaluated.update(k8s_schema.unevaluated_rules(manifest, crds))
            problems += [f"{cluster.cluster.name}: {p}" for p in seen[key]]
    if args.strict:  # ready for the night: a placeholder digest or revision is a violation
        problems = [*map(str, config.placeholders(loaded.spec, str(loaded.path))), *problems]
    else:
        _warn_placeholders(loaded)
    for rule in sorted(unevaluated, key=str):
        errors.warn(str(rule))
    for problem in problems:
        print(problem)
    verdict = f"{len(problems)} violation(s)" if problems else "policy checks and API/CRD schemas pass"
    if crds is None:
        for kind in (k for k in pinned_crds.unvalidated_kinds() if k in kinds):
            errors.warn(f"{kind}: its pinned CRD is not in {pinned_crds.directory()}: these objects are checked by "
                        "the kit's own rules only (`peaknight crds fetch` with internet access brings it)")
    print(f"stack '{loaded.name}': {count} objects in {len(objects.clusters)} clusters: {verdict}")
    return CHECK_FAILED if problems else OK


def _pinned_crds() -> tuple[Path, ...]:
    """The pinned CRDs, fetched into the cache if they are not there yet (CrdsUnavailable, bad
    input, if that cannot be done)."""
    try:
        return pinned_crds.files()
    except pinned_crds.CrdsUnavailable:
        pinned_crds.fetch()
        return pinned_crds.files()


def _crds(args: argparse.Namespace) -> int:
    """`peaknight crds fetch`: the pinned CRDs into the checkout's cache (or $PEAKNIGHT_CRDS verified)."""
    directory, got = pinned_crds.fetch()
    print(f"{len(pinned_crds.pins())} pinned CRDs verified in {directory}" + (f" ({len(got)} downloaded)" if got else ""))
    return OK


def _diff(args: argparse.Namespace) -> int:
    only = fleet.selection(config.load_stack(args.stack).spec, args) if args.cluster or args.model else \
        plan_report.EVERYTHING
    if args.format == "json":
        fleet.dump(review.document(args.stack, args.base, only))
    else:
        print(review.report(args.stack, args.base, only))
    return OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"render": _render, "plan": _plan, "validate": _validate,
                                                            "diff": _diff, "simulate": simulate_cmd.run,
                                                            "crds": _crds, "calibrate": calibrate_cmd.run}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peaknight", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"peaknight {metadata.version('peaknight')}")
    sub = p.add_subparsers(dest="command", required=True)
    stack_help = "stack name (stacks/Pulumi.<name>.yaml) or a path to any stack file"
    r = sub.add_parser("render", help="write every object as YAML, one file per object")
    r.add_argument("stack", help=stack_help)
    r.add_argument("--out", help="output directory (default build/<stack>)")
    pl = sub.add_parser("plan", help="print the capacity plan; exit 1 if any model is short")
    pl.add_argument("stack", help=stack_help)
    pl.add_argument("--explain", action="store_true", help="show how every figure was derived")
    fleet.add_arguments(pl)
    v = sub.add_parser("validate", help="policy checks + API schema and CRD validation of every object; exit 1 "
                                        "listing every violation")
    v.add_argument("stack", help=stack_help)
    v.add_argument("--crds", help="directory of CustomResourceDefinitions (default: the pinned ones, "
                                  "peaknight/review/crds.lock.yaml, from $PEAKNIGHT_CRDS or the checkout's cache)")
    v.add_argument("--strict", action="store_true", help="also refuse images pinned to the all-zero placeholder "
                   "digest and weights to the placeholder revision (warnings otherwise): the stack is ready to deploy")
    d = sub.add_parser("diff", help="what a change does: objects, planned capacity and the simulated night, "
                                    "GITREF -> working tree")
    d.add_argument("stack", help=stack_help)
    d.add_argument("--base", required=True, help="git revision to compare with (e.g. origin/main)")
    fleet.add_arguments(d)
    simulate_cmd.add_parser(sub, stack_help)
    calibrate_cmd.add_parser(sub, stack_help)
    c = sub.add_parser("crds", help="the pinned upstream CRDs validate uses")
    c.add_argument("action", choices=["fetch"], help="fetch: download and verify them into .cache/crds/ "
                                                     "(with $PEAKNIGHT_CRDS set: verify that mirror)")
    return p


def _unknown_command(argv: Sequence[str]) -> str | None:
    """'did you mean' for a misspelt subcommand (argparse only lists the choices)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None or first in COMMANDS:
        return None
    hint = errors.closest(first, COMMANDS)
    return (f"peaknight: unknown command '{first}'" + (f" (did you mean {hint}?)" if hint else "")
            + f"; commands: {', '.join(COMMANDS)}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    unknown = _unknown_command(argv)
    if unknown:
        print(unknown, file=sys.stderr)
        return BAD_INPUT
    args = parser().parse_args(argv)
    return errors.run(lambda: _dispatch(args))


def _dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "stack", None):
        errors.check_stack_name(args.stack)
    try:
        return COMMANDS[args.command](args)
    except capacity.EnvelopeError as err:
        print("the plan does not fit the Kubernetes envelope:", file=sys.stderr)
        for line in err.problems:
            print(f"  {line}", file=sys.stderr)
        return CHECK_FAILED


if __name__ == "__main__":
    sys.exit(main())
