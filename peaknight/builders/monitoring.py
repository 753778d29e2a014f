"""Monitoring: the night's recording rules and alerts, one PrometheusRule per concern per cluster.

Every alert threshold comes from the capacity plan or the stack's SLO, and its annotations quote
the derivation (the same `Figure.why` the plan prints), so the SRE paged at 23:58 can check the
number by hand. Metric names come from each engine (peaknight/engines); the rules are checked and unit-tested with
the real `promtool` (tests/test_monitoring.py).
"""
from __future__ import annotations

import json
from typing import Any

from peaknight.provisioners import registry as provisioners
from peaknight.edges import logs as edge_logs
from peaknight.edges import live as edges
from peaknight.engines import registry as engines
from peaknight.engines.base import SERVING_PATHS, EngineMetrics
from peaknight.plan import admission
from peaknight.plan.capacity import ClusterPlan, EdgePlan, ModelPlan
from peaknight.builders import autoscaling, routing, runbook, shards
from peaknight.plan.picker import shard_pods
from peaknight.builders.inference import STARTUP_FLOOR_SECONDS, startup_budget
from peaknight.builders.objects import Scope, Obj, Unit, edge_namespace, inference_namespace, meta, monitoring_namespace
from peaknight.spec.stack import Cluster, Edge, Model, StackSpec

# Rate windows: 2m holds 8 samples at the ServiceMonitors' 15 s interval; quantiles smooth over 5m.
RATE_WINDOW = "2m"
QUANTILE_WINDOW = "5m"
# How long a breach must last before it pages: long enough to skip one slow scrape, short
# enough to act inside a 10-minute red-packet round.
CAPACITY_FOR = "2m"
LATENCY_FOR = "5m"
POOL_FOR = "5m"
# DCGM exporter (GPU Operator) with Kubernetes pod mapping: its ServiceMonitor keeps the exporter's
# `namespace`/`pod` labels (honorLabels: true), so utilisation joins to the model's pods by name.
DCGM_UTIL = "DCGM_FI_DEV_GPU_UTIL"
# Below this share of the planned peak (egress, or segment requests) the stream is idle and a
# ratio over its few requests means nothing.
EDGE_QUIET_SHARE = 0.01
# The same for a model: under 1% of its planned capacity a hit rate over its few prompts means nothing.
MODEL_QUIET_SHARE = 0.01
# A replica starts with an empty prefix cache: a pre-scale wave of new replicas lowers the achieved
# rate for the minutes they take to warm, not for a quarter of an hour.
PREFIX_CACHE_FOR = "15m"
EPP_DOWN_FOR = "1m"


def _num(x: float) -> str:
    """A threshold as PromQL reads it, without the rounding a short format would add."""
    return f"{x:.12g}"


def _matchers(**labels: str) -> str:
    """Label matchers without braces; a value starting with '~' is a regex match."""
    return ", ".join(f'{k}=~"{v[1:]}"' if v.startswith("~") else f'{k}="{v}"' for k, v in labels.items())


def _sel(**labels: str) -> str:
    """A label selector: the matchers in braces."""
    return "{" + _matchers(**labels) + "}"


def served_labels(model: Model) -> dict[str, str]:
    """The labels of the series a model's served tokens and load are read from: the recording rules,
    the alerts, and the autoscalers' triggers and External metrics. A disaggregated model's come
    from its decode servers alone (the Service their monitor scrapes through): every request ends
    there, counted once with its prompt and its output, while the prefill servers count the prompt
    again. Both its phases scale on them, each against its own group's target, so they keep the
    ratio the plan sized them at."""
    return {"model_name": model.name, **({"service": f"{model.name}-decode"} if model.disaggregated else {})}


def engine_tokens_per_second(e: EngineMetrics, matchers: str) -> str:
    """Input + output tokens/s of one engine's counters narrowed by PromQL `matchers` (no braces).
    The one expression behind the tokens/min recording rule and the autoscalers' token query."""
    return " + ".join(f"sum(rate({name}{{{matchers}}}[{RATE_WINDOW}]))"
                      for name in (e.prompt_tokens_metric, e.generation_tokens_metric))


