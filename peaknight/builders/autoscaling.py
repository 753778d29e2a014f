"""Autoscalers: one per inference workload per cluster, pre-scaling ahead of the night's moments.

A GPU replica of a large model takes many minutes to serve (plan/startup.ready_seconds), so a purely
reactive autoscaler misses a one-minute ramp. The kit's KEDA ScaledObject therefore carries:

- a Prometheus trigger on the tokens/s the replicas serve, target = one replica's capacity at the
  stack's target utilisation (the planner's own numbers), for the load nobody forecast;
- two on what saturates a replica before its token rate does (plan/saturation.py): waiting
  requests (target: the queue one replica clears within the TTFT objective, per scheduler rank)
  and KV-cache use (target: policy.targetUtilisation of the cache), each from the engine's own
  metric names, read from the workload's own servers (a prefill group's from the prefill
  servers) and averaged per server over its ranks: an SGLang server with DP attention exports one
  series per DP rank (8 on a leader), and a sum over them read 8 ranks at 11% as 0.88 of a replica;
- one cron trigger per moment holding the floor at the plan's replicas for that moment, from the
  moment minus its lead (startup.lead: cold when the moment needs more nodes than any earlier
  floor, warm otherwise), in the event's time zone. KEDA feeds every trigger to one HPA and the
  HPA takes the highest recommendation, so a cron trigger is a floor (keda.sh/docs scalers/cron;
  HPA "max over metrics").

In a broadcast each moment's floor is held until the window ends, so the floors only ever rise
during the show (a staircase): the provisioner's budget freezes the pool's nodes for the window
anyway, so a replica removed mid-show would free no GPU and be cold for the next moment. Above
the floors, replicas the load signal added are kept for the HPA's longest stabilisation window
(an hour). After the window the floors lapse and the fleet scales down on its own: no post-show
change is needed. Rehearsal floors last only while their moment's load is up, with the HPA's
normal 5-minute cool-down and, with scaleToZero, 0 replicas outside a window-long cron trigger
that starts one cold lead before the window.

Clusters whose `autoscaler` is `hpa` get a plain autoscaling/v2 HPA: the same three metrics (served
through prometheus-adapter as External metrics, from the same queries) and behaviour, but HPA has no schedule, so its
minReplicas is the highest floor any moment needs, held all night; it cannot scale to zero.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Callable

from peaknight.engines import registry as engines
from peaknight.plan import saturation, startup
from peaknight.plan.gaps import MAX_STABILIZATION_SECONDS
from peaknight.plan.capacity import Figure, ModelPlan
from peaknight.spec.forecast import moment_end
from peaknight.builders.monitoring import engine_tokens_per_second, served_labels
from peaknight.builders.objects import Scope, Obj, Unit, inference_namespace, meta
from peaknight.spec.stack import AutoscalerKind, Cluster, Model, Slo, Stage
from peaknight.spec.timeline import cron_at

# KEDA's own checks (activation, scale to/from zero). 15 s as in the vLLM production-stack and GKE
# anchors (FACTS); KEDA's default is 30 s. 1<->N scaling follows the HPA's 15 s sync instead.
POLLING_SECONDS = 15
# KEDA's default: wait 5 min after the last active trigger before scaling to zero (rehearsal only).
COOLDOWN_SECONDS = 300
# After 3 failed Prometheus reads KEDA scales to the fallback replicas (FACTS: anchors use 3).
FALLBACK_FAILURES = 3
# While Prometheus fails, never below the replicas already running (KEDA ScaledObject
# spec.fallback.behavior, pinned CRD 2.20.2): blind, the fleet holds; it does not jump anywhere.
FALLBACK_BEHAVIOR = "currentReplicasIfHigher"
HPA_SYNC_SECONDS = 15
# One token/s wakes a scaled-to-zero model; at zero replicas nothing is served, so in practice
# only the window's cron trigger wakes it.
ACTIVATION_TPS = 1
EXTERNAL_METRIC = "peaknight_model_tokens_per_second"
SCALE_TARGET_FIELD = "spec.replicas"


def token_series(matchers: str) -> str:
    """The engines' token counters (engines.token_counters) narrowed by PromQL label `matchers`."""
    return f'{{__name__=~"{"|".join(engines.token_counters())}",{matchers}}}'


