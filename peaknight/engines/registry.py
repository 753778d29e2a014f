"""The engines the kit can run, keyed by the spec's `Engine`: the one place a model finds its engine."""
from __future__ import annotations

from peaknight.engines.base import EngineMetrics, ServingEngine
from peaknight.engines.sglang import Sglang
from peaknight.engines.vllm import Vllm
from peaknight.spec.stack import Engine, Model

ENGINES: dict[Engine, ServingEngine] = {e.engine: e for e in (Vllm(), Sglang())}


def engine_for(model: Model) -> ServingEngine:
    return ENGINES[model.engine]


def metrics(model: Model) -> EngineMetrics:
    return engine_for(model).metrics


def token_counters() -> tuple[str, ...]:
    """Every engine's input and output token counters: what prometheus-adapter discovers the
    autoscalers' single tokens/s metric by, whichever engines the stack's models run."""
    return tuple(sorted({name for e in ENGINES.values()
                         for name in (e.metrics.prompt_tokens_metric, e.metrics.generation_tokens_metric)}))
