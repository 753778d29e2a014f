"""Admission at the gateway and the degradation ladder: the rendered BackendTrafficPolicy and route
against the plan, the config's one-line errors, and the simulated surge (`--surge`)."""
from __future__ import annotations

import math

import pytest

import nights
from peaknight.builders import admission as admission_objects
from peaknight.builders import event
from peaknight.cli import main as cli
from peaknight.engines.base import SERVING_PATHS
from peaknight.plan import admission
from peaknight.review import schema as k8s_schema
from peaknight.sim import simulator
from peaknight.spec import config, profiles


def _objects(stack: str = "broadcast"):
    objects = nights.objects(stack)
    return objects, objects.clusters[0]


def _find(cluster, kind: str, name: str) -> dict:
    return next(o.manifest for u in cluster.units for o in u.objects if o.kind == kind and o.name == name)


def answer(overrides: list[dict], status: int, source: str, headers: dict[str, str]) -> tuple[int, str | None]:
    """The status and Retry-After a client gets for a response, under Envoy Gateway's
    responseOverride rules as its CRD states them (pinned BackendTrafficPolicy CRD): the first rule
    whose `source` matches (All by default), any of its `statusCodes` and all of its
    `responseHeaders` (Exact by default) replaces the status and sets its headers."""
    for rule in overrides:
        match = rule["match"]
        if rule.get("source", "All") not in ("All", source):
            continue
        if not any(c["value"] == status for c in match["statusCodes"]):
            continue
        wanted = match.get("responseHeaders", [])
        assert all(h["value"].get("type", "Exact") == "Exact" for h in wanted)   # the only type the kit uses
        if not all(headers.get(h["name"].lower()) == h["value"]["value"] for h in wanted):
            continue
        set_headers = {h["name"]: h["value"] for h in rule["response"]["header"]["set"]}
        return rule["response"]["statusCode"], set_headers.get("Retry-After")
    return status, None


def test_the_policy_holds_the_plans_limits_and_answers_429_with_retry_after() -> None:
    # A colocated model with a ladder: its route reaches its replicas, so each gets its limit.
    raw = config.read_stack_file(config.resolve_stack_path("broadcast"))
    next(m for m in raw["models"] if m["name"] == "greetings")["ladder"] = {"capOutputTokens": 512}
    objects = event.build(config.parse(raw, "x.yaml"))
    cluster = objects.clusters[0]
    spec = objects.spec
    chat = next(m for m in spec.models if m.name == "greetings")
    mplan = objects.plan.cluster(cluster.cluster.name).model("greetings")
    pods = int(objects.plan.cluster(cluster.cluster.name).gateway.pods.value)
    btp = _find(cluster, "BackendTrafficPolicy", "greetings")
    tps, tpr = mplan.replica_tps.value, profiles.load().gateway.tokens_per_request
    slots = math.ceil(tps * (1 - chat.input_share) * spec.slo.itl_p99_seconds)
    queue = math.ceil(tps / tpr * spec.slo.ttft_p99_seconds)
    cb = btp["spec"]["circuitBreaker"]
    assert cb["perEndpoint"]["maxConnections"] == math.ceil((slots + queue) / pods)
    assert cb["maxParallelRequests"] == math.ceil(mplan.max_replicas.value * (slots + queue) / pods)
    # Envoy's default of 1,024 per pod would cap the fleet far below its plan.
    assert cb["maxParallelRequests"] > 1024 and cb["maxConnections"] == cb["maxParallelRequests"]
    overrides = btp["spec"]["responseOverride"]
    assert {o["match"]["statusCodes"][0]["value"] for o in overrides} == {503, 429}
    for o in overrides:
        assert o["source"] == "Local"
        assert o["response"]["statusCode"] == 429
        assert o["response"]["header"]["set"] == [{"name": "Retry-After", "value": str(chat.admission.retry_after_seconds)}]
    assert btp["spec"]["targetRefs"][0]["name"] == "greetings"
    # Shedding is a 429; an outage stays a 503 (issue 24, finding 8).
    assert answer(overrides, 503, "Local", {"x-envoy-overloaded": "true"}) == (429, str(chat.admission.retry_after_seconds))
    assert answer(overrides, 503, "Local", {}) == (503, None)            # "no healthy upstream"
    assert answer(overrides, 503, "Backend", {"x-envoy-overloaded": "true"}) == (503, None)   # the engine's own
    assert answer(overrides, 429, "Local", {}) == (429, str(chat.admission.retry_after_seconds))
    # A disaggregated model's route reaches its router's pods, not its replicas: no per-replica limit.
    assert "perEndpoint" not in _find(cluster, "BackendTrafficPolicy", "chat")["spec"]["circuitBreaker"]


