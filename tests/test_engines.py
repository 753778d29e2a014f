"""Engines behind one protocol: every engine x topology renders the engine's real flags, every
combination an engine cannot serve is a config error, and probes fit each engine's endpoints.

Flags and endpoint behaviour were read in the wheels the stacks pin (`pip download --no-deps
vllm==0.11.0 sglang==0.5.4`); the file and function are cited beside each assertion.
"""
from __future__ import annotations

import dataclasses
import http.server
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from peaknight.engines.base import PORT, Role, Topology
from peaknight.engines.registry import ENGINES, engine_for
from peaknight.engines.sglang import HEALTH_CHECK_TIMEOUT_SECONDS
from peaknight.spec import config, profiles
from peaknight.spec.stack import Engine, Model
from conftest import require_tool
from test_config import run_render, write_variant

SINGLE = Topology(gpus_per_replica=8, gpus_per_node=8)
SHARED_NODE = Topology(gpus_per_replica=1, gpus_per_node=8)
TWO_NODES = Topology(gpus_per_replica=16, gpus_per_node=8)
UNEVEN = Topology(gpus_per_replica=20, gpus_per_node=8)  # 3 nodes, 6 + 6 + 6 != 20
LWS_ENV = {"LWS_LEADER_ADDRESS": "chat-0.chat.ns", "LWS_WORKER_INDEX": "1", "LWS_GROUP_SIZE": "2"}


def model(engine: Engine) -> Model:
    return Model(name="chat", model_class="moe-671b", engine=engine, image="img", weights="deepseek-ai/DeepSeek-V3",
                 pool="h100", peak_tokens_per_minute=1e9, input_share=0.7, max_model_len=32768)


def flags(cmd: list[str]) -> dict[str, str]:
    """--flag value pairs of an argv (a flag followed by another flag maps to '')."""
    out = {}
    for i, arg in enumerate(cmd):
        if arg.startswith("--"):
            nxt = cmd[i + 1] if i + 1 < len(cmd) else ""
            out[arg] = "" if nxt.startswith("--") else nxt
    return out


def kube_expand(text: str) -> str:
    """Kubernetes' $(VAR) expansion of container commands, with the variables LWS injects."""
    return re.sub(r"\$\(([A-Z_]+)\)", lambda m: LWS_ENV.get(m.group(1), m.group(0)), text)


def test_the_registry_has_one_engine_per_spec_engine():
    assert set(ENGINES) == set(Engine)
    assert all(e.engine is key for key, e in ENGINES.items())


@pytest.mark.parametrize("topology", [SINGLE, SHARED_NODE])
def test_vllm_on_one_node_is_one_vllm_serve_with_tensor_parallelism(topology):
    cmd = ENGINES[Engine.VLLM].command(model(Engine.VLLM), topology, Role.LEADER)
    assert cmd[:3] == ["vllm", "serve", "/models/deepseek-ai/DeepSeek-V3/unpinned"]
    f = flags(cmd)
    assert f["--tensor-parallel-size"] == str(topology.gpus_per_replica) and f["--port"] == str(PORT)
    assert f["--max-model-len"] == "32768" and f["--served-model-name"] == "chat"
    assert "--pipeline-parallel-size" not in f and "--distributed-executor-backend" not in f


