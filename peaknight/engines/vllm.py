"""vLLM (the stacks pin vllm/vllm-openai v0.11.0): command lines, multi-node wiring, probes, metrics.

Sources, read in the v0.11.0 wheel:
- vllm/entrypoints/openai/api_server.py: the listening socket is bound before the engine loads
  (run_server -> setup_server), but HTTP is served only once `build_async_engine_client` has
  built the engine, so a TCP probe passes too early; `/health` awaits `check_health()`, which only
  raises when the engine is dead (503), so it answers at once; `/ping` is the same handler.
- vllm/executor/ray_utils.py: with `--distributed-executor-backend ray` the leader creates a
  placement group of one bundle per GPU and waits up to PG_WAIT_TIMEOUT = 1800 s for the Ray
  cluster to offer them, so the leader may start serving before its workers have joined.
- Multi-node: vLLM's LeaderWorkerSet deployment docs (docs.vllm.ai, deployment/frameworks/lws)
  and the LWS repo's docs/examples/vllm/GPU/lws.yaml: the leader starts a Ray head, the workers
  join it at $(LWS_LEADER_ADDRESS):6379 and block; the leader runs `vllm serve` with tensor
  parallelism inside a node and pipeline parallelism across nodes (--tensor-parallel-size 8
  --pipeline-parallel-size 2 for two 8-GPU nodes).
"""
from __future__ import annotations

import shlex

from peaknight.engines.base import PORT, EngineMetrics, Role, ServingEngine, Topology, weights_path
from peaknight.spec.stack import Engine, Model

RAY_PORT = 6379


class Vllm(ServingEngine):
    engine = Engine.VLLM
    split_rule = "it spans nodes as one pipeline stage per node, each of the same tensor parallelism"
    # --gpu-memory-utilization: the fraction of GPU memory the engine may use for weights,
    # activations and KV cache (vllm/engine/arg_utils.py); pinned so the memory bound and the pod agree.
    static_memory_fraction = 0.92
    # v0.11 renamed time_per_output_token to inter_token_latency and gpu_cache_usage_perc to
    # kv_cache_usage_perc: current name first. In the v0.11.0 wheel (vllm/v1/metrics/loggers.py)
    # gpu_cache_usage_perc is only emitted with --show-hidden-metrics-for-version=0.10, so the old
    # name is a fallback for older images. The prefix cache counts tokens: prefix_cache_queries
    # (tokens looked up) and prefix_cache_hits (tokens found), exported with the _total suffix
    # prometheus_client gives counters; cache_config_info is an info gauge labelled with the
    # CacheConfig fields (block_size, num_gpu_blocks, ...).
    metrics = EngineMetrics(
        running_metric="vllm:num_requests_running", waiting_metric="vllm:num_requests_waiting",
        generation_tokens_metric="vllm:generation_tokens_total", prompt_tokens_metric="vllm:prompt_tokens_total",
        ttft_histogram="vllm:time_to_first_token_seconds",
        itl_histograms=("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
        kv_cache_gauges=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        prefix_cache_hits="vllm:prefix_cache_hits_total", prefix_cache_queries="vllm:prefix_cache_queries_total",
        cache_config_info="vllm:cache_config_info")

    # vllm/config/model.py (v0.11.0) served_model_name: "If multiple names are provided, the server
    # will respond to any of the provided names"; responses and metrics carry the first.
    serves_aliases = True

    def command(self, model: Model, topology: Topology, role: Role, aliases: tuple[str, ...] = ()) -> list[str]:
        if role is Role.WORKER:
            # A Ray worker: joins the leader's head (retrying while the head starts: LWS starts
            # workers once the leader pod exists, not once it is ready) and blocks.
            return ["sh", "-c", f"until ray start --address=$(LWS_LEADER_ADDRESS):{RAY_PORT} --block; do sleep 5; done"]
        serve = ["vllm", "serve", weights_path(model), "--served-model-name", model.name, *aliases, "--host", "0.0.0.0",
                 "--port", str(PORT), "--tensor-parallel-size", str(topology.gpus_per_pod),
                 "--max-model-len", str(model.max_model_len), "--gpu-memory-utilization", str(self.static_memory_fraction),
                 "--enable-prefix-caching"]
        if not topology.spans_nodes:
            return serve
        serve += ["--pipeline-parallel-size", str(topology.nodes), "--distributed-executor-backend", "ray"]
        return ["sh", "-c", f"ray start --head --port={RAY_PORT} && exec {shlex.join(serve)}"]
