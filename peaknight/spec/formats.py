"""What each string of a stack file must look like, judged by the place it ends up.

Every string a stack file holds reaches an object name, a label value, a container's command
line, nginx.conf or PromQL. Each is checked here, at parse time, against the grammar of its
destination, so nothing later has to escape what it could not have known was hostile. The
grammars are the destinations' own: Kubernetes' name validation (apimachinery
validation.IsDNS1123Label/IsDNS1035Label/IsDNS1123Subdomain/IsValidLabelValue), the OCI
distribution reference grammar (distribution/reference regexp.go), RFC 1123 host names, CIDRs
as the API server parses them, IANA zone names from the tz database the kit runs with.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import re
import zoneinfo
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainValidator

# Object names carry suffixes (`-metrics`, `-weights`, `-broadcast-critical`, ...): a name of
# the stack is kept to 40 characters so every derived name stays inside the 63 of a DNS label.
NAME_MAX = 40
_DNS1123_LABEL = re.compile(rf"[a-z0-9](?:[-a-z0-9]{{0,{NAME_MAX - 2}}}[a-z0-9])?")
_DNS1035_LABEL = re.compile(rf"[a-z](?:[-a-z0-9]{{0,{NAME_MAX - 2}}}[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
# distribution/reference: domain, path components, tag, digest; ASCII only (its \w is Go's, [A-Za-z0-9_]:
# no registry takes a Unicode letter or digit).
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_IMAGE = re.compile(rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
                    r"(?::[\w][\w.-]{0,127})?"
                    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?", re.ASCII)
IMAGE_NAME_MAX = 255
# A relative path of plain segments, none starting with '.' (so never '.' or '..'): a Hugging Face
# repo id (org/name) or a path under the weights volume, and the render directory inside the project.
_RELATIVE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?")
# IAM role names: alphanumerics and +=,.@_- up to 64 (AWS IAM CreateRole).
_IAM_ROLE = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
# The EC2 instance metadata service's IPv6 address (not link-local by prefix, so named).
_EC2_METADATA_V6 = ipaddress.ip_address("fd00:ec2::254")
_URL = re.compile(r"(https?)://([^/:?#\s]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?(/[A-Za-z0-9._~/-]*)?")
# The Git repository a GitOps root syncs from, as both Argo CD and Flux's GitRepository take it:
# https, or ssh:// with an optional user (Flux refuses the scp-like `git@host:org/repo`).
_GIT_URL = re.compile(r"(https|ssh)://(?:([A-Za-z0-9._-]+)@)?([^/:?#\s@\[\]]+)(?::([0-9]{1,5}))?"
                      r"(/[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*/?)")
# A git ref name (git check-ref-format) narrowed to what a branch, tag or commit is written with:
# '/'-separated components of letters, digits, '.', '_', '-', none starting with '.' or '-' or
# ending with '.lock', no '..' anywhere, not ending with '.'.
_GIT_REF_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
GIT_REF_MAX = 255
# The broadcast night: years a clock of the kit reasons about (a cron line carries no year, and
# the zone database's offsets are only meaningful here); anything else is a typo.
YEARS = (2000, 2100)


def _fullmatch(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(what)
        return value
    return AfterValidator(check)


def _dns1123_label(value: str) -> str:
    if not _DNS1123_LABEL.fullmatch(value):
        raise ValueError(f"a lower-case DNS label of at most {NAME_MAX} characters (a-z, 0-9, '-')")
    return value


def _service_name(value: str) -> str:
    if not _DNS1035_LABEL.fullmatch(value):
        raise ValueError(f"a lower-case DNS-1035 label of at most {NAME_MAX} characters starting with a letter "
                         "(a-z, 0-9, '-'): it names a Service")
    return value


def _subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise ValueError("a lower-case DNS subdomain (a-z, 0-9, '-', '.'; at most 253 characters): it names an object")
    return value


def _label_value(value: str) -> str:
    if not value or not _LABEL_VALUE.fullmatch(value):
        raise ValueError("a Kubernetes label value (at most 63 of A-Z, a-z, 0-9, '-', '_', '.', alphanumeric at "
                         "both ends)")
    return value


def _storage_classes(value: Any) -> str | dict[str, str]:
    """One StorageClass for every zone, or one per zone (zone -> class): one message either way,
    not one per shape tried."""
    if isinstance(value, str):
        return _subdomain(value)
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return {_label_value(k): _subdomain(v) for k, v in value.items()}
    raise ValueError("a StorageClass name, or a map of each zone to a StorageClass name")


def image_reference(value: str) -> str:
    """An OCI image reference, `[registry/]path[:tag][@digest]`, as the kubelet parses it."""
    ref = value.split("@", 1)[0]
    colon = ref.rfind(":")
    name = ref[:colon] if colon > ref.rfind("/") else ref
    if not _IMAGE.fullmatch(value) or len(name) > IMAGE_NAME_MAX:
        raise ValueError("an image reference ([registry/]repository[:tag][@sha256:<digest>])")
    return value


def _weights(value: str) -> str:
    if len(value) > 256 or not _RELATIVE_PATH.fullmatch(value):
        raise ValueError("a model id (org/name) or a relative path under the weights volume: letters, digits, "
                         "'.', '_', '-' and '/', no '..'")
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ValueError("a CIDR such as 203.0.113.0/24 (network address, prefix length)") from None
    if "/" not in value:
        raise ValueError("a CIDR such as 203.0.113.0/24 (network address, prefix length)")
    return value


def _url(value: str) -> str:
    match = _URL.fullmatch(value)
    if not match or (match.group(3) and not 1 <= int(match.group(3)) <= 65535):
        raise ValueError("an http(s) URL: scheme, host, optional port and path (no query, spaces or quotes)")
    host = match.group(2)
    if not host.startswith("[") and not all(_HOST_LABEL.fullmatch(p) for p in host.split(".")):
        raise ValueError("an http(s) URL: scheme, host, optional port and path (no query, spaces or quotes)")
    return value


def _public_https_url(value: str) -> str:
    """Where the gateway fetches a JWT issuer's keys: https only, since a key set fetched in clear
    can be swapped on the way; and never a link-local address (the cloud metadata service at
    169.254.169.254 or fd00:ec2::254 would answer the gateway with the node's credentials)."""
    _url(value)
    match = _URL.fullmatch(value)
    assert match is not None
    if match.group(1) != "https":
        raise ValueError("an https URL (a key set fetched over http can be swapped on the way)")
    try:
        address = ipaddress.ip_address(match.group(2).strip("[]"))
    except ValueError:
        return value
    if address.is_link_local or address.is_loopback or address.is_unspecified or address == _EC2_METADATA_V6:
        raise ValueError("an https URL of a public key server, not a link-local, loopback or metadata address")
    return value


@cache
def time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _time_zone(value: str) -> str:
    if value not in time_zones():
        raise ValueError("an IANA time zone such as Asia/Shanghai")
    return value


def _no_epoch(value: Any) -> Any:
    """A time is written as a date and time; a bare number would be taken as a UTC epoch."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("a local date and time such as 2026-02-16T20:00:00, not a number")
    return value


def _local(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        raise ValueError("a local time without offset (event.timeZone says where)")
    if not YEARS[0] <= value.year <= YEARS[1]:
        raise ValueError(f"a time in the years {YEARS[0]}-{YEARS[1]}")
    return value


def _path(value: str) -> str:
    """A file or directory the kit reads or writes (never a command line): any path a file system holds."""
    if not value or "\x00" in value or len(value) > 1024 or any(c in value for c in "\n\r"):
        raise ValueError("a path (at most 1,024 characters, no NUL or line break)")
    return value


def _relative_dir(value: str) -> str:
    """`pulumi up` writes every object's YAML under it (the providers' renderYamlToDirectory): a
    path inside the project, never /etc/cron.d or ../../root/.ssh."""
    if len(value) > 1024 or not _RELATIVE_PATH.fullmatch(value):
        raise ValueError("a relative directory inside the project: letters, digits, '.', '_', '-' and '/', no "
                         "leading '/' and no segment starting with '.'")
    return value


def _git_url(value: str) -> str:
    """Where each cluster's root reads its manifests (the Application's repoURL, the GitRepository's
    url): a controller fetches it, so only its two URL grammars, no query, credentials or spaces."""
    match = _GIT_URL.fullmatch(value)
    expected = ("a Git repository URL: https://host[:port]/path or ssh://[user@]host[:port]/path (no "
                "query, password or spaces; not the scp-like user@host:path, which Flux refuses)")
    if (not match or (match.group(1) == "https" and match.group(2))
            or (match.group(4) and not 1 <= int(match.group(4)) <= 65535)
            or not all(_HOST_LABEL.fullmatch(p) for p in match.group(3).split("."))):
        raise ValueError(expected)
    return value


def _git_revision(value: str) -> str:
    """The root's revision: Argo CD's targetRevision, Flux's branch, tag ref or commit."""
    parts = value.split("/")
    if (len(value) > GIT_REF_MAX or ".." in value or value.endswith(".")
            or not all(_GIT_REF_COMPONENT.fullmatch(p) and not p.endswith(".lock") for p in parts)):
        raise ValueError("a branch, tag or commit as a git ref name (git check-ref-format): '/'-separated parts of "
                         "letters, digits, '.', '_', '-', none starting with '.' or '-', no '..'")
    return value


