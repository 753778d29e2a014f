"""What the rehearsal's load replay measured: inference-perf's report files, read per stage.

Layout of a results directory (docs/operations.md says how the operator fills it from each
cluster's `load-replay-results` volume):

    DIR/<cluster>/<model>/pod-<i>/   one load pod's reports, as inference-perf 0.7.0 writes them:
        config.yaml                      the config it ran (stages, request lengths, server)
        stage_<n>_lifecycle_metrics.json per stage: successes.throughput, successes.latency, failures
        inference-perf.partial.stage_<n>.yaml  per stage: run.time.start/end (wall clock, UTC)
    DIR/<cluster>/prometheus.json    optional: replicas serving each model over the window

`prometheus.json` is the body Prometheus' HTTP API answers to a range query (`/api/v1/query_range`,
resultType matrix) for `count by (service) (up{namespace="<event>-inference"} == 1)`: one series per
model Service (the model's name), each sample the number of replicas Prometheus scraped as up (a
LeaderWorkerSet group serves through its leader: one target per replica). Without it, `--replicas`
says how many replicas served every stage.

The pods of one model run the same stages at the same time, each with an equal share of the rate:
a stage's throughput is their sum, its p99 latencies the worst pod's (an upper bound of the
fleet's p99), its failures their sum. Anything missing or malformed is one problem line naming the
file, the key and what was expected: the CLI exits 2 and derives nothing from partial results.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from peaknight.builders import loadreplay
from peaknight.spec.config import ConfigError, Problem
from peaknight.spec.stack import StackSpec

PROMETHEUS_EXPORT = "prometheus.json"
_REPORT = "inference-perf 0.7.0's per-stage report"
_POD = re.compile(r"pod-\d+")


@dataclass(frozen=True)
class StageResult:
    """One stage of one model in one cluster, over all its load pods."""

    index: int
    requested_rps: float         # what the replay asked for, all pods
    input_tps: float
    output_tps: float
    ttft_p99: float
    itl_p99: float
    failures: int
    sent: int                    # requests the pods sent (load_summary.count)
    request_tokens: float        # prompt + output tokens of one request (the config's length means)
    seconds: int                 # the stage's planned length
    start: dt.datetime
    end: dt.datetime
    replicas: float              # serving during the stage (mean of the export's samples, or --replicas)

    @property
    def tokens_per_second(self) -> float:
        return self.input_tps + self.output_tps

    @property
    def per_replica(self) -> float:
        return self.tokens_per_second / self.replicas

    @property
    def requested_tps(self) -> float:
        """What the replay asked for in this stage, tokens/s."""
        return self.requested_rps * self.request_tokens


@dataclass(frozen=True)
class ModelResults:
    cluster: str
    model: str
    pods: int
    stages: tuple[StageResult, ...]
    source: str                  # the directory they came from
    replicas_up: tuple[tuple[float, float], ...] = ()   # (unix time, replicas up) from the export, if any


class _Reader:
    """Collects problems instead of stopping at the first, so the operator sees them all."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, path: Path, key: str, expected: str, found: str = "") -> None:
        self.problems.append(Problem(str(path), key, expected, found))

    def load(self, path: Path, parse: Callable[[str], Any], what: str) -> Any:
        try:
            return parse(path.read_text())
        except FileNotFoundError:
            self.fail(path, "(file)", what, "no such file")
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
            self.fail(path, "(file)", what, str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None

    def number(self, data: Any, path: Path, key: str, expected: str) -> float | None:
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
            self.fail(path, key, expected, "nothing" if value is None else repr(value))
            return None
        return float(value)

    def time(self, data: Any, path: Path, key: str) -> dt.datetime | None:
        value = ((data.get("run") or {}).get("time") or {}).get(key) if isinstance(data, dict) else None
        if value:
            try:
                return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                pass
        self.fail(path, f"run.time.{key}", "the stage's wall-clock time (ISO 8601)", repr(value) if value else "nothing")
        return None


def _stages(r: _Reader, pod: Path) -> list[dict[str, Any]] | None:
    config = r.load(pod / "config.yaml", yaml.safe_load, "inference-perf's config.yaml (the config the pod ran)")
    stages = ((config or {}).get("load") or {}).get("stages") if isinstance(config, dict) else None
    if config is None:
        return None
    if not (isinstance(stages, list) and stages and all(isinstance(s, dict) for s in stages)):
        r.fail(pod / "config.yaml", "load.stages", "the replay's stages (rate, duration)", repr(stages))
        return None
    sizes = [r.number(config, pod / "config.yaml", f"data.{d}_distribution.mean", "the request length (tokens)")
             for d in ("input", "output")]
    for n, stage in enumerate(stages):
        for key in ("rate", "duration"):
            value = stage.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                r.fail(pod / "config.yaml", f"load.stages[{n}].{key}", "a positive number", repr(value))
    return [{**s, "tokens": sum(x for x in sizes if x is not None)} for s in stages]


def _pod_stage(r: _Reader, pod: Path, n: int) -> dict[str, Any] | None:
    path = pod / f"stage_{n}_lifecycle_metrics.json"
    data = r.load(path, json.loads, _REPORT)
    if data is None:
        return None
    got = {key: r.number(data, path, key, f"a number ({_REPORT})") for key in (
        "successes.throughput.input_tokens_per_sec", "successes.throughput.output_tokens_per_sec",
        "successes.latency.time_to_first_token.p99", "successes.latency.inter_token_latency.p99",
        "failures.count", "load_summary.count")}
    partial = pod / f"inference-perf.partial.stage_{n}.yaml"
    times = r.load(partial, yaml.safe_load, "inference-perf 0.7.0's partial report of the stage (run.time)")
    start, end = (r.time(times, partial, k) for k in ("start", "end")) if times is not None else (None, None)
    if None in got.values() or start is None or end is None:
        return None
    return {**got, "start": start, "end": end}


def _series(r: _Reader, export: Path, model: str) -> tuple[tuple[float, float], ...] | None:
    """(unix time, replicas up) of `model` from the cluster's Prometheus export, in time order."""
    data = r.load(export, json.loads, "a Prometheus range-query answer (/api/v1/query_range, resultType matrix)")
    if data is None:
        return None
    inner = data.get("data") if isinstance(data, dict) else None
    result = inner.get("result") if isinstance(inner, dict) else None
    if not isinstance(result, list):
        r.fail(export, "data.result", "a list of series (resultType matrix)", repr(result))
        return None
    series = [s for s in result if isinstance(s, dict) and isinstance(s.get("metric"), dict)
              and s["metric"].get("service") == model]
    if not series:
        r.fail(export, "data.result", f"a series with metric.service '{model}'", "none")
        return None
    try:
        return tuple(sorted((float(t), float(v)) for s in series for t, v in s["values"]))
    except (KeyError, TypeError, ValueError) as err:
        r.fail(export, f"data.result[service={model}].values", "[unix time, \"value\"] pairs", str(err) or repr(err))
        return None


def _mean(r: _Reader, export: Path, model: str, series: tuple[tuple[float, float], ...], start: dt.datetime,
          end: dt.datetime) -> float | None:
    """Mean replicas up in [start, end]."""
    samples = [v for t, v in series if start.timestamp() <= t <= end.timestamp()]
    if not samples or max(samples) <= 0:
        r.fail(export, f"data.result[service={model}].values",
               f"samples of replicas up between {start.isoformat()} and {end.isoformat()}", "none")
        return None
    return sum(samples) / len(samples)


def read(spec: StackSpec, results: Path, replicas: int | None) -> list[ModelResults]:
    """Every cluster and model with results under `results`; ConfigError listing every problem."""
    r = _Reader()
    if not results.is_dir():
        raise ConfigError([Problem(str(results), "--results", "a directory of load replay results "
                                   "(DIR/<cluster>/<model>/pod-<i>/)", "no such directory")])
    clusters = {c.name for c in spec.clusters}
    models = {m.name for m in spec.models}
    out = []
    for cluster_dir in sorted(p for p in results.iterdir() if p.is_dir()):
        if cluster_dir.name not in clusters:
            r.fail(cluster_dir, "(directory)", f"a cluster of the stack ({', '.join(sorted(clusters))})",
                   repr(cluster_dir.name))
            continue
        export = cluster_dir / PROMETHEUS_EXPORT
        if replicas is None and not export.is_file():
            r.fail(export, "(file)", "the replicas serving each model (a Prometheus export) or --replicas N",
                   "no such file")
            continue
        for model_dir in sorted(p for p in cluster_dir.iterdir() if p.is_dir()):
            if model_dir.name not in models:
                r.fail(model_dir, "(directory)", f"a model of the stack ({', '.join(sorted(models))})",
                       repr(model_dir.name))
                continue
            series = _series(r, export, model_dir.name) if export.is_file() else ()
            found = _model(r, model_dir, export, series, replicas) if series is not None else None
            if found is not None and series is not None:
                out.append(ModelResults(cluster_dir.name, model_dir.name, found[0], found[1], str(model_dir), series))
    if not out and not r.problems:
        r.fail(results, "--results", "at least one DIR/<cluster>/<model>/pod-<i>/ of "
               f"{loadreplay.TOOL} reports", "none")
    if r.problems:
        raise ConfigError(r.problems)
    return out


def _model(r: _Reader, model_dir: Path, export: Path, series: tuple[tuple[float, float], ...],
           replicas: int | None) -> tuple[int, tuple[StageResult, ...]] | None:
    pods = sorted(p for p in model_dir.iterdir() if p.is_dir() and _POD.fullmatch(p.name))
    if not pods:
        r.fail(model_dir, "(directory)", "pod-<i>/ directories of inference-perf reports", "none")
        return None
    before = len(r.problems)
    plans = [_stages(r, pod) for pod in pods]
    counts = {len(p) for p in plans if p is not None}
    if len(counts) > 1:
        r.fail(model_dir, "pod-*/config.yaml load.stages", "the same stages in every pod of the model",
               ", ".join(f"{pod.name}: {len(p)}" for pod, p in zip(pods, plans) if p is not None))
    if len(r.problems) > before:
        return None
    stages = []
    for n, stage in enumerate(plans[0] or []):
        per_pod = [_pod_stage(r, pod, n) for pod in pods]
        if any(p is None for p in per_pod):
            continue
        got = [p for p in per_pod if p is not None]
        start, end = min(p["start"] for p in got), max(p["end"] for p in got)
        serving = float(replicas) if replicas is not None else _mean(r, export, model_dir.name, series, start, end)
        if serving is None:
            continue
        stages.append(StageResult(
            index=n, requested_rps=float(stage["rate"]) * len(pods),
            input_tps=sum(p["successes.throughput.input_tokens_per_sec"] for p in got),
            output_tps=sum(p["successes.throughput.output_tokens_per_sec"] for p in got),
            ttft_p99=max(p["successes.latency.time_to_first_token.p99"] for p in got),
            itl_p99=max(p["successes.latency.inter_token_latency.p99"] for p in got),
            failures=int(sum(p["failures.count"] for p in got)), sent=int(sum(p["load_summary.count"] for p in got)),
            request_tokens=float(stage["tokens"]), seconds=int(stage["duration"]), start=start, end=end,
            replicas=serving))
    return (len(pods), tuple(stages)) if len(r.problems) == before else None
