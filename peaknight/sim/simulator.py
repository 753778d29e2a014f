"""Replay the night before it happens: demand, the autoscaler as KEDA/HPA behave, start-up delays.

Pure Python, no Pulumi. The settings come from the very ScaledObject / HPA dicts the render
emits (`settings()` parses them), so what is simulated is what is applied. Per model and cluster,
every `step` seconds from the first pre-scale to the window's end:

- demand from forecast.load_at (the one forecast curve) x the plan's demand;
- KEDA polls its triggers every pollingInterval (activation, scale to/from zero after
  cooldownPeriod); the HPA syncs every 15 s: per metric ceil(usage/target) unless within the 10%
  tolerance of the current replicas, the highest metric wins, then the behaviour's stabilisation
  windows and rate policies, then min/max (k8s pkg/controller/podautoscaler, HPA docs);
- a new replica is ready after startup.ready_seconds: warm when a node the pool already held is
  free (nodes are frozen for the window by the pool's disruption budget), cold when a node is added;
- ready replicas serve replica_tps each; the rest queues, and tokens that would wait longer than
  the TTFT SLO are unmet (the user has given up on them);
- the autoscaler's three load signals, read from its triggers (or External metrics) by name:
  `tokens`, the tokens/s served over the rate window; `queue`, the queued tokens as requests
  (profiles' tokens per request), shared evenly over each replica's scheduler ranks as the trigger
  reads them (a server's mean over its ranks), against the waiting-requests target per rank; `kv-cache`, each ready
  replica's KV use taken as the share of its full rate it serves (its concurrent requests grow with
  the tokens it emits at the per-user rate), summed against the KV target. A trigger the replay
  does not know stops it rather than being skipped.

Faults (`Faults`, each a `peaknight simulate` flag) replay what a real cluster would do:

- a zone lost at a time: in every cluster that has it, the replicas the zone holds (groups whole,
  leaders spread evenly: the zone's share of zone_split) vanish and their controller recreates
  them in the other zones on new nodes (cold);
- Prometheus empty (no series) until a time: the token metric reads 0 with ignoreNullValues true,
  or fails with it false; Prometheus down for a period: the token metric fails. KEDA counts a
  failure per poll and, past fallback.failureThreshold, answers fallback.replicas per
  fallback.behavior (KEDA pkg/fallback); a failing metric never lets the HPA scale down;
- no capacity for a pool for a period: replicas that need a new node wait until it ends;
- a whole cluster or region lost at a time (`Loss`): its clusters go dark (no replicas, no
  autoscaler, no gateway: their users' tokens are unmet, not shed) until global steering moves the
  users, the health checks' failures then the DNS TTL later (builders/steering.py); from then the
  others take the lost share in proportion to their own, their autoscalers scale up, warm where
  a node the pool holds is free and cold on new nodes, with the ladder in between. Without
  `peaknight:steering` the users never move.

The ladder (`models[].ladder`, thresholds from plan/admission.py) and an unforecast surge:

- a surge (`Faults.surge`) adds demand the plan and the cron floors never saw: the curve is the
  higher of the forecast and the surge, which rises and falls over SURGE_RAMP;
- demand at or over targetUtilisation x the ready replicas' rate is capped (step 1: the output
  share x `capSaving` is never generated, counted shortened); at or over their full rate,
  `fallbackShare` of what is left goes to the fallback model, as much as its ready replicas have
  spare in that cluster (step 2); what a full queue cannot hold (past the TTFT objective) is refused
  with 429 at the gateway (step 3, shed) instead of going unmet. Without a ladder it stays unmet.
  The fallback's own autoscaler does not see the load it takes (its replay runs first), so the
  share it absorbs is what it had spare, no more.

Not modelled: Prometheus scrape jitter beyond the rate window; clients retrying after a 429.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

from peaknight.builders import autoscaling, shards
from peaknight.spec import forecast
from peaknight.plan import admission, cost, startup
from peaknight.plan.capacity import ModelPlan, replicas_for, zone_split
from peaknight.spec import profiles
from peaknight.builders.event import EventObjects, build
from peaknight.spec.stack import Model, StackSpec

# kube-controller-manager --horizontal-pod-autoscaler-tolerance default (HPA docs).
HPA_TOLERANCE = 0.1
# An unforecast surge rises and falls over a minute (the countdown's ramp, the night's sharpest).
SURGE_RAMP = 60.0
# KEDA defaults when a ScaledObject leaves them out (keda.sh ScaledObject spec).
KEDA_POLLING_DEFAULT, KEDA_COOLDOWN_DEFAULT = 30, 300


@dataclass(frozen=True)
class ScalingPolicy:
    kind: str       # Pods | Percent
    value: int
    period: int


@dataclass(frozen=True)
class Rules:
    """One direction of an HPA `behavior`."""

    stabilization: int
    select: str     # Max | Min | Disabled
    policies: tuple[ScalingPolicy, ...]


# HPA defaults when `behavior` leaves a direction out (k8s pkg/apis/autoscaling/v2/defaults.go).
DEFAULT_UP = Rules(0, "Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)))
DEFAULT_DOWN = Rules(300, "Max", (ScalingPolicy("Percent", 100, 15),))


@dataclass(frozen=True)
class CronFloor:
    start: float    # seconds from the window's start
    end: float
    replicas: int


@dataclass(frozen=True)
class Fallback:
    """A ScaledObject's spec.fallback."""

    failure_threshold: int
    replicas: int
    behavior: str = "static"

    def replicas_for(self, current: int) -> int:
        """What KEDA answers for the failing trigger (ScaledObject fallback.behavior)."""
        return {"static": self.replicas, "currentReplicas": current,
                "currentReplicasIfHigher": max(current, self.replicas),
                "currentReplicasIfLower": min(current, self.replicas)}.get(self.behavior, self.replicas)


