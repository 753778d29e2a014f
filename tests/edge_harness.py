"""A live stream, its origins, a real nginx running the rendered edge config, and viewers.

Shared by tests/test_edge_e2e.py and bench/edge_offload so both measure the same setup. Only
127.0.0.1 is ever contacted. Segments are small fake .ts files the stream writes itself: the edge
caches bytes, it does not decode video.
"""
from __future__ import annotations

import http.client
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

from peaknight.edges import logs as edge_logs
from peaknight.edges import nginx as edge_nginx
from peaknight.spec.stack import Edge

SCOPE = "/live/gala/"              # /<app>/<stream>/: what a viewer's token signs
SECRET = "test-only-secure-link-secret"
NOBODY = 65534                     # nginx runs unprivileged here as in the pod, even when tests run as root
CACHED = set(edge_logs.HITS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stream:
    """A live HLS stream: every segment duration a new segment per rendition, a sliding playlist."""

    def __init__(self, root: Path, renditions: tuple[str, ...], segment_seconds: float, window: int = 6):
        self.root, self.renditions, self.segment_seconds, self.window = root, renditions, segment_seconds, window
        self.latest = -1
        self.published: dict[int, float] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def payload(rendition: str, msn: int) -> bytes:
        head = f"{rendition}/{msn}\n".encode()
        return head + bytes((msn + i) % 251 for i in range(8192 - len(head)))

    def publish(self) -> None:
        msn = self.latest + 1
        for r in self.renditions:
            path = self.root / r / f"seg{msn}.ts"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.payload(r, msn))
        with self._cond:
            self.latest, self.published[msn] = msn, time.time()
            self._cond.notify_all()

    def start(self, preroll: int) -> None:
        for _ in range(preroll):
            self.publish()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.segment_seconds):
            self.publish()

    def wait_for(self, msn: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.latest >= msn, timeout)

    def playlist(self) -> str:
        with self._cond:
            latest = self.latest
        first = max(0, latest - self.window + 1)
        lines = ["#EXTM3U", "#EXT-X-VERSION:9", f"#EXT-X-TARGETDURATION:{math.ceil(self.segment_seconds)}",
                 "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for msn in range(first, latest + 1):
            lines += [f"#EXTINF:{self.segment_seconds:.3f},", f"seg{msn}.ts"]
        return "\n".join(lines) + "\n"


class Origin:
    """An HTTP origin for the stream. `down` makes it drop every request unanswered, like a crash."""

    def __init__(self, stream: Stream):
        self.stream, self.down = stream, False
        self.requests: Counter[str] = Counter()
        self.queries: list[str] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.requests)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keepalive from the edge

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if origin.down:
                    self.close_connection = True
                    return
                url = urlsplit(self.path)
                with origin._lock:
                    origin.requests[url.path] += 1
                    origin.queries.append(url.query)
                if url.path.endswith(".m3u8"):
                    self._playlist(parse_qs(url.query))
                else:
                    path = origin.stream.root / url.path.removeprefix(SCOPE)
                    self._send(200, path.read_bytes(), "video/mp2t") if path.is_file() else self._send(404, b"")

            def _playlist(self, query: dict[str, list[str]]) -> None:
                stream = origin.stream
                if "_HLS_msn" in query:   # LL-HLS blocking reload: hold until the segment exists
                    if not stream.wait_for(int(query["_HLS_msn"][0]), 3 * stream.segment_seconds):
                        return self._send(503, b"")
                self._send(200, stream.playlist().encode(), "application/vnd.apple.mpegurl")

            def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Origin-Time", f"{time.time():.3f}")
                self.send_header("Cache-Control", "no-store")   # the edge's own TTLs must win
                self.end_headers()
                self.wfile.write(body)

        return Handler


