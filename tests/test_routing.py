"""Prefix- and load-aware routing: each colocated model's HTTPRoute sends to its InferencePool, whose
endpoint picker reads the engine's real metric names, is sized from the plan, and may talk only where
it must; a disaggregated model's route sends to its router's Service and it has no pool or picker.

Sources: llm-d/llm-d-router v0.10.0 (config/charts/routerlib, pkg/epp/server/options.go,
pkg/epp/framework/plugins/datalayer/extractor/metrics/factories.go); envoyproxy/ai-gateway v1.1.0
(internal/extensionserver/inferencepool.go); the vllm 0.11.0 and sglang 0.5.4 wheels' metrics.
"""
from __future__ import annotations

import math

import pytest
import yaml

import nights
from peaknight.builders import inference, routing, shards
from peaknight.builders.objects import Obj
from peaknight.plan import picker, saturation
from peaknight.review import schema as k8s_schema
from peaknight.spec import config, profiles


@pytest.fixture(scope="module")
def broadcast():
    return nights.objects("broadcast")


def objects(ev, index: int = 0) -> dict[str, Obj]:
    return {o.key: o for u in ev.clusters[index].units for o in u.objects}


def test_route_sends_to_the_pool_that_selects_the_serving_pods(broadcast):
    """A colocated model's route sends to its InferencePool; a disaggregated model's to its router's
    Service `<model>` (SGLang's router picks the prefill and decode servers): no pool, no EPP."""
    ns = "gala-2026-inference"
    objs = objects(broadcast)
    colocated = disaggregated = 0
    for model in broadcast.spec.models:
        phases = broadcast.plan.clusters[0].phases(model.name)
        route = objs[f"httproute.{ns}.{model.name}"].manifest
        service = objs[f"service.{ns}.{model.name}"].manifest["spec"]
        # The model first; a ladder's fallback (its Service, at weight 0 until step 2) after it.
        primaries = {repr({k: v for k, v in r["backendRefs"][0].items() if k != "weight"}) for r in route["spec"]["rules"]}
        fallback = [{"name": model.ladder.fallback, "port": 8000, "weight": 0}] if model.ladder and model.ladder.fallback else []
        assert all(r["backendRefs"][-len(fallback):] == fallback for r in route["spec"]["rules"] if fallback)
        if len(phases) > 1:
            assert all(r["backendRefs"][1:] == fallback for r in route["spec"]["rules"])
            disaggregated += 1
            assert primaries == {repr({"name": model.name, "port": 8000})}
            assert service["selector"] == inference.router_selector(broadcast.spec, model)
            assert f"inferencepool.{ns}.{model.name}" not in objs
            assert not [k for k in objs if k.endswith(f".{model.name}-epp")]
            continue
        colocated += 1
        (plan,) = phases
        k = int(picker.plan(broadcast.spec.policy, model, plan).shards.value)
        names = shards.names(model, k)
        # One pool per picker shard (finding 7), weighted by its pods at the autoscaler's ceiling.
        for rule in route["spec"]["rules"]:
            pools = rule["backendRefs"][:k]
            assert [p["name"] for p in pools] == names and {p["kind"] for p in pools} == {"InferencePool"}
            assert sum(p["weight"] for p in pools) == plan.max_replicas.value
        for i, name in enumerate(names):
            pool = objs[f"inferencepool.{ns}.{name}"].manifest["spec"]
            # The pool selects its shard of the pods the Service selects: a group's leader where a
            # replica spans nodes.
            assert pool["selector"]["matchLabels"] == {**service["selector"], **shards.label(k, i)}
            assert (pool["selector"]["matchLabels"].get(inference.LWS_INDEX_LABEL) == "0") is (plan.nodes_per_replica > 1)
            assert pool["targetPorts"] == [{"number": 8000}]
            assert pool["endpointPickerRef"] == {"name": f"{name}-epp", "port": {"number": 9002},
                                                 "failureMode": "FailOpen"}
            assert k8s_schema.validate(objs[f"inferencepool.{ns}.{name}"].manifest) == []
        assert k8s_schema.validate(route) == []
    assert colocated and disaggregated  # the shipped broadcast has both kinds