@dataclass(frozen=True)
class Loss:
    """A lost cluster or region as one cluster's replay sees it: when it happened, when the users
    moved, and whether this cluster went dark (its replicas and control plane gone) or takes
    `factor` times its own demand from then on (the lost share re-divided by weight)."""

    at: float
    moved_at: float
    dark: bool
    factor: float = 1.0

    def demand(self, t: float) -> float:
        """This cluster's demand at `t` as a multiple of its own forecast."""
        if t < self.moved_at:
            return 1.0
        return 0.0 if self.dark else self.factor


@dataclass(frozen=True)
class Faults:
    """What goes wrong during the replay; times are seconds from the window's start."""

    lose_zone: Optional[str] = None
    lose_at: float = 0.0
    # Whole clusters lost at lose_at (`--lose-cluster`, or every cluster of `--lose-region`), as
    # `lost` names them; their users reach the others `move_after` seconds later (health checks,
    # then the TTL: builders/steering.py), never without global steering.
    lose_clusters: tuple[str, ...] = ()
    lost: str = ""
    move_after: float = math.inf
    prometheus_empty_until: Optional[float] = None          # empty from before the first pre-scale
    prometheus_down: Optional[tuple[float, float]] = None   # (start, end)
    no_capacity: Optional[tuple[str, float, float]] = None  # (pool, start, end)
    surge: Optional[tuple[float, float, float]] = None       # (start, load as a fraction of peak, minutes)

    def surge_load(self, t: float) -> float:
        """Unforecast demand at `t` as a fraction of peak: up over SURGE_RAMP, held, down again."""
        if self.surge is None:
            return 0.0
        start, load, minutes = self.surge
        since, hold = t - start, minutes * 60
        if since < 0 or since >= hold + 2 * SURGE_RAMP:
            return 0.0
        return load * min(1.0, since / SURGE_RAMP, (hold + 2 * SURGE_RAMP - since) / SURGE_RAMP)

    def metric(self, t: float) -> str:
        """The token metric at `t`: ok, empty (no series) or down (errors)."""
        if self.prometheus_down and self.prometheus_down[0] <= t < self.prometheus_down[1]:
            return "down"
        if self.prometheus_empty_until is not None and t < self.prometheus_empty_until:
            return "empty"
        return "ok"

    def blocked_until(self, pool: str, t: float) -> float:
        """When a new node of `pool` asked for at `t` can start launching."""
        if self.no_capacity and self.no_capacity[0] == pool and self.no_capacity[1] <= t < self.no_capacity[2]:
            return self.no_capacity[2]
        return t


NO_FAULTS = Faults()


@dataclass(frozen=True)
class Settings:
    """What the simulator needs of one ScaledObject or HPA."""

    keda: bool
    min_replicas: int            # minReplicaCount (may be 0) or HPA minReplicas
    max_replicas: int
    target_tps: float            # tokens/s per replica the token metric aims at
    activation_tps: float
    rate_window: int             # seconds the token rate averages over
    crons: tuple[CronFloor, ...]
    up: Rules
    down: Rules
    polling: int
    cooldown: int
    ignore_null: bool = True                      # the Prometheus trigger's ignoreNullValues
    fallback: Optional["Fallback"] = None
    queue_target: Optional[float] = None          # waiting requests per rank (queue trigger)
    kv_target: Optional[float] = None             # KV-cache use per replica (kv-cache trigger)

    @property
    def hpa_min(self) -> int:
        """KEDA's HPA never goes below 1; KEDA itself handles 1 <-> 0."""
        return max(self.min_replicas, 1)


