"""SGLang (the stacks pin lmsysorg/sglang v0.5.4): command lines, multi-node wiring, probes, metrics.

Sources, read in the sglang 0.5.4 wheel:
- sglang/srt/entrypoints/http_server.py: `/health` and `/health_generate` are one handler. It
  answers 503 while the server is Starting (until the warm-up generate has run), then submits a
  one-token generate, sleeps 1 s and polls once a second for up to HEALTH_CHECK_TIMEOUT =
  $SGLANG_HEALTH_CHECK_TIMEOUT (default 20) seconds for any detokenizer output: 200 when some
  arrives, else 503 and the server is marked UnHealthy. So it never answers within the kubelet's
  1 s default timeout, and may take 20 s. `/v1/models` and `/get_model_info` answer at once but
  also while Starting, so they cannot tell ready from loading.
- sglang/srt/entrypoints/engine.py + utils/common.py: a node with --node-rank >= 1 serves no API;
  once its schedulers are ready it starts a dummy server on --host/--port whose /health answers
  200 at once (and /metrics with --enable-metrics).
- sglang/srt/server_args.py: --tp, --dist-init-addr, --nnodes, --node-rank; check_server_args
  asserts (tp_size * pp_size) % nnodes == 0.
- Multi-node: the LWS repo's docs/examples/sglang/lws.yaml: leader and workers run the same
  command with --dist-init-addr $(LWS_LEADER_ADDRESS):20000 --nnodes --node-rank $(LWS_WORKER_INDEX).
- Prefill/decode disaggregation, DP attention, expert parallelism (sglang/srt/server_args.py):
  `--disaggregation-mode prefill|decode`, `--disaggregation-transfer-backend` (mooncake, nixl,
  ascend, fake; default mooncake), `--disaggregation-bootstrap-port` (default 8998, the prefill
  server's bootstrap server), `--disaggregation-decode-tp/-dp` (prefill only: `_handle_disaggregation`
  asserts the decode server is not given them), `validate_disagg_tp_size` (one tp a multiple of
  the other), with decode dp > 1 `--prefill-round-robin-balance` on decode and
  `--load-balance-method round_robin` on prefill (or decode refuses to start); `--dp-size` with
  `--enable-dp-attention` (attention per rank, so the MLA KV cache is not replicated over tp);
  `--ep` and `--moe-a2a-backend` (choices none, deepep, mooncake; deepep sets ep = tp; the
  serving recipe says which (data/recipes.yaml): DeepEP needs IBGDA, which EFA lacks, DeepEP#369); `--kv-cache-dtype` (auto, fp8_e5m2,
  fp8_e4m3, bf16); `--mem-fraction-static`: the fraction for weights and the KV-cache pool.
  sglang/srt/disaggregation/common/conn.py: a multi-node prefill group registers with the
  bootstrap server at its --dist-init-addr host; the KV transfer side channels are ZMQ sockets on
  free ports (the model's pods talk to each other on any port: builders/network.py).
- The router: sglang-router (wheels 0.2.1 and 0.3.2, sglang_router/router_args.py):
  `python3 -m sglang_router.launch_router --pd-disaggregation --policy cache_aware
  --service-discovery --service-discovery-namespace NS --service-discovery-port PORT
  --prefill-selector k=v ... --decode-selector k=v ...`; its README: prefill pods give their
  bootstrap port in the `sglang.ai/bootstrap-port` annotation and the router needs get/list/watch
  on pods; `/liveness` and `/readiness` are its health endpoints. The router runs from the model's
  image (lmsysorg/sglang ships sglang-router; check with `python3 -m sglang_router.launch_router
  --help` in the image you pin).
- llm-d's SGLang wide-EP deployment (llm-d/llm-d guides/wide-ep-lws/modelserver/gpu/sglang/
  disaggregatedset/disaggregatedset.yaml @103017a6): prefill and decode as separate
  LeaderWorkerSets, `--disaggregation-transfer-backend nixl`, `--disaggregation-bootstrap-port
  8998`, `--dist-init-addr ${LWS_LEADER_ADDRESS}:20000`.
"""
from __future__ import annotations

from peaknight.engines import recipes
from peaknight.engines.base import PORT, EngineMetrics, Role, ServingEngine, Topology, weights_path
from peaknight.spec.stack import Engine, Model

DIST_INIT_PORT = 20000
# The prefill server's bootstrap server (server_args.py default 8998), pinned: the decode servers
# reach it at the address the router hands them, and the router learns it from the prefill pods'
# `sglang.ai/bootstrap-port` annotation.
BOOTSTRAP_PORT = 8998
BOOTSTRAP_ANNOTATION = "sglang.ai/bootstrap-port"
# profiles.yaml kv_dtype -> --kv-cache-dtype (server_args.py choices: auto, fp8_e5m2, fp8_e4m3, bf16, bfloat16).
KV_CACHE_DTYPE = {"bf16": "bf16", "fp8": "fp8_e4m3"}
# Pinned in the pod's env by the recipe (SGLANG_HEALTH_CHECK_TIMEOUT); its probes wait longer.
HEALTH_CHECK_TIMEOUT_SECONDS = int(recipes.engine_recipe("sglang").env["SGLANG_HEALTH_CHECK_TIMEOUT"])


