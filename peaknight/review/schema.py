"""Schema validation of rendered objects: Kubernetes API schemas for core kinds, upstream CRDs else.

Core kinds go through `kubernetes-validate` (strict: unknown fields are errors); custom resources
through the `openAPIV3Schema` of the matching CRD file in a directory (../shared/crds by default),
with jsonschema. Used by the tests and by `peaknight validate`.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from peaknight.spec.config import project_root

DEFAULT_CRDS = project_root().parent / "shared" / "crds"
KUBERNETES_VERSION = "1.33"
# CRDs of kinds the kit renders that the pinned list does not carry yet (see its README).
PENDING_CRDS = Path(__file__).with_name("crds-pending")


@cache
def crd_schemas(crd_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, for every served version of every CRD in `crd_dir`."""
    schemas = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        # libyaml when present: the CRDs are megabytes of YAML, ten times slower to parse in Python.
        for doc in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def is_core(manifest: dict[str, Any]) -> bool:
    """Core kinds have no group ('v1') or a group ending in k8s.io / a built-in group."""
    api_version = manifest["apiVersion"]
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group == "" or group in {"apps", "batch", "policy", "autoscaling"} or (
        group.endswith(".k8s.io") and group not in {"gateway.networking.k8s.io", "leaderworkerset.x-k8s.io"})


def validate(manifest: dict[str, Any], crd_dir: Path = DEFAULT_CRDS) -> list[str]:
    """Problems with one object (empty when valid), each naming the object."""
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

    key = (manifest["apiVersion"], manifest["kind"])
    schema = crd_schemas(crd_dir).get(key) or crd_schemas(PENDING_CRDS).get(key)
    if schema is None:
        return [f"{name}: no CRD in {crd_dir} serves {manifest['apiVersion']} {manifest['kind']}"]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{name}: {e.message} at {'.'.join(map(str, e.absolute_path)) or '(root)'}"
            for e in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))]