def tokens_per_second(matchers: str) -> str:
    """Input + output tokens/s of the series `matchers` select. The one PromQL behind KEDA's trigger,
    the HPA's query annotation and prometheus-adapter's external rule (which passes the template
    `<<.LabelMatchers>>`), so the three cannot drift apart in metric names or rate window.

    One sum per engine, joined by `or`: a model runs one engine, so exactly one term has series, and
    a lost target still answers nothing (an error, not zero). Not rate() over a name regex: the
    counters of one pod differ only in their name, which rate() drops, and the vector is invalid."""
    return " or ".join(f"({engine_tokens_per_second(e.metrics, matchers)})" for e in engines.ENGINES.values())


def _series(names: list[str], matchers: str) -> str:
    return f'{{__name__=~"{"|".join(names)}",{matchers}}}'


def _per_server(names: list[str], matchers: str) -> str:
    """Per server (pod), the mean of its ranks' series, summed over servers: servers' worth. Of the
    first of `names` that has series: a model runs one engine (and vLLM's older KV gauge name is a
    fallback), so one term answers; a lost target answers nothing, not 0. Where a group spans
    nodes only its leader is scraped, and its ranks stand for the group's (the prefill servers
    balance round robin over decode's DP ranks: `--load-balance-method round_robin`)."""
    return " or ".join(f"sum(avg by (pod) ({name}{{{matchers}}}))" for name in names)


def _waiting() -> list[str]:
    return [e.metrics.waiting_metric for e in engines.ENGINES.values()]


def _kv_gauges() -> list[str]:
    return [g for e in engines.ENGINES.values() for g in e.metrics.kv_cache_gauges]


def requests_waiting(matchers: str) -> str:
    """Requests waiting for a slot per scheduler rank, a server's mean, summed over the servers
    `matchers` select (against a per-rank target: saturation.rank_queue_target)."""
    return _per_server(_waiting(), matchers)


def kv_cache_in_use(matchers: str) -> str:
    """KV-cache use (0-1), a server's mean over its ranks, summed over the servers `matchers`
    select: replicas' worth."""
    return _per_server(_kv_gauges(), matchers)


@dataclass(frozen=True)
class Signal:
    """One load signal the autoscaler scales on: its KEDA trigger name, its External metric name
    (HPA via prometheus-adapter), the series it reads and its query (PromQL label matchers in, one
    expression out), its per-replica target from the plan, and whose series it reads: the model's
    served series (`own_servers` False: the tokens, counted once where requests end) or the
    workload's own servers (a prefill group's queue is the prefill servers')."""

    trigger: str
    external_metric: str
    series: Callable[[str], str]
    query: Callable[[str], str]
    target: Callable[[Scope, Slo, Model, ModelPlan], Figure]
    integer: bool = True  # the target is a count (written without decimals)
    own_servers: bool = False

    def threshold(self, scope: Scope, slo: Slo, model: Model, plan: ModelPlan) -> str:
        value = self.target(scope, slo, model, plan).value
        return str(int(value)) if self.integer else f"{value:g}"

    def labels(self, model: Model, plan: ModelPlan) -> dict[str, str]:
        """The labels of the series this signal reads for workload `plan`."""
        if self.own_servers and plan.phase:
            return {"model_name": model.name, "service": plan.name}
        return served_labels(model)


