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
"""
from __future__ import annotations

from peaknight.engines.base import (PORT, EngineMetrics, Probe, Probes, Role, ServingEngine, Topology,
                                    startup_failures, weights_path)
from peaknight.spec.stack import Engine, Model

DIST_INIT_PORT = 20000
HEALTH_CHECK_TIMEOUT_SECONDS = 20  # pinned in the pod's env (SGLANG_HEALTH_CHECK_TIMEOUT)
# A probe on /health waits longer than the engine's own verdict, so the engine's 200/503 decides,
# not the kubelet's timeout.
HEALTH_PROBE_TIMEOUT_SECONDS = HEALTH_CHECK_TIMEOUT_SECONDS + 5
# A worker's dummy /health answers at once.
WORKER_HEALTH_TIMEOUT_SECONDS = 5


class Sglang(ServingEngine):
    engine = Engine.SGLANG
    split_rule = "its --tp must divide by --nnodes (server_args.check_server_args)"
    # With --enable-metrics SGLang exports under the sglang: prefix.
    metrics = EngineMetrics(
        running_metric="sglang:num_running_reqs", waiting_metric="sglang:num_queue_reqs",
        generation_tokens_metric="sglang:generation_tokens_total", prompt_tokens_metric="sglang:prompt_tokens_total",
        ttft_histogram="sglang:time_to_first_token_seconds",
        itl_histograms=("sglang:inter_token_latency_seconds",),
        kv_cache_gauges=("sglang:token_usage",))

    def command(self, model: Model, topology: Topology, role: Role, aliases: tuple[str, ...] = ()) -> list[str]:
        # Workers take --host/--port too: that is where their dummy health server listens.
        cmd = ["python3", "-m", "sglang.launch_server", "--model-path", weights_path(model),
               "--served-model-name", model.name, "--host", "0.0.0.0", "--port", str(PORT),
               "--tp", str(topology.gpus_per_replica), "--context-length", str(model.max_model_len),
               "--mem-fraction-static", "0.88", "--enable-metrics"]
        if topology.spans_nodes:
            cmd += ["--dist-init-addr", f"$(LWS_LEADER_ADDRESS):{DIST_INIT_PORT}", "--nnodes", str(topology.nodes),
                    "--node-rank", "$(LWS_WORKER_INDEX)"]
        return cmd

    def env(self) -> list[dict[str, str]]:
        return [{"name": "SGLANG_HEALTH_CHECK_TIMEOUT", "value": str(HEALTH_CHECK_TIMEOUT_SECONDS)}]

    def serves_http(self, role: Role) -> bool:
        return True

    def probes(self, topology: Topology, role: Role, startup_budget_seconds: int) -> Probes:
        failures = startup_failures(startup_budget_seconds)
        if role is Role.WORKER:
            return Probes(startup=Probe("/health", 10, WORKER_HEALTH_TIMEOUT_SECONDS, failures),
                          liveness=Probe("/health", 15, WORKER_HEALTH_TIMEOUT_SECONDS, 8))
        return Probes(
            startup=Probe("/health", 10, HEALTH_PROBE_TIMEOUT_SECONDS, failures),
            readiness=Probe("/health", 10, HEALTH_PROBE_TIMEOUT_SECONDS, 3),
            # Six verdicts of "no output for 20 s" in a row (3 min): the scheduler is stuck.
            liveness=Probe("/health", 30, HEALTH_PROBE_TIMEOUT_SECONDS, 6))
