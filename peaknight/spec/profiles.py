"""The hardware and serving profiles as typed, read-only tables: the shipped data/profiles.yaml,
with a stack's own profiles file and the calibration file above it (one layering: load).

Loaded once per stack: the planner, the config validator and the simulator all read the same
table, so a number changed in the data file changes every consumer together.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml


@dataclass(frozen=True)
class Interconnect:
    """A node's high-speed network for replicas that span nodes (EFA on AWS): the devices a pod
    requests. Which fabric it is, is the instance type's `fabric`; the KV transfer and all-to-all
    flags over it are the workload's serving recipe's (data/recipes.yaml)."""

    resource: str       # the extended resource its device plugin advertises
    devices: int        # how many one node brings
    network_key: str    # node label: equal values are one network domain
    hugepages_mib: int = 0         # 2 MiB huge pages a pod using it requests (libfabric's EFA provider)
    env: tuple[tuple[str, str], ...] = ()          # what a pod using it must set (VKE: provisioners/vke_rdma.py)
    annotations: tuple[tuple[str, str], ...] = ()  # what its pod template must carry (VKE's pod-networks)


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str
    gpus: int
    cloud: str                        # aws, volcengine: which provisioners may launch it
    regions: tuple[str, ...]          # where its source shows it on sale
    interconnect: Interconnect | None = None
    source: str = ""
    # On-demand USD per instance-hour per region, and where each figure comes from (or "est." and
    # its derivation): what the night costs (plan/cost.py). A region without one has no cost.
    prices: Mapping[str, float] = field(default_factory=dict)
    price_source: str = ""
    fabric: str = ""                  # the network between its nodes (FABRICS): what a row must be measured on

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
class Architecture:
    """What the KV-cache memory bound needs from a model class's config.json."""

    params_b: float                 # parameters, billions
    replicated_params_b: float      # held whole by every data-parallel attention rank
    layers: int
    mla_dims: int = 0               # MLA: latent + rope elements per layer per token (0: GQA)
    kv_heads: int = 0               # GQA: KV heads per layer
    head_dim: int = 0


@dataclass(frozen=True)
class ModelClass:
    name: str
    description: str
    startup_seconds: int
    image_gib: float
    weights_gib: float
    architecture: Architecture
    source: str = ""   # where the figures come from (required in a stack's own profiles file)


# The networks between nodes a throughput row can be measured on and an instance type brings;
# nvlink: one node only (the row's groups never cross nodes).
FABRICS = ("infiniband", "roce", "efa", "nvlink")


@dataclass(frozen=True)
class Recipe:
    """What a throughput row's source ran: the engine and version, and the MoE choices a figure
    depends on (DeepEP all-to-all, two-batch overlap, expert load balancing)."""

    engine: str                  # engine and version as published ("sglang 0.4.6", "DeepSeek in-house")
    moe_a2a: str = "none"        # the expert-parallel all-to-all: deepep, or none (NCCL collectives; dense models)
    two_batch_overlap: bool = False
    eplb: bool = False

    def describe(self) -> str:
        extras = [n for n, on in (("two-batch overlap", self.two_batch_overlap), ("EPLB", self.eplb)) if on]
        return ", ".join([self.engine, f"all-to-all {self.moe_a2a}", *extras])


@dataclass(frozen=True)
class FabricDerating:
    """A cited ratio between a row's figure on the fabric it was measured on and the fabric rendered,
    for rows whose recipe used `moe_a2a` there: what the planner multiplies by when no row was
    measured on the rendered fabric."""

    measured_on: str
    rendered_on: str
    moe_a2a: str
    prefill: float
    decode: float
    source: str


COLOCATED = "colocated"
DISAGGREGATED = "disaggregated"
KV_BYTES = {"bf16": 2, "fp8": 1}


