"""End to end: a live LL-HLS stream from two local origins, real nginx shields and edge pods
running the rendered configs in front of them, and concurrent viewers with signed URLs
(tests/edge_harness.py).

The edge is the broadcast stack's, with local origins and short segments (2 s of 4 x 0.5 s parts, the stack's part)
so the tests play a few dozen parts in seconds; every caching rule comes from the same template.
"""
from __future__ import annotations

import re
import time

import pytest
import yaml

import edge_harness as h
import nights
from peaknight.edges import logs as edge_logs
from conftest import require_tool

SEGMENT_SECONDS, PART_SECONDS = 2.0, 0.5
VIEWERS = 40
PLAY_SECONDS = 6


@pytest.fixture(scope="module")
def live():
    require_tool("nginx")
    edge = nights.spec("broadcast").edges[0]
    with h.running(edge, SEGMENT_SECONDS, PART_SECONDS, shields=2, edges=2) as setup:
        yield setup


def test_unsigned_expired_and_forged_links_are_refused(live):
    port, playlist = live.ports[0], "/live/gala/720p/index.m3u8"
    segment = f"/live/gala/720p/{h.segment_uri(live.stream.latest[0] - 1)}"
    assert h.get(port, "/healthz").status == 200
    for path in (playlist, segment):
        assert h.get(port, path).status == 403                                   # unsigned
        assert h.get(port, h.signed(path, expires_in=-10)).status == 403         # expired
        forged = h.signed(path).replace("md5=", "md5=A", 1)
        assert h.get(port, forged).status == 403                                 # tampered token
        assert h.get(port, h.signed(path)).status == 200
    # The blocking-reload location is internal: no way around the token through it.
    assert h.get(port, "/_hls_blocking/live/gala/720p/index.m3u8?_HLS_msn=1").status == 404
    other_stream = h.signed(segment).replace("/live/gala/", "/live/other/")
    assert h.get(port, other_stream).status == 403                               # token of another stream
    # Lifetime capped (maxTokenLifetimeSeconds 21,600: up to 10,000 s always, 20,000 s or more never).
    assert h.get(port, h.signed(segment, expires_in=2 * 3600)).status == 200
    for too_long in (20_001, 75 * 365 * 86_400):
        assert h.get(port, h.signed(segment, expires_in=too_long)).status == 403


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
    declared = yaml.safe_load(edge_logs.exporter_config(live.edges[0].edge))["namespaces"][0]
    pattern, tag = _gonx_pattern(declared["format"]), declared["source"]["syslog"]["tags"][0]
    whitelists = {r["from"]: r["whitelist"] for r in declared["relabel_configs"]}
    msn = live.stream.latest[0] + 1
    assert live.stream.wait_for(msn, live.stream.parts - 1, 5)
    segment, playlist = f"/live/gala/480p/{h.segment_uri(msn)}", "/live/gala/480p/index.m3u8"
    port = live.ports[0]
    time.sleep(0.3)
    live.syslog.take()
    replies = []
    for path in (h.signed(segment), h.signed(segment), segment, h.signed(playlist)):
        replies.append(h.get(port, path))
        time.sleep(0.05)                  # one line each, in order
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


def _clean(report: h.Report) -> None:
    assert report.errors == [] and report.part_times and report.segment_times


def test_viewers_get_every_object_from_one_origin_fetch_through_the_shields(live):
    """Two edge pods, two shields: each part and segment reaches the origin once (consistent
    hashing sends every edge's miss for it to the same shield), tokens stay at the edge and the
    LL-HLS directives pass through both tiers."""
    before, _ = live.origin_snapshot()
    report = h.watch(live.ports, live.stream, VIEWERS, PLAY_SECONDS)
    after, _ = live.origin_snapshot()
    _clean(report)
    assert not report.stalls
    media = {p: n for p, n in (after - before).items() if p.endswith(".m4s")}
    assert len(media) >= len(live.stream.renditions) * (PLAY_SECONDS - 2) / PART_SECONDS / 2
    assert max(media.values()) == 1, media
    # Collapsed part requests re-check at a quarter part, not nginx's 500 ms tick.
    assert h.quantile([t for _, t, _ in report.part_times], 0.99) < live.stream.part_seconds * 2
    queries = {q for o in live.origins for q in o.queries}
    assert not any("md5" in q or "expires" in q for q in queries)                # tokens stay at the edge
    assert any(q.startswith("_HLS_msn=") and "_HLS_part=" in q for q in queries)  # LL-HLS directives pass


@pytest.mark.parametrize("fault", h.FAULTS)
def test_a_failing_primary_costs_viewers_nothing(live, fault):
    """The primary origin dead, hung, slow or answering 500 while viewers play: the shields move to
    the backup within their bounded budget, viewers see no error and no stall, and no log line of
    any tier holds a viewer's token."""
    primary, backup = live.origins
    before = sum(backup.snapshot()[0].values())
    primary.fault = fault
    try:
        report = h.watch(live.ports, live.stream, VIEWERS // 2, 4)
    finally:
        primary.fault = ""
    _clean(report)
    assert not [s for s in report.stalls if s[1] > 2 * SEGMENT_SECONDS], report.stalls
    assert sum(backup.snapshot()[0].values()) > before
    for server in (*live.shields, *live.edges):
        assert "md5=" not in server.logs() and "expires=" not in server.logs()


def test_stale_is_served_while_every_origin_is_down(live):
    port, path = live.ports[0], "/live/gala/1080p/index.m3u8"
    cached = f"/live/gala/1080p/{h.segment_uri(live.stream.latest[0] - 1)}"
    assert h.get(port, h.signed(path)).status == 200
    assert h.get(port, h.signed(cached)).status == 200
    for origin in live.origins:
        origin.fault = "dead"
    try:
        time.sleep(live.edges[0].edge.playlist_ttl_seconds * 2 + 2.5)             # both tiers' copies expired
        for _ in range(3):
            reply = h.get(port, h.signed(path))
            # The shield answers its stale copy, which the edge then holds as its own (HIT).
            assert (reply.status, reply.cache) in ((200, "STALE"), (200, "UPDATING"), (200, "HIT"))
            assert reply.body.startswith(b"#EXTM3U")
        assert h.get(port, h.signed(cached)).cache == "HIT"
    finally:
        for origin in live.origins:
            origin.fault = ""
