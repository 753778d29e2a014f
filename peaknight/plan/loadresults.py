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

Every file is hostile input (config.read_input: regular files only, bounded), and so is every
number in it: finite and in the range its meaning allows, else one line saying so. The output is
bounded as well: at most MAX_STAGES stages per pod, MAX_ENTRIES entries per directory,
MAX_SAMPLES per series, MAX_PROBLEMS lines of problems (then one line counting the rest).
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from peaknight.builders import loadreplay
from peaknight.spec import config, formats
from peaknight.spec.config import ConfigError, Problem
from peaknight.spec.stack import StackSpec

PROMETHEUS_EXPORT = "prometheus.json"
_REPORT = "inference-perf 0.7.0's per-stage report"
_POD = re.compile(r"pod-\d+")
# inference-perf's reports and config are a few KiB; a Prometheus export holds at most
# MAX_SAMPLES samples (~30 bytes each) per series, a series per model.
MAX_REPORT_BYTES = 1 << 20
MAX_EXPORT_BYTES = 64 << 20
# A replay is the window (at most 24 h: config.MAX_WINDOW) in stages of at least a minute
# (loadReplay.stepMinutes): more stages than that are not a replay the kit rendered.
MAX_STAGES = int(config.MAX_WINDOW.total_seconds() // 60)
# Prometheus answers a range query with at most 11,000 points per series (its own limit).
MAX_SAMPLES = 11_000
# No level of the layout holds more: the stack's clusters and models, a Job's load pods (1,000 pods
# of the default 200 requests/s replay 200,000 requests/s).
MAX_ENTRIES = 1_000
# Replicas up are a count of scrape targets: at most a cluster's 150,000 pods (the envelope).
MAX_REPLICAS = 150_000
MAX_COUNT = 2**53        # requests counted: whole numbers a float holds exactly
MAX_TOKENS = 2**24       # a request's mean length: at most the longest context a model takes
MAX_PROBLEMS = 100


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
        self.more = 0            # problems past MAX_PROBLEMS, counted

    def fail(self, path: Path, key: str, expected: str, found: str = "") -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(str(path), key, expected, found))
        else:
            self.more += 1

    @property
    def failed(self) -> int:
        return len(self.problems) + self.more

    def report(self, results: Path) -> list[Problem]:
        """The problems, the ones past MAX_PROBLEMS as one line counting them."""
        more = [Problem(str(results), "--results", f"at most {MAX_PROBLEMS} problems listed",
                        f"{self.more:,} more")] if self.more else []
        return self.problems + more

    def load(self, path: Path, parse: Callable[[str], Any], what: str, limit: int = MAX_REPORT_BYTES) -> Any:
        try:
            value = parse(config.read_input(path, limit, what))
            if value is None:
                self.fail(path, "(file)", what, "an empty document")
            return value
        except ConfigError as err:
            for p in err.problems:
                self.fail(Path(p.source), p.path, p.expected, p.found)
        except (ValueError, RecursionError, yaml.YAMLError) as err:
            self.fail(path, "(file)", what, str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None

    def number(self, data: Any, path: Path, key: str, expected: str, low: float = 0, high: float = math.inf,
               whole: bool = False, above: bool = False) -> float | None:
        """The number at dotted `key`: finite, from `low` (excluded where `above`) to `high`, a
        whole number where `whole`; else a problem and None."""
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not _in_range(value, low, high, whole, above):
            self.fail(path, key, f"{expected}, {_range(low, high, whole, above)}",
                      "nothing" if value is None else config.show(value))
            return None
        return float(value)

    def entries(self, folder: Path) -> list[Path]:
        """The directories in `folder`, sorted; more than MAX_ENTRIES entries is a problem."""
        with os.scandir(folder) as it:
            listed = list(itertools.islice(it, MAX_ENTRIES + 1))
        if len(listed) > MAX_ENTRIES:
            self.fail(folder, "(directory)", f"at most {MAX_ENTRIES:,} entries", "more")
            return []
        return sorted(Path(e.path) for e in listed if e.is_dir())


    def time(self, data: Any, path: Path, key: str) -> dt.datetime | None:
        value: Any = data
        for part in ("run", "time", key):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (str, dt.datetime)):
            try:
                when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                if formats.YEARS[0] <= when.year <= formats.YEARS[1]:
                    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)  # no offset: UTC
        self.fail(path, f"run.time.{key}", f"the stage's wall-clock time (ISO 8601, in the years {formats.YEARS[0]}-"
                  f"{formats.YEARS[1]})", config.show(value) if value else "nothing")
        return None


