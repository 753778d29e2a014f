"""The rendered nginx.conf: `nginx -t` for every edge of both stacks, and what the issue requires of it."""
from __future__ import annotations

import dataclasses
import math
import random
import re

import pytest
import yaml

import nights
from peaknight.edges import logs as edge_logs
from peaknight.edges import nginx as edge_nginx
from peaknight.spec import origins as origin_grammar
from conftest import require_tool
from edge_harness import SECRET, NginxServer, workdir


def edges_of_both_stacks() -> list[tuple[str, object]]:
    return [(stack, edge) for stack in ("broadcast", "rehearsal") for edge in nights.spec(stack).edges]


def _tiers(edge):
    """Both tiers with local addresses: nginx resolves upstream names when it loads the config, and
    the origins' and shields' DNS names exist only inside the cluster."""
    local = dataclasses.replace(edge, origins=tuple(f"{o.scheme}://127.0.0.1:{o.port}" for o in origin_grammar.of(edge)))
    return local, [edge_nginx.shield_tier(local), edge_nginx.edge_tier(["127.0.0.1:8090", "127.0.0.1:8091"])]


@pytest.mark.parametrize("stack,edge", edges_of_both_stacks(), ids=lambda x: x if isinstance(x, str) else x.name)
def test_nginx_accepts_the_config_of_every_edge_and_shield(stack, edge):
    require_tool("nginx")
    local, tiers = _tiers(edge)
    for tier in tiers:
        with workdir() as tmp:
            server = NginxServer(local, tier, tmp)
            result = server.check()
            assert result.returncode == 0, result.stderr
            assert "test is successful" in result.stderr
            tested = server.conf.read_text()
        # The caching logic is the production render's: the two differ only in host paths and ports.
        strip = lambda text: re.sub(r"(/[\w.-]+)+|\b\d{4,5}\b", "", text)  # noqa: E731
        assert strip(tested) == strip(edge_nginx.render(local, tier))


@pytest.fixture(scope="module")
def broadcast_edge():
    return nights.spec("broadcast").edges[0]


@pytest.fixture(scope="module")
def conf(broadcast_edge) -> str:
    """The broadcast edge pods' config, in front of three shields."""
    return edge_nginx.render(broadcast_edge, edge_nginx.edge_tier(f"s{i}.ns.svc:80" for i in range(3)))


@pytest.fixture(scope="module")
def shield_conf(broadcast_edge) -> str:
    return edge_nginx.render(broadcast_edge, edge_nginx.shield_tier(broadcast_edge))


def test_timings_derive_from_the_stream_and_bound_failover(broadcast_edge):
    """4 s segments, 0.5 s parts, two origins answering in 0.5 s (originLatencySeconds). The shield
    asks in two stages: the first gives an origin 1 s to connect and a part past its latency to start
    answering (a hung primary costs a part), the patient stage a segment past it (a slow answer is
    still an answer); the edge waits out a wait on the shield's cache lock and the shield's whole
    fetch before it would try another shield, so a slow or failing origin never costs a second
    fetch elsewhere nor marks a shield down."""
    shield = edge_nginx.values(broadcast_edge, edge_nginx.shield_tier(broadcast_edge))
    edge = edge_nginx.values(broadcast_edge, edge_nginx.edge_tier(["a:80", "b:80", "c:80"]))
    always, answered = edge_nginx.STALE_ALWAYS, edge_nginx.STALE_ANSWERED
    assert broadcast_edge.origin_latency_seconds == 0.5
    # First stage: a part past the latency, ended by its first timeout (a refusal or 5xx moves on).
    assert shield["media"] == edge_nginx.Stage("upstream_tier", 1_000, 1_000, always)
    assert shield["plain"] == edge_nginx.Stage("upstream_tier", 1_000, 1_000, answered)
    # A reload for the next part is held about a part: it gets that on top, in its own upstream.
    assert shield["reload"] == edge_nginx.Stage("reload_tier", 1_500, 1_500, always)
    # Patient stage: a segment past the latency per origin; a reload, a target duration + 1 s past it.
    assert shield["media_patient"] == shield["plain_patient"] == edge_nginx.Stage("patient_tier", 4_500, 2 * (1_000 + 4_500), always)
    assert shield["reload_patient"] == edge_nginx.Stage("patient_tier", 5_500, 2 * (1_000 + 5_500), always)
    # Collapsed requests wait for the one fetch from slow origins (a first-stage timeout, then the
    # patient answer); its lock lasts the fetch's whole budget.
    media_budget, reload_budget = (1_000 + 1_000 + 1_000) + 11_000, (1_500 + 1_000 + 1_500) + 13_000
    assert (shield["media_lock_timeout_ms"], shield["media_lock_age_ms"]) == (1_000 + 1_000 + 1_000 + 4_500, media_budget)
    assert (shield["reload_lock_timeout_ms"], shield["reload_lock_age_ms"]) == (1_000 + 1_500 + 1_000 + 5_500, reload_budget)
    assert edge["media"] == edge_nginx.Stage("upstream_tier", 7_500 + media_budget + 1_000, 2 * (1_000 + 22_500), always)
    assert edge["reload"].read_ms == 9_000 + reload_budget + 1_000
    assert (edge["tries"], shield["tries"]) == (2, 2)
    # Every shield marked down: an edge asks them all the same (never marked down), no sooner.
    assert edge["media_patient"] == dataclasses.replace(edge["media"], upstream="patient_tier")
    assert (edge["patient_on"], shield["patient_on"]) == ("502", "502 504")
    # Collapsed part requests at the edge re-check at a quarter part instead of nginx's 500 ms tick.
    assert edge["media_lock_timeout_ms"] == 125
    # A blocking reload's answer lists the part asked for, and stays right: kept a segment.
    assert (shield["playlist_ttl"], shield["blocking_playlist_ttl"]) == (1, 4)
    slower = edge_nginx.values(dataclasses.replace(broadcast_edge, origin_latency_seconds=2.0), edge_nginx.shield_tier(broadcast_edge))
    assert (slower["media"].read_ms, slower["media_patient"].read_ms) == (2_500, 6_000)
    # One origin: nothing to fail over to, so it is asked patiently at once, in one stage.
    alone = dataclasses.replace(broadcast_edge, origins=broadcast_edge.origins[:1])
    single = edge_nginx.values(alone, edge_nginx.shield_tier(alone))
    assert not single["two_stage"] and single["media_patient"] is None
    assert (single["media"].read_ms, single["reload"].read_ms) == (4_500, 5_500)
    assert shield["cache_max_mb"] == math.floor(50 * 1024 * 0.8) and edge["cache_max_mb"] == 16_384
    assert edge["workers"] == broadcast_edge.pod_cpu