def test_without_a_ladder_nothing_is_shed_below_the_fleet_ceiling() -> None:
    spec = nights.spec("broadcast")
    raw = config.read_stack_file(config.resolve_stack_path("broadcast"))
    for m in raw["models"]:
        m.pop("ladder", None)
    objects = event.build(config.parse(raw, "x.yaml"))
    cb = _find(objects.clusters[0], "BackendTrafficPolicy", "chat")["spec"]["circuitBreaker"]
    assert "perEndpoint" not in cb and cb["maxPendingRequests"] == cb["maxParallelRequests"]
    assert spec.models[0].ladder is not None


def test_a_per_client_limit_counts_by_the_forwarded_client_id() -> None:
    raw = config.read_stack_file(config.resolve_stack_path("broadcast"))
    raw["models"][0]["admission"] = {"clientTokensPerMinute": 600000}
    objects = event.build(config.parse(raw, "x.yaml"))
    cluster = objects.clusters[0]
    pods = int(objects.plan.cluster(cluster.cluster.name).gateway.pods.value)
    rule = _find(cluster, "BackendTrafficPolicy", "chat")["spec"]["rateLimit"]["local"]["rules"][0]
    assert rule["clientSelectors"] == [{"headers": [{"name": admission_objects.CLIENT_HEADER, "type": "Distinct"}]}]
    assert rule["limit"] == {"requests": math.ceil(600000 / profiles.load().gateway.tokens_per_request / pods),
                             "unit": "Minute"}
    auth = _find(cluster, "SecurityPolicy", "chat")["spec"]["apiKeyAuth"]
    assert auth["forwardClientIDHeader"] == admission_objects.CLIENT_HEADER


def test_every_admission_object_validates_against_the_pinned_crd() -> None:
    objects, _ = _objects()
    checked = 0
    for cluster in objects.clusters:
        for unit in cluster.units:
            for obj in unit.objects:
                if obj.kind in ("BackendTrafficPolicy", "HTTPRoute"):
                    assert k8s_schema.validate(obj.manifest) == []
                    checked += 1
    # A policy and a route per model, and the steering health check's route, per cluster.
    assert checked == (2 * len(objects.spec.models) + 1) * len(objects.clusters)


def test_the_fallback_is_a_weight_zero_backend_and_answers_to_the_primarys_name() -> None:
    objects, cluster = _objects()
    route = _find(cluster, "HTTPRoute", "chat")
    assert [r["backendRefs"] for r in route["spec"]["rules"]] == [
        [{"name": "chat", "port": 8000, "weight": 100}, {"name": "greetings", "port": 8000, "weight": 0}]
    ] * len(SERVING_PATHS)
    unit = next(u for u in cluster.units if u.component == "InferenceService" and u.name == "chat")
    assert next(o for o in unit.objects if o.kind == "HTTPRoute").ignore_changes == (
        "spec.rules[*].backendRefs[*].weight",)
    greetings = _find(cluster, "Deployment", "greetings-s0")["spec"]["template"]["spec"]["containers"][0]["command"]
    names = greetings[greetings.index("--served-model-name") + 1:greetings.index("--host")]
    assert names == ["greetings", "chat"]   # vLLM answers to every name; reports the first


@pytest.mark.parametrize("ladder, expected", [
    ({"capOutputTokens": 512, "fallback": "chat"},
     "peaknight:models[0].ladder.fallback: expected another model of peaknight:models; found 'chat' itself"),
    ({"capOutputTokens": 512, "fallback": "greeting"},
     "peaknight:models[0].ladder.fallback: expected the name of another model in peaknight:models (greetings, "
     "deep-think); found 'greeting' (did you mean 'greetings'?)"),
    ({"capOutputTokens": 512, "fallback": "deep-think"},
     "peaknight:models[0].ladder.fallback: expected a model whose engine answers to another model's name too "
     "(vllm); found 'deep-think' runs sglang"),
    ({"capOutputTokens": 40000},
     "peaknight:models[0].ladder.capOutputTokens: expected at most the model's maxModelLen (32768); found 40000"),
])
def test_bad_ladders_are_one_line_each(ladder: dict, expected: str) -> None:
    raw = config.read_stack_file(config.resolve_stack_path("broadcast"))
    raw["models"][0]["ladder"] = ladder
    with pytest.raises(config.ConfigError) as err:
        config.parse(raw, "x.yaml")
    assert [str(p) for p in err.value.problems] == [f"x.yaml: {expected}"]


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_surge_is_served_degraded_or_shed_never_unmet(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "simulate", "broadcast", "--surge", "19:45:0.9:10")
    # The forecast's own users, squeezed out with the surge (the gateway cannot tell them apart),
    # lose more than the SLO: exit 1, though nothing waits past the TTFT objective.
    assert code == 1
    chat = next(line for line in out.splitlines() if line.startswith("chat-prefill "))
    assert chat.split()[6] == "0.000%" and chat.endswith("OVER SLO")
    assert "fault: unforecast surge to 0.9 of peak at 19:45 for 10 min" in out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert ["served", "by fallback", "shortened", "shed 429", "unmet tokens"] == [
        c for c in ("served", "by fallback", "shortened", "shed 429", "unmet tokens") if c in header]
    spec = nights.spec("broadcast")
    results = simulator.simulate(spec, step=10.0, faults=simulator.Faults(surge=(15 * 60, 0.9, 10)))
    for r in results:
        assert r.unmet_tokens == 0 and r.shortened_tokens > 0
        parts = r.served_tokens + r.fallback_tokens + r.shortened_tokens + r.shed_tokens + r.unmet_tokens
        assert parts == pytest.approx(r.demand_tokens)
        assert r.forecast_tokens < r.demand_tokens
        # The forecast's share of what was shed: less than all of it, more than nothing (a phase
        # with room to spare, deep-think's decode groups, sheds nothing).
        assert r.shed_tokens == 0 or 0 < r.unserved_forecast_tokens < r.shed_tokens
    assert sum(r.shed_tokens > 0 for r in results) >= 4


