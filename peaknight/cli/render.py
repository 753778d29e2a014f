"""Offline render: every object the Pulumi program would create, as YAML files for GitOps/review.

One document per object under OUT/<cluster>/<kind>.<namespace>.<name>.yaml with sorted keys, so
two renders diff cleanly. Cloud resources a provisioner declares (not Kubernetes objects: nothing
a GitOps controller could apply) go beside the cluster's directory, in OUT/<cluster>.cloud.yaml,
one document each: `type` (the Pulumi type token), `name` and `properties`, as the program
registers them. No Pulumi import on this path.

The render owns OUT: it records the clusters it wrote in OUT/.peaknight-render.yaml, and a later
render removes the directories of recorded clusters the stack no longer has (one Argo CD
Application or Flux Kustomization per cluster directory would otherwise keep syncing them). It
refuses a non-empty OUT it did not write, so `--out ~` cannot delete anything of the user's.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from peaknight.builders.event import EventObjects
from peaknight.builders.objects import Unit
from peaknight.spec.config import ConfigError, Problem

MARKER = ".peaknight-render.yaml"

_STR = "tag:yaml.org,2002:str"


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """The C-accelerated dumper with two shortcuts, same output: the Python representer is most of
    a render's CPU, and manifests are mostly strings, so strings skip its type dispatch (they are
    never aliased), and the implicit-tag lookup (regexes per scalar) is memoised: label keys and
    values repeat in every object. The safe dumper has no path resolvers, so a tag depends only on
    the lookup's arguments."""

    _tags: dict[tuple[object, tuple[bool, bool]], str] = {}

    def ignore_aliases(self, data: object) -> bool:
        """Builders share small dicts (selectors, security contexts) between objects and fields; a
        reviewer and a GitOps diff should read each value where it applies, not as &id001 / *id001."""
        return True

    def represent_data(self, data: object) -> yaml.Node:
        if type(data) is str:
            return yaml.ScalarNode(_STR, data)
        return super().represent_data(data)

    def resolve(self, kind: type, value: object, implicit: tuple[bool, bool]) -> str:
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = super().resolve(kind, value, implicit)
        return tag


def dump(manifest: dict) -> str:
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=120)


@dataclass(frozen=True)
class Written:
    """What a render did to OUT: objects per cluster written, and cluster directories removed."""

    counts: dict[str, int]
    removed: tuple[str, ...]


def previous_clusters(out: Path) -> list[str]:
    """Clusters an earlier render recorded in OUT; refuses a non-empty OUT without the record."""
    marker = out / MARKER
    if marker.is_file():
        recorded = yaml.safe_load(marker.read_text()) or {}
        return [str(c) for c in recorded.get("clusters", [])]
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError([Problem(str(out), "--out", "an empty directory or one `peaknight render` wrote",
                                   f"other content and no {MARKER}")])
    return []


def _write_cloud(units: Iterable[Unit], path: Path) -> None:
    """The cluster's cloud resources for review, or no file when it has none."""
    cloud = [c for unit in units for c in unit.cloud]
    if not cloud:
        path.unlink(missing_ok=True)
        return
    docs = [{"type": c.type, "name": c.name, "protect": c.protect, "properties": c.properties}
            for c in sorted(cloud, key=lambda c: c.key)]
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text("---\n".join(dump(d) for d in docs))
    staging.replace(path)


def write(objects: EventObjects, out: Path) -> Written:
    """Replace OUT/<cluster>/ for each cluster with the render and remove the directories of
    clusters an earlier render wrote that the stack no longer has.

    Each cluster is written to a temporary sibling and swapped in, so a failed render never leaves
    a half-written directory for a GitOps controller to apply; the marker is written last.
    """
    before = previous_clusters(out)
    counts = {}
    out.mkdir(parents=True, exist_ok=True)
    for cluster in objects.clusters:
        staging = out / f".{cluster.cluster.name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        n = 0
        for unit in cluster.units:
            for obj in unit.objects:
                (staging / f"{obj.key}.yaml").write_text(dump(obj.manifest))
                n += 1
        final = out / cluster.cluster.name
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        _write_cloud(cluster.units, out / f"{cluster.cluster.name}.cloud.yaml")
        counts[cluster.cluster.name] = n
    removed = tuple(sorted(c for c in before if c not in counts and "/" not in c and c not in ("", ".", "..")))
    for gone in removed:
        shutil.rmtree(out / gone, ignore_errors=True)
        (out / f"{gone}.cloud.yaml").unlink(missing_ok=True)
    (out / MARKER).write_text(yaml.safe_dump({"clusters": list(counts)}, sort_keys=False))
    return Written(counts, removed)