def test_edges_hash_on_the_cache_key_over_the_shields_and_shields_fail_over(conf, shield_conf):
    assert "hash $cache_key consistent;" in conf
    assert [line.strip() for line in conf.splitlines() if line.strip().startswith('server "s')] == [
        f'server "s{i}.ns.svc:80" max_fails=1 fail_timeout=12s;' for i in range(3)] + [
        f'server "s{i}.ns.svc:80" max_fails=0;' for i in range(3)]
    assert "hash " not in shield_conf
    # Both first-stage upstreams mark any origin down on one failure; the patient one, backups
    # first, never does (every origin marked down sends requests straight to it).
    servers = [line.strip() for line in shield_conf.splitlines() if line.strip().startswith('server "origin')]
    assert servers == 2 * ['server "origin-a.live.internal:8080" max_fails=1 fail_timeout=12s;',
                           'server "origin-b.live.internal:8080" max_fails=1 fail_timeout=12s backup;'] + [
        'server "origin-b.live.internal:8080" max_fails=0;', 'server "origin-a.live.internal:8080" max_fails=0 backup;']
    for location, patient in (("playlist", "@playlist_patient"), ("reload", "@reload_patient"), ("media", "@media_patient")):
        assert f"error_page 502 504 = {patient};" in shield_conf and f"location {patient} {{" in shield_conf, location
    # An edge whose shields all failed once (and are marked down) asks them anyway, never marking
    # them down there; a shield's 5xx, an answer, is passed on (proxy_intercept_errors off).
    for location in ("playlist", "reload", "media"):
        assert f"error_page 502 = @{location}_patient;" in conf and f"location @{location}_patient {{" in conf
    assert conf.count("hash $cache_key consistent;") == 2 and "proxy_intercept_errors" not in conf + shield_conf
    # Shields retry on every origin failure, 500 included; edges only when a shield is unreachable.
    assert "proxy_next_upstream error timeout invalid_header http_500 http_502 http_504 http_503;" in shield_conf
    assert "proxy_next_upstream error timeout;" in conf
    assert conf.count("set $cache_key") == shield_conf.count("set $cache_key") == 3
    assert conf.count("proxy_cache_key $cache_key;") == shield_conf.count("proxy_cache_key $cache_key;") == 6
    assert conf.count(f"proxy_cache_use_stale {edge_nginx.STALE_ALWAYS};") == 6
    # Stale on a timeout would keep a plain playlist from ever refreshing while the origins are slow.
    assert shield_conf.count(f"proxy_cache_use_stale {edge_nginx.STALE_ALWAYS};") == 5
    assert shield_conf.count(f"proxy_cache_use_stale {edge_nginx.STALE_ANSWERED};") == 1
    # Only edges face viewers: tokens checked there, and nothing below emerg logged (lines carry the token).
    assert conf.count('if ($secure_link != "1") { return 403; }') == 2 and "secure_link" not in shield_conf
    assert "error_log stderr emerg;" in conf and "emerg" not in shield_conf


