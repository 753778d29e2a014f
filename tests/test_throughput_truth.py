"""Throughput truth (issue 15): profile rows say what they were measured on, the planner bounds
decode by KV-cache memory, and a disaggregated model renders the prefill/decode groups and the
router its figures were measured with. Every figure below is worked by hand in the test."""
from __future__ import annotations

import dataclasses
import math

import pytest

import nights
from peaknight.builders import event
from peaknight.cli import main as cli
from peaknight.engines.base import Topology
from peaknight.engines.sglang import Sglang
from peaknight.plan import capacity, memory
from peaknight.spec import profiles
from peaknight.spec.stack import ServingMode

GIB = 2**30


@pytest.fixture(scope="module")
def broadcast():
    return nights.spec("broadcast")


def _model(spec, name, **changes):
    return dataclasses.replace(next(m for m in spec.models if m.name == name), **changes)


def test_every_row_records_its_topology_and_is_keyed_by_the_one_function():
    rows = profiles.load().throughput
    for key, row in rows.items():
        assert key == profiles.row_key(row.model_class, row.gpu, row.topology.engine, row.topology.mode)
        assert row.topology.kv_dtype in profiles.KV_BYTES
        assert row.input_tokens > 0 and row.output_tokens > 0 and 0 <= row.prefix_cache_hit_rate < 1
        assert row.itl_seconds > 0
        groups = [row.topology.serve] if row.topology.mode == profiles.COLOCATED else [row.topology.prefill,
                                                                                       row.topology.decode]
        assert all(g is not None and g.tp * 1 == g.gpus and g.gpus % g.dp == 0 for g in groups)


