"""The checks of peaknight/review/policy.py as Pulumi stack policies (imported by __main__.py and tests).

The preview's Kubernetes resources are turned back into the objects the checks read: the
manifest from the resource's inputs, `protect` from its options, the cluster from its name
(program.py names every object `<cluster>/<kind>.<namespace>.<name>`). The stack's spec and plan
come from the stack file named in the URNs, the same file the program read.
"""
from __future__ import annotations

from functools import cache
from typing import Any, Callable

from pulumi_policy import PolicyResource, ReportViolation, StackValidationArgs, StackValidationPolicy

from peaknight.plan import capacity
from peaknight.spec import config
from peaknight.review import policy
from peaknight.builders.objects import Obj

_MANIFEST_KEYS = ("apiVersion", "kind", "metadata", "spec", "data", "value", "globalDefault",
                  "preemptionPolicy", "description")


def stack_of(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> stack."""
    return urn.split("::", 1)[0].split(":", 2)[2]


@cache
def context_for(stack: str) -> policy.Context:
    spec = config.load_stack(stack).spec
    return policy.Context(spec, capacity.plan(spec))


def as_object(resource: PolicyResource) -> tuple[str, Obj] | None:
    """(cluster, object) for a Kubernetes resource of the program; None for anything else."""
    if not resource.resource_type.startswith("kubernetes:") or "/" not in resource.name:
        return None
    _, api_version, kind = resource.resource_type.split(":", 2)
    api_version = api_version.removeprefix("core/")
    manifest: dict[str, Any] = {"apiVersion": api_version, "kind": kind,
                                **{k: v for k, v in resource.props.items() if k in _MANIFEST_KEYS}}
    cluster = resource.name.split("/", 1)[0]
    return cluster, Obj(manifest, protect=bool(resource.opts.protect))


def _validation(check: str) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        by_cluster: dict[str, list[tuple[Obj, str]]] = {}
        for resource in args.resources:
            found = as_object(resource)
            if found:
                by_cluster.setdefault(found[0], []).append((found[1], resource.urn))
        if not by_cluster:
            return
        ctx = context_for(stack_of(args.resources[0].urn))
        for cluster, pairs in by_cluster.items():
            urns = {policy.describe(obj): urn for obj, urn in pairs}
            for v in policy.check_cluster(ctx, cluster, [obj for obj, _ in pairs], only=[check]):
                report_violation(str(v), urns.get(v.obj))
    return validate


POLICIES = [StackValidationPolicy(name=name, description=(fn.__doc__ or name).split("\n")[0].strip(),
                                  validate=_validation(name))
            for name, fn in policy.CHECKS.items()]
