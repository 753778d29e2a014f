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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import jinja2

from peaknight.edges import logs as edge_logs
from peaknight.spec import origins as origin_grammar
from peaknight.spec.stack import Edge

HTTP_PORT = 8080          # unprivileged: nginx runs as a non-root user
STATUS_PORT = 8081        # stub_status for the exporter sidecar, on loopback only
WORKER_CONNECTIONS = 16384
UPSTREAM_KEEPALIVE = 32   # idle connections to the shields / origins kept per worker
CONNECT_TIMEOUT_MS = 1000 # a dead upstream is skipped after this
EDGE_TRIES = 2            # an edge tries at most two shields for one request
ORIGIN_CA_DIR = "/etc/nginx/origin-ca"   # the operator's CA bundle Secret (edge.origin_ca_secret)
ORIGIN_CA_KEY = "ca.crt"
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"   # the nginx image's (Debian) CA bundle
SECRET_NAME_SUFFIX = "-secure-link"
SECRET_KEY = "secure-link.conf"
KEYS_PER_ZONE_MB = 8000   # nginx docs: a 1 MB keys zone holds about 8,000 keys
# The upstream's shared zone holds every server's peer state: measured with nginx -t, 64 KiB held 64
# servers and 1 MiB 1,312 (about 0.8 KiB each, after 11 KiB of its own); a fixed 64k failed at the
# edge tier of ~100 shields (ngx_slab_alloc() failed). Sized from the server count with 2 KiB each,
# which leaves room for the longest names a Service address has.
UPSTREAM_ZONE_BASE_KB = 64
UPSTREAM_ZONE_KB_PER_SERVER = 2
# Immutable media: segments, LL-HLS parts, init sections, subtitles (one list for location and log).
SEGMENT_EXTENSIONS = ("ts", "m4s", "mp4", "m4a", "aac", "vtt")
CACHE_FILL = 0.8          # max_size below the cache volume: temp files share it, and a full emptyDir evicts the pod
MIN_FREE = 0.1            # the cache manager evicts until this share of the volume is free
GUARD_FREE = 0.05         # below this share free, requests pass through the cache (cache_guard_script)
GUARD_FLAG = "cache-full" # the file the guard keeps in the state directory while the volume is that full
# How often the guard looks (a df: one statfs, and an awk). A volume filled at once breaks the
# responses being stored until the guard flags it: 0.2 s keeps that window under the players' 1 s
# retry delay (hls.js) and the 0.3 s of the shortest hold-back (three parts of 0.1 s), so a request
# breaks once at most (its retry passes through), and five checks a second cost the sidecar a few
# milliseconds of CPU.
GUARD_INTERVAL_SECONDS = 0.2

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
    origin_ca_file: str = f"{ORIGIN_CA_DIR}/{ORIGIN_CA_KEY}"   # mounted from edge.origin_ca_secret
    system_ca_file: str = SYSTEM_CA_FILE


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


@dataclass(frozen=True)
class Tier:
    """What one nginx tier forwards to: edge pods to their cluster's shields (consistent hashing),
    shields to the edge's origins (primary, then backups)."""

    role: str                                  # "edge" or "shield"
    servers: tuple[origin_grammar.Origin, ...]

    @property
    def edge(self) -> bool:
        return self.role == "edge"

    @property
    def scheme(self) -> str:
        return self.servers[0].scheme

    @property
    def tls(self) -> bool:
        return self.servers[0].tls


def edge_tier(shields: Iterable[str]) -> Tier:
    """Edge pods in front of these shield addresses (host:port, plain HTTP inside the cluster)."""
    return Tier("edge", tuple(origin_grammar.parse(s) for s in shields))


def shield_tier(edge: Edge) -> Tier:
    return Tier("shield", origin_grammar.of(edge))


@dataclass(frozen=True)
class Stage:
    """One way a tier asks upstream for an object: which upstream, how long a server may take to
    start answering, how long the request may move on to the next server, and which stale copy
    stands in when the stage fails."""

    upstream: str
    read_ms: int
    next_upstream_timeout_ms: int
    use_stale: str


STALE_ALWAYS = "updating error timeout invalid_header http_500 http_502 http_503 http_504"
# A plain playlist's first stage keeps its stale copy for origins that answered 5xx, not for slow or
# hung ones: those go on to the patient stage, which refreshes the copy (a stale playlist served on
# every timeout would never be refreshed while the origins are slower than the first stage's timeout).
STALE_ANSWERED = "updating http_500 http_502 http_503 http_504"


