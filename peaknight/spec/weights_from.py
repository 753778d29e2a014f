"""Where a model's weights are staged from (`models[].weightsFrom`), chosen by `kind`.

Every value here reaches the staging Job (builders/warmup.py): an environment variable, or one
element of a container's argument list, never a shell string. So each is checked at parse time
against the grammar of what reads it: Secret names are object names, endpoints http(s) URLs
(formats.HttpUrl), an object-storage location `s3://<bucket>/<prefix>` with S3's bucket naming rules
and a prefix of plain path segments.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict, Discriminator, Field, Tag
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

from peaknight.spec import formats

_STRICT = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_alias=True, validate_by_name=True,
                     frozen=True)
# S3 general purpose bucket names (Amazon S3 User Guide, "Bucket naming rules"): 3-63 of lower-case
# letters, digits, '.' and '-', beginning and ending with a letter or digit; then a prefix of plain
# path segments (the weights grammar's characters, no '..'), so `aws s3 sync` reads one prefix.
_S3_URI = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[A-Za-z0-9_][A-Za-z0-9._-]*)*/?")
# The Secret keys the staging Job reads: huggingface_hub's, the AWS CLI's and modelscope's own
# variable names (modelscope 1.31.0 hub/api.py HubApi.login: MODELSCOPE_API_TOKEN).
HF_TOKEN_KEY = "HF_TOKEN"
AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
MODELSCOPE_TOKEN_KEY = "MODELSCOPE_API_TOKEN"
# modelscope's hub, mainland site (hub/constants.py DEFAULT_MODELSCOPE_DOMAIN). Without MODELSCOPE_DOMAIN
# it tries this site and then the international one (hub/api.py get_endpoint_for_read): the Job
# always sets it, so a China cluster never reaches abroad.
MODELSCOPE_DOMAIN = "www.modelscope.cn"
# A ModelScope revision: a tag or branch name, or a commit id (one git ref component).
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _s3_uri(value: str) -> str:
    if len(value) > 1024 or not _S3_URI.fullmatch(value) or ".." in value.split("/"):
        raise ValueError("s3://<bucket>/<prefix>: a bucket name (3-63 of a-z, 0-9, '.', '-') and path segments of "
                         "letters, digits, '.', '_', '-' (no '..')")
    return value


S3Uri = Annotated[str, AfterValidator(_s3_uri)]


@dataclass(config=_STRICT, kw_only=True)
class HubSource:
    """The Hugging Face hub (huggingface_hub's snapshot_download in the model's image), or a hub of
    one's own: `endpoint` becomes HF_ENDPOINT; `tokenSecret` names a Secret the operator creates in
    the weights namespace whose key HF_TOKEN becomes the Job's HF_TOKEN (a gated model: Llama)."""

    kind: Literal["hub"] = "hub"
    endpoint: Optional[formats.HttpUrl] = Field(default=None, description="HF_ENDPOINT: a hub mirror or one's own "
                                                "hub (default huggingface.co)")
    token_secret: Optional[formats.DnsLabel] = Field(default=None, description="Secret with key HF_TOKEN (gated "
                                                     "models)")

    @property
    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint,) if self.endpoint else ()


@dataclass(config=_STRICT, kw_only=True)
class S3Source:
    """Object storage: `aws s3 sync <uri> <source volume>` in `image` (the AWS CLI, pinned like every
    image), against S3 or an S3-compatible store at `endpointUrl` (`--endpoint-url`). Credentials:
    `credentialsSecret`'s keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else the pod's own AWS
    identity (EKS Pod Identity or IRSA on the warm gate's ServiceAccount)."""

    kind: Literal["s3"]
    uri: S3Uri = Field(description="s3://<bucket>/<prefix> holding the weights at the model's revision")
    image: formats.Image = Field(description="the AWS CLI image (e.g. amazon/aws-cli), by digest where "
                                 "policy.requireImageDigests")
    endpoint_url: Optional[formats.HttpUrl] = Field(default=None, description="an S3-compatible store's URL "
                                                    "(aws --endpoint-url); default AWS S3")
    region: Optional[formats.LabelValue] = Field(default=None, description="AWS_DEFAULT_REGION (default the "
                                                 "cluster's region)")
    credentials_secret: Optional[formats.DnsLabel] = Field(default=None, description="Secret with keys "
                                                           "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY")

    @property
    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint_url,) if self.endpoint_url else ()


def _revision(value: str) -> str:
    if not _REVISION.fullmatch(value) or ".." in value:
        raise ValueError("a ModelScope revision: a tag, branch or commit id (letters, digits, '.', '_', '-')")
    return value


@dataclass(config=_STRICT, kw_only=True)
class ModelScopeSource:
    """ModelScope (modelscope.cn), the hub a China region reaches: modelscope's snapshot_download
    in `image` (an image with the modelscope package: the engines' images do not carry it), at
    `revision`, from `domain` (MODELSCOPE_DOMAIN, default www.modelscope.cn, so it never falls back
    to the international site). `tokenSecret` names a Secret whose key MODELSCOPE_API_TOKEN logs the
    Job in (a private model)."""

    kind: Literal["modelscope"]
    image: formats.Image = Field(description="an image with the modelscope package, by digest where "
                                 "policy.requireImageDigests")
    revision: Annotated[str, AfterValidator(_revision)] = Field(description="the ModelScope revision to stage "
                                                                 "(a tag or commit: the pin)")
    model_id: Optional[formats.Weights] = Field(default=None, description="the model's id on ModelScope (default "
                                                "models[].weights)")
    domain: Optional[formats.Subdomain] = Field(default=None, description=f"MODELSCOPE_DOMAIN: the hub's host "
                                                f"(default {MODELSCOPE_DOMAIN}), e.g. a ModelScope mirror")
    token_secret: Optional[formats.DnsLabel] = Field(default=None, description="Secret with key "
                                                     "MODELSCOPE_API_TOKEN (private models)")

    @property
    def host(self) -> str:
        return self.domain or MODELSCOPE_DOMAIN

    @property
    def endpoints(self) -> tuple[str, ...]:
        return (f"https://{self.host}",)


WEIGHTS_FROM: dict[str, type] = {"hub": HubSource, "s3": S3Source, "modelscope": ModelScopeSource}


def _kind(value: Any) -> Any:
    """A mapping without `kind` is the hub, where weights came from before sources had kinds."""
    if isinstance(value, dict):
        return value.get("kind", "hub")
    return getattr(value, "kind", None)


WeightsFrom = Annotated[Union[Annotated[HubSource, Tag("hub")], Annotated[S3Source, Tag("s3")],
                              Annotated[ModelScopeSource, Tag("modelscope")]],
                        Discriminator(_kind)]


def port(url: str) -> int:
    """The TCP port an endpoint URL is reached on: the one it names, else its scheme's."""
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)
