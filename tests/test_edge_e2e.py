"""End to end: a live HLS stream from two local origins, a real nginx running the rendered edge
config in front of them, and many concurrent viewers with signed URLs (tests/edge_harness.py).

The edge is the broadcast stack's, with local origins and 1 s segments so the test plays a dozen
segments in seconds; every caching rule comes from the same template. nginx keeps cache validity
in whole seconds, so a playlist may be up to TTL + 1 s old (+ the time a refresh takes).
"""
from __future__ import annotations

import http.client
import re
import statistics
import time

import pytest
import yaml

import edge_harness as h
from peaknight.spec import config
from peaknight.edges import logs as edge_logs
from conftest import require_tool

SEGMENT_SECONDS = 1.0
VIEWERS = 60
PLAY_SECONDS = 8


@pytest.fixture(scope="module")
def live():
    require_tool("nginx")
    edge = config.load_stack("broadcast").spec.edges[0]
    with h.running(edge, SEGMENT_SECONDS) as setup:
        yield setup


def test_unsigned_expired_and_forged_links_are_refused(live):
    port, playlist, segment = live.edge.port, "/live/gala/720p/index.m3u8", "/live/gala/720p/seg0.ts"
    assert h.get(port, "/healthz").status == 200
    for path in (playlist, segment):
        assert h.get(port, path).status == 403                                   # unsigned
        assert h.get(port, h.signed(path, expires_in=-10)).status == 403         # expired
        forged = h.signed(path).replace("md5=", "md5=A", 1)
        assert h.get(port, forged).status == 403                                 # tampered token
        assert h.get(port, h.signed(path)).status == 200
    other_stream = h.signed("/live/gala/720p/seg0.ts").replace("/live/gala/", "/live/other/")
    assert h.get(port, other_stream).status == 403                               # token of another stream


# nginx's RFC 3164 header: <PRI>Mmm dd hh:mm:ss host tag: message
SYSLOG_LINE = re.compile(r"^<\d+>\w{3} [ \d]\d \d\d:\d\d:\d\d (?P<host>\S+) (?P<tag>\w+): (?P<message>.*)$")


def _gonx_pattern(fmt: str) -> re.Pattern[str]:
    """The log exporter's parser (satyrius/gonx): each $field runs up to the text that follows it,
    and the pattern is anchored at the start only."""
    parts = re.split(r"\$(\w+)", fmt + " ")
    body = "".join(f"(?P<{name}>[^{re.escape(text)}]*){re.escape(text)}" for name, text in zip(parts[1::2], parts[2::2]))
    return re.compile("^" + re.escape(parts[0]) + body.removesuffix(re.escape(" ")))


def _received(sink: h.SyslogSink, count: int, within: float = 2.0) -> list[str]:
    lines: list[str] = []
    deadline = time.time() + within
    while len(lines) < count and time.time() < deadline:
        lines += sink.take()
        time.sleep(0.02)
    return lines


def test_each_request_reaches_the_log_exporter_in_the_format_it_parses(live):
    """The syslog lines nginx sends where the exporter listens parse with the format and tag the
    exporter's config declares, carry the status and cache status the viewer saw, and hold only
    label values the exporter's whitelists keep (anything else would count as "other")."""
    declared = yaml.safe_load(edge_logs.exporter_config(live.edge.edge))["namespaces"][0]
    pattern, tag = _gonx_pattern(declared["format"]), declared["source"]["syslog"]["tags"][0]
    whitelists = {r["from"]: r["whitelist"] for r in declared["relabel_configs"]}
    msn = live.stream.latest + 1
    assert live.stream.wait_for(msn, 5)
    segment, playlist = f"/live/gala/480p/seg{msn}.ts", "/live/gala/480p/index.m3u8"
    live.syslog.take()
    conn = http.client.HTTPConnection("127.0.0.1", live.edge.port, timeout=30)   # one worker: lines in order
    replies = [h.get(live.edge.port, path, conn) for path in (h.signed(segment), h.signed(segment), segment,
                                                                h.signed(playlist))]
    conn.close()
    assert [(r.status, r.cache) for r in replies[:3]] == [(200, "MISS"), (200, "HIT"), (403, "")]

    lines = _received(live.syslog, len(replies))
    assert len(lines) == len(replies), lines
    fields = []
    for line in lines:
        header = SYSLOG_LINE.match(line)
        assert header and header["tag"] == tag, line
        parsed = pattern.match(header["message"])
        assert parsed, header["message"]
        fields.append(parsed.groupdict())
    assert [(f["status"], f["upstream_cache_status"], f["edge_kind"], f["edge_rendition"]) for f in fields] == [
        ("200", "MISS", "segment", "480p"), ("200", "HIT", "segment", "480p"), ("403", "-", "segment", "480p"),
        ("200", replies[3].cache, "playlist", "480p")]
    assert [int(f["body_bytes_sent"]) for f in fields[:2]] == [len(replies[0].body)] * 2
    assert all(float(f["request_time"]) >= 0 for f in fields)
    for f in fields:
        for source, allowed in whitelists.items():
            assert f[source] in allowed, (source, f[source])


