"""Which serving recipe (engines/recipes.py) each planned workload follows, and what an unproven
one costs: the one answer the inference builder, its annotation and `plan` read.

Where a recipe's KV transfer does not do RDMA on the fabric (SGLang 0.5.4 on EFA: NIXL with UCX
only), the KV of every request a prefill node serves crosses to decode over TCP: the plan says how
many Gb/s per prefill node that is, from the planned prefill rate and the model's KV bytes per token.
"""
from __future__ import annotations

import dataclasses

from peaknight.engines import recipes
from peaknight.engines.base import Topology
from peaknight.plan import memory
from peaknight.plan.capacity import CapacityPlan, ModelPlan
from peaknight.plan.figure import Figure
from peaknight.spec import profiles
from peaknight.spec.stack import Model, StackSpec


def match(model: Model, plan: ModelPlan) -> recipes.Match:
    """The recipe workload `plan` follows (config refused the stack if it follows none, or an
    unproven one, without policy.allowUnproven)."""
    return recipes.match(recipes.combination(model.engine.value, model.image, plan.phase,
                                             plan.nodes_per_replica > 1, plan.interconnect, plan.node_fabric))


def topology(model: Model, plan: ModelPlan) -> Topology:
    """The plan's topology with its recipe's transport flags (KV transfer backend, expert
    all-to-all): what the engine's command line renders. The recipe is the one place they are
    decided (data/recipes.yaml); without one, the engine's defaults."""
    transport = match(model, plan).transport
    base = plan.topology
    return dataclasses.replace(base, kv_transfer=transport.get("kv_transfer", base.kv_transfer),
                               moe_a2a=transport.get("moe_a2a", base.moe_a2a))


def kv_over_tcp(model: Model, plan: ModelPlan) -> Figure | None:
    """Gb/s of KV one prefill node sends over TCP: its input tokens/s (the planned replica rate
    over its nodes: every prompt token's KV goes to decode, cached or not) x the model's KV bytes
    per token (all of it: MLA's latent, or K and V of every KV head). None where the KV goes by RDMA."""
    m = match(model, plan)
    if plan.phase != "prefill" or m.recipe is None or not m.recipe.kv_over_tcp or plan.serving is None:
        return None
    cls = profiles.load().model_classes[model.model_class]
    group = plan.serving.prefill
    assert group is not None
    per_gpu = memory.kv_bytes_per_token(cls, group, plan.serving.kv_dtype)
    shards = 1 if cls.architecture.mla_dims else min(group.tp // group.dp, cls.architecture.kv_heads)
    per_node_tps = plan.replica_tps.value / plan.nodes_per_replica
    gbps = per_node_tps * per_gpu.value * shards * 8 / 1e9
    return Figure(gbps, f"{per_node_tps:,.0f} input tok/s per prefill node ({plan.replica_tps.value:,.0f} / "
                        f"{plan.nodes_per_replica} nodes) x {per_gpu.value * shards:,.0f} B of KV per token "
                        f"({per_gpu.why}{f' x {shards} shards' if shards > 1 else ''}) x 8 = {gbps:,.1f} Gb/s over TCP")


def note(model: Model, plan: ModelPlan) -> str:
    """The workload's recipe and its sources, or UNPROVEN, why, and the KV it sends over TCP."""
    m = match(model, plan)
    sources = f"; sources: {' | '.join(m.recipe.sources)}" if m.recipe else ""
    if m.proven:
        assert m.recipe is not None
        return f"{m.recipe.name}{sources}"
    tcp = kv_over_tcp(model, plan)
    return f"UNPROVEN: {m.why_unproven()}{f'; KV {tcp.why}' if tcp else ''}{sources}"


def unproven(spec: StackSpec, plan: CapacityPlan) -> list[str]:
    """One line per unproven workload, once for all clusters where it reads the same: what `plan` prints."""
    lines = [f"{workload}: {text}" for (_, workload), text in notes(spec, plan).items() if text.startswith("UNPROVEN")]
    return list(dict.fromkeys(lines))

def notes(spec: StackSpec, plan: CapacityPlan) -> dict[tuple[str, str], str]:
    """(cluster, workload) -> its recipe note: what `plan --explain` prints under each workload."""
    models = {m.name: m for m in spec.models}
    return {(c.name, p.name): note(models[p.model], p) for c in plan.clusters for p in c.models}
