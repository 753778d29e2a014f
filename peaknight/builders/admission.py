"""Admission at the gateway: one Envoy Gateway BackendTrafficPolicy per model route.

What Envoy Gateway does with it, read in envoyproxy/gateway at the pinned CRDs' commit d32f282942
(crds.lock.yaml; api/v1alpha1, internal/gatewayapi/backendtrafficpolicy.go, internal/xds/translator):

- `circuitBreaker`: Envoy's thresholds on the model's upstream cluster, counted per Envoy pod.
  Left out, Envoy's defaults (1,024 connections, pending and parallel requests per pod) would cap
  a cluster's chat fleet far below its plan. `perEndpoint.maxConnections` caps each replica: the
  engines speak HTTP/1.1 upstream, one request per connection, so a replica holds its decode slots
  plus a TTFT objective's worth of queue (plan/admission.py). Past that a request waits in Envoy's
  pending queue (`maxPendingRequests`, one replica's worth) and then overflows: Envoy answers 503
  itself. That is the ladder's last step, shed, and it follows the ready replicas by itself.
- `rateLimit.local`: a per-client limit (`Distinct` on the client id the SecurityPolicy forwards),
  per Envoy pod. Not `global`: Envoy Gateway turns every route of a policy with a global rule into
  a 500 direct response when its own config has no rate-limit service (buildGlobalRateLimit,
  "enable Ratelimit in the EnvoyGateway config"), a setting the kit does not own.
- `responseOverride` (the custom_response filter, first in Envoy Gateway's filter order, so it sees
  every local reply): Envoy's circuit-breaker overflow (a local 503 that Envoy's router marks
  `x-envoy-overloaded: true`: envoy docs, router filter, "x-envoy-overloaded") and the rate
  limiter's 429 become a 429 with `Retry-After`; Envoy Gateway sets Retry-After nowhere itself.
  Every other 503 stays a 503: "no healthy upstream" (no ready replica: an outage, not shedding),
  and a model server's own (source Backend).
"""
from __future__ import annotations

from typing import Any

from peaknight.builders.objects import Obj, Scope, Unit, inference_namespace, meta
from peaknight.plan import admission
from peaknight.plan.capacity import ClusterPlan
from peaknight.spec.stack import AuthType, Cluster, Model, StackSpec

GPU_RESOURCE = "nvidia.com/gpu"
# The header the SecurityPolicy writes the authenticated client's id into (apiKeyAuth
# forwardClientIDHeader; jwt claimToHeaders of `sub`): what the per-client limit counts by.
CLIENT_HEADER = "x-peaknight-client"
# The header Envoy's router sets on the 503 it answers when a request is dropped by upstream
# circuit breaking (or maintenance mode), and not on "no healthy upstream": what tells shedding
# from an outage.
OVERLOADED = {"responseHeaders": [{"name": "x-envoy-overloaded", "value": {"type": "Exact", "value": "true"}}]}


def _client_rule(model: Model, plan: admission.AdmissionPlan) -> dict[str, Any] | None:
    """A client's tokens per minute as requests per minute per Envoy pod, each request charged at
    the gateway's tokens-per-request estimate (Envoy counts requests before it knows the tokens)."""
    if plan.client_per_pod is None:
        return None
    return {"clientSelectors": [{"headers": [{"name": CLIENT_HEADER, "type": "Distinct"}]}],
            "limit": {"requests": int(plan.client_per_pod.value), "unit": "Minute"}}


def policy(scope: Scope, model: Model, plan: admission.AdmissionPlan) -> dict[str, Any]:
    """The model's BackendTrafficPolicy: limits from the plan, refusals as 429 with Retry-After."""
    retry_after = str(model.admission.retry_after_seconds)
    parallel, per_endpoint = int(plan.parallel.value), int(plan.per_endpoint.value)
    spec: dict[str, Any] = {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": model.name}],
        # Without a ladder nothing is shed before the fleet's ceiling: demand over the ready replicas
        # queues (and, past the TTFT objective, goes unmet) as it did before. A disaggregated model's
        # route reaches its router's pods, not its replicas: no per-replica limit can be set there.
        "circuitBreaker": {"maxConnections": parallel, "maxParallelRequests": parallel,
                           **({"maxPendingRequests": per_endpoint, "perEndpoint": {"maxConnections": per_endpoint}}
                              if model.ladder and not model.disaggregated
                              else {"maxPendingRequests": parallel})},
        "responseOverride": [
            {"match": {"statusCodes": [{"type": "Value", "value": code}], **headers}, "source": "Local",
             "response": {"statusCode": 429, "header": {"set": [{"name": "Retry-After", "value": retry_after}]}}}
            for code, headers in ((503, OVERLOADED), (429, {}))],
    }
    rule = _client_rule(model, plan)
    if rule:
        spec["rateLimit"] = {"local": {"rules": [rule]}}
    annotations = {"peaknight.io/per-endpoint": plan.per_endpoint.why, "peaknight.io/parallel": plan.parallel.why,
                   "peaknight.io/slots": plan.slots.why, "peaknight.io/queue": plan.queue.why}
    if plan.client_per_pod:
        annotations["peaknight.io/client-limit"] = plan.client_per_pod.why
    return {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "BackendTrafficPolicy",
            "metadata": {**meta(scope, "inference", model.name, inference_namespace(scope)),
                         "annotations": annotations},
            "spec": spec}


def client_header(model: Model) -> dict[str, Any]:
    """What the model's SecurityPolicy adds so the per-client limit has an id to count by (an
    apiKey's client id, a JWT's sub); nothing without a per-client limit."""
    if model.admission.client_tokens_per_minute is None:
        return {}
    if model.auth.type is AuthType.API_KEY:
        return {"forwardClientIDHeader": CLIENT_HEADER}
    if model.auth.type is AuthType.JWT:
        return {"claimToHeaders": [{"header": CLIENT_HEADER, "claim": "sub"}]}
    return {}


def gpu_quota(spec: StackSpec, plan: ClusterPlan) -> Obj:
    """The inference namespace's GPU quota: every model at its autoscaler's ceiling plus one
    rolling-update wave, the most the plan ever asks for. A hand scale-up past it (or a copy of a
    model) is refused by the API server instead of taking GPUs the night's models need."""
    per_model = [(m.model, int(m.max_replicas.value + m.surge.value) * m.gpus_per_replica) for m in plan.models]
    total = sum(g for _, g in per_model)
    why = " + ".join(f"{name} {g:,}" for name, g in per_model) + f" = {total:,} GPUs ((burst ceiling + surge) x GPUs per replica)"
    return Obj({"apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": {**meta(spec, "inference", "gpus", inference_namespace(spec)),
                             "annotations": {"peaknight.io/gpus": why}},
                "spec": {"hard": {f"requests.{GPU_RESOURCE}": str(total)}}})


def build(spec: StackSpec, cluster: Cluster, plan: ClusterPlan) -> Unit:
    """One BackendTrafficPolicy per model (needs the gateway's plan: its pods divide each limit)
    and the GPU quota of the inference namespace."""
    objs = [gpu_quota(spec, plan)]
    if plan.gateway is not None:
        for model in spec.models:
            a = admission.plan(spec, model, plan.bounding(model.name), plan.gateway)
            objs.append(Obj(policy(spec, model, a)))
    return Unit("Admission", cluster.name, tuple(objs))
