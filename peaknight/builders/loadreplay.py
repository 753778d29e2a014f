"""Rehearsal load replay: inference-perf replays the night's demand curve against each model.

Per cluster and model, a CronJob fires at the window's start (the event's zone, like the moment
floors) and runs an Indexed Job of load pods. Their ConfigMap holds one inference-perf config: the
night's curve (forecast.load_at x this cluster's forecast peak, which already carries `scale` and
the cluster's `share`) cut into constant-rate Poisson stages of `loadReplay.stepMinutes`, split
evenly over the pods, and requests of the model's input/output mix (`inputShare` of
`loadReplay.requestTokens`). They call the model's Service (`url` of InferenceService), streaming,
so the tool measures TTFT and inter-token latency. The tokenizer is read from the model's weight
source in the cluster's first zone (builders/warmup.py, mounted read-only; the load pods run in that
zone and in the weights namespace, where the sources are): nothing is downloaded.

Results: each pod writes inference-perf's reports under `/results/<model>/pod-<index>/` on the
cluster's `load-replay-results` volume; docs/operations.md says how the operator copies them into
`DIR/<cluster>/` for `peaknight calibrate STACK --results DIR`.

The config format is inference-perf 0.7.0's (inference_perf/config/config.py and
config/loadgen/config.py at that release: `load.type: poisson`, `load.stages[]` of `rate` req/s and
`duration` s, `load.interval` s between stages; `data.type: random` with `fixed` length
distributions; `storage.local_storage.path`, which the command line overrides per pod). Only
rehearsal stages render it: config.py refuses `loadReplay` in a broadcast stack and
review/policy.py refuses these objects in a broadcast render.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import yaml

from peaknight.builders import podpolicy, warmup
from peaknight.builders.objects import (Obj, Scope, Tier, Unit, inference_namespace, meta, priority_class,
                                        weights_namespace)
from peaknight.engines.base import MODEL_DIR, PORT, revision_dir
from peaknight.plan.capacity import ClusterPlan, ModelPlan
from peaknight.spec import forecast, timeline
from peaknight.spec.stack import Cluster, LoadReplay, Model, Stage, StackSpec

TOOL = "inference-perf"
# The release whose config and report formats this module and review/calibration.py follow; the
# tests run the same release (pyproject's `load` extra), and loadReplay.image should carry it.
TOOL_VERSION = "0.7.0"
COMPONENT = "load-replay"
SERVICE_ACCOUNT = "load-replay"
RESULTS_CLAIM = "load-replay-results"
RESULTS_DIR = "/results"
CONFIG_DIR = "/config"
CONFIG_FILE = "config.yml"
# What the Job may take beyond the window: inference-perf's stage teardown grace (120 s by default)
# and report generation.
DEADLINE_SLACK_SECONDS = 1800
# CPU per load pod: inference-perf's workers are processes; four keep 200 req/s of streams.
POD_CPUS = 4


@dataclass(frozen=True)
class Step:
    """One constant-rate stage of the replay: local start, length, and the cluster's tokens/s."""

    start: dt.datetime
    seconds: int
    tokens_per_second: float


def name(model: Model) -> str:
    """The CronJob's and ConfigMap's name, and the load pods' app.kubernetes.io/name."""
    return f"load-{model.name}"


def pod_selector(scope: Scope) -> dict[str, str]:
    """Every load pod of the event (the network policies select them)."""
    return {"app.kubernetes.io/component": COMPONENT, "peaknight.io/event": scope.event.name}


def enabled(spec: StackSpec) -> bool:
    return spec.load_replay is not None and spec.policy.stage is not Stage.BROADCAST


def mix(model: Model, replay: LoadReplay) -> tuple[int, int]:
    """(input, output) tokens of one request: the model's input share of requestTokens, each at least 1."""
    prompt = min(replay.request_tokens - 1, max(1, round(replay.request_tokens * model.input_share)))
    return prompt, replay.request_tokens - prompt


def steps(spec: StackSpec, plan: ModelPlan, replay: LoadReplay) -> list[Step]:
    """The window as constant-rate steps: demand at each step's middle, equal neighbours merged."""
    out: list[Step] = []
    step = dt.timedelta(minutes=replay.step_minutes)
    at = spec.event.window.start
    while at < spec.event.window.end:
        length = min(step, spec.event.window.end - at)
        tps = plan.demand_tps.value * forecast.load_at(spec.event, at + length / 2)
        if out and math.isclose(out[-1].tokens_per_second, tps):
            out[-1] = Step(out[-1].start, out[-1].seconds + int(length.total_seconds()), tps)
        else:
            out.append(Step(at, int(length.total_seconds()), tps))
        at += length
    return out


def pods(spec: StackSpec, model: Model, plan: ModelPlan, replay: LoadReplay) -> int:
    """Load pods for the model's peak request rate at most podRequestsPerSecond each."""
    peak = max(s.tokens_per_second for s in steps(spec, plan, replay)) / replay.request_tokens
    return max(1, math.ceil(peak / replay.pod_requests_per_second - 1e-9))


