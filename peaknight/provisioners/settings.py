"""Each provisioner's settings in the stack file (`clusters[].provisioner`), chosen by `kind`.

Pure config types, importable by the spec without the builders: one settings class per
provisioner module, joined in ProvisionerSettings. A new provisioner adds its class here and its
module to provisioners/registry.py.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, ConfigDict, Discriminator, Field, Tag
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

from peaknight.spec.formats import IamRole

_STRICT = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_alias=True, validate_by_name=True,
                     frozen=True)


def _cloud_id(pattern: str, what: str):
    """Cloud ids end up in Pulumi properties and rendered files: accept only their documented shape."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{what} ({pattern})")
        return value
    return AfterValidator(check)


# AWS ids (cr-..., sg-...) and names are ASCII words; tag keys and values what EC2 allows.
ReservationId = Annotated[str, _cloud_id(r"cr-[0-9a-f]{8,17}", "an EC2 capacity reservation id")]
QueueName = Annotated[str, _cloud_id(r"[A-Za-z0-9_-]{1,80}", "an SQS queue name")]
TagText = Annotated[str, _cloud_id(r"[A-Za-z0-9 _.:/=+@-]{1,128}", "an EC2 tag key or value")]
# Volcano Engine ids: a prefix and lower-case letters and digits.
VkeClusterId = Annotated[str, _cloud_id(r"cc[a-z0-9]{6,40}", "a VKE cluster id")]
SubnetId = Annotated[str, _cloud_id(r"subnet-[a-z0-9]{6,40}", "a Volcano Engine subnet id")]
SecurityGroupId = Annotated[str, _cloud_id(r"sg-[a-z0-9]{6,40}", "a Volcano Engine security group id")]
NodeGroupName = Annotated[str, _cloud_id(r"[A-Za-z0-9._-]{1,63}", "a node group name")]
# An extended resource name as the kubelet takes it: a domain prefix and a name.
ExtendedResource = Annotated[str, _cloud_id(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}"
                                            r"[A-Za-z0-9])?", "an extended resource name (<domain>/<name>)")]