def _rules(raw: Optional[dict[str, Any]], default: Rules) -> Rules:
    if raw is None:
        return default
    policies = tuple(ScalingPolicy(p["type"], int(p["value"]), int(p["periodSeconds"]))
                     for p in raw.get("policies", [])) or default.policies
    return Rules(int(raw.get("stabilizationWindowSeconds", default.stabilization)),
                 raw.get("selectPolicy", "Max"), policies)


def _seconds(window: str) -> int:
    match = re.fullmatch(r"(\d+)([smh])", window)
    if match is None:
        raise ValueError(f"not a rate window of whole seconds, minutes or hours: {window!r}")
    value, unit = match.groups()
    return int(value) * {"s": 1, "m": 60, "h": 3600}[unit]


def _rate_window(query: str) -> int:
    return max(_seconds(w) for w in re.findall(r"\[(\d+[smh])\]", query))


def _cron_time(spec: StackSpec, cron: str) -> float:
    """Seconds from the window's start of a once-a-year cron (`m h d M *`) as the kit writes them."""
    minute, hour, day, month = (int(x) for x in cron.split()[:4])
    start = spec.event.window.start
    when = dt.datetime(start.year, month, day, hour, minute)
    if when < start - dt.timedelta(days=180):        # a window across New Year
        when = when.replace(year=start.year + 1)
    return (when - start).total_seconds()


def _targets(named: dict[str, float], where: str) -> tuple[float, Optional[float], Optional[float]]:
    """(tokens, queue, kv-cache) targets of the load signals by name; an unknown one is an error: the
    replay must model every signal the autoscaler scales on."""
    known = {s.trigger: s.external_metric for s in autoscaling.SIGNALS}
    by_trigger = {t: named.get(t, named.get(m)) for t, m in known.items()}
    unknown = set(named) - set(known) - set(known.values())
    if unknown:
        raise ValueError(f"{where}: the replay does not model {', '.join(sorted(unknown))}")
    tokens = by_trigger["tokens"]
    if tokens is None:
        raise ValueError(f"{where}: no token-rate signal")
    return tokens, by_trigger["queue"], by_trigger["kv-cache"]


def settings(spec: StackSpec, manifest: dict[str, Any]) -> Settings:
    """Parse a rendered ScaledObject or autoscaling/v2 HPA."""
    s = manifest["spec"]
    where = f"{manifest['kind']}/{manifest['metadata']['name']}"
    if manifest["kind"] == "ScaledObject":
        behavior = s.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
        proms = {t["name"]: t["metadata"] for t in s["triggers"] if t["type"] == "prometheus"}
        prom = proms["tokens"]
        _, queue, kv = _targets({name: float(m["threshold"]) for name, m in proms.items()}, where)
        crons = tuple(CronFloor(_cron_time(spec, t["metadata"]["start"]), _cron_time(spec, t["metadata"]["end"]),
                                int(t["metadata"]["desiredReplicas"])) for t in s["triggers"] if t["type"] == "cron")
        fb = s.get("fallback")
        return Settings(True, int(s.get("minReplicaCount", 0)), int(s.get("maxReplicaCount", 100)),
                        float(prom["threshold"]), float(prom.get("activationThreshold", 0)),
                        _rate_window(prom["query"]), crons, _rules(behavior.get("scaleUp"), DEFAULT_UP),
                        _rules(behavior.get("scaleDown"), DEFAULT_DOWN),
                        int(s.get("pollingInterval", KEDA_POLLING_DEFAULT)),
                        int(s.get("cooldownPeriod", KEDA_COOLDOWN_DEFAULT)),
                        # KEDA's Prometheus scaler: ignoreNullValues defaults to true.
                        str(prom.get("ignoreNullValues", "true")).lower() == "true",
                        Fallback(int(fb["failureThreshold"]), int(fb["replicas"]), fb.get("behavior", "static"))
                        if fb else None, queue, kv)
    behavior = s.get("behavior", {})
    target, queue, kv = _targets({m["external"]["metric"]["name"]: float(m["external"]["target"]["averageValue"])
                                  for m in s["metrics"]}, where)
    query = manifest["metadata"]["annotations"]["peaknight.io/query"]
    return Settings(False, int(s.get("minReplicas", 1)), int(s["maxReplicas"]), target, 0.0, _rate_window(query), (),
                    _rules(behavior.get("scaleUp"), DEFAULT_UP), _rules(behavior.get("scaleDown"), DEFAULT_DOWN),
                    autoscaling.HPA_SYNC_SECONDS, 0, queue_target=queue, kv_target=kv)


