"""The KV-cache memory bound: how many output tokens/s a group's memory lets it decode at the ITL
objective, whatever its compute could do.

A decoding request holds its whole context in the KV cache; the requests that fit at once are all
that can decode at once, and each gets at most one token per inter-token latency. So a group
decodes at most concurrency / ITL tokens/s. Every step is a Figure, so `plan --explain` shows it.

- Memory the engine may fill: the GPU's memory (as the driver reports it) x the engine's static
  fraction (SGLang --mem-fraction-static, vLLM --gpu-memory-utilization: the value the kit pins).
- Weights per GPU: tensor parallelism splits all weights over the group; data-parallel attention
  keeps the attention weights whole on each of its `dp` ranks (tp/dp GPUs each).
- KV per token per GPU: MLA (DeepSeek) keeps one latent of layers x (kv_lora_rank + rope) per
  token on every GPU of the rank that attends the request (tensor parallelism replicates it, which
  is why SGLang has DP attention); GQA splits K and V heads over up to kv_heads GPUs.
- Tokens per group = dp ranks x (free memory per GPU / KV bytes per token per GPU).
"""
from __future__ import annotations

from peaknight.engines.registry import ENGINES
from peaknight.plan.figure import Figure
from peaknight.spec import profiles
from peaknight.spec.stack import Engine, Model

GIB = 2**30


def weights_gib_per_gpu(cls: profiles.ModelClass, group: profiles.Group) -> Figure:
    """Weights one GPU of `group` holds: all of them over tp, the attention share whole per dp rank."""
    arch = cls.architecture
    r = arch.replicated_params_b / arch.params_b
    value = cls.weights_gib / group.tp * (1 + r * (group.dp - 1))
    if group.dp == 1:
        return Figure(value, f"{cls.weights_gib:g} GiB / tp{group.tp} = {value:,.1f} GiB")
    return Figure(value, f"{cls.weights_gib:g} GiB / tp{group.tp} x (1 + {r:.4f} attention share x (dp{group.dp} - 1)) "
                         f"= {value:,.1f} GiB")


def kv_bytes_per_token(cls: profiles.ModelClass, group: profiles.Group, kv_dtype: str) -> Figure:
    """KV-cache bytes one GPU holds per token of a request its rank attends."""
    arch, size = cls.architecture, profiles.KV_BYTES[kv_dtype]
    if arch.mla_dims:
        mla = float(arch.layers * arch.mla_dims * size)
        return Figure(mla, f"MLA {arch.layers} layers x {arch.mla_dims} x {size} B ({kv_dtype}) = {mla / 1024:,.1f} KiB, "
                             f"on every GPU of the attending rank")
    shards = min(group.tp // group.dp, arch.kv_heads)
    value = 2 * arch.layers * arch.kv_heads * arch.head_dim * size / shards
    return Figure(value, f"K+V 2 x {arch.layers} layers x {arch.kv_heads} heads x {arch.head_dim} x {size} B ({kv_dtype}) "
                         f"/ {shards} GPUs = {value / 1024:,.1f} KiB")


def kv_tokens(row: profiles.Throughput) -> Figure:
    """Tokens the KV cache of one decoding group (a colocated replica) holds."""
    table = profiles.load()
    cls, group = table.model_classes[row.model_class], row.topology.decoding
    memory = table.gpus[row.gpu]
    fraction = ENGINES[Engine(row.topology.engine)].static_memory_fraction
    weights = weights_gib_per_gpu(cls, group)
    free = memory * fraction - weights.value
    per_token = kv_bytes_per_token(cls, group, row.topology.kv_dtype)
    tokens = max(0, int(group.dp * free * GIB // per_token.value))
    return Figure(tokens, f"dp{group.dp} x ({memory:g} GiB x {fraction:g} static - weights {weights.why}) = "
                          f"{free:,.1f} GiB per GPU / {per_token.why} = {tokens:,} tokens")


def context_tokens(model: Model, row: profiles.Throughput) -> Figure:
    """Mean tokens a decoding request holds: the model's meanContextTokens, else the row's mix."""
    if model.mean_context_tokens is not None:
        return Figure(model.mean_context_tokens, f"meanContextTokens {model.mean_context_tokens:,}")
    value = row.input_tokens + row.output_tokens / 2
    return Figure(value, f"the profile's {row.input_tokens:,} input + {row.output_tokens:,} output / 2 = {value:,.0f}")


def decode_bound(model: Model, row: profiles.Throughput, itl_seconds: float) -> Figure:
    """Output tokens/s one decoding group can sustain at the ITL objective: concurrency / ITL."""
    tokens, context = kv_tokens(row), context_tokens(model, row)
    concurrency = int(tokens.value // context.value)
    value = concurrency / itl_seconds
    return Figure(value, f"KV {tokens.why}; / {context.why} tokens per request = {concurrency:,} concurrent; "
                         f"/ ITL {itl_seconds:g} s = {value:,.0f} tok/s")
