"""`peaknight validate`: both stacks pass; deliberately broken stack files fail with every
violation listed (exit 1), or with the config problem (exit 2)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from peaknight.builders import event
from peaknight.cli import main as cli

import nights


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["validate", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# The whole broadcast (64 clusters, about 8 s) in the real-tool tier; the fast tier validates one
# cluster per shape, which renders each shape's objects exactly (tests/test_cluster_shapes.py).
@pytest.mark.parametrize("stack", ["rehearsal", pytest.param("broadcast", marks=pytest.mark.realtool),
                                   "broadcast, one cluster per shape"])
def test_both_stacks_pass(stack: str, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, str(nights.per_shape("broadcast")) if stack.endswith("per shape") else stack)
    assert code == 0, out
    assert out.strip().endswith("policy checks and API/CRD schemas pass")


def _broken(tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None]) -> str:
    """A copy of the broadcast stack, one cluster per shape (nights.per_shape: each shape's objects
    exactly), with `change` applied to its `peaknight:` config."""
    doc = yaml.safe_load(nights.per_shape("broadcast").read_text())
    change(doc["config"])
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _tag_greetings(cfg: dict[str, Any]) -> None:
    """Digests switched off in broadcast: config allows it, the broadcast policy does not."""
    cfg["peaknight:policy"]["requireImageDigests"] = False
    cfg["peaknight:models"][1]["image"] = "vllm/vllm-openai:v0.11.0"


def _unprotect(cfg: dict[str, Any]) -> None:
    cfg["peaknight:policy"]["protect"] = False


@pytest.fixture
def empty_gateway_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """A builder fault config cannot produce (it refuses an empty gatewayClass): the first
    cluster's Gateway rendered without a class, which only the schema check catches."""
    real = event.build

    def build(spec: Any) -> Any:
        objects = real(spec)
        gateway = next(o for u in objects.clusters[0].units for o in u.objects if o.kind == "Gateway")
        gateway.manifest["spec"]["gatewayClassName"] = ""
        return objects
    monkeypatch.setattr(event, "build", build)


@pytest.mark.parametrize("change, expected", [
    (_tag_greetings, ["gala-bj-01: Deployment gala-2026-inference/greetings-s0: spec.template.spec: container 'engine' "
                      "image 'vllm/vllm-openai:v0.11.0' is a mutable tag (pin @sha256:...) [immutable-images]"]),
    (_unprotect, ["gala-hk-01: NodePool h200: broadcast node pool is not protected (protect=True) "
                  "[broadcast-pools-frozen]",
                  "gala-hk-01: EC2NodeClass h100: broadcast node pool is not protected (protect=True) "
                  "[broadcast-pools-frozen]"]),
])
def test_broken_stack_fails_naming_each_object(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               change: Callable, expected: list[str]) -> None:
    code, out, _ = _run(capsys, _broken(tmp_path, "broken", change))
    assert code == 1
    lines = out.splitlines()
    for line in expected:
        assert line in lines


def test_a_schema_fault_names_the_object(capsys: pytest.CaptureFixture, empty_gateway_class: None) -> None:
    code, out, _ = _run(capsys, str(nights.per_shape("broadcast")))
    assert code == 1
    assert "gala-bj-01: Gateway/gala-2026-gateway: '' should be non-empty at spec.gatewayClassName [schema]" in \
        out.splitlines()


def test_every_violation_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture, empty_gateway_class: None) -> None:
    """Three faults at once: all reported, one line each, and counted in the verdict."""
    path = _broken(tmp_path, "three-faults", lambda c: (_tag_greetings(c), _unprotect(c)))
    code, out, _ = _run(capsys, path)
    assert code == 1
    lines = out.splitlines()
    violations = [line for line in lines[:-1] if not line.startswith("warning: ")]  # placeholder digests
    checks = {line.rsplit("[", 1)[1].rstrip("]") for line in violations}
    assert checks == {"immutable-images", "broadcast-pools-frozen", "schema"}
    # 3 clusters (one per shape) x greetings' 2 shard Deployments (ceil(580 pods / 304 per picker)),
    # two containers each (the engine and its wait-weights init)
    assert sum("[immutable-images]" in line and "/greetings" in line for line in lines) == 3 * 2 * 2
    assert len({line.split(":", 1)[0] for line in lines if "[immutable-images]" in line}) == 3
    assert sum("[broadcast-pools-frozen]" in line for line in lines) == 3 * (3 + 1) * 2
    assert lines[-1].endswith(f"{len(violations)} violation(s)")


def test_custom_resources_need_their_crds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "rehearsal", "--crds", str(tmp_path))
    assert code == 1
    assert f"reh-bj-01: NodePool/h200: no CRD in {tmp_path} serves karpenter.sh/v1 NodePool [schema]" in out.splitlines()


def test_bad_config_exits_2_with_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _broken(tmp_path, "typo", lambda c: c["peaknight:policy"].update(stage="broadcats"))
    code, out, err = _run(capsys, path)
    assert code == 2
    assert out == ""
    assert f"{path}: peaknight:policy.stage: expected one of broadcast, rehearsal; found 'broadcats' " \
           f"(did you mean 'broadcast'?)" in err.splitlines()


def test_missing_crd_directory_is_bad_input(capsys: pytest.CaptureFixture) -> None:
    code, _, err = _run(capsys, "rehearsal", "--crds", "/nonexistent/crds")
    assert code == 2
    assert err.strip() == "/nonexistent/crds: --crds: expected a directory of CRD YAML files; found no such directory"