def model_matchers(scope: Scope, model: Model, labels: dict[str, str] | None = None) -> str:
    """The HPA's selector plus its namespace, as prometheus-adapter fills them in for an External
    metric: the model's series in this cluster (engine metrics via ServiceMonitor), or those of
    `labels`. By key, as prometheus-adapter writes <<.LabelMatchers>> (a label selector's String()
    sorts them)."""
    labels = {**(served_labels(model) if labels is None else labels), "namespace": inference_namespace(scope)}
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def ranks(model: Model, plan: ModelPlan) -> int:
    """Scheduler ranks of one replica that each export a queue and KV-cache series."""
    return engines.engine_for(model).metric_ranks(plan.topology)


def token_query(scope: Scope, model: Model) -> str:
    """Tokens/s the model serves in this cluster."""
    return tokens_per_second(model_matchers(scope, model))


def threshold(scope: Scope, plan: ModelPlan) -> Figure:
    """Tokens/s per replica the HPA aims for: the plan's replica capacity at target utilisation."""
    util = scope.policy.target_utilisation
    value = math.floor(plan.replica_tps.value * util)
    return Figure(value, f"floor({plan.replica_tps.value:,.0f} tok/s per replica x target utilisation {util:g}) "
                         f"= {value:,} tok/s per replica; replica: {plan.replica_tps.why}")


SIGNALS = (
    Signal("tokens", EXTERNAL_METRIC, token_series, tokens_per_second,
           lambda scope, slo, model, plan: threshold(scope, plan)),
    Signal("queue", "peaknight_model_requests_waiting", lambda m: _series(_waiting(), m), requests_waiting,
           lambda scope, slo, model, plan: saturation.rank_queue_target(scope.policy, slo, plan, ranks(model, plan)),
           integer=False, own_servers=True),
    Signal("kv-cache", "peaknight_model_kv_cache_usage", lambda m: _series(_kv_gauges(), m), kv_cache_in_use,
           lambda scope, slo, model, plan: saturation.kv_cache_target(scope.policy), integer=False, own_servers=True),
)


def moment_floors(scope: Scope, model: Model, plan: ModelPlan) -> list[tuple[str, dt.datetime, dt.datetime, int, Figure]]:
    """(moment, start, end, replicas, lead) per moment, in time order. A moment that needs more
    replicas than every earlier floor needs new nodes (cold lead); otherwise the pool's nodes,
    frozen through the window and kept warm by the pre-puller, are already there. A broadcast
    holds each floor to the window's end, or to the next gap where floors fall (plan/gaps.py: the
    next moment after it is cold); a rehearsal until the moment's load is back at baseline."""
    baseline = held = int(plan.floor_replicas.value)
    hold_to_window_end = scope.policy.stage is Stage.BROADCAST
    rises_cold = {gap.before for gap in plan.gaps}  # plan/gaps.py: the moments after a gap where floors fell
    out = []
    for m in sorted(scope.event.moments, key=lambda m: m.at):
        if m.name in rises_cold:
            held = baseline  # the pool's nodes went in the gap: the next rise is cold
        replicas = plan.replicas_for(m.name)
        lead = startup.lead(scope.policy, model, warm=replicas <= held)
        held = max(held, replicas)
        fall = next((g.start for g in plan.gaps if g.start >= m.at), None)
        end = (fall or scope.event.window.end) if hold_to_window_end else moment_end(m)
        out.append((m.name, m.at - dt.timedelta(seconds=lead.value), end, replicas, lead))
    return out


def _cron(scope: Scope, name: str, start: dt.datetime, end: dt.datetime, replicas: int) -> dict[str, Any]:
    return {"type": "cron", "name": name, "metadata": {
        "timezone": scope.event.time_zone, "start": cron_at(start), "end": cron_at(end),
        "desiredReplicas": str(replicas)}}


DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS = 300


