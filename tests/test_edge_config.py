"""The rendered nginx.conf: `nginx -t` for every edge of both stacks, and what the issue requires of it."""
from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from peaknight.spec import config
from peaknight.edges import logs as edge_logs
from peaknight.edges import nginx as edge_nginx
from conftest import require_tool
from edge_harness import SECRET, EdgeServer, workdir


def edges_of_both_stacks() -> list[tuple[str, object]]:
    return [(stack, edge) for stack in ("broadcast", "rehearsal") for edge in config.load_stack(stack).spec.edges]


@pytest.mark.parametrize("stack,edge", edges_of_both_stacks(), ids=lambda x: x if isinstance(x, str) else x.name)
def test_nginx_accepts_the_config_of_every_edge(stack, edge):
    """Only the host's paths, ports and the origins' addresses change: nginx resolves upstream names
    when it loads the config, and the origins' DNS names exist only inside the cluster."""
    require_tool("nginx")
    local = dataclasses.replace(edge, origins=tuple("127.0.0.1:" + o.rsplit(":", 1)[1] for o in edge.origins))
    with workdir() as tmp:
        server = EdgeServer(local, tmp)
        result = server.check()
        assert result.returncode == 0, result.stderr
        assert "test is successful" in result.stderr
        tested = server.conf.read_text()
    # The caching logic is the production render's: the two differ only in host paths and ports.
    strip = lambda text: re.sub(r"(/[\w.-]+)+|\b\d{4,5}\b", "", text)  # noqa: E731
    assert strip(tested) == strip(edge_nginx.render(local))


@pytest.fixture(scope="module")
def conf() -> str:
    return edge_nginx.render(config.load_stack("broadcast").spec.edges[0])


def test_values_derive_from_the_segment_duration():
    edge = config.load_stack("broadcast").spec.edges[0]             # 4 s segments
    v = edge_nginx.values(edge)
    assert v["read_timeout_ms"] == 16_000        # blocking reload held up to 3 x 4 s, plus one segment
    assert v["playlist_lock_ms"] == 16_000
    assert (v["segment_lock_age_ms"], v["segment_lock_timeout_ms"]) == (4_000, 8_000)
    assert v["cache_max_mb"] == 16_384           # 80% of the 20 GiB volume
    assert v["workers"] == edge.pod_cpu


def test_playlists_and_segments_are_cached_as_the_issue_asks(conf):
    playlist, segment = re.findall(r"location ~ \"[^\"]+\" \{(.*?)\n        \}", conf, re.S)
    for block in (playlist, segment):
        assert 'if ($secure_link != "1") { return 403; }' in block
        assert "X-Cache-Status $upstream_cache_status always" in block
    # Playlists: short TTL, keyed and forwarded with the LL-HLS directives only.
    assert "proxy_cache_valid 200 1s;" in playlist
    assert "set $args $hls_args;" in playlist and "proxy_cache_key $uri$is_args$args;" in playlist
    # Segments: long immutable TTL, keyed on the path alone (the viewer's token dropped).
    assert "proxy_cache_valid 200 206 3600s;" in segment
    assert 'set $args "";' in segment and "proxy_cache_key $uri;" in segment
    for directive in ("proxy_cache_lock on;", "proxy_cache_background_update on;",
                      "proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504;",
                      "proxy_cache_valid 404 1s;", "proxy_read_timeout 16000ms;", "keepalive 32;",
                      'proxy_set_header Connection "";', "location = /healthz", "stub_status;",
                      'server "origin-a.live.internal:8080" max_fails=2 fail_timeout=4s;',
                      'server "origin-b.live.internal:8080" max_fails=2 fail_timeout=4s backup;'):
        assert directive in conf


def test_nginx_logs_each_request_where_and_as_the_log_exporter_reads_it(conf):
    declared = yaml.safe_load(edge_logs.exporter_config(config.load_stack("broadcast").spec.edges[0]))["namespaces"][0]
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
    edge = config.load_stack("rehearsal").spec.edges[0]
    assert edge_nginx.render(edge) == edge_nginx.render(edge)
    assert edge_nginx.render(edge) != edge_nginx.render(dataclasses.replace(edge, segment_seconds=2))
