"""Every rendered engine pod follows its serving recipe (peaknight/data/recipes.yaml), and what no
public recipe has run is refused or printed as UNPROVEN (issue 24: Recipes, findings 3 and 4).

The recipe test reads the recipe data, not the builders: a pod that departs from its recipe on
user, caches, devices, probes or transport fails here whichever code rendered it. Findings 1, 2,
10 and 11 are tested in test_engine_pods.py (a named user without a passwd entry, compile caches
on the node, a startup budget over the cold compile, staging that owns its volume, no group on
spot alone, EFA and huge pages per instance type).
"""
from __future__ import annotations

import math

import pytest

import nights
from peaknight.builders import podpolicy, shards
from peaknight.cli import main as cli
from peaknight.engines import recipes
from peaknight.engines.base import JIT_CACHE_DIR
from peaknight.plan import fabric as plan_fabric, memory, report, serving_recipes
from peaknight.spec import profiles
from test_config import write_variant

# broadcast: EFA (unproven PD groups, a one-node vLLM model); gala-vke: RoCE (proven PD over RDMA).
STACKS = ("broadcast", "gala-vke")


def _engine_pods(cluster):
    """(model, workload plan, workload object, role, pod spec) of every model-server pod template."""
    models = {m.name: m for m in cluster.spec.models}
    plans = {p.name: p for p in cluster.plan.models}
    for u in cluster.units:
        if u.component != "InferenceService":
            continue
        for o in u.objects:
            if o.kind not in ("Deployment", "LeaderWorkerSet") or o.name.endswith("-router"):
                continue
            # a picker shard's Deployment (builders/shards.py) serves its model's plan
            sharded = shards.SHARD_ANNOTATION in o.manifest["metadata"].get("annotations", {})
            model, plan = models[u.name], plans[u.name if sharded else o.name]
            if o.kind == "Deployment":
                yield model, plan, o, "leader", o.manifest["spec"]["template"]["spec"]
            else:
                lwt = o.manifest["spec"]["leaderWorkerTemplate"]
                yield model, plan, o, "leader", lwt["leaderTemplate"]["spec"]
                yield model, plan, o, "worker", lwt["workerTemplate"]["spec"]


def _pods():
    return [(name, *pod) for name in STACKS for c in nights.representatives(name) for pod in _engine_pods(c)]


def _env(container) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _flag(command: list[str], flag: str) -> str | None:
    words = " ".join(command).split()
    return words[words.index(flag) + 1] if flag in words else None