def test_https_origins_get_sni_and_verification(broadcast_edge):
    tls = dataclasses.replace(broadcast_edge, origins=("https://origin-a.live.internal", "https://origin-b.live.internal:8443"),
                              origin_server_name="live.example.com", origin_ca_secret="origin-ca")
    text = edge_nginx.render(tls, edge_nginx.shield_tier(tls))
    for line in ('server "origin-a.live.internal:443" max_fails=1', 'server "origin-b.live.internal:8443" max_fails=1',
                 "proxy_ssl_server_name on;", "proxy_ssl_name live.example.com;", "proxy_ssl_verify on;",
                 "proxy_ssl_trusted_certificate /etc/nginx/origin-ca/ca.crt;", "proxy_set_header Host live.example.com;",
                 "proxy_pass https://upstream_tier;", "proxy_pass https://patient_tier;"):
        assert line in text
    plain = edge_nginx.render(broadcast_edge, edge_nginx.shield_tier(broadcast_edge))
    assert "proxy_ssl" not in plain and "proxy_pass http://upstream_tier;" in plain
    system = dataclasses.replace(tls, origin_ca_secret=None)
    assert "proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;" in edge_nginx.render(system, edge_nginx.shield_tier(system))


def test_playlists_and_segments_are_cached_as_the_issue_asks(conf):
    playlist, segment = re.findall(r"location ~ \"[^\"]+\" \{(.*?)\n        \}", conf, re.S)
    for block in (playlist, segment):
        assert 'if ($secure_link != "1") { return 403; }' in block
        assert "X-Cache-Status $upstream_cache_status always" in block
    # Playlists: short TTL, keyed and forwarded with the LL-HLS directives only.
    assert "proxy_cache_valid 200 1s;" in playlist
    assert "set $args $hls_args;" in playlist and "set $cache_key $uri$is_args$args;" in playlist
    # Segments: long immutable TTL, keyed on the path alone (the viewer's token dropped).
    assert "proxy_cache_valid 200 206 3600s;" in segment
    assert 'set $args "";' in segment and "set $cache_key $uri;" in segment
    for directive in ("proxy_cache_lock on;", "proxy_cache_background_update on;",
                      "proxy_cache_valid 404 1s;", "keepalive 32;",
                      'proxy_set_header Connection "";', "location = /healthz", "stub_status;"):
        assert directive in conf


def test_nginx_logs_each_request_where_and_as_the_log_exporter_reads_it(conf):
    declared = yaml.safe_load(edge_logs.exporter_config(nights.spec("broadcast").edges[0]))["namespaces"][0]
    syslog = declared["source"]["syslog"]
    assert f"log_format metrics '{declared['format']}';" in conf
    server = syslog["listen_address"].removeprefix("udp://")
    assert f"access_log syslog:server={server},tag={syslog['tags'][0]} metrics;" in conf


def test_the_secret_is_included_never_rendered(conf):
    assert "include /etc/nginx/secret/secure-link.conf;" in conf
    assert "set $secure_link_secret" not in conf
    with pytest.raises(ValueError):
        edge_nginx.secret_snippet('x"; return 200; #')
    assert edge_nginx.secret_snippet(SECRET) == f'set $secure_link_secret "{SECRET}";\n'


def test_render_is_pure():
    edge = nights.spec("rehearsal").edges[0]
    tier = edge_nginx.shield_tier(edge)
    assert edge_nginx.render(edge, tier) == edge_nginx.render(edge, tier)
    assert edge_nginx.render(edge, tier) != edge_nginx.render(dataclasses.replace(edge, segment_seconds=2), tier)


def test_the_token_cap_holds_for_any_time_and_lifetime(broadcast_edge):
    """The digit patterns nginx evaluates: every lifetime up to `always` accepted, none from
    `refused_beyond`, at random times of this century and across digit carries (…9999 -> …0000)."""
    cap = edge_nginx.token_cap(broadcast_edge)
    assert (cap.always, cap.refused_beyond) == (10_000, 20_000) <= (broadcast_edge.max_token_lifetime_seconds,) * 2
    patterns = [re.compile(p) for p in cap.patterns()]
    accepted = lambda expires, now: any(p.search(f"{expires}:{now:.3f}") for p in patterns)  # noqa: E731
    rng = random.Random(7)
    for now in [rng.uniform(1.7e9, 4e9) for _ in range(3000)] + [1_799_999_999.5, 1_999_999_999.9]:
        life = rng.uniform(0, 3 * cap.always)
        assert accepted(int(now + life), now) == (life <= cap.always) or cap.always < life < cap.refused_beyond
        assert accepted(int(now + cap.always), now) and not accepted(int(now + cap.refused_beyond), now)
    assert edge_nginx.token_cap(dataclasses.replace(broadcast_edge, max_token_lifetime_seconds=3600)).always == 1000
