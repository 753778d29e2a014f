"""Global steering: one name per event for the AI endpoints (`api.<event>.<domain>`) and one per
live edge (`<edge>.live.<event>.<domain>`), answered by every cluster in proportion to its share,
and only while the cluster's health check passes.

Each cluster declares its own part of each name in its cloud's DNS, as cloud resources beside its
node pools (`DIR/<cluster>.cloud.yaml`; the program registers them under the cluster's cloud
provider): a weighted CNAME to the cluster's own name (`api.<cluster>.<event>.<domain>`, which the
operator points at that cluster's gateway or edge load balancer), and where the cloud's DNS has
them, a health check on that own name. Removing a cluster removes its records: the others keep
their weights, so the DNS answers re-divide its share among them in proportion to theirs, which is
what plan/loss.py sizes the survivors for.

- AWS (karpenter-aws): Route 53 (`aws:route53/healthCheck:HealthCheck`, `aws:route53/record:Record`,
  pulumi-aws 7.51.1 wire names). Weights are 0-255: the largest share gets 255.
- Volcano Engine (volcengine-vke): pulumi-volcengine 0.0.47 has no GTM (cloud scheduling) and no DNS
  health check; it has TrafficRoute's weighted record (`volcengine:dns/record:Record`), which is what
  is declared. A dark cluster stays in the answers until the on-call sets its weight to 0
  (docs/runbook.md, "A cluster or region goes dark").
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import Any

from peaknight.builders.cluster_base import HTTPS_PORT, gateway_name
from peaknight.builders.objects import CloudResource, Obj, Unit, inference_namespace, meta
from peaknight.engines.base import PORT as SERVER_PORT
from peaknight.provisioners.settings import PROVISIONER_CLOUD
from peaknight.spec.stack import Cluster, ModelTier, StackSpec, Steering

HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
RECORD = "aws:route53/record:Record"
TRAFFICROUTE_RECORD = "volcengine:dns/record:Record"
# Route 53 weights are 0-255 (ResourceRecordSet.Weight); a weight of 0 takes no traffic.
ROUTE53_MAX_WEIGHT = 255
# est.: TrafficRoute's weighted records, by the same rule, on a 1-100 scale (pulumi-volcengine 0.0.47
# does not document the range; set a lower one if TrafficRoute refuses).
TRAFFICROUTE_MAX_WEIGHT = 100
# The live edge answers its readiness path on the viewers' port (edges/live.py), plain HTTP on 80.
EDGE_HEALTH_PATH = "/healthz"
PORT = 80
# The Gateway listens on HTTPS 443 alone (builders/cluster_base.py), so its probe is HTTPS there, with
# SNI (Route 53 HTTPS checks do not validate the certificate: its developer guide, "Values that you
# specify when you create or update health checks", Protocol HTTPS).
API_PORT = HTTPS_PORT
HEALTH_ROUTE = "steering-health"
# Where the health route answers in the cluster: sglang-router's readiness (200 once it has healthy
# servers), or the model server's own /health (engines/*.py probes).
ROUTER_READINESS_PATH, SERVER_HEALTH_PATH = "/readiness", "/health"


@dataclass(frozen=True)
class Entry:
    """One cluster's part of one global name: where it points, how it is probed, its weight."""

    part: str      # "api" or the edge's name: names the resources
    name: str      # the global name
    target: str    # the cluster's own name for it
    path: str      # the health check's path
    weight: int
    scheme: str = "HTTP"   # Route 53's health check type: HTTP or HTTPS
    port: int = PORT


def weight(spec: StackSpec, cluster: Cluster, top: int) -> int:
    """The cluster's share on the DNS's integer scale, the largest share at `top`; at least 1, so a
    cluster with a share is never left out by rounding."""
    largest = max(c.share for c in spec.clusters)
    return max(1, round(cluster.share / largest * top))


def entries(spec: StackSpec, steering: Steering, cluster: Cluster, top: int) -> list[Entry]:
    """The cluster's part of the assistant's name and of each live edge's."""
    event, w = spec.event.name, weight(spec, cluster, top)
    out = [Entry("api", steering.api_name(event), steering.api_name(event, cluster.name),
                 steering.health_check.api_path, w, "HTTPS", API_PORT)]
    out += [Entry(edge.name, steering.edge_name(event, edge.name), steering.edge_name(event, edge.name, cluster.name),
                  EDGE_HEALTH_PATH, w) for edge in spec.edges]
    return out