def test_every_rendered_engine_pod_follows_its_recipe():
    """User, caches, devices, probes and transport of every engine pod of every shape of the
    tests' stacks, each against the recipe its workload's combination matches."""
    checked = set()
    for stack, model, plan, workload, role, pod in _pods():
        where = f"{stack}/{workload.name}/{role}"
        match = serving_recipes.match(model, plan)
        assert match.recipe is not None, where
        engine = recipes.engine_recipe(model.engine.value)
        assert match.combination.fabric in match.recipe.fabrics, where
        fabric = recipes.load().fabrics[match.combination.fabric]
        (container,) = pod["containers"]
        env = _env(container)
        # User: the recipe's UID, named without a passwd entry, HOME writable.
        assert pod["securityContext"]["runAsUser"] == engine.uid, where
        assert (env["USER"], env["LOGNAME"], env["HOME"]) == (engine.user, engine.user, engine.home), where
        assert any(m["mountPath"] == engine.home for m in container["volumeMounts"]), where
        # Caches: every variable of the recipe, each under the model's directory of the node's JIT cache.
        for variable, directory in engine.caches.items():
            assert env[variable] == f"{JIT_CACHE_DIR}/{model.name}/{directory}", (where, variable)
        jit = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == JIT_CACHE_DIR)
        volume = next(v for v in pod["volumes"] if v["name"] == jit)
        assert "emptyDir" not in volume, where
        assert {k: env[k] for k in engine.env} == dict(engine.env), where
        # Devices and fabric environment: the fabric's resource where the workload uses one, huge pages with EFA.
        limits = container["resources"]["limits"]
        if match.combination.fabric == recipes.NO_FABRIC:
            assert plan.interconnect is None and set(limits) <= {"nvidia.com/gpu", "memory"}, where
        else:
            assert plan.interconnect is not None and limits[plan.interconnect.resource] == str(plan.interconnect.devices)
            assert ("hugepages-2Mi" in limits) == fabric.hugepages, where
        # The fabric's environment, and the cluster's own settings for it (VKE RDMA: provisioners/vke_rdma.py)
        cluster_env = dict(plan.interconnect.env) if plan.interconnect else {}
        assert {k: env.get(k) for k in fabric.env} == dict(fabric.env), where
        assert {k: env.get(k) for k in cluster_env} == cluster_env, where
        assert {k for k in env if k.startswith(("FI_", "NCCL_"))} <= set(fabric.env) | set(cluster_env), where
        # Probes: each kind of the recipe's role, and no other.
        expected = engine.probes[role]
        for kind in ("startup", "readiness", "liveness"):
            probe, spec = container.get(f"{kind}Probe"), expected.get(kind)
            assert (probe is None) == (spec is None), (where, kind)
            if spec is None:
                continue
            assert (probe["httpGet"]["path"], probe["periodSeconds"], probe["timeoutSeconds"]) == \
                   (spec.path, spec.period, spec.timeout), (where, kind)
            budget = int(workload.manifest["metadata"]["annotations"]["peaknight.io/startup-budget"].rsplit("= ", 1)[1][:-2])
            failures = spec.failures or math.ceil(budget / spec.period)
            assert probe["failureThreshold"] == failures, (where, kind)
        # Transport: the recipe's KV transfer backend and expert all-to-all on the command line.
        command = container["command"]
        if "kv_transfer" in match.recipe.transport:
            assert _flag(command, "--disaggregation-transfer-backend") == match.recipe.transport["kv_transfer"], where
        group = plan.topology.group
        if model.engine.value == "sglang" and group is not None and group.ep > 1:
            assert _flag(command, "--moe-a2a-backend") == match.recipe.transport["moe_a2a"], where
        # The workload names its recipe (UNPROVEN where it is).
        note = workload.manifest["metadata"]["annotations"]["peaknight.io/recipe"]
        assert match.recipe.name in note and note.startswith("UNPROVEN") == (not match.proven), where
        checked.add((stack, match.recipe.name, role))
    # Both stacks, both fabrics, leaders and workers were seen.
    assert {(s, r) for s, r, _ in checked} >= {("broadcast", "sglang-disaggregated-efa"),
                                               ("broadcast", "vllm-colocated-single-node"),
                                               ("gala-vke", "sglang-disaggregated-rdma")}
    assert {role for *_, role in checked} == {"leader", "worker"}


def test_a_recipe_whose_image_lacks_what_its_fabric_needs_is_unproven():
    """Finding 3, in the data: a recipe on a fabric names only images that carry what the fabric
    needs (aws-ofi-nccl and libfabric for EFA) and what the recipe needs (NIXL's libfabric plugin
    for PD on EFA), or it is unproven and says so."""
    table = recipes.load()
    assert set(table.fabrics[recipes.EFA].carries) == {"aws-ofi-nccl", "libfabric-efa"}
    efa = [r for r in table.recipes if recipes.EFA in r.fabrics]
    assert efa
    for r in table.recipes:
        assert table.images.keys() >= set(r.images) and all(table.images[i]["engine"] == r.engine for i in r.images)
        lacks = recipes.missing(r)
        assert bool(r.unproven) >= bool(lacks), r.name
        if any("aws-ofi-nccl" in lack for lack in lacks.values()):
            assert "aws-ofi-nccl" in r.unproven, r.name
        assert r.sources, r.name
    # The stock SGLang image lacks all three on EFA PD: the NCCL plugin, the EFA provider, NIXL's libfabric plugin.
    pd = next(r for r in efa if r.mode == "disaggregated")
    assert recipes.missing(pd) == {"lmsysorg/sglang:v0.5.4": ("aws-ofi-nccl", "libfabric-efa", "nixl-libfabric")}

def test_a_multi_node_efa_group_on_the_stock_image_is_refused(tmp_path, capsys):
    """Finding 3: without policy.allowUnproven, a group spanning EFA nodes on lmsysorg/sglang (no
    aws-ofi-nccl: NCCL would fall back to sockets) is a one-line config error naming the model,
    the combination and why."""
    def strict(cfg):
        cfg["peaknight:policy"]["allowUnproven"] = False
    path = write_variant(tmp_path, strict, base="rehearsal")
    assert cli.main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "models[0].image" in line]
    assert len(lines) == 1 and "Traceback" not in err
    assert "'chat' prefill: recipe sglang-disaggregated-efa is unproven" in lines[0]
    assert "carries no aws-ofi-nccl" in lines[0] and "policy.allowUnproven: true" in lines[0]


