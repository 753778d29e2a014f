"""Every core kind the render writes is registered as its typed pulumi-kubernetes class, exactly as
pulumi-kubernetes names it (the installed package's own registry of resource classes is the
reference); only the kinds that package has no class for (a CRD's) go through CustomResource."""
from __future__ import annotations

import importlib
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime import rpc

from peaknight.builders import event
from peaknight.builders.objects import Obj
from peaknight.pulumi import components
from peaknight.spec import config
import nights
from pulumi_harness import run_under_mocks
from test_gitops import gitops_stack

PACKAGE = "kubernetes"


def package_class(api_version: str, kind: str) -> Any:
    """pulumi-kubernetes' class for the kind (its resource module's registry), or None."""
    group, _, version = api_version.rpartition("/")
    mod = f"{group or 'core'}/{version}"
    module = rpc.get_resource_module(PACKAGE, mod, k8s._utilities.get_version())
    name = module.mod_info["classes"].get(f"{PACKAGE}:{mod}:{kind}") if module is not None else None
    return getattr(importlib.import_module(module.mod_info["fqn"]), name) if name else None


def rendered_kinds(tmp_path) -> dict[tuple[str, str], Obj]:
    """One object of each (apiVersion, kind) the three nights and both GitOps modes render."""
    builds = [nights.objects(name) for name in ("broadcast", "rehearsal", "gala-vke")]   # shared: read only
    builds += [event.build(config.load_stack(str(gitops_stack(tmp_path, mode))).spec) for mode in ("argocd", "flux")]
    found: dict[tuple[str, str], Obj] = {}
    for built in builds:
        for cluster in built.clusters:
            for obj in (o for u in cluster.units for o in u.objects):
                found.setdefault((obj.manifest["apiVersion"], obj.kind), obj)
    return found


def test_every_rendered_core_kind_has_its_typed_class_and_only_those(tmp_path):
    kinds = rendered_kinds(tmp_path)
    typed = {k: package_class(*k) for k in kinds if package_class(*k) is not None}
    # PersistentVolumes (96 in broadcast) went through CustomResource for want of a table row.
    assert {("v1", "PersistentVolume"), ("apps/v1", "StatefulSet"), ("batch/v1", "CronJob")} <= set(typed)
    assert {k: components.TYPED.get(k) for k in typed} == typed
    # No row for a kind the kit does not render, and custom kinds stay custom resources.
    assert set(components.TYPED) == set(typed)
    assert ("gateway.networking.k8s.io/v1", "Gateway") in kinds and package_class("gateway.networking.k8s.io/v1",
                                                                                   "Gateway") is None


def test_each_kind_registers_under_its_package_type_token(tmp_path):
    """Under mocks: the typed classes take the manifest's fields as the render has them."""
    kinds = rendered_kinds(tmp_path)

    def program() -> None:
        for obj in kinds.values():
            components.resource_for(obj, obj.key, pulumi.ResourceOptions())

    mocks = run_under_mocks(program, "typed", {})
    registered = {r.name: r for r in mocks.resources}
    for (api_version, kind), obj in kinds.items():
        group, _, version = api_version.rpartition("/")
        token = f"{PACKAGE}:{group or 'core'}/{version}:{kind}" if package_class(api_version, kind) else \
            f"{PACKAGE}:{api_version}:{kind}"
        assert registered[obj.key].typ == token
        assert registered[obj.key].inputs["metadata"] == obj.manifest["metadata"]
        # A kind that used to be a CustomResource keeps that URN through an alias: updated in place.
        former = f"{PACKAGE}:{api_version}:{kind}"
        assert (former in registered[obj.key].aliases) == ((api_version, kind) in components.FORMERLY_CUSTOM)