def _check_epp_config(cfg, spec, model, plan) -> None:
    want = {"vllm": ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
                     "vllm:cache_config_info"),
            "sglang": ("sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage", "")}
    assert (cfg["apiVersion"], cfg["kind"]) == ("llm-d.ai/v1alpha1", "EndpointPickerConfig")
    plugins = {p["type"]: p.get("parameters") for p in cfg["plugins"]}
    extractor = plugins["core-metrics-extractor"]
    (engine,) = extractor["engineConfigs"]
    assert extractor["defaultEngine"] == engine["name"] == model.engine.value
    assert (engine["queuedRequestsSpec"], engine["runningRequestsSpec"], engine["kvUsageSpec"],
            engine["cacheInfoSpec"]) == want[model.engine.value]
    assert plugins["approx-prefix-cache-producer"] == {"maxPrefixTokensToMatch": model.max_model_len}
    # The load-aware scorer reaches 0 at the autoscaler's queue target.
    target = saturation.queue_target(spec.policy, spec.slo, plan)
    assert plugins["load-aware-scorer"] == {"threshold": int(target.value)}
    (profile,) = cfg["schedulingProfiles"]
    weights = {p["pluginRef"]: p.get("weight") for p in profile["plugins"]}
    # llm-d-router's chart default weights (queue 2, KV 2, prefix 3), plus load-aware.
    assert weights == {"queue-scorer": 2, "kv-cache-utilization-scorer": 2, "prefix-cache-scorer": 3,
                       "load-aware-scorer": 1, "max-score-picker": None}
    every = {p["type"] for p in cfg["plugins"]}
    assert set(weights) <= every


def test_epp_reads_the_engines_real_metric_names(broadcast):
    """The rendered picker of the colocated model (greetings, vLLM); a disaggregated model (chat,
    deep-think: SGLang's router) has none. SGLang's names are checked on the config a colocated
    SGLang model would get."""
    import dataclasses

    from peaknight.spec.stack import Engine

    ns = "gala-2026-inference"
    objs = objects(broadcast)
    spec = broadcast.spec
    cplan = broadcast.plan.clusters[0]
    colocated = [m for m in spec.models if len(cplan.phases(m.name)) == 1]
    assert [m.name for m in colocated] == ["greetings"]
    for model in spec.models:
        if model not in colocated:
            assert f"configmap.{ns}.{model.name}-epp" not in objs
            continue
        cfg = yaml.safe_load(objs[f"configmap.{ns}.{model.name}-epp"].manifest["data"]["epp.yaml"])
        _check_epp_config(cfg, spec, model, cplan.model(model.name))
    greetings = colocated[0]
    sglang = dataclasses.replace(greetings, engine=Engine.SGLANG)
    _check_epp_config(routing.epp_config(spec, sglang, cplan.model(greetings.name)), spec, sglang,
                      cplan.model(greetings.name))


def _per_pod_by_hand(demand_tps: float, input_share: float, pods: int) -> float:
    """Cores one serving pod costs its picker: its share of the prompts the picker reads (the
    benchmark's 98.8 req/s x 100,000 tokens on 46.5 cores) plus 7.5 idle cores per 100 pods."""
    return demand_tps * input_share / (98.8 * 100_000 / 46.5) / pods + 7.5 / 100