@dataclass(frozen=True)
class Group:
    """One group of GPUs serving one phase (or both, colocated) as a unit: its parallelism."""

    gpus: int
    tp: int   # the engine's tensor-parallel size over the group
    dp: int   # data-parallel attention ranks (1: attention replicated on every tp rank)
    ep: int   # expert parallelism (1: experts split by tp)

    def describe(self) -> str:
        return f"{self.gpus} GPUs tp{self.tp} dp{self.dp} ep{self.ep}"


@dataclass(frozen=True)
class ServingTopology:
    """What a throughput row was measured on and what the model must render for it to apply."""

    engine: str                 # vllm, sglang
    mode: str                   # colocated, disaggregated
    kv_dtype: str               # bf16, fp8
    serve: Group | None = None    # colocated: one replica
    prefill: Group | None = None  # disaggregated: one prefill group
    decode: Group | None = None   # disaggregated: one decode group

    @property
    def decoding(self) -> Group:
        """The group whose KV cache holds decoding requests: the one the memory bound sizes."""
        group = self.serve if self.mode == COLOCATED else self.decode
        assert group is not None
        return group

    def describe(self) -> str:
        if self.mode == COLOCATED and self.serve:
            return f"{self.engine} colocated ({self.serve.describe()}, KV {self.kv_dtype})"
        assert self.prefill and self.decode
        return (f"{self.engine} disaggregated (prefill {self.prefill.describe()}, decode {self.decode.describe()}, "
                f"KV {self.kv_dtype})")


@dataclass(frozen=True)
class Throughput:
    model_class: str
    gpu: str
    topology: ServingTopology
    prefill_tps: float           # one replica (colocated) or one prefill group's input tokens/s
    decode_tps: float            # one replica (colocated) or one decode group's output tokens/s
    input_tokens: int            # the measured requests' mean lengths
    output_tokens: int
    prefix_cache_hit_rate: float  # of input tokens, while measured (prefill_tps counts the hits)
    itl_seconds: float
    latency_target: str
    source: str
    # Where and when a calibrated row was measured (`peaknight calibrate`); "" for a shipped row.
    measured: str = ""
    fabric: str = ""              # the network between the source's nodes (FABRICS); "" unrecorded
    recipe: Recipe | None = None  # what the source ran; None unrecorded

    @property
    def key(self) -> tuple[str, str, str, str]:
        return row_key(self.model_class, self.gpu, self.topology.engine, self.topology.mode)

    @property
    def gpus_per_replica(self) -> int:
        """GPUs of one replica (colocated) or one decode group (disaggregated)."""
        return self.topology.decoding.gpus


def row_key(model_class: str, gpu: str, engine: str, mode: str) -> tuple[str, str, str, str]:
    """What identifies a throughput row: the one place rows are keyed (the planner, config and
    calibrated rows all look rows up through it). The rest of a row's topology (parallelism,
    KV dtype) is what the engine renders for that mode, so it is part of the row, not the key."""
    return (model_class, gpu, engine, mode)


