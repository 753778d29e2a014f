"""What a pod of a group that spans VKE nodes needs to use RDMA (RoCE), beside the resource request.

VKE's guide "Using RDMA resources (RoCE) in VKE clusters" (volcengine.com/docs/6460/1125782) could
not be read from here (the stored page is its title only; BytePlus's copy stops at the modes), so
every value is from the one public source that runs pods with RDMA on VKE, AIBrix's Volcano Engine
samples (vllm-project/aibrix e3e10f9, 2026-08-22; the kit's docs/facts.md), or is marked est.:

- the annotation `k8s.volcengine.com/pod-networks`, one `{"cniConf":{"name":"rdma"}}` per RDMA
  interface, which attaches the node's RDMA interfaces to the pod (samples/deepseek-r1/
  deepseek-r1-huggingface.yaml, 8 entries beside `vke.volcengine.com/rdma: "8"`);
- NCCL over those interfaces: NCCL_IB_DISABLE=0, NCCL_IB_GID_INDEX=7 (the RoCE v2 GID "specific to
  Volcano Engine Cloud"), NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME eth0 for bootstrap
  (samples/disaggregation/sglang/pd-bucketing.yaml lines 73-80, SGLang PD with Mooncake);
- est.: NVSHMEM (DeepEP's internode transport) and Mooncake read the same GID table by their own
  variables, NVSHMEM_IB_GID_INDEX and MC_GID_INDEX (Mooncake's default is 3: kvcache-ai/Mooncake
  transfer engine docs), so both get NCCL's 7. No sample sets them on VKE.

NCCL_IB_HCA is not set: the samples' list (mlx5_1:1 .. mlx5_8:1) is for ecs.ebmhpcpni3l.48xlarge,
not the kit's H20 type, and NCCL uses every HCA the pod sees when it is unset. A stack overrides any
of these per cluster (`provisioner.rdma.env`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvValue:
    """One environment variable a spanning pod gets on VKE, with where its value comes from."""

    name: str
    value: str
    source: str
    estimated: bool = False


AIBRIX_PD = "vllm-project/aibrix e3e10f9 samples/disaggregation/sglang/pd-bucketing.yaml"
ENV = (
    EnvValue("NCCL_IB_DISABLE", "0", AIBRIX_PD),
    EnvValue("NCCL_IB_GID_INDEX", "7", AIBRIX_PD),
    EnvValue("NCCL_SOCKET_IFNAME", "eth0", AIBRIX_PD),
    EnvValue("GLOO_SOCKET_IFNAME", "eth0", AIBRIX_PD),
    EnvValue("NVSHMEM_IB_GID_INDEX", "7", "est.: NCCL_IB_GID_INDEX's GID on the same NICs", estimated=True),
    EnvValue("MC_GID_INDEX", "7", "est.: NCCL_IB_GID_INDEX's GID on the same NICs (Mooncake's default is 3)",
             estimated=True),
)
POD_NETWORKS = "k8s.volcengine.com/pod-networks"


def env(overrides: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The environment, the stack's overrides over the defaults, in a stable order."""
    merged = {e.name: e.value for e in ENV} | dict(overrides)
    return tuple(sorted(merged.items()))


def estimated(overrides: dict[str, str]) -> list[str]:
    """The variables whose value is the kit's estimate (not overridden by the stack): what the plan
    asks the operator to confirm."""
    return [f"{e.name}={e.value}" for e in ENV if e.estimated and e.name not in overrides]


def pod_annotations(devices: int) -> tuple[tuple[str, str], ...]:
    """One RDMA interface per device the pod requests, as AIBrix's samples attach them."""
    return ((POD_NETWORKS, json.dumps([{"cniConf": {"name": "rdma"}}] * devices)),)
