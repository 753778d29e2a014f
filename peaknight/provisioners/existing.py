"""Node groups that already exist (a cluster-autoscaler's groups, or fixed ones): the kit declares
nothing for them and labels, taints and sizes nothing it does not own.

The operator gives each group's pool and size in `clusters[].provisioner.groups`; the nodes must
already carry the kit's pool label and GPU taint (podpolicy), which the operator's node groups set.
`peaknight plan` checks that the groups of each pool can hold the plan (peak nodes plus one surge
replica) and reports the pool short otherwise.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from peaknight.builders.objects import Obj, Scope, Unit
from peaknight.plan.capacity import PoolPlan
from peaknight.provisioners.base import Finding
from peaknight.provisioners.settings import ExistingSettings
from peaknight.provisioners.vke import VolcengineVke
from peaknight.spec.stack import Cluster, GpuPool


class Existing:
    """The provisioner of `clusters[].provisioner.kind: existing`."""

    kind = "existing"
    addon: str | None = None
    crd_kinds: tuple[str, ...] = ()

    def installs_addon(self, cluster: Cluster) -> bool:
        return False

    def addon_values(self, cluster: Cluster) -> dict[str, Any]:
        return {}

    def pool(self, scope: Scope, cluster: Cluster, pool: GpuPool, plan: PoolPlan) -> Unit:
        return Unit("GpuNodePool", pool.name)

    def frozen_findings(self, scope: Scope, objs: Sequence[Obj]) -> Iterable[Finding]:
        """The groups are the operator's: nothing the kit declares can freeze or thaw them."""
        return ()

    def gpus_in_use(self, pool: str) -> str:
        return VolcengineVke().gpus_in_use(pool)

    def problems(self, cluster: Cluster, plan: PoolPlan) -> list[str]:
        """The declared groups of the pool must hold its planned nodes plus one surge replica."""
        settings = cluster.provisioner
        assert isinstance(settings, ExistingSettings)
        groups = [g for g in settings.groups if g.pool == plan.pool]
        have = sum(g.nodes for g in groups)
        need = int(plan.nodes.value) + plan.surge_nodes
        if have >= need:
            return []
        named = " + ".join(f"{g.nodes:,} ({g.name})" for g in groups) or "no group"
        return [f"cluster '{cluster.name}': pool '{plan.pool}' is short: its node groups hold {named} = {have:,} "
                f"nodes, the plan needs {need:,} ({int(plan.nodes.value):,} planned + {plan.surge_nodes} surge)"]
