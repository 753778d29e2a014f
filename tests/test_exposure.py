"""Least privilege in the rendered objects: which flows the NetworkPolicies allow (evaluated with the
API's semantics), which paths the public routes reach, who authenticates clients, and what each pod
may do (own ServiceAccount without a token, read-only root filesystem)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

import nights
from peaknight.builders import cluster_base, event, network, steering
from peaknight.builders.objects import edge_namespace, inference_namespace, monitoring_namespace
from peaknight.edges import live, logs as edge_logs
from peaknight.engines import base as engines
from peaknight.review.policy import pod_specs
from peaknight.spec import config
from test_config import _set, run_render, write_variant


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "10.1.2.3"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] != "In":
            raise NotImplementedError(expr["operator"])
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _peer_matches(peer: dict[str, Any], pod: Pod, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        import ipaddress
        return ipaddress.ip_address(pod.ip) in ipaddress.ip_network(peer["ipBlock"]["cidr"])
    if "namespaceSelector" in peer:
        ns_ok = _selects(peer["namespaceSelector"], {network.NAMESPACE_LABEL: pod.namespace})
    else:
        ns_ok = pod.namespace == policy_ns
    return ns_ok and _selects(peer.get("podSelector", {}), pod.labels)


def _rule_allows(rule: dict[str, Any], peers_key: str, peer: Pod, port: int, policy_ns: str) -> bool:
    ports = rule.get("ports")
    if ports is not None and not any(p["port"] == port for p in ports):
        return False
    peers = rule.get(peers_key)
    return peers is None or any(_peer_matches(p, peer, policy_ns) for p in peers)


def allowed(policies: list[dict[str, Any]], src: Pod, dst: Pod, port: int) -> bool:
    """NetworkPolicy semantics: a direction is open unless a policy selecting the pod restricts it;
    then some rule of those policies must allow the flow. Both ends must allow it."""
    def side(pod: Pod, direction: str, other: Pod) -> bool:
        selecting = [p for p in policies if p["metadata"]["namespace"] == pod.namespace
                     and direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], pod.labels)]
        if not selecting:
            return True
        key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        return any(_rule_allows(r, peers, other, port, p["metadata"]["namespace"])
                   for p in selecting for r in p["spec"].get(key, []))
    return side(src, "Egress", dst) and side(dst, "Ingress", src)


@pytest.fixture(scope="module")
def broadcast():
    objects = nights.objects("broadcast")
    return objects.spec, [o.manifest for u in objects.clusters[0].units for o in u.objects]


def _of(manifests, kind):
    return [m for m in manifests if m["kind"] == kind]


def _pod_labels(manifests, kind: str, name: str) -> dict[str, str]:
    m = next(m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name)
    spec = m["spec"]
    template = spec["leaderWorkerTemplate"]["leaderTemplate"] if kind == "LeaderWorkerSet" else spec["template"]
    return template["metadata"]["labels"]


def test_every_kit_namespace_denies_by_default_and_resolves_names_only_through_kube_dns(broadcast):
    spec, manifests = broadcast
    policies = _of(manifests, "NetworkPolicy")
    for ns in (inference_namespace(spec), edge_namespace(spec), monitoring_namespace(spec)):
        deny = next(p for p in policies if p["metadata"]["namespace"] == ns and p["metadata"]["name"] == "default-deny")
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}
        stray = Pod(ns, {"app.kubernetes.io/name": "debug"})
        dns = Pod("kube-system", {"k8s-app": "kube-dns"})
        assert allowed(policies, stray, dns, 53)
        assert not allowed(policies, stray, Pod("kube-system", {"k8s-app": "other"}), 53)
        assert not allowed(policies, stray, Pod("default"), 443)


def _callers(spec) -> tuple[str, Pod, Pod]:
    """The inference namespace, the Gateway's Envoy pod and Prometheus."""
    ns = inference_namespace(spec)
    return ns, _envoy(spec, "envoy-gateway-system"), Pod("monitoring", network.PROMETHEUS_POD)


def _envoy(spec, namespace: str) -> Pod:
    """A pod wearing Envoy Gateway's labels for the event's Gateway, in `namespace`."""
    return Pod(namespace, {cluster_base.OWNING_GATEWAY_NAME: f"{spec.event.name}-gateway",
                           cluster_base.OWNING_GATEWAY_NAMESPACE: inference_namespace(spec)})


