"""How long a new replica takes to serve: warm (its node holds the image and the weights) or cold
(a node must be launched first). The autoscaler's pre-scale lead, the rollout plan and the
simulator all take their start-up times from here."""
from __future__ import annotations

import math
from typing import Iterable

from peaknight.plan.figure import Figure
from peaknight.plan.weights import fill_seconds
from peaknight.spec import profiles
from peaknight.spec.stack import Model, Policy


def ready_seconds(policy: Policy, model: Model, warm: bool) -> Figure:
    """Seconds from a replica being created to it serving, from the profile table's timings and
    the node cache's fill time (plan/weights.py)."""
    table = profiles.load()
    cls, t = table.model_classes[model.model_class], table.timings
    if warm:
        return Figure(cls.startup_seconds, f"warm: model load {cls.startup_seconds} s")
    pull = math.ceil(cls.image_gib * t.image_pull_seconds_per_gib)
    fill = fill_seconds(policy).value
    total = t.node_batch_seconds + t.node_ready_seconds + t.gpu_driver_seconds + pull + fill + cls.startup_seconds
    return Figure(total, f"cold: node launch batch {t.node_batch_seconds} + node ready {t.node_ready_seconds} + "
                         f"GPU driver {t.gpu_driver_seconds} + image pull {cls.image_gib:g} GiB x "
                         f"{t.image_pull_seconds_per_gib:g} s/GiB = {pull} + weights to the node cache {fill:.0f} + "
                         f"model load {cls.startup_seconds} = {total:.0f} s")


# Slack on top of a replica's ready time before its moment: one HPA sync (15 s, kube-controller-
# manager default), a readiness probe cycle (5 s period x 3) and room for a slow scheduler.
PRESCALE_SLACK_SECONDS = 120


def longest_cold_lead(policy: Policy, models: Iterable[Model]) -> float:
    """Seconds before a moment the earliest cold pre-scale of any of `models` starts: the warm
    gate's staging must be done by then (plan/weights.py, builders/warmup.py must_finish)."""
    return max(lead(policy, m, warm=False).value for m in models)


def lead(policy: Policy, model: Model, warm: bool) -> Figure:
    """How long before a moment its pre-scale starts: the ready time, plus one HPA sync and a
    readiness-probe cycle of slack, rounded up to whole minutes because cron fires on minutes."""
    ready = ready_seconds(policy, model, warm)
    minutes = math.ceil((ready.value + PRESCALE_SLACK_SECONDS) / 60)
    return Figure(minutes * 60, f"ceil(({ready.why}) + slack {PRESCALE_SLACK_SECONDS} s) = {minutes} min")
