"""One side of `peaknight diff`: a stack's render, capacity plan and simulated night as plain data.

Always the installed kit's code on a stack file (and the calibration file beside it): a side is
what this kit would deploy from that file, never what another checkout's code would (diff.py says
why: the repository holding a stack is not trusted to supply code).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from peaknight.builders import event, shards
from peaknight.plan import cost, picker
from peaknight.plan.capacity import CapacityPlan
from peaknight.sim import simulator
from peaknight.spec import config


def snapshot(stack: Path) -> dict[str, Any]:
    """The objects per cluster, cloud resources, plan figures per workload and simulated night of
    the stack file at `stack`; ConfigError or EnvelopeError as the CLI would raise them."""
    spec = config.load_stack(str(stack)).spec
    objects = event.build(spec)
    models: dict[str, dict[str, Any]] = {}
    costs = cost.PlanCost(spec, objects.plan)
    for cluster in objects.plan.clusters:
        for m in cluster.models:
            # Per workload (a disaggregated model's prefill and decode groups each), as `plan` and
            # `simulate` report them.
            row = models.setdefault(m.name, {"replicas": 0, "floor": 0, "gpus": 0, "nodes": 0, "capacity_tpm": 0.0,
                                             "forecast_tpm": 0.0, "cost_usd": 0.0, "moments": {}})
            part = costs.of(m)
            row["cost_usd"] = None if part is None or row["cost_usd"] is None else row["cost_usd"] + part
            for key, fig in (("replicas", m.replicas), ("floor", m.floor_replicas), ("gpus", m.gpus), ("nodes", m.nodes)):
                row[key] += int(fig.value)
            row["capacity_tpm"] += m.capacity_tps.value * 60
            row["forecast_tpm"] += m.demand_tps.value * 60
            for name, fig in m.moment_replicas:
                row["moments"][name] = row["moments"].get(name, 0) + int(fig.value)
    return {
        "objects": {c.cluster.name: {o.key: o.manifest for u in c.units for o in u.objects} for c in objects.clusters},
        "cloud": {c.cluster.name: {r.key: {"type": r.type, "name": r.name, "protect": r.protect,
                                           "properties": r.properties} for u in c.units for r in u.cloud}
                  for c in objects.clusters},
        "plan": {"models": models, "short": [f"{p.cluster}/{p.name}" for p in objects.plan.short],
                 "gpu_limit": sum(int(p.gpu_limit.value) for c in objects.plan.clusters for p in c.pools),
                 "cost_usd": costs.night(),
                 # What a rolling update of each workload takes in each cluster, per the plan (at peak).
                 "rollouts": _rollouts(spec, objects.plan)},
        "simulation": {r.model: {"demand_tokens": r.demand_tokens, "unmet_pct": r.unmet_pct,
                                 "unmet_tokens": r.unmet_tokens, "gpu_hours": r.gpu_hours,
                                 "oracle_gpu_hours": r.oracle_gpu_hours,
                                 "policy_oracle_gpu_hours": r.policy_oracle_gpu_hours, "cost_usd": r.cost_usd,
                                 "oracle_cost_usd": r.oracle_cost_usd, "policy_oracle_cost_usd": r.policy_oracle_cost_usd}
                       for r in simulator.simulate(spec, objects)},
    }


def _rollouts(spec: config.StackSpec, plan: CapacityPlan) -> dict[str, dict[str, dict[str, Any]]]:
    """What a rolling update of each workload takes in each cluster, per the plan (at peak), by the
    name of the Deployment that rolls: a colocated model split into picker shards (plan/picker.py)
    rolls each shard with its share of the replicas and of the surge (builders/shards.py spreads
    both alike), in the model's time."""
    models = {m.name: m for m in spec.models}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in plan.clusters:
        rows = out.setdefault(c.name, {})
        for m in c.models:
            model = models[m.model]
            n = shards.count(spec.policy, model, m)
            replicas, surge = int(m.replicas.value), int(m.surge.value)
            for i, name in enumerate([m.name] if n == 1 else shards.names(model, n)):
                rows[name] = {"replicas": picker.shard_pods(replicas, n, i),
                              "surge": surge if n == 1 else shards.surge(surge, n, i),
                              "rollout_s": m.rollout.value}
    return out