def pod_pattern(workload: str, group_size: int = 1) -> str:
    """Regex of a workload's pod names: Deployment `<name>-<hash>-<5>` (or `<name>-s<i>-<hash>-<5>`, a
    picker shard's Deployment: builders/shards.py), LWS `<name>-<group>[-<worker>]`."""
    if group_size == 1:
        return f"{workload}(-s[0-9]+)?-[a-z0-9]{{6,10}}-[a-z0-9]{{5}}"
    return f"{workload}-[0-9]+(-[0-9]+)?"


def _quantile(histograms: tuple[str, ...], q: float, selector: str) -> str:
    """p-q over the first histogram name the engine exports (`or` falls back to older names)."""
    return " or ".join(f"histogram_quantile({q}, sum by (le) (rate({h}_bucket{selector}[{QUANTILE_WINDOW}])))"
                       for h in histograms)


def _alert(scope: Scope, name: str, expr: str, for_: str, severity: str, summary: str, description: str,
           **labels: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": for_,
            "labels": {"severity": severity, "event": scope.event.name, **labels},
            "annotations": {"summary": summary, "description": description, "runbook_url": runbook.url(scope, name)}}


def fleet_requests(metric: str, namespace: str, model: Model, workloads: tuple[ModelPlan, ...]) -> str:
    """Requests of the model's fleet (every phase) from a per-scheduler gauge: per server the mean
    over the ranks it exports, times the replica's ranks, summed. An SGLang server with DP
    attention exports one series per DP rank, and a group spanning nodes is scraped at its leader,
    which carries its own node's ranks only (8 of chat-decode's 128): a plain sum read a sixteenth."""
    terms = []
    for w in workloads:
        labels = {"namespace": namespace, "model_name": model.name, **({"service": w.name} if w.phase else {})}
        term = f"sum(avg by (pod) ({metric}{_sel(**labels)}))"
        ranks = autoscaling.ranks(model, w)
        terms.append(term if ranks == 1 else f"{term} * {ranks}")
    if len(terms) == 1:
        return terms[0]
    # A phase without series (its scrape broken: PeaknightEngineMetricsMissing says so) counts 0,
    # so the other phase's requests still reach the ladder.
    return " + ".join(f"({t} or vector(0))" for t in terms)


