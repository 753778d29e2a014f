"""The registry mirror (peaknight:registryMirror): its rule, every rendered container image of the VKE
night pulled from it, and the one-line config errors of a VKE broadcast stack reaching outside China."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import nights
from peaknight.addons import releases
from peaknight.builders import images
from peaknight.builders.objects import Obj, Unit
from peaknight.cli import main as cli
from peaknight.spec.registry_mirror import RegistryMirror
from conftest import STACKS

ZERO = "@sha256:" + "0" * 64
MIRROR = RegistryMirror(host="gala-cn-beijing.cr.volces.com", namespace="peaknight")


@pytest.mark.parametrize("source, mirrored", [
    ("nginx:1.27.3", "gala-cn-beijing.cr.volces.com/peaknight/library/nginx:1.27.3"),
    (f"lmsysorg/sglang:v0.5.4{ZERO}", f"gala-cn-beijing.cr.volces.com/peaknight/lmsysorg/sglang:v0.5.4{ZERO}"),
    ("ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0",
     "gala-cn-beijing.cr.volces.com/peaknight/llm-d/llm-d-router-endpoint-picker:v0.10.0"),
    (f"registry.k8s.io/pause{ZERO}", f"gala-cn-beijing.cr.volces.com/peaknight/pause{ZERO}"),
    ("localhost:5000/tools/aws-cli:2", "gala-cn-beijing.cr.volces.com/peaknight/tools/aws-cli:2"),
    ("quay.io/martinhelmich/prometheus-nginxlog-exporter",
     "gala-cn-beijing.cr.volces.com/peaknight/martinhelmich/prometheus-nginxlog-exporter"),
    # already on the mirror: left alone, not prefixed twice
    ("gala-cn-beijing.cr.volces.com/peaknight/library/nginx:1", "gala-cn-beijing.cr.volces.com/peaknight/library/nginx:1"),
])
def test_the_rule(source, mirrored):
    assert MIRROR.image(source) == mirrored


def test_without_a_namespace_the_path_follows_the_host():
    assert RegistryMirror(host="mirror.example.cn:5000").image("vllm/vllm-openai:v0.11.0") == \
        "mirror.example.cn:5000/vllm/vllm-openai:v0.11.0"


def test_every_container_list_at_any_depth_is_rewritten():
    cron = {"kind": "CronJob", "metadata": {"name": "x"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "initContainers": [{"name": "a", "image": "busybox"}], "containers": [{"name": "b", "image": "quay.io/x/y:1"}],
        "ephemeralContainers": [{"name": "c", "image": "ghcr.io/d/e"}]}}}}}}
    out = images.mirrored(Unit("C", "x", (Obj(cron),)), MIRROR).objects[0].manifest
    assert sorted(_images(out)) == ["gala-cn-beijing.cr.volces.com/peaknight/d/e",
                                    "gala-cn-beijing.cr.volces.com/peaknight/library/busybox",
                                    "gala-cn-beijing.cr.volces.com/peaknight/x/y:1"]
    assert _images(cron) == ["busybox", "quay.io/x/y:1", "ghcr.io/d/e"]  # the input is not written into


def _images(value: Any) -> list[str]:
    return list(_walk(value))


def _walk(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in images.CONTAINER_LISTS:
                yield from (c["image"] for c in item)
            else:
                yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def test_every_rendered_container_image_of_the_vke_night_comes_from_the_mirror():
    spec = nights.spec("gala-vke")
    assert spec.registry_mirror is not None and spec.registry_mirror.prefix == MIRROR.prefix
    found = [image for m in nights.manifests("gala-vke") for image in _images(m)]
    assert len(found) > 2000
    assert {i for i in found if not i.startswith("gala-cn-beijing.cr.volces.com/peaknight/")} == set()
    # every kind of image the kit renders is among them: engines, picker, edge and its exporters,
    # the weights' AWS CLI, the pre-pullers' pause
    paths = {i.split("/", 2)[2].split(":")[0] for i in found}
    assert {"lmsysorg/sglang", "vllm/vllm-openai", "llm-d/llm-d-router-endpoint-picker", "library/nginx",
            "nginx/nginx-prometheus-exporter", "martinhelmich/prometheus-nginxlog-exporter", "amazon/aws-cli",
            "pause"} <= paths


def test_no_vke_staging_job_reads_huggingface():
    jobs = [m for m in nights.manifests("gala-vke") if m["kind"] == "Job"]
    assert jobs
    for job in jobs:
        text = yaml.safe_dump(job)
        assert "huggingface" not in text and "snapshot_download" not in text
        sync = next(c for c in job["spec"]["template"]["spec"]["initContainers"] if c["name"] == "sync")
        assert sync["command"][:3] == ["aws", "s3", "sync"]
        assert sync["command"][-2:] == ["--endpoint-url", "https://tos-s3-cn-beijing.volces.com"]


def _variant(tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load((STACKS / "Pulumi.gala-vke.yaml").read_text())
    nights.keep_clusters(doc["config"], ["vke-bj-01"])
    edit(doc["config"])
    path = tmp_path / "Pulumi.variant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _hub(cfg: dict[str, Any]) -> None:
    del cfg["peaknight:models"][1]["weightsFrom"]


def _no_mirror(cfg: dict[str, Any]) -> None:
    del cfg["peaknight:registryMirror"]


def _clash(cfg: dict[str, Any]) -> None:
    # the AWS CLI from ECR Public beside Docker Hub's: both would be <mirror>/amazon/aws-cli
    cfg["peaknight:models"][1]["weightsFrom"]["image"] = f"public.ecr.aws/amazon/aws-cli:2.27.0{ZERO}"


@pytest.mark.parametrize("edit, line", [
    (_no_mirror, "peaknight:registryMirror: expected a registry mirror when a cluster uses volcengine-vke in a "
     "broadcast stack"),
    (_hub, "peaknight:models[1].weightsFrom: expected weights from a source a China region reaches when a cluster "
     "uses volcengine-vke in a broadcast stack: kind hub with an endpoint (a hub mirror), kind s3 (Volcano Engine "
     "TOS) or kind modelscope; found huggingface.co (kind hub without an endpoint)"),
    (lambda c: c["peaknight:registryMirror"].update(host="Gala.CR"), "peaknight:registryMirror.host: expected a "
     "registry host"),
    (lambda c: c["peaknight:registryMirror"].update(namespace="../x"), "peaknight:registryMirror.namespace: expected "
     "a repository path prefix"),
    (lambda c: c["peaknight:registryMirror"].update(host="cr.example.cn/$(reboot)"), "peaknight:registryMirror.host: "
     "expected a registry host"),
    (lambda c: c["peaknight:registryMirror"].update(namespace="peaknight\nwarning: forged"),
     "peaknight:registryMirror.namespace: expected a repository path prefix"),
    (lambda c: c["peaknight:registryMirror"].update(namespace="a" * 100 + "/" + "b" * 99),
     "peaknight:registryMirror.namespace: expected a prefix that keeps every image a valid reference (a name of at "
     "most 255 characters); found too long for edges[0].exporterImage, edges[0].logExporterImage, router.image"),
    (_clash, "peaknight:models[1].weightsFrom.image: expected an image that does not share its mirrored name with "
     "models[0].weightsFrom.image (both become gala-cn-beijing.cr.volces.com/.../amazon/aws-cli: the mirror drops "
     "the registry); found public.ecr.aws and docker.io"),
])
def test_sources_outside_china_are_one_line_each(tmp_path, capsys, edit, line):
    path = _variant(tmp_path, edit)
    assert cli.main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if not x.startswith("warning")]
    assert len(lines) == 1 and lines[0].startswith(f"{path}: {line}"), lines


def test_a_rehearsal_on_vke_may_pull_from_the_images_own_registries(tmp_path, capsys):
    def rehearsal(cfg: dict[str, Any]) -> None:
        _no_mirror(cfg)
        _hub(cfg)
        cfg["peaknight:policy"] = {"stage": "rehearsal", "capacityTypes": ["on-demand"]}
    assert cli.main(["plan", str(_variant(tmp_path, rehearsal))]) in (0, 1)
    assert "registryMirror" not in capsys.readouterr().err


def _vke_releases() -> list[Any]:
    objects = nights.objects("gala-vke")
    c = objects.clusters[0]
    return list(releases.build(objects.spec, objects.plan.cluster(c.cluster.name), c.cluster,
                               [obj for unit in c.units for obj in unit.objects]))


def test_add_on_charts_come_from_the_mirrors_chart_repository_at_their_pins():
    found = _vke_releases()
    assert {r.addon for r in found} >= {releases.PROMETHEUS_STACK, releases.GPU_OPERATOR}
    for release in found:
        pinned = releases.chart(release.addon)
        assert release.chart.repository == "oci://gala-cn-beijing.cr.volces.com/peaknight-charts"
        assert (release.chart.name, release.chart.version) == (pinned.name, pinned.version)
        assert release.chart.ref == f"oci://gala-cn-beijing.cr.volces.com/peaknight-charts/{pinned.name}"


def test_kube_prometheus_stack_images_follow_the_mirrors_prefix():
    stack = next(r for r in _vke_releases() if r.addon == releases.PROMETHEUS_STACK)
    assert stack.values["global"]["imageRegistry"] == "gala-cn-beijing.cr.volces.com/peaknight"
    # without a mirror, the chart's own registries
    broadcast = nights.objects("broadcast")
    c = broadcast.clusters[0]
    plain = releases.build(broadcast.spec, broadcast.plan.cluster(c.cluster.name), c.cluster,
                           [obj for unit in c.units for obj in unit.objects])
    stack = next(r for r in plain if r.addon == releases.PROMETHEUS_STACK)
    assert "imageRegistry" not in stack.values.get("global", {})
    assert stack.chart.repository == releases.chart(releases.PROMETHEUS_STACK).repository


@pytest.mark.parametrize("charts", ["http://charts.example.cn", "oci://Bad_Host/x", "oci://cr.example.cn/../x",
                                    "s3://charts"])
def test_a_chart_repository_is_oci_or_https(tmp_path, capsys, charts):
    path = _variant(tmp_path, lambda c: c["peaknight:registryMirror"].update(charts=charts))
    assert cli.main(["plan", str(path)]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("warning")]
    assert len(lines) == 1 and lines[0].startswith(f"{path}: peaknight:registryMirror.charts: expected oci://"), lines


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _rendered(key: releases.ImageKey, value: str) -> str:
    """The image (no tag) the chart renders with `value` at `key`, as its templates join them."""
    if key.form == "registry":
        return f"{value}/{key.image.split('/', 1)[1]}" if value else key.image
    assert key.image.startswith(key.default + "/") or key.image == key.default, key
    return value + key.image[len(key.default):]


@pytest.mark.parametrize("addon", releases.all_addons())
def test_every_image_key_of_every_add_on_points_at_the_mirror(addon):
    pinned = releases.chart(addon)
    declared = yaml.safe_load((releases.CHARTS / addon / "chart.yaml").read_text())
    assert isinstance(declared.get("images"), list), f"{addon}: chart.yaml declares no `images` list"
    # empty only for a chart that renders no container (ai-gateway-crds: its CRDs alone), which the
    # kit then configures with nothing either
    assert pinned.images or yaml.safe_load((releases.CHARTS / addon / "values.yaml").read_text()) == {}, \
        f"{addon}: chart.yaml lists no image-bearing values key"
    values = releases.mirror_values(pinned, MIRROR)
    for key in pinned.images:
        assert key.form in ("registry", "repository"), key
        # at the chart's own value the chart renders its own image; at the derived one, the mirror's
        assert _rendered(key, key.default) == key.image
        mirrored = _rendered(key, _lookup(values, key.key))
        assert mirrored == MIRROR.image(key.image), key
        assert mirrored.startswith("gala-cn-beijing.cr.volces.com/peaknight/"), key
    assert releases.mirror_values(pinned, None) == {}


def test_the_vke_nights_add_on_releases_carry_the_mirror_in_every_image_key():
    found = _vke_releases()
    assert {r.addon for r in found} >= {releases.PROMETHEUS_STACK, releases.GPU_OPERATOR, releases.LWS}
    for release in found:
        for key in release.chart.images:
            assert _rendered(key, _lookup(release.values, key.key)) == MIRROR.image(key.image), (release.addon, key)
    # the derived values still hold beside the mirror's keys (merged, not replaced)
    gpu = next(r for r in found if r.addon == releases.GPU_OPERATOR)
    assert gpu.values["devicePlugin"]["enabled"] is True
    assert gpu.values["devicePlugin"]["repository"] == "gala-cn-beijing.cr.volces.com/peaknight/nvidia"
    # without a mirror no image key is set by the kit
    broadcast = nights.objects("broadcast")
    c = broadcast.clusters[0]
    for release in releases.build(broadcast.spec, broadcast.plan.cluster(c.cluster.name), c.cluster,
                                  [obj for unit in c.units for obj in unit.objects]):
        for key in release.chart.images:
            assert _lookup(release.values, key.key) in (None, key.default), (release.addon, key)


def test_a_vke_broadcast_may_stage_from_modelscope_and_its_image_comes_from_the_mirror(tmp_path, capsys):
    def modelscope(cfg: dict[str, Any]) -> None:
        cfg["peaknight:models"][1]["weightsFrom"] = {
            "kind": "modelscope", "revision": "v1.0", "image": f"modelscope/modelscope:1.31.0{ZERO}"}
    path = _variant(tmp_path, modelscope)
    assert cli.main(["plan", str(path)]) == 0
    assert "weightsFrom" not in capsys.readouterr().err
    from peaknight.builders import event
    from peaknight.spec import config
    built = event.build(config.load_stack(str(path)).spec)
    jobs = [o.manifest for u in built.clusters[0].units for o in u.objects
            if o.kind == "Job" and o.name.startswith("stage-greetings")]
    assert jobs
    for job in jobs:
        (stage,) = job["spec"]["template"]["spec"]["containers"]
        assert stage["image"] == f"gala-cn-beijing.cr.volces.com/peaknight/modelscope/modelscope:1.31.0{ZERO}"
        assert {"name": "MODELSCOPE_DOMAIN", "value": "www.modelscope.cn"} in stage["env"]