def _repository_path(value: str) -> str:
    """Where the render directory sits in the repository: the roots' paths are under it."""
    if len(value) > 1024 or not _RELATIVE_PATH.fullmatch(value):
        raise ValueError("a relative directory inside the repository: letters, digits, '.', '_', '-' and '/', no "
                         "leading '/' and no segment starting with '.'")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns1123_label)]
ServiceName = Annotated[str, AfterValidator(_service_name)]
Subdomain = Annotated[str, AfterValidator(_subdomain)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
Image = Annotated[str, AfterValidator(image_reference)]
Weights = Annotated[str, AfterValidator(_weights)]
Cidr = Annotated[str, AfterValidator(_cidr)]
HttpUrl = Annotated[str, AfterValidator(_url)]
PublicHttpsUrl = Annotated[str, AfterValidator(_public_https_url)]
# A JWT audience (RFC 7519 aud): printable ASCII without quotes or spaces, as Envoy compares it verbatim.
Audience = Annotated[str, _fullmatch(re.compile(r"[!#-&(-~]{1,253}"), "an audience: 1-253 printable ASCII "
                                                                        "characters, no spaces or quotes")]
http_url = _url  # the same check, for a grammar that admits http(s) URLs among others
TimeZone = Annotated[str, AfterValidator(_time_zone)]
# A git commit as Hugging Face pins a revision: 40 lower-case hex digits, nothing around them.
# A URL path a health checker requests: no query, no escapes, nothing a checker would re-encode.
UrlPath = Annotated[str, _fullmatch(re.compile(r"/[A-Za-z0-9._~/-]{0,254}"), "a URL path: '/' then at most 254 "
                                    "of A-Z, a-z, 0-9, '.', '_', '~', '/', '-'")]
# A Route 53 hosted zone ID (Z and upper-case letters and digits) or a TrafficRoute zone ID (digits).
DnsZoneId = Annotated[str, _fullmatch(re.compile(r"Z[A-Z0-9]{1,31}|[0-9]{1,19}"), "a hosted zone ID: a Route 53 "
                                      "ID (Z then at most 31 of A-Z, 0-9) or a TrafficRoute zone ID (digits)")]
Commit = Annotated[str, _fullmatch(re.compile(r"[0-9a-f]{40}"), "a commit: 40 lower-case hex digits")]
IamRole = Annotated[str, _fullmatch(_IAM_ROLE, "an IAM role name (at most 64 of letters, digits, +=,.@_-)")]
LocalTime = Annotated[dt.datetime, BeforeValidator(_no_epoch), AfterValidator(_local)]
Directory = Annotated[str, AfterValidator(_relative_dir)]
FilePath = Annotated[str, AfterValidator(_path)]
GitUrl = Annotated[str, AfterValidator(_git_url)]
GitRevision = Annotated[str, AfterValidator(_git_revision)]
RepositoryPath = Annotated[str, AfterValidator(_repository_path)]
StorageClasses = Annotated[str | dict[str, str], PlainValidator(_storage_classes, json_schema_input_type=str | dict[str, str])]