def test_epp_shards_leader_election_security_and_sizing(broadcast):
    """Finding 7: a picker scrapes every pod of its pool (7.5 idle cores per 100 pods) and, under
    leader election, one pod does it all; broadcast greetings' 580 pods at the ceiling (in each of the
    64 clusters) would need a 62-vCPU picker, so the pool is split into shards of at most N pods, each
    picker at most 32 vCPU."""
    import dataclasses

    from peaknight.plan.figure import Figure

    ns = "gala-2026-inference"
    objs = objects(broadcast)
    spec = broadcast.spec
    greetings = next(m for m in spec.models if m.name == "greetings")  # the colocated model: it has a picker
    plan = broadcast.plan.clusters[0].model("greetings")
    h, u = spec.policy.headroom, spec.policy.target_utilisation
    # By hand (64 clusters, share 1/64): 8,000,000,000 tok/min / 60 / 64 = 2,083,333 tok/s x 0.6 /
    # 212,473 = 5.88 cores over 580 pods (ceil(464 x burst 1.25)) + 0.075 = 0.0851 cores a pod; one
    # 32-vCPU picker holds floor(32 x 0.85 / 1.05 / 0.0851) = 304 pods; ceil(580 / 304) = 2 shards of
    # 290 pods; ceil(290 x 0.0851 x 1.05 / 0.85) = 31 vCPU.
    per_pod = _per_pod_by_hand(plan.demand_tps.value, greetings.input_share, 580)
    assert plan.max_replicas.value == 580
    unsharded = math.ceil(580 * per_pod * h / u)
    assert unsharded == 62             # what one picker would need: over the guide's largest, 32
    most = math.floor(32 * u / h / per_pod)
    assert most == 304 and math.ceil(580 / most) == 2
    sized = picker.plan(spec.policy, greetings, plan)
    assert (sized.shards.value, sized.pods_per_shard.value, sized.vcpu.value) == (2, 304, 31)
    assert math.ceil(290 * per_pod * h / u) == 31
    names = shards.names(greetings, 2)
    assert names == [f"greetings-s{i}" for i in range(2)] and f"deployment.{ns}.greetings-epp" not in objs
    for i, name in enumerate(names):
        dep = objs[f"deployment.{ns}.{name}-epp"].manifest
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["image"] == spec.router.image and "@sha256:" in c["image"]
        args = c["args"]
        assert args[args.index("--pool-name") + 1] == name and args[args.index("--pool-namespace") + 1] == ns
        assert args[args.index("--config-file") + 1] == "/config/epp.yaml"
        # One prefix index per pool, so leader election: only the leader is ready and serves.
        assert "--enable-pprof=false" in args and "--ha-enable-leader-election" in args
        assert c["readinessProbe"]["grpc"] == {"port": 9003, "service": "inference-extension"}
        assert pod["securityContext"]["runAsUser"] == 65532 and c["securityContext"]["readOnlyRootFilesystem"]
        assert c["resources"]["requests"]["cpu"] == "31" and dep["spec"]["replicas"] == 2
        assert "290 pods in the largest shard" in dep["metadata"]["annotations"]["peaknight.io/epp-vcpu"]
        # The picker's pods and Service are its shard's alone.
        assert dep["spec"]["selector"]["matchLabels"]["peaknight.io/shard"] == f"s{i}"
        service = objs[f"service.{ns}.{name}-epp"].manifest
        assert service["spec"]["clusterIP"] == "None"  # every EPP pod resolved by the gateway's STRICT_DNS cluster
        assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
        # The shard's own servers: a Deployment whose pods the shard's pool selects.
        servers = objs[f"deployment.{ns}.{name}"].manifest
        pool = objs[f"inferencepool.{ns}.{name}"].manifest["spec"]["selector"]["matchLabels"]
        assert pool.items() <= servers["spec"]["template"]["metadata"]["labels"].items()
        assert servers["spec"]["selector"]["matchLabels"] == pool
        for obj in (dep, service, servers):
            assert k8s_schema.validate(obj) == []
    # The shards' servers and autoscalers add up to the model's: replicas at the floor, the ceiling.
    assert f"deployment.{ns}.greetings" not in objs
    assert sum(objs[f"deployment.{ns}.{n}"].manifest["spec"]["replicas"] for n in names) == plan.floor_replicas.value
    scalers = [objs[f"scaledobject.{ns}.{n}"].manifest["spec"] for n in names]
    assert sum(s["maxReplicaCount"] for s in scalers) == 580 and [s["maxReplicaCount"] for s in scalers] == [290, 290]
    assert [s["scaleTargetRef"]["name"] for s in scalers] == names
    # Each shard's autoscaler reads the model's whole signal against 2 x the per-replica target.
    whole = {t["name"]: t["metadata"]["threshold"] for t in _unsplit_scaler(spec, greetings, plan)["triggers"]
             if t["type"] == "prometheus"}
    for s in scalers:
        for t in s["triggers"]:
            if t["type"] == "prometheus":
                assert float(t["metadata"]["threshold"]) == pytest.approx(2 * float(whole[t["name"]]))
    # The idle cost follows the pods: at 10x greetings' demand and pods, more shards, none over 32 vCPU.
    busy = dataclasses.replace(plan, demand_tps=Figure(plan.demand_tps.value * 10, "x10"),
                               max_replicas=Figure(5800, "x10"))
    sized = picker.plan(spec.policy, greetings, busy)
    assert sized.shards.value == math.ceil(5800 / 304) == 20 and sized.vcpu.value <= 32
    # A small pool is one shard, named as before.
    small = dataclasses.replace(plan, demand_tps=Figure(plan.demand_tps.value / 100, "/100"), max_replicas=Figure(6, "/100"))
    assert picker.plan(spec.policy, greetings, small).shards.value == 1 and shards.names(greetings, 1) == ["greetings"]
    role = objs[f"role.{ns}.greetings-epp"].manifest
    assert {res for rule in role["rules"] for res in rule["resources"]} >= {"pods", "inferencepools"}
    assert all(rule["verbs"] == ["get", "list", "watch"] for rule in role["rules"] if rule["resources"] != ["leases"])
    # Leader election's Lease: what controller-runtime's resource lock reads and writes.
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]} \
        in role["rules"]
    # A disaggregated model has no picker to size.
    assert f"deployment.{ns}.chat-epp" not in objs and f"deployment.{ns}.chat-router" in objs


