"""Concurrent streams: what holds the gateway's and the routers' connections open.

A chat answer is streamed (SSE): its client's connection, and the proxies' between it and the
engine, stay open from the request to the last token. By Little's law the streams open at once are
the requests/s times a stream's mean duration, the first token's objective plus the output tokens
at the ITL objective. The proxies are sized by request rate (CPU) and by these streams (connections
per pod, profiles.yaml `gateway.streams_per_pod`), whichever needs more pods.
"""
from __future__ import annotations

import math
from typing import Iterable

from peaknight.plan import capacity
from peaknight.plan.figure import Figure
from peaknight.spec import profiles
from peaknight.spec.stack import Model, StackSpec


def per_model(spec: StackSpec, model: Model, demand_tps: float) -> Figure:
    """Streams open at once for one model at `demand_tps`: requests/s x (TTFT + output tokens per
    request x ITL), with the gateway's tokens per request split by the model's input share."""
    slo, tpr = spec.slo, profiles.load().gateway.tokens_per_request
    rps = demand_tps / tpr
    out = tpr * (1 - model.input_share)
    seconds = slo.ttft_p99_seconds + out * slo.itl_p99_seconds
    value = rps * seconds
    return Figure(value, f"{model.name}: {demand_tps:,.0f} tok/s / {tpr} tok per request = {rps:,.0f} req/s x "
                         f"(TTFT {slo.ttft_p99_seconds:g} s + {out:,.0f} output tokens x ITL {slo.itl_p99_seconds:g} s "
                         f"= {seconds:,.1f} s) = {value:,.0f} streams")


def total(spec: StackSpec, demands: Iterable[tuple[Model, float]]) -> Figure:
    """Streams open at once over several models."""
    figures = [per_model(spec, m, d) for m, d in demands]
    value = sum(f.value for f in figures)
    return Figure(value, "; ".join(f.why for f in figures) + (f"; {value:,.0f} in all" if len(figures) > 1 else ""))


def pods(spec: StackSpec, streams: Figure, zones: int, what: str) -> Figure:
    """Proxy pods that hold `streams` at `gateway.streams_per_pod` each, sized like replicas
    (headroom, target utilisation, a zone lost when the policy asks)."""
    per_pod = profiles.load().gateway.streams_per_pod
    return capacity.replicas_for(streams.value, per_pod, spec, zones,
                                 f"{streams.why}; over {per_pod:,} streams per {what} pod (Envoy's edge-proxy "
                                 f"connection limit)")


def larger(by_rate: Figure, by_streams: Figure) -> Figure:
    """The pods that hold both the requests/s and the streams: the larger, with both derivations."""
    if by_streams.value > by_rate.value:
        return Figure(by_streams.value, f"by concurrent streams: {by_streams.why} (by request rate: {by_rate.why})")
    return Figure(by_rate.value, f"{by_rate.why} (by concurrent streams: {by_streams.why})")