def model_group(spec: StackSpec, cluster: Cluster, model: Model, plan: ModelPlan,
                workloads: tuple[ModelPlan, ...] = ()) -> dict[str, Any]:
    """Recording rules for one model (tokens/min, queue, TTFT/ITL quantiles, KV cache, GPU use) and
    the alerts on them. `plan` is the workload whose capacity bounds the model; `workloads` all of
    them (a disaggregated model's prefill and decode groups: their pods, and its tokens and
    latencies read from the decode servers, where every request ends and is counted once)."""
    e = engines.metrics(model)
    ns = inference_namespace(spec)
    workloads = workloads or (plan,)
    served = served_labels(model)
    sel = _sel(namespace=ns, **served)
    # The prefix cache is looked up where prompts are prefilled: a disaggregated model's prefill servers.
    prefilled = _sel(namespace=ns, model_name=model.name, service=f"{model.name}-prefill") if model.disaggregated else sel
    pods = {"namespace": ns, "pod": "~" + "|".join(pod_pattern(w.name, w.nodes_per_replica) for w in workloads)}
    label = {"model": model.name}
    records = [
        # The night's headline number: input + output tokens, per minute.
        ("model:tokens_per_minute:rate" + RATE_WINDOW,
         f"({engine_tokens_per_second(e, _matchers(namespace=ns, **served))}) * 60"),
        ("model:requests_waiting:sum", fleet_requests(e.waiting_metric, ns, model, workloads)),
        ("model:requests_running:sum", fleet_requests(e.running_metric, ns, model, workloads)),
        *[(f"model:ttft_seconds:p{int(q * 100)}", _quantile((e.ttft_histogram,), q, sel)) for q in (0.5, 0.99)],
        *[(f"model:itl_seconds:p{int(q * 100)}", _quantile(e.itl_histograms, q, sel)) for q in (0.5, 0.99)],
        ("model:kv_cache_usage:avg", " or ".join(f"avg({g}{sel})" for g in e.kv_cache_gauges)),
        # Input tokens served from the prefix cache over those looked up. SGLang counts cached
        # tokens only once a request has had a hit, so no series yet is a rate of 0, not no answer.
        (f"model:prefix_cache_hit_ratio:rate{QUANTILE_WINDOW}",
         f"(sum(rate({e.prefix_cache_hits}{prefilled}[{QUANTILE_WINDOW}])) or vector(0)) / "
         f"sum(rate({e.prefix_cache_queries}{prefilled}[{QUANTILE_WINDOW}]))"),
        ("model:gpu_utilisation:avg", f"avg({DCGM_UTIL}{_sel(**pods)}) / 100"),
    ]
    rules: list[dict[str, Any]] = [{"record": r, "expr": x, "labels": dict(label)} for r, x in records]
    cap_min = plan.capacity_tps.value * 60
    rec = _sel(model=model.name)
    budget = startup_budget(model)
    slo = spec.slo
    where = f"{model.name} in {cluster.name}"
    rules += [
        _alert(spec, "PeaknightTokensAboveCapacity", f"model:tokens_per_minute:rate{RATE_WINDOW}{rec} > {_num(cap_min)}",
               CAPACITY_FOR, "critical", f"{where}: tokens/min above the {cap_min:,.0f} the plan provisioned",
               f"Planned capacity {plan.capacity_tps.value:,.0f} tok/s x 60 = {cap_min:,.0f} tok/min "
               f"({plan.capacity_tps.why}). Forecast peak: {plan.demand_tps.why}. Above it replicas run past "
               f"target utilisation and time to first token climbs: raise the floor or shed load.", **label),
        _alert(spec, "PeaknightReplicaNotReady",
               f"max by (pod) (kube_pod_status_phase{_sel(phase='Pending', **pods)} == 1 "
               f"or kube_pod_status_ready{_sel(condition='false', **pods)} == 1)",
               f"{budget}s", "critical", f"{where}: pod {{{{ $labels.pod }}}} not ready after the {budget} s start-up budget",
               f"Start-up budget {budget} s = max({STARTUP_FLOOR_SECONDS} s floor, 2 x the "
               f"{model.model_class} load time); the startup probe allows as much. A replica still pending or "
               f"unready after it is capacity the plan counts on and does not have: check node provisioning, "
               f"image pull and weights.", **label),
        _alert(spec, "PeaknightTtftP99OverSlo", f"model:ttft_seconds:p99{rec} > {_num(slo.ttft_p99_seconds)}",
               LATENCY_FOR, "critical", f"{where}: TTFT p99 over the {slo.ttft_p99_seconds:g} s SLO",
               f"peaknight:slo.ttftP99Seconds = {slo.ttft_p99_seconds:g} s (p99 of "
               f"{e.ttft_histogram} over {QUANTILE_WINDOW}). Usually queueing: compare requests waiting and "
               f"tokens/min with the plan.", **label),
        _alert(spec, "PeaknightItlP99OverSlo", f"model:itl_seconds:p99{rec} > {_num(slo.itl_p99_seconds)}",
               LATENCY_FOR, "warning", f"{where}: inter-token latency p99 over the {slo.itl_p99_seconds:g} s SLO",
               f"peaknight:slo.itlP99Seconds = {slo.itl_p99_seconds:g} s (p99 of {e.itl_histograms[0]} over "
               f"{QUANTILE_WINDOW}). Decode batches are too large for the GPUs: KV cache near full?", **label),
    ]
    rules += _prefix_cache_alerts(spec, cluster, model, plan)
    if not model.disaggregated:  # a colocated model's endpoint picker (a disaggregated one's router is SGLang's)
        rules += _router_alerts(spec, cluster, model, plan)
    rules += signal_rules(spec, cluster, model, plan, workloads)
    if model.ladder is not None:
        rules += ladder_rules(spec, cluster, model, plan)
    return {"name": f"peaknight.{model.name}", "rules": rules}


def planned_hit_rate(model: Model, plan: ModelPlan | None = None) -> float:
    """The hit rate the plan credits prefill with: what the routing delivers (plan/prefix_hits.py,
    whatever policy.allowUnproven says), or the stack's own where there is no plan."""
    return plan.prefix_hit_rate.value if plan is not None and plan.prefix_hit_rate is not None \
        else model.prefix_cache_hit_rate


