"""The rehearsal's load replay objects: the curve they replay, where they send it, and that only a
rehearsal may hold them (config, policy check). Schema validation of every rendered object is
test_validate's; that inference-perf accepts the config is test_calibrate's."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

import nights
from peaknight.builders import event, loadreplay
from peaknight.plan import capacity
from peaknight.review import policy
from peaknight.spec import config, forecast
from peaknight.spec.stack import Stage

from conftest import STACKS


@pytest.fixture(scope="module")
def rehearsal():
    spec = nights.spec("rehearsal")
    return spec, event.build(spec)


def _objects(objects, cluster: str) -> dict[str, dict]:
    found = next(c for c in objects.clusters if c.cluster.name == cluster)
    return {o.key: o.manifest for u in found.units for o in u.objects}


def test_each_model_replays_the_curve_of_its_cluster(rehearsal):
    spec, objects = rehearsal
    replay = spec.load_replay
    assert replay is not None
    for cluster in spec.clusters:
        got = _objects(objects, cluster.name)
        for model in spec.models:
            plan = objects.plan.cluster(cluster.name).bounding(model.name)
            # In the weights namespace, beside the weight sources it reads the tokenizer from.
            job = got[f"cronjob.{spec.event.name}-weights.load-{model.name}"]
            cfg = yaml.safe_load(got[f"configmap.{spec.event.name}-weights.load-{model.name}"]["data"]["config.yml"])
            pods = job["spec"]["jobTemplate"]["spec"]["completions"]
            stages = cfg["load"]["stages"]
            # The stages cover the window, second for second, back to back.
            assert sum(s["duration"] for s in stages) == (spec.event.window.end - spec.event.window.start).seconds
            assert cfg["load"]["interval"] == 0
            # All pods together send the cluster's forecast: baseline first, the 1.0 moment at the top.
            total = lambda s: s["rate"] * pods * replay.request_tokens  # noqa: E731
            assert total(stages[0]) == pytest.approx(plan.demand_tps.value * spec.event.baseline, rel=1e-3)
            assert max(map(total, stages)) == pytest.approx(plan.demand_tps.value * 1.0, rel=1e-3)
            assert max(s["rate"] for s in stages) <= replay.pod_requests_per_second
            assert max(map(total, stages)) / replay.request_tokens > (pods - 1) * replay.pod_requests_per_second
            prompt = cfg["data"]["input_distribution"]
            output = cfg["data"]["output_distribution"]
            assert prompt["min"] == prompt["max"] == round(replay.request_tokens * model.input_share)
            assert prompt["min"] + output["min"] == replay.request_tokens
            assert cfg["server"] == {"type": model.engine.value, "model_name": model.name, "ignore_eos": True,
                                     "base_url": f"http://{model.name}.{spec.event.name}-inference.svc:8000"}
            assert cfg["api"] == {"type": "completion", "streaming": True}
            # Once, at the window's start, in the event's zone; each pod its own results directory.
            w = spec.event.window.start
            assert (job["spec"]["schedule"], job["spec"]["timeZone"]) == (f"{w.minute} {w.hour} {w.day} {w.month} *",
                                                                          spec.event.time_zone)
            pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            args = pod["containers"][0]["args"]
            assert args[args.index("--storage.local_storage.path") + 1] == f"/results/{model.name}/pod-$(JOB_INDEX)"
            claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
            assert claims["results"] == {"claimName": "load-replay-results"}
            assert claims["weights"] == {"claimName": f"{model.name}-weights-z0", "readOnly": True}
            assert pod["nodeSelector"] == {"topology.kubernetes.io/zone": cluster.zones[0]}
            assert cfg["tokenizer"]["pretrained_model_name_or_path"] == (
                f"/models/{model.weights}/{model.weights_revision or 'unpinned'}")


def test_a_ramp_is_replayed_as_steps():
    spec = nights.spec("rehearsal")
    plan = capacity.plan(spec).cluster("reh-bj-01").bounding("chat")
    assert spec.load_replay is not None
    steps = loadreplay.steps(spec, plan, spec.load_replay)
    opening = next(m for m in spec.event.moments if m.name == "opening")  # a 3-minute ramp to 0.6
    during = [s for s in steps if opening.at <= s.start < forecast.moment_end(opening)]
    fractions = [round(s.tokens_per_second / plan.demand_tps.value, 4) for s in during]
    # Step middles of the rise: 0.6 x 0.5/3 = 0.1 and 0.6 x 1.5/3 = 0.3 are under the 0.35 baseline
    # (merged into it), 0.6 x 2.5/3 = 0.5; then the held 0.6 (one stage), and down: 0.5, then baseline.
    assert fractions == [0.5, 0.6, 0.5, 0.35]


def test_load_pods_reach_the_model_servers_only(rehearsal):
    spec, objects = rehearsal
    got = _objects(objects, "reh-bj-01")
    ns, weights = f"{spec.event.name}-inference", f"{spec.event.name}-weights"
    in_ns = lambda name: {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}  # noqa: E731
    policy_ = got[f"networkpolicy.{weights}.load-replay"]["spec"]
    assert policy_["podSelector"] == {"matchLabels": loadreplay.pod_selector(spec)}
    assert policy_["ingress"] == []
    assert policy_["egress"] == [{"to": [{**in_ns(ns), "podSelector": {"matchLabels": {
                                             "app.kubernetes.io/name": m.name, "peaknight.io/event": spec.event.name}}}
                                         for m in spec.models],
                                  "ports": [{"protocol": "TCP", "port": 8000}]}]
    for model in spec.models:
        sources = got[f"networkpolicy.{ns}.{model.name}-serving"]["spec"]["ingress"][0]["from"]
        assert {**in_ns(weights), "podSelector": {"matchLabels": loadreplay.pod_selector(spec)}} in sources


def test_the_broadcast_has_no_load_replay():
    spec = nights.spec("broadcast")
    keys = [o.key for c in nights.objects("broadcast").clusters for u in c.units for o in u.objects]
    assert not [k for k in keys if ".load-" in k]
    assert spec.load_replay is None


def test_a_broadcast_stack_refuses_the_key(tmp_path):
    text = (STACKS / "Pulumi.broadcast.yaml").read_text()
    rehearsal = yaml.safe_load((STACKS / "Pulumi.rehearsal.yaml").read_text())["config"]["peaknight:loadReplay"]
    rehearsal["image"] += "@sha256:" + "a" * 64  # pinned, as a broadcast stack must: only the stage is wrong
    path = tmp_path / "Pulumi.broadcast.yaml"
    path.write_text(text + "  peaknight:loadReplay: " + yaml.safe_dump(rehearsal, default_flow_style=True))
    with pytest.raises(config.ConfigError) as err:
        config.load_stack(str(path))
    assert [str(p) for p in err.value.problems] == [
        f"{path}: peaknight:loadReplay: expected no load replay in a broadcast stack (rehearsal stages only); "
        "found loadReplay"]


def test_the_policy_check_fails_a_broadcast_render_holding_it(rehearsal):
    spec, objects = rehearsal
    broadcast = dataclasses.replace(spec, policy=dataclasses.replace(spec.policy, stage=Stage.BROADCAST))
    objs = [o for u in objects.clusters[0].units for o in u.objects]
    ctx = policy.Context(broadcast, objects.plan)
    found = policy.check_cluster(ctx, "reh-bj-01", objs, only=["no-load-replay-in-broadcast"])
    named = sorted(v.obj for v in found)
    ns = f"{spec.event.name}-weights"
    assert named == sorted([f"ServiceAccount {ns}/load-replay", f"PersistentVolumeClaim {ns}/load-replay-results",
                            *(f"{k} {ns}/load-{m.name}" for m in spec.models for k in ("ConfigMap", "CronJob"))])
    assert policy.check_cluster(policy.Context(spec, objects.plan), "reh-bj-01", objs,
                                only=["no-load-replay-in-broadcast"]) == []


def test_one_release_of_the_load_tool_everywhere():
    """The release whose formats the kit writes and reads is the one the tests install and the
    rehearsal runs."""
    from conftest import ROOT
    assert f"INFERENCE_PERF := inference-perf=={loadreplay.TOOL_VERSION}\n" in (ROOT / "Makefile").read_text()
    spec = nights.spec("rehearsal")
    assert spec.load_replay is not None
    assert spec.load_replay.image.split("@")[0] == f"quay.io/inference-perf/inference-perf:v{loadreplay.TOOL_VERSION}"
