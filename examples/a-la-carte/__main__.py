"""A Pulumi program of one's own: one model served, routed and autoscaled on an existing cluster.

No stack file of the kit's shape: the event, the cluster and the model are built in code, the
planner sizes the model (after the checks a stack file passes), and the kit's public components are
composed by hand under this program's own Kubernetes provider. Everything one component's objects
reference is registered by another: ClusterBase the namespaces, PriorityClasses and Gateway;
InferenceRouter the InferencePool the route sends to and its endpoint picker; WarmGate the node
cache the servers mount. The GPU nodes are the cluster's own, labelled peaknight.io/pool=hopper and
tainted for GPUs (a GpuNodePool would have Karpenter make them). Run it like any Pulumi Python
program (`pulumi stack init dev && pulumi config set --secret kubeconfig < ~/.kube/config && pulumi
up`); tests/test_components.py runs it under Pulumi's mocks.
"""
import datetime as dt

import pulumi
import pulumi_kubernetes as k8s

import peaknight as pk
from peaknight.spec.stack import Cluster, Event, GpuPool, Model, Moment, Policy, Stage, StackSpec, Window
from peaknight.spec.weights_from import HubSource

night = dt.datetime(2026, 12, 31, 20, 0)
event = Event(name="newyear", time_zone="America/New_York", baseline=0.3,
              window=Window(start=night, end=night + dt.timedelta(hours=5)),
              moments=(Moment(name="midnight", at=night + dt.timedelta(hours=3, minutes=58), load=1.0,
                              duration_minutes=10),))
# us-east-2 sells both instance types of the pool (profiles.yaml): the planner checks it, as for a stack file.
cluster = Cluster(name="ohio-01", region="us-east-2", zones=("us-east-2a", "us-east-2b"), share=1.0)
model = Model(name="assistant", model_class="dense-8b", engine="vllm", image="vllm/vllm-openai:v0.11.0",
              weights="meta-llama/Llama-3.1-8B-Instruct", pool="hopper", peak_tokens_per_minute=2e8,
              input_share=0.6, weights_from=HubSource(token_secret="hf-token"))  # Llama is gated
pool = GpuPool(name="hopper", gpus=("H100-80G", "H200-141G"), instance_types=("p5.48xlarge", "p5e.48xlarge"))
spec = StackSpec(event=event, policy=Policy.for_stage(Stage.REHEARSAL), clusters=(cluster,), gpu_pools=(pool,),
                 models=(model,))
plan = pk.capacity_plan(spec).cluster(cluster.name)

provider = k8s.Provider("ohio-01", kubeconfig=pulumi.Config().require_secret("kubeconfig"))
base = pk.ClusterBase("newyear", pk.ClusterBaseArgs(scope=spec, cluster=cluster, gateway=plan.gateway),
                      opts=pulumi.ResourceOptions(provider=provider))
on_base = pulumi.ResourceOptions(provider=provider, depends_on=[base])
assistant = pk.InferenceService("assistant", pk.InferenceServiceArgs(
    scope=spec, cluster=cluster, model=model, plan=plan.model(model.name)), opts=on_base)
router = pk.InferenceRouter("assistant-router", pk.InferenceRouterArgs(
    spec=spec, cluster=cluster, model=model, plan=plan.model(model.name)), opts=on_base)
pk.Autoscaler("assistant", pk.AutoscalerArgs(scope=spec, target=assistant.args, slo=spec.slo),
              opts=pulumi.ResourceOptions(provider=provider, depends_on=[assistant]))
# The servers load weights from their node's cache: the warm gate stages (HF_TOKEN from the Secret
# hf-token you create in newyear-weights) and fills it.
gate = pk.WarmGate("assistant-weights", pk.WarmGateArgs(scope=spec, cluster=cluster, models=(model,),
                                                        weights=plan.weights), opts=on_base)

pulumi.export("assistant_url", assistant.url)
pulumi.export("assistant_peak_replicas", assistant.peak_replicas)
pulumi.export("gateway", base.gateway_name)
pulumi.export("inference_pool", router.pool_name)
pulumi.export("staging_waits", gate.staging_waits)