def _stub_bin(tmp_path: Path, names: list[str]) -> Path:
    """Executables that append their argv (one JSON-ish line) to calls.log, so a real sh runs the
    rendered command and we read what it would have executed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in names:
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >> "{tmp_path}/calls.log"\n')
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_vllm_across_nodes_is_ray_head_then_pipeline_stages_and_ray_workers(tmp_path):
    """vLLM's LWS docs / LWS docs/examples/vllm/GPU/lws.yaml: the leader starts a Ray head and
    serves with --tensor-parallel-size <GPUs per node> --pipeline-parallel-size <nodes>; each
    worker joins with `ray start --address=<leader>:6379 --block`. Run by a real sh against stubs."""
    vllm = ENGINES[Engine.VLLM]
    leader = vllm.command(model(Engine.VLLM), TWO_NODES, Role.LEADER)
    worker = vllm.command(model(Engine.VLLM), TWO_NODES, Role.WORKER)
    assert leader[:2] == worker[:2] == ["sh", "-c"]
    sh = require_tool("sh")
    env = {"PATH": f"{_stub_bin(tmp_path, ['ray', 'vllm'])}:/usr/bin:/bin"}
    subprocess.run([sh, "-c", kube_expand(leader[2])], env=env, check=True, timeout=10)
    subprocess.run([sh, "-c", kube_expand(worker[2])], env=env, check=True, timeout=10)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0] == "ray start --head --port=6379"
    serve = calls[1].split()
    assert serve[:3] == ["vllm", "serve", "/models/deepseek-ai/DeepSeek-V3/unpinned"]
    f = flags(serve)
    assert f["--tensor-parallel-size"] == "8" and f["--pipeline-parallel-size"] == "2"
    assert f["--distributed-executor-backend"] == "ray"
    assert calls[2] == "ray start --address=chat-0.chat.ns:6379 --block"


@pytest.mark.parametrize("topology", [SINGLE, SHARED_NODE])
def test_sglang_on_one_node_has_no_multi_node_flags(topology):
    f = flags(ENGINES[Engine.SGLANG].command(model(Engine.SGLANG), topology, Role.LEADER))
    assert f["--tp"] == str(topology.gpus_per_replica) and f["--context-length"] == "32768"
    assert "--enable-metrics" in f and not {"--dist-init-addr", "--nnodes", "--node-rank"} & set(f)


def test_sglang_across_nodes_is_tensor_parallel_over_every_gpu_of_the_group():
    """server_args.py: --tp is the whole group's; --dist-init-addr, --nnodes, --node-rank wire the
    ranks (LWS docs/examples/sglang/lws.yaml); leader and workers run the same command."""
    sglang = ENGINES[Engine.SGLANG]
    leader = sglang.command(model(Engine.SGLANG), TWO_NODES, Role.LEADER)
    assert sglang.command(model(Engine.SGLANG), TWO_NODES, Role.WORKER) == leader
    f = flags([kube_expand(a) for a in leader])
    assert f["--tp"] == "16" and f["--nnodes"] == "2" and f["--node-rank"] == "1"
    assert f["--dist-init-addr"] == "chat-0.chat.ns:20000"
    # A worker's dummy health server listens where the leader's API does (engine.py, node_rank >= 1).
    assert f["--port"] == str(PORT) and f["--host"] == "0.0.0.0"


@pytest.mark.parametrize("engine", list(Engine))
def test_an_uneven_split_is_unservable_by_every_engine(engine):
    assert ENGINES[engine].cannot_serve(UNEVEN)
    assert not any(ENGINES[engine].cannot_serve(t) for t in (SINGLE, SHARED_NODE, TWO_NODES))


def _with_vllm_rows(monkeypatch, gpus: int) -> None:
    """A profile in which moe-671b on H100 was also measured colocated on vLLM, `gpus` GPUs per replica."""
    table = profiles.load()
    row = table.throughput[profiles.row_key("moe-671b", "H100-80G", "sglang", "colocated")]
    rows = {}
    for engine in ("sglang", "vllm"):
        topology = dataclasses.replace(row.topology, engine=engine, serve=profiles.Group(gpus, gpus, 1, 1))
        rows[profiles.row_key("moe-671b", "H100-80G", engine, "colocated")] = dataclasses.replace(row, topology=topology)
    monkeypatch.setattr(profiles, "load", lambda: dataclasses.replace(table, throughput={**table.throughput, **rows}))


@pytest.fixture
def twenty_gpu_h100_replicas(monkeypatch):
    """moe-671b on H100 colocated needs 20 GPUs: three 8-GPU nodes that cannot split it."""
    _with_vllm_rows(monkeypatch, 20)


@pytest.mark.parametrize("engine, reason", [
    ("vllm", "vllm: it spans nodes as one pipeline stage per node, each of the same tensor parallelism, and "
             "20 GPUs do not split evenly over 3 nodes"),
    ("sglang", "sglang: its --tp must divide by --nnodes (server_args.check_server_args), and "
               "20 GPUs do not split evenly over 3 nodes"),
])
def test_an_unservable_topology_is_a_config_error(engine, reason, tmp_path, capsys, twenty_gpu_h100_replicas):
    # models[2] is deep-think on the h100 pool.
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:models"][2].update(engine=engine, topology="colocated"))
    code, lines = run_render(path, tmp_path, capsys)
    assert code == 2
    assert lines == [f"{path}: peaknight:models[2].engine: expected an engine that can serve 20 GPUs over 3 "
                     f"8-GPU nodes; found {reason}"]


def test_a_two_node_vllm_model_is_accepted_and_gets_ray_wiring(tmp_path, monkeypatch):
    _with_vllm_rows(monkeypatch, 16)
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:models"][2].update(engine="vllm", topology="colocated"))
    spec = config.load_stack(str(path)).spec
    deep = next(m for m in spec.models if m.name == "deep-think")
    cmd = engine_for(deep).command(deep, TWO_NODES, Role.LEADER)
    assert "--pipeline-parallel-size 2" in cmd[2] and "--tensor-parallel-size 8" in cmd[2]


@pytest.mark.parametrize("weights", ["$(LWS_LEADER_ADDRESS)", "a; rm -rf /", "../../etc", "/abs/path", "a b"])
def test_weights_that_would_reach_a_shell_or_leave_the_mount_are_config_errors(weights, tmp_path, capsys):
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:models"][0].update(weights=weights))
    code, lines = run_render(path, tmp_path, capsys)
    assert code == 2
    assert lines == [f"{path}: peaknight:models[0].weights: expected a model id (org/name) or a relative path "
                     f"under the weights volume: letters, digits, '.', '_', '-' and '/', no '..'; found {weights!r}"]


def test_every_flag_the_kit_passes_exists_in_the_pinned_engine():
    """The flags each engine's argparser defines at the pinned version (vllm 0.11.0
    engine/arg_utils.py + entrypoints/openai/cli_args.py; sglang 0.5.4 srt/server_args.py)."""
    known = {
        Engine.VLLM: {"--served-model-name", "--host", "--port", "--tensor-parallel-size", "--max-model-len",
                      "--gpu-memory-utilization", "--enable-prefix-caching", "--pipeline-parallel-size",
                      "--distributed-executor-backend"},
        # prefill/decode disaggregation, DP attention, EP and the KV dtype: server_args.py 0.5.4
        # `--kv-cache-dtype`, `--dp-size`, `--enable-dp-attention`, `--ep` (alias of --expert-parallel-size),
        # `--moe-a2a-backend`, `--disaggregation-*`, `--load-balance-method`, `--prefill-round-robin-balance`.
        Engine.SGLANG: {"--model-path", "--served-model-name", "--host", "--port", "--tp", "--context-length",
                        "--mem-fraction-static", "--enable-metrics", "--dist-init-addr", "--nnodes", "--node-rank",
                        "--kv-cache-dtype", "--dp-size", "--enable-dp-attention", "--ep", "--moe-a2a-backend",
                        "--disaggregation-mode", "--disaggregation-transfer-backend", "--disaggregation-bootstrap-port",
                        "--disaggregation-decode-tp", "--disaggregation-decode-dp", "--load-balance-method",
                        "--prefill-round-robin-balance"},
    }
    row = profiles.load().throughput[profiles.row_key("moe-671b", "H200-141G", "sglang", "disaggregated")]
    disaggregated = [Topology(g.gpus, 8, phase, row.topology, "nixl")
                     for phase, g in (("prefill", row.topology.prefill), ("decode", row.topology.decode))]
    for engine, e in ENGINES.items():
        for topology in (SINGLE, TWO_NODES, *(disaggregated if engine is Engine.SGLANG else ())):
            cmd = e.command(model(engine), topology, Role.LEADER)
            argv = shlex.split(cmd[2].split("&& exec ")[1]) if cmd[0] == "sh" else cmd
            assert set(flags(argv)) <= known[engine], (engine, set(flags(argv)) - known[engine])


def test_sglang_health_probes_outwait_the_engines_own_verdict():
    """http_server.py health_generate: 503 while Starting, then sleep(1) and poll up to
    SGLANG_HEALTH_CHECK_TIMEOUT (20 s) for output. The kubelet's 1 s default never sees a 200."""
    sglang = ENGINES[Engine.SGLANG]
    assert {"name": "SGLANG_HEALTH_CHECK_TIMEOUT", "value": str(HEALTH_CHECK_TIMEOUT_SECONDS)} in sglang.env()
    probes = sglang.probes(SINGLE, Role.LEADER, 960)
    for probe in (probes.startup, probes.readiness, probes.liveness):
        assert probe is not None and probe.path == "/health"
        assert probe.timeout_seconds > HEALTH_CHECK_TIMEOUT_SECONDS + 1
    assert probes.startup.period_seconds * probes.startup.failure_threshold >= 960
    # Workers (node_rank >= 1) answer /health from a dummy server at once.
    worker = sglang.probes(TWO_NODES, Role.WORKER, 960)
    assert worker.startup is not None and worker.startup.path == "/health" and worker.readiness is None


