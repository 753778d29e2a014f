"""`peaknight validate` catches what the API server rejects beyond the schemas: names per kind, labels,
and the pinned CRDs' CEL rules, by a CEL engine (review/cel.py) or, where it cannot, written out."""
from __future__ import annotations

import copy

import pytest

import nights
from peaknight.review import apiserver, cel
from peaknight.review import crds
from peaknight.review import schema as k8s_schema


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    objects = nights.objects("rehearsal")
    return {f"{o.kind}/{o.name}": o.manifest for u in objects.clusters[0].units for o in u.objects}


def test_every_rendered_object_of_both_stacks_passes(rendered):
    broadcast = nights.objects("broadcast")
    manifests = list(rendered.values()) + [o.manifest for u in broadcast.clusters[0].units for o in u.objects]
    assert [p for m in manifests for p in apiserver.validate(m)] == []


def _edited(manifest: dict, edit) -> dict:
    out = copy.deepcopy(manifest)
    edit(out)
    return out


def test_an_empty_capacity_type_requirement_breaks_the_node_pool_cel_rule(rendered):
    pool = next(m for k, m in rendered.items() if k.startswith("NodePool/"))
    name = pool["metadata"]["name"]

    def empty(m):
        req = next(r for r in m["spec"]["template"]["spec"]["requirements"] if r["key"] == "karpenter.sh/capacity-type")
        req["values"] = []
    index = [r["key"] for r in pool["spec"]["template"]["spec"]["requirements"]].index("karpenter.sh/capacity-type")
    assert apiserver.validate(_edited(pool, empty)) == [
        f"NodePool/{name}: spec.template.spec.requirements[{index}]: requirements with operator 'In' must have a "
        "value defined"]


def test_restricted_node_labels_and_unpaired_budgets_are_reported(rendered):
    pool = next(m for k, m in rendered.items() if k.startswith("NodePool/"))
    name = pool["metadata"]["name"]

    def edit(m):
        m["spec"]["template"]["metadata"]["labels"]["karpenter.sh/nodepool"] = "x"
        m["spec"]["template"]["metadata"]["labels"]["node.karpenter.sh/x"] = "y"
        m["spec"]["disruption"]["budgets"].append({"nodes": "1", "schedule": "0 0 * * *"})
    budgets = len(pool["spec"]["disruption"]["budgets"])
    assert apiserver.validate(_edited(pool, edit)) == [
        f'NodePool/{name}: spec.template.metadata.labels: label "karpenter.sh/nodepool" is restricted',
        f'NodePool/{name}: spec.template.metadata.labels: label domain "karpenter.sh" is restricted',
        f"NodePool/{name}: spec.disruption.budgets[{budgets}]: 'schedule' must be set with 'duration'"]


def test_a_scaled_object_floor_above_its_ceiling_is_reported_by_the_crds_own_rule(rendered):
    """The KEDA CRD's CEL rule, evaluated by the CEL engine with the schemas (review/cel.py), with
    its own message; no hand-written copy of it is left."""
    so = next(m for k, m in rendered.items() if k.startswith("ScaledObject/"))
    bad = _edited(so, lambda m: m["spec"].update(minReplicaCount=m["spec"]["maxReplicaCount"] + 1))
    assert apiserver.validate(bad) == []
    assert k8s_schema.validate(bad) == [f"ScaledObject/{so['metadata']['name']}: spec: minReplicaCount must be less "
                                        "than or equal to maxReplicaCount [cel]"]
    assert k8s_schema.validate(so) == []


def _crd_objects():
    """One of each custom resource the nights render, with its CRD version's schema."""
    schemas = k8s_schema.crd_schemas(crds.files())
    found: dict[tuple[str, str], dict] = {}
    for stack in ("broadcast", "rehearsal", "gala-vke"):
        for m in nights.manifests(stack):
            key = (m["apiVersion"], m["kind"])
            if key in schemas and key not in found:
                found[key] = m
    return found, schemas


def test_every_rule_of_every_crd_the_kit_renders_is_evaluated_or_named():
    """Every x-kubernetes-validations rule on every custom resource the nights render runs through
    the CEL engine: each passes, or is named as one the engine cannot evaluate (a Kubernetes CEL
    extension), never silently skipped. The rendered objects break none."""
    found, schemas = _crd_objects()
    assert {k for _, k in found} >= {"HTTPRoute", "Gateway", "SecurityPolicy", "EC2NodeClass", "NodePool",
                                      "ScaledObject", "EnvoyProxy", "BackendTrafficPolicy", "InferencePool"}
    evaluated = 0
    for key, manifest in found.items():
        result = cel.check(manifest, schemas[key])
        assert result.problems == [], (key, result.problems)
        evaluated += 1
        for rule in result.unevaluated:
            assert "cel-python" in rule.reason, rule
    assert evaluated == len(found)


