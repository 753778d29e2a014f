"""The public components under Pulumi's mocks: what each registers, its outputs, the provider it was
given; the à-la-carte example program; the provisioner seam's cloud resources; the installed wheel."""
from __future__ import annotations

import dataclasses
import os
import runpy
import subprocess
import sys
import sysconfig
import zipfile
from typing import Any, Callable

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

import nights
import peaknight as pk
from peaknight.builders import event
from peaknight.builders.objects import CloudResource, Unit
from peaknight.cli import render
from peaknight.engines.base import PORT
from peaknight.plan import capacity
from peaknight.provisioners import registry
from conftest import ROOT, STACKS
from pulumi_harness import RecordingMocks, normalise, run_under_mocks


def run_components(body: Callable[[k8s.Provider], dict[str, pulumi.Output]]) -> tuple[RecordingMocks, dict[str, Any]]:
    """Run `body(provider)` under mocks; return what registered and the resolved outputs it returned."""
    values: dict[str, Any] = {}

    def program() -> pulumi.Output:
        provider = k8s.Provider("given", kubeconfig="apiVersion: v1\nkind: Config\n")
        return pulumi.Output.all(**body(provider)).apply(values.update)

    return run_under_mocks(program, "test", {}), values


@pytest.fixture(scope="module")
def rehearsal():
    spec = nights.spec("rehearsal")
    return spec, capacity.plan(spec)


def parts_of(spec, plan, cluster_name: str):
    cluster = next(c for c in spec.clusters if c.name == cluster_name)
    return pk.ClusterStackArgs(spec=spec, plan=plan.cluster(cluster_name), cluster=cluster).parts


def children(mocks: RecordingMocks, parent: str) -> dict[str, Any]:
    return {r.name: r for r in mocks.resources if r.parent == parent and r.custom}


def assert_registers_its_unit(mocks: RecordingMocks, component: str, unit: Unit, prefix: str) -> None:
    """Exactly the unit's objects, with the builder's content, each on the provider it was given."""
    registered = children(mocks, component)
    assert sorted(registered) == sorted(f"{prefix}/{o.key}" for o in unit.objects)
    for obj in unit.objects:
        r = registered[f"{prefix}/{obj.key}"]
        assert r.inputs == normalise(obj.manifest)
        assert r.provider == "given" and r.protect is obj.protect


def test_gpu_node_pool(rehearsal):
    spec, plan = rehearsal
    args = parts_of(spec, plan, "reh-bj-01").pools[0]
    mocks, out = run_components(lambda p: {
        "limit": (c := pk.GpuNodePool("h200", args, pulumi.ResourceOptions(provider=p))).gpu_limit,
        "nodes": c.planned_nodes, "selector": c.node_selector})
    assert_registers_its_unit(mocks, "h200", args.unit, "h200")
    assert out == {"limit": int(args.plan.gpu_limit.value), "nodes": int(args.plan.nodes.value),
                   "selector": {"peaknight.io/pool": args.pool.name}}
    assert {r.typ for r in children(mocks, "h200").values()} == {"kubernetes:karpenter.sh/v1:NodePool",
                                                                  "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"}


@pytest.mark.parametrize("model,kind", [("greetings", "Deployment"), ("deep-think", "LeaderWorkerSet")])
def test_inference_service(rehearsal, model, kind):
    spec, plan = rehearsal
    args = next(s for s, _ in parts_of(spec, plan, "reh-bj-01").services if s.model.name == model)
    mocks, out = run_components(lambda p: {
        "url": (c := pk.InferenceService(model, args, pulumi.ResourceOptions(provider=p))).url,
        "name": c.service_name, "ns": c.namespace, "floor": c.floor_replicas, "peak": c.peak_replicas,
        "kind": c.workload_kind})
    assert_registers_its_unit(mocks, model, args.unit, model)
    ns = f"{spec.event.name}-inference"
    assert out == {"url": f"http://{model}.{ns}.svc:{PORT}/v1", "name": model, "ns": ns,
                   "floor": int(args.plan.floor_replicas.value), "peak": int(args.plan.replicas.value), "kind": kind}


@pytest.mark.parametrize("cluster,kind,low,high", [("reh-bj-01", "ScaledObject", "minReplicaCount", "maxReplicaCount"),
                                                    ("reh-hk-01", "HorizontalPodAutoscaler", "minReplicas",
                                                     "maxReplicas")])
