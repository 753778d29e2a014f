"""Whether a throughput row's figure holds on the fabric a cluster renders (issue 24: 12).

A figure measured with DeepEP over InfiniBand says nothing of the same groups over EFA, where
DeepEP's internode kernels do not run. So a row applies as published only where nothing of it
crosses nodes, or where it was measured on the fabric the pool's instance types bring; elsewhere
the planner multiplies it by a cited derating (profiles.yaml `fabric_deratings`) and calls it
unproven, and with no derating it stays undiscounted and unproven. Unproven figures need
`policy.allowUnproven` (config refuses them otherwise); with it `plan` prints an UNPROVEN line per
workload, and `plan --explain` and bench/throughput print the fabric and source behind every figure.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable

from peaknight.provisioners.settings import PROVISIONER_CLOUD
from peaknight.spec import profiles
from peaknight.spec.stack import Cluster, GpuPool

MIXED = "mixed"


@dataclass(frozen=True)
class Applied:
    """What the rendered fabric does to a row: factors for its prefill and decode figures, whether a
    source ran it on that fabric, the sentence `--explain` prints (`why`) and, unproven, the short
    one `plan` prints on its UNPROVEN line (`brief`: the fabrics, the row's source, the factors)."""

    prefill: float
    decode: float
    proven: bool
    why: str
    brief: str = ""


def rendered(instance_types: Iterable[str]) -> str:
    """The fabric between nodes of these instance types: theirs when they agree, MIXED when not,
    "" when none is recorded."""
    table = profiles.load().instance_types
    found = {table[t].fabric for t in instance_types}
    return found.pop() if len(found) == 1 else (MIXED if found else "")


def cluster_types(pool: GpuPool, cluster: Cluster) -> list[str]:
    """The pool's instance types a node of `cluster` may be (those its cloud sells in its region)."""
    cloud = PROVISIONER_CLOUD[cluster.provisioner.kind]
    return profiles.offered(pool.instance_types, cloud, cluster.region) if cloud else list(pool.instance_types)


def of(pool: GpuPool, cluster: Cluster) -> str:
    """The fabric between the pool's nodes in `cluster`: what its rows are priced on there."""
    return rendered(cluster_types(pool, cluster))


def crosses_nodes(row: profiles.Throughput, gpus_per_node: int) -> bool:
    """Whether the row's work goes between nodes: a disaggregated row sends the KV cache from prefill
    to decode nodes; a colocated one only when its replica spans nodes."""
    topology = row.topology
    return topology.mode == profiles.DISAGGREGATED or topology.decoding.gpus > gpus_per_node


def derating(measured_on: str, rendered_on: str, moe_a2a: str) -> profiles.FabricDerating | None:
    return next((d for d in profiles.load().fabric_deratings
                 if (d.measured_on, d.rendered_on, d.moe_a2a) == (measured_on, rendered_on, moe_a2a)), None)


def apply(row: profiles.Throughput, fabric: str, gpus_per_node: int) -> Applied:
    """How the row's figures apply on `fabric` (the pool's instance types' in this cluster)."""
    measured = row.fabric or "an unrecorded fabric"
    recipe = f"; recipe: {row.recipe.describe()}" if row.recipe else "; recipe unrecorded"
    if not crosses_nodes(row, gpus_per_node):
        return Applied(1.0, 1.0, True, f"fabric: within one node, none between nodes (source: {row.source}{recipe})")
    if row.fabric and row.fabric == fabric:
        return Applied(1.0, 1.0, True, f"fabric: measured on {fabric}, as rendered (source: {row.source}{recipe})")
    found = derating(row.fabric, fabric, row.recipe.moe_a2a) if row.recipe else None
    head = f"on {fabric or 'an unrecorded fabric'}: measured on {measured} (source: {row.source}"
    if found is None:
        return Applied(1.0, 1.0, False, f"fabric: UNPROVEN {head}{recipe}); no cited derating, undiscounted",
                       f"{head}); no cited derating, undiscounted")
    factors = f"derated prefill x{found.prefill:g}, decode x{found.decode:g}"
    return Applied(found.prefill, found.decode, False, f"fabric: UNPROVEN {head}{recipe}); {factors} ({found.source})",
                   f"{head}); {factors}")


def derated(row: profiles.Throughput, applied: Applied) -> profiles.Throughput:
    """The row with its figures multiplied by the fabric's factors (the same row when proven)."""
    if applied.prefill == applied.decode == 1.0:
        return row
    return dataclasses.replace(row, prefill_tps=row.prefill_tps * applied.prefill,
                               decode_tps=row.decode_tps * applied.decode)
