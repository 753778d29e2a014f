"""Each provisioner's settings in the stack file (`clusters[].provisioner`), chosen by `kind`.

Pure config types, importable by the spec without the builders: one settings class per
provisioner module, joined in ProvisionerSettings. A new provisioner adds its class here and its
module to provisioners/registry.py.
"""
from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

_STRICT = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_alias=True, validate_by_name=True,
                     frozen=True)


@dataclass(config=_STRICT, kw_only=True)
class KarpenterAwsSettings:
    """Karpenter on AWS (provisioners/karpenter.py): NodePools and EC2NodeClasses."""

    kind: Literal["karpenter-aws"] = "karpenter-aws"
    node_role: str = Field(default="KarpenterNodeRole", description="IAM role of the nodes (EC2NodeClass role)")
    install: bool = Field(default=True, description="install the Karpenter chart; false where the cluster "
                          "already runs it (its CRDs are then assumed)")


# A union discriminated by `kind` as more provisioners arrive.
ProvisionerSettings = KarpenterAwsSettings


def default_settings() -> ProvisionerSettings:
    """A cluster that names no provisioner gets this one."""
    return KarpenterAwsSettings()