def test_autoscaler(rehearsal, cluster, kind, low, high):
    spec, plan = rehearsal
    service, args = next(pair for pair in parts_of(spec, plan, cluster).services if pair[0].model.name == "chat")
    assert args.target is service
    mocks, out = run_components(lambda p: {
        "kind": (c := pk.Autoscaler("chat", args, pulumi.ResourceOptions(provider=p))).kind,
        "min": c.min_replicas, "max": c.max_replicas})
    assert_registers_its_unit(mocks, "chat", args.unit, "chat")
    # chat is disaggregated: one autoscaler per group kind; the component reports the decode groups'.
    prefill, decode = args.unit.objects
    assert [o.manifest["spec"]["scaleTargetRef"]["name"] for o in (prefill, decode)] == ["chat-prefill", "chat-decode"]
    assert out == {"kind": kind, "min": decode.manifest["spec"][low], "max": decode.manifest["spec"][high]}


def test_live_edge(rehearsal):
    spec, plan = rehearsal
    args = parts_of(spec, plan, "reh-bj-01").edges[0]
    mocks, out = run_components(lambda p: {
        "name": (c := pk.LiveEdge("live", args, pulumi.ResourceOptions(provider=p))).service_name,
        "type": c.service_type, "pods": c.planned_pods})
    assert_registers_its_unit(mocks, "live", args.unit, "live")
    assert out == {"name": args.edge.name, "type": "LoadBalancer" if args.edge.source_ranges else "ClusterIP",
                   "pods": int(args.plan.pods.value)}


@pytest.mark.parametrize("opts", [lambda p: pulumi.ResourceOptions(provider=p),
                                  lambda p: pulumi.ResourceOptions(providers=[p]),
                                  lambda p: pulumi.ResourceOptions(providers={"kubernetes": p})],
                         ids=["provider", "providers-list", "providers-map"])
def test_cluster_stack_uses_the_provider_it_was_given(rehearsal, opts):
    spec, plan = rehearsal
    args = event.build(spec, plan).clusters[0]
    mocks, out = run_components(lambda p: {
        "urls": (c := pk.ClusterStack(args.cluster.name, args, opts(p))).model_urls, "gpus": c.gpus,
        "nodes": c.nodes})
    kube = [r for r in mocks.resources if r.typ.startswith("kubernetes:")]
    assert kube and all(r.provider == "given" for r in kube)
    objects = {f"{args.cluster.name}/{o.key}" for u in args.units for o in u.objects}
    assert objects <= {r.name for r in kube}
    ns = f"{spec.event.name}-inference"
    assert out["urls"] == {m.name: f"http://{m.name}.{ns}.svc:{PORT}/v1" for m in spec.models}
    assert out["gpus"] == sum(int(m.gpus.value) for m in args.plan.models) and out["nodes"] == args.plan.nodes


# What one object names of another, by the field that names it: what must be registered beside it.
ROUTE_REFS = {"parentRefs": "Gateway", "backendRefs": "Service"}


def _walk(value: Any, key: str = ""):
    """Every (key, value) pair under a manifest, however deep (pod templates of every workload kind)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, key)


def references(kind: str, manifest: dict[str, Any]) -> set[tuple[str, str | None, str]]:
    """(kind, namespace, name) of every object `manifest` names: its namespace, its pods' priority
    class, ServiceAccount, claims, ConfigMaps and Secrets, a route's parents and backends, a pool's
    endpoint picker, an autoscaler's target, a policy's targets and credentials."""
    ns = manifest.get("metadata", {}).get("namespace")
    refs: set[tuple[str, str | None, str]] = {("Namespace", None, ns)} if ns else set()
    for key, value in _walk(manifest):
        if key == "priorityClassName":
            refs.add(("PriorityClass", None, value))
        elif key == "serviceAccountName":
            refs.add(("ServiceAccount", ns, value))
        elif key == "persistentVolumeClaim":
            refs.add(("PersistentVolumeClaim", ns, value["claimName"]))
        elif key == "configMap" and isinstance(value, dict):
            refs.add(("ConfigMap", ns, value["name"]))
        elif key in ("secretKeyRef", "secret") and isinstance(value, dict):
            refs.add(("Secret", ns, value.get("name") or value["secretName"]))
        elif key == "scaleTargetRef":
            refs.add((value.get("kind", "Deployment"), ns, value["name"]))
        elif key in ROUTE_REFS and isinstance(value, list):
            refs |= {(r.get("kind", ROUTE_REFS[key]), r.get("namespace", ns), r["name"]) for r in value}
        elif key in ("targetRefs", "credentialRefs") and isinstance(value, list):
            refs |= {(r.get("kind", "Secret"), r.get("namespace", ns), r["name"]) for r in value}
    if kind == "InferencePool":
        refs.add(("Service", ns, manifest["spec"]["endpointPickerRef"]["name"]))
    return refs


def operator_secrets(spec) -> set[tuple[str, str | None, str]]:
    """The Secrets the operator creates, never the program (README): each model's API keys (auth
    apiKey) and each edge's signed-URL secret."""
    event = spec.event.name
    return ({("Secret", f"{event}-inference", f"{m.name}-api-keys") for m in spec.models if m.auth.type.value == "apiKey"}
            | {("Secret", f"{event}-edge", f"{e.name}-secure-link") for e in spec.edges})


