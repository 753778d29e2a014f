"""What a manifest builder returns: Kubernetes objects as plain dicts, grouped into units.

A unit is what becomes one Pulumi ComponentResource (a GpuNodePool, an InferenceService, ...).
The offline render writes the same dicts as YAML; the Pulumi shell turns each into its typed
resource. Nothing Pulumi-specific lives in the dicts: only `protect` and `ignore_changes`, which
are Pulumi resource options, travel beside them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from peaknight.spec.registry_mirror import RegistryMirror
from peaknight.spec.stack import Event, Policy

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
class CloudResource:
    """A cloud resource that is not a Kubernetes object (a cloud's node pool), in the provider's own
    terms: the Pulumi type token (`volcengine:vke/nodePool:NodePool`), a logical name unique in its
    cluster, and input properties by their wire (camelCase) names. The offline render writes it for
    review; the program registers `pulumi.CustomResource(type, name, properties)`."""

    type: str
    name: str
    properties: dict[str, Any] = field(default_factory=dict)
    protect: bool = False
    summary: str = ""  # one line for `peaknight plan`: what the resource holds, in the plan's terms
    sources: str = ""  # where the cloud's figures it uses come from (`peaknight plan --explain`)

    @property
    def key(self) -> str:
        """Stable identity within a cluster: the type's last part and the name."""
        return f"{self.type.rsplit(':', 1)[-1].lower()}.{self.name}"

    @staticmethod
    def ref(other: "CloudResource") -> str:
        """A property that is another cloud resource's ID, known only once the cloud created it
        (a Route 53 record's health check): `${<key>.id}` in the render, that resource's `id`
        output in the program, which registers `other` first. No stack string holds a `$`
        (spec/formats.py), so only the kit writes one."""
        return "${" + other.key + ".id}"


@dataclass(frozen=True)
class Unit:
    """What one Pulumi component owns (type `peaknight:index:<component>`): Kubernetes objects and,
    for a provisioner's pools, cloud resources."""

    component: str
    name: str
    objects: tuple[Obj, ...] = field(default_factory=tuple)
    cloud: tuple[CloudResource, ...] = ()


def literal_arg(value: str) -> str:
    """A string as one element of a container's command or args, taken literally: the kubelet
    expands `$(VAR)` there and `$$` is its escape. Stack strings are validated to hold no `$`
    (spec/formats.py); this keeps a future field from reopening the hole."""
    return value.replace("$", "$$")


class Scope(Protocol):
    """The narrow context every builder needs: which event (names, labels, clock) and which stage
    (protection, priority). A StackSpec is one; so is an EventScope for a program of one's own."""

    @property
    def event(self) -> Event: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def registry_mirror(self) -> RegistryMirror | None:
        """The registry every image is pulled from (None: each image's own)."""


@dataclass(frozen=True)
class EventScope:
    """A Scope without a whole stack: what a Pulumi program that composes the components itself
    passes (see examples/)."""

    event: Event
    policy: Policy
    registry_mirror: RegistryMirror | None = None


def labels(scope: Scope, component: str, name: str) -> dict[str, str]:
    """The labels every object carries: who made it, for which event, which part of it."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "peaknight.io/event": scope.event.name,
        "peaknight.io/stage": scope.policy.stage.value,
    }


def meta(scope: Scope, component: str, name: str, namespace: str | None = None,
         **extra_labels: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "labels": {**labels(scope, component, name), **extra_labels}}
    if namespace:
        out["namespace"] = namespace
    return out


def inference_namespace(scope: Scope) -> str:
    return f"{scope.event.name}-inference"


def weights_namespace(scope: Scope) -> str:
    """The weight sources, their staging Jobs and the node-cache fillers (builders/warmup.py)."""
    return f"{scope.event.name}-weights"


def edge_namespace(scope: Scope) -> str:
    return f"{scope.event.name}-edge"


def monitoring_namespace(scope: Scope) -> str:
    return f"{scope.event.name}-monitoring"


class Tier(str, Enum):
    """Who is preempted first when a cluster runs short: the warm gate (image pre-pullers, weight
    staging), then the extras (the other models, the live edge), never the assistant for them."""

    ASSISTANT = "assistant"
    SERVING = "serving"
    WARM = "warm"


# PriorityClass values per tier in a broadcast: below system-cluster-critical (2,000,000,000) and
# above every ordinary workload (0). A rehearsal's are 1/100 of these and preempt nothing.
PRIORITY = {Tier.ASSISTANT: 1_000_000, Tier.SERVING: 900_000, Tier.WARM: 100_000}
REHEARSAL_DIVISOR = 100


def priority_class(scope: Scope, tier: Tier) -> str:
    """The PriorityClass of a tier of the event's pods."""
    return f"{scope.event.name}-{tier.value}"


def priority_value(scope: Scope, tier: Tier) -> int:
    return PRIORITY[tier] // (1 if scope.policy.stage.value == "broadcast" else REHEARSAL_DIVISOR)
