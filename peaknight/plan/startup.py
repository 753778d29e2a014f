"""How long a new replica takes to serve: warm (its node and image are there) or cold (a node
must be launched first). The autoscaler's pre-scale lead, the rollout plan and the simulator all
take their start-up times from here."""
from __future__ import annotations

import math

from peaknight.plan.figure import Figure
from peaknight.spec import profiles
from peaknight.spec.stack import Model


def ready_seconds(model: Model, warm: bool) -> Figure:
    """Seconds from a replica being created to it serving, from the profile table's timings."""
    table = profiles.load()
    cls, t = table.model_classes[model.model_class], table.timings
    if warm:
        return Figure(cls.startup_seconds, f"warm: model load {cls.startup_seconds} s")
    pull = math.ceil(cls.image_gib * t.image_pull_seconds_per_gib)
    total = t.node_batch_seconds + t.node_ready_seconds + t.gpu_driver_seconds + pull + cls.startup_seconds
    return Figure(total, f"cold: node launch batch {t.node_batch_seconds} + node ready {t.node_ready_seconds} + "
                         f"GPU driver {t.gpu_driver_seconds} + image pull {cls.image_gib:g} GiB x "
                         f"{t.image_pull_seconds_per_gib:g} s = {pull} + model load {cls.startup_seconds} = {total} s")