def _in_range(value: Any, low: float, high: float, whole: bool, above: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (value > low if above else value >= low) and value <= high and (not whole or float(value).is_integer())


def _range(low: float, high: float, whole: bool, above: bool) -> str:
    """How _in_range's bounds read in a problem line."""
    kind = "a whole number" if whole else "a finite number"
    top = "" if high == math.inf else f" and at most {high:,g}"
    return f"{kind} {'above' if above else 'of at least'} {low:g}{top}"

def _yaml(path: Path) -> Callable[[str], Any]:
    """YAML of a results file, bounded like a stack file (config.load_yaml)."""
    return lambda text: config.load_yaml(text, str(path))


def _stages(r: _Reader, pod: Path) -> list[dict[str, Any]] | None:
    path = pod / "config.yaml"
    ran = r.load(path, _yaml(path), "inference-perf's config.yaml (the config the pod ran)")
    if ran is None:
        return None
    stages = (ran.get("load") or {}).get("stages") if isinstance(ran, dict) and isinstance(ran.get("load"), dict) \
        else None
    if not (isinstance(stages, list) and stages and all(isinstance(s, dict) for s in stages)):
        r.fail(path, "load.stages", "the replay's stages (rate, duration)", config.show(stages))
        return None
    if len(stages) > MAX_STAGES:
        r.fail(path, "load.stages", f"at most {MAX_STAGES:,} stages (a 24 h window in 1-minute steps)",
               f"{len(stages):,}")
        return None
    sizes = [r.number(ran, path, f"data.{d}_distribution.mean", "the request length (tokens)", high=MAX_TOKENS,
                      above=True) for d in ("input", "output")]
    for n, stage in enumerate(stages):
        r.number(stage, path, "rate", f"load.stages[{n}].rate: requests/s", high=MAX_COUNT, above=True)
        r.number(stage, path, "duration", f"load.stages[{n}].duration: seconds", high=86400, whole=True, above=True)
    return [{**s, "tokens": sum(x for x in sizes if x is not None)} for s in stages]


# What each report number is, and its range: rates and counts from 0, latencies above 0 (a p99
# of 0 or infinity is no measurement).
_REPORT_NUMBERS: dict[str, dict[str, Any]] = {
    "successes.throughput.input_tokens_per_sec": dict(),
    "successes.throughput.output_tokens_per_sec": dict(),
    "successes.latency.time_to_first_token.p99": dict(above=True, high=86400),
    "successes.latency.inter_token_latency.p99": dict(above=True, high=86400),
    "failures.count": dict(whole=True, high=MAX_COUNT),
    "load_summary.count": dict(whole=True, high=MAX_COUNT),
}


def _pod_stage(r: _Reader, pod: Path, n: int) -> dict[str, Any] | None:
    path = pod / f"stage_{n}_lifecycle_metrics.json"
    data = r.load(path, json.loads, _REPORT)
    if data is None:
        return None
    got = {key: r.number(data, path, key, f"a number ({_REPORT})", **bounds)
           for key, bounds in _REPORT_NUMBERS.items()}
    partial = pod / f"inference-perf.partial.stage_{n}.yaml"
    times = r.load(partial, _yaml(partial), "inference-perf 0.7.0's partial report of the stage (run.time)")
    start, end = (r.time(times, partial, k) for k in ("start", "end")) if times is not None else (None, None)
    if None in got.values() or start is None or end is None:
        return None
    if end < start:
        r.fail(partial, "run.time.end", "a time after run.time.start", str(end))
        return None
    return {**got, "start": start, "end": end}


def _series(r: _Reader, export: Path, model: str) -> tuple[tuple[float, float], ...] | None:
    """(unix time, replicas up) of `model` from the cluster's Prometheus export, in time order."""
    data = r.load(export, json.loads, "a Prometheus range-query answer (/api/v1/query_range, resultType matrix)",
                  MAX_EXPORT_BYTES)
    if data is None:
        return None
    inner = data.get("data") if isinstance(data, dict) else None
    result = inner.get("result") if isinstance(inner, dict) else None
    if not isinstance(result, list):
        r.fail(export, "data.result", "a list of series (resultType matrix)", config.show(result))
        return None
    series = [s for s in result if isinstance(s, dict) and isinstance(s.get("metric"), dict)
              and s["metric"].get("service") == model]
    if not series:
        r.fail(export, "data.result", f"a series with metric.service '{model}'", "none")
        return None
    key = f"data.result[service={model}].values"
    samples: list[Any] = []
    for s in series:
        values = s.get("values")
        samples += values if isinstance(values, list) else [None]
    if len(samples) > MAX_SAMPLES:
        r.fail(export, key, f"at most {MAX_SAMPLES:,} samples (Prometheus' most points per series)", f"{len(samples):,}")
        return None
    out = []
    for sample in samples:
        pair = _sample(sample)
        if pair is None:
            r.fail(export, key, f"[unix time, \"replicas up\"] pairs: a finite time and a whole number from 0 to "
                   f"{MAX_REPLICAS:,}", config.show(sample))
            return None
        out.append(pair)
    return tuple(sorted(out))


def _sample(sample: Any) -> tuple[float, float] | None:
    """One [time, "value"] pair as Prometheus writes it, or None when it is not one."""
    if not (isinstance(sample, list) and len(sample) == 2) or isinstance(sample[0], bool):
        return None
    try:
        t, v = float(sample[0]), float(sample[1])
    except (TypeError, ValueError):
        return None
    return (t, v) if math.isfinite(t) and _in_range(v, 0, MAX_REPLICAS, True, False) else None


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
    for cluster_dir in r.entries(results):
        if cluster_dir.name not in clusters:
            r.fail(cluster_dir, "(directory)", f"a cluster of the stack ({', '.join(sorted(clusters))})",
                   repr(cluster_dir.name))
            continue
        export = cluster_dir / PROMETHEUS_EXPORT
        if replicas is None and not export.exists():
            r.fail(export, "(file)", "the replicas serving each model (a Prometheus export) or --replicas N",
                   "no such file")
            continue
        for model_dir in r.entries(cluster_dir):
            if model_dir.name not in models:
                r.fail(model_dir, "(directory)", f"a model of the stack ({', '.join(sorted(models))})",
                       repr(model_dir.name))
                continue
            series = _series(r, export, model_dir.name) if export.exists() else ()
            found = _model(r, model_dir, export, series, replicas) if series is not None else None
            if found is not None and series is not None:
                out.append(ModelResults(cluster_dir.name, model_dir.name, found[0], found[1], str(model_dir), series))
    if not out and not r.failed:
        r.fail(results, "--results", "at least one DIR/<cluster>/<model>/pod-<i>/ of "
               f"{loadreplay.TOOL} reports", "none")
    if r.failed:
        raise ConfigError(r.report(results))
    return out


def _model(r: _Reader, model_dir: Path, export: Path, series: tuple[tuple[float, float], ...],
           replicas: int | None) -> tuple[int, tuple[StageResult, ...]] | None:
    pods = [p for p in r.entries(model_dir) if _POD.fullmatch(p.name)]
    if not pods:
        r.fail(model_dir, "(directory)", "pod-<i>/ directories of inference-perf reports", "none")
        return None
    before = r.failed
    plans = [_stages(r, pod) for pod in pods]
    counts = {len(p) for p in plans if p is not None}
    if len(counts) > 1:
        r.fail(model_dir, "pod-*/config.yaml load.stages", "the same stages in every pod of the model",
               ", ".join(f"{pod.name}: {len(p)}" for pod, p in zip(pods, plans) if p is not None))
    if r.failed > before:
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
    return (len(pods), tuple(stages)) if r.failed == before else None
