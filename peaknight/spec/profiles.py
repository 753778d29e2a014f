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
class Interconnect:
    """A node's high-speed network for replicas that span nodes (EFA on AWS)."""

    resource: str       # the extended resource its device plugin advertises
    devices: int        # how many one node brings
    network_key: str    # node label: equal values are one network domain


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str
    gpus: int
    cloud: str                        # aws, volcengine: which provisioners may launch it
    regions: tuple[str, ...]          # where its source shows it on sale
    interconnect: Interconnect | None = None

    def sold_in(self, region: str) -> bool:
        return region in self.regions


@dataclass(frozen=True)
class EdgeInstanceType:
    name: str
    vcpus: int
    memory_gib: int
    network_gbps: float
    source: str


@dataclass(frozen=True)
class EdgeNetwork:
    internet_share: float         # of an instance's bandwidth usable through an internet gateway
    internet_min_vcpus: int       # below this, 5 Gbps at most
    nlb_targets_per_zone: int
    nlb_targets: int

    def internet_gbps(self, itype: EdgeInstanceType) -> float:
        """What one node may send to viewers on the internet."""
        return itype.network_gbps * self.internet_share if itype.vcpus >= self.internet_min_vcpus else min(5.0, itype.network_gbps)


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
class Gateway:
    vcpu_per_1k_rps: float
    pod_vcpu: int
    pod_memory_gib: int
    tokens_per_request: int


@dataclass(frozen=True)
class Router:
    """The endpoint picker's measured cost: `bench_cores` for `bench_requests_per_s` requests of
    `bench_input_tokens` input tokens each; and the pod size the kit runs it at."""

    bench_requests_per_s: float
    bench_input_tokens: int
    bench_cores: float
    pod_vcpu: int
    pod_memory_gib: int

    @property
    def input_tokens_per_core(self) -> float:
        return self.bench_requests_per_s * self.bench_input_tokens / self.bench_cores


@dataclass(frozen=True)
class Profiles:
    gpus: dict[str, int]  # GPU type -> memory GiB
    instance_types: dict[str, InstanceType]
    model_classes: dict[str, ModelClass]
    throughput: dict[tuple[str, str], Throughput]  # (model class, gpu) -> row
    timings: Timings
    gateway: Gateway
    router: Router
    edge_instance_types: dict[str, EdgeInstanceType]
    edge_network: EdgeNetwork


@cache
def load() -> Profiles:
    """Parse the packaged profile table (cached: it is read on every plan)."""
    raw = yaml.load((Path(__file__).parent.parent / "data" / "profiles.yaml").read_text(),
                    Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return Profiles(
        gpus={name: row["memory_gib"] for name, row in raw["gpus"].items()},
        instance_types={name: InstanceType(name, row["gpu"], row["gpus"], row["cloud"], tuple(row["regions"]),
                                           Interconnect(**row["interconnect"]) if "interconnect" in row else None)
                        for name, row in raw["instance_types"].items()},
        model_classes={name: ModelClass(name=name, **row) for name, row in raw["model_classes"].items()},
        throughput={(row["model_class"], row["gpu"]): Throughput(**row) for row in raw["throughput"]},
        timings=Timings(**raw["timings"]),
        gateway=Gateway(**raw["gateway"]),
        router=Router(**raw["router"]),
        edge_instance_types={name: EdgeInstanceType(name=name, **row) for name, row in raw["edge_instance_types"].items()},
        edge_network=EdgeNetwork(**raw["edge_network"]),
    )


def offered(instance_types: Iterable[str], cloud: str, region: str) -> list[str]:
    """Those of `instance_types` that `cloud` sells in `region`, in the given order."""
    table = load().instance_types
    return [t for t in instance_types if t in table and table[t].cloud == cloud and table[t].sold_in(region)]
