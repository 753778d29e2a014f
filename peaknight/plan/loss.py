"""Planning for the loss of a whole cluster or region (`policy.surviveLoss`).

Global steering (builders/steering.py) resolves the night's names to the clusters by weight, the
weight being each cluster's share, and drops a cluster whose health check fails. The clusters left
then carry the lost share in proportion to their own: a cluster of share s, after losing a unit
(one cluster, or every cluster of one region) of share L that does not hold it, carries
s / (1 - L). The worst case for a cluster is the largest unit it is not part of, so that is what
it is sized for, at `policy.lossUtilisation` (a loss is an incident: the survivors run hotter than
the plan's target, and no zone is assumed lost at the same time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from peaknight.plan.figure import Figure
from peaknight.spec.stack import Cluster, LossScope, StackSpec

NONE, CLUSTER, REGION = LossScope.NONE, LossScope.CLUSTER, LossScope.REGION


@dataclass(frozen=True)
class Absorb:
    """What one cluster carries after the worst loss the policy asks it to survive."""

    lost: str            # `cluster 'X'` or `region 'Y'`: the unit whose loss is worst for this cluster
    lost_share: float    # its share of the night
    share: Figure        # this cluster's share after the loss


def units(spec: StackSpec) -> dict[str, tuple[Cluster, ...]]:
    """The units the policy may lose, by their name as the plan prints it: each cluster, or each region."""
    found: dict[str, tuple[Cluster, ...]] = {}
    for c in spec.clusters:
        key = f"cluster '{c.name}'" if spec.policy.survive_loss == CLUSTER else f"region '{c.region}'"
        found[key] = (*found.get(key, ()), c)
    return found


def absorb(spec: StackSpec, cluster: Cluster) -> Absorb | None:
    """The share `cluster` must carry after the worst loss it survives; None when the policy asks
    for none, or when no other unit exists to lose (the stack cannot survive it: `unabsorbable`)."""
    if spec.policy.survive_loss == NONE:
        return None
    others = [(sum(c.share for c in members), name) for name, members in units(spec).items()
              if cluster not in members]
    if not others:
        return None
    lost_share, lost = max(others, key=lambda o: (o[0], o[1]))
    if lost_share >= 1:
        return None
    share = cluster.share / (1 - lost_share)
    return Absorb(lost, lost_share, Figure(share, f"after losing {lost} (share {lost_share:g}): share "
                                                  f"{cluster.share:g} / (1 - {lost_share:g}) = {share:.4g}"))


def unabsorbable(spec: StackSpec) -> Iterable[str]:
    """Why the stack cannot survive the loss it asks for at all: one unit holds every cluster."""
    if spec.policy.survive_loss != NONE and len(units(spec)) < 2:
        only = next(iter(units(spec)))
        yield (f"policy.surviveLoss {spec.policy.survive_loss.value}: the stack's clusters are all in {only}; "
               f"losing it leaves none to absorb its share (add a {spec.policy.survive_loss.value})")