def prefix_cache_floor(spec: StackSpec, model: Model, plan: ModelPlan | None = None) -> float:
    """The achieved prefix-cache hit rate below which prefill needs more than the plan's margin: the
    planner credits prefill with a hit rate h (planned_hit_rate), so prefill work per input token is
    (1 - h); a replica has 1 / targetUtilisation of its planned load in hand, so prefill work up to
    (1 - h) / util still fits, an achieved rate down to 1 - (1 - h) / util. <= 0: never short."""
    return 1 - (1 - planned_hit_rate(model, plan)) / spec.policy.target_utilisation


def _prefix_cache_alerts(spec: StackSpec, cluster: Cluster, model: Model, plan: ModelPlan) -> list[dict[str, Any]]:
    floor = prefix_cache_floor(spec, model, plan)
    if floor <= 0:
        return []  # even a cold cache leaves prefill within the plan's margin
    e = engines.metrics(model)
    label = {"model": model.name}
    rec = _sel(model=model.name)
    quiet = plan.capacity_tps.value * 60 * MODEL_QUIET_SHARE
    h, util = planned_hit_rate(model, plan), spec.policy.target_utilisation
    router = (f"router ({model.name}-router: its prefix tree is per router pod)" if model.disaggregated else
              f"endpoint picker ({routing.epp_name(model)}: its prefix index is per EPP pod)")
    return [_alert(
        spec, "PeaknightPrefixCacheHitRateLow",
        f"model:prefix_cache_hit_ratio:rate{QUANTILE_WINDOW}{rec} < {_num(floor)} and "
        f"model:tokens_per_minute:rate{RATE_WINDOW}{rec} > {_num(quiet)}",
        PREFIX_CACHE_FOR, "critical",
        f"{model.name} in {cluster.name}: prefix-cache hit rate under {floor:.3f}, the plan expects {h:g}",
        f"The plan credits prefill with a prefix-cache hit rate of {h:g} of input tokens from the prefix "
        f"cache ({e.prefix_cache_hits} over {e.prefix_cache_queries}). Prefill work per input token is then "
        f"{1 - h:.3f}; at target utilisation {util:g} a replica holds {1 / util:.3f}x its planned load, so prefill "
        f"fits down to an achieved rate of 1 - {1 - h:.3f} / {util:g} = {floor:.3f}. Below it the replicas "
        f"are short of prefill and TTFT climbs: check the {router} and whether the traffic shares the prefixes the forecast assumed. "
        f"Ignored under {quiet:,.0f} tok/min ({MODEL_QUIET_SHARE:g} of planned capacity).", **label)]


def _router_alerts(spec: StackSpec, cluster: Cluster, model: Model, plan: ModelPlan) -> list[dict[str, Any]]:
    """The endpoint picker: none answering is the model unreachable through the Gateway (the gateway
    never fails open); erroring above the share of tokens the night may leave unserved."""
    ns = inference_namespace(spec)
    epp = routing.epp_name(model)
    k = int(routing.pickers(spec, model, plan).shards.value)
    # One picker per shard (builders/shards.py): each shard without one is its share of requests failing.
    services = [f"{name}-epp" for name in shards.names(model, k)]
    sel = _sel(namespace=ns, service=epp) if k == 1 else _sel(namespace=ns, service="~" + "|".join(services))
    down = (f"(sum(up{sel}) or vector(0)) < 1" if k == 1 else
            f"(count(sum by (service) (up{sel}) >= 1) or vector(0)) < {k}")
    label = {"model": model.name}
    where = f"{model.name} in {cluster.name}"
    errors = spec.slo.unmet_tokens_pct / 100
    return [
        _alert(spec, "PeaknightEndpointPickerDown", down, EPP_DOWN_FOR, "critical",
               f"{where}: no endpoint picker answering" + (f" in one of its {k} shards" if k > 1 else ""),
               f"No {epp} pod is scraped up. Envoy AI Gateway's ext_proc filter never fails open, so every request "
               f"to {model.name} through the Gateway fails until one is back: check the Deployment {epp} in {ns} "
               if k == 1 else
               f"A shard of {model.name} has no picker pod scraped up ({', '.join(services)}). Envoy AI Gateway's "
               f"ext_proc filter never fails open, so the requests the route sends to that shard's InferencePool fail "
               f"until one is back: check the Deployment of the shard missing from `up` in {ns} "
               f"(image pull, RBAC on its InferencePool, the API server reachable).", **label),
        _alert(spec, "PeaknightEndpointPickerErrors",
               f"sum(rate(llm_d_epp_request_error_total{sel}[{RATE_WINDOW}])) / "
               f"sum(rate(llm_d_epp_request_total{sel}[{RATE_WINDOW}])) > {_num(errors)}",
               CAPACITY_FOR, "critical", f"{where}: endpoint picker errors over {errors:.2%} of requests",
               f"peaknight:slo.unmetTokensPct = {spec.slo.unmet_tokens_pct:g}%: an errored request is unserved, and "
               f"the night may leave at most that share unserved. llm_d_epp_request_error_total by error_code says "
               f"why; llm_d_epp_datalayer_poll_errors_total counts failed scrapes of the model pods.", **label),
    ]




