"""A full cache volume with a real nginx: misses pass through whole instead of breaking.

The shield's state directory is a small tmpfs, filled to the last byte (as a runaway cache or a
neighbour's files would fill an emptyDir). Without the guard a miss's cache write fails with ENOSPC
and the response breaks; with the cache guard's loop running (the sidecar's own script), nginx stops
storing misses and every response arrives intact. Mounting needs root, or sudo as CI runners have.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time

import pytest

import edge_harness as h
from conftest import require_tool
import nights
from peaknight.edges import nginx as edge_nginx

# Real nginx end to end: the real-tool tier (pyproject.toml markers).
pytestmark = pytest.mark.realtool

VOLUME_MB = 64                     # tmpfs size; the spec's volume is 1 GiB, so 64 MB free is "full"


def _root(*cmd: str) -> None:
    prefix = [] if os.geteuid() == 0 else [require_tool("sudo"), "-n"]
    subprocess.run([*prefix, *cmd], check=True, capture_output=True)


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
        state.mkdir(parents=True)
        _root("mount", "-t", "tmpfs", "-o", f"size={VOLUME_MB}m,mode=0777", "tmpfs", str(state))
        guard = None
        try:
            shield.start()
            fd = os.open(state / "filler", os.O_WRONLY | os.O_CREAT)   # every byte of the volume taken
            try:
                while os.write(fd, b"\0" * (1 << 16)):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
            def fetch(name: str) -> str:
                try:
                    reply = h.get(shield.port, f"/live/gala/1080p/{name}")
                except Exception as err:  # noqa: BLE001 - a broken response is what is measured
                    return type(err).__name__
                return h._check(reply.body, f"1080p/{name}") or str(reply.status)
            assert fetch(h.segment_uri(0)) != "200"                # unguarded: the write fails, the response breaks
            guard = subprocess.Popen([shutil.which("sh") or "/bin/sh", "-c",
                                      edge_nginx.cache_guard_script(1, str(state))])
            deadline = time.time() + 5
            while not (state / edge_nginx.GUARD_FLAG).exists() and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(1.2)                                         # nginx's cached stat of the flag expires
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
            _root("umount", str(state))
