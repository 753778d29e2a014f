"""Engine pods that start as their UID and keep what they compile, the fabric they request, and
the router in front of them (issue 24, findings 1, 2, 8 (router part), 10 and 11).

Finding 1: the pinned images have no passwd entry for UID 1000, and torch's inductor cache names
its default directory after getpass.getuser() (torch/_inductor/runtime/cache_dir_utils.py
default_cache_dir, torch 2.8.0, which sglang 0.5.4 and vllm 0.11.0 both pin), so the first
torch.compile raised `KeyError: getpwuid(): uid not found`.
Finding 2: SGLang 0.5.4's DeepGEMM precompile "typically 10-20 mins"
(sglang/srt/layers/deep_gemm_wrapper/compile_utils.py) ran into an emptyDir on every start and
past a 960 s startup probe.
Finding 10: a staging Job as UID 1000 could not write the root-owned root of a fresh FSx volume.
"""
from __future__ import annotations

import copy
import math
import os
import stat
import subprocess
import sys

import pytest

import nights
from peaknight.builders import podpolicy, warmup
from peaknight.cli import main as cli
from peaknight.builders.inference import startup_budget
from peaknight.engines import registry as engines
from peaknight.engines.base import JIT_CACHE_DIR, revision_dir
from peaknight.provisioners import registry as provisioners
from peaknight.review import policy
from peaknight.spec import profiles
from peaknight.spec.stack import Engine
from test_config import write_variant

# Each cache variable the pinned engines (and the libraries they ship) read, and where:
# torch 2.8.0 torch/_inductor/runtime/cache_dir_utils.py (TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR);
# flashinfer jit/env.py (FLASHINFER_WORKSPACE_BASE); sglang 0.5.4 deep_gemm_wrapper/compile_utils.py
# (SGL_DG_CACHE_DIR -> DG_JIT_CACHE_DIR) and compilation/backend.py (SGLANG_CACHE_DIR); vllm 0.11.0
# envs.py (VLLM_CACHE_ROOT, whose torch_compile_cache compilation/backends.py writes).
COMMON_CACHES = {"TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE"}
CLUSTER = "gala-bj-01"
ENGINE_CACHES = {Engine.SGLANG: {"SGL_DG_CACHE_DIR", "SGLANG_CACHE_DIR"}, Engine.VLLM: {"VLLM_CACHE_ROOT"}}


@pytest.fixture(scope="module")
def broadcast():
    return nights.objects("broadcast")


def _engine_pods(objects):
    """(model, workload, role, pod spec) of every model-server pod template in the first cluster."""
    models = {m.name: m for m in objects.spec.models}
    c = objects.clusters[0]
    for u in c.units:
        if u.component != "InferenceService":
            continue
        for o in u.objects:
            spec = o.manifest["spec"] if o.kind in ("Deployment", "LeaderWorkerSet") else None
            if spec is None or "-router" in o.name:
                continue
            if o.kind == "Deployment":
                yield models[u.name], o, "leader", spec["template"]["spec"]
            else:
                lwt = spec["leaderWorkerTemplate"]
                yield models[u.name], o, "leader", lwt["leaderTemplate"]["spec"]
                yield models[u.name], o, "worker", lwt["workerTemplate"]["spec"]


def _env(container) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


# The image's view of UID 1000: no passwd entry, so pwd.getpwuid raises as it does in the images.
NO_PASSWD = ("import pwd\n"
             "def missing(uid):\n"
             "    raise KeyError(f'getpwuid(): uid not found: {uid}')\n"
             "pwd.getpwuid = missing\n"
             "import getpass\n"
             "print(getpass.getuser())\n")


