"""Peaknight: a pure core (config, planner, manifest builders) under a thin Pulumi shell.

What a Pulumi program of one's own imports:

    import peaknight as pk
    loaded = pk.load_stack("stacks/Pulumi.broadcast.yaml")      # or pk.parse({...}, "my config"),
    plan = pk.capacity_plan(loaded.spec).cluster("gala-bj-01")  # or a StackSpec built in code
    chat = pk.InferenceService("chat", pk.InferenceServiceArgs(scope, cluster, model, plan.model("chat")),
                               opts=pulumi.ResourceOptions(provider=k8s_provider))
    pk.Autoscaler("chat", pk.AutoscalerArgs(scope, chat.args), opts=...)

The components (GpuNodePool, InferenceService, Autoscaler, LiveEdge, WarmGate, ClusterStack) import Pulumi
on first use only, so the CLI's render and plan never load it.
"""
from __future__ import annotations

from typing import Any

from peaknight.builders.objects import EventScope, Scope
from peaknight.builders.parts import (AutoscalerArgs, ClusterStackArgs, GpuNodePoolArgs, InferenceServiceArgs,
                                      LiveEdgeArgs, WarmGateArgs)
from peaknight.plan import capacity
from peaknight.spec.config import ConfigError, check, load_stack, parse
from peaknight.spec.stack import StackSpec

_COMPONENTS = ("GpuNodePool", "InferenceService", "Autoscaler", "LiveEdge", "WarmGate", "ClusterStack")

__all__ = ["EventScope", "Scope", "AutoscalerArgs", "ClusterStackArgs", "GpuNodePoolArgs", "InferenceServiceArgs",
           "LiveEdgeArgs", "WarmGateArgs", "ConfigError", "capacity_plan", "load_stack", "parse", *_COMPONENTS]


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
