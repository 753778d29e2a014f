"""What a manifest builder returns: Kubernetes objects as plain dicts, grouped into units.

A unit is what becomes one Pulumi ComponentResource (a GpuNodePool, an InferenceService, ...).
The offline render writes the same dicts as YAML; the Pulumi shell turns each into its typed
resource. Nothing Pulumi-specific lives in the dicts: only `protect` and `ignore_changes`, which
are Pulumi resource options, travel beside them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peaknight.spec.stack import StackSpec

PART_OF = "peaknight"


@dataclass(frozen=True)
class Obj:
    """One Kubernetes object and the Pulumi options it needs."""

    manifest: dict[str, Any]
    protect: bool = False
    ignore_changes: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]

    @property
    def namespace(self) -> str | None:
        return self.manifest["metadata"].get("namespace")

    @property
    def key(self) -> str:
        """Stable identity within a cluster: kind, namespace, name. Also the render file name."""
        parts = [self.kind.lower(), self.namespace, self.name]
        return ".".join(p for p in parts if p)


@dataclass(frozen=True)
class Unit:
    """A group of objects that one Pulumi component owns (type `peaknight:index:<component>`)."""

    component: str
    name: str
    objects: tuple[Obj, ...] = field(default_factory=tuple)


def literal_arg(value: str) -> str:
    """A string as one element of a container's command or args, taken literally: the kubelet
    expands `$(VAR)` there and `$$` is its escape. Stack strings are validated to hold no `$`
    (spec/formats.py); this keeps a future field from reopening the hole."""
    return value.replace("$", "$$")


def labels(spec: StackSpec, component: str, name: str) -> dict[str, str]:
    """The labels every object carries: who made it, for which event, which part of it."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "peaknight.io/event": spec.event.name,
        "peaknight.io/stage": spec.policy.stage.value,
    }


def meta(spec: StackSpec, component: str, name: str, namespace: str | None = None,
         **extra_labels: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "labels": {**labels(spec, component, name), **extra_labels}}
    if namespace:
        out["namespace"] = namespace
    return out


def inference_namespace(spec: StackSpec) -> str:
    return f"{spec.event.name}-inference"


def edge_namespace(spec: StackSpec) -> str:
    return f"{spec.event.name}-edge"


def monitoring_namespace(spec: StackSpec) -> str:
    return f"{spec.event.name}-monitoring"


def priority_class(spec: StackSpec) -> str:
    """Broadcast pods pre-empt everything else in the cluster; rehearsal pods do not."""
    return f"{spec.event.name}-{'broadcast-critical' if spec.policy.stage.value == 'broadcast' else 'rehearsal'}"
