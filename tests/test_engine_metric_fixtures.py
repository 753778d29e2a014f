"""The autoscalers' queue and KV-cache queries, run by the real promtool over series shaped exactly
as the pinned engines export them (issue 24, finding 6).

SGLang 0.5.4 (sglang/srt/metrics/collector.py SchedulerMetricsCollector, labels from
sglang/srt/managers/scheduler_metrics_mixin.py init_metrics): every scheduler whose attention-TP
rank is 0 exports sglang:token_usage and sglang:num_queue_reqs labelled model_name, engine_type
("unified"), tp_rank, pp_rank and, with DP attention, dp_rank: one series per DP rank. A group
spanning nodes is scraped at its leader only (its Service), which carries its own node's ranks:
8 of them on an 8-GPU node. vLLM 0.11.0 (vllm/v1/metrics/loggers.py PrometheusStatLogger): one
series per engine, labelled model_name and engine. The ServiceMonitor's scrape adds the target's
namespace, service, pod, container, endpoint, instance and job.

Before the fix the triggers summed every series: 16 ranks of two decode leaders at 11% KV use
read as 1.76 replicas' worth, and a prefill group's triggers read the decode servers' series.
"""
from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import require_tool

import nights

CLUSTER = "gala-bj-01"
NS = "gala-2026-inference"
GPUS_PER_NODE = 8


def sglang_rank_series(metric: str, model: str, workload: str, leader: int, ranks: int, attn_tp: int = 1) -> list[str]:
    """One leader's series of `metric`, one per DP rank on its node, labelled as SGLang labels them."""
    pod = f"{workload}-{leader}"
    target = (f'namespace="{NS}",service="{workload}",pod="{pod}",container="engine",endpoint="http",'
              f'instance="10.0.{leader}.1:8000",job="{workload}"')
    return [f'{metric}{{model_name="{model}",engine_type="unified",tp_rank="{r * attn_tp}",pp_rank="0",'
            f'dp_rank="{r}",{target}}}' for r in range(ranks)]


def vllm_series(metric: str, model: str, pod: str) -> str:
    target = f'namespace="{NS}",service="{model}",pod="{pod}",container="engine",endpoint="http",job="{model}"'
    return f'{metric}{{model_name="{model}",engine="0",{target}}}'


def triggers(workload: str) -> dict[str, dict]:
    objects = nights.objects("broadcast")
    cluster = next(c for c in objects.clusters if c.cluster.name == CLUSTER)
    so = next(o.manifest for u in cluster.units for o in u.objects if o.kind == "ScaledObject" and o.name == workload)
    return {t["name"]: t["metadata"] for t in so["spec"]["triggers"] if t["type"] == "prometheus"}


def evaluate(tmp_path: Path, queries: dict[str, str], series: list[tuple[str, str]], expect: dict[str, float]) -> None:
    """promtool evaluates each query (as a recording rule) over `series` and checks the values."""
    rules = [{"record": name, "expr": expr} for name, expr in queries.items()]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "t", "rules": rules}]}))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series],
                   "promql_expr_test": [{"expr": name, "eval_time": "5m",
                                         "exp_samples": [{"labels": name, "value": value}]}
                                        for name, value in expect.items()]}]}))
    result = subprocess.run([require_tool("promtool"), "test", "rules", "test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def desired(value: float, threshold: str) -> int:
    """The HPA's AverageValue recommendation from one trigger (KEDA feeds its value to the HPA)."""
    return math.ceil(value / float(threshold))


@pytest.mark.parametrize("use, replicas", [(0.125, 1), (0.875, 3)])
def test_decode_kv_use_is_a_servers_mean_over_its_dp_ranks(tmp_path: Path, use: float, replicas: int):
    """Two chat-decode leaders, 8 DP ranks each (16-node groups of 128 ranks). At 12.5% on every
    rank the trigger reads a quarter of a replica and asks for 1 (the sum read 2 replicas' worth
    and asked for 3); at 87.5% it reads 1.75 and asks for 3."""
    kv = triggers("chat-decode")["kv-cache"]
    series = [(s, f"{use}x10") for leader in (0, 1)
              for s in sglang_rank_series("sglang:token_usage", "chat", "chat-decode", leader, GPUS_PER_NODE)]
    plain_sum = 'sum(sglang:token_usage{model_name="chat"})'
    evaluate(tmp_path, {"kv_trigger": kv["query"], "plain_sum": plain_sum}, series,
             {"kv_trigger": 2 * use, "plain_sum": 16 * use})
    assert desired(2 * use, kv["threshold"]) == replicas
    assert desired(16 * use, kv["threshold"]) == 3 if use < 0.5 else 17   # what the sum asked for


def test_the_prefill_group_scales_on_its_own_queue(tmp_path: Path):
    """Prefill leaders with 40 requests waiting on each of their 8 DP ranks, decode servers idle:
    the prefill trigger reads 40 per rank on each of its 2 servers, the decode trigger 0, and the
    prefill group scales against its per-rank target."""
    pre, dec = triggers("chat-prefill"), triggers("chat-decode")
    series = [(s, "40x10") for leader in (0, 1)
              for s in sglang_rank_series("sglang:num_queue_reqs", "chat", "chat-prefill", leader, GPUS_PER_NODE)]
    series += [(s, "0x10") for s in sglang_rank_series("sglang:num_queue_reqs", "chat", "chat-decode", 0, GPUS_PER_NODE)]
    evaluate(tmp_path, {"prefill_queue": pre["queue"]["query"], "decode_queue": dec["queue"]["query"]}, series,
             {"prefill_queue": 80, "decode_queue": 0})
    # chat-prefill: its replica's queue target over its 32 DP ranks; 40 per rank is well above it.
    assert float(pre["queue"]["threshold"]) < 40
    assert desired(80, pre["queue"]["threshold"]) > 2


def test_vllm_servers_one_series_each(tmp_path: Path):
    """greetings (vLLM, one engine per pod): three servers at 50% KV and 4 waiting each. Read by
    any of its picker shards' autoscalers (builders/shards.py): each reads the model's servers."""
    t = triggers("greetings-s0")
    series = [(vllm_series("vllm:kv_cache_usage_perc", "greetings", f"greetings-{i}"), "0.5x10") for i in range(3)]
    series += [(vllm_series("vllm:num_requests_waiting", "greetings", f"greetings-{i}"), "4x10") for i in range(3)]
    evaluate(tmp_path, {"kv": t["kv-cache"]["query"], "queue": t["queue"]["query"]}, series, {"kv": 1.5, "queue": 12})