class SyslogSink:
    """A UDP socket on 127.0.0.1 in the log exporter's place: keeps every datagram nginx sends it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)        # lets the reader notice close()
        self.port = self.sock.getsockname()[1]
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                continue
            with self._lock:
                self._lines.append(data.decode())

    def take(self) -> list[str]:
        """The lines received since the last take."""
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class EdgeServer:
    """A real nginx running the config rendered for `edge`; only host paths and ports are local."""

    def __init__(self, edge: Edge, workdir: Path, syslog_port: int = 0):
        self.edge, self.workdir = edge, workdir
        self.port = free_port()
        self.layout = edge_nginx.Layout(state_dir=str(workdir / "state"), secret_file=str(workdir / "secret.conf"),
                                        access_log=str(workdir / "access.log"), http_port=self.port,
                                        status_port=free_port(), syslog_port=syslog_port or free_port())
        self.conf = workdir / "nginx.conf"
        self.process: subprocess.Popen | None = None

    def write(self) -> list[str]:
        """Write config and secret snippet; the nginx command line that runs them."""
        (self.workdir / "state").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(edge_nginx.render(self.edge, self.layout))
        (self.workdir / "secret.conf").write_text(edge_nginx.secret_snippet(SECRET))
        if os.geteuid() == 0:
            for path in (self.workdir, *self.workdir.rglob("*")):
                os.chown(path, NOBODY, NOBODY)
        return [nginx_binary(), "-c", str(self.conf), "-e", "stderr"]

    def check(self) -> subprocess.CompletedProcess:
        """`nginx -t` on the written config."""
        return subprocess.run(self.write() + ["-t"], capture_output=True, text=True, timeout=30, **_unprivileged())

    def start(self) -> None:
        cmd = self.write() + ["-g", "daemon off;"]
        with open(self.workdir / "error.log", "w") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **_unprivileged())
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if get(self.port, "/healthz").status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not come up: {(self.workdir / 'error.log').read_text()}")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def _unprivileged() -> dict[str, object]:
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}


@contextmanager
def workdir() -> Iterator[Path]:
    """A temporary directory nginx's unprivileged user can reach (pytest's tmp_path is 0700 root's)."""
    with tempfile.TemporaryDirectory(prefix="peaknight-edge-") as tmp:
        Path(tmp).chmod(0o755)
        yield Path(tmp)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def cache(self) -> str:
        return self.headers.get("x-cache-status", "")


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> Reply:
    """One GET to the edge (on a kept-alive connection when given one)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return Reply(r.status, r.read(), {k.lower(): v for k, v in r.getheaders()})
    finally:
        if conn is None:
            c.close()


def signed(path: str, expires_in: int = 3600) -> str:
    sep = "&" if "?" in path else "?"
    return f"{path}{sep}{edge_nginx.sign(SCOPE, SECRET, int(time.time()) + expires_in)}"


@dataclass
class Viewer:
    """One player: follows one rendition's playlist and fetches every new segment in order."""

    rendition: str
    blocking: bool                        # LL-HLS blocking reloads, else polling every half segment
    segments: dict[int, float] = field(default_factory=dict)   # msn -> seconds to fetch
    playlist_ages: list[float] = field(default_factory=list)
    requests: int = 0
    from_cache: int = 0
    errors: list[str] = field(default_factory=list)
    live_at_stop: int = -1                # the stream's newest segment when the player stopped

    def play(self, port: int, stream: Stream, until: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        base = f"{SCOPE}{self.rendition}/"
        listed = self._playlist(port, conn, base + "index.m3u8")
        nxt = listed[-1] if listed else 0
        while time.time() < until and not self.errors:
            for msn in (m for m in listed if m >= nxt):
                self._segment(port, conn, base, msn, stream)
                nxt = msn + 1
            if self.blocking:
                listed = self._playlist(port, conn, f"{base}index.m3u8?_HLS_msn={nxt}")
            else:
                time.sleep(stream.segment_seconds / 2)
                listed = self._playlist(port, conn, base + "index.m3u8")
        self.live_at_stop = stream.latest
        conn.close()

    def _fetch(self, port: int, conn: http.client.HTTPConnection, path: str) -> Reply:
        reply = get(port, signed(path), conn)
        self.requests += 1
        self.from_cache += reply.cache in CACHED
        if reply.status != 200:
            self.errors.append(f"{path}: HTTP {reply.status}")
        return reply

    def _playlist(self, port: int, conn: http.client.HTTPConnection, path: str) -> list[int]:
        reply = self._fetch(port, conn, path)
        if reply.status == 200:
            self.playlist_ages.append(time.time() - float(reply.headers["x-origin-time"]))
        return [int(m) for m in re.findall(rb"^seg(\d+)\.ts$", reply.body, re.M)]

    def _segment(self, port: int, conn: http.client.HTTPConnection, base: str, msn: int, stream: Stream) -> None:
        start = time.time()
        reply = self._fetch(port, conn, f"{base}seg{msn}.ts")
        if reply.status == 200 and reply.body != stream.payload(self.rendition, msn):
            self.errors.append(f"seg{msn}.ts of {self.rendition}: wrong bytes")
        self.segments[msn] = time.time() - start


@dataclass
class Audience:
    viewers: list[Viewer]
    origin_requests: Counter[str]         # path -> requests that reached any origin while they played

    @property
    def client_requests(self) -> int:
        return sum(v.requests for v in self.viewers)

    @property
    def offload(self) -> float:
        return 1 - sum(self.origin_requests.values()) / self.client_requests

    @property
    def hit_ratio(self) -> float:
        return sum(v.from_cache for v in self.viewers) / self.client_requests

    def segment_latency(self, quantile: float) -> float:
        times = sorted(t for v in self.viewers for t in v.segments.values())
        return times[min(len(times) - 1, math.ceil(quantile * len(times)) - 1)]


def watch(edge: EdgeServer, stream: Stream, origins: list[Origin], viewers: int, seconds: float) -> Audience:
    """`viewers` players on the renditions in turn, half with blocking reloads, for `seconds`."""
    players = [Viewer(stream.renditions[i % len(stream.renditions)], blocking=i % 2 == 0) for i in range(viewers)]
    before = sum((o.snapshot() for o in origins), Counter())
    until = time.time() + seconds
    threads = [threading.Thread(target=p.play, args=(edge.port, stream, until), daemon=True) for p in players]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = sum((o.snapshot() for o in origins), Counter())
    return Audience(players, after - before)


@dataclass
class Setup:
    stream: Stream
    origins: list[Origin]
    edge: EdgeServer
    syslog: SyslogSink


@contextmanager
def running(edge: Edge, segment_seconds: float, preroll: int = 3) -> Iterator[Setup]:
    """The stream, one origin per origin of `edge` (first primary), and nginx in front of them,
    all torn down afterwards. The edge keeps its spec except origins and segment duration."""
    with workdir() as work:
        stream = Stream(work / "origin", tuple(r.name for r in edge.renditions), segment_seconds)
        origins = [Origin(stream) for _ in edge.origins]
        local = replace(edge, origins=tuple(o.address for o in origins), segment_seconds=segment_seconds)
        syslog = SyslogSink()
        server = EdgeServer(local, work / "edge", syslog.port)
        stream.start(preroll)
        try:
            server.start()
            yield Setup(stream, origins, server, syslog)
        finally:
            server.stop()
            syslog.close()
            stream.stop()
            for o in origins:
                o.close()
