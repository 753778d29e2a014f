"""The image registry mirror (`peaknight:registryMirror`): where every image the kit renders is pulled from.

A China region reaches docker.io, ghcr.io, quay.io and registry.k8s.io unreliably, so a VKE stack
pulls from its own registry (a Volcano Engine CR instance, under cr.volces.com). The rule is
one, so the operator can copy the images into the mirror by the same rule (README, docs/operations.md):

    [<registry>/]<path>[:<tag>][@<digest>]  ->  <host>[/<namespace>]/<path>[:<tag>][@<digest>]

`<registry>` is the reference's first component when it holds a '.' or ':' or is `localhost`
(distribution/reference's rule, as the kubelet reads it), else docker.io, whose one-component paths
are `library/<name>`. The tag and digest are kept, so a digest pin still pins. An image already
on `host` is left as it is. Every value is checked against the reference grammar it ends up in.
"""
from __future__ import annotations

import re
from typing import Annotated, Optional

from pydantic import AfterValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

from peaknight.spec import formats

_STRICT = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_alias=True, validate_by_name=True,
                     frozen=True)
DOCKER_HUB = "docker.io"
# distribution/reference: a domain (dot-separated labels, optional port) and path components.
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
                   r"(?::[0-9]{1,5})?")
_PATH = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")


def _host(value: str) -> str:
    if len(value) > 253 or not _HOST.fullmatch(value) or ("." not in value and ":" not in value):
        raise ValueError("a registry host (lower-case DNS labels with a '.', optional :port), e.g. "
                         "gala-cn-beijing.cr.volces.com")
    return value


def _charts(value: str) -> str:
    """An OCI registry path (`oci://<host>[/<path>]`, Helm's OCI support) or an https chart repository."""
    if value.startswith("oci://"):
        host, _, path = value[len("oci://"):].partition("/")
        if _HOST.fullmatch(host) and (not path or _PATH.fullmatch(path)) and len(value) <= 255:
            return value
    elif value.startswith("https://"):
        return formats.http_url(value)
    raise ValueError("oci://<registry host>[/<path>] or an https:// Helm chart repository")


def _namespace(value: str) -> str:
    if len(value) > 200 or not _PATH.fullmatch(value):
        raise ValueError("a repository path prefix: '/'-separated components of a-z, 0-9 and single '.', '_', "
                         "'__' or '-' between them")
    return value


@dataclass(config=_STRICT, kw_only=True)
class RegistryMirror:
    """One registry every rendered image is pulled from (the module docstring gives the rule)."""

    host: Annotated[str, AfterValidator(_host)] = Field(description="the mirror registry's host[:port] "
                                                        "(Volcano Engine CR: the instance's domain under cr.volces.com)")
    namespace: Optional[Annotated[str, AfterValidator(_namespace)]] = Field(
        default=None, description="a path prefix under the host (a CR namespace), before each image's own path")
    charts: Optional[Annotated[str, AfterValidator(_charts)]] = Field(
        default=None, description="where every add-on chart is pulled from at its pinned name and version: "
        "oci://<host>/<path> or an https Helm repository (default each chart's own repository)")

    @property
    def prefix(self) -> str:
        """What every mirrored image's path follows: the host and the namespace."""
        return f"{self.host}/{self.namespace}" if self.namespace else self.host

    def image(self, reference: str) -> str:
        """`reference` as pulled from the mirror."""
        registry, path, rest = split(reference)
        if registry == self.host:
            return reference
        return f"{self.prefix}/{path}{rest}"


def split(reference: str) -> tuple[str, str, str]:
    """(registry, path, ':tag@digest' suffix) of an image reference, docker.io's defaults filled in."""
    name, at, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    name, tag = (name[:colon], name[colon:]) if colon > slash else (name, "")
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, name
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return registry, path, f"{tag}{at}{digest}"
