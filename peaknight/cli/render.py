"""Offline render: every object the Pulumi program would create, as YAML files for GitOps/review.

One document per object under OUT/<cluster>/<kind>.<namespace>.<name>.yaml with sorted keys, so
two renders diff cleanly. Cloud resources a provisioner declares (not Kubernetes objects: nothing
a GitOps controller could apply) go beside the cluster's directory, in OUT/<cluster>.cloud.yaml,
one document each: `type` (the Pulumi type token), `name` and `properties`, as the program
registers them. No Pulumi import on this path.

The render owns OUT: it records the clusters it wrote in OUT/.peaknight-render.yaml, and a later
render removes the directories of recorded clusters the stack no longer has (one Argo CD
Application or Flux Kustomization per cluster directory would otherwise keep syncing them), with
what it wrote beside them (`beside`). It refuses a non-empty OUT it did not write, so `--out ~`
cannot delete anything of the user's.

With `peaknight:gitops` each cluster also gets its root (OUT/<cluster>.root.yaml: what its GitOps
controller is pointed at once, addons/bootstrap.py); in Flux mode the add-ons are written to
OUT/<cluster>.addons/ rather than OUT/<cluster>/, for the root's add-ons Kustomization.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from peaknight.addons import bootstrap, gitops
from peaknight.builders.event import EventObjects
from peaknight.builders.objects import Obj, Unit
from peaknight.spec.config import ConfigError, Problem
from peaknight.spec.stack import GitOps

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


def _write_docs(docs: list[dict], path: Path) -> None:
    """A file of YAML documents beside the cluster directories, or no file when there are none."""
    if not docs:
        path.unlink(missing_ok=True)
        return
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text("---\n".join(dump(d) for d in docs))
    staging.replace(path)


def _cloud(units: Iterable[Unit]) -> list[dict]:
    """The cluster's cloud resources for review."""
    cloud = [c for unit in units for c in unit.cloud]
    return [{"type": c.type, "name": c.name, "protect": c.protect, "properties": c.properties}
            for c in sorted(cloud, key=lambda c: c.key)]


def _write_dir(out: Path, name: str, objects: list[Obj]) -> None:
    """OUT/<name>/ with one file per object, written to a temporary sibling and swapped in whole,
    so a failed render never leaves a half-written directory for a GitOps controller to apply; no
    objects, no directory."""
    final = out / name
    if not objects:
        shutil.rmtree(final, ignore_errors=True)
        return
    staging = out / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for obj in objects:
        (staging / f"{obj.key}.yaml").write_text(dump(obj.manifest))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)


def beside(cluster: str) -> tuple[str, ...]:
    """What a render may write for a cluster next to OUT/<cluster>/: its cloud resources, its GitOps
    root, and (Flux) its add-ons' directory. A DNS-label cluster name holds no '.', so these never
    name another cluster."""
    return (f"{cluster}.cloud.yaml", f"{cluster}{bootstrap.ROOT_SUFFIX}", f"{cluster}{bootstrap.ADDONS_SUFFIX}")


def write(objects: EventObjects, out: Path) -> Written:
    """Replace OUT/<cluster>/ for each cluster with the render and remove the directories of
    clusters an earlier render wrote that the stack no longer has.

    With `gitops`, each cluster also gets its root (OUT/<cluster>.root.yaml, addons/bootstrap.py);
    with Flux its add-ons go to OUT/<cluster>.addons/, which the root's first Kustomization applies
    before the objects'. The marker is written last.
    """
    before = previous_clusters(out)
    split = objects.spec.gitops is GitOps.FLUX
    counts = {}
    out.mkdir(parents=True, exist_ok=True)
    for cluster in objects.clusters:
        name = cluster.cluster.name
        addons = [o for u in cluster.units if split and u.component == gitops.COMPONENT for o in u.objects]
        kit = [o for u in cluster.units if not (split and u.component == gitops.COMPONENT) for o in u.objects]
        _write_dir(out, name, kit)
        _write_dir(out, f"{name}{bootstrap.ADDONS_SUFFIX}", addons)
        _write_docs(_cloud(cluster.units), out / f"{name}.cloud.yaml")
        _write_docs(bootstrap.roots(objects.spec, cluster.cluster), out / f"{name}{bootstrap.ROOT_SUFFIX}")
        counts[name] = len(kit) + len(addons)
    removed = tuple(sorted(c for c in before if c not in counts and "/" not in c and c not in ("", ".", "..")))
    for gone in removed:
        shutil.rmtree(out / gone, ignore_errors=True)
        for path in (out / b for b in beside(gone)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    (out / MARKER).write_text(yaml.safe_dump({"clusters": list(counts)}, sort_keys=False))
    return Written(counts, removed)