def behavior(scope: Scope, max_replicas: int) -> dict[str, Any]:
    """Scale up at once (any step up to the maximum per 15 s: the NodePool's GPU limit is the real
    brake); scale down after the longest stabilisation the HPA allows in a broadcast (the cron
    floors hold the planned replicas regardless), after the HPA's default 5 minutes otherwise."""
    up = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
          "policies": [{"type": "Pods", "value": max_replicas, "periodSeconds": HPA_SYNC_SECONDS}]}
    hold = (MAX_STABILIZATION_SECONDS if scope.policy.stage is Stage.BROADCAST
            else DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS)
    down = {"stabilizationWindowSeconds": hold, "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": HPA_SYNC_SECONDS}]}
    return {"scaleUp": up, "scaleDown": down}


def target_ref(service: Unit, name: str) -> dict[str, str]:
    """The workload `name` whose replica count the inference builder hands to the autoscaler."""
    obj = next(o for o in service.objects if SCALE_TARGET_FIELD in o.ignore_changes and o.name == name)
    return {"apiVersion": obj.manifest["apiVersion"], "kind": obj.kind, "name": obj.name}


def _annotations(scope: Scope, slo: Slo, model: Model, plan: ModelPlan) -> dict[str, str]:
    floors = moment_floors(scope, model, plan)
    return {
        "peaknight.io/threshold": threshold(scope, plan).why,
        "peaknight.io/queue-target": saturation.rank_queue_target(scope.policy, slo, plan, ranks(model, plan)).why,
        "peaknight.io/kv-cache-target": saturation.kv_cache_target(scope.policy).why,
        "peaknight.io/max-replicas": plan.max_replicas.why,
        "peaknight.io/pre-scale": "; ".join(f"{name}: {replicas} replicas from {start:%H:%M} to {end:%H:%M} "
                                            f"{scope.event.time_zone}, lead {lead.why}"
                                            for name, start, end, replicas, lead in floors),
        "peaknight.io/scale-down": (f"moment floors held to the window's end ({scope.event.window.end:%H:%M}): the "
                                    "node pool is frozen for the window, so a removed replica frees no GPU and would "
                                    f"be cold for the next moment; above them {MAX_STABILIZATION_SECONDS} s "
                                    "stabilisation; after the window the floors lapse and the fleet scales down"
                                    + "".join(f"; floors fall to the baseline from {g.start:%H:%M} after {g.after} "
                                              f"(the node pool's freeze open until {g.end:%H:%M}), rising cold for "
                                              f"{g.before}" for g in plan.gaps)
                                    if scope.policy.stage is Stage.BROADCAST else
                                    f"HPA default: {DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS} s stabilisation, "
                                    "then up to 100% per 15 s"),
        "peaknight.io/timings": (f"pollingInterval {POLLING_SECONDS} s (vLLM production-stack, GKE; KEDA default 30), "
                                 f"cooldownPeriod {COOLDOWN_SECONDS} s (KEDA default), HPA sync {HPA_SYNC_SECONDS} s "
                                 "and 10% tolerance (kube-controller-manager defaults)"),
    }