def signal_rules(spec: StackSpec, cluster: Cluster, model: Model, plan: ModelPlan,
                 workloads: tuple[ModelPlan, ...]) -> list[dict[str, Any]]:
    """The autoscaler's inputs failing: the engine's token counters missing while replicas serve (the
    trigger then reads 0: ignoreNullValues), and KEDA's scaler errors, first as a warning, then as
    its fallback once they outlast fallback.failureThreshold polls (KEDA v2.20.2
    pkg/metricscollector/prommetrics.go: keda_scaler_detail_errors_total by namespace, scaledObject)."""
    e = engines.metrics(model)
    ns = inference_namespace(spec)
    label = {"model": model.name}
    where = f"{model.name} in {cluster.name}"
    pods = _sel(namespace=ns, pod="~" + "|".join(pod_pattern(w.name, w.nodes_per_replica) for w in workloads),
                condition="true")
    serving = f"count(kube_pod_status_ready{pods} == 1)"
    # The series the tokens and the autoscaler read: a disaggregated model's decode servers' alone
    # (the prefill servers' counters present do not feed them).
    served = served_labels(model)
    rules = [_alert(spec, "PeaknightEngineMetricsMissing",
                    f"absent({e.generation_tokens_metric}{_sel(namespace=ns, **served)}) and on() "
                    f"({serving}) > 0", "5m", "critical", f"{where}: replicas ready but no {e.generation_tokens_metric}",
                    f"Prometheus has no {e.generation_tokens_metric} for {model.name} while its replicas are ready: "
                    "the ServiceMonitor's scrape or a relabelling broke. The autoscaler reads no series as 0 tokens/s "
                    "(ignoreNullValues) and holds only the floor and the moment floors; the capacity and ladder "
                    f"alerts are blind. Check `kubectl -n {ns} get servicemonitor {served.get('service', model.name)}` "
                    "and the targets page.",
                    **label)]
    if cluster.autoscaler.value != "keda":
        return rules
    # The KEDA chart's ServiceMonitor (kedacore/charts v2.20.2 keda/templates/manager/servicemonitor.yaml)
    # does not honour labels: the target's namespace (keda) wins and KEDA's own `namespace` label,
    # the ScaledObject's, is kept as exported_namespace.
    scaled = "~" + "|".join(w.name for w in workloads)   # one ScaledObject per workload
    errors = f"sum(rate(keda_scaler_detail_errors_total{_sel(exported_namespace=ns, scaledObject=scaled)}[1m])) > 0"
    blind = autoscaling.FALLBACK_FAILURES * autoscaling.POLLING_SECONDS
    return rules + [
        _alert(spec, "PeaknightKedaScalerErrors", errors, "1m", "warning", f"{where}: KEDA cannot read its trigger",
               f"keda_scaler_detail_errors_total rises for ScaledObject {' or '.join(w.name for w in workloads)}: "
               f"the Prometheus query fails "
               f"({cluster.prometheus_url}). After {autoscaling.FALLBACK_FAILURES} failed polls KEDA falls back.",
               **label),
        _alert(spec, "PeaknightKedaFallbackActive", errors, f"{blind + 60}s", "critical",
               f"{where}: KEDA is on its fallback: the fleet no longer follows load",
               f"Scaler errors for over {autoscaling.FALLBACK_FAILURES} polls x {autoscaling.POLLING_SECONDS} s: KEDA "
               f"answers the fallback ({autoscaling.FALLBACK_BEHAVIOR}: the replicas running, at least the floor "
               f"{int(plan.floor_replicas.value)}); moment floors still rise, load does not scale. Fix Prometheus "
               f"({cluster.prometheus_url}), or raise the replicas by hand for the next moment.", **label),
    ]