def test_a_pod_wearing_the_gateways_labels_elsewhere_reaches_nothing_behind_it(broadcast):
    """Labels are the pod author's to choose; the namespace label is the API server's. A pod in any
    namespace but Envoy Gateway's that copies the proxies' labels reaches no server, router or
    endpoint picker (which would skip the SecurityPolicy's authentication)."""
    spec, manifests = broadcast
    policies = _of(manifests, "NetworkPolicy")
    ns = inference_namespace(spec)
    targets = [(Pod(ns, _pod_labels(manifests, "Deployment", "greetings-s0")), engines.PORT),
               (Pod(ns, _pod_labels(manifests, "Deployment", "chat-router")), engines.PORT),
               (Pod(ns, _pod_labels(manifests, "Deployment", "greetings-s0-epp")), 9002)]
    for target, port in targets:
        assert allowed(policies, _envoy(spec, "envoy-gateway-system"), target, port)
        for namespace in (ns, "default", "tenant-a", edge_namespace(spec)):
            assert not allowed(policies, _envoy(spec, namespace), target, port), (namespace, target)
    peers = [peer for p in policies for rule in p["spec"].get("ingress", []) for peer in rule.get("from", [])]
    assert all(peer.get("namespaceSelector") != {} for peer in peers), "no peer admits every namespace"


def test_model_servers_answer_the_gateway_and_prometheus_only(broadcast):
    spec, manifests = broadcast
    policies = _of(manifests, "NetworkPolicy")
    ns, envoy, prometheus = _callers(spec)
    for kind, name in (("Deployment", "greetings-s0"),):
        server = Pod(ns, _pod_labels(manifests, kind, name))
        assert allowed(policies, envoy, server, engines.PORT)
        assert allowed(policies, prometheus, server, engines.PORT)
        assert not allowed(policies, envoy, server, 22)
        assert not allowed(policies, Pod(ns, {"app.kubernetes.io/name": "debug"}), server, engines.PORT)
        assert not allowed(policies, Pod(edge_namespace(spec), _pod_labels(manifests, "Deployment", "gala-live")),
                           server, engines.PORT)
        assert not allowed(policies, server, Pod("default"), 443), "a model server reaches nothing outside"
    # The pods of one LeaderWorkerSet group reach each other (rendezvous, NCCL); a Deployment's do not need to.
    group = Pod(ns, _pod_labels(manifests, "LeaderWorkerSet", "deep-think-decode"))
    assert allowed(policies, group, group, 20000)
    greetings = Pod(ns, _pod_labels(manifests, "Deployment", "greetings-s0"))
    assert not allowed(policies, greetings, greetings, 20000)


def test_a_disaggregated_model_is_reached_through_its_router_and_sends_its_kv_cache_across(broadcast):
    spec, manifests = broadcast
    policies = _of(manifests, "NetworkPolicy")
    ns, envoy, prometheus = _callers(spec)
    router = Pod(ns, _pod_labels(manifests, "Deployment", "chat-router"))
    prefill = Pod(ns, _pod_labels(manifests, "LeaderWorkerSet", "chat-prefill"))
    decode = Pod(ns, _pod_labels(manifests, "LeaderWorkerSet", "chat-decode"))
    assert allowed(policies, envoy, router, engines.PORT)
    assert not allowed(policies, Pod(ns, {"app.kubernetes.io/name": "debug"}), router, engines.PORT)
    for server in (prefill, decode):
        assert not allowed(policies, envoy, server, engines.PORT), "clients reach the servers through the router"
        assert allowed(policies, router, server, engines.PORT)
        assert allowed(policies, prometheus, server, engines.PORT)
        assert not allowed(policies, router, server, 22)
    # KV bootstrap (8998) and the transfer side channels (ports the engine picks), both ways.
    assert allowed(policies, decode, prefill, 8998) and allowed(policies, prefill, decode, 41234)
    assert not allowed(policies, router, Pod(ns, _pod_labels(manifests, "Deployment", "greetings-s0")), engines.PORT)
    # Service discovery: the router watches pods through the API server (no addresses given: its ports).
    assert allowed(policies, router, Pod("default", ip="10.100.0.1"), 443)