def metric_replicas(usage: float, target: float, current: int, tolerance: float = HPA_TOLERANCE) -> int:
    """One AverageValue metric's recommendation: unchanged within the tolerance band."""
    if current > 0 and abs(1 - usage / (target * current)) <= tolerance:
        return current
    return math.ceil(usage / target - 1e-9)


@dataclass
class Hpa:
    """The HPA controller's replica decision for one target (k8s horizontal.go, with behavior)."""

    min_replicas: int
    max_replicas: int
    up: Rules
    down: Rules
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)

    def sync(self, now: float, current: int, desired: int) -> int:
        """New replica count given the current count and the highest metric recommendation."""
        if current == 0:
            return 0                          # scaled to zero: the HPA stands aside (KEDA wakes it)
        if current > self.max_replicas:
            new = self.max_replicas
        elif current < self.min_replicas:
            new = self.min_replicas
        else:
            new = self._rate_limit(now, current, self._stabilize(now, current, desired))
        if new > current:
            self.up_events.append((now, new - current))
        elif new < current:
            self.down_events.append((now, current - new))
        return new

    def _stabilize(self, now: float, current: int, desired: int) -> int:
        up_cut, down_cut = now - self.up.stabilization, now - self.down.stabilization
        upper = max([desired] + [r for t, r in self.recommendations if t > down_cut])
        lower = min([desired] + [r for t, r in self.recommendations if t > up_cut])
        keep = min(up_cut, down_cut)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > keep] + [(now, desired)]
        return min(max(current, lower), upper)

    def _changed(self, now: float, period: int) -> tuple[int, int]:
        added = sum(n for t, n in self.up_events if t > now - period)
        removed = sum(n for t, n in self.down_events if t > now - period)
        return added, removed

    def _rate_limit(self, now: float, current: int, desired: int) -> int:
        if desired > current:
            if self.up.select == "Disabled":
                return current
            limits = []
            for p in self.up.policies:
                added, removed = self._changed(now, p.period)
                base = current - added + removed
                limits.append(base + p.value if p.kind == "Pods" else math.ceil(base * (1 + p.value / 100)))
            limit = max(current, min(limits) if self.up.select == "Min" else max(limits))
            return min(desired, limit, self.max_replicas)
        if desired < current:
            if self.down.select == "Disabled":
                return current
            limits = []
            for p in self.down.policies:
                added, removed = self._changed(now, p.period)
                base = current - added + removed
                limits.append(base - p.value if p.kind == "Pods" else int(base * (1 - p.value / 100)))
            limit = min(current, max(limits) if self.down.select == "Min" else min(limits))
            return max(desired, limit, self.min_replicas)
        return desired


def cron_floor(crons: tuple[CronFloor, ...], now: float) -> Optional[int]:
    """The highest desiredReplicas of the cron triggers active now, None when none is."""
    active = [c.replicas for c in crons if c.start <= now < c.end]
    return max(active) if active else None


def recommend(cfg: Settings, rate: float, floor: Optional[int], current: int,
              token: str = "ok", fallback_replicas: Optional[int] = None, waiting: float = 0.0,
              kv_in_use: float = 0.0) -> int:
    """The highest recommendation over the triggers. KEDA's cron metric is desiredReplicas inside
    the window and 1 outside, against an AverageValue target of 1 (KEDA cron_scaler.go), so it
    passes through the same tolerance band as the token metric. `token` is the Prometheus metrics'
    state (one Prometheus answers all three): ok, or failing; failing with `fallback_replicas` set,
    KEDA answers those instead; failing without, the HPA has a metric it cannot read and does not
    scale down. `waiting` (requests) and `kv_in_use` (replicas' worth of KV cache) feed the queue
    and KV-cache signals where the autoscaler has them."""
    if not current:
        desired = 0
    elif token == "ok":
        desired = max([metric_replicas(rate, cfg.target_tps, current)]
                      + [metric_replicas(usage, target, current) for usage, target in
                         ((waiting, cfg.queue_target), (kv_in_use, cfg.kv_target)) if target])
    elif fallback_replicas is not None:
        desired = metric_replicas(fallback_replicas * cfg.target_tps, cfg.target_tps, current)
    else:
        desired = current
    if cfg.crons:
        desired = max(desired, metric_replicas(floor if floor is not None else 1, 1, current))
    return desired


