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
    """Every provisioner's warnings about its clusters, one line each; a line that only the
    cluster's name tells apart (`cluster '<name>': ...`) is printed once for all its clusters."""
    groups: dict[str, list[str]] = {}
    for cluster in spec.clusters:
        for line in for_cluster(cluster).warnings(spec, cluster):
            prefix = f"cluster '{cluster.name}': "
            rest = line[len(prefix):] if line.startswith(prefix) else None
            groups.setdefault(line if rest is None else rest, []).append(cluster.name if rest is not None else "")
    lines = []
    for rest, names in groups.items():
        if names == [""] or not all(names):
            lines.append(rest)
        elif len(names) == 1:
            lines.append(f"cluster '{names[0]}': {rest}")
        else:
            which = ", ".join(names) if len(names) <= 3 else f"{names[0]}, ... ({len(names)} clusters)"
            lines.append(f"clusters {which}: {rest}")
    return lines