def _unsplit_scaler(spec, model, plan):
    from peaknight.builders import autoscaling
    from peaknight.builders.parts import InferenceServiceArgs
    cluster = spec.clusters[0]
    service = InferenceServiceArgs(scope=spec, cluster=cluster, model=model, plan=plan)
    (obj,) = autoscaling.build(spec, spec.slo, cluster, model, (plan,), service.whole).objects
    return obj.manifest["spec"]


def test_network_policies_open_exactly_the_router_flows(broadcast):
    ns = "gala-2026-inference"
    objs = objects(broadcast)
    epp = objs[f"networkpolicy.{ns}.greetings-epp"].manifest["spec"]
    assert epp["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "greetings-epp",
                                                  "peaknight.io/event": "gala-2026"}}
    grpc, metrics = epp["ingress"]
    assert grpc["ports"] == [{"protocol": "TCP", "port": 9002}]
    assert grpc["from"][0]["podSelector"]["matchLabels"]["gateway.envoyproxy.io/owning-gateway-name"] == "gala-2026-gateway"
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9090}]
    assert metrics["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    to_models, to_api = epp["egress"]
    assert to_models["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert to_models["to"][0]["podSelector"]["matchLabels"] == objs[f"service.{ns}.greetings"].manifest["spec"]["selector"]
    assert to_api == {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}
    serving = objs[f"networkpolicy.{ns}.greetings-serving"].manifest["spec"]
    assert {"podSelector": epp["podSelector"]} in serving["ingress"][0]["from"]
    # A disaggregated model has no picker: no policy for one, and its servers admit no picker.
    assert f"networkpolicy.{ns}.chat-epp" not in objs
    chat = objs[f"networkpolicy.{ns}.chat-serving"].manifest["spec"]
    assert not [peer for rule in chat["ingress"] for peer in rule["from"]
                if peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name", "").endswith("-epp")]


def test_router_image_must_be_pinned_in_a_broadcast(tmp_path):
    text = config.resolve_stack_path("broadcast").read_text()
    pinned = "endpoint-picker:v0.10.0@sha256:" + "0" * 64
    assert pinned in text
    path = tmp_path / "x.yaml"
    path.write_text(text.replace(pinned, "endpoint-picker:v0.10.0"))
    with pytest.raises(config.ConfigError) as err:
        config.load_stack(str(path))
    assert [str(p) for p in err.value.problems] == [
        f"{path}: peaknight:router.image: expected an image pinned by digest (…@sha256:<64 hex>) in a broadcast "
        "stack: set peaknight:router.image to ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0@sha256:<your "
        "registry's digest> (crane digest ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0); found "
        "'ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0', the kit's default for a stack that does not set it"]


# greetings is the colocated model: its endpoint picker is greetings-epp, its picker shards
# greetings-s<i>; deep-think is no fallback, so renaming it leaves nothing else to refuse.
@pytest.mark.parametrize("name, suffix, named", [
    ("greetings-epp", "-epp", "endpoint picker is named so"),
    ("greetings-s3", "-s<number>", "picker shards are named so"),
])
def test_a_model_named_after_another_models_picker_is_refused(tmp_path, name, suffix, named):
    text = config.resolve_stack_path("broadcast").read_text()
    path = tmp_path / "x.yaml"
    path.write_text(text.replace("- name: deep-think", f"- name: {name}", 1))
    with pytest.raises(config.ConfigError) as err:
        config.load_stack(str(path))
    assert [str(p) for p in err.value.problems] == [
        f"{path}: peaknight:models[2].name: expected a name other than 'greetings' + '{suffix}' (that model's "
        f"{named}); found '{name}'"]


def test_a_sharded_models_ladder_fallback_keeps_its_pools_weights(broadcast):
    """Step 2 of the ladder on a model split into picker shards: the pools keep their weights (their
    pods at the ceiling) and the fallback, after them, gets share / (1 - share) of their sum; back
    at 0 it gets none (builders/shards.py, monitoring.weight_patch)."""
    import dataclasses
    import json

    from peaknight.builders import monitoring
    from peaknight.spec.stack import Ladder

    spec = broadcast.spec
    plan = broadcast.plan.clusters[0].model("greetings")
    greetings = next(m for m in spec.models if m.name == "greetings")
    laddered = dataclasses.replace(greetings, ladder=Ladder(cap_output_tokens=512, fallback="deep-think",
                                                            fallback_share=0.3))
    # broadcast greetings: 2 shards of its 580 pods at the ceiling (test_epp_shards_leader_election_...)
    route = shards.split_service(inference.build(spec, spec.clusters[0], laddered, plan), laddered, 2,
                                 int(plan.max_replicas.value))
    (r,) = [o.manifest for o in route.objects if o.kind == "HTTPRoute"]
    refs = r["spec"]["rules"][0]["backendRefs"]
    assert [ref["name"] for ref in refs] == [f"greetings-s{i}" for i in range(2)] + ["deep-think"]
    assert refs[-1]["weight"] == 0 and sum(ref["weight"] for ref in refs[:2]) == 580

    def weights(share: float) -> list[int]:
        ops = json.loads(monitoring.weight_patch(spec, laddered, share, plan).split("-p '", 1)[1][:-1])
        return [op["value"] for op in ops if op["path"].startswith("/spec/rules/0/")]
    assert weights(0.3) == [ref["weight"] for ref in refs[:2]] + [round(580 * 0.3 / 0.7)]   # 249: 30%
    assert weights(0) == [ref["weight"] for ref in refs[:2]] + [0]
    assert weights(1.0) == [0] * 2 + [1]
