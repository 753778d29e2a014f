"""The stack-file program (`__main__.py`): the stack's config in, one ClusterStack per cluster out.

Everything here is Pulumi's part only: config, one Provider per cluster, exports. The objects come
from the same parts the offline render walks (event.build), registered by the public components
(components.py), so the program cannot create anything review did not see.
"""
from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_volcengine as volcengine

from peaknight.builders import event
from peaknight.plan import capacity, gate
from peaknight.pulumi import stack_config
from peaknight.spec import profiles
from peaknight.pulumi.components import ClusterStack, refuse
from peaknight.spec import config
from peaknight.spec.stack import Cluster, StackSpec, Stage


def provider_for(spec: StackSpec, cluster_name: str, adopt_existing: bool) -> k8s.Provider:
    """The cluster's provider: kubeconfig from its secret, or YAML to a directory for GitOps."""
    cfg = pulumi.Config(config.NAMESPACE)
    key = f"{config.KUBECONFIG_PREFIX}{cluster_name}"
    render_dir = f"{spec.render_directory}/{cluster_name}" if spec.render_directory else None
    kubeconfig = cfg.get_secret(key)
    if kubeconfig is None and render_dir is None:
        raise pulumi.RunError(f"Pulumi config of stack {pulumi.get_stack()}: {config.NAMESPACE}:{key}: expected "
                              f"the cluster's kubeconfig as a secret (pulumi config set --secret "
                              f"{config.NAMESPACE}:{key} < kubeconfig); found nothing")
    return k8s.Provider(cluster_name, kubeconfig=kubeconfig, render_yaml_to_directory=render_dir,
                        enable_server_side_apply=True, upsert_existing_objects=adopt_existing)


def cloud_providers(spec: StackSpec, cluster: Cluster) -> list[pulumi.ProviderResource]:
    """The cluster's cloud provider when it declares cloud resources: Volcano Engine in the
    cluster's region, credentials from the cluster's two secrets (VKE node pools, its global
    records); AWS in the cluster's region, credentials from the environment as for the AWS CLI
    (Route 53 records and health checks of `peaknight:steering`)."""
    if cluster.provisioner.kind == "karpenter-aws" and spec.steering is not None:
        return [aws.Provider(f"aws-{cluster.name}", region=cluster.region)]
    if cluster.provisioner.kind != "volcengine-vke":
        return []
    cfg = pulumi.Config(config.NAMESPACE)
    keys = [f"{prefix}{cluster.name}" for prefix in config.VOLCENGINE_PREFIXES]
    access_key, secret_key = (cfg.get_secret(key) for key in keys)
    if access_key is None or secret_key is None:
        raise pulumi.RunError(f"Pulumi config of stack {pulumi.get_stack()}: {config.NAMESPACE}:{keys[0]}, "
                              f"{config.NAMESPACE}:{keys[1]}: expected the cluster's Volcano Engine access and "
                              f"secret key as secrets (pulumi config set --secret ...); found nothing")
    return [volcengine.Provider(f"volcengine-{cluster.name}", region=cluster.region, access_key=access_key,
                                secret_key=secret_key)]


def deploy(spec: StackSpec) -> list[ClusterStack]:
    """Declare every object of the event, one ClusterStack per cluster under its own providers
    (Kubernetes, and the cloud's where its provisioner declares cloud resources), unless the gate
    refuses the plan: then nothing, and the SHORT lines `peaknight plan` prints for every cluster.
    With `peaknight:gitops` the add-ons are objects of a part of their own (Argo CD / Flux), which a
    render directory can hold; otherwise Helm releases every object that needs one waits for."""
    objects = event.build(spec)
    refuse(gate.stack(spec, objects.plan))
    stacks = []
    for cluster_objects in objects.clusters:
        cluster = cluster_objects.cluster
        provider = provider_for(spec, cluster.name, cluster.adopt_existing)
        opts = pulumi.ResourceOptions(providers=[provider, *cloud_providers(spec, cluster)])
        stacks.append(ClusterStack(cluster.name, cluster_objects, opts))
    return stacks


def source() -> str:
    """How config problems name where the config came from."""
    return f"Pulumi config of stack {pulumi.get_stack()}"


def spec_from_pulumi_config() -> StackSpec:
    """Validate every `peaknight:*` key Pulumi passed exactly as the CLI validates the stack file:
    unknown keys and plain-text kubeconfigs included (stack_config.raw_config)."""
    # The stack files' folder (Pulumi.yaml's stackConfigDir, or $PEAKNIGHT_STACKS as for the CLI):
    # the calibration file and a stack's own profiles file sit beside them.
    stacks = config.stacks_dir()
    profiles.use_calibration(stacks / profiles.CALIBRATION_FILE)
    return config.parse(stack_config.raw_config(source()), source(), base=stacks)


def check_placeholders(spec: StackSpec) -> None:
    """`pulumi up` of a broadcast stage refuses images and weights pinned to the all-zero
    placeholders (nothing a node can pull on the night), one line each as `validate --strict`
    prints them; a preview (the pull-request check of the shipped stack) and a rehearsal warn, as
    `peaknight render` does."""
    problems = config.placeholders(spec, source())
    if problems and spec.policy.stage is Stage.BROADCAST and not pulumi.runtime.is_dry_run():
        raise config.ConfigError(problems)
    for problem in problems:
        pulumi.log.warn(str(problem))


def main() -> None:
    """Entry point of __main__.py: config errors, placeholders in a broadcast `pulumi up` and a plan
    the gate refuses surface as one line each, no traceback."""
    try:
        spec = spec_from_pulumi_config()
        check_placeholders(spec)
        stacks = deploy(spec)
    except (config.ConfigError, capacity.EnvelopeError) as err:
        raise pulumi.RunError(str(err)) from None
    pulumi.export("clusters", [s.args.cluster.name for s in stacks])
    pulumi.export("gpus", sum(int(m.gpus.value) for s in stacks for m in s.args.plan.models))
    pulumi.export("nodes", sum(s.args.plan.nodes for s in stacks))
    pulumi.export("model_urls", {s.args.cluster.name: s.model_urls for s in stacks})
