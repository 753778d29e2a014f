"""Serving recipes (data/recipes.yaml): which public deployment each rendered combination follows.

A workload's combination is its engine, image, mode (colocated or disaggregated), whether one
replica spans nodes, and the fabric between nodes: the one its pool's instance types record in
profiles.yaml (plan/fabric.py's `of`, which also decides whether a throughput row's figure holds), so
a recipe and a figure are always judged on the same fabric. The recipe covering it gives the pod's user,
environment, JIT caches, probes, fabric devices and environment, and transport flags; the engine
part (user, caches, probes, compile time) is per engine. A combination no recipe covers, or one
whose recipe is unproven, renders only under `policy.allowUnproven` (config checks it; `plan
--explain` names it).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Mapping

import yaml

from peaknight.spec import profiles

DATA = Path(__file__).resolve().parent.parent / "data" / "recipes.yaml"
NO_FABRIC = "none"
# A workload that needs a fabric (it spans nodes, or sends KV between phases) on a cluster that
# declares none: VKE's provisioner refuses it (provisioners/vke.py), an existing cluster's fabric is
# the operator's. No recipe names it; config leaves it to those checks and `plan` prints it UNPROVEN.
UNDECLARED = "undeclared"
# An interconnect on instance types that record no fabric (a stack's own profiles file may leave
# `fabric` out): no recipe names it, so it needs policy.allowUnproven.
UNRECORDED = "unrecorded"
EFA = "efa"


@dataclass(frozen=True)
class ProbeSpec:
    path: str
    period: int
    timeout: int
    failures: int | None     # None: the startup budget at the period decides


@dataclass(frozen=True)
class EngineRecipe:
    """What every pod of one engine needs, whatever the combination."""

    engine: str
    version: str
    uid: int
    user: str
    home: str
    env: Mapping[str, str]
    caches: Mapping[str, str]           # variable -> directory under the model's JIT cache root
    cold_compile_seconds: int
    cold_compile_source: str
    probes: Mapping[str, Mapping[str, ProbeSpec]]  # role -> kind (startup/readiness/liveness) -> probe


@dataclass(frozen=True)
class Fabric:
    name: str                           # an instance type's fabric (profiles.FABRICS), or none
    carries: tuple[str, ...]            # what an image must carry to use it
    env: Mapping[str, str]
    hugepages: bool
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    name: str
    engine: str
    images: tuple[str, ...]
    mode: str                           # colocated | disaggregated
    nodes: tuple[str, ...]              # single and/or multi
    fabrics: tuple[str, ...]            # the instance types' fabrics it ran on (profiles.FABRICS), or none
    transport: Mapping[str, str]        # kv_transfer, moe_a2a: the engine flags it renders (Topology's fields)
    unproven: str                       # why no public source ran it; "" when one did
    sources: tuple[str, ...]
    kv_over_tcp: bool = False
    needs: tuple[str, ...] = ()         # what the image must carry beyond the fabric's list

    def describe(self) -> str:
        return (f"{self.name} ({self.engine} {'/'.join(self.images)}, {self.mode}, {'/'.join(self.nodes)}-node, "
                f"{'/'.join(self.fabrics)})")


@dataclass(frozen=True)
class Combination:
    """What one workload asks for."""

    engine: str
    image: str          # repository:tag, digest dropped
    mode: str
    nodes: str          # single | multi
    fabric: str

    def describe(self) -> str:
        return f"{self.engine} {self.image} {self.mode} {self.nodes}-node on {self.fabric}"


@dataclass(frozen=True)
class Match:
    """The recipe a combination follows, or None and the nearest recipes."""

    combination: Combination
    recipe: Recipe | None
    nearest: tuple[Recipe, ...] = ()

    @property
    def proven(self) -> bool:
        return self.recipe is not None and not self.recipe.unproven

    def why_unproven(self) -> str:
        """One line: why the combination needs policy.allowUnproven ("" when it does not)."""
        if self.recipe is None:
            near = "; ".join(r.describe() for r in self.nearest) or "none"
            return f"no recipe covers {self.combination.describe()} (nearest: {near})"
        if self.recipe.unproven:
            return f"recipe {self.recipe.name} is unproven: {self.recipe.unproven}"
        return ""

    @property
    def transport(self) -> Mapping[str, str]:
        """The transport flags the workload renders with: its recipe's; with none (an image no
        recipe names, under policy.allowUnproven), those of the nearest recipe of the same engine,
        mode and fabric; else none (the engine's defaults, engines/base.py Topology)."""
        if self.recipe is not None:
            return self.recipe.transport
        c = self.combination
        return next((r.transport for r in self.nearest if (r.engine, r.mode) == (c.engine, c.mode)
                     and c.fabric in r.fabrics), {})


@dataclass(frozen=True)
class Recipes:
    engines: Mapping[str, EngineRecipe]
    fabrics: Mapping[str, Fabric]
    images: Mapping[str, Mapping[str, Any]]
    recipes: tuple[Recipe, ...]


def _probe(raw: Mapping[str, Any]) -> ProbeSpec:
    failures = raw["failures"]
    return ProbeSpec(raw["path"], int(raw["period"]), int(raw["timeout"]), None if failures == "startup" else int(failures))


@cache
def load() -> Recipes:
    """The shipped recipes (package data; read once)."""
    raw = yaml.safe_load(DATA.read_text())
    engines = {name: EngineRecipe(
        engine=name, version=str(e["version"]), uid=int(e["user"]["uid"]), user=e["user"]["name"],
        home=e["user"]["home"], env=dict(e["env"]), caches=dict(e["caches"]),
        cold_compile_seconds=int(e["cold_compile_seconds"]), cold_compile_source=e["cold_compile_source"],
        probes={role: {kind: _probe(p) for kind, p in kinds.items()} for role, kinds in e["probes"].items()})
        for name, e in raw["engines"].items()}
    fabrics = {name: Fabric(name, tuple(f["carries"]), dict(f["env"]),
                            bool(f["hugepages"]), tuple(f["sources"])) for name, f in raw["fabrics"].items()}
    recipes = tuple(Recipe(name=r["name"], engine=r["engine"], images=tuple(r["images"]), mode=r["mode"],
                           nodes=tuple(r["nodes"]), fabrics=tuple(r["fabrics"]), transport=dict(r["transport"]),
                           unproven=r["unproven"], sources=tuple(r["sources"]), kv_over_tcp=bool(r.get("kv_over_tcp")),
                           needs=tuple(r.get("needs", ())))
                    for r in raw["recipes"])
    return Recipes(engines, fabrics, raw["images"], recipes)


def missing(recipe: Recipe) -> dict[str, tuple[str, ...]]:
    """image -> what it lacks of what the recipe's fabric and the recipe itself need (the image
    catalog says what each image carries): a recipe naming such an image is unproven."""
    table = load()
    needed = (*dict.fromkeys(c for f in recipe.fabrics for c in fabric(f).carries), *recipe.needs)
    lacks = {i: tuple(n for n in needed if n not in table.images[i]["carries"]) for i in recipe.images}
    return {i: lack for i, lack in lacks.items() if lack}


def engine_recipe(engine: str) -> EngineRecipe:
    return load().engines[engine]


def fabric_of(recorded: str, interconnect: profiles.Interconnect | None, needed: bool) -> str:
    """The fabric a workload runs over: none where it needs none; UNDECLARED where it needs one and
    the cluster declares no interconnect; else `recorded`, its instance types' fabric (fabric.of),
    or UNRECORDED where they record none."""
    if not needed:
        return NO_FABRIC
    if interconnect is None:
        return UNDECLARED
    return recorded or UNRECORDED


def image_key(image: str) -> str:
    """repository:tag of an image reference, its digest dropped (recipes name tags)."""
    return image.split("@", 1)[0]


def combination(engine: str, image: str, phase: str, spans_nodes: bool, interconnect: profiles.Interconnect | None,
                recorded: str) -> Combination:
    """What a workload asks for; `recorded`: the fabric its pool's instance types record in the
    cluster (plan/fabric.py `of`), `interconnect`: the one the cluster declares for it (or None)."""
    return Combination(engine, image_key(image), "disaggregated" if phase else "colocated",
                       "multi" if spans_nodes else "single",
                       fabric_of(recorded, interconnect, spans_nodes or bool(phase)))


def match(combo: Combination) -> Match:
    """The recipe covering `combo`; else the nearest ones (same engine and mode first)."""
    for r in load().recipes:
        if (r.engine, r.mode) == (combo.engine, combo.mode) and combo.fabric in r.fabrics and combo.nodes in r.nodes \
                and combo.image in r.images:
            return Match(combo, r)
    def distance(r: Recipe) -> int:
        return ((r.engine != combo.engine) * 8 + (r.mode != combo.mode) * 4 + (combo.fabric not in r.fabrics) * 2
                + (combo.nodes not in r.nodes) + (combo.image not in r.images))
    ranked = sorted(load().recipes, key=distance)
    return Match(combo, None, tuple(ranked[:2]))


def fabric(name: str) -> Fabric:
    """A fabric by name; an undeclared one adds nothing to the pod (there is nothing to use)."""
    table = load().fabrics
    return table.get(name, table[NO_FABRIC])
