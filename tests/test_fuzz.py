"""Seeded fuzzing of both stacks: hundreds of variants, each one hostile or broken value somewhere.

The set is fixed: variant i of a stack is drawn from its own seed, so the fast tier's first
FAST_VARIANTS of each stack are the same every run on every machine, and the real-tool tier runs
the rest of the VARIANTS_PER_STACK (no time budget whose coverage would follow the machine's load).

Every variant must end in a verdict, never a traceback: exit 2 (bad input, one line per problem
naming the file and key), exit 1 (the documented "a check failed": the plan is short or does not fit
the envelope) or exit 0. An exit-0 variant must also render: its objects are dumped as `render`
dumps them, its nginx.conf passes a real `nginx -t`, its objects pass what `peaknight validate`
checks (policy, API schemas and CRDs, the API server's name and CEL rules), and the simulator
replays its night. Commands run
in-process; validation results are cached by object, since most objects repeat across variants.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import random
from typing import Any

import pytest
import yaml

from peaknight.builders import event
from peaknight.cli import main as cli
from peaknight.cli import render
from peaknight.edges import nginx as edge_nginx
from peaknight.review import apiserver, policy
from peaknight.review import schema as k8s_schema
from peaknight.sim import simulator
from peaknight.spec import config
from peaknight.spec import origins as origin_grammar
import nights
from conftest import STACKS, require_tool
from edge_harness import NginxServer, workdir

SEED = 13
VARIANTS_PER_STACK = 150
FAST_VARIANTS = 25
SIM_STEP = 60.0   # the coarsest step `simulate` takes: the night replays without error, cheaply
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

HOSTILE_STRINGS = [
    "", " ", "a b", "8b", "UPPER", "x" * 300, "$(HOME)", "`id`", "$(rm -rf /)", "a;b", 'a"b', "a\nb", "a}b{",
    "../../etc/passwd", "origin:99999", "origin:0", "[::1]:8080", "10.0.0.1:8080", "10.0.0.0/8", "10.0.0.1/8",
    "http://x/\"", "https://p.monitoring.svc:9090", "America", "Etc/UTC", "nginx:1.27.3@sha256:" + "0" * 64,
    "registry.example.com:5000/team/model:v1", "org/model", "origin-c.live.internal:8080", "é", "\x00",
    "2026-02-16T20:00:00", "2026-02-16T20:00:00+08:00", "apiKey", "jwt", "none", "spot", "keda", "hpa",
]
HOSTILE_NUMBERS: list[Any] = [0, -1, 1, 2, 0.5, 0.999999, 1.5, 59, 61, 3600, 86401, 2**31, 2**63, 10**40,
                              float("inf"), float("-inf"), float("nan"), 1e-300, 1e300, True, False]
HOSTILE_TIMES = [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59), dt.datetime(2026, 2, 16, 21, 0),
                 dt.datetime(2026, 2, 16, 21, 0, tzinfo=dt.timezone.utc), dt.date(2026, 2, 16), 1771245000]
HOSTILE_SHAPES: list[Any] = [None, [], {}, [[[[]]]], {"a": 1}, [None], ["a", "a"]]


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Every path into the config tree, containers and leaves."""
    out = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, path + (i,))
    return out


def _mutate(cfg: dict[str, Any], rng: random.Random) -> str:
    """One hostile edit somewhere in `cfg`; returns what it did (for the failure message)."""
    path = rng.choice(_paths(cfg))
    parent = cfg
    for key in path[:-1]:
        parent = parent[key]
    old, op = parent[path[-1]], rng.random()
    if op < 0.1 and isinstance(parent, dict):
        del parent[path[-1]]
        return f"deleted {path}"
    if op < 0.15 and isinstance(parent, list):
        parent.append(copy.deepcopy(old))
        return f"duplicated {path}"
    if op < 0.2 and isinstance(parent, dict):
        parent[str(path[-1]) + rng.choice(["x", "s", ""]) + "Extra"] = old
        return f"added a misspelt sibling of {path}"
    if isinstance(old, bool) or not isinstance(old, (int, float, str, dt.datetime, dt.date)):
        pool = HOSTILE_SHAPES + HOSTILE_STRINGS[:8] + HOSTILE_NUMBERS[:6]
    elif isinstance(old, (int, float)):
        pool = HOSTILE_NUMBERS + [old * 10, old / 10, -old] + HOSTILE_SHAPES[:2]
    elif isinstance(old, (dt.datetime, dt.date)) or "T" in str(old)[10:11]:
        pool = HOSTILE_TIMES + HOSTILE_STRINGS[-8:]
    else:
        pool = HOSTILE_STRINGS + [old + old[-1:], old.upper()] + HOSTILE_SHAPES[:2]
    value = rng.choice(pool)
    parent[path[-1]] = value
    return f"set {path} = {value!r:.60}"