@pytest.mark.parametrize("kind,edit,line", [
    ("Gateway", lambda m: m["spec"]["listeners"][0]["tls"].pop("certificateRefs"),
     "spec.listeners[0].tls: certificateRefs or options must be specified when mode is Terminate (no such key: "
     "certificateRefs)"),   # as the API server: reading an absent field fails the rule
    ("HTTPRoute", lambda m: m["spec"]["rules"][0]["matches"][0]["path"].update(value="no-slash"),
     "spec.rules[0].matches[0].path: value must be an absolute path and start with '/' when type one of "
     "['Exact', 'PathPrefix']"),
])
def test_a_broken_rule_fails_with_the_crds_message(kind, edit, line):
    found, schemas = _crd_objects()
    key, manifest = next((k, m) for k, m in found.items() if k[1] == kind)
    bad = _edited(manifest, edit)
    assert line in cel.check(bad, schemas[key]).problems


def test_a_rule_the_engine_cannot_evaluate_is_named():
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "self.u.isURL()", "message": "a URL"}]}
    result = cel.check({"u": "https://x"}, schema)
    assert result.problems == [] and [str(u) for u in result.unevaluated] == [
        " .: rule 'self.u.isURL()' not evaluated (Kubernetes CEL extension isURL() unknown to cel-python)"]


@pytest.mark.parametrize("kind,name,grammar", [
    ("Service", "8b", "a DNS-1035 label (starts with a letter)"),
    ("Namespace", "a.b", "a DNS-1123 label"),
    ("ConfigMap", "Not_A_Name", "a DNS-1123 subdomain"),
    ("Job", "stage-" + "x" * 60, "a DNS subdomain of at most 63 characters"),
])
def test_names_are_judged_by_their_kind(kind, name, grammar):
    manifest = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
    assert apiserver.validate(manifest) == [f"{kind}/{name}: metadata.name {name!r} is not {grammar}"]


def test_label_keys_and_values_on_objects_and_pod_templates(rendered):
    deployment = next(m for k, m in rendered.items() if k.startswith("Deployment/"))
    name = deployment["metadata"]["name"]

    def edit(m):
        m["metadata"]["labels"]["peaknight.io/x"] = "a" * 64
        m["spec"]["template"]["metadata"]["labels"]["bad key!"] = "v"
    assert apiserver.validate(_edited(deployment, edit)) == [
        f"Deployment/{name}: metadata.labels: label peaknight.io/x value {'a' * 64!r} is not a valid label value",
        f"Deployment/{name}: spec.template.metadata.labels: label key 'bad key!' is not a qualified name"]


def _rule_messages(node, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        out.update(r.get("message", "") for r in node.get("x-kubernetes-validations", []))
        for value in node.values():
            _rule_messages(value, out)
    elif isinstance(node, list):
        for value in node:
            _rule_messages(value, out)
    return out


@pytest.mark.parametrize("api_version,kind,messages", [
    ("karpenter.sh/v1", "NodePool", ["requirements with operator 'In' must have a value defined",
                                     "requirements with 'minValues' must have at least that many values specified in "
                                     "the 'values' field", 'label domain "karpenter.sh" is restricted',
                                     'label "karpenter.sh/nodepool" is restricted',
                                     'label "kubernetes.io/hostname" is restricted',
                                     "'schedule' must be set with 'duration'", "group may not be empty",
                                     "kind may not be empty", "name may not be empty"]),
])
def test_the_rules_written_out_are_the_pinned_crds_own(api_version, kind, messages):
    """Each CEL rule apiserver.py writes out in Python carries a message the pinned CRD has: a CRD
    bump that changes a rule shows up here."""
    schema = k8s_schema.crd_schemas(crds.files())[(api_version, kind)]
    assert set(messages) <= _rule_messages(schema, set())


def test_validate_names_each_rule_the_engine_could_not_evaluate_once(capsys):
    from peaknight.cli import main as cli
    assert cli.main(["validate", "rehearsal"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "not evaluated" in line]
    assert err and len(err) == len(set(err))
    assert ("warning: NodePool spec.template.spec.requirements[*].key: rule 'self in [\"karpenter.sh/capacity-type\", "
            "\"karpenter.sh/nodepool\"] || !self.find(\"^([^/]+)\").endsWith(\"karpenter.sh\")' not evaluated "
            "(Kubernetes CEL extension find() unknown to cel-python)") in err