def test_with_the_api_servers_addresses_the_pickers_and_routers_reach_it_alone(tmp_path):
    path = write_variant(tmp_path, _set(["peaknight:clusters", 0, "apiServerCidrs"], ["10.100.0.1/32", "10.0.8.0/24"]))
    spec = config.load_stack(str(path)).spec
    manifests = [o.manifest for u in event.build(spec).clusters[0].units for o in u.objects]
    policies = _of(manifests, "NetworkPolicy")
    for name in ("chat-router", "greetings-s0-epp"):
        pod = Pod(inference_namespace(spec), _pod_labels(manifests, "Deployment", name))
        assert allowed(policies, pod, Pod("default", ip="10.100.0.1"), 443)
        assert allowed(policies, pod, Pod("default", ip="10.0.8.77"), 6443)
        assert not allowed(policies, pod, Pod("elsewhere", ip="203.0.113.5"), 443), name
        assert not allowed(policies, pod, Pod("elsewhere", ip="169.254.169.254"), 443), name
    assert not [p for p in config.placeholders(spec, str(path)) if p.path.endswith("clusters[0].apiServerCidrs")]
    assert [p.path for p in config.placeholders(spec, str(path)) if "apiServerCidrs" in p.path][0] == \
        "peaknight:clusters[1].apiServerCidrs"


def test_viewers_reach_the_edge_the_edge_its_shields_and_only_shields_the_origins(broadcast):
    spec, manifests = broadcast
    policies = _of(manifests, "NetworkPolicy")
    edge = Pod(edge_namespace(spec), _pod_labels(manifests, "Deployment", "gala-live"))
    viewer = Pod("ingress-nginx", ip="198.51.100.7")
    assert allowed(policies, viewer, edge, 8080)
    assert not allowed(policies, viewer, edge, live.EXPORTER_PORT)
    prometheus = Pod("monitoring", network.PROMETHEUS_POD)
    assert allowed(policies, prometheus, edge, live.EXPORTER_PORT)
    assert allowed(policies, prometheus, edge, edge_logs.EXPORTER_PORT)
    shield = Pod(edge_namespace(spec), _pod_labels(manifests, "StatefulSet", "gala-live-shield"))
    assert allowed(policies, edge, shield, 8080)
    assert not allowed(policies, viewer, shield, 8080)
    assert allowed(policies, prometheus, shield, live.EXPORTER_PORT)
    origin = Pod("origin", ip="192.0.2.10")
    assert allowed(policies, shield, origin, 8080)                              # origins by name: their port
    assert not allowed(policies, shield, origin, 22)
    assert not allowed(policies, edge, origin, 8080)                            # thousands of edges never do
    assert not allowed(policies, edge, Pod(inference_namespace(spec), _pod_labels(manifests, "Deployment",
                                                                                   "greetings-s0")), engines.PORT)


def test_an_edge_with_source_ranges_takes_viewers_from_those_ranges_only(tmp_path):
    path = write_variant(tmp_path, _set(["peaknight:edges", 0, "sourceRanges"], ["203.0.113.0/24"]))
    spec = config.load_stack(str(path)).spec
    manifests = [o.manifest for u in event.build(spec).clusters[0].units for o in u.objects]
    policies = _of(manifests, "NetworkPolicy")
    edge = Pod(edge_namespace(spec), _pod_labels(manifests, "Deployment", "gala-live"))
    assert allowed(policies, Pod("x", ip="203.0.113.9"), edge, 8080)
    assert not allowed(policies, Pod("x", ip="198.51.100.7"), edge, 8080)


def _gateway_answer(routes: list[dict[str, Any]], path: str) -> tuple[str, str] | None:
    """(backend, path the backend sees) for a request path under Gateway API matching, None for 404."""
    for route in routes:
        for rule in route["spec"]["rules"]:
            for match in rule["matches"]:
                kind, value = match["path"]["type"], match["path"]["value"]
                hit = path == value if kind == "Exact" else (path == value or path.startswith(value.rstrip("/") + "/"))
                if not hit:
                    continue
                rewrite = next(f["urlRewrite"]["path"] for f in rule.get("filters", []) if f["type"] == "URLRewrite")
                seen = (rewrite["replaceFullPath"] if rewrite["type"] == "ReplaceFullPath"
                        else rewrite["replacePrefixMatch"].rstrip("/") + path[len(value.rstrip("/")):])
                return rule["backendRefs"][0]["name"], seen
    return None