def test_viewers_get_every_segment_from_one_origin_fetch_each(live):
    audience = h.watch(live.edge, live.stream, live.origins, VIEWERS, PLAY_SECONDS)
    ttl = live.edge.edge.playlist_ttl_seconds
    for v in audience.viewers:
        assert v.errors == []
        got = sorted(v.segments)
        assert got == list(range(got[0], got[-1] + 1)), f"{v.rendition}: gaps in {got}"
        # Kept up with the live edge: behind by at most the playlist's possible age plus one segment.
        assert v.live_at_stop - got[-1] <= (ttl + 1.5) / SEGMENT_SECONDS + 1 and len(got) >= PLAY_SECONDS - 3
        assert max(v.playlist_ages) <= ttl + 1 + 0.5
    segments = {p: n for p, n in audience.origin_requests.items() if p.endswith(".ts")}
    assert len(segments) >= len(live.stream.renditions) * (PLAY_SECONDS - 2)
    assert statistics.mean(segments.values()) <= 1.05 and max(segments.values()) <= 2, segments
    # Playlists reach the origin about once per TTL per rendition, not once per viewer.
    assert sum(audience.origin_requests.values()) < audience.client_requests / 5
    queries = {q for o in live.origins for q in o.queries}
    assert not any("md5" in q or "expires" in q for q in queries)                # tokens stay at the edge
    assert any(q.startswith("_HLS_msn=") for q in queries)                      # LL-HLS directives pass


def _fresh_playlist(live, path: str, within: float) -> h.Reply:
    deadline = time.time() + within
    while True:
        reply = h.get(live.edge.port, h.signed(path))
        age = time.time() - float(reply.headers["x-origin-time"])
        if reply.status == 200 and age <= live.edge.edge.playlist_ttl_seconds + 1.5 or time.time() > deadline:
            return reply
        time.sleep(0.2)


def test_backup_origin_takes_over_when_the_primary_fails(live):
    primary, backup = live.origins
    path = "/live/gala/480p/index.m3u8"
    before = backup.snapshot()[path]
    primary.down = True
    try:
        time.sleep(live.edge.edge.playlist_ttl_seconds + 1.5)
        reply = _fresh_playlist(live, path, within=3)
        assert reply.status == 200
        assert time.time() - float(reply.headers["x-origin-time"]) <= live.edge.edge.playlist_ttl_seconds + 1.5
        assert backup.snapshot()[path] > before
    finally:
        primary.down = False


def test_stale_is_served_while_every_origin_is_down(live):
    path, cached = "/live/gala/1080p/index.m3u8", f"/live/gala/1080p/seg{live.stream.latest - 1}.ts"
    assert h.get(live.edge.port, h.signed(path)).status == 200
    assert h.get(live.edge.port, h.signed(cached)).status == 200
    for origin in live.origins:
        origin.down = True
    try:
        time.sleep(live.edge.edge.playlist_ttl_seconds + 1.5)                       # the playlist has expired
        for _ in range(3):
            reply = h.get(live.edge.port, h.signed(path))
            assert (reply.status, reply.cache) == (200, "STALE")
            assert reply.body.startswith(b"#EXTM3U")
        assert h.get(live.edge.port, h.signed(cached)).cache == "HIT"
    finally:
        for origin in live.origins:
            origin.down = False