class Sglang(ServingEngine):
    engine = Engine.SGLANG
    split_rule = "its --tp must divide by --nnodes (server_args.check_server_args)"
    # --mem-fraction-static: the fraction of GPU memory for weights and the KV-cache pool
    # (server_args.py); pinned so the memory bound and the pod agree.
    static_memory_fraction = 0.88
    # With --enable-metrics SGLang exports under the sglang: prefix (sglang/srt/metrics/collector.py
    # in the 0.5.4 wheel). Prefix cache: the tokenizer manager counts, per finished request, its
    # prompt tokens (prompt_tokens_total) and the cached ones (cached_tokens_total, incremented only
    # when a request had a hit, so the series is absent until the first one); the scheduler's
    # sglang:cache_hit_rate gauge is the last prefill batch's rate, not a rate over time. 0.5.4
    # exports no cache_config_info.
    metrics = EngineMetrics(
        running_metric="sglang:num_running_reqs", waiting_metric="sglang:num_queue_reqs",
        generation_tokens_metric="sglang:generation_tokens_total", prompt_tokens_metric="sglang:prompt_tokens_total",
        ttft_histogram="sglang:time_to_first_token_seconds",
        itl_histograms=("sglang:inter_token_latency_seconds",),
        kv_cache_gauges=("sglang:token_usage",),
        prefix_cache_hits="sglang:cached_tokens_total", prefix_cache_queries="sglang:prompt_tokens_total")

    def command(self, model: Model, topology: Topology, role: Role, aliases: tuple[str, ...] = ()) -> list[str]:
        # Workers take --host/--port too: that is where their dummy health server listens.
        group = topology.group
        tp = group.tp if group else topology.gpus_per_replica
        cmd = ["python3", "-m", "sglang.launch_server", "--model-path", weights_path(model),
               "--served-model-name", model.name, "--host", "0.0.0.0", "--port", str(PORT),
               "--tp", str(tp), "--context-length", str(model.max_model_len),
               "--mem-fraction-static", str(self.static_memory_fraction), "--enable-metrics"]
        if topology.serving is not None:
            cmd += ["--kv-cache-dtype", KV_CACHE_DTYPE[topology.serving.kv_dtype]]
        if group and group.dp > 1:
            cmd += ["--dp-size", str(group.dp), "--enable-dp-attention"]
        if group and group.ep > 1:
            cmd += ["--ep", str(group.ep), "--moe-a2a-backend", topology.moe_a2a]
        if topology.phase:
            cmd += self._disaggregation(topology)
        if topology.spans_nodes:
            cmd += ["--dist-init-addr", f"$(LWS_LEADER_ADDRESS):{DIST_INIT_PORT}", "--nnodes", str(topology.nodes),
                    "--node-rank", "$(LWS_WORKER_INDEX)"]
        return cmd

    @staticmethod
    def _disaggregation(topology: Topology) -> list[str]:
        """The prefill or decode server's flags (server_args.py `_handle_disaggregation`): a prefill
        server is told the decode groups' tp and dp when they differ from its own; with DP attention
        on decode, prefill balances round robin and decode is told so, or decode refuses to start."""
        serving = topology.serving
        assert serving is not None and serving.prefill and serving.decode
        cmd = ["--disaggregation-mode", topology.phase, "--disaggregation-transfer-backend", topology.kv_transfer]
        prefill, decode = serving.prefill, serving.decode
        if topology.phase == "prefill":
            cmd += ["--disaggregation-bootstrap-port", str(BOOTSTRAP_PORT)]
            if (decode.tp, decode.dp) != (prefill.tp, prefill.dp):
                cmd += ["--disaggregation-decode-tp", str(decode.tp), "--disaggregation-decode-dp", str(decode.dp)]
            if decode.dp > 1:
                cmd += ["--load-balance-method", "round_robin"]
        elif decode.dp > 1:
            cmd += ["--prefill-round-robin-balance"]
        return cmd

    def cannot_serve(self, topology: Topology) -> str:
        serving = topology.serving
        if serving and serving.prefill and serving.decode:
            small, large = sorted((serving.prefill.tp, serving.decode.tp))
            if large % small:
                return (f"its prefill and decode tp must be multiples of one another "
                        f"(server_args.validate_disagg_tp_size), and {serving.prefill.tp} and {serving.decode.tp} are not")
        return super().cannot_serve(topology)

    def metric_ranks(self, topology: Topology) -> int:
        """With DP attention every DP rank runs its own scheduler with its own waiting queue and KV
        pool, and each exports sglang:num_queue_reqs and sglang:token_usage labelled with its
        tp_rank, pp_rank and dp_rank (managers/scheduler_metrics_mixin.py init_metrics;
        scheduler.py current_scheduler_metrics_enabled: attn_tp_rank 0 of each); without it, one."""
        group = topology.group
        return group.dp if group and group.dp > 1 else 1

    def serves_http(self, role: Role) -> bool:
        return True
