"""What the API server rejects that the OpenAPI schemas do not say: names per kind, labels, and the
CRDs' validation rules (CEL `x-kubernetes-validations`) on the fields the kit sets.

The schemas (schema.py) check types and fields; the API server also runs name validation
(apimachinery's IsDNS1123Label / IsDNS1035Label / IsDNS1123Subdomain, IsQualifiedName,
IsValidLabelValue) and, for custom resources, each CRD's CEL rules: those a CEL engine evaluates
(review/cel.py, run with the schemas), and here, written out in Python with the CRD's own message,
the NodePool rules it cannot (Kubernetes' own CEL extensions) on fields the kit fills in.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterator

from peaknight.provisioners import registry as provisioners
from peaknight.review.policy import pod_specs

_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def _label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1123_LABEL.fullmatch(name))


def _service(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1035_LABEL.fullmatch(name))


def _subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_SUBDOMAIN.fullmatch(name))


def _job(name: str) -> bool:
    """A Job's name becomes its pods' `job-name` label value: a subdomain of at most 63."""
    return len(name) <= 63 and _subdomain(name)


NAME_RULES: dict[str, tuple[Callable[[str], bool], str]] = {
    "Namespace": (_label, "a DNS-1123 label"),
    "Service": (_service, "a DNS-1035 label (starts with a letter)"),
    "Job": (_job, "a DNS subdomain of at most 63 characters"),
}
DEFAULT_NAME_RULE = (_subdomain, "a DNS-1123 subdomain")


def _label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return (not prefix or _subdomain(prefix)) and len(name) <= 63 and bool(_QUALIFIED_NAME.fullmatch(name))


def _label_value(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_LABEL_VALUE.fullmatch(value))


def _labels(where: str, labels: dict[str, Any]) -> Iterator[str]:
    for key, value in labels.items():
        if not _label_key(key):
            yield f"{where}: label key {key!r} is not a qualified name"
        if not _label_value(value):
            yield f"{where}: label {key} value {value!r} is not a valid label value"


# Each provisioner's hand-written rules for the kinds it declares: the CRD rules the CEL engine
# cannot evaluate (review/cel.py: the NodePool's label rules use Kubernetes' find()).
CEL_RULES: dict[tuple[str, str], Callable[[dict[str, Any]], Iterator[str]]] = {
    kind: rule for p in provisioners.REGISTRY.values() for kind, rule in p.api_rules.items()}


def validate(manifest: dict[str, Any]) -> list[str]:
    """Problems the API server would report for one object (empty when it would accept it)."""
    kind, meta = manifest.get("kind", ""), manifest.get("metadata", {})
    name = meta.get("name", "")
    where = f"{kind}/{name}"
    check, grammar = NAME_RULES.get(kind, DEFAULT_NAME_RULE)
    problems = [] if check(name) else [f"{where}: metadata.name {name!r} is not {grammar}"]
    if "namespace" in meta and not _label(meta["namespace"]):
        problems.append(f"{where}: metadata.namespace {meta['namespace']!r} is not a DNS-1123 label")
    problems += _labels(f"{where}: metadata.labels", meta.get("labels", {}))
    for path, pod in pod_specs(manifest):
        template = path.rsplit(".spec", 1)[0]
        labels = _template_labels(manifest, template)
        problems += _labels(f"{where}: {template}.metadata.labels", labels)
        account = pod.get("serviceAccountName")
        if account is not None and not _subdomain(account):
            problems.append(f"{where}: {path}.serviceAccountName {account!r} is not a DNS-1123 subdomain")
    rules = CEL_RULES.get((manifest.get("apiVersion", ""), kind))
    if rules:
        problems += [f"{where}: {p}" for p in rules(manifest.get("spec", {}))]
    return problems


def _template_labels(manifest: dict[str, Any], template_path: str) -> dict[str, Any]:
    node: Any = manifest
    for part in template_path.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node.get("metadata", {}).get("labels", {}) if isinstance(node, dict) else {}
