"""Which provisioner module serves each `clusters[].provisioner.kind`."""
from __future__ import annotations

from peaknight.provisioners.base import Provisioner
from peaknight.provisioners.existing import Existing
from peaknight.provisioners.karpenter import KarpenterAws
from peaknight.provisioners.vke import VolcengineVke
from peaknight.spec.stack import Cluster, StackSpec

REGISTRY: dict[str, Provisioner] = {p.kind: p for p in (KarpenterAws(), VolcengineVke(), Existing())}


def for_cluster(cluster: Cluster) -> Provisioner:
    """The provisioner a cluster's config chose."""
    return REGISTRY[cluster.provisioner.kind]


def warnings(spec: StackSpec) -> list[str]:
    """Every provisioner's warnings about its clusters, one line each."""
    return [line for cluster in spec.clusters for line in for_cluster(cluster).warnings(spec, cluster)]
