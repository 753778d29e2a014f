"""Peaknight: a pure core (config, planner, manifest builders) under a thin Pulumi shell.

What a Pulumi program of one's own imports:

    import peaknight as pk
    loaded = pk.load_stack("stacks/Pulumi.broadcast.yaml")      # or build a StackSpec in code
    plan = pk.capacity_plan(loaded.spec).cluster("gala-bj-01")
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
from peaknight.plan.capacity import plan as capacity_plan
from peaknight.spec.config import load_stack, parse

_COMPONENTS = ("GpuNodePool", "InferenceService", "Autoscaler", "LiveEdge", "WarmGate", "ClusterStack")

__all__ = ["EventScope", "Scope", "AutoscalerArgs", "ClusterStackArgs", "GpuNodePoolArgs", "InferenceServiceArgs",
           "LiveEdgeArgs", "WarmGateArgs", "capacity_plan", "load_stack", "parse", *_COMPONENTS]


def __getattr__(name: str) -> Any:
    """The Pulumi components, imported when first asked for."""
    if name in _COMPONENTS:
        from peaknight.pulumi import components

        return getattr(components, name)
    raise AttributeError(f"module 'peaknight' has no attribute {name!r}")