def variants(first: int, last: int) -> list[tuple[str, int]]:
    return [(stack, i) for stack in ("broadcast", "rehearsal") for i in range(first, last)]


_VALIDATED: dict[str, list[str]] = {}
_NGINX_CHECKED: dict[str, str] = {}


def _object_problems(manifest: dict[str, Any]) -> list[str]:
    key = json.dumps(manifest, sort_keys=True)
    if key not in _VALIDATED:
        render.dump(manifest)
        _VALIDATED[key] = k8s_schema.validate(manifest, None) + apiserver.validate(manifest)
    return _VALIDATED[key]


def _nginx_problem(edge: Any) -> str:
    """`nginx -t` of both tiers' configs, origins and shields pointed at loopback (their names
    resolve in-cluster only)."""
    local = dataclasses.replace(edge, origins=tuple(f"{o.scheme}://127.0.0.1:{o.port}"
                                                    for o in origin_grammar.of(edge)))
    key = repr(local)
    if key not in _NGINX_CHECKED:
        problems = []
        for tier in (edge_nginx.shield_tier(local), edge_nginx.edge_tier(["127.0.0.1:80"])):
            with workdir() as tmp:
                result = NginxServer(local, tier, tmp).check()
            if result.returncode != 0:
                problems.append(f"{tier.role}: {result.stderr.strip()}")
        _NGINX_CHECKED[key] = "; ".join(problems)
    return _NGINX_CHECKED[key]


def fuzz(tmp_path, capsys, variants: list[tuple[str, int]]) -> dict[int, int]:
    """Run every variant; fail naming each that escaped a verdict or was accepted but invalid.
    Returns the count of each exit code."""
    require_tool("nginx")
    verdicts = {0: 0, 1: 0, 2: 0}
    failures = []
    # Broadcast as one cluster per shape (3 of its 64, each planned as in the whole stack): an
    # accepted variant is built and replayed, and the other 61 clusters repeat the same plans.
    stacks = {name: yaml.load((nights.per_shape(name) if name == "broadcast" else STACKS / f"Pulumi.{name}.yaml")
                              .read_text(), Loader=_LOADER) for name in ("broadcast", "rehearsal")}
    for stack, i in variants:
        rng = random.Random(f"{SEED}/{stack}/{i}")
        doc = copy.deepcopy(stacks[stack])
        edits = [_mutate(doc["config"], rng) for _ in range(rng.choice([1, 1, 2]))]
        path = tmp_path / f"Pulumi.{stack}-{i}.yaml"
        path.write_text(yaml.dump(doc, Dumper=_DUMPER, sort_keys=False))
        what = f"{stack} variant {i} ({'; '.join(edits)})"
        try:
            code = cli.main(["plan", str(path)])
        except BaseException as err:   # noqa: BLE001 - the point: nothing may escape
            failures.append(f"{what}: plan raised {type(err).__name__}: {err}")
            continue
        err = capsys.readouterr().err
        verdicts[code] = verdicts.get(code, 0) + 1
        if code not in (0, 1, 2) or "Traceback" in err:
            failures.append(f"{what}: plan exit {code}: {err[-300:]}")
        elif code == 2 and not all(line.startswith(f"{path}: ") or line.startswith("--") for line in err.splitlines()):
            failures.append(f"{what}: exit 2 without the file on every line: {err[:300]}")
        if code != 0:
            continue
        # Accepted: it must render (what `peaknight render` does, without the file I/O), validate and
        # replay through the simulator.
        try:
            spec = config.load_stack(str(path)).spec
            objects = event.build(spec)
            violations = [str(v) for v in policy.check_event(objects)]
            manifests = [o.manifest for u in objects.clusters[0].units for o in u.objects]
            problems = violations + [p for m in manifests for p in _object_problems(m)]
            problems += [f"nginx -t: {msg}" for e in spec.edges if (msg := _nginx_problem(e))]
            simulator.simulate(spec, objects, SIM_STEP)
        except BaseException as err:   # noqa: BLE001
            failures.append(f"{what}: plan exit 0 but render raised {type(err).__name__}: {err}")
            continue
        if problems:
            failures.append(f"{what}: accepted but invalid: {problems[:3]}")
    assert failures == []
    return verdicts


def test_fuzzed_stacks_end_in_a_verdict_and_every_accepted_one_renders_valid_objects(tmp_path, capsys):
    """The fast tier's share of the set."""
    verdicts = fuzz(tmp_path, capsys, variants(0, FAST_VARIANTS))
    # The generator reaches both ends (a fuzzer that only ever fails parsing tests nothing).
    assert verdicts[0] >= 2 and verdicts[2] >= 25, verdicts


@pytest.mark.realtool
def test_the_rest_of_the_fuzzed_set(tmp_path, capsys):
    verdicts = fuzz(tmp_path, capsys, variants(FAST_VARIANTS, VARIANTS_PER_STACK))
    assert verdicts[0] >= 20 and verdicts[2] >= 100, verdicts
