"""Issue 24, finding 8: the gateway and SGLang's router are sized by the streams they hold open
(Little's law: requests/s x a stream's mean duration), not only by request rate, and Envoy is pinned
to the pod count its per-pod admission limits are divided by."""
from __future__ import annotations

import math

import nights
from peaknight.plan import admission, streams


def _objects(kind: str, name: str):
    objects = nights.objects("broadcast")
    return next(o.manifest for u in objects.clusters[0].units for o in u.objects if o.kind == kind and o.name == name)


def test_chat_streams_and_its_routers_by_hand():
    spec, plan = nights.spec("broadcast"), nights.plan("broadcast").clusters[0]
    chat = next(m for m in spec.models if m.name == "chat")
    decode = plan.model("chat-decode")
    # 63.3 B tok/min / 60 / 64 clusters = 16,484,375 tok/s; 1,000 tokens a request, 250 of them output
    # (input share 0.75) at the 50 ms ITL objective after a 2 s TTFT: 14.5 s a stream.
    held = streams.per_model(spec, chat, decode.demand_tps.value)
    assert round(held.value) == round(16_484_375 / 1000 * (2 + 250 * 0.05)) == 239_023
    # ceil(239,023 x 1.05 / (50,000 x 0.85)) = 6 routers hold them; 9 so that 6 survive a zone.
    assert math.ceil(239_023 * 1.05 / (50_000 * 0.85)) == 6
    # By request rate 16,484 req/s x 0.35 vCPU per 1k req/s = 5.8 vCPU: 1 pod of 8 would do.
    assert math.ceil(16_484 * 0.35 / 1000 * 1.05 / (8 * 0.85)) == 1
    assert decode.router_pods is not None and decode.router_pods.value == 9
    assert decode.router_pods.why.startswith("by concurrent streams")
    assert _objects("Deployment", "chat-router")["spec"]["replicas"] == 9


def test_envoy_is_pinned_to_the_pods_its_limits_are_divided_by():
    spec, plan = nights.spec("broadcast"), nights.plan("broadcast").clusters[0]
    proxy = _objects("EnvoyProxy", "gala-2026-gateway")["spec"]["provider"]["kubernetes"]
    pods = proxy["envoyDeployment"]["replicas"]
    # No autoscaler: more Envoy pods would each admit their share again (circuit breakers are per pod).
    # Streams: chat 239,023 + greetings 2,083 req/s x 22 s = 45,833 + deep-think 1,042 req/s x 17 s
    # = 17,708: 302,565; ceil(302,565 x 1.05 / (50,000 x 0.85)) = 8 pods, 12 so that 8 survive a zone.
    assert math.ceil(302_565 * 1.05 / (50_000 * 0.85)) == 8
    assert "envoyHpa" not in proxy and pods == plan.gateway.pods.value == plan.gateway.max_pods.value == 12
    chat = next(m for m in spec.models if m.name == "chat")
    bound = plan.bounding("chat")
    limits = admission.plan(spec, chat, bound, plan.gateway)
    btp = _objects("BackendTrafficPolicy", "chat")["spec"]["circuitBreaker"]
    per_request = int(limits.slots.value) + int(limits.queue.value)
    # Over the pinned pods the fleet-wide limit is the burst fleet full, no more.
    assert btp["maxParallelRequests"] == math.ceil(int(bound.max_replicas.value) * per_request / pods)
    assert pods * btp["maxParallelRequests"] - int(bound.max_replicas.value) * per_request < pods
