"""Node groups that already exist (a cluster-autoscaler's groups, or fixed ones): the kit declares
nothing for them and labels, taints and sizes nothing it does not own.

The operator gives each group's pool and size in `clusters[].provisioner.groups`; the nodes must
already carry the kit's pool label and GPU taint (podpolicy), which the operator's node groups set.
`peaknight plan` checks that the groups of each pool can hold the plan (peak nodes plus one surge
replica) and reports the pool short otherwise.
"""
from __future__ import annotations

from peaknight.builders.objects import Scope, Unit
from peaknight.plan.capacity import PoolPlan
from peaknight.provisioners.base import WithoutController
from peaknight.provisioners.settings import ExistingSettings
from peaknight.spec.stack import Cluster, GpuPool


class Existing(WithoutController):
    """The provisioner of `clusters[].provisioner.kind: existing`."""

    kind = "existing"

    def pool(self, scope: Scope, cluster: Cluster, pool: GpuPool, plan: PoolPlan) -> Unit:
        return Unit("GpuNodePool", pool.name)

    def problems(self, cluster: Cluster, plan: PoolPlan) -> list[str]:
        """The declared groups of the pool must hold its planned nodes plus one surge replica."""
        settings = cluster.provisioner
        if not isinstance(settings, ExistingSettings):
            raise TypeError(f"cluster '{cluster.name}' is not provisioned by existing")
        groups = [g for g in settings.groups if g.pool == plan.pool]
        have = sum(g.nodes for g in groups)
        need = int(plan.nodes.value) + plan.surge_nodes
        if have >= need:
            return []
        named = " + ".join(f"{g.nodes:,} ({g.name})" for g in groups) or "no group"
        return [f"cluster '{cluster.name}': pool '{plan.pool}' is short: its node groups hold {named} = {have:,} "
                f"nodes, the plan needs {need:,} ({int(plan.nodes.value):,} planned + {plan.surge_nodes} surge)"]
