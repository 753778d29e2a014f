"""Per-request edge metrics: each viewer request's status, cache status, bytes and time, counted
by a prometheus-nginxlog-exporter sidecar (github.com/martin-helmich/prometheus-nginxlog-exporter).

stub_status, which the other sidecar reads, has neither status codes nor cache status, and the hit
ratio, origin egress and 5xx rate need both. nginx sends one syslog line per request over loopback
UDP (no log file in the pod to rotate or to fill the cache volume); the exporter parses it with the
same FORMAT nginx writes it in, so the two cannot drift. UDP drops lines rather than slowing nginx
when the exporter falls behind: the counts may run low, their ratios stay fair.
"""
from __future__ import annotations

from typing import Any

import yaml

from peaknight.spec.stack import Edge

SYSLOG_PORT = 5531                 # the exporter's syslog listener, on loopback only
EXPORTER_PORT = 4040               # the exporter's /metrics (its default port)
SYSLOG_TAG = "peaknight_edge"      # nginx's syslog tag; the exporter reads only lines carrying it
CONFIG_FILE = "log-exporter.yaml"  # the exporter picks YAML over HCL by this extension
NAMESPACE = "edge"                 # the exporter's metric prefix
# nginx variables, space-separated (none holds a space). edge_kind / edge_rendition are maps in
# nginx.conf; rendition last, where a stray value cannot shift the fields after it.
FIELDS = ("status", "upstream_cache_status", "body_bytes_sent", "request_time", "edge_kind", "edge_rendition")
FORMAT = " ".join(f"${f}" for f in FIELDS)
HITS = ("HIT", "STALE", "UPDATING", "REVALIDATED")    # answered from the cache
FILLS = ("MISS", "EXPIRED", "BYPASS")                  # fetched from an origin while the viewer waited
NO_CACHE = "-"                                         # answered before the cache (403, 404)
KINDS = ("playlist", "segment")
# Counters the exporter derives from FORMAT: requests, and the $body_bytes_sent they carried.
RESPONSES = f"{NAMESPACE}_http_response_count_total"
RESPONSE_BYTES = f"{NAMESPACE}_http_response_size_bytes"
# $request_time buckets: a segment fetch within a part, a segment, a held LL-HLS reload (3 x 4 s).
TIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16)


def _relabels(edge: Edge) -> list[dict[str, Any]]:
    """Log fields as labels, each bounded by a whitelist (anything else becomes "other"), so a
    crafted URL cannot add series; `status` (and an empty `method`) the exporter adds itself."""
    return [
        {"target_label": "cache", "from": "upstream_cache_status", "whitelist": [*HITS, *FILLS, NO_CACHE]},
        {"target_label": "kind", "from": "edge_kind", "whitelist": list(KINDS)},
        {"target_label": "rendition", "from": "edge_rendition", "whitelist": [r.name for r in edge.renditions]},
    ]


def exporter_config(edge: Edge) -> str:
    """The exporter's config file: a pure function of the edge (the pods roll on its checksum)."""
    namespace = {
        "name": NAMESPACE,
        "format": FORMAT,
        "source": {"syslog": {"listen_address": f"udp://127.0.0.1:{SYSLOG_PORT}", "format": "rfc3164",
                              "tags": [SYSLOG_TAG]}},
        "relabel_configs": _relabels(edge),
        "histogram_buckets": list(TIME_BUCKETS),
    }
    config = {"listen": {"port": EXPORTER_PORT, "address": "0.0.0.0", "metrics_endpoint": "/metrics"},
              "namespaces": [namespace]}
    return yaml.safe_dump(config, sort_keys=False, width=1000)