@dataclass
class Trace:
    """One replay: per-step series for the plot and the night's totals (inside the window)."""

    times: list[float] = field(default_factory=list)     # seconds from the window's start
    demand: list[float] = field(default_factory=list)    # tokens/s
    capacity: list[float] = field(default_factory=list)  # tokens/s of ready replicas
    replicas: list[int] = field(default_factory=list)
    demand_tokens: float = 0.0
    unmet_tokens: float = 0.0
    unmet_minutes: set[int] = field(default_factory=set)
    gpu_seconds: float = 0.0
    oracle_gpu_seconds: float = 0.0
    # The oracle under the plan's own policy: headroom and zone N+1, still ready exactly when needed.
    policy_oracle_gpu_seconds: float = 0.0
    forecast_tokens: float = 0.0      # the demand the forecast holds (all of it without a surge)
    unserved_forecast_tokens: float = 0.0   # its share of the unmet and shed tokens: what the SLO judges
    shortened_tokens: float = 0.0     # not generated: answers capped by ladder step 1
    fallback_tokens: float = 0.0      # served by the ladder's fallback model (step 2)
    shed_tokens: float = 0.0          # refused with 429 at the gateway (step 3)
    # tokens/s per step: not generated (cap), sent to the fallback, refused with 429
    shortened: list[float] = field(default_factory=list)
    offloaded: list[float] = field(default_factory=list)
    shed: list[float] = field(default_factory=list)


class _Pods:
    """Replicas as (ready_at, count) groups, newest last; scale-down removes the newest (the
    least ready, as the ReplicaSet controller does). Nodes stay once added (budget freeze), but in
    the gaps where floors fall."""

    def __init__(self, replicas: int, warm: float, cold: float, launch: Any = None):
        self.groups: list[list[float]] = [[-math.inf, replicas]] if replicas else []
        self.count, self.nodes, self.warm, self.cold = replicas, replicas, warm, cold
        self.launch = launch or (lambda t: t)    # when a node asked for at t starts launching

    def scale(self, now: float, target: int) -> None:
        if target > self.count:
            add = target - self.count
            warm = min(add, max(0, self.nodes - self.count))
            cold_at = self.launch(now) + self.cold
            self.groups += [[at, n] for at, n in ((now + self.warm, warm), (cold_at, add - warm)) if n]
            self.groups.sort(key=lambda g: g[0])
            self.nodes = max(self.nodes, target)
        drop: float = self.count - target
        while drop > 0:
            take = min(drop, self.groups[-1][1])
            self.groups[-1][1] -= take
            drop -= take
            if not self.groups[-1][1]:
                self.groups.pop()
        self.count = target

    def ready(self, now: float) -> int:
        return int(sum(n for t, n in self.groups if t <= now))

    def release(self) -> None:
        """The freeze is open (a gap where floors fall, plan/gaps.py): emptied nodes go, so the next
        rise is cold."""
        self.nodes = min(self.nodes, self.count)

    def lose(self, now: float, lost: int) -> None:
        """`lost` replicas and their nodes vanish (oldest first); their controller recreates them
        at once on new nodes."""
        left: float = lost
        for g in self.groups:
            take = min(left, g[1])
            g[1] -= take
            left -= take
        self.groups = [g for g in self.groups if g[1]]
        self.nodes -= lost
        self.count -= lost
        self.scale(now, self.count + lost)