def test_a_combination_no_recipe_covers_names_the_nearest(tmp_path, capsys):
    """An image no recipe names is an uncovered combination: refused, naming the nearest recipes."""
    def own_image(cfg):
        cfg["peaknight:models"][1]["image"] = "registry.example/vllm-custom:1@sha256:" + "1" * 64
    path = write_variant(tmp_path, own_image, base="gala-vke", clusters=["vke-bj-01"])
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "models[1].image" in line]
    assert ("no recipe covers vllm registry.example/vllm-custom:1 colocated single-node on none "
            "(nearest: vllm-colocated-single-node") in line


def test_render_says_what_it_rendered_unproven_beside_its_totals(capsys, tmp_path):
    """`make plan` is `peaknight render broadcast`: the main job says, beside the night's totals, each
    workload policy.allowUnproven let through, for its throughput figure and for its recipe, the
    lines `plan` prints."""
    assert cli.main(["render", "rehearsal", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    total = next(i for i, line in enumerate(out) if line.startswith("total: "))
    spec = nights.spec("rehearsal")
    plan = nights.plan("rehearsal")
    expected = [*report.unproven(plan), *serving_recipes.unproven(spec, plan)]
    assert out[total + 1:] == expected
    assert any(line.startswith("UNPROVEN: chat-prefill ") for line in expected)
    assert any(line.startswith("chat-prefill: UNPROVEN: recipe ") for line in expected)


def test_with_allow_unproven_the_plan_prints_each_unproven_workload_and_its_kv_over_tcp(capsys):
    """Finding 4: SGLang 0.5.4 creates its NIXL agent with UCX only, which does not do RDMA on EFA,
    so the PD groups' KV crosses over TCP: `plan` prints each such workload as UNPROVEN with the Gb/s
    per prefill node (its input tokens/s x the model's KV bytes per token), and `--explain` names
    every workload's recipe and sources."""
    path = nights.per_shape("broadcast")
    assert cli.main(["plan", str(path), "--explain"]) == 0
    out = capsys.readouterr().out
    spec, objects = nights.spec("broadcast"), nights.objects("broadcast")
    prefill = next(p for p in objects.plan.clusters[0].models if p.name == "chat-prefill")
    chat = next(m for m in spec.models if m.name == "chat")
    cls = profiles.load().model_classes[chat.model_class]
    per_token = memory.kv_bytes_per_token(cls, prefill.serving.prefill, prefill.serving.kv_dtype).value
    gbps = prefill.replica_tps.value / prefill.nodes_per_replica * per_token * 8 / 1e9
    tcp = serving_recipes.kv_over_tcp(chat, prefill)
    assert tcp is not None and tcp.value == pytest.approx(gbps) and 5 < gbps < 100
    unproven = [line for line in out.splitlines() if line.startswith("chat-prefill: UNPROVEN")]
    assert len(unproven) == 1 and "the KV moves over TCP" in unproven[0] and "Gb/s over TCP" in unproven[0]
    assert "ai-dynamo/nixl/issues/909" in unproven[0]
    recipe_lines = [line for line in out.splitlines() if line.startswith("  recipe: ")]
    assert any(line.startswith("  recipe: vllm-colocated-single-node; sources: ") for line in recipe_lines)
    # One recipe line per workload of every cluster group shown.
    assert len(recipe_lines) == sum(1 for line in out.splitlines() if line.endswith(":") and "/" in line
                                    and not line.startswith(" ") and "/pool " not in line and "/edge " not in line)
    # A proven stack prints none.
    assert serving_recipes.unproven(nights.spec("gala-vke"), nights.plan("gala-vke")) == []


def test_no_kv_transport_rendered_on_efa_claims_rdma():
    """Finding 4: every recipe on EFA that disaggregates says its KV goes over TCP and is unproven;
    the RDMA recipe is the one whose KV transfer (Mooncake, ibverbs) runs over the fabric."""
    for r in recipes.load().recipes:
        if r.mode == "disaggregated":
            assert r.kv_over_tcp == (recipes.EFA in r.fabrics), r.name
            assert bool(r.unproven) >= r.kv_over_tcp, r.name


def test_each_engine_recipe_runs_as_the_user_its_volumes_are_handed_to():
    """Finding 10's other side: the staging and JIT directories are created by root and handed to
    podpolicy.RUN_AS_USER (hostPath and FSx take no fsGroup); an engine recipe with another UID
    could not write its own caches."""
    assert {e.uid for e in recipes.load().engines.values()} == {podpolicy.RUN_AS_USER}


def test_a_workload_needing_a_fabric_its_cluster_does_not_declare_follows_no_recipe():
    """A PD phase or a group on a cluster without a declared interconnect (an existing cluster; VKE
    without provisioner.rdma, which its own check refuses): no recipe, UNPROVEN, nothing of a
    fabric added; a one-node colocated workload there needs none and follows its recipe."""
    image = "lmsysorg/sglang:v0.5.4@sha256:" + "0" * 64
    pd = recipes.match(recipes.combination("sglang", image, "prefill", False, None, "efa"))
    assert pd.recipe is None and pd.combination.fabric == recipes.UNDECLARED
    assert pd.why_unproven().startswith("no recipe covers sglang lmsysorg/sglang:v0.5.4 disaggregated single-node "
                                        "on undeclared (nearest: sglang-disaggregated-")
    assert recipes.fabric(recipes.UNDECLARED) == recipes.load().fabrics[recipes.NO_FABRIC]
    one = recipes.match(recipes.combination("vllm", "vllm/vllm-openai:v0.11.0", "", False, None, "efa"))
    assert one.proven and one.recipe is not None and one.recipe.name == "vllm-colocated-single-node"


def test_each_workloads_recipe_fabric_is_its_pools_instance_type_fabric():
    """One source of truth for the fabric (issue 24c): the fabric a workload's recipe is matched on
    is the one its pool's instance types record in its cluster (plan/fabric.py `of`, which also
    prices its throughput row), wherever it needs one between nodes; none where it does not."""
    seen = set()
    for name in STACKS:
        for c in nights.representatives(name):
            spec, cluster = c.spec, c.cluster
            models, pools = {m.name: m for m in spec.models}, {p.name: p for p in spec.gpu_pools}
            for plan in c.plan.models:
                combo = serving_recipes.match(models[plan.model], plan).combination
                needs = plan.nodes_per_replica > 1 or bool(plan.phase)
                on = plan_fabric.of(pools[plan.pool], cluster)
                assert combo.fabric == (on if needs else recipes.NO_FABRIC), (name, cluster.name, plan.name)
                seen.add((name, combo.fabric))
    assert seen >= {("broadcast", "efa"), ("broadcast", recipes.NO_FABRIC), ("gala-vke", "roce")}


def test_the_recipes_fabrics_are_the_instance_types_fabric_names():
    """The recipes name fabrics as instance types record them (profiles.FABRICS), so a recorded
    fabric with an interconnect always has its devices and environment; an instance type that
    records none matches no recipe (UNRECORDED)."""
    table = recipes.load()
    assert set(table.fabrics) <= {recipes.NO_FABRIC, *profiles.FABRICS}
    assert all(set(r.fabrics) <= set(table.fabrics) for r in table.recipes)
    recorded = {t.fabric for t in profiles.load().instance_types.values() if t.interconnect}
    assert recorded and recorded <= set(table.fabrics)
    net = profiles.load().instance_types["p5.48xlarge"].interconnect
    assert recipes.fabric_of("", net, True) == recipes.UNRECORDED
    unrecorded = recipes.combination("sglang", "lmsysorg/sglang:v0.5.4", "prefill", False, net, "")
    assert recipes.match(unrecorded).recipe is None


def test_an_image_no_recipe_names_renders_its_nearest_recipes_transport():
    """Under policy.allowUnproven, an engine image no recipe names renders the transport of the
    recipe of its engine, mode and fabric (the one place transport is decided), never a default
    that does not run on its fabric (Mooncake's ibverbs or DeepEP on EFA)."""
    net = profiles.load().instance_types["p5.48xlarge"].interconnect
    efa = recipes.match(recipes.combination("sglang", "example.com/my-sglang:1", "prefill", False, net, "efa"))
    assert efa.recipe is None and dict(efa.transport) == {"kv_transfer": "nixl", "moe_a2a": "none"}
    roce = recipes.match(recipes.combination("sglang", "example.com/my-sglang:1", "decode", True, net, "roce"))
    assert roce.recipe is None and dict(roce.transport) == {"kv_transfer": "mooncake", "moe_a2a": "deepep"}
    mixed = recipes.match(recipes.combination("sglang", "example.com/my-sglang:1", "decode", True, net, "mixed"))
    assert mixed.recipe is None and dict(mixed.transport) == {}
