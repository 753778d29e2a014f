"""The live edge's nginx.conf: a pure function of the Edge spec (and where the pod puts things).

Timings derive from the stream's segment duration, so a stack that changes its segments gets a
config that still collapses requests and still outlasts LL-HLS blocking reloads. The signed-URL
secret never appears here: the config includes a snippet mounted from a Kubernetes Secret the
operator creates (SECRET_NAME_SUFFIX / SECRET_KEY), because rendered manifests are plain text.
"""
from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import jinja2

from peaknight.edges import logs as edge_logs
from peaknight.spec.stack import Edge

HTTP_PORT = 8080          # unprivileged: nginx runs as a non-root user
STATUS_PORT = 8081        # stub_status for the exporter sidecar, on loopback only
WORKER_CONNECTIONS = 16384
ORIGIN_KEEPALIVE = 32     # idle connections to the origins kept per worker
SECRET_NAME_SUFFIX = "-secure-link"
SECRET_KEY = "secure-link.conf"
KEYS_PER_ZONE_MB = 8000   # nginx docs: a 1 MB keys zone holds about 8,000 keys
# Immutable media: segments, LL-HLS parts, init sections, subtitles (one list for location and log).
SEGMENT_EXTENSIONS = ("ts", "m4s", "mp4", "m4a", "aac", "vtt")
CACHE_FILL = 0.8          # max_size below the cache volume: temp files share it, and a full emptyDir evicts the pod

_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                keep_trailing_newline=True)


def quoted(value: str) -> str:
    """A string as one quoted nginx token: a stack string can never end a directive or open a
    block, whatever it holds (config validation already refuses anything but host:port)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_TEMPLATES.filters["quoted"] = quoted


@dataclass(frozen=True)
class Layout:
    """Where the config puts things on its host: the pod's mounts by default, a tmp dir in tests."""

    state_dir: str = "/var/cache/nginx"   # the one writable volume: cache, temp files, pid
    secret_file: str = f"/etc/nginx/secret/{SECRET_KEY}"
    access_log: str = "/dev/stdout"
    http_port: int = HTTP_PORT
    status_port: int = STATUS_PORT
    syslog_port: int = edge_logs.SYSLOG_PORT   # where the per-request lines go (edge_logs)


POD = Layout()


def secret_name(edge: Edge) -> str:
    """The Secret the operator creates; key SECRET_KEY holds `set $secure_link_secret "...";`."""
    return f"{edge.name}{SECRET_NAME_SUFFIX}"


def secret_snippet(secret: str) -> str:
    """The content of the Secret's key, for a given secret (quotes and backslashes not allowed)."""
    if any(c in secret for c in '"\\$;\n'):
        raise ValueError("the secure-link secret must not contain quotes, backslashes, '$', ';' or newlines")
    return f'set $secure_link_secret "{secret}";\n'


def sign(scope: str, secret: str, expires: int) -> str:
    """The query a viewer's URLs carry: md5 over expiry, stream scope (/<app>/<stream>/) and
    secret, as nginx's secure_link_md5 in the template computes it. One token covers every
    playlist, rendition and segment of the stream, so players can append it to relative URIs."""
    digest = hashlib.md5(f"{expires}{scope} {secret}".encode()).digest()
    token = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return f"md5={token}&expires={expires}"


def values(edge: Edge) -> dict[str, object]:
    """The numbers the template needs, each derived from the spec (milliseconds where nginx allows)."""
    seg = edge.segment_seconds
    # LL-HLS: a server holds a blocking playlist reload up to 3 target durations, then answers 503.
    hold = 3 * seg
    # One more target duration, so the edge never cuts a legitimately held reload.
    read_timeout = hold + seg
    objects = len(edge.renditions) * (edge.segment_ttl_seconds / edge.part_seconds + 2 * edge.segment_ttl_seconds / seg)
    return {
        "workers": edge.pod_cpu,
        "worker_connections": WORKER_CONNECTIONS,
        "origins": edge.origins,
        "origin_keepalive": ORIGIN_KEEPALIVE,
        "read_timeout_ms": math.ceil(read_timeout * 1000),
        # A collapsed playlist fill may hold as long as the reload does: another copy to the origin
        # before then would be a wasted blocking request.
        "playlist_lock_ms": math.ceil(read_timeout * 1000),
        # A segment fill slower than one segment is already a stall: let one more request try then.
        "segment_lock_age_ms": math.ceil(seg * 1000),
        "segment_lock_timeout_ms": math.ceil(2 * seg * 1000),
        # A failed primary is skipped for one segment, then tried again (nginx counts whole seconds).
        "fail_timeout": math.ceil(seg),
        "playlist_ttl": edge.playlist_ttl_seconds,
        "segment_ttl": edge.segment_ttl_seconds,
        "negative_ttl": edge.negative_ttl_seconds,
        "keys_zone_mb": max(10, math.ceil(objects / KEYS_PER_ZONE_MB)),
        "cache_max_mb": math.floor(edge.cache_gib * 1024 * CACHE_FILL),
    }


def render(edge: Edge, layout: Layout = POD) -> str:
    """nginx.conf for one edge; the same input gives the same bytes (the pods roll on its checksum)."""
    return _TEMPLATES.get_template("nginx.conf.j2").render(edge=edge, layout=layout, v=values(edge), logs=edge_logs,
                                                           segment_ext="|".join(SEGMENT_EXTENSIONS))


def checksum(conf: str) -> str:
    return hashlib.sha256(conf.encode()).hexdigest()
