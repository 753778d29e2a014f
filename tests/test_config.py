"""Config parsing: both stacks parse; every kind of bad input gives exit 2 and one exact line per problem."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import nights
from peaknight.cli import main as cli
from peaknight.spec import config
from peaknight.spec.stack import CapacityType, Stage
from conftest import STACKS


def write_variant(tmp_path: Path, edit, base: str = "broadcast", clusters: list[str] | None = None) -> Path:
    """A copy of a real stack with one edit applied to its `config` mapping; cut to `clusters`
    (each planned as in the whole stack, nights.keep_clusters) when a test reads only those."""
    doc = yaml.safe_load((STACKS / f"Pulumi.{base}.yaml").read_text())
    if clusters:
        nights.keep_clusters(doc["config"], clusters)
    edit(doc["config"])
    path = tmp_path / "Pulumi.variant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_render(path: Path, tmp_path: Path, capsys) -> tuple[int, list[str]]:
    code = cli.main(["render", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()


def test_both_stacks_parse_with_stage_policy():
    broadcast = nights.spec("broadcast")
    rehearsal = nights.spec("rehearsal")
    assert broadcast.policy.stage is Stage.BROADCAST
    assert broadcast.policy.capacity_types == (CapacityType.RESERVED, CapacityType.ON_DEMAND)
    assert broadcast.policy.protect and broadcast.policy.survive_zone_loss
    # Rehearsal leaves some policy out: the stage's defaults fill it.
    assert rehearsal.policy.protect is False and rehearsal.policy.scale_to_zero is True
    assert rehearsal.policy.headroom == 1.0
    assert len(broadcast.clusters) >= 4 and len({c.region for c in broadcast.clusters}) >= 3


def test_stack_name_and_path_resolve_to_the_same_file():
    assert config.resolve_stack_path("broadcast") == STACKS / "Pulumi.broadcast.yaml"
    assert config.resolve_stack_path("/tmp/x/Pulumi.mine.yaml") == Path("/tmp/x/Pulumi.mine.yaml")
    assert config.LoadedStack(Path("/tmp/Pulumi.mine.yaml"), None).name == "mine"  # type: ignore[arg-type]


def _set(path: list, value):
    """An edit that sets doc['config'][path...] = value."""
    def edit(cfg):
        target = cfg
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _rename(path: list, old: str, new: str):
    def edit(cfg):
        target = cfg
        for key in path:
            target = target[key]
        target[new] = target.pop(old)
    return edit


def _drop(path: list, key: str):
    def edit(cfg):
        target = cfg
        for k in path:
            target = target[k]
        del target[key]
    return edit


def _unpin(cfg):
    cfg["peaknight:models"][1].pop("weightsRevision")


CASES = {
    "weights not pinned in a broadcast": (
        _unpin,
        ["{f}: peaknight:models[1].weightsRevision: expected the weights' commit (40 hex) in a broadcast stack: "
         "weights are pinned like images; found nothing"]),
    "unknown top-level key": (
        _rename([], "peaknight:models", "peaknight:modles"),
        ["{f}: peaknight:modles: expected a known key; found an unknown key (did you mean 'peaknight:models'?)",
         "{f}: peaknight:models: expected this required key; found nothing"]),
    "misspelt nested key": (
        _rename(["peaknight:models", 1], "peakTokensPerMinute", "peakTokensPerMinue"),
        ["{f}: peaknight:models[1].peakTokensPerMinute: expected this required key; found nothing",
         "{f}: peaknight:models[1].peakTokensPerMinue: expected a known key (admission, auth, burst, engine, image, "
         "inputShare, ladder, maxModelLen, maxReplicasPerCluster, meanContextTokens, modelClass, name, "
         "peakTokensPerMinute, pool, prefixCacheHitRate, tier, topology, weights, weightsFrom, weightsRevision); found an "
         "unknown key (did you mean 'peakTokensPerMinute'?)"]),
    "disaggregated vLLM": (
        _set(["peaknight:models", 1, "topology"], "disaggregated"),
        ["{f}: peaknight:models[1].topology: expected a topology with a dense-8b throughput row on H100-80G (vllm "
         "colocated (1 GPUs tp1 dp1 ep1, KV bf16)); found vllm disaggregated",
         "{f}: peaknight:models[1].topology: expected a topology with a dense-8b throughput row on H200-141G (vllm "
         "colocated (1 GPUs tp1 dp1 ep1, KV bf16)); found vllm disaggregated"]),
    "a model named like another's router": (
        _set(["peaknight:models", 2, "name"], "chat-router"),
        ["{f}: peaknight:models[2].name: expected a name no other model's objects use (model 'chat' is "
         "disaggregated: its workloads and router are named chat-prefill, -decode, -router); found 'chat-router'"]),
    "an engine no row was measured on": (
        _set(["peaknight:models", 2, "engine"], "vllm"),
        ["{f}: peaknight:models[2].topology: expected a topology with a moe-671b throughput row on H100-80G "
         "(sglang disaggregated (prefill 32 GPUs tp32 dp32 ep32, decode 128 GPUs tp128 dp128 ep128, KV bf16); "
         "sglang colocated (16 GPUs tp16 dp1 ep1, KV bf16)); found vllm disaggregated"]),
    "enum value misspelt": (
        _set(["peaknight:models", 1, "engine"], "vlm"),
        ["{f}: peaknight:models[1].engine: expected one of vllm, sglang; found 'vlm' (did you mean 'vllm'?)"]),
    "wrong type": (
        _set(["peaknight:models", 0, "peakTokensPerMinute"], "lots"),
        ["{f}: peaknight:models[0].peakTokensPerMinute: expected a valid number, unable to parse string as a "
         "number; found 'lots'"]),
    "out of range": (
        _set(["peaknight:event", "baseline"], 1.5),
        ["{f}: peaknight:event.baseline: expected less than or equal to 1; found 1.5"]),
    "missing required key": (
        _drop(["peaknight:models", 0], "image"),
        ["{f}: peaknight:models[0].image: expected this required key; found nothing"]),
    "shares do not add up": (
        _set(["peaknight:clusters", 0, "share"], 0.5),
        ["{f}: peaknight:clusters[*].share: expected shares that add up to 1; found 1.48438"]),
    "unknown pool reference": (
        _set(["peaknight:models", 0, "pool"], "h20o"),
        ["{f}: peaknight:models[0].pool: expected the name of a pool in peaknight:gpuPools (h200, hopper, h100); "
         "found 'h20o' (did you mean 'h200'?)"]),
    "tag without digest in broadcast": (
        _set(["peaknight:models", 1, "image"], "vllm/vllm-openai:latest"),
        ["{f}: peaknight:models[1].image: expected an image pinned by digest (…@sha256:<64 hex>) in a broadcast "
         "stack; found 'vllm/vllm-openai:latest'"]),
    "spot in broadcast": (
        _set(["peaknight:policy", "capacityTypes"], ["reserved", "spot", "on-demand"]),
        ["{f}: peaknight:policy.capacityTypes: expected reserved and/or on-demand only in a broadcast stack; "
         "found spot"]),
    "plain-text kubeconfig": (
        _set(["peaknight:kubeconfig-gala-bj-01"], "apiVersion: v1"),
        ["{f}: peaknight:kubeconfig-gala-bj-01: expected a Pulumi secret (pulumi config set --secret "
         "kubeconfig-gala-bj-01 ...); found a plain-text value"]),
    "moment outside the window": (
        _set(["peaknight:event", "moments", 0, "at"], "2026-02-16T18:00:00"),
        ["{f}: peaknight:event.moments[0].at: expected a time inside the window 2026-02-16 19:30:00..2026-02-17 "
         "00:45:00; found 2026-02-16 18:00:00"]),
    "runbook URL that is not a web page": (
        _set(["peaknight:event", "runbookUrl"], "javascript:alert(1)"),
        ["{f}: peaknight:event.runbookUrl: expected an http(s) URL: scheme, host, optional port and path (no query, "
         "spaces or quotes); found 'javascript:alert(1)'"]),
    "unknown time zone": (
        _set(["peaknight:event", "timeZone"], "Asia/Shangai"),
        ["{f}: peaknight:event.timeZone: expected an IANA time zone such as Asia/Shanghai; found 'Asia/Shangai'"]),
    "GPU type misspelt": (
        _set(["peaknight:gpuPools", 0, "gpus"], ["H200"]),
        ["{f}: peaknight:gpuPools[0].gpus[0]: expected one of H100-80G, H200-141G, H20-96G, L20-48G, A800-80G; found "
         "'H200' (did you mean 'H200-141G'?)",
         "{f}: peaknight:gpuPools[0].instanceTypes[0]: expected an instance type with one of the pool's GPUs "
         "(H200); found 'p5e.48xlarge' carries H200-141G",
         "{f}: peaknight:gpuPools[0].instanceTypes[1]: expected an instance type with one of the pool's GPUs "
         "(H200); found 'p5en.48xlarge' carries H200-141G"]),
    "duplicate cluster name": (
        _set(["peaknight:clusters", 1, "name"], "gala-bj-01"),
        ["{f}: peaknight:clusters[0].name: expected a unique name; found 'gala-bj-01' more than once",
         "{f}: peaknight:clusters[1].name: expected a unique name; found 'gala-bj-01' more than once"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_exits_2_with_one_line_per_problem(case, tmp_path, capsys):
    edit, expected = CASES[case]
    path = write_variant(tmp_path, edit)
    code, lines = run_render(path, tmp_path, capsys)
    assert code == 2
    assert lines == [line.format(f=path) for line in expected]
    assert not (tmp_path / "out").exists(), "nothing may be written for bad input"


def test_several_problems_are_reported_together(tmp_path, capsys):
    def edit(cfg):
        cfg["peaknight:models"][0]["engine"] = "tgi"
        cfg["peaknight:event"]["baseline"] = 0
        cfg["peaknight:scale"] = -1
    code, lines = run_render(write_variant(tmp_path, edit), tmp_path, capsys)
    assert code == 2
    assert sorted(line.split(": ")[1] for line in lines) == ["peaknight:event.baseline", "peaknight:models[0].engine",
                                                      "peaknight:scale"]


def test_unreadable_and_malformed_files(tmp_path, capsys):
    missing = tmp_path / "Pulumi.none.yaml"
    assert run_render(missing, tmp_path, capsys) == (2, [f"{missing}: (file): expected a readable stack file; "
                                                         "found no such file"])
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text("config:\n  peaknight:scale: [1\n")
    code, lines = run_render(broken, tmp_path, capsys)
    assert code == 2 and lines[0].startswith(f"{broken}: line 3: expected valid YAML; found ")
    empty = tmp_path / "Pulumi.empty.yaml"
    empty.write_text("config:\n  aws:region: us-east-1\n")
    assert run_render(empty, tmp_path, capsys) == (2, [f"{empty}: config: expected keys under the 'peaknight:' "
                                                       "namespace; found none"])


INJECTION = ("origin-b.live.internal:8080 backup; } server { listen 8080; location /x { return 200 "
             "\"secret=$secure_link_secret\"; } } upstream unused { server 127.0.0.1:9")


@pytest.mark.parametrize("origins,key,expected", [
    (["origin-a:8080", INJECTION], "edges[0].origins[1]",
     "host:port, http://host:port or https://host[:port] (no path, user or query)"),
    (["http://origin-a:443"], "edges[0].origins[0]", "https:// for port 443 (it is the https port), or another port for http"),
    (["https://origin-a:80"], "edges[0].origins[0]", "http:// for port 80 (it is the http port), or another port for https"),
    (["origin-a"], "edges[0].origins[0]", "a port in host:port (or a scheme: http://host, https://host)"),
    (["ftp://origin-a:21"], "edges[0].origins[0]", "scheme http or https, not 'ftp'"),
    (["https://origin-a", "origin-b:8080"], "edges[0].origins", "origins of one scheme (all http or all https)"),
])
def test_origins_are_structured_before_they_reach_nginx(tmp_path, capsys, origins, key, expected):
    """The injection string of issue 13 and every scheme/port combination that cannot be right are
    refused at parse time, one line naming the key."""
    code, lines = run_render(write_variant(tmp_path, _set(["peaknight:edges", 0, "origins"], origins)), tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert f"peaknight:{key}: expected {expected}" in lines[0]


def test_tls_settings_need_https_origins_and_edge_nodes_come_from_the_catalog(tmp_path, capsys):
    def edit(cfg):
        edge = cfg["peaknight:edges"][0]
        edge.update(originCaSecret="origin-ca", nodeInstanceTypes=["c6in.32xlarge", "c6in.32xlarg", "c6in.16xlarge"],
                    podCpu=96)
    code, lines = run_render(write_variant(tmp_path, edit), tmp_path, capsys)
    assert code == 2
    assert [line.split(": ", 1)[1] for line in lines] == [
        "peaknight:edges[0].nodeInstanceTypes[1]: expected an instance type from the profile catalog's "
        "edge_instance_types (c6in.32xlarge, c6in.16xlarge, c7gn.16xlarge); found 'c6in.32xlarg' (did you mean 'c6in.32xlarge'?)",
        "peaknight:edges[0].nodeInstanceTypes[2]: expected a node that holds one edge pod (96 CPUs, 8 GiB); "
        "found 'c6in.16xlarge' has 64 vCPUs, 128 GiB",
        "peaknight:edges[0].originCaSecret: expected https origins for a TLS setting; found http origins"]