def _route53(spec: StackSpec, steering: Steering, cluster: Cluster) -> list[CloudResource]:
    out = []
    check = steering.health_check
    for e in entries(spec, steering, cluster, ROUTE53_MAX_WEIGHT):
        props: dict[str, Any] = {
            "type": e.scheme, "fqdn": e.target, "port": e.port, "resourcePath": e.path,
            "requestInterval": check.interval_seconds, "failureThreshold": check.failure_threshold,
            "tags": {"Name": e.target, "peaknight.io/event": spec.event.name, "peaknight.io/cluster": cluster.name},
        }
        if e.scheme == "HTTPS":
            props["enableSni"] = True   # the Gateway's listener serves the certificate for the name asked
        probe = CloudResource(HEALTH_CHECK, f"{cluster.name}-{e.part}", props,
                              summary=f"{e.scheme} {e.target}:{e.port}{e.path} every {check.interval_seconds} s, "
                   f"{check.failure_threshold} failures to leave")
        out.append(probe)
        out.append(CloudResource(RECORD, f"{cluster.name}-{e.part}", {
            "zoneId": steering.zone_id, "name": e.name, "type": "CNAME", "ttl": steering.ttl_seconds,
            "records": [e.target], "setIdentifier": cluster.name,
            "weightedRoutingPolicies": [{"weight": e.weight}],
            "healthCheckId": CloudResource.ref(probe),
        }, summary=f"{e.name} -> {e.target}, weight {e.weight}/{ROUTE53_MAX_WEIGHT} (share {cluster.share:g}), "
                   f"TTL {steering.ttl_seconds} s"))
    return out


def _trafficroute(spec: StackSpec, steering: Steering, cluster: Cluster) -> list[CloudResource]:
    out = []
    for e in entries(spec, steering, cluster, TRAFFICROUTE_MAX_WEIGHT):
        host = e.name[:-len(steering.domain) - 1]
        out.append(CloudResource(TRAFFICROUTE_RECORD, f"{cluster.name}-{e.part}", {
            "zid": int(steering.zone_id), "host": host, "type": "CNAME", "value": e.target,
            "ttl": steering.ttl_seconds, "weight": e.weight, "line": "default",
            "remark": f"peaknight {spec.event.name} {cluster.name}",
        }, summary=f"{e.name} -> {e.target}, weight {e.weight}/{TRAFFICROUTE_MAX_WEIGHT} (share {cluster.share:g}), "
                   f"TTL {steering.ttl_seconds} s, no health check (none in pulumi-volcengine 0.0.47)"))
    return out


_BY_CLOUD = {"aws": _route53, "volcengine": _trafficroute}


def health_route(spec: StackSpec, steering: Steering) -> dict[str, Any]:
    """What answers the API health check on each cluster's Gateway: `healthCheck.apiPath`, exactly,
    to the assistant's own readiness (its router's, or its servers' /health for a colocated model):
    2xx while the cluster can serve it (the Service named after the model: builders/inference.py). Its own HTTPRoute, so no SecurityPolicy or
    BackendTrafficPolicy (each targets one model's route by name) puts credentials or limits on it."""
    model = next((m for m in spec.models if m.tier is ModelTier.ASSISTANT), spec.models[0])
    health = ROUTER_READINESS_PATH if model.disaggregated else SERVER_HEALTH_PATH
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": meta(spec, "gateway", HEALTH_ROUTE, inference_namespace(spec)),
        "spec": {
            "parentRefs": [{"name": gateway_name(spec)}],
            "rules": [{
                "matches": [{"method": "GET", "path": {"type": "Exact", "value": steering.health_check.api_path}}],
                "filters": [{"type": "URLRewrite", "urlRewrite": {
                    "path": {"type": "ReplaceFullPath", "replaceFullPath": health}}}],
                "backendRefs": [{"name": model.name, "port": SERVER_PORT}],
            }],
        },
    }


def unit(spec: StackSpec, steering: Steering, cluster: Cluster) -> Unit:
    """The cluster's part of the global names, in its cloud's DNS (config checks it has one here),
    and the route its API health check probes."""
    build = _BY_CLOUD[PROVISIONER_CLOUD[cluster.provisioner.kind] or ""]
    return Unit("GlobalSteering", "steering", (Obj(health_route(spec, steering)),), tuple(build(spec, steering, cluster)))


def health_checked(spec: StackSpec) -> bool:
    """Whether the clusters' DNS drops a dark cluster by itself: Route 53's health checks do;
    TrafficRoute's records here have none."""
    return spec.steering is not None and all(PROVISIONER_CLOUD[c.provisioner.kind] == "aws" for c in spec.clusters)


def move_seconds(spec: StackSpec) -> float:
    """How long after a cluster goes dark its users reach the others: the health check's failures
    in a row, then resolvers' cached answers expiring (the TTL). Never without health checks (no
    steering, or a cloud whose DNS has none: the on-call takes the records out by hand)."""
    if spec.steering is None or not health_checked(spec):
        return float("inf")
    check = spec.steering.health_check
    return check.interval_seconds * check.failure_threshold + spec.steering.ttl_seconds