def tool_config(spec: StackSpec, model: Model, plan: ModelPlan, replay: LoadReplay) -> dict[str, Any]:
    """inference-perf's config for one pod of the model's load Job (its share of every step)."""
    n = pods(spec, model, plan, replay)
    prompt, output = mix(model, replay)
    # In flight at once per pod: requests/s x how long one may take at the objective (first token,
    # then every output token at the ITL objective); the workers' concurrency must hold them.
    longest = spec.slo.ttft_p99_seconds + output * spec.slo.itl_p99_seconds
    in_flight = max(s.tokens_per_second for s in steps(spec, plan, replay)) / replay.request_tokens / n * longest
    fixed = lambda tokens: {"type": "fixed", "min": tokens, "max": tokens, "mean": tokens, "std_dev": 0}  # noqa: E731
    return {
        "api": {"type": "completion", "streaming": True},
        "data": {"type": "random", "input_distribution": fixed(prompt), "output_distribution": fixed(output)},
        "load": {
            "type": "poisson", "interval": 0, "num_workers": POD_CPUS,
            "worker_max_concurrency": max(100, math.ceil(in_flight / POD_CPUS)),
            "stages": [{"rate": round(s.tokens_per_second / replay.request_tokens / n, 4), "duration": s.seconds}
                       for s in steps(spec, plan, replay)],
        },
        "server": {"type": model.engine.value, "model_name": model.name, "ignore_eos": True,
                   "base_url": f"http://{model.name}.{inference_namespace(spec)}.svc:{PORT}"},
        "tokenizer": {"pretrained_model_name_or_path": f"{MODEL_DIR}/{revision_dir(model)}"},
        "report": {"request_lifecycle": {"summary": True, "per_stage": True, "per_request": False}},
    }


def _config_map(spec: StackSpec, model: Model, plan: ModelPlan, replay: LoadReplay) -> Obj:
    return Obj({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": meta(spec, COMPONENT, name(model), weights_namespace(spec)),
                "data": {CONFIG_FILE: yaml.safe_dump(tool_config(spec, model, plan, replay), sort_keys=False)}})


def _cron_job(spec: StackSpec, cluster: Cluster, model: Model, plan: ModelPlan, replay: LoadReplay) -> Obj:
    n = pods(spec, model, plan, replay)
    labels = meta(spec, COMPONENT, name(model))["labels"]
    window = timeline.window_minutes(spec) * 60
    container = {
        "name": "inference-perf", "image": replay.image, "imagePullPolicy": "IfNotPresent",
        # As upstream's own chart runs it (kubernetes-sigs/inference-perf, deploy/inference-perf/
        # templates/job.yaml); `--storage.local_storage.path` is one of the flags main_cli derives
        # from the config model (utils/cli_parser.py add_pydantic_args), overriding the file.
        "command": ["inference-perf"],
        # JOB_INDEX is this pod's index in the Indexed Job: each pod writes its own directory.
        "args": ["--config_file", f"{CONFIG_DIR}/{CONFIG_FILE}", "--log-level", "INFO",
                 "--storage.local_storage.path", f"{RESULTS_DIR}/{model.name}/pod-$(JOB_INDEX)"],
        "env": [{"name": "JOB_INDEX", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
                {"name": "HOME", "value": "/tmp"}, {"name": "HF_HUB_OFFLINE", "value": "1"}],
        "resources": {"requests": {"cpu": str(POD_CPUS), "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "weights", "mountPath": MODEL_DIR, "readOnly": True},
                         {"name": "results", "mountPath": RESULTS_DIR},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": podpolicy.container_security(),
    }
    job = {
        "completionMode": "Indexed", "completions": n, "parallelism": n, "backoffLimit": 0,
        "activeDeadlineSeconds": window + DEADLINE_SLACK_SECONDS,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                # A load generator: preempted before any serving pod.
                "priorityClassName": priority_class(spec, Tier.WARM),
                "securityContext": podpolicy.pod_security(podpolicy.RUN_AS_USER),
                "serviceAccountName": SERVICE_ACCOUNT,
                # Where the first zone's weight source is (the tokenizer's files).
                "nodeSelector": {podpolicy.ZONE: cluster.zones[0]},
                "automountServiceAccountToken": False,
                "containers": [container],
                "volumes": [{"name": "config", "configMap": {"name": name(model)}},
                            {"name": "weights", "persistentVolumeClaim": {"claimName": warmup.source_claim(model, 0),
                                                                          "readOnly": True}},
                            {"name": "results", "persistentVolumeClaim": {"claimName": RESULTS_CLAIM}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}],
            },
        },
    }
    return Obj({"apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": meta(spec, COMPONENT, name(model), weights_namespace(spec)),
                "spec": {"schedule": timeline.cron_at(spec.event.window.start), "timeZone": spec.event.time_zone,
                         "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 300,
                         "jobTemplate": {"metadata": {"labels": labels}, "spec": job}}})


def build(spec: StackSpec, cluster: Cluster, plan: ClusterPlan) -> Unit:
    """The cluster's load replay: its account, results volume, and per model a config and CronJob.
    After the night (`event.over`) only the results volume is left: the cron has no year."""
    replay = spec.load_replay
    assert replay is not None and enabled(spec)
    ns = weights_namespace(spec)
    objs = [Obj({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(spec, COMPONENT, SERVICE_ACCOUNT, ns),
                 "automountServiceAccountToken": False}),
            Obj({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": meta(spec, COMPONENT, RESULTS_CLAIM, ns),
                 "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": warmup.storage_class(cluster, 0),
                          "resources": {"requests": {"storage": f"{replay.results_gib}Gi"}}}})]
    for model in spec.models:
        objs.append(_config_map(spec, model, plan.bounding(model.name), replay))
        if not spec.event.over:
            objs.append(_cron_job(spec, cluster, model, plan.bounding(model.name), replay))
    return Unit("LoadReplay", cluster.name, tuple(objs))