def weight_patch(spec: StackSpec, model: Model, share: float, plan: ModelPlan | None = None) -> str:
    """The kubectl command that sets a ladder's fallback share on the model's route (step 2), or
    takes it back (share 0): every rule's two backends. A model split into picker shards
    (builders/shards.py; `plan` says how many) keeps its pools' weights, their pods at the ceiling,
    and its fallback, after them, gets share / (1 - share) of their sum."""
    k = 1 if plan is None else shards.count(spec.policy, model, plan)
    fallback = round(100 * share)
    if k == 1:
        ops = [{"op": "replace", "path": f"/spec/rules/{r}/backendRefs/{b}/weight", "value": w}
               for r in range(len(SERVING_PATHS)) for b, w in ((0, 100 - fallback), (1, fallback))]
    else:
        assert plan is not None
        pods = int(plan.max_replicas.value)
        weights = ([0] * k + [1] if share >= 1 else
                   [shard_pods(pods, k, i) for i in range(k)] + [round(pods * share / (1 - share))])
        ops = [{"op": "replace", "path": f"/spec/rules/{r}/backendRefs/{b}/weight", "value": w}
               for r in range(len(SERVING_PATHS)) for b, w in enumerate(weights)]
    return f"kubectl -n {inference_namespace(spec)} patch httproute {model.name} --type=json -p '{json.dumps(ops)}'"


def ladder_rules(spec: StackSpec, cluster: Cluster, model: Model, plan: ModelPlan) -> list[dict[str, Any]]:
    """The ladder's state as a number (0 none, 1 cap, 2 fallback, 3 shed) and the page when it is
    not 0. Thresholds: the plan's (plan/admission.py); ready replicas from kube-state-metrics (for a
    LeaderWorkerSet, the group leaders: they serve)."""
    assert model.ladder is not None and cluster is not None
    ns = inference_namespace(spec)
    label = {"model": model.name}
    rec = _sel(model=model.name)
    leaders = pod_pattern(plan.name) if plan.nodes_per_replica == 1 else f"{plan.name}-[0-9]+"
    tpm = plan.replica_tps.value * 60
    queue = admission.queue(spec, plan).value
    util = spec.policy.target_utilisation
    ladder = model.ladder
    step = (f"(model:ladder_utilisation:ratio{rec} >= bool {_num(util)})"
            f" + (model:requests_waiting:sum{rec} >= bool (model:ready_replicas:count{rec} * {_num(queue / 2)}))"
            f" + (model:requests_waiting:sum{rec} >= bool (model:ready_replicas:count{rec} * {_num(0.9 * queue)}))")
    records = [
        ("model:ready_replicas:count", f"count(kube_pod_status_ready{_sel(namespace=ns, pod='~' + leaders, condition='true')} == 1)"),
        ("model:ladder_utilisation:ratio", f"model:tokens_per_minute:rate{RATE_WINDOW}{rec} / "
                                           f"(model:ready_replicas:count{rec} * {_num(tpm)})"),
        ("model:ladder_step:current", step),
    ]
    where = f"{model.name} in {cluster.name}"
    fallback = (f"step 2 (the engine queue half full: {queue / 2:g} waiting requests per ready replica): send "
                f"{ladder.fallback_share:.0%} of requests to {ladder.fallback} with "
                f"`{weight_patch(spec, model, ladder.fallback_share, plan)}` and back with `{weight_patch(spec, model, 0, plan)}`; ") if ladder.fallback else         "step 2: no fallback model (ladder.fallback); "
    description = (
        f"Ladder step {{{{ $value }}}} of 3. Step 1 (tokens/min over {util:g} x the ready replicas' "
        f"{tpm:,.0f} tok/min each): have the assistant send max_tokens <= {ladder.cap_output_tokens} (the "
        f"gateway cannot rewrite a request body); {fallback}step 3 (the queue within 10% of its "
        f"{queue:g} requests per replica): the gateway refuses the overflow with 429 and Retry-After "
        f"{model.admission.retry_after_seconds} s by itself (BackendTrafficPolicy {model.name}). Undo each step "
        f"when the step falls back.")
    return [{"record": r, "expr": x, "labels": dict(label)} for r, x in records] + [
        _alert(spec, "PeaknightLadderStepActive", f"model:ladder_step:current{rec} >= 1", "1m", "warning",
               f"{where}: degradation ladder at step {{{{ $value }}}}", description, **label)]


