"""Whether a profiles file written beside a stack is valid: the stack's own model classes, GPUs,
instance types and throughput rows (`peaknight:profiles`), and the rows a rehearsal measured
(calibration.yaml). Both use the shipped profiles.yaml's schema and are read above it
(profiles.load), so a figure the planner divides by is checked the same way wherever it comes from:
every entry cites its `source`, every row names a known model class and GPU and a topology that
renders (engine, mode, KV dtype, the groups its mode needs). Problems are one line each, naming the
file and the key path (ConfigError).
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import TypeAdapter, ValidationError

from peaknight.provisioners.settings import PROVISIONER_CLOUD
from peaknight.spec import profiles
from peaknight.spec.config import ConfigError, Problem, load_yaml, read_input
from peaknight.spec.stack import Engine, ServingMode

# What a stack's own file may declare: the tables a model and its pool are looked up in. Timings,
# the gateway, the router and the edge's network stay the kit's (they are not per model).
OWN_SECTIONS = ("gpus", "instance_types", "model_classes", "throughput")
# Names reach node selectors and NodePool requirements (label values) and alert text: the grammar of
# a label value, lower case for model classes (a model class is also quoted in config errors).
_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_CLASS = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,61}[a-z0-9])?")
MAX_BYTES = 1 << 20


# What an entry of each section is, as profiles.load builds it (a GPU is its memory and source).
_GPU = dataclasses.make_dataclass("Gpu", [("memory_gib", float), ("source", str)])
_KINDS: dict[str, type] = {"gpus": _GPU, "instance_types": profiles.InstanceType,
                           "model_classes": profiles.ModelClass, "throughput": profiles.Throughput}
# Filled in by profiles.load from the entry's key, not written in the entry.
_FROM_KEY = {"instance_types": "name", "model_classes": "name"}
# Keys an entry once had that the kit now decides elsewhere: refused as unknown, saying where.
_RECIPE = "the serving recipe's transport (peaknight/data/recipes.yaml)"
_MOVED: dict[tuple[type, str], str] = {(profiles.Interconnect, "kv_transfer"): _RECIPE,
                                       (profiles.Interconnect, "moe_a2a"): _RECIPE}


def read(path: Path, what: str) -> dict[str, Any]:
    """The file's top-level mapping, or ConfigError naming the file. Read as the stack file is: a
    regular file of bounded size (config.read_input), one YAML document bounded in depth and size
    with aliases counted expanded (config.load_yaml)."""
    source = str(path)
    raw = load_yaml(read_input(path, MAX_BYTES, f"a readable {what} of at most {MAX_BYTES:,} bytes"), source)
    if not isinstance(raw, dict):
        raise ConfigError([Problem(source, "(file)", f"a {what}: a mapping", type(raw).__name__)])
    return raw


def own(path: Path, shipped: Mapping[str, Any]) -> dict[str, Any]:
    """A stack's own profiles file, validated against `shipped` (profiles.yaml as parsed): its
    sections, each entry new (a name the shipped table has is refused: a shipped figure is replaced
    by a throughput row, which cites where the new figure comes from), cited and well formed."""
    source = str(path)
    raw = read(path, "profiles file")
    problems = [Problem(source, key, "one of " + ", ".join(OWN_SECTIONS), "an unknown key")
                for key in raw if key not in OWN_SECTIONS]
    for section in ("gpus", "instance_types", "model_classes"):
        entries = raw.get(section, {})
        if not isinstance(entries, dict):
            problems.append(Problem(source, section, "a mapping of name to entry", type(entries).__name__))
            continue
        grammar = _CLASS if section == "model_classes" else _NAME
        for name, entry in entries.items():
            if not isinstance(name, str) or not grammar.fullmatch(name):
                problems.append(Problem(source, f"{section}.{name}", "a name of letters, digits, '-', '.'"
                                        + (" (lower case)" if section == "model_classes" else "")
                                        + ", at most 63", repr(name)))
            elif name in shipped[section]:
                problems.append(Problem(source, f"{section}.{name}", "a name the shipped profiles do not have "
                                        "(to change a shipped figure, add a throughput row)", "a shipped one"))
            else:
                problems += entry_problems(source, section, f"{section}.{name}", entry)
    rows = raw.get("throughput", [])
    if not isinstance(rows, list):
        problems.append(Problem(source, "throughput", "a list of throughput rows", type(rows).__name__))
        rows = []
    gpus = {*shipped["gpus"], *(raw.get("gpus") or {})}
    classes = {*shipped["model_classes"], *(raw.get("model_classes") or {})}
    first: dict[tuple[str, str, str, str], int] = {}
    for i, row in enumerate(rows):
        found = row_problems(source, f"throughput[{i}]", row, gpus, classes)
        problems += found
        if not found and first.setdefault(profiles.mapping_key(row), i) != i:
            problems.append(Problem(source, f"throughput[{i}]", "one row per model class, GPU, engine and mode",
                                    f"the same as throughput[{first[profiles.mapping_key(row)]}]"))
    clouds = sorted({c for c in PROVISIONER_CLOUD.values() if c})
    for name, entry in (raw.get("instance_types") or {}).items():
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("gpu"), str) and entry["gpu"] not in gpus:
            problems.append(Problem(source, f"instance_types.{name}.gpu", "a GPU of the shipped profiles or of "
                                    "this file (" + ", ".join(sorted(gpus)) + ")", repr(entry["gpu"])))
        if entry.get("fabric", "") not in ("", *profiles.FABRICS):
            problems.append(Problem(source, f"instance_types.{name}.fabric", "one of " + ", ".join(profiles.FABRICS),
                                    repr(entry["fabric"])))
        if "cloud" in entry and entry["cloud"] not in clouds:
            problems.append(Problem(source, f"instance_types.{name}.cloud", "a cloud a provisioner launches on ("
                                    + ", ".join(clouds) + ")", repr(entry["cloud"])))
    if problems:
        raise ConfigError(problems)
    return {section: raw.get(section) or ({} if section != "throughput" else []) for section in OWN_SECTIONS}


def entry_problems(source: str, section: str, path: str, entry: Any) -> list[Problem]:
    """An entry of `section` against the fields its table has: required keys, no unknown ones,
    values of the right type, and a source that says where its figures come from."""
    if not isinstance(entry, dict):
        return [Problem(source, path, "a mapping", repr(entry)[:60])]
    cls = _KINDS[section]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != _FROM_KEY.get(section)}
    problems = [Problem(source, f"{path}.{n}", "this required key") for n, f in fields.items()
                if n not in entry and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    problems += _unknown_keys(source, path, cls, entry, _FROM_KEY.get(section, ""))
    if problems:
        return problems
    value = {**entry, **({_FROM_KEY[section]: "x"} if section in _FROM_KEY else {})}
    try:
        TypeAdapter(cls).validate_python(value)
    except ValidationError as err:
        for e in err.errors(include_url=False):
            where = ".".join(str(p) for p in e["loc"])
            problems.append(Problem(source, f"{path}.{where}", e["msg"].removeprefix("Input should be "),
                                    repr(e.get("input"))[:60]))
        return problems
    if not str(entry.get("source", "")).strip():
        problems.append(Problem(source, f"{path}.source", "where the figures come from (a URL, a document, or "
                                "'est.' and the derivation)", repr(entry.get("source"))))
    problems += [Problem(source, f"{path}.{where}", "a finite number" + ("" if key in ZERO_ALLOWED else " above 0"),
                         repr(v)) for where, key, v in _numbers(entry)
                 if not math.isfinite(v) or (v <= 0 and key not in ZERO_ALLOWED) or v < 0]
    arch: dict[str, Any] = entry.get("architecture") or {}
    if section == "model_classes" and not problems and not (arch.get("mla_dims") or (arch.get("kv_heads")
                                                                                     and arch.get("head_dim"))):
        problems.append(Problem(source, f"{path}.architecture", "mla_dims (MLA), or kv_heads and head_dim (GQA): "
                                "what the KV-cache memory bound divides by", "neither"))
    return problems


def _unknown_keys(source: str, path: str, cls: type, entry: Mapping[str, Any], derived: str = "") -> list[Problem]:
    """Keys of `entry` that `cls` has no field for, and so on down every mapping whose field is
    itself a table (an instance type's interconnect, a row's topology and recipe): refused, never
    ignored, so a key the kit moved elsewhere is named rather than silently dropped or crashed on."""
    fields = [f.name for f in dataclasses.fields(cls) if f.name != derived]
    problems = [Problem(source, f"{path}.{n}", "a known key (" + ", ".join(fields) + ")",
                        f"a key now {_MOVED[cls, n]}" if (cls, n) in _MOVED else "an unknown key")
                for n in entry if n not in fields]
    for name, hint in typing.get_type_hints(cls).items():
        table = next((t for t in (hint, *typing.get_args(hint))
                      if isinstance(t, type) and dataclasses.is_dataclass(t)), None)
        if table is not None and isinstance(entry.get(name), dict):
            problems += _unknown_keys(source, f"{path}.{name}", table, entry[name])
    return problems


# Figures that may be 0: a hit rate, and the attention shape the other kind of attention leaves out.
ZERO_ALLOWED = {"prefix_cache_hit_rate", "mla_dims", "kv_heads", "head_dim"}


def _numbers(value: Any, where: str = "") -> Iterable[tuple[str, str, float]]:
    """(path, key, number) of every number in an entry, however deep (architecture, groups)."""
    for key, v in value.items():
        path = f"{where}.{key}" if where else str(key)
        if isinstance(v, dict):
            yield from _numbers(v, path)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield path, str(key), float(v)


def row_problems(source: str, path: str, row: Any, gpus: Iterable[str], classes: Iterable[str]) -> list[Problem]:
    """A throughput row: an entry of its table, of a known model class and GPU, measured on a
    topology the kit renders."""
    problems = entry_problems(source, "throughput", path, row)
    if problems:
        return problems
    gpus, classes = sorted(gpus), sorted(classes)
    if row["model_class"] not in classes:
        problems.append(Problem(source, f"{path}.model_class", "a model class of the shipped profiles or of this "
                                "file (" + ", ".join(classes) + ")", repr(row["model_class"])))
    if row["gpu"] not in gpus:
        problems.append(Problem(source, f"{path}.gpu", "a GPU of the shipped profiles or of this file ("
                                + ", ".join(gpus) + ")", repr(row["gpu"])))
    if not 0 <= row["prefix_cache_hit_rate"] < 1:
        problems.append(Problem(source, f"{path}.prefix_cache_hit_rate", "a share from 0 to below 1",
                                repr(row["prefix_cache_hit_rate"])))
    if row.get("fabric", "") not in ("", *profiles.FABRICS):
        problems.append(Problem(source, f"{path}.fabric", "the network between the source's nodes: one of "
                                + ", ".join(profiles.FABRICS), repr(row["fabric"])))
    return problems + _topology_problems(source, f"{path}.topology", row["topology"])


def _topology_problems(source: str, path: str, topology: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for key, allowed in (("engine", [e.value for e in Engine]), ("mode", [m.value for m in ServingMode]),
                         ("kv_dtype", list(profiles.KV_BYTES))):
        if topology[key] not in allowed:
            problems.append(Problem(source, f"{path}.{key}", "one of " + ", ".join(allowed), repr(topology[key])))
    groups = ("serve",) if topology["mode"] == profiles.COLOCATED else ("prefill", "decode")
    for key in ("serve", "prefill", "decode"):
        group = topology.get(key)
        if key in groups and not group:
            problems.append(Problem(source, f"{path}.{key}", f"a group (gpus, tp, dp, ep) for mode "
                                    f"{topology['mode']}", "nothing"))
        elif key not in groups and group:
            problems.append(Problem(source, f"{path}.{key}", f"no {key} group in mode {topology['mode']}",
                                    "one"))
        elif group:
            problems += [Problem(source, f"{path}.{key}.{n}", "a positive whole number", repr(v))
                         for n, v in group.items() if v < 1]
    return problems