def test_the_engine_user_has_a_name_without_a_passwd_entry(broadcast):
    pods = list(_engine_pods(broadcast))
    assert {m.engine for m, *_ in pods} == {Engine.SGLANG, Engine.VLLM}
    for model, workload, role, pod in pods:
        assert pod["securityContext"]["runAsUser"] == podpolicy.RUN_AS_USER
        env = _env(pod["containers"][0])
        # getpass.getuser() (what torch's default cache dir asks) answers from the pod's own env...
        run = subprocess.run([sys.executable, "-c", NO_PASSWD], env=env, capture_output=True, text=True)
        assert run.returncode == 0 and run.stdout.strip() == "peaknight", (workload.name, role, run.stderr)
        # ...where without USER/LOGNAME it raised the engines' KeyError.
        bare = {k: v for k, v in env.items() if k not in ("USER", "LOGNAME")}
        run = subprocess.run([sys.executable, "-c", NO_PASSWD], env=bare, capture_output=True, text=True)
        assert run.returncode != 0 and "getpwuid(): uid not found" in run.stderr
        # And torch never reaches getuser at all: its cache directory is given (cache_dir_utils.cache_dir).
        assert env["TORCHINDUCTOR_CACHE_DIR"].startswith(JIT_CACHE_DIR)


def test_every_compile_cache_is_on_the_nodes_own_disk(broadcast):
    cluster = broadcast.clusters[0]
    objs = {(o.kind, o.name): o.manifest for u in cluster.units for o in u.objects}
    node_cache = provisioners.for_cluster(cluster.cluster).weights_cache_path()
    for model, workload, role, pod in _engine_pods(broadcast):
        c = pod["containers"][0]
        env = _env(c)
        caches = COMMON_CACHES | ENGINE_CACHES[model.engine]
        assert caches <= env.keys(), (workload.name, caches - env.keys())
        assert all(env[k].startswith(f"{JIT_CACHE_DIR}/{model.name}/") for k in caches)
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == JIT_CACHE_DIR)
        assert not mount.get("readOnly")
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume == {"name": "jit", "persistentVolumeClaim": {"claimName": warmup.jit_claim(model.pool)}}
        pvc = objs[("PersistentVolumeClaim", warmup.jit_claim(model.pool))]
        pv = objs[("PersistentVolume", pvc["spec"]["volumeName"])]
        # The node's local disk, beside the weights (not an emptyDir that dies with the pod).
        assert pv["spec"]["hostPath"] == {"path": f"{node_cache}/{warmup.JIT_SUBDIR}", "type": "DirectoryOrCreate"}
        assert pv["spec"]["claimRef"] == {"namespace": workload.manifest["metadata"]["namespace"],
                                          "name": warmup.jit_claim(model.pool)}
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        # The pool's fillers hand that directory to the engines' user before any revision is ready.
        for zone in range(len(cluster.cluster.zones)):
            own = objs[("DaemonSet", f"fill-{model.pool}-z{zone}")]["spec"]["template"]["spec"]["initContainers"][0]
            assert own["name"] == "own-dirs"
            assert own["command"][3:] == [str(podpolicy.RUN_AS_USER), f"{warmup.CACHE_MOUNT}/{warmup.JIT_SUBDIR}"]


def test_the_startup_probe_outlasts_a_cold_compile_so_no_group_restarts_in_its_first_start(broadcast):
    groups = 0
    for model, workload, role, pod in _engine_pods(broadcast):
        engine = engines.engine_for(model)
        load = profiles.load().model_classes[model.model_class].startup_seconds
        c = pod["containers"][0]
        if "startupProbe" not in c:   # a vLLM Ray worker serves nothing to probe
            assert model.engine is Engine.VLLM and role == "worker"
            continue
        probe = c["startupProbe"]
        allowed = probe["periodSeconds"] * probe["failureThreshold"]
        assert allowed >= 2 * load + engine.cold_compile_seconds == startup_budget(model)
        why = workload.manifest["metadata"]["annotations"]["peaknight.io/startup-budget"]
        assert why.endswith(f"= {startup_budget(model)} s") and engine.cold_compile_source in why
        if workload.kind == "LeaderWorkerSet":
            groups += 1
            assert workload.manifest["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
        if model.engine is Engine.SGLANG:
            # chat and deep-think (moe-671b, 480 s load): 2 x 480 + 1,200 s of DeepGEMM = 2,160 s, not 960.
            assert allowed >= 2160 > 960
    assert groups
    router = next(o.manifest for u in broadcast.clusters[0].units for o in u.objects
                  if o.kind == "Deployment" and o.name == "chat-router")
    cmd = router["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--worker-startup-timeout-secs") + 1] == "2160"