def test_memory_bound_deepseek_class_on_h200_colocated_tp8_by_hand(broadcast):
    """The issue's worked example: 8 x H200 TP8, 3 k-token conversations, 50 ms ITL."""
    chat = _model(broadcast, "chat", topology=ServingMode.COLOCATED, mean_context_tokens=3000)
    row = capacity.profile_row(chat, "H200-141G")
    # 140.4 GiB (nvidia-smi 143,771 MiB) x 0.88 (--mem-fraction-static) - 642 GiB / 8 = 43.302 GiB per GPU.
    free = 140.4 * 0.88 - 642 / 8
    assert free == pytest.approx(43.302)
    # MLA: 61 layers x (512 + 64) x 2 bytes = 70,272 B = 68.6 KiB per token, on every one of the 8 ranks.
    tokens = int(free * GIB // (61 * 576 * 2))
    assert tokens == 661_645
    bound = memory.decode_bound(chat, row, 0.05)
    assert bound.value == (tokens // 3000) / 0.05 == 4_400     # 220 concurrent at one token per 50 ms
    # The issue's ~35 GiB (141 GB less the weights, as it counted) gives ~3.8 k; either way about a
    # fifth of the 21,170 the disaggregated profile assumes.
    assert 0.15 < bound.value / 21_170 < 0.25
    assert "661,645 tokens" in bound.why and "220 concurrent" in bound.why


def test_memory_bound_deepseek_class_on_h100_colocated_tp16_by_hand(broadcast):
    deep = _model(broadcast, "deep-think", topology=ServingMode.COLOCATED)
    row = capacity.profile_row(deep, "H100-80G")
    free = 79.6 * 0.88 - 642 / 16                  # 29.923 GiB per GPU after its 1/16 of the weights
    tokens = int(free * GIB // (61 * 576 * 2))     # replicated on all 16 tp ranks
    context = 4384 + 1211 / 2                       # the profile row's mix: 4,989.5 tokens per request
    assert memory.decode_bound(deep, row, 0.05).value == (tokens // context) / 0.05
    assert (tokens, tokens // context) == (457_217, 91)


def test_memory_bound_dense_70b_on_h100_tp2_by_hand(broadcast):
    model = _model(broadcast, "greetings", model_class="dense-70b")
    row = capacity.profile_row(model, "H100-80G")
    free = 79.6 * 0.92 - 68 / 2                     # vLLM --gpu-memory-utilization 0.92: 39.232 GiB per GPU
    per_gpu = 2 * 80 * 8 * 128 * 2 / 2              # K and V, 80 layers x 8 heads x 128, bf16, over 2 ranks
    tokens = int(free * GIB // per_gpu)
    context = 5000 + 500 / 2
    value = (tokens // context) / 0.05
    assert memory.decode_bound(model, row, 0.05).value == value == 960   # 257,117 tokens: 48 concurrent
    decode = capacity.decode_tps(model, row, 0.05)
    assert decode.value == value < row.decode_tps and "bound by KV-cache memory" in decode.why


def test_dp_attention_keeps_one_copy_of_the_kv_cache_per_rank(broadcast):
    chat = _model(broadcast, "chat")               # disaggregated: decode groups of 128 H200, dp 128
    row = capacity.profile_row(chat, "H200-141G")
    weights = 642 / 128 * (1 + 12.3 / 671 * 127)   # the attention share whole on each of the 128 ranks
    free = 140.4 * 0.88 - weights
    tokens = int(128 * free * GIB // (61 * 576 * 2))
    assert memory.kv_tokens(row).value == tokens
    decode = capacity.decode_tps(chat, row, 0.05)   # far above the profile: the profile's figure stands
    assert decode.value == 338_720 and "the profile's" in decode.why


def test_a_colocated_tp8_deepseek_replica_is_not_planned_at_the_disaggregated_figure(broadcast, tmp_path):
    colocated = dataclasses.replace(broadcast, models=tuple(
        dataclasses.replace(m, topology=ServingMode.COLOCATED) if m.name == "chat" else m for m in broadcast.models))
    pools = {p.name: p for p in broadcast.gpu_pools}
    coloc = capacity._plan_cluster(colocated, colocated.clusters[0], pools).model("chat")
    disagg = capacity._plan_cluster(broadcast, broadcast.clusters[0], pools)
    # Decode bound by memory: 661,645 tokens / 4,989.5 = 132 concurrent / 0.05 s = 2,640 tok/s.
    # Prefill 32,200 computed tok/s per node, credited for the model's 0.5 hit rate: 64,400.
    assert coloc.replica_tps.value == pytest.approx(1 / (0.75 / 64_400 + 0.25 / 2_640))
    assert "bound by KV-cache memory" in coloc.replica_tps.why
    # Output tok/s per GPU: about 294 colocated (one node: no fabric between nodes, nothing derated)
    # against 338,720 x 0.2 (EFA, issue 24: 12) / 128 = 529 in the decode groups.
    per_gpu_coloc = coloc.replica_tps.value * 0.25 / 8
    per_gpu_disagg = disagg.model("chat-decode").replica_tps.value * 0.25 / 128
    assert per_gpu_disagg == pytest.approx(338_720 * 0.2 / 128)
    assert per_gpu_coloc < 0.6 * per_gpu_disagg
    assert "fabric: within one node" in coloc.replica_tps.why
    # ceil(16,484,375 x 1.05 / (9,404 x 0.85)) = 2,166 replicas, 3,249 so that 2,166 survive a zone: far
    # more than the 16,484,375 x 0.25 x 1.05 / 0.85 / 529 x 1.5 (a zone lost) = 14,428 GPUs the decode groups' per-GPU
    # output would ask. (It is now below the disaggregated groups' 33,376 GPUs: those are planned at
    # the achievable hit rate 0.5 / 9 / 32 and derated on EFA, while the colocated pool keeps the stack's
    # 0.5 within its pool, plan/prefix_hits.py.)
    assert coloc.replica_tps.value == pytest.approx(9_404, abs=1)
    assert math.ceil(16_484_375 * 1.05 / (coloc.replica_tps.value * 0.85)) == 2_166
    assert coloc.replicas.value == 3_249 and 3_249 - math.ceil(3_249 / 3) == 2_166
    assert coloc.gpus.value == 3_249 * 8 > 16_484_375 * 0.25 * 1.05 / 0.85 / per_gpu_disagg * 1.5


def test_disaggregated_groups_are_sized_separately_by_hand(broadcast):
    c = capacity.plan(broadcast).cluster("gala-bj-01")
    prefill, decode = c.model("chat-prefill"), c.model("chat-decode")
    demand = 63.3e9 / 60 / 64                                   # 16,484,375 tok/s
    # Prefill: 4 nodes x 73.7 k counting 56.3% hits, measured on InfiniBand with DeepEP; on EFA
    # derated x0.303 (issue 24: 12); only misses cost compute, at the rate the routing delivers:
    # the model's 0.5 x 1/9 router pods x 1/32 prefill DP ranks (issue 24: 5).
    group_in = 294_800 * 0.303 * (1 - 0.563) / (1 - 0.5 / 9 / 32)
    assert prefill.replica_tps.value == pytest.approx(group_in / 0.75)        # of the model's mix: 52,137
    serving = math.ceil(demand * 1.05 / (group_in / 0.75 * 0.85))            # 391
    assert (serving, prefill.replicas.value) == (391, 587)                    # 587 - ceil(587/3) = 391
    # Decode: 16 nodes x 21,170 output tok/s, x0.2 on EFA, the output share 0.25 of the mix.
    serving = math.ceil(demand * 1.05 / (338_720 * 0.2 / 0.25 * 0.85))       # 76
    assert (serving, decode.replicas.value) == (76, 114)                      # 114 - 38 = 76
    assert (prefill.gpus.value, prefill.nodes.value) == (587 * 32, 587 * 4)
    assert (decode.gpus.value, decode.nodes.value) == (114 * 128, 114 * 16)
    assert c.model_rates()["chat"] == (demand, min(prefill.capacity_tps.value, decode.capacity_tps.value))


def test_the_prefix_cache_credit_rescales_the_measured_hit_rate(broadcast):
    row = capacity.profile_row(_model(broadcast, "chat"), "H200-141G")
    for rate, expected in ((0.0, 294_800 * 0.437), (0.563, 294_800), (0.7, 294_800 * 0.437 / 0.3)):
        assert capacity.prefill_tps(_model(broadcast, "chat", prefix_cache_hit_rate=rate), row).value == \
            pytest.approx(expected)


def test_explain_says_which_bound_applied(capsys):
    assert cli.main(["plan", "broadcast", "--explain"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    decode = lines[lines.index("gala-bj-01 +63/chat-decode:") + 1]
    assert "67,744: the profile's; the KV-cache memory bound allows" in decode
    greetings = lines[lines.index("gala-bj-01 +63/greetings:") + 1]
    assert "bound by KV-cache memory, below the profile's" in greetings
    assert "gala-bj-01 +63  chat-prefill" in out and "gala-bj-01 +63  chat-decode" in out


def test_sglang_refuses_prefill_and_decode_tp_that_do_not_divide():
    # DeepSeek's own units (4 prefill nodes EP32, 18 decode nodes EP144): 144 % 32 != 0, which
    # sglang 0.5.4's server_args.validate_disagg_tp_size asserts against.
    serving = profiles.ServingTopology("sglang", "disaggregated", "bf16", prefill=profiles.Group(32, 32, 32, 32),
                                       decode=profiles.Group(144, 144, 144, 144))
    assert "32 and 144 are not" in Sglang().cannot_serve(Topology(144, 8, "decode", serving))


@pytest.fixture(scope="module")
def bj01(broadcast):
    objs = event.build(broadcast)
    cluster = objs.clusters[0]
    return {(o.kind, o.name): o.manifest for u in cluster.units for o in u.objects}, objs.plan.cluster("gala-bj-01")


def _command(lws, template="leaderTemplate"):
    return lws["spec"]["leaderWorkerTemplate"][template]["spec"]["containers"][0]["command"]


def test_prefill_and_decode_groups_render_the_rows_topology(bj01):
    objs, plan = bj01
    prefill, decode = objs[("LeaderWorkerSet", "chat-prefill")], objs[("LeaderWorkerSet", "chat-decode")]
    assert prefill["spec"]["leaderWorkerTemplate"]["size"] == 4 and decode["spec"]["leaderWorkerTemplate"]["size"] == 16
    p, d = _command(prefill), _command(decode, "workerTemplate")
    # sglang 0.5.4 server_args.py: --tp/--dp-size/--enable-dp-attention/--ep/--moe-a2a-backend (none on
    # EFA: DeepEP's internode kernels need IBGDA, deepseek-ai/DeepEP#369), and
    # _handle_disaggregation: a prefill server told the decode tp/dp, round-robin with decode dp > 1.
    for flags in (["--tp", "32"], ["--dp-size", "32"], ["--enable-dp-attention"], ["--ep", "32"], ["--moe-a2a-backend", "none"],
                  ["--disaggregation-mode", "prefill"], ["--disaggregation-transfer-backend", "nixl"],
                  ["--disaggregation-bootstrap-port", "8998"], ["--disaggregation-decode-tp", "128"],
                  ["--disaggregation-decode-dp", "128"], ["--load-balance-method", "round_robin"],
                  ["--kv-cache-dtype", "bf16"], ["--nnodes", "4"]):
        assert any(p[i:i + len(flags)] == flags for i in range(len(p))), flags
    for flags in (["--tp", "128"], ["--dp-size", "128"], ["--disaggregation-mode", "decode"], ["--prefill-round-robin-balance"],
                  ["--node-rank", "$(LWS_WORKER_INDEX)"], ["--nnodes", "16"]):
        assert any(d[i:i + len(flags)] == flags for i in range(len(d))), flags
    assert "--disaggregation-decode-tp" not in d   # server_args asserts the decode server is not told it
    leader = prefill["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    assert leader["metadata"]["annotations"] == {"sglang.ai/bootstrap-port": "8998"}
    assert {"name": "bootstrap", "containerPort": 8998, "protocol": "TCP"} in leader["spec"]["containers"][0]["ports"]
    # KV transfer over EFA: every pod of both groups asks for the node's EFA devices.
    for lws in (prefill, decode):
        for t in ("leaderTemplate", "workerTemplate"):
            assert lws["spec"]["leaderWorkerTemplate"][t]["spec"]["containers"][0]["resources"]["limits"][
                "vpc.amazonaws.com/efa"] == "16"
    assert prefill["spec"]["replicas"] == int(plan.model("chat-prefill").floor_replicas.value)


def test_the_router_fronts_a_disaggregated_model(bj01):
    objs, plan = bj01
    router = objs[("Deployment", "chat-router")]
    cmd = router["spec"]["template"]["spec"]["containers"][0]["command"]
    # sglang-router 0.2.1 / 0.3.2 router_args.py: PD mode, cache-aware, Kubernetes discovery by selectors.
    assert cmd[:3] == ["python3", "-m", "sglang_router.launch_router"]
    i = cmd.index("--prefill-selector")
    assert cmd[i + 1:cmd.index("--decode-selector")] == [
        "app.kubernetes.io/name=chat", "peaknight.io/event=gala-2026", "peaknight.io/phase=prefill",
        "leaderworkerset.sigs.k8s.io/worker-index=0"]
    for flag in ("--pd-disaggregation", "--service-discovery"):
        assert flag in cmd
    assert cmd[cmd.index("--policy") + 1] == "cache_aware"
    assert router["spec"]["replicas"] == int(plan.model("chat-decode").router_pods.value) >= 3
    service = objs[("Service", "chat")]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "chat-router", "peaknight.io/event": "gala-2026"}
    route = objs[("HTTPRoute", "chat")]
    assert {r["backendRefs"][0]["name"] for r in route["spec"]["rules"]} == {"chat"}
    role = objs[("Role", "chat-router")]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert objs[("RoleBinding", "chat-router")]["subjects"][0]["name"] == "chat-router"


def test_network_policies_let_the_router_in_and_the_kv_cache_across(bj01):
    objs, _ = bj01
    serving = objs[("NetworkPolicy", "chat-serving")]["spec"]
    assert serving["ingress"][0]["from"][0] == {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "chat-router", "peaknight.io/event": "gala-2026"}}}
    group = objs[("NetworkPolicy", "chat-group")]["spec"]
    model_pods = {"matchLabels": {"app.kubernetes.io/name": "chat", "peaknight.io/event": "gala-2026"}}
    assert group["podSelector"] == model_pods      # both phases: KV bootstrap and transfer both ways
    assert group["ingress"] == [{"from": [{"podSelector": model_pods}]}]
    assert group["egress"] == [{"to": [{"podSelector": model_pods}]}]
    router = objs[("NetworkPolicy", "chat-router")]["spec"]
    assert router["egress"][0] == {"to": [{"podSelector": model_pods}], "ports": [{"protocol": "TCP", "port": 8000}]}
    assert "gateway.envoyproxy.io/owning-gateway-name" in router["ingress"][0]["from"][0]["podSelector"]["matchLabels"]


def test_each_group_scales_on_the_decode_servers_token_rate_against_its_own_capacity(bj01):
    objs, plan = bj01
    for phase in ("prefill", "decode"):
        so = objs[("ScaledObject", f"chat-{phase}")]["spec"]
        assert so["scaleTargetRef"] == {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                                        "name": f"chat-{phase}"}
        trigger = so["triggers"][0]["metadata"]
        assert 'service="chat-decode"' in trigger["query"]
        assert trigger["threshold"] == str(math.floor(plan.model(f"chat-{phase}").replica_tps.value * 0.85))
        assert so["maxReplicaCount"] == int(plan.model(f"chat-{phase}").max_replicas.value)
    assert ("PodDisruptionBudget", "chat-prefill") in objs and ("PodDisruptionBudget", "chat-decode") in objs


def test_without_efa_the_kv_cache_goes_over_mooncake_and_experts_over_deepep():
    """gala-vke's H20 nodes list no interconnect: SGLang's defaults, as Ant Group's deployment ran."""
    objects = nights.objects("gala-vke")
    objs = {(o.kind, o.name): o.manifest for u in objects.clusters[0].units for o in u.objects}
    decode = _command(objs[("LeaderWorkerSet", "chat-decode")])
    i = decode.index("--moe-a2a-backend")
    assert decode[i + 1] == "deepep" and decode[decode.index("--disaggregation-transfer-backend") + 1] == "mooncake"
    assert decode[decode.index("--kv-cache-dtype") + 1] == "fp8_e4m3"      # the row was measured with an FP8 KV cache
    prefill = objs[("Deployment", "chat-prefill")]                          # one H20 node: TP8, no DP attention
    cmd = prefill["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--tp") + 1] == "8" and "--enable-dp-attention" not in cmd
    assert cmd[cmd.index("--disaggregation-decode-dp") + 1] == "16"
