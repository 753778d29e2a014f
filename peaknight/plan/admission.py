"""What the gateway admits per model and cluster, derived from the plan: the figures behind each
model's BackendTrafficPolicy (builders/admission.py), its ladder thresholds (monitoring) and the
simulator's shedding.

Envoy's circuit breakers count per Envoy pod and per upstream cluster (one model's Service), so
every limit here is a cluster-wide figure divided over the planned Envoy pods (GatewayPlan.pods).
The engines speak HTTP/1.1 to Envoy: one request in flight is one upstream connection, which is
what makes a per-endpoint connection limit a per-replica admission limit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from peaknight.plan.capacity import GatewayPlan, ModelPlan
from peaknight.plan.figure import Figure
from peaknight.spec import profiles
from peaknight.spec.stack import Model, StackSpec


@dataclass(frozen=True)
class AdmissionPlan:
    """One model's gateway limits in one cluster."""

    slots: Figure            # requests one replica decodes at once at the ITL objective
    queue: Figure            # requests one replica may hold waiting: the TTFT objective's worth
    per_endpoint: Figure     # upstream connections (= requests) per replica, per Envoy pod
    parallel: Figure         # requests in flight to the model, per Envoy pod: the burst fleet full
    client_per_pod: Figure | None   # a client's requests per minute per Envoy pod (local rate limit)


def queue(spec: StackSpec, m: ModelPlan) -> Figure:
    """Requests one replica may hold waiting: the arrivals of one TTFT objective at its full rate."""
    slo, tpr, tps = spec.slo, profiles.load().gateway.tokens_per_request, m.replica_tps.value
    value = max(1, math.ceil(tps / tpr * slo.ttft_p99_seconds))
    return Figure(value, f"ceil({tps:,.0f} tok/s / {tpr} tok per request x TTFT {slo.ttft_p99_seconds:g} s) "
                         f"= {value} requests waiting at most one TTFT objective")


def plan(spec: StackSpec, model: Model, m: ModelPlan, gateway: GatewayPlan) -> AdmissionPlan:
    """The limits from the plan's per-replica throughput, the SLO and the gateway's pods."""
    slo, tpr = spec.slo, profiles.load().gateway.tokens_per_request
    pods = int(gateway.pods.value)
    tps = m.replica_tps.value
    out_tps = tps * (1 - model.input_share)
    slots = max(1, math.ceil(out_tps * slo.itl_p99_seconds))
    slots_fig = Figure(slots, f"ceil({tps:,.0f} tok/s x output share {1 - model.input_share:g} x ITL "
                              f"{slo.itl_p99_seconds:g} s) = {slots} streams at the ITL objective")
    queue_fig = queue(spec, m)
    queue_n = int(queue_fig.value)
    per_endpoint = math.ceil((slots + queue_n) / pods)
    per_endpoint_fig = Figure(per_endpoint, f"ceil(({slots} slots + {queue_n} queued) / {pods} Envoy pods) = "
                                            f"{per_endpoint} per replica per Envoy pod")
    fleet = int(m.max_replicas.value)
    parallel = math.ceil(fleet * (slots + queue_n) / pods)
    parallel_fig = Figure(parallel, f"ceil({fleet} replicas (burst ceiling) x {slots + queue_n} / {pods} Envoy pods) "
                                    f"= {parallel} per Envoy pod")
    client = None
    if model.admission.client_tokens_per_minute is not None:
        per_min = model.admission.client_tokens_per_minute
        value = math.ceil(per_min / tpr / pods)
        client = Figure(value, f"ceil({per_min:,} tok/min / {tpr} tok per request / {pods} Envoy pods) = "
                               f"{value} requests/min per client per Envoy pod")
    return AdmissionPlan(slots_fig, queue_fig, per_endpoint_fig, parallel_fig, client)


def ladder_thresholds(spec: StackSpec) -> tuple[Figure, Figure]:
    """Demand over the ready replicas' full rate at which steps 1 (cap) and 2 (fallback) start;
    step 3 (shed) is the gateway refusing what a full queue cannot hold."""
    util = spec.policy.target_utilisation
    return (Figure(util, f"demand at {util:g} x the ready replicas' rate (policy.targetUtilisation: the plan's "
                         "operating point; above it the fleet runs beyond its plan)"),
            Figure(1.0, "demand at 1 x the ready replicas' rate (a queue forms)"))


# One retry: a request whose prefill or decode server just went away gets one more pair; more
# attempts multiply the load of a fleet that is already failing (sglang-router's default is 5,
# with backoff up to 30 s). sglang-router counts the first attempt: --disable-retries is "equivalent
# to setting retry_max_retries=1" (sglang_router/router_args.py, wheels 0.2.1 and 0.3.2).
ROUTER_ATTEMPTS = 2
ROUTER_RETRY_BACKOFF_MS = 500


def router_requests(decode: ModelPlan) -> Figure:
    """What one pod of a disaggregated model's router admits. sglang-router admits with a token
    bucket (sgl-router src/middleware.rs concurrency_limit_middleware): a request takes a token and
    gives it back once its response has started, and the bucket refills at
    --rate-limit-tokens-per-second (default: its size, --max-concurrent-requests). So the size
    bounds the requests one router pod starts per second and holds before their responses start:
    the burst ceiling's requests/s (decode max replicas x replica tok/s / tokens per request) over
    the router pods. With no queue (--queue-size 0) a request over it is answered 429 at once."""
    assert decode.router_pods is not None
    tpr = profiles.load().gateway.tokens_per_request
    pods = int(decode.router_pods.value)
    rps = decode.max_replicas.value * decode.replica_tps.value / tpr
    per_pod = max(1, math.ceil(rps / pods))
    return Figure(per_pod, f"ceil({int(decode.max_replicas.value)} decode replicas at the burst ceiling x "
                           f"{decode.replica_tps.value:,.0f} tok/s / {tpr} tok per request = {rps:,.0f} req/s "
                           f"/ {pods} router pods) = {per_pod} requests per router pod")