def test_the_owner_script_creates_and_hands_over_each_directory(tmp_path):
    """The init container's own script, run for real: to this test's user (no privilege needed to
    give a directory to yourself; in the pod it is root with CHOWN, handing it to UID 1000)."""
    target = tmp_path / "source" / "deepseek-ai" / "DeepSeek-V3"
    for _ in range(2):   # idempotent: a restarted Job runs it again
        run = subprocess.run([sys.executable, "-c", warmup.OWN_SCRIPT, str(os.getuid()), str(target)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.getuid(), os.getuid(), 0o755)


def test_staging_owns_its_models_directory_before_it_writes(broadcast):
    """Finding 10: the FSx CSI driver applies no fsGroup, so the volume's root stays root's; the
    Job's first init container creates the model's directory for UID 1000, where the stage
    container writes the revision and its staged mark."""
    cluster = broadcast.clusters[0]
    for u in cluster.units:
        for o in u.objects:
            if o.kind != "Job":
                continue
            model = next(m for m in broadcast.spec.models if o.name.startswith(f"stage-{m.name}-z"))
            pod = o.manifest["spec"]["template"]["spec"]
            own = pod["initContainers"][0]
            owned = f"{warmup.SOURCE_MOUNT}/{model.weights}"
            assert own["name"] == "own-dirs" and own["command"][3:] == [str(podpolicy.RUN_AS_USER), owned]
            assert own["securityContext"] == {**podpolicy.container_security(), "runAsNonRoot": False, "runAsUser": 0,
                                              "runAsGroup": 0, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}
            target = f"{warmup.SOURCE_MOUNT}/{revision_dir(model)}"
            assert os.path.dirname(target) == owned   # the revision and target + ".staged" both land in it
            stage = pod["containers"][0]
            assert target in stage["command"] and pod["securityContext"]["runAsUser"] == podpolicy.RUN_AS_USER
            assert o.manifest["metadata"]["namespace"] == f"{broadcast.spec.event.name}-weights"


def test_chown_is_allowed_only_in_the_baseline_weights_namespace(broadcast):
    spec, c = broadcast.spec, broadcast.clusters[0]
    ctx = policy.Context(spec, broadcast.plan)
    objs = [o for u in c.units for o in u.objects]
    assert list(policy.restricted_pod_security(ctx, c.cluster.name, objs)) == []
    job = next(o for o in objs if o.kind == "Job")
    moved = type(job)(copy.deepcopy(job.manifest))
    moved.manifest["metadata"]["namespace"] = f"{spec.event.name}-inference"
    found = [f for _, f in policy.restricted_pod_security(ctx, c.cluster.name, [moved])]
    assert any("adds capabilities ['CHOWN']" in f for f in found)


def test_the_router_bounds_what_it_admits_and_retries_once(broadcast):
    """Finding 8 (part): sglang-router's defaults are no limit (--max-concurrent-requests -1) and 5
    attempts with backoff to 30 s (sglang_router/router_args.py, wheels 0.2.1 and 0.3.2). Rendered:
    its token bucket sized to the burst ceiling's requests/s over the router pods, no queue, and
    two attempts."""
    objects = broadcast
    decode = objects.plan.cluster(CLUSTER).model("chat-decode")
    router = next(o.manifest for u in objects.clusters[0].units for o in u.objects
                  if o.kind == "Deployment" and o.name == "chat-router")
    cmd = router["spec"]["template"]["spec"]["containers"][0]["command"]

    def flag(name: str) -> str:
        return cmd[cmd.index(name) + 1]
    rps = decode.max_replicas.value * decode.replica_tps.value / profiles.load().gateway.tokens_per_request
    expected = math.ceil(rps / decode.router_pods.value)
    assert int(flag("--max-concurrent-requests")) == int(flag("--rate-limit-tokens-per-second")) == expected > 0
    assert flag("--queue-size") == "0"
    assert flag("--retry-max-retries") == "2" and int(flag("--retry-max-backoff-ms")) <= 1000
    assert router["metadata"]["annotations"]["peaknight.io/max-concurrent-requests"].endswith(
        f"= {expected} requests per router pod")


def test_the_router_stops_sending_to_a_failing_server_within_seconds(broadcast):
    """Finding 9 (part): sglang-router drops a discovered pod only on deletion, and health-checks
    every 60 s x 3 failures by default (router_args.py, wheels 0.2.1 and 0.3.2: the flag names
    below are in both). Rendered: /health, the engine's readiness signal, every 5 s, 2 failures,
    with the readiness probe's timeout (SGLang's /health may take its 20 s verdict)."""
    from peaknight.engines import sglang
    router = next(o.manifest for u in broadcast.clusters[0].units for o in u.objects
                  if o.kind == "Deployment" and o.name == "chat-router")
    cmd = router["spec"]["template"]["spec"]["containers"][0]["command"]

    def flag(name: str) -> int:
        return int(cmd[cmd.index(name) + 1])
    assert cmd[cmd.index("--health-check-endpoint") + 1] == "/health"
    # A server that refuses or answers 503 leaves routing within 10 s (was 180 s), a hung one within 60 s.
    assert flag("--health-check-interval-secs") * flag("--health-failure-threshold") == 10
    assert flag("--health-failure-threshold") * (flag("--health-check-interval-secs")
                                                  + flag("--health-check-timeout-secs")) == 60
    assert flag("--health-check-timeout-secs") > sglang.HEALTH_CHECK_TIMEOUT_SECONDS
    assert flag("--health-success-threshold") == 1


def test_efa_per_instance_type_and_hugepages_with_it(broadcast):
    """Finding 11: each group requests its cluster's instance types' own EFA count (p5 32 for
    deep-think on h100; p5en 16 for chat in us-east-1), and 2 MiB huge pages beside it as AWS's
    EKS EFA guide does; a pod of one node requests neither."""
    for model, workload, role, pod in _engine_pods(broadcast):
        limits = pod["containers"][0]["resources"]["limits"]
        requests = pod["containers"][0]["resources"]["requests"]
        if model.name == "greetings":
            assert "vpc.amazonaws.com/efa" not in limits and "hugepages-2Mi" not in limits
            continue
        expected = {"deep-think": "32", "chat": "16"}[model.name]
        assert limits["vpc.amazonaws.com/efa"] == requests["vpc.amazonaws.com/efa"] == expected, workload.name
        assert limits["hugepages-2Mi"] == requests["hugepages-2Mi"] == "5120Mi"
    # Where the region sells p5e only beside p5en, the plan says what that costs.
    warnings = [w for w in broadcast.plan.warnings if "EFA" in w]
    assert warnings == ["pool 'h200' in us-east-2 (16 clusters): its groups request 16 EFA devices, the fewest of its "
                        "instance types; on p5e.48xlarge 32 the rest sit idle (one EFA count per pool uses them all)"]


def test_spot_alone_cannot_hold_a_group(tmp_path, capsys):
    """Finding 11: a stack whose only capacity is spot and whose models span nodes is a config error."""
    def spot_only(cfg):
        cfg["peaknight:policy"]["capacityTypes"] = ["spot"]
    path = write_variant(tmp_path, spot_only, base="rehearsal")
    assert cli.main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "peaknight:policy.capacityTypes: expected on-demand or reserved capacity for models[0] ('chat'" in err
    assert "one reclaimed spot node recreates the whole group, cold" in err and "Traceback" not in err