def test_public_routes_reach_the_serving_api_only(broadcast):
    _, manifests = broadcast
    routes = _of(manifests, "HTTPRoute")
    assert _gateway_answer(routes, "/chat/v1/chat/completions") == ("chat", "/v1/chat/completions")
    # greetings' first picker shard's pool (builders/shards.py: the route weights all 8).
    assert _gateway_answer(routes, "/greetings/v1/models") == ("greetings-s0", "/v1/models")
    # The steering health check's one path, to the assistant router's readiness (issue 27).
    assert _gateway_answer(routes, "/healthz") == ("chat", "/readiness")
    for path in ("/chat/metrics", "/chat/health", "/chat/v1/metrics", "/chat/flush_cache", "/chat/",
                 "/chat/update_weights_from_disk", "/greetings/v1/load_lora_adapter", "/chat/v1/chat/completions/x"):
        assert _gateway_answer(routes, path) is None, path


def test_every_route_requires_an_api_key_by_default(broadcast):
    spec, manifests = broadcast
    policies = {p["metadata"]["name"]: p["spec"] for p in _of(manifests, "SecurityPolicy")}
    for route in _of(manifests, "HTTPRoute"):
        name = route["metadata"]["name"]
        if name == steering.HEALTH_ROUTE:   # the DNS health checkers carry no credentials (issue 27)
            assert name not in policies
            continue
        assert policies[name] == {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": name}],
            "apiKeyAuth": {"credentialRefs": [{"name": f"{name}-api-keys"}], "extractFrom": [{"headers": ["x-api-key"]}],
                           "sanitize": True}}


def test_jwt_auth_checks_tokens_against_the_issuer(tmp_path):
    auth = {"type": "jwt", "jwksUri": "https://id.example.com/jwks.json", "issuer": "https://id.example.com",
            "audiences": ["gala-assistant"]}
    spec = config.load_stack(str(write_variant(tmp_path, _set(["peaknight:models", 1, "auth"], auth)))).spec
    manifests = [o.manifest for u in event.build(spec).clusters[0].units for o in u.objects]
    policy = next(p for p in _of(manifests, "SecurityPolicy") if p["metadata"]["name"] == "greetings")
    assert policy["spec"]["jwt"] == {"providers": [{"name": "greetings", "issuer": "https://id.example.com",
                                                    "audiences": ["gala-assistant"],
                                                    "remoteJWKS": {"uri": "https://id.example.com/jwks.json"}}]}


@pytest.mark.parametrize("auth,line", [
    ({"type": "none"}, "models[0].auth.type: expected apiKey or jwt in a broadcast stack (its routes are public); "
                       "found 'none'"),
    ({"type": "jwt", "jwksUri": "http://id.example.com/jwks.json", "issuer": "https://id.example.com",
      "audiences": ["a"]},
     "models[0].auth.jwksUri: expected an https URL (a key set fetched over http can be swapped on the way); "
     "found 'http://id.example.com/jwks.json'"),
    ({"type": "jwt", "jwksUri": "https://169.254.169.254/latest/meta-data", "issuer": "https://id.example.com",
      "audiences": ["a"]},
     "models[0].auth.jwksUri: expected an https URL of a public key server, not a link-local, loopback or metadata "
     "address; found 'https://169.254.169.254/latest/meta-data'"),
    ({"type": "jwt", "jwksUri": "https://[fd00:ec2::254]/keys", "issuer": "https://id.example.com",
      "audiences": ["a"]},
     "models[0].auth.jwksUri: expected an https URL of a public key server, not a link-local, loopback or metadata "
     "address; found 'https://[fd00:ec2::254]/keys'"),
    ({"type": "apiKey", "audiences": ["a"]},
     "models[0].auth.type: expected jwt where jwksUri, issuer or audiences is set; found 'apiKey'"),
])
def test_auth_that_would_leave_a_route_open_is_refused(auth, line, tmp_path, capsys):
    path = write_variant(tmp_path, _set(["peaknight:models", 0, "auth"], auth))
    assert run_render(path, tmp_path, capsys) == (2, [f"{path}: peaknight:{line}"])


