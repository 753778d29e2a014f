"""What every model-server engine must answer for the kit to run it: the engine protocol.

The inference builder, the autoscaler's Prometheus trigger, the drain hook and the alert rules
never test which engine a model runs; they ask its `ServingEngine` (engines/registry.py finds it
by the spec's `Engine`). Each engine module (vllm.py, sglang.py) owns its command line for the
leader and, when a replica spans nodes, for the workers; whether it can serve a topology at all;
its metric names and how many ranks export them; and its drain hook. Its user, environment, JIT
caches, probes and cold-compile time are the engine part of its serving recipe (data/recipes.yaml,
engines/recipes.py), which cites the engine's own source at the version the stacks pin.
"""
from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from peaknight.engines import recipes
from peaknight.spec.profiles import Group, ServingTopology
from peaknight.spec.stack import Engine, Model

PORT = 8000
MODEL_DIR = "/models"
# The OpenAI-compatible paths clients call, served by both engines: the only paths the gateway
# routes. /metrics, /health and the engines' admin endpoints (SGLang's /flush_cache,
# /update_weights_from_disk, ...; vLLM's LoRA loading) stay inside the cluster.
SERVING_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/models")

# The kubelet's own default timeoutSeconds: an endpoint that may take longer must say so.
KUBELET_DEFAULT_TIMEOUT_SECONDS = 1
# Where the engine's JIT and compile caches live inside the pod: a directory on the node's own disk
# (builders/warmup.py binds it), so a restart on the same node reuses what the last start compiled.
JIT_CACHE_DIR = "/var/cache/peaknight-jit"


class Role(str, Enum):
    """Which pod of a replica: the only pod (or a group's leader, which serves HTTP) or a worker."""

    LEADER = "leader"
    WORKER = "worker"


@dataclass(frozen=True)
class Topology:
    """How one replica sits on nodes: `nodes` pods of `gpus_per_pod` GPUs each; for a
    disaggregated model, which phase the replica serves and the measured serving topology
    (profiles.yaml) its command line renders."""

    gpus_per_replica: int
    gpus_per_node: int
    phase: str = ""                               # "", "prefill" or "decode"
    serving: ServingTopology | None = None
    kv_transfer: str = "mooncake"                 # disaggregated: the KV transfer backend (the workload's serving recipe)
    moe_a2a: str = "deepep"                       # expert parallelism's all-to-all (the recipe's)

    @property
    def group(self) -> Group | None:
        """The measured parallelism of this replica's group (None: a topology built without a row)."""
        if self.serving is None:
            return None
        return getattr(self.serving, self.phase) if self.phase else self.serving.serve

    @property
    def nodes(self) -> int:
        return math.ceil(self.gpus_per_replica / self.gpus_per_node)

    @property
    def gpus_per_pod(self) -> int:
        return self.gpus_per_replica // self.nodes

    @property
    def spans_nodes(self) -> bool:
        return self.nodes > 1

    @property
    def splits_evenly(self) -> bool:
        """Every pod of the replica carries the same GPUs and together they are the replica's."""
        return self.gpus_per_pod * self.nodes == self.gpus_per_replica

    def describe(self) -> str:
        if not self.spans_nodes:
            return f"{self.gpus_per_replica} GPUs on one {self.gpus_per_node}-GPU node"
        return f"{self.gpus_per_replica} GPUs over {self.nodes} {self.gpus_per_node}-GPU nodes"


@dataclass(frozen=True)
class EngineMetrics:
    """The engine's Prometheus names the autoscaler, drain hook and alert rules read."""

    running_metric: str              # requests being decoded now
    waiting_metric: str              # requests queued for a slot: the autoscaler's load signal
    generation_tokens_metric: str    # counter of output tokens
    prompt_tokens_metric: str        # counter of input tokens
    ttft_histogram: str              # time to first token, seconds
    itl_histograms: tuple[str, ...]  # inter-token latency, seconds: current name first, then older ones
    kv_cache_gauges: tuple[str, ...]  # KV-cache use as a 0-1 fraction: current name first
    prefix_cache_hits: str           # counter of input tokens served from the prefix cache
    prefix_cache_queries: str        # counter of input tokens looked up in it (the hit rate's denominator)
    # Info gauge whose labels carry the KV block size and count (the endpoint picker sizes its prefix
    # index from it); "" where the engine exports none.
    cache_config_info: str = ""


@dataclass(frozen=True)
class Probe:
    """One HTTP probe: the endpoint, how often, how long one answer may take, how many misses."""

    path: str
    period_seconds: int
    timeout_seconds: int
    failure_threshold: int

    def manifest(self) -> dict[str, Any]:
        return {"httpGet": {"path": self.path, "port": "http"}, "periodSeconds": self.period_seconds,
                "timeoutSeconds": self.timeout_seconds, "failureThreshold": self.failure_threshold}


@dataclass(frozen=True)
class Probes:
    """A pod's probes; None where the engine gives that pod nothing to ask."""

    startup: Probe | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None

    def manifest(self) -> dict[str, Any]:
        named = {"startupProbe": self.startup, "readinessProbe": self.readiness, "livenessProbe": self.liveness}
        return {key: probe.manifest() for key, probe in named.items() if probe is not None}


def startup_failures(budget_seconds: int, period_seconds: int) -> int:
    """Startup probe misses allowed so that they cover `budget_seconds` at the startup period."""
    return math.ceil(budget_seconds / period_seconds)