def _two_stage(first_ms: int, patient_ms: int, origins: int) -> tuple[int, int]:
    """(budget, lock) of a shield's fetch: the longest it may take, and the longest a fetch takes
    that a slow origin answers (what requests collapsed on it wait before they go uncached).

    The first stage ends at its first timeout (proxy_next_upstream_timeout = its read timeout), after
    a fast failure (refusal, 5xx) of the origin before at most; the patient stage tries every origin."""
    connect = CONNECT_TIMEOUT_MS
    patient = origins * (connect + patient_ms)
    if origins == 1:
        return patient, connect + patient_ms
    return first_ms + connect + first_ms + patient, connect + first_ms + connect + patient_ms


def _timings(edge: Edge, origins: int) -> dict[str, int]:
    """Timeouts of both tiers, in ms.

    A shield with a backup asks in two stages. The first (every origin marked down for three
    segments after one failure) gives an origin one part past its measured latency to start
    answering, then hands the request to the patient stage (the backups first, never marked down),
    which waits a segment past that latency: a hung primary costs a viewer about one part before
    the backup answers, and origins that are all slow still answer. Once every origin is marked
    down the first stage answers "no live upstreams" at once, and each request goes straight to the
    patient stage: a slow spell costs a fetch the first stage's timeout at most once per origin
    and three segments. Edge pods wait out the shield's whole budget before they try another
    shield, so a slow origin never turns into a second fetch elsewhere nor marks a shield down."""
    seg, part = edge.segment_seconds * 1000, edge.part_seconds * 1000
    latency = edge.origin_latency_seconds * 1000
    connect = CONNECT_TIMEOUT_MS
    # Patient: an origin that has not started answering a part or segment a whole segment past its
    # measured latency is hung: by then a viewer has stalled that long anyway.
    patient = math.ceil(max(1000, 2 * part, seg + latency))
    # First stage: with another origin to ask, one that has not started answering within a part
    # past its measured latency (1 s at least: a lost SYN or segment costs 200 ms+ of TCP
    # retransmission) is passed over.
    first = math.ceil(max(1000, part + latency))
    # LL-HLS: a reload asks for the next part (held about one part) or for the next whole segment
    # (held up to one target duration), answered after the origin's latency; held longer, the
    # origin is hung or its encoder stalled. Its first stage allows the next part's hold on top of
    # the first stage's wait; a reload asked further ahead (hls.js's CDN tune-in asks up to 1.5
    # target durations ahead) outlasts it and is held out by the patient stage, at the backup.
    hold = math.ceil(seg + 1000 + latency)
    reload_first = math.ceil(first + part)
    media_budget, media_lock = _two_stage(first, patient, origins)
    reload_budget, reload_lock = _two_stage(reload_first, hold, origins)
    return {
        "connect_timeout_ms": connect,
        "shield_media_first_ms": first if origins > 1 else patient,
        "shield_media_patient_ms": patient,
        "shield_reload_first_ms": reload_first if origins > 1 else hold,
        "shield_reload_hold_ms": hold,
        "shield_media_budget_ms": media_budget,
        "shield_reload_budget_ms": reload_budget,
        "shield_media_lock_ms": media_lock,
        "shield_reload_lock_ms": reload_lock,
        # An edge's request waits at most a shield's lock, then its whole fetch.
        "edge_media_read_ms": media_lock + media_budget + connect,
        "edge_reload_read_ms": reload_lock + reload_budget + connect,
        # nginx re-checks a cache lock every 500 ms at most (ngx_http_file_cache.c): the edge's
        # collapsed part requests re-check once, at a quarter part, and then go to their shield
        # uncached rather than wait for the next 500 ms tick. The shield keeps its lock (origin).
        "edge_media_lock_timeout_ms": math.ceil(part / 4),
    }


UNIX_DIGITS = 10          # unix times have 10 decimal digits until the year 2286


