"""The shipped hardware and serving profiles (data/profiles.yaml) as typed, read-only tables.

Loaded once per process: the planner, the config validator and the simulator all read the same
table, so a number changed in the data file changes every consumer together.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Iterable

import yaml


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str
    gpus: int
    cloud: str                        # aws, volcengine: which provisioners may launch it
    regions: tuple[str, ...]          # where its source shows it on sale

    def sold_in(self, region: str) -> bool:
        return region in self.regions


@dataclass(frozen=True)
class ModelClass:
    name: str
    description: str
    startup_seconds: int
    image_gib: float
    weights_gib: float


@dataclass(frozen=True)
class Throughput:
    model_class: str
    gpu: str
    gpus_per_replica: int
    prefill_tps: float
    decode_tps: float
    latency_target: str
    source: str


@dataclass(frozen=True)
class Timings:
    node_batch_seconds: int
    node_ready_seconds: int
    gpu_driver_seconds: int
    image_pull_seconds_per_gib: float


@dataclass(frozen=True)
class Profiles:
    gpus: dict[str, int]  # GPU type -> memory GiB
    instance_types: dict[str, InstanceType]
    model_classes: dict[str, ModelClass]
    throughput: dict[tuple[str, str], Throughput]  # (model class, gpu) -> row
    timings: Timings


@cache
def load() -> Profiles:
    """Parse the packaged profile table (cached: it is read on every plan)."""
    raw = yaml.load((Path(__file__).parent.parent / "data" / "profiles.yaml").read_text(),
                    Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return Profiles(
        gpus={name: row["memory_gib"] for name, row in raw["gpus"].items()},
        instance_types={name: InstanceType(name, row["gpu"], row["gpus"], row["cloud"], tuple(row["regions"]))
                        for name, row in raw["instance_types"].items()},
        model_classes={name: ModelClass(name=name, **row) for name, row in raw["model_classes"].items()},
        throughput={(row["model_class"], row["gpu"]): Throughput(**row) for row in raw["throughput"]},
        timings=Timings(**raw["timings"]),
    )


def offered(instance_types: Iterable[str], cloud: str, region: str) -> list[str]:
    """Those of `instance_types` that `cloud` sells in `region`, in the given order."""
    table = load().instance_types
    return [t for t in instance_types if t in table and table[t].cloud == cloud and table[t].sold_in(region)]