def pool_group(scope: Scope, cluster: Cluster, plan: ClusterPlan) -> dict[str, Any]:
    """GPUs in use per node pool against the limit the plan set on it (as the cluster's provisioner
    counts them)."""
    rules: list[dict[str, Any]] = []
    for pool in plan.pools:
        usage = provisioners.for_cluster(cluster).gpus_in_use(pool.pool)
        limit = pool.gpu_limit.value
        label = {"nodepool": pool.pool}
        rules.append({"record": "nodepool:gpus_in_use:max", "expr": usage, "labels": label})
        rules.append(_alert(
            scope, "PeaknightNodePoolAtGpuLimit", f"{usage} >= {_num(limit)}", POOL_FOR, "critical",
            f"pool {pool.pool} in {cluster.name}: at its GPU limit of {limit:,.0f}",
            f"pool GPU limit = {limit:,.0f} = {pool.gpu_limit.why}. At the limit the provisioner "
            f"launches no node: a surge replica or a replaced node stays pending.", **label))
    for signal in provisioners.for_cluster(cluster).launch_failures():
        rules.append(_alert(scope, signal.alert, signal.expr, signal.for_, signal.severity,
                            f"{cluster.name}: {signal.summary}", signal.description))
    return {"name": "peaknight.pools", "rules": rules}


def _any_of(values: tuple[str, ...]) -> str:
    """A _sel value matching any of `values`."""
    return "~" + "|".join(values)


def _logged_rate(scope: Scope, edge: Edge, metric: str, role: str = "edge", **labels: str) -> str:
    """rate() of a log exporter counter (edge_logs) over one tier's pods (edge or shield), scraped
    via its metrics Service."""
    service = edges.metrics_name(edge, role)
    return f"rate({metric}{_sel(namespace=edge_namespace(scope), service=service, **labels)}[{RATE_WINDOW}])"


def _edge_records(scope: Scope, edge: Edge) -> list[dict[str, Any]]:
    """Egress from the pods' network counters (cAdvisor: what the NICs carry, for capacity); the
    rest from the log exporter's per-request counters, by cache status and status."""
    pods = _sel(namespace=edge_namespace(scope), pod="~" + pod_pattern(edge.name), interface="eth0")
    by_cache = f"edge_cache:requests:rate{RATE_WINDOW}"
    requests = _logged_rate(scope, edge, edge_logs.RESPONSES)
    gbps = "* 8 / 1e9"
    records = (
        (f"edge:egress_gbps:rate{RATE_WINDOW}",
         f"sum(max by (pod) (rate(container_network_transmit_bytes_total{pods}[{RATE_WINDOW}]))) {gbps}"),
        (f"edge:requests:rate{RATE_WINDOW}", f"sum({requests})"),
        (by_cache, f"sum by (cache) ({requests})"),
        # The cache's own verdict per request: answered from it, over every request it could answer.
        (f"edge:hit_ratio:rate{RATE_WINDOW}",
         f"sum({by_cache}{_sel(edge=edge.name, cache=_any_of(edge_logs.HITS))}) / "
         f"sum({by_cache}{_sel(edge=edge.name, cache=_any_of(edge_logs.HITS + edge_logs.FILLS))})"),
        # What the origins send: the bodies of the responses the shields fetched from them (the
        # edges' own fills come from the shields).
        (f"edge:origin_gbps:rate{RATE_WINDOW}",
         f"sum({_logged_rate(scope, edge, edge_logs.RESPONSE_BYTES, 'shield', cache=_any_of(edge_logs.FILLS))}) {gbps}"),
        (f"edge:shield_fetch_gbps:rate{RATE_WINDOW}",
         f"sum({_logged_rate(scope, edge, edge_logs.RESPONSE_BYTES, cache=_any_of(edge_logs.FILLS))}) {gbps}"),
        (f"edge:error_ratio:rate{RATE_WINDOW}",
         f"sum({_logged_rate(scope, edge, edge_logs.RESPONSES, status='~5..')}) / sum({requests})"),
    )
    return [{"record": r, "expr": x, "labels": {"edge": edge.name}} for r, x in records]


