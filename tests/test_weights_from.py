"""Where weights are staged from (models[].weightsFrom): the hub with a token Secret and an endpoint,
object storage (S3 and compatible). Each value is validated by grammar at parse and reaches the
staging Job as an argument or an environment variable; the rendered commands are run here, the
AWS CLI for real against a stand-in S3-compatible store."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import require_tool
from peaknight.builders import event, warmup
from peaknight.cli import main as cli
from peaknight.spec import config, profiles
from s3_fake import FakeS3

OWN = Path(__file__).parent / "own_model"
WEIGHTS = "Qwen/Qwen3-32B-FP8"
TARGET = f"/source/{WEIGHTS}/unpinned"
AWS_CLI = "amazon/aws-cli:2.17.0"
MS_IMAGE = "modelscope-registry.cn-beijing.cr.aliyuncs.com/modelscope-repo/modelscope:ubuntu22.04-py311-torch2.3.1-1.31.0"


@pytest.fixture(autouse=True)
def _shipped_profiles():
    yield
    profiles.use_profiles(None)


def variant(tmp_path: Path, weights_from: dict[str, Any], **policy: Any) -> Path:
    """The own-model stack (one cluster, one model) with the model's weightsFrom set."""
    shutil.copy(OWN / "profiles.yaml", tmp_path / "profiles.yaml")
    doc = yaml.safe_load((OWN / "Pulumi.own-model.yaml").read_text())
    doc["config"]["peaknight:models"][0]["weightsFrom"] = weights_from
    doc["config"]["peaknight:policy"].update(policy)
    path = tmp_path / "Pulumi.own-model.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def staging(stack: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The zone-0 staging Job's pod spec and the weights-download NetworkPolicy."""
    objects = event.build(config.load_stack(str(stack)).spec)
    found = {(o.kind, o.name): o.manifest for u in objects.clusters[0].units for o in u.objects}
    return (found[("Job", "stage-assistant-z0")]["spec"]["template"]["spec"],
            found[("NetworkPolicy", "weights-download")])


def resolved_env(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet sets it, Secret keys looked up in `secrets`."""
    env = {}
    for var in container["env"]:
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        env[var["name"]] = secrets[ref["name"]][ref["key"]] if ref else var["value"]
    return env


def run_in_pod(command: list[str], env: dict[str, str], target: Path) -> subprocess.CompletedProcess:
    """Run a rendered command here, with the source volume's path standing in for /source."""
    argv = [str(target) if a == TARGET else a for a in command]
    argv[0] = sys.executable if argv[0] == "python3" else require_tool(argv[0])
    return subprocess.run(argv, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=120)


def test_hub_token_and_endpoint_reach_snapshot_download_as_arguments_and_env(tmp_path):
    stack = variant(tmp_path, {"kind": "hub", "tokenSecret": "hf-token", "endpoint": "https://hf-mirror.example.com"})
    pod, netpol = staging(stack)
    # Only the owner step before it (tests/test_engine_pods.py: the volume's root is root's).
    assert [c["name"] for c in pod["initContainers"]] == ["own-dirs"]
    (stage,) = pod["containers"]
    assert stage["command"] == ["python3", "-c", warmup.HUB_SCRIPT, WEIGHTS, TARGET, ""]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}} in stage["env"]
    assert {"name": "HF_ENDPOINT", "value": "https://hf-mirror.example.com"} in stage["env"]
    assert netpol["spec"]["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}]}]
    # The script as the pod runs it, against a huggingface_hub that records what it was asked.
    stub = tmp_path / "stub" / "huggingface_hub"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "import json, os\n"
        "def snapshot_download(**kwargs):\n"
        "    os.makedirs(kwargs['local_dir'])\n"
        "    env = {k: os.environ.get(k) for k in ('HF_TOKEN', 'HF_ENDPOINT')}\n"
        "    json.dump({**kwargs, **env}, open(os.path.join(kwargs['local_dir'], 'called.json'), 'w'))\n")
    target = tmp_path / "source" / "rev"
    env = {**resolved_env(stage, {"hf-token": {"HF_TOKEN": "hf_secret"}}), "PYTHONPATH": str(stub.parent)}
    run = run_in_pod(stage["command"], env, target)
    assert run.returncode == 0, run.stderr
    assert json.loads((target / "called.json").read_text()) == {
        "repo_id": WEIGHTS, "local_dir": str(target), "revision": None, "HF_TOKEN": "hf_secret",
        "HF_ENDPOINT": "https://hf-mirror.example.com"}
    assert (tmp_path / "source" / "rev.staged").exists()


