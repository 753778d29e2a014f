"""ClusterAddons: one cluster's add-ons as Helm Releases, and the release each object waits for.

`helm.v3.Release`, not `helm.v4.Chart`: a Release is one plain resource that Helm installs CRDs
first and then awaits (controllers and admission webhooks ready), so `depends_on=[release]`
really orders a ScaledObject after KEDA, and a first `pulumi up` on an empty cluster converges in
one run. Its inputs (chart, version, values) show in `pulumi preview --diff` and to mock tests. A
v4 Chart is a component whose children only exist in the engine (none under mocks) and whose
CRD ordering cannot be checked offline.
"""
from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from peaknight.addons.releases import AddonRelease, needed_addons
from peaknight.builders.objects import Obj

# Seconds Helm may take per operation: the GPU Operator and the Prometheus stack pull several
# images and wait for their webhooks on a fresh cluster.
TIMEOUT_SECONDS = 900
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"


class ClusterAddons(pulumi.ComponentResource):
    """Every enabled add-on of one cluster, under its provider; protected where the stack is."""

    def __init__(self, cluster: str, releases: tuple[AddonRelease, ...], provider: pulumi.ProviderResource | None,
                 protect: bool,
                 opts: pulumi.ResourceOptions):
        super().__init__("peaknight:index:ClusterAddons", f"{cluster}/addons", None, opts)
        self._by_addon: dict[str, k8s.helm.v3.Release] = {}
        for release in releases:
            self._by_addon[release.addon] = _release(cluster, release, [self._by_addon[a] for a in release.needs],
                                                     pulumi.ResourceOptions(parent=self, provider=provider,
                                                                            protect=protect))
        self.register_outputs({})

    def needed_by(self, obj: Obj) -> list[k8s.helm.v3.Release]:
        """The releases `obj` waits for (addons.needed_addons); none for an add-on the cluster brings."""
        return [self._by_addon[addon] for addon in needed_addons(obj) if addon in self._by_addon]


def _release(cluster: str, release: AddonRelease, needs: list[k8s.helm.v3.Release],
             opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
    pinned = release.chart
    return k8s.helm.v3.Release(
        f"{cluster}/{release.name}",
        name=release.name,
        chart=pinned.ref,
        version=pinned.version,
        # An OCI chart is named in full by `chart`; a classic one needs its repository.
        repository_opts=None if pinned.oci else k8s.helm.v3.RepositoryOptsArgs(repo=pinned.repository),
        namespace=pinned.namespace,
        create_namespace=True,
        values=release.values,
        # A failed install or upgrade rolls back instead of leaving half a controller; atomic
        # implies waiting for readiness, which is what makes depends_on mean "CRDs served".
        atomic=True,
        cleanup_on_fail=True,
        skip_await=False,
        timeout=TIMEOUT_SECONDS,
        max_history=10,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=needs)),
    )