def mapping_key(row: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """row_key of a row as written in YAML (profiles.yaml, calibration.yaml)."""
    return row_key(row["model_class"], row["gpu"], row["topology"]["engine"], row["topology"]["mode"])


def _row(raw: Mapping[str, Any]) -> Throughput:
    recipe = Recipe(**raw["recipe"]) if raw.get("recipe") else None
    return Throughput(**{**raw, "topology": _topology(raw["topology"]), "recipe": recipe})


def _topology(raw: dict) -> ServingTopology:
    groups = {k: Group(**raw[k]) for k in ("serve", "prefill", "decode") if raw.get(k)}
    return ServingTopology(raw["engine"], raw["mode"], raw["kv_dtype"], **groups)


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
    streams_per_pod: int


@dataclass(frozen=True)
class Router:
    """The endpoint picker's measured cost: `bench_cores` for `bench_requests_per_s` requests of
    `bench_input_tokens` input tokens each, and `idle_cores_per_100_pods` for scraping the pool's
    pods; and the memory the kit gives its pod."""

    bench_requests_per_s: float
    bench_input_tokens: int
    bench_cores: float
    idle_cores_per_100_pods: float
    max_pod_vcpu: int
    pod_memory_gib: int

    @property
    def input_tokens_per_core(self) -> float:
        return self.bench_requests_per_s * self.bench_input_tokens / self.bench_cores


@dataclass(frozen=True)
class Profiles:
    gpus: dict[str, float]  # GPU type -> memory GiB the driver reports
    instance_types: dict[str, InstanceType]
    model_classes: dict[str, ModelClass]
    throughput: dict[tuple[str, str, str, str], Throughput]  # row_key -> row
    timings: Timings
    gateway: Gateway
    router: Router
    edge_instance_types: dict[str, EdgeInstanceType]
    edge_network: EdgeNetwork
    fabric_deratings: tuple[FabricDerating, ...] = ()


# Files read above the shipped table, lowest first: the stack's own profiles file
# (`peaknight:profiles`: model classes, GPUs, instance types and throughput rows of its own, set by
# config.parse), the calibration file beside the stack files (throughput rows measured in a
# rehearsal by `peaknight calibrate --write`, set by config.load_stack and the Pulumi program), then
# rows calibrate has not written yet (with_rows). A row replaces the one below it of the same
# row_key; spec/profile_files.py validates both files.
CALIBRATION_FILE = "calibration.yaml"
_overlay: dict[str, Any] = {"profiles": None, "calibration": None, "rows": ()}


def use_profiles(path: Path | None) -> None:
    """Read the stack's own profiles file `path` above the shipped table from now on."""
    _use("profiles", path)


def use_calibration(path: Path | None) -> None:
    """Read `path` (when it exists) above the shipped throughput rows from now on."""
    _use("calibration", path)


def _use(layer: str, path: Path | None) -> None:
    """Read the layer from `path` from now on: re-read even when the path is the same, since the
    file may have changed since (`calibrate --write`, an edited profiles file in a long process)."""
    _overlay[layer] = path
    _forget()


def _forget() -> None:
    """Drop the cached table (the shipped file stays parsed: _shipped). Through the cached function
    itself, which a test may have stood another load() in front of."""
    _CACHED.cache_clear()


@contextmanager
def with_rows(rows: Iterable[Mapping[str, Any]]) -> Iterator[None]:
    """The table with `rows` above the calibration file, for the duration: how calibrate plans
    the broadcast with rows it has not written yet."""
    saved = _overlay["rows"]
    _overlay["rows"] = tuple(rows)
    _forget()
    try:
        yield
    finally:
        _overlay["rows"] = saved
        _forget()


@cache
def _shipped() -> dict[str, Any]:
    return yaml.load((Path(__file__).parent.parent / "data" / "profiles.yaml").read_text(),
                     Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _tables() -> dict[str, Any]:
    """The shipped tables with the stack's own profiles file above them, as YAML holds them."""
    from peaknight.spec import profile_files  # it imports config, which imports this module
    shipped, path = _shipped(), _overlay["profiles"]
    if path is None:
        return shipped
    own = profile_files.own(path, shipped)
    return {**shipped, **{k: {**shipped[k], **own[k]} for k in ("gpus", "instance_types", "model_classes")},
            "throughput": [*shipped["throughput"], *own["throughput"]]}


# What a calibrated row may say, judged against the shipped row it replaces (same model class,
# GPU, engine and topology, so the same hardware doing the same work). Faster than 4x the shipped
# figure is refused: the shipped rows are published peaks on that hardware, and a row faster than
# them sheds GPUs the night needs (a results file claiming 1e-300 replicas made a row of 4.2e304
# tok/s and dropped 5,760 GPUs from the broadcast). Slower than a thousandth is refused too: such a
# measurement is a broken run, and the fleet it asks for is a thousand times the shipped plan's.
PLAUSIBLE_FASTER = 4.0
PLAUSIBLE_SLOWER = 1000.0
# The only fields a calibrated row changes from the shipped row (calibration.py writes them): its
# rates, its text, and the fabric the rehearsal measured it on (plan/fabric.py: a row measured on
# the rendered fabric applies as published).
CALIBRATED_TEXT = ("latency_target", "source", "measured")
CALIBRATED_FIELDS = ("prefill_tps", "decode_tps", *CALIBRATED_TEXT, "fabric")
# A calibration file holds at most one row per shipped row: a few KiB each.
MAX_CALIBRATION_BYTES = 1 << 20
MAX_TEXT = 1000   # characters of a calibrated row's latency_target, source or measured


def implausible(shipped: Mapping[str, Any], prefill_tps: float, decode_tps: float) -> str:
    """What a calibrated row's rates should have been, or "" when they are plausible: finite and
    within PLAUSIBLE_SLOWER / PLAUSIBLE_FASTER of the shipped row's."""
    for have, ship in ((prefill_tps, shipped["prefill_tps"]), (decode_tps, shipped["decode_tps"])):
        if not (isinstance(have, (int, float)) and not isinstance(have, bool)
                and ship / PLAUSIBLE_SLOWER <= have <= ship * PLAUSIBLE_FASTER):
            return (f"a rate within 1/{PLAUSIBLE_SLOWER:,.0f} to {PLAUSIBLE_FASTER:g}x the shipped row's (prefill "
                    f"{shipped['prefill_tps']:,} and decode {shipped['decode_tps']:,} tok/s: "
                    f"{shipped['model_class']} on {shipped['gpu']})")
    return ""


def calibrated_rows(path: Path | None) -> list[dict[str, Any]]:
    """The rows of a calibration file: `throughput:` a list of rows, each a shipped row (same
    identity and every other field) with CALIBRATED_FIELDS changed, at most one per shipped row,
    its rates plausible (implausible()). A missing file has none; anything else wrong is bad input
    (ConfigError, one line per problem): the file is read as hostile (config.read_input)."""
    from peaknight.spec import config  # config imports this module
    if path is None or not path.exists():
        return []
    source = str(path)
    raw = config.load_yaml(config.read_input(path, MAX_CALIBRATION_BYTES, "a readable YAML calibration file"),
                           source)
    rows = raw.get("throughput") if isinstance(raw, dict) else None
    if not isinstance(rows, list):
        raise config.ConfigError([config.Problem(source, "throughput", "a list of throughput rows",
                                                 config.show(rows))])
    shipped = shipped_rows()
    problems, seen = [], set()
    for i, row in enumerate(rows):
        where = f"throughput[{i}]"
        key = _identity(row)
        base = shipped.get(key) if key else None
        if base is None:
            problems.append(config.Problem(source, where, "a row of a model class, GPU, engine and mode the profiles "
                                           "have (peaknight/data/profiles.yaml, or the stack's own profiles file)",
                                           config.show(key or row)))
            continue
        if key in seen:
            problems.append(config.Problem(source, where, "one row per shipped row", f"{key} again"))
        seen.add(key)
        for name in sorted(set(base) | set(row), key=str):
            if name in CALIBRATED_FIELDS:
                continue
            if not _same(name, row.get(name), base.get(name)):
                problems.append(config.Problem(source, f"{where}.{name}", "the shipped row's value (a calibration "
                                               f"changes only {', '.join(CALIBRATED_FIELDS)})",
                                               config.show(row.get(name))))
        if row.get("fabric", base.get("fabric", "")) not in ("", *FABRICS):
            problems.append(config.Problem(source, f"{where}.fabric", "the network the rehearsal measured it on: one "
                                           "of " + ", ".join(FABRICS), config.show(row.get("fabric"))))
        for name in CALIBRATED_TEXT:
            text = row.get(name, "")
            if not (isinstance(text, str) and len(text) <= MAX_TEXT and text.isprintable()):
                problems.append(config.Problem(source, f"{where}.{name}", f"one line of text (at most {MAX_TEXT} "
                                               "printable characters)", config.show(text)))
        wrong = implausible(base, row.get("prefill_tps"), row.get("decode_tps"))
        if wrong:
            problems.append(config.Problem(source, f"{where}.prefill_tps, decode_tps", wrong,
                                           f"{config.show(row.get('prefill_tps'))}, "
                                           f"{config.show(row.get('decode_tps'))}"))
    if problems:
        raise config.ConfigError(problems)
    return rows


def _same(field: str, value: Any, shipped: Any) -> bool:
    """A row's field as the shipped row has it (a topology or recipe compared as what it describes: a
    row written from the dataclass spells out its empty groups and default recipe fields)."""
    try:
        if field == "recipe":
            return (Recipe(**value) if value else None) == (Recipe(**shipped) if shipped else None)
        if field == "topology":
            return _topology(value) == _topology(shipped)
    except (KeyError, TypeError, AttributeError):
        return False
    return bool(value == shipped)


def _identity(row: Any) -> tuple[str, str, str, str] | None:
    """mapping_key of a row that has the shape for one, else None."""
    try:
        key = mapping_key(row)
    except (KeyError, TypeError):
        return None
    return key if all(isinstance(part, str) for part in key) else None


def shipped_rows() -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """The throughput rows a calibration may replace, by identity: the shipped table's and the
    stack's own profiles file's (a team calibrates its own model like ours)."""
    return {mapping_key(row): row for row in _tables()["throughput"]}


@cache
def load() -> Profiles:
    """Parse the packaged profile table, with the stack's own file and calibrated rows above it
    (cached: it is read on every plan)."""
    raw = _tables()
    throughput = {mapping_key(row): _row(row)
                  for row in [*raw["throughput"], *calibrated_rows(_overlay["calibration"]), *_overlay["rows"]]}
    return Profiles(
        gpus={name: row["memory_gib"] for name, row in raw["gpus"].items()},
        instance_types={name: InstanceType(name, row["gpu"], row["gpus"], row["cloud"], tuple(row["regions"]),
                                           Interconnect(**row["interconnect"]) if "interconnect" in row else None,
                                           row.get("source", ""), dict(row.get("prices") or {}),
                                           row.get("price_source", ""), row.get("fabric", ""))
                        for name, row in raw["instance_types"].items()},
        model_classes={name: ModelClass(name=name, **{**row, "architecture": Architecture(**row["architecture"])})
                       for name, row in raw["model_classes"].items()},
        throughput=throughput,
        timings=Timings(**raw["timings"]),
        gateway=Gateway(**raw["gateway"]),
        router=Router(**raw["router"]),
        edge_instance_types={name: EdgeInstanceType(name=name, **row) for name, row in raw["edge_instance_types"].items()},
        edge_network=EdgeNetwork(**raw["edge_network"]),
        fabric_deratings=tuple(FabricDerating(**row) for row in raw.get("fabric_deratings", ())),
    )


_CACHED = load


def rows_for(model_class: str, gpu: str) -> list[Throughput]:
    """Every row of `model_class` on `gpu`, whatever its topology: what a mismatch error lists."""
    return [r for r in load().throughput.values() if r.model_class == model_class and r.gpu == gpu]


def offered(instance_types: Iterable[str], cloud: str, region: str) -> list[str]:
    """Those of `instance_types` that `cloud` sells in `region`, in the given order."""
    table = load().instance_types
    return [t for t in instance_types if t in table and table[t].cloud == cloud and table[t].sold_in(region)]


def region_cloud(region: str) -> str | None:
    """The cloud whose catalog instance types are sold in `region` (us-east-1: aws), or None when
    none or several are: where a cluster whose provisioner names no cloud (`existing`) runs."""
    clouds = {t.cloud for t in load().instance_types.values() if t.sold_in(region)}
    return clouds.pop() if len(clouds) == 1 else None
