"""The tests' nights, each loaded, planned and built once per session.

A broadcast build is some 10,800 objects over 64 clusters and takes seconds; dozens of tests read
it. They share one build through these functions instead of each fixture building its own. The
results are shared, so a test that edits an object edits a deep copy (`copy.deepcopy`); conftest's
`shared_nights_stay_unchanged` fails the run when a test wrote into a shared one.

Clusters of one shape (the same config but for their name and their zones' names: broadcast's
64 clusters are 3 shapes, one per region) render the same objects up to those names
(tests/test_cluster_shapes.py proves it for every stack), so checks that run a real tool over every
object (promtool, schema validation) run over one representative cluster per shape.
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from peaknight.builders import event
from peaknight.plan.capacity import CapacityPlan
from peaknight.spec import config, profiles
from peaknight.spec.stack import Cluster, StackSpec

STACKS = Path(__file__).resolve().parent / "stacks"
_DIGESTS: dict[Path, str] = {}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def path(name: str) -> Path:
    """The tests' copy of a shipped stack (tests/stacks/Pulumi.<name>.yaml)."""
    return STACKS / f"Pulumi.{name}.yaml"


@cache
def spec_at(stack: Path) -> StackSpec:
    """The stack as the CLI loads it (the spec is frozen: sharing it is safe)."""
    return config.load_stack(str(stack)).spec


@cache
def objects_at(stack: Path) -> event.EventObjects:
    """`event.build` of the stack on the shipped profiles; its digest is kept to catch writers."""
    profiles.use_calibration(None)
    built = event.build(spec_at(stack))
    _DIGESTS[stack] = digest(built)
    return built


def spec(name: str) -> StackSpec:
    return spec_at(path(name))


def objects(name: str) -> event.EventObjects:
    return objects_at(path(name))


def plan(name: str) -> CapacityPlan:
    return objects(name).plan


@cache
def per_shape(name: str) -> Path:
    """The stack cut to one cluster per shape, each planned exactly as in the whole stack: shares
    rescaled to add up to 1 and `scale` shrunk by the same factor, so every kept cluster's
    share x scale, and with it its plan and objects, is unchanged (test_cluster_shapes proves it).
    Written once per session into a temporary folder, as Pulumi.<name>.yaml (the stack's name)."""
    doc = yaml.load(path(name).read_text(), Loader=_LOADER)
    keep_clusters(doc["config"], [c.cluster.name for c in representatives(name)])
    folder = Path(tempfile.mkdtemp(prefix=f"peaknight-{name}-per-shape-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    out = folder / f"Pulumi.{name}.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def keep_clusters(cfg: dict[str, Any], names: list[str]) -> None:
    """Cut a stack file's `config` to the named clusters, each keeping its share x scale (so its
    plan): shares rescaled to add up to 1, `scale` shrunk by the same factor. A Pulumi program run
    costs about 6.5 ms per resource, so a test that reads two clusters runs two."""
    clusters = [c for c in cfg["peaknight:clusters"] if c["name"] in names]
    assert {c["name"] for c in clusters} == set(names), f"not all of {names} are in the stack"
    total = sum(c["share"] for c in clusters)
    for c in clusters:
        c["share"] = c["share"] / total
    cfg["peaknight:clusters"] = clusters
    cfg["peaknight:scale"] = cfg.get("peaknight:scale", 1.0) * total


def program_stack(name: str) -> Path:
    """The file the session's Pulumi program run (conftest `runs`) reads: broadcast as one cluster
    per shape (3 of its 64 clusters; a run costs about 6.5 ms per registered resource), the
    rehearsal whole (its tests name both clusters of its one shared shape)."""
    return per_shape(name) if name == "broadcast" else path(name)


def program_objects(name: str) -> event.EventObjects:
    """What the program run of `program_stack(name)` must have registered."""
    return objects_at(program_stack(name))


def digest(built: event.EventObjects) -> str:
    """A hash of every manifest of a build, to tell whether anything wrote into it."""
    h = hashlib.sha256()
    for cluster in built.clusters:
        for unit in cluster.units:
            for obj in unit.objects:
                h.update(json.dumps(obj.manifest, sort_keys=True, default=str).encode())
    return h.hexdigest()


def changed() -> list[str]:
    """The shared builds whose manifests differ from when they were built."""
    return [str(stack) for stack, built in _DIGESTS.items() if digest(objects_at(stack)) != built]


def manifests(name: str, cluster: str | None = None) -> list[dict[str, Any]]:
    """Every manifest of the stack's build (of one cluster when named), shared: read, don't write."""
    return [obj.manifest for c in objects(name).clusters if cluster in (None, c.cluster.name)
            for unit in c.units for obj in unit.objects]


def shape(cluster: Cluster) -> str:
    """The cluster's config with its name and its zones' names taken out."""
    anonymous = dataclasses.replace(cluster, name="cluster", zones=tuple(f"zone-{i}" for i in range(len(cluster.zones))))
    return repr(anonymous)


def shapes(name: str) -> dict[str, list[event.ClusterObjects]]:
    """The stack's clusters grouped by shape, in stack order."""
    groups: dict[str, list[event.ClusterObjects]] = {}
    for cluster in objects(name).clusters:
        groups.setdefault(shape(cluster.cluster), []).append(cluster)
    return groups


def representatives(name: str) -> list[event.ClusterObjects]:
    """The first cluster of each shape."""
    return [group[0] for group in shapes(name).values()]


def anonymised(cluster: event.ClusterObjects) -> list[str]:
    """The cluster's manifests as JSON with its name and zone names replaced by placeholders."""
    out = []
    for unit in cluster.units:
        for obj in unit.objects:
            text = json.dumps(obj.manifest, sort_keys=True)
            text = text.replace(cluster.cluster.name, "<cluster>")
            for i, zone in enumerate(cluster.cluster.zones):
                text = text.replace(zone, f"<zone-{i}>")
            out.append(text)
    return out
