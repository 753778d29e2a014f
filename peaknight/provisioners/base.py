"""The provisioner seam: how a cluster gets the nodes of its GPU pools.

A provisioner is the only part of the kit that knows how nodes come to be (a node autoscaler, a
cloud's managed node pools, node groups that already exist). Everything else places pods by the
kit's own pool label and GPU taint (builders/podpolicy.py), which every provisioner puts on the
nodes it provides. A provisioner answers:

- the Kubernetes objects of one pool (an autoscaler's pool and node class objects, or none);
- the cloud resources of one pool that are not Kubernetes objects (a cloud node pool), which the
  offline render lists and the Pulumi program registers, both from the same CloudResource;
- the add-on chart that runs its controller, if any, and that chart's derived values;
- the policy findings that a broadcast pool is not frozen for the window;
- the PromQL for the GPUs a pool holds, for the pool-limit alert, and the alerts on its own
  failures to launch nodes;
- the node pool of a live edge (network-optimised nodes, sized by the plan) and the Service
  settings its cloud's load balancer needs to expose the edge per zone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from peaknight.builders.objects import CloudResource, Obj, Scope, Unit
from peaknight.plan.capacity import PoolPlan
from peaknight.spec import profiles
from peaknight.spec.stack import Cluster, GpuPool, StackSpec

Finding = tuple[Obj, str]


@dataclass(frozen=True)
class NodeSignal:
    """One alert on a provisioner's node launches: name, PromQL, how long, severity, what it means."""

    alert: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str


class Provisioner(Protocol):
    """One way of getting GPU nodes; see the module docstring for what each method decides."""

    kind: str
    # The add-on chart (addons/charts/<addon>) of the provisioner's controller, and the custom
    # kinds whose CRDs that chart brings; None and () when the provisioner needs no controller.
    addon: str | None
    crd_kinds: tuple[str, ...]
    # The CRD validation rules (CEL) `peaknight validate` checks on the kinds it declares, by
    # (apiVersion, kind): what the API server would refuse beyond the schema.
    api_rules: dict[tuple[str, str], Callable[[dict[str, Any]], Iterator[str]]]

    def installs_addon(self, cluster: Cluster) -> bool: ...

    def addon_values(self, cluster: Cluster) -> dict[str, Any]: ...

    def pool(self, scope: Scope, cluster: Cluster, pool: GpuPool, plan: PoolPlan) -> Unit:
        """The pool's unit: its Kubernetes objects and its cloud resources (Unit.cloud)."""

    def frozen_findings(self, scope: Scope, objs: Sequence[Obj]) -> Iterable[Finding]: ...

    def gpus_in_use(self, pool: str) -> str: ...

    def launch_failures(self) -> tuple["NodeSignal", ...]:
        """Alerts on the provisioner's own failures to launch nodes, from its controller's metrics;
        none where the kit scrapes no such controller."""

    def edge_pool(self, scope: Scope, cluster: Cluster, name: str, instance_types: Sequence[str],
                  cpu_limit: int, why: str) -> tuple[Obj, ...]:
        """The objects of a live edge's own node pool (label podpolicy.POOL_LABEL=name, taint
        podpolicy.EDGE_TAINT), capped at `cpu_limit` CPUs."""

    def load_balancer(self, cluster: Cluster) -> dict[str, Any]:
        """The viewers' Service settings this cloud's load balancer needs: `annotations` and
        `loadBalancerClass` (absent: the cluster's default load balancer)."""

    def problems(self, cluster: Cluster, plan: PoolPlan) -> list[str]:
        """Why the pool's nodes cannot hold the plan (a cloud's limit, a group too small): one
        line each; the gate (plan/gate.py) makes them `SHORT:` lines that `plan`, `render`, the
        Pulumi program and the GpuNodePool component refuse the plan with."""

    def warnings(self, spec: StackSpec, cluster: Cluster) -> list[str]:
        """What the operator should know before the night but may accept (`plan` and `render`
        print them)."""

    def cluster_resources(self, scope: Scope, cluster: Cluster) -> tuple[CloudResource, ...]:
        """Cloud resources of the whole cluster, not of one pool (a cloud-managed device plugin),
        declared with the cluster's base objects (ClusterBase)."""

    def weights_cache_path(self) -> str:
        """The directory on a GPU node's local disk that holds its node cache of weights
        (builders/warmup.py): on the fast local disk where the provisioner puts one."""



def offered(pool: GpuPool, cloud: str, region: str) -> list[str]:
    """The pool's instance types `cloud` sells in `region`, in the pool's order (config checks one is)."""
    return profiles.offered(pool.instance_types, cloud, region)

class WithoutController:
    """The shared part of provisioners that run no controller in the cluster (a cloud's node pools,
    groups that exist): no add-on, no custom kinds, nothing in Kubernetes to freeze or thaw, and
    the pool's GPUs counted from the nodes that carry its label."""

    addon: str | None = None
    crd_kinds: tuple[str, ...] = ()
    api_rules: dict[tuple[str, str], Callable[[dict[str, Any]], Iterator[str]]] = {}

    def installs_addon(self, cluster: Cluster) -> bool:
        return False

    def warnings(self, spec: StackSpec, cluster: Cluster) -> list[str]:
        return []

    def cluster_resources(self, scope: Scope, cluster: Cluster) -> tuple[CloudResource, ...]:
        return ()

    def addon_values(self, cluster: Cluster) -> dict[str, Any]:
        return {}

    def frozen_findings(self, scope: Scope, objs: Sequence[Obj]) -> Iterable[Finding]:
        """No Kubernetes object of such a pool can freeze or thaw it (docs/operations.md)."""
        return ()

    def edge_pool(self, scope: Scope, cluster: Cluster, name: str, instance_types: Sequence[str],
                  cpu_limit: int, why: str) -> tuple[Obj, ...]:
        """Nothing in Kubernetes: the edge's nodes are a node group the operator provides, labelled
        podpolicy.POOL_LABEL=name and tainted podpolicy.EDGE_TAINT (docs/operations.md)."""
        return ()

    def load_balancer(self, cluster: Cluster) -> dict[str, Any]:
        """The cluster's default load balancer for a LoadBalancer Service."""
        return {}

    def weights_cache_path(self) -> str:
        """On the node's root volume: the node group the operator provides must size it for the
        pool's weights twice (`peaknight plan` prints the disk per node)."""
        return "/var/lib/peaknight/weights"

    def launch_failures(self) -> tuple[NodeSignal, ...]:
        """A cloud's node pools or another team's groups: their controller's metrics are not the
        kit's to scrape (docs/operations.md); the pool GPU alert and pending replicas still page."""
        return ()

    def gpus_in_use(self, pool: str) -> str:
        """GPUs allocatable on the pool's nodes (kube-state-metrics exports the kit's pool label)."""
        return (f'sum(kube_node_status_allocatable{{resource="nvidia_com_gpu"}} * on(node) group_left '
                f'kube_node_labels{{label_peaknight_io_pool="{pool}"}})')