def test_s3_compatible_store_is_synced_by_the_aws_cli_as_rendered(tmp_path):
    objects = {"models/qwen3-32b/config.json": b"{}", "models/qwen3-32b/model-00001.safetensors": b"w" * 4096,
               "models/other/x": b"not this prefix"}
    with FakeS3("weights", objects) as s3:
        stack = variant(tmp_path, {"kind": "s3", "uri": "s3://weights/models/qwen3-32b", "image": AWS_CLI,
                                   "endpointUrl": s3.url, "region": "us-east-1", "credentialsSecret": "weights-s3"})
        pod, netpol = staging(stack)
        own, sync = pod["initContainers"]
        assert own["name"] == "own-dirs"
        assert sync["image"] == AWS_CLI
        assert sync["command"] == ["aws", "s3", "sync", "s3://weights/models/qwen3-32b", TARGET, "--only-show-errors",
                                   "--endpoint-url", s3.url]
        env = resolved_env(sync, {"weights-s3": {"AWS_ACCESS_KEY_ID": "AKIAFAKE", "AWS_SECRET_ACCESS_KEY": "x"}})
        assert env == {"HOME": "/tmp", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIAFAKE",
                       "AWS_SECRET_ACCESS_KEY": "x"}
        target = tmp_path / "source" / "rev"
        run = run_in_pod(sync["command"], {**env, "HOME": str(tmp_path)}, target)
        assert run.returncode == 0, run.stderr
        assert s3.access_keys == {"AKIAFAKE"}
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["config.json", "model-00001.safetensors"]
    assert (target / "model-00001.safetensors").read_bytes() == b"w" * 4096
    (stage,) = pod["containers"]
    assert not (tmp_path / "source" / "rev.staged").exists()
    run = run_in_pod(stage["command"], resolved_env(stage, {}), target)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "source" / "rev.staged").exists()
    # The staging Jobs may reach the store's port beside HTTPS.
    port = int(s3.url.rsplit(":", 1)[1])
    assert netpol["spec"]["egress"] == [{"ports": [{"protocol": "TCP", "port": p} for p in sorted({443, port})]}]