def unregistered(mocks: RecordingMocks) -> set[tuple[str, str | None, str]]:
    """What a registered Kubernetes object references and the program did not register."""
    objects = {(r.typ.rsplit(":", 1)[-1], r.inputs.get("metadata", {}).get("namespace"), r.inputs["metadata"]["name"]):
               r.inputs for r in mocks.resources if r.typ.startswith("kubernetes:") and r.custom
               and "metadata" in r.inputs}
    referenced = {ref for (kind, _, _), inputs in objects.items() for ref in references(kind, inputs)}
    return referenced - set(objects)


def run_example() -> RecordingMocks:
    folder = ROOT / "examples" / "a-la-carte"
    project = yaml.safe_load((folder / "Pulumi.yaml").read_text())["name"]
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        def program() -> None:  # the module's globals are no output of the program
            runpy.run_path("__main__.py")

        return run_under_mocks(program, "dev", {f"{project}:kubeconfig": "x"}, project=project)
    finally:
        os.chdir(cwd)


def test_the_example_program_deploys_alone_on_its_own_provider():
    mocks = run_example()
    components = {(r.typ, r.name): r for r in mocks.resources if r.typ.startswith("peaknight:index:")}
    assert set(components) == {("peaknight:index:ClusterBase", "newyear"),
                               ("peaknight:index:InferenceService", "assistant"),
                               ("peaknight:index:InferenceRouter", "assistant-router"),
                               ("peaknight:index:Autoscaler", "assistant"),
                               ("peaknight:index:WarmGate", "assistant-weights")}
    assert components[("peaknight:index:Autoscaler", "assistant")].depends_on == ("assistant",)
    assert components[("peaknight:index:InferenceService", "assistant")].depends_on == ("newyear",)
    kube = [r for r in mocks.resources if r.typ.startswith("kubernetes:")]
    assert {r.typ.split(":")[-1] for r in kube} >= {"Namespace", "PriorityClass", "Gateway", "InferencePool",
                                                     "Deployment", "Service", "ScaledObject", "DaemonSet", "Job",
                                                     "PersistentVolume"}
    assert all(r.provider == "ohio-01" for r in kube)
    # Only what the operator creates: the model's API keys and Llama's hub token.
    assert unregistered(mocks) == {("Secret", "newyear-inference", "assistant-api-keys"),
                                   ("Secret", "newyear-weights", "hf-token")}


@pytest.mark.parametrize("model", ["greetings", "deep-think"])
def test_a_one_model_program_of_public_components_registers_what_its_objects_reference(rehearsal, model):
    """Every public component, for one model (colocated: its route's backend is an InferencePool;
    disaggregated: SGLang's router Service) and the live edge: nothing any object references is
    missing. The InferenceService alone misses exactly what the base and the router hold."""
    full, _ = rehearsal
    served = next(m for m in full.models if m.name == model)
    spec = dataclasses.replace(full, models=(dataclasses.replace(served, ladder=None),),
                               gpu_pools=tuple(p for p in full.gpu_pools if p.name == served.pool))
    cluster = spec.clusters[0]
    plan = pk.capacity_plan(spec).cluster(cluster.name)
    *prefill, main = plan.phases(model)

    def program(p: k8s.Provider, alone: bool = False) -> dict[str, pulumi.Output]:
        base = pk.ClusterBase("base", pk.ClusterBaseArgs(scope=spec, cluster=cluster, gateway=plan.gateway),
                              opts=pulumi.ResourceOptions(provider=p))
        on_base = pulumi.ResourceOptions(provider=p, depends_on=[base])
        service = pk.InferenceService(model, pk.InferenceServiceArgs(
            scope=spec, cluster=cluster, model=served, plan=main, prefill=prefill[0] if prefill else None),
            opts=on_base)
        if alone:
            return {"url": service.url}
        pk.GpuNodePool(served.pool, pk.GpuNodePoolArgs(scope=spec, cluster=cluster, pool=spec.gpu_pools[0],
                                                       plan=plan.pool(served.pool)), opts=on_base)
        if not served.disaggregated:
            pk.InferenceRouter(f"{model}-router", pk.InferenceRouterArgs(spec=spec, cluster=cluster, model=served,
                                                                          plan=main), opts=on_base)
        pk.Autoscaler(model, pk.AutoscalerArgs(scope=spec, target=service.args, slo=spec.slo), opts=on_base)
        pk.WarmGate("warm", pk.WarmGateArgs(scope=spec, cluster=cluster, models=spec.models, weights=plan.weights),
                    opts=on_base)
        edge = spec.edges[0]
        pk.LiveEdge(edge.name, pk.LiveEdgeArgs(scope=spec, cluster=cluster, edge=edge, plan=plan.edge(edge.name)),
                    opts=on_base)
        return {"url": service.url}

    mocks, _ = run_components(program)
    assert unregistered(mocks) == operator_secrets(spec)
    # Without the others, the servers' own references go missing: the check sees them.
    mocks, _ = run_components(lambda p: {"url": pk.InferenceService(model, pk.InferenceServiceArgs(
        scope=spec, cluster=cluster, model=served, plan=main, prefill=prefill[0] if prefill else None),
        opts=pulumi.ResourceOptions(provider=p)).url})
    ns = f"{spec.event.name}-inference"
    tier = f"{spec.event.name}-{'assistant' if served.tier.value == 'assistant' else 'serving'}"
    missing = {("Namespace", None, ns), ("PriorityClass", None, tier), ("Gateway", ns, f"{spec.event.name}-gateway"),
               ("PersistentVolumeClaim", ns, f"{served.pool}-weights-cache"),
               ("PersistentVolumeClaim", ns, f"{served.pool}-jit-cache")}   # the WarmGate makes both
    if not served.disaggregated:
        missing.add(("InferencePool", ns, model))
    assert unregistered(mocks) == missing | {s for s in operator_secrets(spec) if s[1] == ns}


