"""A full cache volume with a real nginx: requests pass through whole instead of breaking or waiting.

Each state directory is a small tmpfs, filled to the last byte (as a runaway cache or a
neighbour's files would fill an emptyDir). Without the guard a miss's cache write fails with ENOSPC
and the response breaks; with the cache guard's loop running (the sidecar's own script), nginx
passes every request through the cache, neither stored nor looked up. Mounting needs root, or sudo
as CI runners have.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

import edge_harness as h
from conftest import require_tool
import nights
from peaknight.edges import nginx as edge_nginx

# Real nginx end to end: the real-tool tier (pyproject.toml markers).
pytestmark = pytest.mark.realtool

# tmpfs size. The guards are told of a 1 GiB volume, so under 52 MB free (5%) is "full": 128 MB leaves
# the caching of the viewer test's first seconds (about 20 MB a tier) above that until the fill.
VOLUME_MB = 128


def _root(*cmd: str) -> None:
    prefix = [] if os.geteuid() == 0 else [require_tool("sudo"), "-n"]
    subprocess.run([*prefix, *cmd], check=True, capture_output=True)


def _mount(state: Path) -> Callable[[], None]:
    state.mkdir(parents=True, exist_ok=True)
    _root("mount", "-t", "tmpfs", "-o", f"size={VOLUME_MB}m,mode=0777", "tmpfs", str(state))
    return lambda: _root("umount", str(state))


def _fill(state: Path) -> None:
    """Every byte of the volume taken."""
    fd = os.open(state / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * (1 << 16)):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def _guard(state: Path) -> subprocess.Popen:
    return subprocess.Popen([shutil.which("sh") or "/bin/sh", "-c", edge_nginx.cache_guard_script(1, str(state))])


def test_a_full_cache_volume_passes_misses_through_intact():
    require_tool("nginx")
    edge = nights.spec("broadcast").edges[0]
    with h.workdir() as work:
        stream = h.Stream({"1080p": 6000}, 4.0, 0.5)
        stream.start(3)
        origin = h.Origin(stream)
        local = dataclasses.replace(edge, origins=(origin.address,), pod_cpu=1, shield_cache_gib=1)
        shield = h.NginxServer(local, edge_nginx.shield_tier(local), work / "shield")
        state = work / "shield" / "state"
        unmount = _mount(state)
        guard = None
        try:
            shield.start()
            _fill(state)

            def fetch(name: str) -> str:
                try:
                    reply = h.get(shield.port, f"/live/gala/1080p/{name}")
                except Exception as err:  # noqa: BLE001 - a broken response is what is measured
                    return type(err).__name__
                return h._check(reply.body, f"1080p/{name}") or str(reply.status)
            assert fetch(h.segment_uri(0)) != "200"                # unguarded: the write fails, the response breaks
            guard = _guard(state)
            deadline = time.time() + 5
            while not (state / edge_nginx.GUARD_FLAG).exists() and time.time() < deadline:
                time.sleep(0.05)
            names = [h.segment_uri(1), *(h.part_uri(1, p) for p in range(4)), h.segment_uri(0)]
            assert [fetch(n) for n in names] == ["200"] * len(names)
            assert [fetch(n) for n in names[:2]] == ["200"] * 2     # again: passed through, nothing stored
        finally:
            if guard:
                guard.terminate()
                guard.wait(5)
            shield.stop()
            origin.close()
            stream.stop()
            unmount()


FILL_AT, PLAY_SECONDS, VIEWERS = 6.0, 14.0, 100


def test_viewers_ride_out_every_cache_volume_filling_at_once():
    """Two shields and two edge pods, each on its own 64 MB volume with its guard, 100 viewers (half
    LL-HLS) that retry a failed request after 1 s as hls.js does; 6 s in, every volume is filled to
    the last byte at once. Responses being stored at that moment break (nothing can avoid that but
    a guard that flags the volume before it is full, as the 5% threshold does when a volume fills
    gradually); within the guard's interval each tier passes requests through, no viewer waits
    on a cache lock whose holder stores nothing or on a stale playlist that cannot be refreshed,
    and no edge is left without a shield to ask (before: the edges marked both shields down on
    their broken responses and answered "no live upstreams" until the viewers' retries gave up;
    issue 29's run: 70 of 150 viewers stalled up to 15 s). The stall bound is the players' retry
    delay, a quarter of the 4 s segment: a broken response costs its viewer the retry, which the
    3-part hold-back mostly absorbs."""
    require_tool("nginx")
    edge = dataclasses.replace(nights.spec("broadcast").edges[0], cache_gib=1, shield_cache_gib=1)
    guards: list[subprocess.Popen] = []

    def prepare(server: h.NginxServer) -> Callable[[], None]:
        state = server.workdir / "state"
        unmount = _mount(state)
        guards.append(_guard(state))
        return unmount

    try:
        with h.running(edge, edge.segment_seconds, edge.part_seconds, shields=2, edges=2, prepare=prepare) as live:
            servers = (*live.shields, *live.edges)
            flagged_early: list[bool] = []
            full: list[float] = []

            def fill_all() -> None:
                flagged_early.append(any((s.workdir / "state" / edge_nginx.GUARD_FLAG).exists() for s in servers))
                for s in servers:
                    _fill(s.workdir / "state")
                full.append(time.time())
            filled = threading.Timer(FILL_AT, fill_all)
            start = time.time()
            filled.start()
            try:
                report = h.watch(live.ports, live.stream, VIEWERS, PLAY_SECONDS, retry=True)
            finally:
                filled.cancel()
            flagged = all((s.workdir / "state" / edge_nginx.GUARD_FLAG).exists() for s in servers)
    finally:
        for guard in guards:
            guard.terminate()
            guard.wait(5)
    fill = start + FILL_AT
    longest = max((seconds for _, seconds, _ in report.stalls), default=0.0)
    print(f"\nfull volumes: {report.requests} requests, {len(report.errors)} failed, {len(report.stalls)} stalls, "
          f"longest {longest:.2f} s; cache {dict(report.cache)}")
    print(f"failed {sorted(round(at - fill, 2) for at in report.failed_at)}; volumes full {full[0] - fill:.2f} s after the fill began")
    assert flagged_early == [False] and flagged
    assert report.cache["BYPASS"] > report.cache["HIT"]                  # after the fill, everything passed through
    # Only responses under way, or waiting on their cache lock, when the volumes filled broke:
    # transfers cut short (or an edge's 502 when both shields cut theirs short), each retry (a
    # request the guards' flags pass through) whole.
    assert all(e.endswith(("IncompleteReadError", "ConnectionResetError", "HTTP 502")) for e in report.errors), report.errors
    assert all(fill <= at for at in report.failed_at)
    worst = sorted(report.stalls, key=lambda s: -s[1])[:3]
    assert longest <= h.RETRY_DELAY_SECONDS <= edge.segment_seconds / 4, worst
    assert [t for t, _, _ in report.part_times if t > fill + 2] and [t for t, _, _ in report.segment_times if t > fill + 2]