def test_vllm_probes_ask_health_not_a_tcp_port():
    """api_server.py: the socket is bound before the engine loads (a TCP probe passes early);
    /health answers once the engine serves, 503 when it is dead. Ray workers serve no HTTP."""
    vllm = ENGINES[Engine.VLLM]
    probes = vllm.probes(SINGLE, Role.LEADER, 600)
    assert {p.path for p in (probes.startup, probes.readiness, probes.liveness) if p} == {"/health"}
    assert all(p.timeout_seconds > 1 for p in (probes.startup, probes.readiness, probes.liveness) if p)
    assert vllm.probes(TWO_NODES, Role.WORKER, 600).manifest() == {}
    assert not vllm.serves_http(Role.WORKER) and ENGINES[Engine.SGLANG].serves_http(Role.WORKER)


class _Metrics(http.server.BaseHTTPRequestHandler):
    bodies: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = (self.bodies.pop(0) if len(self.bodies) > 1 else self.bodies[0]).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.realtool
@pytest.mark.parametrize("engine", list(Engine))
def test_a_worker_drains_until_its_leader_is_idle(engine):
    """The worker's preStop polls the leader's /metrics (LWS_LEADER_ADDRESS) and returns once running +
    waiting is zero: run for real against a stub leader that is busy twice, then idle."""
    m = ENGINES[engine].metrics
    busy = f'{m.running_metric}{{model_name="chat"}} 3\n{m.waiting_metric}{{model_name="chat"}} 1\n'
    idle = f'{m.running_metric}{{model_name="chat"}} 0\n{m.waiting_metric}{{model_name="chat"}} 0\n'
    _Metrics.bodies = [busy, busy, idle]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = http.server.HTTPServer(("127.0.0.1", port), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cmd = ENGINES[engine].drain_command(Role.WORKER, 60)
        script = cmd[2].replace(f":{PORT}/metrics", f":{port}/metrics")  # the stub's port, not 8000
        done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "LWS_LEADER_ADDRESS": "127.0.0.1"},
                              timeout=30)
        assert done.returncode == 0 and _Metrics.bodies == [idle]
    finally:
        server.shutdown()
