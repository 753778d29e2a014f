"""Which provisioner module serves each `clusters[].provisioner.kind`."""
from __future__ import annotations

from peaknight.provisioners.base import Provisioner
from peaknight.provisioners.karpenter import KarpenterAws
from peaknight.spec.stack import Cluster

REGISTRY: dict[str, Provisioner] = {p.kind: p for p in (KarpenterAws(),)}


def for_cluster(cluster: Cluster) -> Provisioner:
    """The provisioner a cluster's config chose."""
    return REGISTRY[cluster.provisioner.kind]