def edge_group(spec: StackSpec, cluster: Cluster, edge: Edge, plan: EdgePlan) -> dict[str, Any]:
    """The edge's recording rules and the alerts on them: hit ratio and 5xx ratio against the SLO
    while the stream is live, egress against the planned capacity."""
    rec = _sel(edge=edge.name)
    label = {"edge": edge.name}
    slo = spec.slo
    peak, cap = plan.egress_gbps.value, plan.capacity_gbps.value
    floor = peak * EDGE_QUIET_SHARE
    # Every live viewer fetches at least one segment per segment duration.
    segments = plan.viewers.value / edge.segment_seconds
    min_requests = segments * EDGE_QUIET_SHARE
    where = f"edge {edge.name} in {cluster.name}"
    rules = _edge_records(spec, edge) + [
        _alert(spec, "PeaknightEdgeHitRatioLow",
               f"edge:hit_ratio:rate{RATE_WINDOW}{rec} < {_num(slo.edge_hit_ratio)} and "
               f"edge:egress_gbps:rate{RATE_WINDOW}{rec} > {_num(floor)}",
               LATENCY_FOR, "critical", f"{where}: cache hit ratio under the {slo.edge_hit_ratio:g} SLO",
               f"peaknight:slo.edgeHitRatio = {slo.edge_hit_ratio:g}: share of cacheable requests answered from "
               f"the cache ({'/'.join(edge_logs.HITS)} over those and {'/'.join(edge_logs.FILLS)}). Each miss "
               f"is a request on the origins, and playlists are generated per request there: check "
               f"edge_cache:requests:rate{RATE_WINDOW} by cache status and edge:origin_gbps:rate{RATE_WINDOW} "
               f"(at the planned peak of {peak:,.1f} Gbps, {plan.egress_gbps.why}). Ignored under "
               f"{floor:,.2f} Gbps ({EDGE_QUIET_SHARE:g} of the peak), when the stream is idle.", **label),
        _alert(spec, "PeaknightEdgeErrorRatioHigh",
               f"edge:error_ratio:rate{RATE_WINDOW}{rec} > {_num(slo.edge_error_ratio)} and "
               f"edge:requests:rate{RATE_WINDOW}{rec} > {_num(min_requests)}",
               CAPACITY_FOR, "critical", f"{where}: 5xx over the {slo.edge_error_ratio:g} SLO",
               f"peaknight:slo.edgeErrorRatio = {slo.edge_error_ratio:g} of viewer responses may be 5xx. "
               f"502/504: no origin answered and nothing stale was cached; 503: the origin could not satisfy an "
               f"LL-HLS blocking reload within 3 target durations (the stream stalled). Ignored under "
               f"{min_requests:,.0f} requests/s ({EDGE_QUIET_SHARE:g} of the peak's {segments:,.0f} segment "
               f"requests/s = {plan.viewers.value:,.0f} viewers / {edge.segment_seconds:g} s segments), when "
               f"the stream is idle.", **label),
        _alert(spec, "PeaknightEdgeEgressAboveCapacity", f"edge:egress_gbps:rate{RATE_WINDOW}{rec} > {_num(cap)}",
               CAPACITY_FOR, "critical", f"{where}: egress above the {cap:,.1f} Gbps the plan provisioned",
               f"Planned capacity {cap:,.1f} Gbps ({plan.capacity_gbps.why}); forecast peak "
               f"{peak:,.1f} Gbps ({plan.egress_gbps.why}).", **label),
    ]
    return {"name": f"peaknight.edge.{edge.name}", "rules": rules}


def rule_object(scope: Scope, name: str, group: dict[str, Any]) -> Obj:
    return Obj({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": meta(scope, "monitoring", name, monitoring_namespace(scope)),
                "spec": {"groups": [group]}})


def build(spec: StackSpec, cluster: Cluster, plan: ClusterPlan) -> Unit:
    objs = [rule_object(spec, f"rules-{m.name}", model_group(spec, cluster, m, plan.bounding(m.name),
                                                                          plan.phases(m.name)))
            for m in spec.models]
    objs.append(rule_object(spec, "rules-pools", pool_group(spec, cluster, plan)))
    objs += [rule_object(spec, f"rules-edge-{e.name}", edge_group(spec, cluster, e, plan.edge(e.name)))
             for e in spec.edges]
    return Unit("Monitoring", cluster.name, tuple(objs))
