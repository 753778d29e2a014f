"""Every container image of a unit, pulled from the stack's registry mirror (spec/registry_mirror.py).

Applied to each part's unit after it is built (builders/parts.py), not at each place an image is
named, so an image added to a builder later is mirrored too; tests/test_registry_mirror.py checks
every rendered container of the shipped nights.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from peaknight.builders.objects import Unit
from peaknight.spec.registry_mirror import RegistryMirror

# Where a pod spec lists containers (core/v1 PodSpec).
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def mirrored(unit: Unit, mirror: RegistryMirror | None) -> Unit:
    """`unit` with every container image (in any pod spec, at any depth) taken from `mirror`."""
    if mirror is None:
        return unit
    objects = tuple(dataclasses.replace(o, manifest=_walk(o.manifest, mirror)) for o in unit.objects)
    return dataclasses.replace(unit, objects=objects)


def _walk(value: Any, mirror: RegistryMirror) -> Any:
    if isinstance(value, dict):
        out = {k: _walk(v, mirror) for k, v in value.items()}
        for key in CONTAINER_LISTS:
            if isinstance(out.get(key), list):
                out[key] = [{**c, "image": mirror.image(c["image"])} if isinstance(c, dict) and "image" in c else c
                            for c in out[key]]
        return out
    if isinstance(value, list):
        return [_walk(v, mirror) for v in value]
    return value
