"""Which changes `pulumi up` makes by replacing an object (pulumi-kubernetes' forceNew table, the
Kubernetes API's immutable fields) and which roll a workload's pods."""
from __future__ import annotations

import pytest

from peaknight.review import diff, replace


def _change(old: dict, new: dict) -> list[str]:
    return list(diff.changes(old, new))


def _obj(api: str, kind: str, spec: dict, **top: object) -> dict:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "x"}, "spec": spec, **top}


@pytest.mark.parametrize("api, kind, old, new, fields", [
    ("apps/v1", "Deployment", {"selector": {"matchLabels": {"app": "a"}}}, {"selector": {"matchLabels": {"app": "b"}}},
     ["spec.selector"]),
    ("apps/v1", "StatefulSet", {"volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {"a": 1}}]},
     {"volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {"a": 2}}]}, ["spec.volumeClaimTemplates"]),
    ("v1", "Service", {"clusterIP": "None"}, {"clusterIP": "10.0.0.1"}, ["spec.clusterIP"]),
    ("batch/v1", "Job", {"template": {"spec": {"containers": [{"name": "c", "image": "a"}]}}},
     {"template": {"spec": {"containers": [{"name": "c", "image": "b"}]}}}, ["spec.template"]),
    ("v1", "PersistentVolumeClaim", {"storageClassName": "fsx"}, {"storageClassName": "efs"}, ["spec"]),
    ("v1", "Service", {"ports": [{"name": "http", "port": 80}]}, {"ports": [{"name": "http", "port": 8080}]}, []),
    ("apps/v1", "Deployment", {"replicas": 1}, {"replicas": 2}, []),
])
def test_the_fields_pulumi_will_not_patch(api: str, kind: str, old: dict, new: dict, fields: list[str]) -> None:
    before, after = _obj(api, kind, old), _obj(api, kind, new)
    assert replace.forcing(after, _change(before, after)) == fields


def test_a_configmaps_data_is_replaced() -> None:
    before = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "a"}}
    after = {**before, "data": {"k": "b"}}
    assert replace.forcing(after, _change(before, after)) == ["data"]


@pytest.mark.parametrize("api, kind, template", [("apps/v1", "Deployment", "template"),
                                                 ("apps/v1", "StatefulSet", "template"),
                                                 ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "leaderWorkerTemplate")])
def test_a_pod_template_change_rolls_and_a_replica_change_does_not(api: str, kind: str, template: str) -> None:
    base = _obj(api, kind, {template: {"spec": {"containers": [{"name": "engine", "image": "a"}]}}, "replicas": 1})
    image = _obj(api, kind, {template: {"spec": {"containers": [{"name": "engine", "image": "b"}]}}, "replicas": 1})
    scaled = _obj(api, kind, {**base["spec"], "replicas": 2})
    assert replace.rolls(image, _change(base, image)) and replace.forcing(image, _change(base, image)) == []
    assert not replace.rolls(scaled, _change(base, scaled))


def test_a_replaced_workload_does_not_roll() -> None:
    before = _obj("apps/v1", "Deployment", {"selector": {"matchLabels": {"app": "a"}},
                                            "template": {"metadata": {"labels": {"app": "a"}}}})
    after = _obj("apps/v1", "Deployment", {"selector": {"matchLabels": {"app": "b"}},
                                           "template": {"metadata": {"labels": {"app": "b"}}}})
    lines = _change(before, after)
    assert replace.forcing(after, lines) == ["spec.selector"] and not replace.rolls(after, lines)
