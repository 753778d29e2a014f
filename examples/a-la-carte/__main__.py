"""A Pulumi program of one's own: one model served and autoscaled on an existing cluster.

No stack file of the kit's shape: the event, the cluster and the model are built in code, the
planner sizes the model, and three of the kit's components are composed by hand under this
program's own Kubernetes provider. Run it like any Pulumi Python program
(`pulumi stack init dev && pulumi config set --secret kubeconfig < ~/.kube/config && pulumi up`);
tests/test_components.py runs it under Pulumi's mocks.
"""
import datetime as dt

import pulumi
import pulumi_kubernetes as k8s

import peaknight as pk
from peaknight.spec.stack import Cluster, Event, GpuPool, Model, Moment, Policy, Stage, StackSpec, Window

night = dt.datetime(2026, 12, 31, 20, 0)
event = Event(name="newyear", time_zone="America/New_York", baseline=0.3,
              window=Window(start=night, end=night + dt.timedelta(hours=5)),
              moments=(Moment(name="midnight", at=night + dt.timedelta(hours=3, minutes=58), load=1.0,
                              duration_minutes=10),))
policy = Policy.for_stage(Stage.REHEARSAL)
# us-east-2 sells both instance types of the pool (profiles.yaml): the planner checks it, as for a stack file.
cluster = Cluster(name="ohio-01", region="us-east-2", zones=("us-east-2a", "us-east-2b"), share=1.0)
model = Model(name="assistant", model_class="dense-8b", engine="vllm", image="vllm/vllm-openai:v0.11.0",
              weights="meta-llama/Llama-3.1-8B-Instruct", pool="hopper", peak_tokens_per_minute=2e8,
              input_share=0.6)
pool = GpuPool(name="hopper", gpus=("H100-80G", "H200-141G"), instance_types=("p5.48xlarge", "p5e.48xlarge"))

# The planner needs the whole (small) event to size the model; the components need only a Scope.
plan = pk.capacity_plan(StackSpec(event=event, policy=policy, clusters=(cluster,), gpu_pools=(pool,),
                                  models=(model,))).cluster(cluster.name)
scope = pk.EventScope(event=event, policy=policy)

provider = k8s.Provider("ohio-01", kubeconfig=pulumi.Config().require_secret("kubeconfig"))
opts = pulumi.ResourceOptions(provider=provider)
assistant = pk.InferenceService("assistant", pk.InferenceServiceArgs(scope, cluster, model,
                                                                     plan.model(model.name)), opts=opts)
pk.Autoscaler("assistant", pk.AutoscalerArgs(scope, assistant.args),
              opts=pulumi.ResourceOptions(provider=provider, depends_on=[assistant]))
# The servers load weights from their node's cache: the warm gate stages and fills it.
gate = pk.WarmGate("assistant-weights", pk.WarmGateArgs(scope, cluster, (model,), plan.weights), opts=opts)

pulumi.export("assistant_url", assistant.url)
pulumi.export("assistant_peak_replicas", assistant.peak_replicas)
pulumi.export("staging_waits", gate.staging_waits)
