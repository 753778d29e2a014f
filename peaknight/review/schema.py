"""Schema validation of rendered objects: Kubernetes API schemas for core kinds, upstream CRDs else.

Core kinds go through `kubernetes-validate` (strict: unknown fields are errors); custom resources
through the `openAPIV3Schema` of the matching CRD, with jsonschema: by default the pinned upstream
CRDs (crds.py: crds.lock.yaml, verified), or every CRD file in a directory given with `--crds`.
Used by the tests and by `peaknight validate`.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from peaknight.review import crds

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
    name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
    if is_core(manifest):
        import kubernetes_validate  # test/validate extra: kept off the render path

        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            return [f"{name}: {err.message} at {'.'.join(map(str, err.path)) or '(root)'}"]
        except kubernetes_validate.SchemaNotFoundError:
            return [f"{name}: no Kubernetes {KUBERNETES_VERSION} schema for {manifest['apiVersion']} {manifest['kind']}"]
        return []
    import jsonschema

    schema = crd_schemas(crd_files(crd_dir)).get((manifest["apiVersion"], manifest["kind"]))
    if schema is None and crd_dir is None and kind_of(manifest) in crds.unvalidated_kinds():
        return []  # the CRD directory lacks this optional pin: `peaknight validate` says so once
    if schema is None:
        where = crd_dir or "crds.lock.yaml"
        return [f"{name}: no CRD in {where} serves {manifest['apiVersion']} {manifest['kind']}"]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{name}: {e.message} at {'.'.join(map(str, e.absolute_path)) or '(root)'}"
            for e in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))]