def test_without_a_surge_the_slo_judges_unmet_and_shed_alike() -> None:
    spec = nights.spec("rehearsal")
    no_h200 = simulator.Faults(no_capacity=("h200", -12 * 3600.0, 20 * 60.0))
    chat = next(r for r in simulator.simulate(spec, step=30.0, faults=no_h200) if r.model == "chat-prefill")
    assert chat.shed_tokens > 0 and chat.forecast_tokens == pytest.approx(chat.demand_tokens)
    assert chat.unserved_forecast_tokens == pytest.approx(chat.shed_tokens + chat.unmet_tokens)
    assert chat.unserved_pct > spec.slo.unmet_tokens_pct


def test_without_the_ladder_the_same_surge_goes_unmet() -> None:
    raw = config.read_stack_file(config.resolve_stack_path("broadcast"))
    for m in raw["models"]:
        m.pop("ladder", None)
    spec = config.parse(raw, "x.yaml")
    results = simulator.simulate(spec, step=10.0, faults=simulator.Faults(surge=(15 * 60, 0.9, 10)))
    chat = next(r for r in results if r.model == "chat-prefill")
    assert chat.unmet_pct > spec.slo.unmet_tokens_pct and chat.shed_tokens == 0


def test_the_fallback_takes_its_share_of_what_it_has_spare() -> None:
    objects, cluster = _objects()
    spec = objects.spec
    chat = next(m for m in spec.models if m.name == "chat")
    plan = objects.plan.cluster(cluster.cluster.name).bounding("chat")
    manifest = next(o.manifest for u in cluster.units if u.component == "Autoscaler" and u.name == "chat"
                    for o in u.objects if o.name == plan.name)
    surge = simulator.Faults(surge=(15 * 60, 0.9, 10))
    busy = simulator.replay(spec, chat, plan, manifest, 10.0, surge)
    steps = len(busy.times)
    idle = simulator.Trace(times=list(busy.times), demand=[0.0] * steps, capacity=[1e15] * steps)
    roomy = simulator.replay(spec, chat, plan, manifest, 10.0, surge, spare_of=idle)
    full = simulator.Trace(times=list(busy.times), demand=[1.0] * steps, capacity=[1.0] * steps)
    assert simulator.replay(spec, chat, plan, manifest, 10.0, surge, spare_of=full).fallback_tokens == 0
    assert busy.fallback_tokens == 0   # no fallback replay given: nothing spare
    assert roomy.fallback_tokens > 0 and roomy.shed_tokens < busy.shed_tokens
    # The share: at most fallbackShare of what the cap leaves.
    assert roomy.fallback_tokens <= chat.ladder.fallback_share * (busy.demand_tokens - busy.shortened_tokens)


@pytest.mark.parametrize("value", ["19:45:0.9", "19:45:x:10", "19:45:0.9:0", "19:45:nan:10", "25:61:0.9:10",
                                   "19:45:9:10"])
def test_a_bad_surge_is_exit_2_with_one_line(capsys: pytest.CaptureFixture, value: str) -> None:
    code, out, err = _run(capsys, "simulate", "broadcast", "--surge", value)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--surge" in err


def test_ladder_thresholds_follow_the_policy() -> None:
    spec = nights.spec("broadcast")
    cap, fallback = admission.ladder_thresholds(spec)
    assert cap.value == spec.policy.target_utilisation and fallback.value == 1.0