@dataclass(frozen=True)
class TokenCap:
    """nginx has no arithmetic, so `expires <= now + cap` is checked on decimal digits: the expiry's
    leading digits (all but the last `digits`) must equal now's or now's plus one. Tokens living up
    to `always` seconds are then always accepted, and none living `refused_beyond` or more is."""

    digits: int

    @property
    def always(self) -> int:
        return 10 ** self.digits

    @property
    def refused_beyond(self) -> int:
        return 2 * 10 ** self.digits

    def patterns(self) -> list[str]:
        """Regexes over "$arg_expires:$msec" (both 10 digits) that accept an expiry within the cap."""
        j, both = self.digits, rf"(?=\d{{{UNIX_DIGITS}}}:\d{{{UNIX_DIGITS}}}\.)"
        same = rf"^{both}(?P<token_prefix>\d{{{UNIX_DIGITS - j}}})\d{{{j}}}:(?P=token_prefix)\d{{{j}}}\."
        # The prefix one above now's: a digit d+1 then zeros where now has d then nines (a carry).
        above = [rf"^{both}(?P<token_prefix>\d*){d + 1}0*\d{{{j}}}:(?P=token_prefix){d}9*\d{{{j}}}\." for d in range(9)]
        return [same, *above]


def token_cap(edge: Edge) -> TokenCap:
    """The finest decimal cap that never accepts more than edge.max_token_lifetime_seconds."""
    return TokenCap(int(math.floor(math.log10(edge.max_token_lifetime_seconds / 2) + 1e-9)))


def reload_hold_ms(edge: Edge) -> int:
    """Longest a viewer's LL-HLS blocking reload is held at a shield (a pod drains that long)."""
    return _timings(edge, 1)["shield_reload_hold_ms"]


def values(edge: Edge, tier: Tier) -> dict[str, object]:
    """The numbers the template needs, each derived from the spec (milliseconds where nginx allows)."""
    origins = origin_grammar.of(edge)
    t = _timings(edge, len(origins))
    edge_role = tier.edge
    objects = len(edge.renditions) * (edge.segment_ttl_seconds / edge.part_seconds + 2 * edge.segment_ttl_seconds / edge.segment_seconds)
    volume_gib = cache_gib(edge, tier.role)
    connect = t["connect_timeout_ms"]
    tries = min(EDGE_TRIES, len(tier.servers)) if edge_role else len(tier.servers)
    # A second stage needs someone to fail over to: nginx never marks a lone server down.
    two_stage = len(tier.servers) > 1
    # Edges move to another shield only when theirs is unreachable or hung: a shield's 5xx means the
    # origins failed, and another shield would ask them again. Shields move on every failure; not
    # on a playlist's 503, which is a held reload's "not yet".
    retry = "error timeout" if edge_role else "error timeout invalid_header http_500 http_502 http_504"
    patient: dict[str, Stage | None] = {"media": None, "reload": None}
    if edge_role:
        media_read, reload_read = t["edge_media_read_ms"], t["edge_reload_read_ms"]
        media = plain = Stage("upstream_tier", media_read, tries * (connect + media_read), STALE_ALWAYS)
        reload = Stage("upstream_tier", reload_read, tries * (connect + reload_read), STALE_ALWAYS)
        # Every shield marked down: they are asked all the same, with the same timeouts.
        if two_stage:
            patient = {"media": replace(media, upstream="patient_tier"), "reload": replace(reload, upstream="patient_tier")}
        media_lock = (t["edge_media_lock_timeout_ms"], media_read)
        # A plain playlist is answered at once: a fill slower than the whole failover budget is stuck.
        plain_lock = (tries * (connect + media_read),) * 2
        # A collapsed reload waits for the one fill on its way: another copy upstream before then
        # would be a wasted blocking request.
        reload_lock = (reload_read, reload_read)
    else:
        first, patient_read = t["shield_media_first_ms"], t["shield_media_patient_ms"]
        reload_first, hold = t["shield_reload_first_ms"], t["shield_reload_hold_ms"]
        # A fast failure moves on to the next origin; the first timeout ends the first stage.
        media = Stage("upstream_tier", first, first if two_stage else connect + first, STALE_ALWAYS)
        plain = replace(media, use_stale=STALE_ANSWERED) if two_stage else media
        reload = Stage("reload_tier" if two_stage else "upstream_tier", reload_first,
                       reload_first if two_stage else connect + reload_first, STALE_ALWAYS)
        if two_stage:
            patient = {"media": Stage("patient_tier", patient_read, tries * (connect + patient_read), STALE_ALWAYS),
                       "reload": Stage("patient_tier", hold, tries * (connect + hold), STALE_ALWAYS)}
        # Waiters wait for the one fetch on its way; its lock lasts the holder's whole bounded fill.
        media_lock = plain_lock = (t["shield_media_lock_ms"], t["shield_media_budget_ms"])
        reload_lock = (t["shield_reload_lock_ms"], t["shield_reload_budget_ms"])
    return {
        "workers": edge.pod_cpu,
        "worker_connections": WORKER_CONNECTIONS,
        "upstream_keepalive": UPSTREAM_KEEPALIVE,
        "connect_timeout_ms": connect,
        "tries": tries,
        "two_stage": two_stage,
        # What sends a request to the patient stage: nginx's own 502 ("no live upstreams", or
        # every server tried refused or broke) at both tiers; at a shield also its own 504 (the
        # first stage timed out). A 5xx an upstream sent is passed on (proxy_intercept_errors off).
        "patient_on": "502" if edge_role else "502 504",
        "patient_why": "every shield failed, or is marked down" if edge_role else "this stage timed out, or found no origin up",
        "media": media,
        "media_patient": patient["media"],
        "plain": plain,
        "plain_patient": patient["media"],
        "reload": reload,
        "reload_patient": patient["reload"],
        "media_next_upstream": retry if edge_role else retry + " http_503",
        "reload_next_upstream": retry,
        "media_lock_timeout_ms": media_lock[0],
        "media_lock_age_ms": media_lock[1],
        "plain_lock_timeout_ms": plain_lock[0],
        "plain_lock_age_ms": plain_lock[1],
        "reload_lock_timeout_ms": reload_lock[0],
        "reload_lock_age_ms": reload_lock[1],
        # A failed upstream is skipped for three segments, then probed again by one request (nginx
        # counts whole seconds): a hung primary costs one probe per 12 s, not one per segment.
        "fail_timeout": math.ceil(3 * edge.segment_seconds),
        "playlist_ttl": edge.playlist_ttl_seconds,
        "blocking_playlist_ttl": max(edge.playlist_ttl_seconds, math.ceil(edge.segment_seconds)),
        "segment_ttl": edge.segment_ttl_seconds,
        "negative_ttl": edge.negative_ttl_seconds,
        "keys_zone_mb": max(10, math.ceil(objects / KEYS_PER_ZONE_MB)),
        "upstream_zone_kb": UPSTREAM_ZONE_BASE_KB + UPSTREAM_ZONE_KB_PER_SERVER * len(tier.servers),
        "cache_max_mb": math.floor(volume_gib * 1024 * CACHE_FILL),
        "cache_min_free_mb": math.ceil(volume_gib * 1024 * MIN_FREE),
        "origin_host": edge.origin_server_name or origins[0].host,
        "tls_name": edge.origin_server_name or origins[0].host,
        "ca_from_secret": edge.origin_ca_secret is not None,
    }