def scaled_object(scope: Scope, slo: Slo, cluster: Cluster, model: Model, plan: ModelPlan,
                  target: dict[str, str]) -> Obj:
    floor, ceiling = int(plan.floor_replicas.value), int(plan.max_replicas.value)
    to_zero = bool(scope.policy.scale_to_zero)
    # A missing metric (Prometheus answers, but no series: nothing scraped yet at first install, a
    # relabel break) reads as no load: the schedule's floors hold the plan and the HPA's scale-down
    # stabilisation keeps what runs. Only a failing Prometheus trips the fallback. Only the token
    # rate wakes a scaled-to-zero model (at zero replicas there is no queue and no cache).
    triggers: list[dict[str, Any]] = [{"type": "prometheus", "name": s.trigger, "metadata": {
        "serverAddress": cluster.prometheus_url, "query": s.query(model_matchers(scope, model, s.labels(model, plan))),
        "threshold": s.threshold(scope, slo, model, plan),
        "activationThreshold": str(ACTIVATION_TPS if s.trigger == "tokens" else 0),
        "ignoreNullValues": "true"}} for s in SIGNALS]
    # Once the night is over nothing scheduled stays: KEDA's cron has no year and would fire again.
    if to_zero and not scope.event.over:
        start = scope.event.window.start - dt.timedelta(seconds=startup.lead(scope.policy, model, warm=False).value)
        triggers.append(_cron(scope, "window", start, scope.event.window.end, floor))
    if not scope.event.over:
        triggers += [_cron(scope, name, start, end, replicas)
                     for name, start, end, replicas, _ in moment_floors(scope, model, plan)]
    annotations = {**_annotations(scope, slo, model, plan),
                   "peaknight.io/fallback": (f"Prometheus failing ({FALLBACK_FAILURES} failed reads, "
                                             f"{FALLBACK_FAILURES * POLLING_SECONDS} s): the replicas running, at "
                                             f"least the baseline floor {floor} ({FALLBACK_BEHAVIOR}); the moment "
                                             "floors still rise on schedule. Metric missing (empty answer): read as "
                                             "no load, so the schedule's floors hold")}
    return Obj({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {**meta(scope, "autoscaler", plan.name, inference_namespace(scope)), "annotations": annotations},
        "spec": {
            "scaleTargetRef": target,
            "pollingInterval": POLLING_SECONDS,
            "cooldownPeriod": COOLDOWN_SECONDS,
            "minReplicaCount": 0 if to_zero else floor,
            "maxReplicaCount": ceiling,
            "fallback": {"failureThreshold": FALLBACK_FAILURES, "replicas": floor, "behavior": FALLBACK_BEHAVIOR},
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(scope, ceiling)}},
            "triggers": triggers,
        },
    })


def hpa(scope: Scope, slo: Slo, cluster: Cluster, model: Model, plan: ModelPlan, target: dict[str, str]) -> Obj:
    """The plain HPA: no schedule, so the floor is the highest any moment needs, all night."""
    ceiling = int(plan.max_replicas.value)
    floor = max([int(plan.floor_replicas.value)] + [r for _, _, _, r, _ in moment_floors(scope, model, plan)])
    annotations = {**_annotations(scope, slo, model, plan),
                   "peaknight.io/query": token_query(scope, model),
                   "peaknight.io/queries": "; ".join(
                       f"{s.external_metric}: {s.query(model_matchers(scope, model, s.labels(model, plan)))}"
                       for s in SIGNALS),
                   "peaknight.io/limitation": (f"HPA cannot pre-scale on a schedule or scale to zero: minReplicas is "
                                               f"the highest moment floor ({floor}) for the whole night; the External "
                                               f"metric {EXTERNAL_METRIC} comes from prometheus-adapter running the "
                                               "query above")}
    return Obj({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {**meta(scope, "autoscaler", plan.name, inference_namespace(scope)), "annotations": annotations},
        "spec": {
            "scaleTargetRef": target,
            "minReplicas": floor,
            "maxReplicas": ceiling,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": s.external_metric, "selector": {"matchLabels": s.labels(model, plan)}},
                "target": {"type": "AverageValue", "averageValue": s.threshold(scope, slo, model, plan)}}}
                for s in SIGNALS],
            "behavior": behavior(scope, ceiling),
        },
    })


def build(scope: Scope, slo: Slo, cluster: Cluster, model: Model, workloads: tuple[ModelPlan, ...],
          service: Unit) -> Unit:
    """One autoscaler per workload: a disaggregated model's prefill and decode groups each get
    their own, on the same signals, so each keeps the ratio the plan sized them at."""
    make = scaled_object if cluster.autoscaler is AutoscalerKind.KEDA else hpa
    return Unit("Autoscaler", model.name, tuple(make(scope, slo, cluster, model, plan, target_ref(service, plan.name))
                                                for plan in workloads))
