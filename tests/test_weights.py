"""Weight distribution (issue 14, finding 3): per-zone sources sized for the fleet they feed, node
caches on local disk, and a plan that fails when the fleet cannot be warm before the window."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import nights
from peaknight.builders import podpolicy, warmup
from peaknight.cli import main as cli
from peaknight.engines.base import MODEL_DIR, weights_path
from peaknight.plan import capacity
from peaknight.review import policy
from peaknight.spec import config
from conftest import STACKS
from test_config import write_variant


@pytest.fixture(scope="module")
def broadcast():
    return nights.objects("broadcast")


def _gate(objects, cluster: str):
    c = next(c for c in objects.clusters if c.cluster.name == cluster)
    return {(o.kind, o.name): o.manifest for u in c.units if u.component == "WarmGate" for o in u.objects}


def test_each_zone_source_is_sized_for_its_zones_fleet_by_hand():
    """gala-bj-01 chat (prefill and decode groups, both on h200): the pool's largest zone holds
    196 prefill groups x 4 + 38 decode groups x 16 = 1,392 nodes at peak plus ceil(1,052 / 3) = 351
    burst nodes ((734 - 587) x 4 + (143 - 114) x 16 = 1,052, above the 536 surge). 1,743 nodes x 642
    GiB in 60 min = 1,743 x 642 x 1,073,741,824 B / 3,600 s = 333,757 MB/s; at 1,000 MB/s per TiB that
    is 341,767 GiB; FSx sizes are 1,200 GiB + 2,400 GiB steps: 1,200 + 142 x 2,400 = 342,000 GiB,
    which reads at 342,000 / 1,024 x 1,000 = 333,984 MB/s."""
    plan = capacity.plan(nights.spec("broadcast")).cluster("gala-bj-01")
    pool = plan.pool("h200")
    assert (max(pool.zone_nodes), pool.surge_nodes, pool.zone_surge_nodes) == (1392, 1052, 351)
    chat = plan.weight("chat")
    assert chat.source_gib.value == 342_000
    assert round(chat.source_mbps.value) == 333_984
    assert "1743 nodes x 642 GiB within 3600 s = 333,757 MB/s" in chat.source_gib.why
    # The small model's source is the class's smallest: 2.2 x 9 GiB is far below 1,200 GiB.
    assert plan.weight("greetings").source_gib.value == 1200


def test_warm_gate_slack_by_hand():
    """Staging 642 GiB at 27 s/GiB = 17,334 s; the longest cold lead is ceil((10 + 110 + 0 + 20 x 27
    + 3,600 fill + 480 load + 120 slack) / 60) min = 81 min = 4,860 s; 12 h = 43,200 s leaves
    43,200 - 4,860 - 17,334 = 21,006 s."""
    plan = capacity.plan(nights.spec("broadcast")).cluster("gala-bj-01")
    chat = plan.weight("chat")
    assert chat.staging.value == 17_334
    assert chat.slack.value == 21_006
    assert not chat.late


def test_plan_exits_1_naming_the_model_when_staging_cannot_finish(tmp_path, capsys):
    # 6 h = 21,600 s < 4,860 s cold lead + 17,334 s staging: 594 s short for the 671 B models.
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:policy"].update(warmupHours=6), "rehearsal")
    assert cli.main(["plan", str(path)]) == 1
    out = capsys.readouterr().out
    assert ("SHORT: cluster 'reh-bj-01': model 'chat' weights cannot be warm before the window: short by 594 s "
            "(policy.warmupHours 6 h = 21600 s - longest cold lead 4860 s - staging 17334 s = -594 s)") in out
    assert "model 'greetings' weights cannot" not in out


def test_plan_exits_1_when_one_node_cannot_read_its_weights_in_the_fill_time(tmp_path, capsys):
    # 642 GiB at 1 Gb/s is 5,515 s, over the 3,600 s fill: no source size helps.
    path = write_variant(tmp_path, lambda cfg: cfg["peaknight:clusters"][0].update(weightSource={"clientGbps": 1}),
                         "rehearsal")
    assert cli.main(["plan", str(path)]) == 1
    out = capsys.readouterr().out
    assert ("one node reads its pool's 642 GiB at 1 Gb/s in 5515 s, over policy.weightsFillMinutes (3600 s)"
            in out)


def test_a_class_per_zone_must_name_exactly_the_clusters_zones(tmp_path, capsys):
    def edit(cfg):
        cluster = cfg["peaknight:clusters"][0]
        cluster["modelCacheClass"] = {cluster["zones"][0]: "fsx-a"}
    path = write_variant(tmp_path, edit)
    assert cli.main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "peaknight:clusters[0].modelCacheClass: expected one StorageClass for each of the cluster's zones" in err


def test_sources_and_staging_are_per_zone_and_pinned(broadcast):
    spec = broadcast.spec
    cluster = spec.clusters[0]
    gate = _gate(broadcast, cluster.name)
    plan = broadcast.plan.cluster(cluster.name).weight("chat")
    chat = next(m for m in spec.models if m.name == "chat")
    ns = f"{spec.event.name}-weights"
    for i, zone in enumerate(cluster.zones):
        pvc = gate[("PersistentVolumeClaim", f"chat-weights-z{i}")]
        assert pvc["metadata"]["namespace"] == ns
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert pvc["spec"]["resources"]["requests"]["storage"] == f"{int(plan.source_gib.value)}Gi"
        assert pvc["metadata"]["annotations"]["peaknight.io/zone"] == zone
        job = gate[("Job", f"stage-chat-z{i}")]
        pod = job["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {podpolicy.ZONE: zone}
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == f"chat-weights-z{i}"
        # The hub script takes the repo, target and revision as arguments (test_weights_from runs it).
        assert pod["containers"][0]["command"] == ["python3", "-c", warmup.HUB_SCRIPT, chat.weights,
                                                   f"/source/{chat.weights}/{chat.weights_revision}",
                                                   chat.weights_revision]
        assert job["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
        assert job["metadata"]["annotations"]["peaknight.io/wait"] == (
            f"kubectl wait --for=condition=complete job/stage-chat-z{i} -n {ns} "
            f"--timeout={job['spec']['activeDeadlineSeconds']}s")
        assert job["spec"]["activeDeadlineSeconds"] == 2 * 17_334


def test_node_cache_is_on_the_instance_store_and_read_only_for_the_servers(broadcast):
    spec = broadcast.spec
    cluster = spec.clusters[0]
    gate = _gate(broadcast, cluster.name)
    rw = gate[("PersistentVolume", f"{spec.event.name}-h200-weights-cache-rw")]["spec"]
    ro = gate[("PersistentVolume", f"{spec.event.name}-h200-weights-cache-ro")]["spec"]
    for pv in (rw, ro):
        # The RAID0 the EC2NodeClass asks for, where the EKS AMI mounts it.
        assert pv["hostPath"] == {"path": "/mnt/k8s-disks/0/peaknight-weights", "type": "DirectoryOrCreate"}
        terms = pv["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert terms == [{"matchExpressions": [{"key": podpolicy.POOL_LABEL, "operator": "In", "values": ["h200"]}]}]
        assert pv["capacity"] == {"storage": "1284Gi"}  # the chat model's 642 GiB, twice
    assert rw["claimRef"] == {"namespace": f"{spec.event.name}-weights", "name": "h200-weights-cache"}
    assert ro["claimRef"] == {"namespace": f"{spec.event.name}-inference", "name": "h200-weights-cache"}
    assert ro["accessModes"] == ["ReadOnlyMany"]
    pvc = gate[("PersistentVolumeClaim", "h200-weights-cache")]
    assert pvc["spec"]["volumeName"] in (f"{spec.event.name}-h200-weights-cache-rw", f"{spec.event.name}-h200-weights-cache-ro")


def test_a_filler_per_pool_and_zone_reads_only_its_zones_sources(broadcast):
    cluster = broadcast.spec.clusters[0]
    gate = _gate(broadcast, cluster.name)
    for i, zone in enumerate(cluster.zones):
        ds = gate[("DaemonSet", f"fill-h200-z{i}")]
        pod = ds["spec"]["template"]["spec"]
        exprs = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"][0]["matchExpressions"]
        assert {"key": podpolicy.ZONE, "operator": "In", "values": [zone]} in exprs
        assert {"key": podpolicy.POOL_LABEL, "operator": "In", "values": ["h200"]} in exprs
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        assert claims == {"h200-weights-cache", f"chat-weights-z{i}"}
        own, fill = pod["initContainers"]
        assert fill["securityContext"]["runAsUser"] == 0
        assert fill["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        # Before the copy: the engines' JIT cache handed to their user, with CHOWN and nothing more.
        assert own["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
        assert own["command"][3:] == [str(podpolicy.RUN_AS_USER), f"{warmup.CACHE_MOUNT}/{warmup.JIT_SUBDIR}"]
        assert fill["securityContext"]["allowPrivilegeEscalation"] is False


def test_model_servers_wait_for_their_revision_in_the_node_cache(broadcast):
    spec = broadcast.spec
    c = broadcast.clusters[0]
    chat = next(m for m in spec.models if m.name == "chat")
    groups = next(o.manifest for u in c.units for o in u.objects if o.kind == "LeaderWorkerSet" and o.name == "chat-decode")
    template = groups["spec"]["leaderWorkerTemplate"]
    # Every pod of a group waits, the workers too: each loads its shard from its own node's cache.
    assert template["workerTemplate"]["spec"]["initContainers"] == template["leaderTemplate"]["spec"]["initContainers"]
    pod = template["leaderTemplate"]["spec"]
    assert {"name": "weights", "persistentVolumeClaim": {"claimName": "h200-weights-cache", "readOnly": True}} in pod["volumes"]
    wait = pod["initContainers"][0]
    assert f"{MODEL_DIR}/{chat.weights}/{chat.weights_revision}.ready" in wait["command"][2]
    assert weights_path(chat) == f"{MODEL_DIR}/{chat.weights}/{chat.weights_revision}"
    assert weights_path(chat) in pod["containers"][0]["command"]
    greetings = next(o.manifest for u in c.units for o in u.objects if o.kind == "Deployment" and o.name == "greetings-s0")
    assert {"name": "weights", "persistentVolumeClaim": {"claimName": "hopper-weights-cache", "readOnly": True}} in \
        greetings["spec"]["template"]["spec"]["volumes"]
    assert not any(o.kind == "PersistentVolumeClaim" and o.name == "chat-weights"
                   for u in c.units for o in u.objects)


def test_only_the_weights_namespace_is_baseline_and_only_its_pods_run_as_root(broadcast):
    spec = broadcast.spec
    c = broadcast.clusters[0]
    namespaces = {o.name: o.manifest["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
                  for u in c.units for o in u.objects if o.kind == "Namespace"}
    assert namespaces[f"{spec.event.name}-weights"] == "baseline"
    assert {v for k, v in namespaces.items() if k != f"{spec.event.name}-weights"} == {"restricted"}
    ctx = policy.Context(spec, broadcast.plan)
    objs = [o for u in c.units for o in u.objects]
    assert list(policy.restricted_pod_security(ctx, c.cluster.name, objs)) == []
    # The same root filler in the inference namespace is a finding.
    filler = next(o for o in objs if o.kind == "DaemonSet" and o.name == "fill-h200-z0")
    moved = type(filler)({**filler.manifest, "metadata": {**filler.manifest["metadata"],
                                                          "namespace": f"{spec.event.name}-inference"}})
    found = [f for _, f in policy.restricted_pod_security(ctx, c.cluster.name, [moved])]
    assert any("runs as user 0" in f for f in found)


def _write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def test_the_fill_script_copies_resumes_marks_ready_and_keeps_one_older_revision(tmp_path):
    """Run the filler's own script against a directory tree: it waits for the staged mark, copies
    every file, marks the revision ready, and drops revisions older than the newest other one."""
    spec = nights.spec("broadcast")
    chat = next(m for m in spec.models if m.name == "chat")
    sources, cache = tmp_path / "sources", tmp_path / "cache"
    src = sources / "chat" / chat.weights / chat.weights_revision
    _write(str(src / "model-00001.safetensors"), b"a" * 1000)
    _write(str(src / "sub" / "config.json"), b"{}")
    (src.parent / f"{chat.weights_revision}.staged").touch()
    base = cache / chat.weights
    for old, age in (("old1", 200), ("old2", 100)):
        _write(str(base / old / "x"), b"x")
        (base / f"{old}.ready").touch()
        os.utime(base / f"{old}.ready", (time.time() - age, time.time() - age))
    script = warmup.fill_script([chat], str(sources), str(cache))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    dst = base / chat.weights_revision
    assert (dst / "model-00001.safetensors").read_bytes() == b"a" * 1000
    assert (dst / "sub" / "config.json").read_bytes() == b"{}"
    assert (base / f"{chat.weights_revision}.ready").exists()
    assert (base / "old2").exists() and not (base / "old1").exists() and not (base / "old1.ready").exists()


def _existing_groups(raw: dict, region: str | None = None) -> dict:
    """Every cluster of the stack on node groups that exist (large enough), in `region` if given."""
    groups = [{"pool": p["name"], "name": f"{p['name']}-group", "nodes": 4000} for p in raw["gpuPools"]]
    raw["clusters"] = [{**c, "provisioner": {"kind": "existing", "groups": groups},
                        **({"region": region} if region else {})} for c in raw["clusters"]]
    return raw


def test_existing_groups_in_an_aws_region_size_their_sources_without_a_warning():
    """us-east-1 sells the catalog's AWS types: FSx for Lustre's figures are the region's own."""
    raw = _existing_groups(config.read_stack_file(STACKS / "Pulumi.rehearsal.yaml"))
    plan = capacity.plan(config.parse(raw, "t"))
    assert not [w for w in plan.warnings if "outside AWS" in w]


def test_existing_groups_outside_aws_still_get_the_warning():
    raw = _existing_groups(config.read_stack_file(STACKS / "Pulumi.gala-vke.yaml"))
    raw["clusters"], raw["scale"] = [dict(c, share=0.5) for c in raw["clusters"][:2]], 0.01
    warnings = [w for w in capacity.plan(config.parse(raw, "t")).warnings if "outside AWS" in w]
    assert warnings == ["vke-bj-01, vke-bj-02 size their weight sources with FSx for Lustre's figures (1000 MB/s/TiB) "
                        "outside AWS: set clusters[].weightSource to your file system's measured ones"]
