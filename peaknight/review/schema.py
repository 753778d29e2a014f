"""Schema validation of rendered objects: Kubernetes API schemas for core kinds, upstream CRDs else.

Core kinds go through `kubernetes-validate` (strict: unknown fields are errors); custom resources
through the `openAPIV3Schema` of the matching CRD, with jsonschema: by default the pinned upstream
CRDs (crds.py: crds.lock.yaml, verified), or every CRD file in a directory given with `--crds`.
Used by the tests and by `peaknight validate`.
"""
from __future__ import annotations

import json
import re
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml

from peaknight.review import cel, crds

KUBERNETES_VERSION = "1.33"
# CRDs of kinds the kit renders that the pinned list does not carry yet (see its README).


def kind_of(manifest: dict[str, Any]) -> str:
    """`group/Kind`, as crds.lock.yaml names the kinds of an optional pin."""
    return f"{str(manifest.get('apiVersion', '')).rsplit('/', 1)[0]}/{manifest.get('kind')}"


def crd_files(crd_dir: Path | None) -> tuple[Path, ...]:
    """Every CRD file in `crd_dir`, or the pinned ones (verified) when it is None."""
    return crds.files() if crd_dir is None else tuple(sorted(crd_dir.glob("*.yaml")))


@cache
def crd_schemas(paths: tuple[Path, ...]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, for every served version of every CRD in `paths`."""
    schemas = {}
    for path in paths:
        # libyaml when present: the CRDs are megabytes of YAML, ten times slower to parse in Python.
        for doc in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def strict(node: Any) -> Any:
    """The schema with unknown fields as errors, as the API server's strict field validation
    (kubectl's default) has them: a CRD schema lists its properties but leaves out
    `additionalProperties`, so plain JSON Schema would accept a misspelt field that the API server
    rejects (or prunes). Objects that keep unknown fields (`x-kubernetes-preserve-unknown-fields`:
    Helm values, free-form maps) stay open."""
    if isinstance(node, list):
        return [strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def is_core(manifest: dict[str, Any]) -> bool:
    """Core kinds have no group ('v1') or a group ending in k8s.io / a built-in group."""
    api_version = manifest["apiVersion"]
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group == "" or group in {"apps", "batch", "policy", "autoscaling"} or (
        group.endswith(".k8s.io") and group not in {"gateway.networking.k8s.io", "leaderworkerset.x-k8s.io",
                                                  "inference.networking.k8s.io"})


def validate(manifest: dict[str, Any], crd_dir: Path | None = None) -> list[str]:
    """Problems with one object (empty when valid), each naming the object. Custom resources are
    checked against the pinned CRDs, or those in `crd_dir`."""
    if is_core(manifest):
        against: tuple[Path, ...] = ()
        skipped: tuple[str, ...] = ()
    else:
        against = crd_files(crd_dir)
        skipped = crds.unvalidated_kinds() if crd_dir is None else ()
    # A fleet repeats most objects verbatim (broadcast: 2,592 objects, 359 distinct): each distinct
    # object is checked once per process and set of CRDs.
    where = str(crd_dir or "crds.lock.yaml")
    return list(_problems(json.dumps(manifest, sort_keys=True), against, skipped, where))


@lru_cache(maxsize=8192)
def _problems(manifest_json: str, against: tuple[Path, ...], skipped: tuple[str, ...], where: str) -> tuple[str, ...]:
    """`validate` of one object, given as JSON (hashable), against core schemas or the CRD files
    `against`; kinds in `skipped` lack their optional CRD and pass."""
    import jsonschema

    manifest = json.loads(manifest_json)
    name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
    if is_core(manifest):
        validator = core_validator(manifest["apiVersion"], manifest["kind"])
        if validator is None:
            return (f"{name}: no Kubernetes {KUBERNETES_VERSION} schema for {manifest['apiVersion']} {manifest['kind']}",)
        try:
            validator.validate(manifest)
        except jsonschema.ValidationError as err:
            return (f"{name}: {err.message} at {'.'.join(map(str, err.path)) or '(root)'}",)
        return ()
    schema = crd_schemas(against).get((manifest["apiVersion"], manifest["kind"]))
    if schema is None and kind_of(manifest) in skipped:
        return ()  # the CRD directory lacks this optional pin: `peaknight validate` says so once
    if schema is None:
        return (f"{name}: no CRD in {where} serves {manifest['apiVersion']} {manifest['kind']}",)
    validator = jsonschema.Draft7Validator(schema)
    problems = tuple(f"{name}: {e.message} at {'.'.join(map(str, e.absolute_path)) or '(root)'}"
                     for e in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path))))
    # The CRD's CEL rules assume a well-typed object: run them once the schema holds.
    return problems or tuple(f"{name}: {p} [cel]" for p in _cel(manifest_json, against).problems)


@lru_cache(maxsize=8192)
def _cel(manifest_json: str, against: tuple[Path, ...]) -> cel.Result:
    """The CRD's CEL rules on one custom resource, once per object and set of CRDs."""
    manifest = json.loads(manifest_json)
    schema = crd_schemas(against).get((manifest.get("apiVersion"), manifest.get("kind")))
    return cel.check(manifest, schema) if schema else cel.Result([], [])


def unevaluated_rules(manifest: dict[str, Any], crd_dir: Path | None = None) -> list[cel.Unevaluated]:
    """The CRD rules on this custom resource that the CEL engine could not evaluate."""
    if is_core(manifest):
        return []
    return _cel(json.dumps(manifest, sort_keys=True), crd_files(crd_dir)).unevaluated


@cache
def core_validator(api_version: str, kind: str) -> Any:
    """kubernetes-validate's strict schema for a core kind as a ready validator, or None when the
    Kubernetes version has none. The library's own `validate` re-reads and parses the kind's
    schema and the 4 MB `_definitions.json` on every call (about 20 ms an object); this resolves
    the same files once per kind and validates exactly as it does."""
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    version = [v for v in utils.all_versions() if utils.major_minor(v) <= KUBERNETES_VERSION][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", KUBERNETES_VERSION)
    except FileNotFoundError:
        return None
    definitions = utils.schema_contents(f"{folder}/_definitions.json", KUBERNETES_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)