def test_jwt_needs_its_key_set_issuer_and_audience_all_named_at_once(tmp_path, capsys):
    """Without issuer and audience any token the key set verifies passes, whoever it was minted for."""
    path = write_variant(tmp_path, _set(["peaknight:models", 0, "auth"], {"type": "jwt"}))
    assert run_render(path, tmp_path, capsys) == (2, [
        f"{path}: peaknight:models[0].auth.jwksUri: expected the issuer's JWKS URL (https) for auth type jwt; "
        "found nothing",
        f"{path}: peaknight:models[0].auth.issuer: expected the iss claim tokens must carry, for auth type jwt; "
        "found nothing",
        f"{path}: peaknight:models[0].auth.audiences: expected the aud claims accepted (one at least), for auth "
        "type jwt; found nothing"])


def test_the_gateway_serves_https_only_with_the_operators_certificate(broadcast):
    spec, manifests = broadcast
    [gateway] = _of(manifests, "Gateway")
    assert gateway["spec"]["listeners"] == [{
        "name": "https", "protocol": "HTTPS", "port": 443,
        "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": f"{spec.event.name}-gateway-tls"}]},
        "allowedRoutes": {"namespaces": {"from": "Same"}}}]
    assert gateway["metadata"]["namespace"] == inference_namespace(spec)   # the Secret's namespace too


def test_every_pod_has_its_own_tokenless_account_and_a_read_only_root(broadcast):
    _, manifests = broadcast
    accounts = {(m["metadata"]["namespace"], m["metadata"]["name"]): m for m in _of(manifests, "ServiceAccount")}
    pods = [(m, pod) for m in manifests for _, pod in pod_specs(m)]
    assert len(pods) >= 8
    rules = {(m["metadata"]["namespace"], m["metadata"]["name"]): m["rules"] for m in _of(manifests, "Role")}
    tokens = set()
    for manifest, pod in pods:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        key = (manifest["metadata"]["namespace"], pod["serviceAccountName"])
        account = accounts[key]
        if manifest["metadata"]["name"].endswith("-router"):
            # A disaggregated model's router finds its servers through the API: a token that may
            # read the namespace's pods and nothing else.
            assert pod["automountServiceAccountToken"] is True and rules[key] == [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}], where
        elif pod["automountServiceAccountToken"] is not False or account.get("automountServiceAccountToken") is not False:
            tokens.add(where)
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, f"{where} {c['name']}"
    # Only the endpoint pickers hold a token: they watch their InferencePool and pods, read-only
    # (their Role: tests/test_routing.py).
    assert tokens == {f"Deployment/{m['metadata']['name']}" for m in _of(manifests, "Deployment")
                      if m["metadata"]["name"].endswith("-epp")}
    # greetings' 8 picker shards: chat and deep-think are disaggregated, routed by SGLang's router
    assert len(tokens) == 8


@pytest.mark.parametrize("model_name,edge_name", [("warm-gate", "allow-dns"), ("weights", "default-deny")])
def test_names_of_the_kits_fixed_objects_never_collide_with_a_stacks_names(model_name, edge_name, tmp_path):
    """The warm gate's account and each namespace's fixed policies keep their names whatever the
    models and edges are called: two objects with one name would be one object (or a failed apply)."""
    def edit(cfg):
        old = cfg["peaknight:models"][1]["name"]
        cfg["peaknight:models"][1]["name"] = model_name
        for m in cfg["peaknight:models"]:   # a ladder naming the renamed model follows it
            if m.get("ladder", {}).get("fallback") == old:
                m["ladder"]["fallback"] = model_name
        cfg["peaknight:edges"][0]["name"] = edge_name
    spec = config.load_stack(str(write_variant(tmp_path, edit))).spec
    keys = [o.key for u in event.build(spec).clusters[0].units for o in u.objects]
    assert sorted(k for k in set(keys) if keys.count(k) > 1) == []