class ServingEngine(ABC):
    """One engine. Subclasses are stateless; the registry holds one instance per `Engine`."""

    engine: ClassVar[Engine]
    metrics: ClassVar[EngineMetrics]
    # Whether the server answers requests naming another model (a ladder's fallback receives the
    # primary's requests unchanged: the gateway cannot rewrite the body's "model").
    serves_aliases: ClassVar[bool] = False
    # How the engine splits a replica over nodes, as its source states it: every node must carry
    # the same share of the replica's GPUs.
    split_rule: ClassVar[str]
    # The share of each GPU's memory the engine fills with weights and KV cache (the value the kit
    # pins on its command line): the planner's memory bound reads the same number.
    static_memory_fraction: ClassVar[float]

    def cannot_serve(self, topology: Topology) -> str:
        """Why this engine cannot serve `topology`, or "" when it can. Config reports the reason."""
        if topology.spans_nodes and not topology.splits_evenly:
            return (f"{self.split_rule}, and {topology.gpus_per_replica} GPUs do not split evenly over "
                    f"{topology.nodes} nodes")
        return ""

    @abstractmethod
    def command(self, model: Model, topology: Topology, role: Role, aliases: tuple[str, ...] = ()) -> list[str]:
        """The container command of `role`'s pod. Only called for topologies the engine can serve;
        `aliases` (other models' names this one answers to, as their ladder's fallback) only where
        `serves_aliases`."""

    @property
    def recipe(self) -> recipes.EngineRecipe:
        """The engine part of every recipe: user, environment, caches, probes, compile time."""
        return recipes.engine_recipe(self.engine.value)

    def probes(self, topology: Topology, role: Role, startup_budget_seconds: int) -> Probes:
        """Probes for `role`'s pod, as the recipe gives them; the startup probe covers
        `startup_budget_seconds`."""
        def probe(spec: recipes.ProbeSpec | None) -> Probe | None:
            if spec is None:
                return None
            failures = spec.failures or startup_failures(startup_budget_seconds, spec.period)
            return Probe(spec.path, spec.period, spec.timeout, failures)
        kinds = self.recipe.probes[role.value]
        return Probes(startup=probe(kinds.get("startup")), readiness=probe(kinds.get("readiness")),
                      liveness=probe(kinds.get("liveness")))

    @property
    def cold_compile_seconds(self) -> int:
        """Seconds a first start on a node may spend compiling before it serves (the JIT caches are
        empty there), at the upper end of what the engine's source or docs state."""
        return self.recipe.cold_compile_seconds

    @property
    def cold_compile_source(self) -> str:
        return self.recipe.cold_compile_source

    def env(self) -> list[dict[str, str]]:
        """Environment the engine's timing depends on, pinned so the probes' figures stay true."""
        return [{"name": k, "value": v} for k, v in self.recipe.env.items()]

    def metric_ranks(self, topology: Topology) -> int:
        """How many schedulers of one replica export their own queue and KV-cache gauges (one
        series each): the autoscaler averages them per server, and its queue target is per rank."""
        return 1

    def identity_env(self) -> list[dict[str, str]]:
        """USER, LOGNAME and HOME for a UID the image's passwd does not know (recipes.yaml says why)."""
        r = self.recipe
        return [{"name": "USER", "value": r.user}, {"name": "LOGNAME", "value": r.user}, {"name": "HOME", "value": r.home}]

    def cache_env(self, model: Model) -> list[dict[str, str]]:
        """Every JIT and compile cache the engine writes (the recipe's list), under JIT_CACHE_DIR/<model>."""
        return [{"name": k, "value": f"{JIT_CACHE_DIR}/{model.name}/{d}"} for k, d in self.recipe.caches.items()]

    def serves_http(self, role: Role) -> bool:
        """Whether `role`'s pod listens on PORT (the leader always does)."""
        return role is Role.LEADER

    def drain_command(self, role: Role, budget_seconds: int) -> list[str]:
        """preStop: wait until the replica's running + waiting requests reach zero, at most
        `budget_seconds`. The leader reads its own /metrics; a worker reads its leader's, so it
        keeps its ranks up while the leader finishes answers (tensor parallelism needs them all).

        Python is in both engines' images (curl is not in every one), so the hook is a short script.
        """
        m = self.metrics
        host = "'127.0.0.1'" if role is Role.LEADER else "os.environ['LWS_LEADER_ADDRESS']"
        script = (
            "import os,re,time,urllib.request\n"
            f"deadline=time.time()+{budget_seconds}\n"
            "while time.time()<deadline:\n"
            "    try:\n"
            f"        text=urllib.request.urlopen('http://'+{host}+':{PORT}/metrics',timeout=5).read().decode()\n"
            "    except Exception:\n"
            "        break\n"
            f"    busy=sum(float(v) for v in re.findall(r'^(?:{re.escape(m.running_metric)}|{re.escape(m.waiting_metric)})"
            r"(?:\{[^}]*\})? ([0-9.eE+-]+)$',text,re.M))" "\n"
            "    if busy==0:\n"
            "        break\n"
            "    time.sleep(2)\n"
        )
        return ["python3", "-c", script]


# A revision's directory in the node cache is complete once this file sits beside it.
READY_SUFFIX = ".ready"


def revision_dir(model: Model) -> str:
    """The weights' directory under a source or node cache: one per revision, so a new revision
    is staged beside the one serving instead of over it."""
    return f"{model.weights}/{model.weights_revision or 'unpinned'}"


def weights_path(model: Model) -> str:
    """Where the engine reads the model's weights inside the pod: its revision in the node cache."""
    return f"{MODEL_DIR}/{revision_dir(model)}"
