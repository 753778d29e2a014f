"""The figures the docs quote come from the kit: each is marked in the Markdown source as
`<figure><!-- kit: KEY -->` (invisible once rendered), and KEY's function below recomputes it
from the tests' broadcast night (its plan and its rendered objects), formatted as the doc quotes it.
A figure that drifts from the render, or a key nothing computes, fails here."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest

import nights
from conftest import ROOT
from peaknight.builders import steering
from peaknight.plan import capacity, cost, serving_recipes
from peaknight.plan.report import duration
from peaknight.sim import simulator
from peaknight.spec.stack import LossScope

DOCS = [ROOT / "docs" / "runbook.md", ROOT / "docs" / "operations.md", ROOT / "docs" / "facts.md",
        ROOT / "docs" / "recipes.md"]
MARK = re.compile(r"([0-9][0-9,.:hm]*)<!-- kit: ([\w.-]+) -->")
CLUSTER = "gala-bj-01"


def _object(kind: str, name: str) -> dict[str, Any]:
    (m,) = [m for m in nights.manifests("broadcast", CLUSTER) if m["kind"] == kind and m["metadata"]["name"] == name]
    return m


def _trigger(scaled_object: str, trigger: str) -> str:
    (t,) = [t for t in _object("ScaledObject", scaled_object)["spec"]["triggers"] if t["name"] == trigger]
    return t["metadata"]["threshold"]


def _annotated_result(kind: str, name: str, key: str) -> int:
    """The result a `peaknight.io/<key>` annotation derives: the number after its first ` = `."""
    text = _object(kind, name)["metadata"]["annotations"][f"peaknight.io/{key}"]
    return int(re.search(r" = ([0-9,]+)", text).group(1).replace(",", ""))


def _staging_jobs() -> list[tuple[dt.datetime, int]]:
    """Every staging Job of the night: its deadline (`must-finish-before`) and its expected seconds."""
    out = []
    for m in nights.manifests("broadcast"):
        a = m["metadata"].get("annotations", {})
        if m["kind"] == "Job" and "peaknight.io/must-finish-before" in a:
            deadline = dt.datetime.fromisoformat(a["peaknight.io/must-finish-before"].split()[0])
            seconds = int(re.search(r"= ([0-9]+) s$", a["peaknight.io/expected-seconds"]).group(1))
            out.append((deadline, seconds))
    return out


def _weights() -> list[Any]:
    return [w for c in nights.plan("broadcast").clusters for w in c.weights]


@cache
def _simulated() -> list[simulator.ModelResult]:
    """`peaknight simulate broadcast`'s results (some seconds: once per session)."""
    return simulator.simulate(nights.spec("broadcast"), nights.objects("broadcast"))


def _clock(t: dt.datetime) -> str:
    return t.strftime("%H:%M")


def _kv_over_tcp() -> Any:
    plan = next(p for p in nights.plan("broadcast").cluster(CLUSTER).models if p.name == "chat-prefill")
    return serving_recipes.kv_over_tcp(next(m for m in nights.spec("broadcast").models if m.name == "chat"), plan)


def _count(n: float) -> str:
    return f"{n:,.0f}"


def _loss_gpus(**policy: Any) -> int:
    """The GPUs `plan` says policy.surviveLoss costs the broadcast night with `policy` changed."""
    spec = nights.spec("broadcast")
    spec = dataclasses.replace(spec, policy=dataclasses.replace(spec.policy, **policy))
    gpus = capacity.plan(spec).loss_gpus
    assert gpus is not None
    return int(gpus.value)


def _window() -> Any:
    return nights.spec("broadcast").event.window