def test_s3_without_credentials_uses_the_pods_identity_and_the_clusters_region(tmp_path):
    pod, _ = staging(variant(tmp_path, {"kind": "s3", "uri": "s3://weights/qwen3", "image": AWS_CLI}))
    _, sync = pod["initContainers"]
    assert sync["command"] == ["aws", "s3", "sync", "s3://weights/qwen3", TARGET, "--only-show-errors"]
    assert sync["env"] == [{"name": "HOME", "value": "/tmp"}, {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"}]


@pytest.mark.parametrize("weights_from,line", [
    ({"kind": "s3", "uri": "s3://weights/x;rm -rf /", "image": AWS_CLI},
     "peaknight:models[0].weightsFrom.uri: expected s3://<bucket>/<prefix>: a bucket name (3-63 of a-z, 0-9, '.', "
     "'-') and path segments of letters, digits, '.', '_', '-' (no '..'); found 's3://weights/x;rm -rf /'"),
    ({"kind": "s3", "uri": "s3://weights/../etc", "image": AWS_CLI},
     "peaknight:models[0].weightsFrom.uri: expected s3://<bucket>/<prefix>: a bucket name (3-63 of a-z, 0-9, '.', "
     "'-') and path segments of letters, digits, '.', '_', '-' (no '..'); found 's3://weights/../etc'"),
    ({"kind": "s3", "uri": "s3://weights/x"},
     "peaknight:models[0].weightsFrom.image: expected this required key; found nothing"),
    ({"tokenSecret": "hf-token", "endpoint": "https://hub.example.com/$(cat /etc/passwd)"},
     "peaknight:models[0].weightsFrom.endpoint: expected an http(s) URL: scheme, host, optional port and path (no "
     "query, spaces or quotes); found 'https://hub.example.com/$(cat /etc/passwd)'"),
    ({"kind": "hub", "tokenSecret": "HF Token"},
     "peaknight:models[0].weightsFrom.tokenSecret: expected a lower-case DNS label of at most 40 characters (a-z, "
     "0-9, '-'); found 'HF Token'"),
    ({"kind": "gcs", "uri": "gs://weights"},
     "peaknight:models[0].weightsFrom.kind: expected one of hub, s3, modelscope; found 'gcs'"),
    ({"kind": "modelscope", "image": MS_IMAGE, "revision": "v1.0;reboot"},
     "peaknight:models[0].weightsFrom.revision: expected a ModelScope revision: a tag, branch or commit id"),
    ({"kind": "modelscope", "image": MS_IMAGE, "revision": "../../x"},
     "peaknight:models[0].weightsFrom.revision: expected a ModelScope revision: a tag, branch or commit id"),
    ({"kind": "modelscope", "image": MS_IMAGE},
     "peaknight:models[0].weightsFrom.revision: expected this required key; found nothing"),
    ({"kind": "modelscope", "image": MS_IMAGE, "revision": "v1.0", "domain": "evil.example/x?y"},
     "peaknight:models[0].weightsFrom.domain: expected"),
    ({"kind": "s3", "uri": "s3://weights/x", "image": AWS_CLI, "endpointURL": "http://minio:9000"},
     "peaknight:models[0].weightsFrom.endpointURL: expected a known key (credentialsSecret, endpointUrl, image, kind, "
     "region, uri); found an unknown key (did you mean 'endpointUrl'?)"),
])
def test_bad_weights_from_is_one_line(tmp_path, capsys, weights_from, line):
    stack = variant(tmp_path, weights_from)
    assert cli.main(["plan", str(stack)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"{stack}: {line}"), err


def test_the_aws_cli_image_is_pinned_where_the_policy_asks(tmp_path, capsys):
    stack = variant(tmp_path, {"kind": "s3", "uri": "s3://weights/x", "image": AWS_CLI}, requireImageDigests=True)
    assert cli.main(["plan", str(stack)]) == 2
    assert (f"{stack}: peaknight:models[0].weightsFrom.image: expected an image pinned by digest (…@sha256:<64 hex>) "
            f"in a rehearsal stack; found '{AWS_CLI}'") in capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("weights_from", [{"kind": "hub", "tokenSecret": "hf-token", "endpoint": "https://hf.example"},
                                          {"kind": "s3", "uri": "s3://weights/x", "image": AWS_CLI,
                                           "endpointUrl": "http://minio.storage:9000", "credentialsSecret": "s3"},
                                          {"kind": "modelscope", "image": MS_IMAGE, "revision": "v1.0.2",
                                           "tokenSecret": "ms-token"}],
                         ids=["hub", "s3", "modelscope"])
def test_both_sources_validate(tmp_path, capsys, weights_from):
    assert cli.main(["validate", str(variant(tmp_path, weights_from))]) == 0, capsys.readouterr()


def test_modelscope_stages_at_its_revision_from_the_mainland_site_with_the_token_from_a_secret(tmp_path):
    stack = variant(tmp_path, {"kind": "modelscope", "image": MS_IMAGE, "revision": "v1.0.2",
                               "modelId": "Qwen/Qwen3-32B-FP8-ms", "tokenSecret": "ms-token"})
    pod, netpol = staging(stack)
    assert [c["name"] for c in pod["initContainers"]] == ["own-dirs"]
    (stage,) = pod["containers"]
    assert stage["image"] == MS_IMAGE  # the engines' images carry no modelscope package
    assert stage["command"] == ["python3", "-c", warmup.MODELSCOPE_SCRIPT, "Qwen/Qwen3-32B-FP8-ms", TARGET, "v1.0.2"]
    env = resolved_env(stage, {"ms-token": {"MODELSCOPE_API_TOKEN": "ms_secret"}})
    # always the domain: unset, modelscope would fall back to the international site
    assert env == {"HOME": "/tmp", "MODELSCOPE_DOMAIN": "www.modelscope.cn", "MODELSCOPE_API_TOKEN": "ms_secret"}
    assert "huggingface" not in warmup.MODELSCOPE_SCRIPT
    assert netpol["spec"]["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}]}]
    # The script as the pod runs it, against a modelscope that records the login and the download.
    stub = tmp_path / "stub" / "modelscope" / "hub"
    stub.mkdir(parents=True)
    (stub.parent / "__init__.py").write_text("")
    (stub / "__init__.py").write_text("")
    (stub / "api.py").write_text(
        "import os\n"
        "class HubApi:\n"
        "    def login(self, access_token=None):\n"
        "        open(os.environ['LOGIN_MARK'], 'w').write(os.environ['MODELSCOPE_API_TOKEN'])\n")
    (stub / "snapshot_download.py").write_text(
        "import json, os\n"
        "def snapshot_download(**kwargs):\n"
        "    os.makedirs(kwargs['local_dir'])\n"
        "    json.dump({**kwargs, 'domain': os.environ['MODELSCOPE_DOMAIN']},\n"
        "              open(os.path.join(kwargs['local_dir'], 'called.json'), 'w'))\n")
    target = tmp_path / "source" / "rev"
    mark = tmp_path / "login"
    run = run_in_pod(stage["command"], {**env, "PYTHONPATH": str(stub.parent.parent), "LOGIN_MARK": str(mark)}, target)
    assert run.returncode == 0, run.stderr
    assert json.loads((target / "called.json").read_text()) == {
        "model_id": "Qwen/Qwen3-32B-FP8-ms", "revision": "v1.0.2", "local_dir": str(target),
        "domain": "www.modelscope.cn"}
    assert mark.read_text() == "ms_secret" and (tmp_path / "source" / "rev.staged").exists()
    # without a token: no login, the model id is the model's own
    pod, _ = staging(variant(tmp_path, {"kind": "modelscope", "image": MS_IMAGE, "revision": "abc123",
                                        "domain": "modelscope.mirror.example.cn"}))
    (stage,) = pod["containers"]
    assert stage["command"][3:] == [WEIGHTS, TARGET, "abc123"]
    assert stage["env"] == [{"name": "HOME", "value": "/tmp"},
                            {"name": "MODELSCOPE_DOMAIN", "value": "modelscope.mirror.example.cn"}]