def cache_guard_script(volume_gib: int, state_dir: str = POD.state_dir) -> str:
    """The cache guard sidecar's loop (sh, df, awk and sleep of the nginx image, Debian's: its sleep
    takes fractions): while the volume's free space is under GUARD_FREE, a flag file tells nginx to
    pass every request through the cache. A cache write that meets a full disk breaks the
    response; a pass-through does not."""
    threshold_kb = math.ceil(volume_gib * 1024 * 1024 * GUARD_FREE)
    return (f"while :; do if [ \"$(df -Pk {state_dir} | awk 'NR==2 {{print $4}}')\" -lt {threshold_kb} ]; "
            f"then touch {state_dir}/{GUARD_FLAG}; else rm -f {state_dir}/{GUARD_FLAG}; fi; sleep {GUARD_INTERVAL_SECONDS}; done")


def cache_gib(edge: Edge, role: str) -> int:
    """The tier's cache volume: edge pods and shields size theirs apart."""
    return edge.cache_gib if role == "edge" else edge.shield_cache_gib


def render(edge: Edge, tier: Tier, layout: Layout = POD) -> str:
    """nginx.conf for one tier of one edge; the same input gives the same bytes (the pods roll on
    its checksum)."""
    return _TEMPLATES.get_template("nginx.conf.j2").render(edge=edge, tier=tier, layout=layout, v=values(edge, tier),
                                                           logs=edge_logs, segment_ext="|".join(SEGMENT_EXTENSIONS),
                                                           token_cap=token_cap(edge), guard_flag=GUARD_FLAG)


def checksum(conf: str) -> str:
    return hashlib.sha256(conf.encode()).hexdigest()
