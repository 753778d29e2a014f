"""Model-server engines: how vLLM and SGLang are started, probed and measured.

The inference builder, the autoscaler's Prometheus trigger, the drain hook and the alert rules
all need the engine's port, health path and metric names; they read them from here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from peaknight.builders.objects import literal_arg
from peaknight.spec.stack import Engine, Model

PORT = 8000
MODEL_DIR = "/models"
# The OpenAI-compatible paths clients call, served by both engines: the only paths the gateway
# routes. /metrics, /health and the engines' admin endpoints (SGLang's /flush_cache,
# /update_weights_from_disk, ...; vLLM's LoRA loading) stay inside the cluster.
SERVING_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/models")


@dataclass(frozen=True)
class EngineInfo:
    health_path: str
    ready_path: str
    running_metric: str      # requests being decoded now
    waiting_metric: str      # requests queued for a slot: the autoscaler's load signal
    generation_tokens_metric: str  # counter of output tokens
    prompt_tokens_metric: str      # counter of input tokens
    ttft_histogram: str            # time to first token, seconds
    itl_histograms: tuple[str, ...]  # inter-token latency, seconds: current name first, then older ones
    kv_cache_gauges: tuple[str, ...]  # KV-cache use as a 0-1 fraction: current name first


ENGINES = {
    # vLLM serves /health and the OpenAI /v1/models; metrics under the vllm: prefix.
    Engine.VLLM: EngineInfo("/health", "/v1/models", "vllm:num_requests_running", "vllm:num_requests_waiting",
                            "vllm:generation_tokens_total", "vllm:prompt_tokens_total",
                            ttft_histogram="vllm:time_to_first_token_seconds",
                            # v0.11 renamed time_per_output_token to inter_token_latency (both still emitted).
                            itl_histograms=("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
                            kv_cache_gauges=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")),
    # SGLang serves /health and /v1/models; with --enable-metrics its metrics use the sglang: prefix.
    Engine.SGLANG: EngineInfo("/health", "/v1/models", "sglang:num_running_reqs", "sglang:num_queue_reqs",
                              "sglang:generation_tokens_total", "sglang:prompt_tokens_total",
                              ttft_histogram="sglang:time_to_first_token_seconds",
                              itl_histograms=("sglang:inter_token_latency_seconds",),
                              kv_cache_gauges=("sglang:token_usage",)),
}


def info(model: Model) -> EngineInfo:
    return ENGINES[model.engine]


def token_counters() -> tuple[str, ...]:
    """Every engine's input and output token counters: what prometheus-adapter discovers the
    autoscalers' single tokens/s metric by, whichever engines the stack's models run."""
    return tuple(sorted({name for e in ENGINES.values() for name in (e.prompt_tokens_metric, e.generation_tokens_metric)}))


def command(model: Model, gpus_per_pod: int, nodes_per_replica: int) -> list[str]:
    """The engine's command line, every value derived from the spec and the plan.

    Tensor parallelism equals the GPUs of one replica; a replica spanning nodes (a LeaderWorkerSet
    group) joins its ranks through the leader address LWS injects.
    """
    weights = literal_arg(f"{MODEL_DIR}/{model.weights}")
    name = literal_arg(model.name)
    tp = gpus_per_pod * nodes_per_replica
    if model.engine is Engine.VLLM:
        return ["vllm", "serve", weights, "--served-model-name", name, "--host", "0.0.0.0",
                "--port", str(PORT), "--tensor-parallel-size", str(tp), "--max-model-len", str(model.max_model_len),
                "--gpu-memory-utilization", "0.92", "--enable-prefix-caching"]
    cmd = ["python3", "-m", "sglang.launch_server", "--model-path", weights, "--served-model-name", name,
           "--host", "0.0.0.0", "--port", str(PORT), "--tp", str(tp), "--context-length", str(model.max_model_len),
           "--mem-fraction-static", "0.88", "--enable-metrics"]
    if nodes_per_replica > 1:
        cmd += ["--dist-init-addr", "$(LWS_LEADER_ADDRESS):20000", "--nnodes", "$(LWS_GROUP_SIZE)",
                "--node-rank", "$(LWS_WORKER_INDEX)"]
    return cmd


def drain_script(model: Model, budget_seconds: int) -> str:
    """preStop: wait until running + waiting requests reach zero, at most `budget_seconds`.

    Python is in both engines' images (curl is not in every one), so the hook is a short script.
    """
    e = info(model)
    return (
        "import re,time,urllib.request\n"
        f"deadline=time.time()+{budget_seconds}\n"
        "while time.time()<deadline:\n"
        "    try:\n"
        f"        text=urllib.request.urlopen('http://127.0.0.1:{PORT}/metrics',timeout=5).read().decode()\n"
        "    except Exception:\n"
        "        break\n"
        f"    busy=sum(float(v) for v in re.findall(r'^(?:{re.escape(e.running_metric)}|{re.escape(e.waiting_metric)})"
        r"(?:\{[^}]*\})? ([0-9.eE+-]+)$',text,re.M))" "\n"
        "    if busy==0:\n"
        "        break\n"
        "    time.sleep(2)\n"
    )