def replay(spec: StackSpec, model: Model, plan: ModelPlan, manifest: dict[str, Any], step: float = 10.0,
           faults: Faults = NO_FAULTS, zone: Optional[tuple[int, int]] = None,
           spare_of: Optional[Trace] = None, loss: Optional[Loss] = None) -> Trace:
    """One model in one cluster through the night under the given autoscaler manifest; `zone` is
    (index, zones) of the lost zone in this cluster, None where the cluster does not have it;
    `spare_of` the replay of the model's ladder fallback in the same cluster (its spare rate takes
    step 2's share); `loss` a lost cluster or region: this cluster dark, or taking its users."""
    cap_at, fallback_at = (f.value for f in admission.ladder_thresholds(spec))
    cfg = settings(spec, manifest)
    window = spec.event.window
    end = (window.end - window.start).total_seconds()
    start = min([0.0] + [c.start for c in cfg.crons]) - 60
    tps, gpr, util = plan.replica_tps.value, plan.gpus_per_replica, spec.policy.target_utilisation
    zones = len(next(c.zones for c in spec.clusters if c.name == plan.cluster))
    pods = _Pods(cfg.min_replicas, startup.ready_seconds(spec.policy, model, True).value,
                 startup.ready_seconds(spec.policy, model, False).value,
                 lambda t: faults.blocked_until(model.pool, t))
    hpa = Hpa(cfg.hpa_min, cfg.max_replicas, cfg.up, cfg.down)
    served_window: deque[tuple[float, float]] = deque()
    served_sum, queue, last_active = 0.0, 0.0, start
    per_request = profiles.load().gateway.tokens_per_request
    ranks = autoscaling.ranks(model, plan)
    next_sync = next_poll = start
    failures, zone_lost = 0, zone is None
    trace = Trace()
    t = start
    while t < end:
        rate = served_sum / cfg.rate_window
        floor = cron_floor(cfg.crons, t)
        state = faults.metric(t)
        # An empty answer is 0 tokens/s where ignoreNullValues is true, an error otherwise.
        token = "ok" if state == "ok" or (state == "empty" and cfg.keda and cfg.ignore_null) else "failing"
        # The queued tokens as requests, and the ready replicas' KV use as the share of their full
        # rate the served tokens take (module docstring).
        waiting, kv_in_use = queue / per_request / ranks, rate / tps
        if state == "empty" and token == "ok":
            rate = waiting = kv_in_use = 0.0
        if not zone_lost and t >= faults.lose_at:
            index, zones = zone  # type: ignore[misc]
            pods.lose(t, zone_split(pods.count, zones)[index])
            zone_lost = True
        dark = loss is not None and loss.dark and t >= loss.at
        if dark:   # the cluster is gone: no replicas, no autoscaler, nothing comes back tonight
            pods.groups, pods.count = [], 0
            next_poll = next_sync = math.inf
        if cfg.keda:
            while next_poll <= t:                 # KEDA: activation and scale to / from zero
                failures = failures + 1 if token == "failing" else 0
                if floor is not None or rate > cfg.activation_tps:
                    last_active = next_poll
                    if pods.count == 0:
                        pods.scale(next_poll, cfg.hpa_min)
                elif pods.count and cfg.min_replicas == 0 and next_poll - last_active >= cfg.cooldown:
                    pods.scale(next_poll, 0)
                next_poll += cfg.polling
        falling_back = cfg.fallback is not None and failures > cfg.fallback.failure_threshold
        while next_sync <= t:                     # HPA: highest metric, then behaviour
            current = pods.count
            fallback = cfg.fallback.replicas_for(current) if falling_back and cfg.fallback else None
            pods.scale(next_sync, hpa.sync(next_sync, current, recommend(cfg, rate, floor, current, token, fallback,
                                                                         waiting, kv_in_use)))
            next_sync += autoscaling.HPA_SYNC_SECONDS
        when = window.start + dt.timedelta(seconds=t)
        if any(g.start <= when < g.end for g in plan.gaps):
            pods.release()
        load = forecast.load_at(spec.event, when)
        moved = loss.demand(t) if loss else 1.0
        demand = max(load, faults.surge_load(t) if load else 0.0) * plan.demand_tps.value * moved
        forecast_share = load * plan.demand_tps.value * moved / demand if demand else 0.0
        capacity = pods.ready(t) * tps
        pressure = demand / capacity if capacity else math.inf
        shortened = offloaded = 0.0
        # A dark cluster has no gateway to cap, fall back or refuse: its users' tokens go unmet.
        ladder = None if dark else model.ladder
        if ladder is not None and pressure >= cap_at:
            shortened = demand * (1 - model.input_share) * ladder.cap_saving
        if ladder is not None and ladder.fallback and spare_of is not None and pressure >= fallback_at and t >= 0:
            i = len(trace.times)
            spare = max(0.0, spare_of.capacity[i] - spare_of.demand[i]) if i < len(spare_of.times) else 0.0
            offloaded = min((demand - shortened) * ladder.fallback_share, spare)
        admitted = demand - shortened - offloaded
        backlog = queue + admitted * step
        served = min(backlog, capacity * step)
        queue = backlog - served
        overflow = max(0.0, queue - capacity * spec.slo.ttft_p99_seconds)
        queue -= overflow
        served_window.append((t, served))
        served_sum += served
        while served_window and served_window[0][0] <= t - cfg.rate_window:
            served_sum -= served_window.popleft()[1]
        if t >= 0:
            trace.times.append(t)
            trace.demand.append(demand)
            trace.capacity.append(capacity)
            trace.replicas.append(pods.count)
            trace.demand_tokens += demand * step
            trace.forecast_tokens += demand * forecast_share * step
            # The gateway cannot tell forecast users from a surge's: they lose their share of it.
            trace.unserved_forecast_tokens += overflow * forecast_share
            trace.shortened_tokens += shortened * step
            trace.fallback_tokens += offloaded * step
            trace.shortened.append(shortened)
            trace.offloaded.append(offloaded)
            trace.shed.append(overflow / step if ladder is not None else 0.0)
            if ladder is not None:   # the gateway refuses what the full queue cannot hold: 429
                trace.shed_tokens += overflow
            else:
                trace.unmet_tokens += overflow
                if overflow > 0:
                    trace.unmet_minutes.add(int(t // 60))
            trace.gpu_seconds += pods.count * gpr * step
            trace.oracle_gpu_seconds += math.ceil(demand / (tps * util) - 1e-9) * gpr * step
            trace.policy_oracle_gpu_seconds += replicas_for(demand, tps, spec, zones, model.name).value * gpr * step
        t += step
    return trace


@dataclass
class ModelResult:
    """One model across the stack's clusters; `trace` sums the clusters' series for the plot."""

    model: str
    clusters: int = 0
    demand_tokens: float = 0.0
    unmet_tokens: float = 0.0
    unmet_minutes: set[int] = field(default_factory=set)
    gpu_hours: float = 0.0
    oracle_gpu_hours: float = 0.0
    policy_oracle_gpu_hours: float = 0.0
    # USD at each cluster's GPU-hour price (plan/cost.py); None where a cluster's pool has no price.
    cost_usd: Optional[float] = 0.0
    oracle_cost_usd: Optional[float] = 0.0
    policy_oracle_cost_usd: Optional[float] = 0.0
    shortened_tokens: float = 0.0
    fallback_tokens: float = 0.0
    shed_tokens: float = 0.0
    forecast_tokens: float = 0.0
    unserved_forecast_tokens: float = 0.0
    trace: Trace = field(default_factory=Trace)

    @property
    def unserved_pct(self) -> float:
        """What the SLO judges: the forecast's tokens unmet or shed (a 429 serves no one either),
        its share of them where a surge came on top."""
        return 100 * self.unserved_forecast_tokens / self.forecast_tokens if self.forecast_tokens else 0.0

    def share(self, tokens: float) -> float:
        """`tokens` as a percentage of the model's demand."""
        return 100 * tokens / self.demand_tokens if self.demand_tokens else 0.0

    @property
    def served_tokens(self) -> float:
        """Demand its own replicas answered in full: neither shortened, sent to the fallback, shed nor unmet."""
        return self.demand_tokens - self.shortened_tokens - self.fallback_tokens - self.shed_tokens - self.unmet_tokens

    @property
    def unmet_pct(self) -> float:
        return 100 * self.unmet_tokens / self.demand_tokens if self.demand_tokens else 0.0

    @property
    def oracle_ratio(self) -> float:
        return self.gpu_hours / self.oracle_gpu_hours if self.oracle_gpu_hours else math.inf

    @property
    def policy_ratio(self) -> float:
        """GPU-hours over the policy oracle's: the waste the kit's own scaling can act on (the raw
        oracle's ratio also counts what headroom and zone N+1 cost on purpose)."""
        return self.gpu_hours / self.policy_oracle_gpu_hours if self.policy_oracle_gpu_hours else math.inf

    def add(self, trace: Trace, copies: int, prices: tuple[Optional[float], ...]) -> None:
        """`trace` replayed in `copies` clusters, at `prices` (USD per GPU-hour, one per cluster)."""
        self.clusters += copies
        price = None if any(p is None for p in prices) else sum(p for p in prices if p is not None)
        if (self.cost_usd is not None and self.oracle_cost_usd is not None and self.policy_oracle_cost_usd is not None
                and price is not None):
            self.cost_usd += trace.gpu_seconds * price / 3600
            self.oracle_cost_usd += trace.oracle_gpu_seconds * price / 3600
            self.policy_oracle_cost_usd += trace.policy_oracle_gpu_seconds * price / 3600
        else:
            self.cost_usd = self.oracle_cost_usd = self.policy_oracle_cost_usd = None
        self.demand_tokens += trace.demand_tokens * copies
        self.unmet_tokens += trace.unmet_tokens * copies
        self.shortened_tokens += trace.shortened_tokens * copies
        self.fallback_tokens += trace.fallback_tokens * copies
        self.shed_tokens += trace.shed_tokens * copies
        self.forecast_tokens += trace.forecast_tokens * copies
        self.unserved_forecast_tokens += trace.unserved_forecast_tokens * copies
        self.unmet_minutes |= trace.unmet_minutes
        self.gpu_hours += trace.gpu_seconds * copies / 3600
        self.oracle_gpu_hours += trace.oracle_gpu_seconds * copies / 3600
        self.policy_oracle_gpu_hours += trace.policy_oracle_gpu_seconds * copies / 3600
        total = self.trace
        if not total.times:
            total.times = list(trace.times)
            total.demand, total.capacity, total.replicas = [0.0] * len(trace.times), [0.0] * len(trace.times), [0] * len(trace.times)
        total.demand = [a + b * copies for a, b in zip(total.demand, trace.demand)]
        total.capacity = [a + b * copies for a, b in zip(total.capacity, trace.capacity)]
        total.replicas = [a + b * copies for a, b in zip(total.replicas, trace.replicas)]
        for series in ("shortened", "offloaded", "shed"):
            mine = getattr(total, series) or [0.0] * len(trace.times)
            setattr(total, series, [a + b * copies for a, b in zip(mine, getattr(trace, series))])


def losing(spec: StackSpec, faults: Faults, cluster: str) -> Optional[Loss]:
    """What a lost cluster or region means for `cluster`: dark if it is one of them, else, once the
    users move, its demand x 1 / (1 - the lost share) (the DNS re-divides by weight, plan/loss.py).
    With every cluster lost, or no steering, nobody moves."""
    if not faults.lose_clusters:
        return None
    lost = sum(c.share for c in spec.clusters if c.name in faults.lose_clusters)
    moved_at = faults.lose_at + faults.move_after if lost < 1 else math.inf
    if cluster in faults.lose_clusters:
        return Loss(faults.lose_at, moved_at, dark=True)
    return Loss(faults.lose_at, moved_at, dark=False, factor=1 / (1 - lost))


def simulate(spec: StackSpec, objects: Optional[EventObjects] = None, step: float = 10.0,
             faults: Faults = NO_FAULTS) -> list[ModelResult]:
    """Every model in every cluster; identical (autoscaler, plan, lost zone, fallback) replays run
    once. A ladder's fallback is replayed first in each cluster: its spare rate takes step 2's share."""
    objects = objects or build(spec)
    models = {m.name: m for m in spec.models}
    order = sorted(models, key=lambda n: 0 if any(m.ladder and m.ladder.fallback == n for m in spec.models) else 1)
    replays: dict[str, Trace] = {}
    # replay key -> (workload, clusters replaying it, their USD per GPU-hour)
    groups: dict[str, tuple[str, int, tuple[Optional[float], ...]]] = {}
    for cluster in objects.clusters:
        zones = cluster.cluster.zones
        zone = (zones.index(faults.lose_zone), len(zones)) if faults.lose_zone in zones else None
        loss = losing(spec, faults, cluster.cluster.name)
        # Only the autoscalers (and the services they read): the cluster's other parts are built
        # lazily, and a 64-cluster night need not build its edges and monitoring to be replayed.
        scalers = {u.name: u for u in (a.unit for _, a in cluster.parts.services)}
        keys: dict[str, str] = {}   # model -> its replay key: what a ladder falling back on it reads
        for name in order:
            ladder = models[name].ladder
            fallback = keys.get(ladder.fallback) if ladder and ladder.fallback else None
            # One per workload (a disaggregated model's prefill and decode groups; a sharded model's
            # shards as their whole: builders/shards.py).
            for workload, manifest in shards.replayed(scalers[name], models[name]):
                plan = objects.plan.cluster(cluster.cluster.name).model(workload)
                key = json.dumps([workload, manifest, plan.replica_tps.value, plan.demand_tps.value,
                                  plan.gpus_per_replica, zone, len(zones), fallback,
                                  loss and dataclasses.astuple(loss)], sort_keys=True)
                keys[name] = key
                if key not in replays:
                    replays[key] = replay(spec, models[name], plan, manifest, step, faults, zone,
                                          replays[fallback] if fallback else None, loss)
                _, copies, prices = groups.get(key, (workload, 0, ()))
                price = cost.gpu_hour_price(spec, plan.pool, cluster.cluster.region)
                groups[key] = (workload, copies + 1, (*prices, price))
    # Results per workload: each phase of a disaggregated model serves the model's whole demand
    # with its own groups, and is short where it is short.
    results = {name: ModelResult(name) for name in dict.fromkeys(name for name, _, _ in groups.values())}
    for key, (name, copies, prices) in groups.items():
        results[name].add(replays[key], copies, prices)
    return list(results.values())
