"""Clusters of one shape render the same objects but for their names, so checking one is enough.

The checks that run a real tool over every object of a night (promtool over the alert rules,
the API and CRD schemas) run over one representative cluster per shape (nights.representatives).
That is sound only while every cluster of a shape renders what its representative renders with
the cluster's and zones' names swapped: this test holds the builders to it.
"""
from __future__ import annotations

import json
import re

import pytest

import nights


@pytest.mark.parametrize("name", ["broadcast", "rehearsal", "gala-vke"])
def test_clusters_of_a_shape_render_the_same_objects_up_to_their_names(name: str) -> None:
    for group in nights.shapes(name).values():
        expected = nights.anonymised(group[0])
        for cluster in group[1:]:
            assert nights.anonymised(cluster) == expected, (group[0].cluster.name, cluster.cluster.name)


def test_broadcast_is_three_shapes_one_per_region() -> None:
    """64 clusters, 24 + 24 + 16 in three regions: the checks per shape cover 3 clusters, not 64."""
    groups = nights.shapes("broadcast")
    assert [len(g) for g in groups.values()] == [24, 24, 16]
    assert [g[0].cluster.region for g in groups.values()] == ["us-east-1", "us-west-2", "us-east-2"]


def test_a_cluster_that_differs_is_its_own_shape() -> None:
    """The shape is the whole config but the names: another share or zone count is another shape."""
    import dataclasses

    first = nights.spec("broadcast").clusters[0]
    assert nights.shape(dataclasses.replace(first, name="other", zones=("a", "b", "c"))) == nights.shape(first)
    assert nights.shape(dataclasses.replace(first, share=0.5)) != nights.shape(first)
    assert nights.shape(dataclasses.replace(first, zones=first.zones[:2])) != nights.shape(first)


def test_the_per_shape_broadcast_renders_exactly_the_representatives() -> None:
    """The session's Pulumi program runs the per-shape broadcast: its clusters must be the whole
    stack's representatives to the letter (the same share x scale, so the same plan and objects),
    but for the alerts' explanation, which prints the two factors it multiplied. (The rehearsal's
    shares, 1/4 each, become 1/3, and the float product then rounds one printed request rate the
    other way: this test caught it, so the rehearsal runs whole.)"""
    name = "broadcast"
    whole, cut = nights.spec(name), nights.spec_at(nights.per_shape(name))
    kept = {c.cluster.name: c for c in nights.representatives(name)}
    assert [c.name for c in cut.clusters] == list(kept)
    for cluster in cut.clusters:
        original = next(c for c in whole.clusters if c.name == cluster.name)
        assert cluster.share * cut.scale == pytest.approx(original.share * whole.scale, rel=1e-12)
    factors = re.compile(r"x scale \S+ x share \S+ =")
    for cluster in nights.objects_at(nights.per_shape(name)).clusters:
        expected = [factors.sub("x scale x share =", json.dumps(o.manifest, sort_keys=True))
                    for u in kept[cluster.cluster.name].units for o in u.objects]
        got = [factors.sub("x scale x share =", json.dumps(o.manifest, sort_keys=True))
               for u in cluster.units for o in u.objects]
        assert got == expected, cluster.cluster.name