class _WithCloudPool:
    """Karpenter, plus one cloud resource per pool: stands in for a provisioner whose node pools
    are cloud resources (the seam the Volcano Engine provisioner uses)."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def pool(self, scope, cluster, pool, plan):
        unit = self._inner.pool(scope, cluster, pool, plan)
        cloud = CloudResource("example:compute/nodePool:NodePool", pool.name,
                              {"clusterName": cluster.name, "desiredSize": int(plan.nodes.value)}, protect=True)
        return dataclasses.replace(unit, cloud=(cloud,))


def test_cloud_resources_are_rendered_for_review_and_registered_by_the_program(rehearsal, tmp_path, monkeypatch):
    spec, plan = rehearsal
    monkeypatch.setitem(registry.REGISTRY, "karpenter-aws", _WithCloudPool(registry.REGISTRY["karpenter-aws"]))
    objects = event.build(spec, plan)
    render.write(objects, tmp_path)
    cluster = objects.clusters[0]
    docs = list(yaml.safe_load_all((tmp_path / f"{cluster.cluster.name}.cloud.yaml").read_text()))
    assert [d["name"] for d in docs] == sorted(p.name for p in spec.gpu_pools)
    assert docs[0]["type"] == "example:compute/nodePool:NodePool" and docs[0]["protect"] is True
    assert docs[0]["properties"]["clusterName"] == cluster.cluster.name
    assert not any(p.name.endswith(".cloud.yaml") for p in (tmp_path / cluster.cluster.name).iterdir())

    args = cluster.parts.pools[0]
    mocks, _ = run_components(lambda p: {"limit": pk.GpuNodePool("pool", args,
                                                                 pulumi.ResourceOptions(provider=p)).gpu_limit})
    (cloud,) = [r for r in mocks.resources if r.typ == "example:compute/nodePool:NodePool"]
    assert cloud.name == f"pool/nodepool.{args.pool.name}" and cloud.parent == "pool" and cloud.protect
    assert cloud.inputs == {"clusterName": cluster.cluster.name, "desiredSize": int(args.plan.nodes.value)}


@pytest.mark.realtool
def test_peaknight_imports_from_an_installed_wheel_outside_the_checkout(tmp_path):
    """The wheel carries its profiles, templates and chart pins; nothing reads the checkout."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("peaknight-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    stack = outside / "night.yaml"
    stack.write_text((STACKS / "Pulumi.rehearsal.yaml").read_text())
    # No site processing: the editable install's path hook (a .pth file) must not map the checkout.
    code = ("import sys; sys.path[:0] = [sys.argv[1]]; sys.path.append(sys.argv[2]); import peaknight as pk;"
            "from peaknight.addons import releases; from peaknight.edges import nginx;"
            "spec = pk.load_stack(sys.argv[3]).spec; pk.capacity_plan(spec);"
            "assert pk.__file__.startswith(sys.argv[1]), pk.__file__;"
            "print(len(releases.all_addons()), len(nginx.render(spec.edges[0], nginx.shield_tier(spec.edges[0]))) > 0, pk.InferenceService.__name__)")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(site), sysconfig.get_paths()["purelib"], str(stack)],
                         cwd=outside, check=True, capture_output=True, text=True).stdout.split()
    assert out == [str(len(list((ROOT / "peaknight" / "addons" / "charts").glob("*/chart.yaml")))), "True",
                   "InferenceService"]
