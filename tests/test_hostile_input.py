"""Hostile and broken stack files: every one is refused with exit 2 and one line per problem that
names the key, for every command, before anything is built or written (issue 13's reproducers)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import nights
from peaknight.cli import main as cli
from peaknight.edges import nginx as edge_nginx
from peaknight.plan import capacity
from peaknight.spec import origins as origin_grammar
from peaknight.spec.origins import Origin
from peaknight.spec import config, profiles
from conftest import STACKS, require_tool
from edge_harness import NginxServer, workdir
from test_config import _set, run_render, write_variant
from test_diff import repo  # noqa: F401  (fixture)

# Tests that run the CLI as its own process under a timeout, so that a regression hangs (or eats the
# memory of) that process rather than the suite: a second interpreter each, the real-tool tier.
CLI_PROCESS = pytest.mark.realtool


# The origin that, written unescaped into nginx.conf, served the signed-URL secret and every stream.
INJECTION = ('origin-b.live.internal:8080 backup; } server { listen 8080; location /x { include '
             '/etc/nginx/secret/secure-link.conf; return 200 "secret=$secure_link_secret\\n"; } } upstream '
             'unused { server 127.0.0.1:9; server 127.0.0.1:9')
ORIGIN = "host:port, http://host:port or https://host[:port] (no path, user or query)"
IMAGE = "an image reference ([registry/]repository[:tag][@sha256:<digest>])"
RENDER_DIR = ("a relative directory inside the project: letters, digits, '.', '_', '-' and '/', no leading '/' and no "
              "segment starting with '.'")

# (edit, key, expected) : the one line each variant must give, after "<file>: peaknight:<key>: expected ".
CASES = {
    "origin injection": (_set(["peaknight:edges", 0, "origins", 1], INJECTION), "edges[0].origins[1]",
                         f"{ORIGIN}; found {repr(INJECTION)[:57]}..."),
    "origin with a space": (_set(["peaknight:edges", 0, "origins", 0], "a b"), "edges[0].origins[0]",
                            "a DNS name or IPv4 address as host (letters, digits, '-', '.'); found 'a b'"),
    "origin port out of range": (_set(["peaknight:edges", 0, "origins", 0], "origin:70000"), "edges[0].origins[0]",
                                 "a port from 1 to 65535, not 70000; found 'origin:70000'"),
    "segment TTL past nginx's int32": (_set(["peaknight:edges", 0, "segmentTtlSeconds"], 2147483648),
                                       "edges[0].segmentTtlSeconds", "less than or equal to 86400; found 2147483648"),
    "segment TTL of 10**400": (_set(["peaknight:edges", 0, "segmentTtlSeconds"], 10**400),
                               "edges[0].segmentTtlSeconds", f"less than or equal to 86400; found {str(10**400)[:57]}..."),
    "kubelet variable in weights": (_set(["peaknight:models", 0, "weights"], "$(HOME)/w"), "models[0].weights",
                                    "a model id (org/name) or a relative path under the weights volume: letters, "
                                    "digits, '.', '_', '-' and '/', no '..'; found '$(HOME)/w'"),
    "weights escaping the volume": (_set(["peaknight:models", 0, "weights"], "../etc"), "models[0].weights",
                                    "a model id (org/name) or a relative path under the weights volume: letters, "
                                    "digits, '.', '_', '-' and '/', no '..'; found '../etc'"),
    "offset-aware time": (_set(["peaknight:event", "window", "start"], "2026-02-16T19:30:00+08:00"),
                          "event.window.start", "a local time without offset (event.timeZone says where); found "
                          "'2026-02-16T19:30:00+08:00'"),
    "epoch time": (_set(["peaknight:event", "moments", 0, "at"], 1771245000), "event.moments[0].at",
                   "a local date and time such as 2026-02-16T20:00:00, not a number; found 1771245000"),
    "year 1": (_set(["peaknight:event", "window", "start"], "0001-01-01T00:00:00"), "event.window.start",
               "a time in the years 2000-2100; found '0001-01-01T00:00:00'"),
    "window of days": (_set(["peaknight:event", "window", "end"], "2026-02-20T00:45:00"), "event.window.end",
                       "a window of at most 24 hours (one night; a longer event is one stack per night); found "
                       "3 days, 5:15:00"),
    "mapping as a cluster name": (_set(["peaknight:clusters", 0, "name"], {"a": 1}), "clusters[0].name",
                                  "a valid string; found {'a': 1}"),
    "time zone that is a directory": (_set(["peaknight:event", "timeZone"], "America"), "event.timeZone",
                                      "an IANA time zone such as Asia/Shanghai; found 'America'"),
    "capacity types null": (_set(["peaknight:policy", "capacityTypes"], None), "policy.capacityTypes",
                            "a value (leave the key out for the stage's default); found null"),
    "stage null": (_set(["peaknight:policy", "stage"], None), "policy.stage",
                   "one of broadcast, rehearsal; found None"),
    "capacity types empty": (_set(["peaknight:policy", "capacityTypes"], []), "policy.capacityTypes",
                             "at least 1 item; found []"),
    "infinite peak": (_set(["peaknight:models", 0, "peakTokensPerMinute"], float("inf")),
                      "models[0].peakTokensPerMinute", "a finite number; found inf"),
    "infinite egress": (_set(["peaknight:edges", 0, "podEgressGbps"], float("inf")), "edges[0].podEgressGbps",
                        "a finite number; found inf"),
    "command substitution as image": (_set(["peaknight:models", 0, "image"], "`id`"), "models[0].image",
                                      f"{IMAGE}; found '`id`'"),
    "shell as image": (_set(["peaknight:edges", 0, "image"], "$(rm -rf /)"), "edges[0].image",
                       f"{IMAGE}; found '$(rm -rf /)'"),
    "class name not a subdomain": (_set(["peaknight:clusters", 0, "modelCacheClass"], "Fast SSD"),
                                   "clusters[0].modelCacheClass", "a lower-case DNS subdomain (a-z, 0-9, '-', '.'; "
                                   "at most 253 characters): it names an object; found 'Fast SSD'"),
    "source range not a CIDR": (_set(["peaknight:edges", 0, "sourceRanges"], ["10.0.0.1/8"]),
                                "edges[0].sourceRanges[0]", "a CIDR such as 203.0.113.0/24 (network address, prefix "
                                "length); found '10.0.0.1/8'"),
    "edge named 8b": (_set(["peaknight:edges", 0, "name"], "8b"), "edges[0].name",
                      "a lower-case DNS-1035 label of at most 40 characters starting with a letter (a-z, 0-9, '-'): "
                      "it names a Service; found '8b'"),
    "Prometheus URL with a quote": (_set(["peaknight:clusters", 0, "prometheusUrl"], 'http://p:9090/"x'),
                                    "clusters[0].prometheusUrl", "an http(s) URL: scheme, host, optional port and "
                                    "path (no query, spaces or quotes); found 'http://p:9090/\"x'"),
    # Numbers at their limits (issue 29): each range keeps every derived figure finite.
    "utilisation of 1e-300 (hung the zone-loss count)": (
        _set(["peaknight:policy", "targetUtilisation"], 1e-300), "policy.targetUtilisation",
        "greater than or equal to 0.01; found 1e-300"),
    "ITL objective of 1e-300": (_set(["peaknight:slo", "itlP99Seconds"], 1e-300), "slo.itlP99Seconds",
                                "greater than or equal to 0.001; found 1e-300"),
    "weight source of 1e-300 MB/s/TiB": (_set(["peaknight:clusters", 0, "weightSource"], {"mbpsPerTib": 1e-300}),
                                         "clusters[0].weightSource.mbpsPerTib",
                                         "greater than or equal to 1; found 1e-300"),
    "shield cache of 1e30 GiB": (_set(["peaknight:edges", 0, "shieldCacheGib"], 10**30), "edges[0].shieldCacheGib",
                                 f"less than or equal to 4096; found {10**30}"),
    "segments of 1e-300 s": (_set(["peaknight:edges", 0, "segmentSeconds"], 1e-300), "edges[0].segmentSeconds",
                             "greater than or equal to 1; found 1e-300"),
    "parts of 1e-300 s": (_set(["peaknight:edges", 0, "partSeconds"], 1e-300), "edges[0].partSeconds",
                          "greater than or equal to 0.1; found 1e-300"),
    "pod egress of 1e-300 Gbps (OverflowError)": (_set(["peaknight:edges", 0, "podEgressGbps"], 1e-300),
                                                  "edges[0].podEgressGbps", "at least the top rendition's 6,000 kbps "
                                                  "(0.006 Gbps): else one pod serves nobody; found 1e-300"),
    "shield egress of 1e-300 Gbps": (_set(["peaknight:edges", 0, "shieldEgressGbps"], 1e-300),
                                     "edges[0].shieldEgressGbps", "at least the whole ladder's 10,600 kbps (0.0106 "
                                     "Gbps): else one pod serves nobody; found 1e-300"),
    # Paths, tags and hosts by their real grammars (issue 29).
    "render directory /etc/cron.d": (_set(["peaknight:renderDirectory"], "/etc/cron.d"), "renderDirectory",
                                     f"{RENDER_DIR}; found '/etc/cron.d'"),
    "render directory climbing out": (_set(["peaknight:renderDirectory"], "../../../../root/.ssh"), "renderDirectory",
                                      f"{RENDER_DIR}; found '../../../../root/.ssh'"),
    "image tag with an Arabic-Indic digit": (_set(["peaknight:edges", 0, "image"], "nginx:v\u0661"), "edges[0].image",
                                             f"{IMAGE}; found 'nginx:v\u0661'"),
    "image path with a Unicode letter": (_set(["peaknight:models", 0, "image"], "ngin\u00e9x:1"), "models[0].image",
                                         f"{IMAGE}; found 'ngin\u00e9x:1'"),
    "origin with a trailing newline": (_set(["peaknight:edges", 0, "origins", 0], "origin-a.live.internal:8080\n"),
                                       "edges[0].origins[0]", f"{ORIGIN}; found 'origin-a.live.internal:8080\\n'"),
    "server name with a trailing newline": (_set(["peaknight:edges", 0, "originServerName"], "origin.example.com\n"),
                                            "edges[0].originServerName", "a DNS name or IPv4 address as host "
                                            "(letters, digits, '-', '.'); found 'origin.example.com\\n'"),
    "weights revision with a trailing newline": (_set(["peaknight:models", 0, "weightsRevision"], "0" * 40 + "\n"),
                                                 "models[0].weightsRevision", "a commit: 40 lower-case hex digits; "
                                                 f"found '{'0' * 40}\\n'"),
    # The public gateway (issue 29 part B): a key set over http, or from the metadata service.
    "JWKS over http": (_set(["peaknight:models", 0, "auth"], {"type": "jwt", "jwksUri": "http://id.example.com/k",
                                                                "issuer": "https://id.example.com", "audiences": ["a"]}),
                       "models[0].auth.jwksUri", "an https URL (a key set fetched over http can be swapped on the "
                       "way); found 'http://id.example.com/k'"),
    "JWKS from the metadata address": (
        _set(["peaknight:models", 0, "auth"], {"type": "jwt", "jwksUri": "http://169.254.169.254/latest/meta-data",
                                               "issuer": "https://id.example.com", "audiences": ["a"]}),
        "models[0].auth.jwksUri", "an https URL (a key set fetched over http can be swapped on the way); found "
        "'http://169.254.169.254/latest/meta-data'"),
    "JWT audience with a space": (_set(["peaknight:models", 0, "auth"], {"type": "jwt", "jwksUri": "https://id.x/k",
                                                                         "issuer": "https://id.x", "audiences": ["a b"]}),
                                  "models[0].auth.audiences[0]", "an audience: 1-253 printable ASCII characters, no "
                                  "spaces or quotes; found 'a b'"),
    "API server address not a CIDR": (_set(["peaknight:clusters", 0, "apiServerCidrs"], ["10.0.0.1/8"]),
                                      "clusters[0].apiServerCidrs[0]", "a CIDR such as 203.0.113.0/24 (network "
                                      "address, prefix length); found '10.0.0.1/8'"),
    "gateway namespace not a label": (_set(["peaknight:clusters", 0, "gatewayNamespace"], "Envoy Gateway"),
                                      "clusters[0].gatewayNamespace", "a lower-case DNS label of at most 40 "
                                      "characters (a-z, 0-9, '-'); found 'Envoy Gateway'"),
    "origin latency of 1e300 s": (_set(["peaknight:edges", 0, "originLatencySeconds"], 1e300),
                                  "edges[0].originLatencySeconds", "less than or equal to 10; found 1e+300"),
    "context past maxModelLen (ZeroDivisionError)": (
        _set(["peaknight:models", 0, "meanContextTokens"], 16777216), "models[0].meanContextTokens",
        "at most the model's maxModelLen (32,768): a request holds no more context than the engine admits; "
        "found 16777216"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_value_is_refused_naming_its_key(case, tmp_path, capsys):
    edit, key, expected = CASES[case]
    path = write_variant(tmp_path, edit)
    code, lines = run_render(path, tmp_path, capsys)
    assert (code, lines) == (2, [f"{path}: peaknight:{key}: expected {expected}"])
    assert not (tmp_path / "out").exists()


# Files that are not stack files, or are built to exhaust the parser.
BOMB = (b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + b"".join(b"%c: &%c [%s]\n" % (c, c, b",".join([b"*%c" % (c - 1)] * 9)) for c in range(ord("b"), ord("j")))
        + b"config: {peaknight:scale: *i}\n")
FILES = {
    "not UTF-8": (b"config:\n  peaknight:scale: \xff\n", "(file): expected UTF-8 text; found byte 0xff at offset 27"),
    "1,000 deep": (b"config:\n  peaknight:scale: " + b"[" * 1000 + b"]" * 1000 + b"\n",
                   "line 2: expected at most 32 levels of nesting; found more"),
    "100,000 deep": (b"config:\n  peaknight:scale: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
                     "line 2: expected at most 32 levels of nesting; found more"),
    "alias bomb": (BOMB, "line 6: expected at most 100,000 YAML nodes (aliases expanded); found more"),
    "deep through aliases": (b"a: &a " + b"[" * 20 + b"]" * 20 + b"\nconfig: {x: " + b"[" * 20 + b"*a" + b"]" * 20
                             + b"}\n", "line 2: expected at most 32 levels of nesting (aliases expanded); found more"),
    "a list, not a stack": (b"- just\n- a list\n", "config: expected a mapping of Pulumi config keys; found "
                            "['just', 'a list']"),
    "a date no calendar has": (b"config:\n  peaknight:scale: 2026-02-30T00:00:00\n",
                               "(file): expected valid YAML values; found day is out of range for month"),
    "two documents": (b"config: {}\n---\nconfig: {}\n", "line 2: expected one YAML document; found another"),
    # Loaders keep the last of two: the first of two edits to a key would never apply.
    "a key twice": (b"config:\n  peaknight:policy:\n    stage: broadcast\n    stage: rehearsal\n",
                    "line 4: expected each key once in a mapping; found 'stage' again"),
    "a key twice, deeper": (b"config:\n  peaknight:scale: 1\n  peaknight:clusters: [{name: a, name: b}]\n",
                            "line 3: expected each key once in a mapping; found 'name' again"),
}


@pytest.mark.parametrize("case", sorted(FILES))
@pytest.mark.parametrize("command", ["plan", "render", "validate", "simulate"])
def test_hostile_file_is_refused_in_one_line(case, command, tmp_path, capsys):
    data, expected = FILES[case]
    path = tmp_path / "Pulumi.hostile.yaml"
    path.write_bytes(data)
    extra = ["--out", str(tmp_path / "out")] if command == "render" else []
    assert cli.main([command, str(path), *extra]) == 2
    assert capsys.readouterr().err.splitlines() == [f"{path}: {expected}"]


def test_the_alias_bomb_is_refused_before_it_expands():
    """A few hundred bytes that expand to 9**9 strings: measured, never built."""
    assert len(BOMB) < 500
    with pytest.raises(config.ConfigError):
        config.load_yaml(BOMB.decode(), "bomb")


def test_a_file_past_the_limit_is_read_no_further(tmp_path):
    big = tmp_path / "Pulumi.big.yaml"
    big.write_bytes(b"#" * (config.MAX_BYTES + 1))
    with pytest.raises(config.ConfigError) as err:
        config.read_stack_file(big)
    assert [str(p) for p in err.value.problems] == [f"{big}: (file): expected a readable stack file, at most "
                                                    "1,048,576 bytes; found more"]


@CLI_PROCESS
@pytest.mark.parametrize("kind", ["fifo", "urandom", "zero link", "directory"])
def test_a_stack_that_is_no_regular_file_is_refused_without_reading(kind, tmp_path, capsys):
    """A FIFO blocked the reader forever, /dev/urandom never ends: each is refused by what it is.
    In a subprocess with a timeout, so a regression fails instead of hanging."""
    path = tmp_path / "Pulumi.odd.yaml"
    found = {"fifo": "a FIFO", "urandom": "a character device", "zero link": "a character device",
             "directory": "a directory"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/urandom" if kind == "urandom" else "/dev/zero")
    result = subprocess.run([sys.executable, "-m", "peaknight.cli.main", "plan", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [f"{path}: (file): expected a readable stack file, a regular file; "
                                          f"found {found}"]


def test_render_onto_a_file_is_bad_input(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert cli.main(["render", "rehearsal", "--out", str(target / "sub")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"{target / 'sub'}: --out: expected a directory this user may "
                                                    f"create; found {target} is a file"]
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("step", ["nan", "inf", "0.001", "0", "-5", "3600"])
def test_simulate_step_outside_its_range_is_bad_input(step, capsys):
    assert cli.main(["simulate", "rehearsal", "--step", step]) == 2
    assert capsys.readouterr().err.splitlines() == [f"--step: --step: expected seconds from 1 to 60; found "
                                                    f"{float(step)}"]


def test_the_template_quotes_an_origin_even_past_validation(monkeypatch):
    """Defence in depth: were the injection string to reach the template (validation bypassed),
    it stays one quoted token of one `server` line: nginx refuses the config instead of serving
    a second server block."""
    require_tool("nginx")
    edge = nights.spec("rehearsal").edges[0]
    # Origins built directly, as if their grammar had been bypassed.
    tier = edge_nginx.Tier("shield", (Origin("http", "127.0.0.1", 9), Origin("http", INJECTION, 8080)))
    with workdir() as tmp:
        server = NginxServer(edge, tier, tmp)
        result = server.check()
        conf = server.conf.read_text()
    assert conf.count("\n    server {") == 2            # the status server and the viewers' server, no third
    assert f'server {edge_nginx.quoted(INJECTION + ":8080")} max_fails' in conf
    assert result.returncode != 0 and "invalid" in result.stderr


def test_diff_of_a_hostile_stack_is_bad_input_in_one_line(repo, capsys):
    """The head side's refusal comes back as one line, naming the side and the file."""
    stack = repo / "stacks" / "Pulumi.rehearsal.yaml"
    stack.write_bytes(BOMB)
    assert cli.main(["diff", str(stack), "--base", "HEAD"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    assert lines[0].endswith(f"{stack}: line 6: expected at most 100,000 YAML nodes (aliases expanded); found more")


def test_a_context_larger_than_the_kv_cache_is_refused(tmp_path, capsys):
    """Within maxModelLen but more than one group's KV cache holds (greetings on H100: 467,723
    tokens, on H200: 875,036): no request decoding, and the mixed rate a division by zero."""
    def edit(cfg):
        cfg["peaknight:models"][1].update(maxModelLen=2**24, meanContextTokens=500_000)
    path = write_variant(tmp_path, edit)
    code, lines = run_render(path, tmp_path, capsys)
    assert (code, lines) == (2, [f"{path}: peaknight:models[1].meanContextTokens: expected at most the 467,723 tokens "
                                 "one H100-80G group's KV cache holds (vllm colocated (1 GPUs tp1 dp1 ep1, KV bf16)): "
                                 "else no request fits and the model decodes nothing; found 500000"])
    assert not (tmp_path / "out").exists()


@CLI_PROCESS
def test_the_zone_loss_count_is_a_closed_form():
    """`replicas_for` counted up one replica at a time: a count of 1e12 hung every command. In a
    subprocess with a timeout, so a regression fails instead of hanging the suite."""
    code = ("from peaknight.plan import capacity; from peaknight.spec import config; "
            "spec = config.load_stack('broadcast').spec; "
            "print(capacity.replicas_for(1e12, 1.0, spec, 3, 'x').value)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    serving = math.ceil(1e12 * spec_policy_ratio("broadcast") - 1e-9)
    assert int(result.stdout) == -(-serving * 3 // 2)
    assert int(result.stdout) - math.ceil(int(result.stdout) / 3) >= serving


def spec_policy_ratio(stack: str) -> float:
    policy = config.load_stack(stack).spec.policy
    return policy.headroom / policy.target_utilisation


@pytest.mark.parametrize("zones", [2, 3, 5])
def test_the_closed_form_is_the_smallest_count_surviving_a_zone(zones):
    spec = config.load_stack("broadcast").spec
    ratio = spec_policy_ratio("broadcast")
    for demand in range(0, 400, 7):
        total = int(capacity.replicas_for(float(demand), ratio, spec, zones, "x").value)
        serving = math.ceil(demand - 1e-9)
        assert total - math.ceil(total / zones) >= serving
        assert total == 0 or (total - 1) - math.ceil((total - 1) / zones) < serving


def test_a_million_kbps_rendition_renders_an_nginx_conf_nginx_accepts(tmp_path):
    """306 shields behind one edge tier overflowed the upstream's fixed 64k zone
    (ngx_slab_alloc() failed): the zone is sized from the server count."""
    require_tool("nginx")
    path = write_variant(tmp_path, _set(["peaknight:edges", 0, "renditions", 0, "bitrateKbps"], 1_000_000),
                         base="rehearsal")
    spec = config.load_stack(str(path)).spec
    plan = capacity.plan(spec)
    shields = max(int(c.edge(spec.edges[0].name).shields.value) for c in plan.clusters)
    assert shields > 64
    _nginx_accepts(spec.edges[0], shields)


def test_a_hundred_zones_of_shields_render_an_nginx_conf_nginx_accepts():
    """A broadcast cluster of 100 zones has a shield per zone at least: 100 servers in the edges'
    upstream."""
    require_tool("nginx")
    _nginx_accepts(config.load_stack("rehearsal").spec.edges[0], 100)


def _nginx_accepts(edge, shields: int) -> None:
    local = dataclasses.replace(edge, origins=tuple(f"{o.scheme}://127.0.0.1:{o.port}" for o in origin_grammar.of(edge)))
    for tier in (edge_nginx.shield_tier(local),
                 edge_nginx.edge_tier([f"127.0.{i // 250}.{i % 250 + 1}:8080" for i in range(shields)])):
        with workdir() as tmp:
            result = NginxServer(local, tier, tmp).check()
        assert result.returncode == 0, result.stderr


def test_the_pulumi_program_gives_the_clis_line_for_a_number_out_of_range(tmp_path, capsys):
    from pulumi_harness import run_program
    path = write_variant(tmp_path, _set(["peaknight:policy", "targetUtilisation"], 1e-300))
    assert cli.main(["plan", str(path)]) == 2
    line = capsys.readouterr().err.strip()
    with pytest.raises(Exception) as err:
        run_program(path)
    assert line.replace(str(path), "Pulumi config of stack variant") in str(err.value).splitlines()
    assert "Traceback" not in str(err.value)


# ---- results files and calibration.yaml are input too (issue 29) ------------------------------

RESULTS_CLUSTER, RESULTS_MODEL = "reh-bj-01", "greetings"   # greetings: dense-8b, sized by the H100 row
STAGE = {"successes": {"throughput": {"input_tokens_per_sec": 5400.0, "output_tokens_per_sec": 3600.0},
                       "latency": {"time_to_first_token": {"p99": 0.5}, "inter_token_latency": {"p99": 0.02}}},
         "failures": {"count": 0}, "load_summary": {"count": 2160}}


def _results_project(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A project (the tests' rehearsal and broadcast stacks) and a results directory of one pod
    that ran one stage: 9,000 tok/s on one replica, about the shipped H100 row's 9,276 at its mix.
    Returns (stack, results, the pod's directory)."""
    stacks = tmp_path / "project" / "stacks"
    stacks.mkdir(parents=True)
    for name in ("rehearsal", "broadcast"):
        (stacks / f"Pulumi.{name}.yaml").write_text((STACKS / f"Pulumi.{name}.yaml").read_text())
    pod = tmp_path / "results" / RESULTS_CLUSTER / RESULTS_MODEL / "pod-0"
    pod.mkdir(parents=True)
    (pod / "config.yaml").write_text(yaml.safe_dump({"load": {"stages": [{"rate": 36.0, "duration": 60}]},
                                                     "data": {"input_distribution": {"mean": 150},
                                                              "output_distribution": {"mean": 100}}}))
    (pod / "stage_0_lifecycle_metrics.json").write_text(json.dumps(STAGE))
    (pod / "inference-perf.partial.stage_0.yaml").write_text(
        "run: {time: {start: '2026-02-16T12:00:00Z', end: '2026-02-16T12:01:00Z'}}\n")
    return stacks / "Pulumi.rehearsal.yaml", tmp_path / "results", pod


def _export(path: Path, value: Any) -> None:
    """A Prometheus export: `value` replicas up over the stage."""
    start = int(dt.datetime(2026, 2, 16, 12, tzinfo=dt.timezone.utc).timestamp())
    path.write_text(json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"service": RESULTS_MODEL}, "values": [[t, value] for t in range(start, start + 61, 15)]}]}}))


def _calibrate(stack: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    """`peaknight calibrate --write` in a subprocess with a timeout: a FIFO or /dev/urandom used to
    hang it, so a regression fails instead of hanging the suite."""
    return subprocess.run([sys.executable, "-m", "peaknight.cli.main", "calibrate", str(stack), "--results",
                           str(results), "--write", *extra], capture_output=True, text=True, timeout=120)


def _refused(result: subprocess.CompletedProcess, stack: Path) -> list[str]:
    assert (result.returncode, result.stdout) == (2, ""), result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (stack.parent / profiles.CALIBRATION_FILE).exists()
    return result.stderr.splitlines()


@CLI_PROCESS
def test_plausible_results_calibrate(tmp_path):
    """The baseline the hostile variants below spoil: these results make a row and write it."""
    stack, results, _ = _results_project(tmp_path)
    result = _calibrate(stack, results, "--replicas", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (stack.parent / profiles.CALIBRATION_FILE).exists()


@CLI_PROCESS
def test_replicas_of_1e_300_are_refused(tmp_path):
    """The export said 1e-300 replicas: a row of 4.2e304 tok/s was written, 5,760 GPUs dropped."""
    stack, results, _ = _results_project(tmp_path)
    export = results / RESULTS_CLUSTER / "prometheus.json"
    _export(export, "1e-300")
    assert _refused(_calibrate(stack, results), stack) == [
        f"{export}: data.result[service=greetings].values: expected [unix time, \"replicas up\"] pairs: a finite time "
        "and a whole number from 0 to 150,000; found [1771243200, '1e-300']"]


@CLI_PROCESS
def test_a_row_outside_the_shipped_rows_plausible_range_is_never_written(tmp_path):
    """Every number finite and in range, but a rate 1e300 times the shipped row's."""
    stack, results, pod = _results_project(tmp_path)
    (pod / "stage_0_lifecycle_metrics.json").write_text(json.dumps(
        {**STAGE, "successes": {**STAGE["successes"], "throughput": {"input_tokens_per_sec": 6e299,
                                                                      "output_tokens_per_sec": 4e299}}}))
    lines = _refused(_calibrate(stack, results, "--replicas", "1"), stack)
    assert lines == [f"{pod.parent}: stage 0: expected a measurement giving a rate within 1/1,000 to 4x the shipped "
                     "row's (prefill 20,400 and decode 5,103 tok/s: dense-8b on H100-80G); found 1e+300 tok/s per "
                     "replica over 1 replicas: prefill 2.19906e+300, decode 5.50088e+299"]


@pytest.mark.parametrize("key, value, found", [
    ("inter_token_latency", float("inf"), "inf"),
    ("inter_token_latency", 0, "0"),
    ("time_to_first_token", -1, "-1"),
])
@CLI_PROCESS
def test_latencies_must_be_finite_and_above_zero(tmp_path, key, value, found):
    stack, results, pod = _results_project(tmp_path)
    latency = {**STAGE["successes"]["latency"], key: {"p99": value}}
    (pod / "stage_0_lifecycle_metrics.json").write_text(json.dumps(
        {**STAGE, "successes": {**STAGE["successes"], "latency": latency}}))
    assert _refused(_calibrate(stack, results, "--replicas", "1"), stack) == [
        f"{pod}/stage_0_lifecycle_metrics.json: successes.latency.{key}.p99: expected a number (inference-perf "
        f"0.7.0's per-stage report), a finite number above 0 and at most 86,400; found {found}"]


@CLI_PROCESS
@pytest.mark.parametrize("kind", ["fifo", "urandom", "zero link", "directory"])
def test_a_results_file_that_is_no_regular_file_is_refused(tmp_path, kind):
    """A FIFO and /dev/urandom hung calibrate, /dev/zero was a MemoryError."""
    stack, results, pod = _results_project(tmp_path)
    report = pod / "stage_0_lifecycle_metrics.json"
    report.unlink()
    found = {"fifo": "a FIFO", "urandom": "a character device", "zero link": "a character device",
             "directory": "a directory"}[kind]
    if kind == "fifo":
        os.mkfifo(report)
    elif kind == "directory":
        report.mkdir()
    else:
        report.symlink_to("/dev/urandom" if kind == "urandom" else "/dev/zero")
    assert _refused(_calibrate(stack, results, "--replicas", "1"), stack) == [
        f"{report}: (file): expected inference-perf 0.7.0's per-stage report, a regular file; found {found}"]


@CLI_PROCESS
def test_an_export_linked_to_dev_zero_is_refused(tmp_path):
    stack, results, _ = _results_project(tmp_path)
    export = results / RESULTS_CLUSTER / "prometheus.json"
    export.symlink_to("/dev/zero")
    assert _refused(_calibrate(stack, results), stack) == [
        f"{export}: (file): expected a Prometheus range-query answer (/api/v1/query_range, resultType matrix), a "
        "regular file; found a character device"]


@CLI_PROCESS
def test_a_hundred_thousand_stages_are_one_line(tmp_path):
    """199,994 lines of output for 100,000 stages: the file is past a report's size."""
    stack, results, pod = _results_project(tmp_path)
    ran = yaml.safe_load((pod / "config.yaml").read_text())
    ran["load"]["stages"] = [{"rate": 1.0, "duration": 1}] * 100_000
    (pod / "config.yaml").write_text(json.dumps(ran))
    assert _refused(_calibrate(stack, results, "--replicas", "1"), stack) == [
        f"{pod}/config.yaml: (file): expected inference-perf's config.yaml (the config the pod ran), at most "
        "1,048,576 bytes; found more"]


@CLI_PROCESS
def test_more_stages_than_a_replay_has_are_one_line(tmp_path):
    stack, results, pod = _results_project(tmp_path)
    ran = yaml.safe_load((pod / "config.yaml").read_text())
    ran["load"]["stages"] = [{"rate": 1.0, "duration": 60}] * 2000
    (pod / "config.yaml").write_text(json.dumps(ran))
    assert _refused(_calibrate(stack, results, "--replicas", "1"), stack) == [
        f"{pod}/config.yaml: load.stages: expected at most 1,440 stages (a 24 h window in 1-minute steps); found "
        "2,000"]


@CLI_PROCESS
def test_problems_past_the_limit_are_counted_in_one_line(tmp_path):
    """Stages whose reports are all missing: a hundred lines, then one counting the rest."""
    stack, results, pod = _results_project(tmp_path)
    ran = yaml.safe_load((pod / "config.yaml").read_text())
    ran["load"]["stages"] = [{"rate": 1.0, "duration": 60}] * 1000
    (pod / "config.yaml").write_text(yaml.safe_dump(ran))
    lines = _refused(_calibrate(stack, results, "--replicas", "1"), stack)
    assert len(lines) == 101
    assert lines[-1] == f"{results}: --results: expected at most 100 problems listed; found 899 more"


@pytest.mark.parametrize("edit, line", [
    (lambda row: row.update(prefill_tps=float("inf")), "throughput[0].prefill_tps, decode_tps: expected a rate within "
     "1/1,000 to 4x the shipped row's (prefill 20,400 and decode 5,103 tok/s: dense-8b on H100-80G); found inf, 5103"),
    (lambda row: row.update(itl_seconds=0), "throughput[0].itl_seconds: expected the shipped row's value (a "
     "calibration changes only prefill_tps, decode_tps, latency_target, source, measured, fabric); found 0"),
    (lambda row: row.update(topology="colocated"), "throughput[0]: expected a row of a model class, GPU, engine and "
     "mode the profiles have (peaknight/data/profiles.yaml, or the stack's own profiles file); found {'decode_tps': "
     "5103, 'fabric': 'nvlink', 'gpu': 'H100-80G..."),
    (lambda row: row.update({1: 2}), "throughput[0].1: expected the shipped row's value (a calibration changes "
     "only prefill_tps, decode_tps, latency_target, source, measured, fabric); found 2"),
    (lambda row: row.update(fabric=["efa"]), "throughput[0].fabric: expected the network the rehearsal measured it "
     "on: one of infiniband, roce, efa, nvlink; found ['efa']"),
    (lambda row: row.update(source="measured\nfake: line"), "throughput[0].source: expected one line of text (at most "
     "1000 printable characters); found 'measured\\nfake: line'"),
])
def test_a_hostile_calibration_file_is_one_line_per_problem(tmp_path, capsys, edit, line):
    """calibration.yaml gave 6 tracebacks and took .inf and an ITL of 0."""
    stack, _, _ = _results_project(tmp_path)
    row = dict(profiles.shipped_rows()[profiles.row_key("dense-8b", "H100-80G", "vllm", "colocated")])
    edit(row)
    target = stack.parent / profiles.CALIBRATION_FILE
    target.write_text(yaml.safe_dump({"throughput": [row]}))
    try:
        assert cli.main(["plan", str(stack)]) == 2
    finally:
        profiles.use_calibration(None)
    assert capsys.readouterr().err.splitlines() == [f"{target}: {line}"]


@CLI_PROCESS
def test_a_calibration_file_that_is_a_fifo_is_refused(tmp_path):
    stack, _, _ = _results_project(tmp_path)
    target = stack.parent / profiles.CALIBRATION_FILE
    os.mkfifo(target)
    result = subprocess.run([sys.executable, "-m", "peaknight.cli.main", "plan", str(stack)], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stderr.splitlines()) == (2, [
        f"{target}: (file): expected a readable YAML calibration file, a regular file; found a FIFO"])



def test_a_raw_newline_cannot_forge_a_line_of_its_own(tmp_path, capsys):
    """A key and a value carrying a newline and a fake problem line: printed escaped, one line each."""
    forged = "\n/etc/passwd: peaknight:scale: expected nothing; found root"
    def edit(cfg):
        cfg["peaknight:scale" + forged] = 1
        cfg["peaknight:clusters"][0]["name"] = "reh" + forged
    path = write_variant(tmp_path, edit, base="rehearsal")
    code, lines = run_render(path, tmp_path, capsys)
    assert code == 2 and len(lines) == 2, lines
    assert all(line.startswith(f"{path}: peaknight:") and "\\n/etc/passwd" in line for line in lines)


@pytest.mark.parametrize("value, found", [("", "found an empty value"), ("loop", "found a symlink loop")])
def test_an_empty_or_looping_crd_mirror_is_one_line_and_no_download(value, found, tmp_path, monkeypatch, capsys):
    from peaknight.review import crds
    if value == "loop":
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        value = str(tmp_path / "a")
    monkeypatch.setenv(crds.ENV, value)
    monkeypatch.setattr(crds.urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded"))
    crds._verified.cache_clear()
    for argv in (["validate", "rehearsal"], ["crds", "fetch"]):
        assert cli.main(argv) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].endswith(found) and crds.ENV in lines[0], lines


@CLI_PROCESS
def test_a_fifo_in_the_crd_mirror_is_refused_without_reading(tmp_path):
    from peaknight.review import crds
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for pin in crds.pins():
        source = crds.directory() / pin.file
        if source.is_file():
            (mirror / pin.file).write_bytes(source.read_bytes())
    fifo = mirror / crds.pins()[0].file
    fifo.unlink()
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "peaknight.cli.main", "crds", "fetch"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, crds.ENV: str(mirror)})
    assert (result.returncode, result.stderr.splitlines()) == (2, [
        f"{fifo}: expected the pinned CRD, a regular file; found a FIFO"])


def test_every_problem_of_a_file_shows_in_one_pass(tmp_path, capsys):
    """Bad values stopped the checks across keys: the held-out World Cup stack showed 4 problems,
    then 8 more once those were fixed. Value problems and cross-key problems now come together, in
    the file's own indices (models[0] is set aside, models[2]'s image is still models[2])."""
    def edit(cfg):
        cfg["peaknight:models"][0]["engine"] = "vlm"                      # value: models[0] set aside
        cfg["peaknight:gpuPools"][0]["maxGpusPerCluster"] = -1            # value: falls back to its default
        cfg["peaknight:clusters"][0]["share"] = 0.5                       # across keys: the shares' sum
        cfg["peaknight:models"][1]["pool"] = "nope"                       # across keys: a reference
        cfg["peaknight:models"][1].pop("weightsRevision")                 # across keys, behind that reference
        cfg["peaknight:models"][2]["image"] = "vllm/vllm-openai:v0.11.0"  # across keys: unpinned in broadcast
    path = write_variant(tmp_path, edit)
    code, lines = run_render(path, tmp_path, capsys)
    assert code == 2
    assert [line.split(": ", 2)[1] for line in lines] == [
        "peaknight:gpuPools[0].maxGpusPerCluster", "peaknight:models[0].engine", "peaknight:clusters[*].share",
        "peaknight:models[1].weightsRevision", "peaknight:models[1].pool", "peaknight:models[2].image"]
    assert lines[2] == f"{path}: peaknight:clusters[*].share: expected shares that add up to 1; found 1.48438"


def test_what_a_set_aside_value_would_cause_is_not_reported(tmp_path, capsys):
    """A rendition whose bitrate is bad is set aside: the shares left do not add up to 1, which
    is no problem of its own; a pool set aside leaves its models' references alone."""
    def edit(cfg):
        cfg["peaknight:edges"][0]["renditions"][0]["bitrateKbps"] = -1
        cfg["peaknight:gpuPools"][1]["gpus"] = "H100-80G"
    path = write_variant(tmp_path, edit)
    code, lines = run_render(path, tmp_path, capsys)
    assert code == 2
    assert [line.split(": ", 2)[1] for line in lines] == ["peaknight:gpuPools[1].gpus",
                                                          "peaknight:edges[0].renditions[0].bitrateKbps"]



def test_load_pods_of_1e_300_requests_per_second_are_refused(tmp_path, capsys):
    """The load Job's pods are the peak's requests/s over this: 1e-300 rendered a Job of 1e300+ pods."""
    path = write_variant(tmp_path, _set(["peaknight:loadReplay", "podRequestsPerSecond"], 1e-300), base="rehearsal")
    code, lines = run_render(path, tmp_path, capsys)
    assert (code, lines) == (2, [f"{path}: peaknight:loadReplay.podRequestsPerSecond: expected greater than or equal "
                                 "to 1; found 1e-300"])



def test_a_crd_mirror_path_with_a_newline_stays_one_line(tmp_path, monkeypatch, capsys):
    from peaknight.review import crds
    monkeypatch.setenv(crds.ENV, str(tmp_path / "no\nsuch"))
    assert cli.main(["crds", "fetch"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path}/no\\nsuch: PEAKNIGHT_CRDS: expected a directory of CRD files; found no such directory"]


@pytest.mark.parametrize("name, text, line", [
    ("stage_0_lifecycle_metrics.json", "null", "(file): expected inference-perf 0.7.0's per-stage report; found an "
     "empty document"),
    ("inference-perf.partial.stage_0.yaml", "run: [1, 2]\n", "run.time.start: expected the stage's wall-clock time "
     "(ISO 8601, in the years 2000-2100); found nothing"),
])
@CLI_PROCESS
def test_results_of_the_wrong_shape_are_one_line(tmp_path, name, text, line):
    """A report of null skipped its stage silently (then max() of no stages was a traceback); a
    `run` that is no mapping was an AttributeError."""
    stack, results, pod = _results_project(tmp_path)
    (pod / name).write_text(text)
    lines = _refused(_calibrate(stack, results, "--replicas", "1"), stack)
    assert lines[0] == f"{pod / name}: {line}"


def _both(*edits):
    def edit(cfg):
        for e in edits:
            e(cfg)
    return edit


@pytest.mark.parametrize("base, edit, keys", [
    # a pool set aside whole: its models' references to it are not problems of their own
    ("broadcast", _set(["peaknight:gpuPools", 1], []), ["gpuPools[1]"]),
    # a zone set aside: the cluster's subnets, one per zone, still match the file
    ("gala-vke", _set(["peaknight:clusters", 3, "zones", 1], "$(rm -rf /)"), ["clusters[3].zones[1]"]),
    # a flag falling back to its default: the check that reads it says so, and is left out
    ("broadcast", _set(["peaknight:gpuPools", 1, "sharesInstanceTypes"], {}), ["gpuPools[1].sharesInstanceTypes"]),
    # a policy list defaulted, a cluster taken out: neither trips over the other (an IndexError)
    ("broadcast", _both(_set(["peaknight:policy", "capacityTypes"], ["a", "a"]),
                        _set(["peaknight:clusters", 9], "UPPER")), ["policy.capacityTypes", "clusters[9]"]),
    # a provisioner without its kind: the default kind's checks are no problem of this file's
    ("gala-vke", lambda cfg: cfg["peaknight:clusters"][5]["provisioner"].pop("kind"), ["clusters[5].provisioner"]),
])
def test_a_value_set_aside_causes_no_problem_of_its_own(base, edit, keys, tmp_path, capsys):
    """Found by mutating one value of the shipped stacks 4,000 times: what a set-aside value would
    have caused in the checks across keys is left out, so every line is about a bad value."""
    path = write_variant(tmp_path, edit, base=base)
    code, lines = run_render(path, tmp_path, capsys)
    assert code == 2 and lines
    assert all(any(line.startswith(f"{path}: peaknight:{key}") for key in keys) for line in lines), lines



def test_the_pulumi_program_refuses_a_value_nested_past_recursion_in_one_line():
    """Pulumi hands each value over as JSON: 100,000 levels were a RecursionError traceback."""
    from pulumi_harness import run_program
    with pytest.raises(Exception) as err:
        run_program(STACKS / "Pulumi.rehearsal.yaml", extra={"peaknight:scale": "[" * 100_000 + "]" * 100_000})
    assert ("Pulumi config of stack rehearsal: peaknight:scale: expected at most 32 levels of nesting; found more"
            in str(err.value).splitlines())


def test_a_defaulted_key_hides_nothing_beyond_its_own_object(tmp_path, capsys):
    """An edge's bad image falls back to its default; a model's unpinned image is still reported."""
    def edit(cfg):
        cfg["peaknight:edges"][0]["image"] = "`id`"
        cfg["peaknight:models"][2]["image"] = "vllm/vllm-openai:v0.11.0"
    path = write_variant(tmp_path, edit)
    code, lines = run_render(path, tmp_path, capsys)
    assert code == 2
    assert [line.split(": ", 2)[1] for line in lines] == ["peaknight:edges[0].image", "peaknight:models[2].image"]