FIGURES: dict[str, Callable[[], str]] = {
    # runbook.md: the T-minus timeline
    "broadcast.window-start": lambda: _clock(_window().start),
    "broadcast.loss-region-gpus": lambda: _count(_loss_gpus(survive_loss=LossScope.REGION)),
    "broadcast.loss-region-85-gpus": lambda: _count(_loss_gpus(survive_loss=LossScope.REGION, loss_utilisation=0.85)),
    "broadcast.loss-region-no-zone-gpus": lambda: _count(_loss_gpus(survive_loss=LossScope.REGION,
                                                                     survive_zone_loss=False)),
    "broadcast.users-move-seconds": lambda: _count(steering.move_seconds(nights.spec("broadcast"))),
    "broadcast.window-end": lambda: _clock(_window().end),
    "broadcast.pulumi-up": lambda: _clock(_window().start - dt.timedelta(hours=nights.spec("broadcast").policy.warmup_hours)),
    "broadcast.staging": lambda: duration(max(w.staging.value for w in _weights())),
    "broadcast.slack": lambda: duration(min(w.slack.value for w in _weights())),
    "broadcast.must-finish-before": lambda: _clock(min(d for d, _ in _staging_jobs())),
    "broadcast.latest-up": lambda: _clock(min(d - dt.timedelta(seconds=s) for d, s in _staging_jobs())),
    "broadcast.freeze-start": lambda: _clock(_window().start - dt.timedelta(
        minutes=nights.spec("broadcast").clusters[0].provisioner.freeze_lead_minutes)),
    # the floor an operator may patch by hand, and the quota it must stay within
    "broadcast.chat-decode.floor": lambda: _count(_object("ScaledObject", "chat-decode")["spec"]["minReplicaCount"]),
    "broadcast.chat-decode.max": lambda: _count(_object("ScaledObject", "chat-decode")["spec"]["maxReplicaCount"]),
    "broadcast.quota": lambda: _count(int(_object("ResourceQuota", "gpus")["spec"]["hard"]["requests.nvidia.com/gpu"])),
    # operations.md: autoscaling, routing, admission, weights
    "broadcast.chat-decode.tokens-threshold": lambda: _count(int(_trigger("chat-decode", "tokens"))),
    "broadcast.chat-decode.queue-target": lambda: f'{float(_trigger("chat-decode", "queue")):,.4f}',
    "broadcast.greetings.epp-vcpu": lambda: _object("Deployment", "greetings-s0-epp")["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
    # the Envoy pods and chat's routers, sized by the streams they hold open (plan/streams.py)
    "broadcast.envoy-pods": lambda: _count(_object("EnvoyProxy", "gala-2026-gateway")["spec"]["provider"]["kubernetes"]
                                           ["envoyDeployment"]["replicas"]),
    "broadcast.chat-router-pods": lambda: _count(_object("Deployment", "chat-router")["spec"]["replicas"]),
    "broadcast.chat.slots": lambda: _count(_annotated_result("BackendTrafficPolicy", "chat", "slots")),
    "broadcast.chat.queue": lambda: _count(_annotated_result("BackendTrafficPolicy", "chat", "queue")),
    "broadcast.chat.per-endpoint": lambda: _count(_annotated_result("BackendTrafficPolicy", "chat", "per-endpoint")),
    "broadcast.chat.parallel": lambda: _count(
        _object("BackendTrafficPolicy", "chat")["spec"]["circuitBreaker"]["maxParallelRequests"]),
    "broadcast.chat.source-gib": lambda: _count(next(w.source_gib.value for w in _weights() if w.model == "chat")),
    # `peaknight simulate broadcast`: the GPU-hours of chat's two workloads
    "broadcast.chat.gpu-hours": lambda: _count(sum(r.gpu_hours for r in _simulated()
                                                   if r.model in ("chat-prefill", "chat-decode"))),
    # recipes.md: the KV one chat prefill node sends over TCP on EFA (SGLang 0.5.4: NIXL with UCX only)
    "broadcast.chat-prefill.kv-tcp-gbps": lambda: _count(_kv_over_tcp().value),
    # facts.md: what the night costs at the catalog's prices, by the plan and replayed
    "broadcast.plan-cost": lambda: _count(cost.PlanCost(nights.spec("broadcast"), nights.plan("broadcast")).night()),
    "broadcast.simulated-cost": lambda: _count(sum(r.cost_usd for r in _simulated())),
    "broadcast.oracle-cost": lambda: _count(sum(r.oracle_cost_usd for r in _simulated())),
    "broadcast.policy-oracle-cost": lambda: _count(sum(r.policy_oracle_cost_usd for r in _simulated())),
    "broadcast.policy-ratio": lambda: f"{sum(r.gpu_hours for r in _simulated()) / sum(r.policy_oracle_gpu_hours for r in _simulated()):.2f}",
    # the cold lead: warmupHours - staging - slack, as plan/weights.py derives the slack
    "broadcast.chat.cold-lead-minutes": lambda: _count(next(
        (nights.spec("broadcast").policy.warmup_hours * 3600 - w.staging.value - w.slack.value) / 60
        for w in _weights() if w.model == "chat")),
}


def marks(text: str) -> list[tuple[str, str]]:
    """(quoted figure, key) of every marked figure."""
    return [(m.group(1), m.group(2)) for m in MARK.finditer(text)]


def drifted(text: str) -> list[str]:
    return [f"{key}: the doc quotes {quoted}, the kit gives {FIGURES[key]() if key in FIGURES else 'no such figure'}"
            for quoted, key in marks(text) if key not in FIGURES or FIGURES[key]() != quoted]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_marked_figure_is_the_kits(doc):
    text = doc.read_text()
    assert marks(text)
    assert drifted(text) == []


def test_every_figure_the_kit_computes_is_quoted():
    used = {key for doc in DOCS for _, key in marks(doc.read_text())}
    assert set(FIGURES) - used == set()


def test_a_figure_that_drifts_is_caught():
    text = (ROOT / "docs" / "operations.md").read_text()
    stale = text.replace("50,854<!-- kit: broadcast.quota -->", "37,958<!-- kit: broadcast.quota -->")
    assert stale != text
    assert drifted(stale) == ["broadcast.quota: the doc quotes 37,958, the kit gives 50,854"]
    assert drifted("x 7<!-- kit: broadcast.no-such -->") == ["broadcast.no-such: the doc quotes 7, the kit gives no such figure"]
