"""Peaknight: a pure core (config, planner, manifest builders) under a thin Pulumi shell.

What a Pulumi program of one's own imports:

    import peaknight as pk
    spec = pk.load_stack("stacks/Pulumi.broadcast.yaml").spec   # or pk.parse({...}, "my config"),
    cluster, model = spec.clusters[0], spec.models[0]            # or a StackSpec built in code
    plan = pk.capacity_plan(spec).cluster(cluster.name)
    base = pk.ClusterBase("base", pk.ClusterBaseArgs(scope=spec, cluster=cluster), opts=...)
    chat = pk.InferenceService(model.name, pk.InferenceServiceArgs(scope=spec, cluster=cluster, model=model,
                                                               plan=plan.model(model.name)),
                               opts=pulumi.ResourceOptions(provider=k8s_provider, depends_on=[base]))
    pk.Autoscaler(model.name, pk.AutoscalerArgs(scope=spec, target=chat.args), opts=...)

The components (ClusterBase, GpuNodePool, InferenceService, InferenceRouter, Autoscaler, WarmGate, LiveEdge,
ClusterStack) import Pulumi on first use only, so the CLI's render and plan never load it. Their Args are
keyword-only.
"""
from __future__ import annotations

from typing import Any

from peaknight.builders.objects import EventScope, Scope
from peaknight.builders.parts import (AutoscalerArgs, ClusterBaseArgs, ClusterStackArgs, GpuNodePoolArgs,
                                      InferenceRouterArgs, InferenceServiceArgs, LiveEdgeArgs, WarmGateArgs)
from peaknight.plan import capacity
from peaknight.spec.config import ConfigError, check, load_stack, parse
from peaknight.spec.stack import StackSpec

_COMPONENTS = ("ClusterBase", "GpuNodePool", "InferenceService", "InferenceRouter", "Autoscaler", "LiveEdge",
               "WarmGate", "ClusterStack")

__all__ = ["EventScope", "Scope", "AutoscalerArgs", "ClusterBaseArgs", "ClusterStackArgs", "GpuNodePoolArgs",
           "InferenceRouterArgs", "InferenceServiceArgs", "LiveEdgeArgs", "WarmGateArgs", "ConfigError",
           "capacity_plan", "load_stack", "parse", *_COMPONENTS]


def capacity_plan(spec: StackSpec) -> capacity.CapacityPlan:
    """The capacity plan of `spec`, after the checks a stack file passes (config.check: a spec built
    in code with an unknown model class is a ConfigError of one line, as the CLI prints it)."""
    return capacity.plan(check(spec))


def __getattr__(name: str) -> Any:
    """The Pulumi components, imported when first asked for."""
    if name in _COMPONENTS:
        from peaknight.pulumi import components

        return getattr(components, name)
    raise AttributeError(f"module 'peaknight' has no attribute {name!r}")