# The id of a Volcano Engine HPC cluster (its shape is not documented where the kit could read it:
# letters, digits and '-', as every Volcano Engine id seen).
HpcClusterId = Annotated[str, _cloud_id(r"[A-Za-z0-9-]{1,64}", "a Volcano Engine HPC cluster id")]
# A VKE add-on (component) name and version, as vke.Addon takes them (e.g. core-dns 1.10.1-vke.400).
VkeAddonName = Annotated[str, _cloud_id(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", "a VKE add-on name")]
VkeAddonVersion = Annotated[str, _cloud_id(r"v?[0-9]+(\.[0-9]+){1,3}([-.+][A-Za-z0-9.]{1,40})?", "a VKE add-on "
                                           "version")]
# An environment variable of a pod (a C identifier) and its value: one word of the characters NCCL's,
# NVSHMEM's and Mooncake's settings use (device lists: mlx5_1:1,mlx5_2:1; interface names).
EnvName = Annotated[str, _cloud_id(r"[A-Z][A-Z0-9_]{0,63}", "an environment variable name")]
EnvText = Annotated[str, _cloud_id(r"[A-Za-z0-9_.,:=^-]{1,256}", "an environment value (letters, digits, "
                                   "'_.,:=^-')")]


@dataclass(config=_STRICT, kw_only=True)
class VkeAddon:
    """A VKE-managed add-on the kit declares on the cluster (pulumi-volcengine vke.Addon)."""

    name: VkeAddonName = Field(description="the add-on's name in the cluster's component list "
                               "(vke.get_support_addons)")
    version: Optional[VkeAddonVersion] = Field(default=None, description="the version to pin (default the "
                                               "console's current one)")


@dataclass(config=_STRICT, kw_only=True)
class VkeRdma:
    """RDMA (RoCE) between the GPU nodes of a VKE cluster, for replicas that span nodes: each zone's
    node pool in one HPC cluster, and every pod of a spanning group requesting the RDMA device
    plugin's resource. No default for the resource name: it is the VKE RDMA component's, set it
    from the cluster (`kubectl describe node`, allocatable)."""

    resource: ExtendedResource = Field(description="the RDMA device plugin's extended resource (allocatable on "
                                       "the nodes), requested by every pod of a group that spans nodes")
    devices: int = Field(ge=1, le=64, description="how many of it one node brings (one pod per node takes all)")
    hpc_clusters: dict[str, HpcClusterId] = Field(description="zone -> HPC cluster id: the node pool of that zone "
                                                  "is placed in it (NodePool nodeConfig.hpcClusterIds)")
    addon: Optional[VkeAddon] = Field(default=None, description="VKE's RDMA device plugin component, declared "
                                      "on the cluster (vke.Addon); none: install it from the console (a warning)")
    env: dict[EnvName, EnvText] = Field(default_factory=dict, max_length=32, description="environment of every "
                                        "pod of a spanning group, over the kit's (provisioners/vke_rdma.py: "
                                        "NCCL_IB_GID_INDEX 7 from AIBrix's VKE samples; NVSHMEM and Mooncake est.)")


@dataclass(config=_STRICT, kw_only=True)
class KarpenterAwsSettings:
    """Karpenter on AWS (provisioners/karpenter.py): NodePools and EC2NodeClasses."""

    kind: Literal["karpenter-aws"] = "karpenter-aws"
    node_role: IamRole = Field(default="KarpenterNodeRole", description="IAM role of the nodes (EC2NodeClass role)")
    install: bool = Field(default=True, description="install the Karpenter chart; false where the cluster "
                          "already runs it (its CRDs are then assumed)")
    capacity_reservation_ids: tuple[ReservationId, ...] = Field(
        default=(), description="EC2 capacity reservations the pools launch into first (`reserved` capacity)")
    capacity_reservation_tags: dict[TagText, TagText] = Field(
        default_factory=dict, description="select capacity reservations by tag instead of (or besides) id")
    interruption_queue: Optional[QueueName] = Field(
        default=None, description="SQS queue of EC2 interruption events Karpenter drains nodes ahead of")
    freeze_lead_minutes: int = Field(default=60, ge=0, le=24 * 60, description="the node freeze starts this "
                                     "many minutes before the window")
    root_volume_throughput: int = Field(default=1000, ge=125, le=2000, description="gp3 MiB/s of each GPU "
                                        "node's root volume (image pulls)")
    root_volume_iops: int = Field(default=16000, ge=3000, le=80000, description="gp3 IOPS of the root volume")

    @property
    def selects_reservations(self) -> bool:
        """Whether the pools launch into capacity reservations (then `reserved` must be allowed)."""
        return bool(self.capacity_reservation_ids or self.capacity_reservation_tags)


@dataclass(config=_STRICT, kw_only=True)
class VolcengineVkeSettings:
    """Volcano Engine VKE node pools (provisioners/vke.py): one node pool per GPU pool and zone."""

    kind: Literal["volcengine-vke"]
    cluster_id: VkeClusterId = Field(description="the VKE cluster the node pools join")
    subnets: dict[str, SubnetId] = Field(description="zone -> subnet id: one per zone of the cluster")
    security_group_ids: tuple[SecurityGroupId, ...] = Field(min_length=1, description="security groups of "
                                                            "the GPU nodes")
    rdma: Optional[VkeRdma] = Field(default=None, description="RDMA between the GPU nodes: required where a "
                                    "model's replica spans nodes")

    @property
    def selects_reservations(self) -> bool:
        """No capacity reservations are declared for these nodes."""
        return False


@dataclass(config=_STRICT, kw_only=True)
class ExistingGroup:
    """One GPU node group the cluster already has (cluster-autoscaler or fixed)."""

    pool: str = Field(description="the kit's GPU pool these nodes serve")
    name: NodeGroupName = Field(description="the group's own name, for the operator")
    nodes: int = Field(ge=0, le=5000, description="nodes the group can hold (its maximum size; at most a "
                       "cluster's 5,000, the Kubernetes envelope)")


@dataclass(config=_STRICT, kw_only=True)
class ExistingSettings:
    """GPU node groups that exist already (provisioners/existing.py): the kit declares nothing for
    them; `plan` checks their sizes against the plan."""

    kind: Literal["existing"]
    groups: tuple[ExistingGroup, ...] = Field(min_length=1, description="the node groups per pool")

    @property
    def selects_reservations(self) -> bool:
        """No capacity reservations are declared for these nodes."""
        return False


DEFAULT_KIND = "karpenter-aws"
# kind -> settings class: the discriminator's tags, and how config errors name a member's keys.
PROVISIONER_SETTINGS: dict[str, type] = {"karpenter-aws": KarpenterAwsSettings, "volcengine-vke": VolcengineVkeSettings,
                                         "existing": ExistingSettings}


def _kind(value: Any) -> Any:
    """The discriminator: a mapping without `kind` is Karpenter on AWS, the kit's first provisioner."""
    if isinstance(value, dict):
        return value.get("kind", DEFAULT_KIND)
    return getattr(value, "kind", None)


ProvisionerSettings = Annotated[Union[Annotated[KarpenterAwsSettings, Tag("karpenter-aws")],
                                      Annotated[VolcengineVkeSettings, Tag("volcengine-vke")],
                                      Annotated[ExistingSettings, Tag("existing")]],
                                Discriminator(_kind)]
# The clouds each provisioner's nodes come from (profiles.yaml instance types' `cloud`); None: any.
PROVISIONER_CLOUD: dict[str, str | None] = {"karpenter-aws": "aws", "volcengine-vke": "volcengine", "existing": None}


def default_settings() -> KarpenterAwsSettings:
    """A cluster that names no provisioner gets this one (the kit's first, DEFAULT_KIND)."""
    return KarpenterAwsSettings()
