"""A live LL-HLS stream, its origins, real nginx processes running the rendered shield and edge
configs, and viewers in worker processes.

Shared by the edge tests and bench/edge_offload so both measure the same setup. Only 127.0.0.1 is
ever contacted. Media objects are sized for their bitrate (a 0.5 s part of 6 Mbps is 375 kB) and
carry a one-line header naming the object, its publication time and the CRC-32 of the rest, so a
viewer checks a payload with one zlib call instead of comparing it byte by byte.
"""
from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import re
import resource
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from peaknight.edges import nginx as edge_nginx
from peaknight.spec.stack import Edge

SCOPE = "/live/gala/"              # /<app>/<stream>/: what a viewer's token signs
SECRET = "test-only-secure-link-secret"
NOBODY = 65534                     # nginx runs unprivileged here as in the pod, even when tests run as root
_NOISE = random.Random(0).randbytes(4 << 20)   # payload bodies are slices of this: cheap to make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the stream ---------------------------------------------------------------------------------

def part_uri(msn: int, part: int) -> str:
    return f"seg{msn}.part{part}.m4s"


def segment_uri(msn: int) -> str:
    return f"seg{msn}.m4s"


class Stream:
    """A live LL-HLS stream: a part per rendition every part duration, a segment every
    `parts` parts, a sliding playlist that lists the parts of its last two segments."""

    def __init__(self, renditions: dict[str, int], segment_seconds: float, part_seconds: float, window: int = 6):
        self.renditions, self.window = renditions, window
        self.parts = max(1, round(segment_seconds / part_seconds))
        self.part_seconds = segment_seconds / self.parts
        self.segment_seconds = segment_seconds
        self.latest = (-1, self.parts - 1)            # (msn, part) last published
        self.published: dict[tuple[int, int], float] = {}
        self._objects: dict[str, bytes] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _make(self, rendition: str, name: str, seconds: float, now: float) -> bytes:
        size = max(1024, int(self.renditions[rendition] * 1000 * seconds / 8))
        start = zlib.crc32(f"{rendition}/{name}".encode()) % (len(_NOISE) - size)
        body = _NOISE[start:start + size]
        return f"PKN {rendition}/{name} {now:.3f} {zlib.crc32(body)}\n".encode() + body

    def publish(self) -> None:
        msn, part = self.latest
        msn, part = (msn + 1, 0) if part == self.parts - 1 else (msn, part + 1)
        now = time.time()
        made = {f"{r}/{part_uri(msn, part)}": self._make(r, part_uri(msn, part), self.part_seconds, now)
                for r in self.renditions}
        if part == self.parts - 1:
            made.update({f"{r}/{segment_uri(msn)}": self._make(r, segment_uri(msn), self.segment_seconds, now)
                         for r in self.renditions})
        with self._cond:
            self._objects.update(made)
            old = msn - 2 * self.window
            for key in [k for k in self._objects if f"/seg{old}." in k]:
                del self._objects[key]
            self.latest = (msn, part)
            self.published[(msn, part)] = now
            self._cond.notify_all()

    def object(self, path: str) -> bytes | None:
        with self._cond:
            return self._objects.get(path)

    def start(self, preroll_segments: int) -> None:
        for _ in range(preroll_segments * self.parts):
            self.publish()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        next_at = time.time() + self.part_seconds
        while not self._stop.wait(max(0.0, next_at - time.time())):
            self.publish()
            next_at += self.part_seconds

    def wait_for(self, msn: int, part: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.latest >= (msn, part), timeout)

    def playlist(self) -> str:
        with self._cond:
            msn, part = self.latest
        complete = msn if part == self.parts - 1 else msn - 1
        first = max(0, complete - self.window + 1)
        lines = ["#EXTM3U", "#EXT-X-VERSION:9", f"#EXT-X-TARGETDURATION:{math.ceil(self.segment_seconds)}",
                 f"#EXT-X-PART-INF:PART-TARGET={self.part_seconds:.3f}",
                 f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * self.part_seconds:.3f}",
                 f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for m in range(first, msn + 1):
            last = self.parts - 1 if m <= complete else part
            if m >= complete - 1:
                lines += [f'#EXT-X-PART:DURATION={self.part_seconds:.3f},URI="{part_uri(m, p)}"' for p in range(last + 1)]
            if m <= complete:
                lines += [f"#EXTINF:{self.segment_seconds:.3f},", segment_uri(m)]
        return "\n".join(lines) + "\n"


# ---- origins --------------------------------------------------------------------------------------

FAULTS = ("dead", "hung", "slow", "500")


class _OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256    # a real origin's accept backlog, not socketserver's 5: failover opens many at once


class Origin:
    """An HTTP origin for the stream. `fault` makes it fail as a bad night would: dead (closes every
    connection unanswered), hung (never answers), slow (answers after `slow_seconds`, 3 s unless
    set) or 500 (answers 500)."""

    def __init__(self, stream: Stream, tls: ssl.SSLContext | None = None):
        self.stream, self.fault, self.slow_seconds = stream, "", 3.0
        self.requests: Counter[str] = Counter()
        self.bytes = 0
        self.queries: list[str] = []
        self._lock = threading.Lock()
        self.server = _OriginServer(("127.0.0.1", 0), self._handler())
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.fault = ""
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> tuple[Counter[str], int]:
        with self._lock:
            return Counter(self.requests), self.bytes

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keepalive from the shields

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fault = origin.fault
                if fault == "dead":
                    self.close_connection = True
                    return
                if fault == "hung":
                    while origin.fault == "hung":
                        time.sleep(0.05)
                    self.close_connection = True
                    return
                if fault == "slow":
                    time.sleep(origin.slow_seconds)
                url = urlsplit(self.path)
                with origin._lock:
                    origin.requests[url.path] += 1
                    origin.queries.append(url.query)
                if fault == "500":
                    return self._send(500, b"origin failure\n")
                if url.path.endswith(".m3u8"):
                    return self._playlist(parse_qs(url.query))
                body = origin.stream.object(url.path.removeprefix(SCOPE))
                self._send(200, body, "video/mp4") if body is not None else self._send(404, b"")

            def _playlist(self, query: dict[str, list[str]]) -> None:
                stream = origin.stream
                if "_HLS_msn" in query:   # LL-HLS blocking reload: hold until the part exists
                    msn = int(query["_HLS_msn"][0])
                    part = int(query.get("_HLS_part", [stream.parts - 1])[0])
                    if not stream.wait_for(msn, part, 3 * stream.segment_seconds):
                        return self._send(503, b"")
                self._send(200, stream.playlist().encode(), "application/vnd.apple.mpegurl")

            def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Origin-Time", f"{time.time():.3f}")
                self.send_header("Cache-Control", "no-store")   # the tiers' own TTLs must win
                self.end_headers()
                self.wfile.write(body)
                with origin._lock:
                    origin.bytes += len(body)

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


# ---- nginx ----------------------------------------------------------------------------------------

class NginxServer:
    """A real nginx running the config rendered for one tier of `edge`; only host paths and ports
    are local."""

    def __init__(self, edge: Edge, tier: edge_nginx.Tier, workdir: Path, syslog_port: int = 0, ca_file: str = ""):
        self.edge, self.tier, self.workdir = edge, tier, workdir
        self.port = free_port()
        self.layout = edge_nginx.Layout(state_dir=str(workdir / "state"), secret_file=str(workdir / "secret.conf"),
                                        access_log=str(workdir / "access.log"), http_port=self.port,
                                        status_port=free_port(), syslog_port=syslog_port or free_port(),
                                        origin_ca_file=ca_file or edge_nginx.Layout.origin_ca_file)
        self.conf = workdir / "nginx.conf"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def write(self) -> list[str]:
        """Write config and secret snippet; the nginx command line that runs them."""
        (self.workdir / "state").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(edge_nginx.render(self.edge, self.tier, self.layout))
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
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not come up: {(self.workdir / 'error.log').read_text()}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers so far (from /proc)."""
        if not self.process:
            return 0.0
        pids = [self.process.pid]
        try:
            pids += [int(p) for p in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()]
        except OSError:
            pass
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def logs(self) -> str:
        """Everything this nginx wrote: error output and access log."""
        return "".join(p.read_text(errors="replace") for p in (self.workdir / "error.log", self.workdir / "access.log")
                       if p.exists())

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


def signed(path: str, expires_in: int = 3600) -> str:
    sep = "&" if "?" in path else "?"
    return f"{path}{sep}{edge_nginx.sign(SCOPE, SECRET, int(time.time()) + expires_in)}"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def cache(self) -> str:
        return self.headers.get("x-cache-status", "")


def get(port: int, path: str) -> Reply:
    """One GET on its own connection (tests); viewers use the asyncio client below."""
    return asyncio.run(_one(port, path))


async def _one(port: int, path: str) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await _request(reader, writer, path)
    finally:
        writer.close()


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> Reply:
    """HTTP/1.1 GET on a kept-alive connection: status, headers, a Content-Length or chunked body."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        body = b""
    return Reply(status, body, headers)


# ---- viewers --------------------------------------------------------------------------------------

@dataclass
class ViewerPlan:
    port: int                 # the edge pod this viewer's player talks to
    rendition: str
    low_latency: bool         # LL-HLS: parts and blocking reloads; else whole segments, polling
    start_after: float        # players join over time, not in step


@dataclass
class Report:
    """What a group of viewers saw; added up across worker processes."""

    requests: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)                        # when each error happened
    part_times: list[tuple[float, float, float]] = field(default_factory=list)   # (start, seconds, age at start)
    segment_times: list[tuple[float, float, float]] = field(default_factory=list)   # (start, seconds, age at start)
    stalls: list[tuple[float, float, str]] = field(default_factory=list)        # (start, seconds without media, object late)
    cache: Counter = field(default_factory=Counter)
    cpu_seconds: float = 0.0

    def merge(self, other: "Report") -> None:
        self.requests += other.requests
        self.bytes += other.bytes
        self.errors += other.errors
        self.failed_at += other.failed_at
        self.part_times += other.part_times
        self.segment_times += other.segment_times
        self.stalls += other.stalls
        self.cache.update(other.cache)
        self.cpu_seconds += other.cpu_seconds


def _check(body: bytes, expected: str) -> str:
    """'' if the payload is the object asked for and intact, else what is wrong with it."""
    head, _, rest = body.partition(b"\n")
    fields = head.split()
    if len(fields) != 4 or fields[1].decode() != expected:
        return f"{expected}: wrong object {head[:60]!r}"
    if zlib.crc32(rest) != int(fields[3]):
        return f"{expected}: corrupt payload"
    return ""


class _Connection:
    """A viewer's kept-alive connection to its edge pod, opened again after one breaks."""

    def __init__(self, port: int):
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> Reply:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            return await _request(*self.streams, path)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.streams:
            self.streams[1].close()
            self.streams = None


# hls.js's defaults (src/config.ts: fragLoadingRetryDelay and levelLoadingRetryDelay 1000 ms,
# fragLoadingMaxRetry 6): how a player that retries waits after a failed request, and how often.
RETRY_DELAY_SECONDS = 1.0
RETRIES = 6


class _Player:
    """One viewer. LL-HLS viewers play as hls.js does (src/controller/base-playlist-controller.ts,
    lowLatencyMode): a playlist loop that asks, back to back, for the blocking reload of the part
    after the last one its newest playlist lists, beside a media loop that fetches every part a
    playlist has listed, on a connection of its own. A part already listed is fetched at once; only
    the next unpublished one waits on a reload. Segment viewers poll the plain playlist.

    A failed request ends the viewer (and its worker's others: the first error is what a test
    reports), or, with `retry`, is retried as hls.js retries it while the viewer plays on."""

    def __init__(self, plan: ViewerPlan, parts: int, part_seconds: float, segment_seconds: float, report: Report,
                 retry: bool = False):
        self.plan, self.parts, self.part_seconds, self.segment_seconds = plan, parts, part_seconds, segment_seconds
        self.report, self.retry = report, retry
        self.base = f"{SCOPE}{plan.rendition}/"
        self.listed = (-1, -1)                  # (msn, part): the last part a playlist received lists
        self.news = asyncio.Event()             # a playlist listing more parts has arrived (or a loop ended)

    def playing(self, until: float) -> bool:
        return time.time() < until and (self.retry or not self.report.errors)

    async def fetch(self, conn: _Connection, path: str, expected: str = "") -> Reply | None:
        """The object at `path` (checked against `expected` when given), or None once it failed."""
        for attempt in range(1 + (RETRIES if self.retry else 0)):
            try:
                reply = await conn.get(signed(path))
            except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                problem = f"{path}: {type(err).__name__}"
            else:
                self.report.requests += 1
                self.report.bytes += len(reply.body)
                self.report.cache[reply.cache] += 1
                problem = f"{path}: HTTP {reply.status}" if reply.status != 200 else expected and _check(reply.body, expected)
                if not problem:
                    return reply
            self.report.errors.append(problem + (f" (retry {attempt})" if attempt else ""))
            self.report.failed_at.append(time.time())
            if not self.retry:
                return None
            await asyncio.sleep(RETRY_DELAY_SECONDS)
        return None

    async def media(self, conn: _Connection, name: str) -> tuple[float, float] | None:
        start = time.time()
        reply = await self.fetch(conn, self.base + name, f"{self.plan.rendition}/{name}")
        if reply is None:
            return None
        published = float(reply.body.split(b" ", 3)[2])
        return time.time() - start, start - published

    def _read_parts(self, body: bytes) -> None:
        parts = re.findall(rb'URI="seg(\d+)\.part(\d+)\.m4s"', body)
        if parts:
            newest = (int(parts[-1][0]), int(parts[-1][1]))
            if newest > self.listed:
                self.listed = newest
                self.news.set()

    async def reload(self, until: float) -> None:
        """The playlist loop: the blocking reload of the part after the last one listed, again as
        soon as each answer arrives."""
        conn = _Connection(self.plan.port)
        try:
            while self.playing(until):
                msn, part = self.listed
                msn, part = (msn + 1, 0) if part == self.parts - 1 else (msn, part + 1)
                reply = await self.fetch(conn, f"{self.base}index.m3u8?_HLS_msn={msn}&_HLS_part={part}")
                if reply is None:
                    return
                self._read_parts(reply.body)
        finally:
            conn.close()
            self.news.set()                     # the media loop never waits on a loop that ended

    async def play(self, until: float) -> None:
        await asyncio.sleep(self.plan.start_after)
        conn = _Connection(self.plan.port)
        reloads: asyncio.Task | None = None
        try:
            reply = await self.fetch(conn, self.base + "index.m3u8")
            if reply is None:
                return
            # Players start a hold-back behind live (three parts, or three segments when polling)
            # and stall when that buffer runs dry before the next object arrives.
            if self.plan.low_latency:
                self._read_parts(reply.body)
                msn, part = divmod(self.listed[0] * self.parts + self.listed[1] - 2, self.parts)
                duration = self.part_seconds
                reloads = asyncio.create_task(self.reload(until))
            else:
                listed = [int(m) for m in re.findall(rb"^seg(\d+)\.m4s$", reply.body, re.M)]
                msn = max(listed[0], listed[-1] - 2)
                duration = self.segment_seconds
            buffer_end, fetched = 0.0, 0
            while self.playing(until):
                if reloads is not None:
                    while (msn, part) > self.listed and not reloads.done():
                        self.news.clear()
                        await self.news.wait()
                    if (msn, part) > self.listed:
                        return
                name = part_uri(msn, part) if self.plan.low_latency else segment_uri(msn)
                got = await self.media(conn, name)
                if got is None:
                    return
                now = time.time()
                (self.report.part_times if self.plan.low_latency else self.report.segment_times).append(
                    (now - got[0], *got))
                fetched += 1
                if fetched == 3:                 # the hold-back is buffered: playback starts
                    buffer_end = now + 3 * duration
                elif fetched > 3:
                    if now > buffer_end:
                        self.report.stalls.append((buffer_end, now - buffer_end, f"{self.plan.rendition}/{name}"))
                    buffer_end = max(buffer_end, now) + duration
                if self.plan.low_latency:
                    msn, part = (msn + 1, 0) if part == self.parts - 1 else (msn, part + 1)
                    continue
                msn += 1
                while time.time() < until:
                    reply = await self.fetch(conn, self.base + "index.m3u8")
                    if reply is None:
                        return
                    if segment_uri(msn).encode() + b"\n" in reply.body:
                        break
                    await asyncio.sleep(self.segment_seconds / 2)
        finally:
            conn.close()
            if reloads is not None:
                reloads.cancel()
                await asyncio.gather(reloads, return_exceptions=True)


def _watch_group(plans: list[ViewerPlan], parts: int, part_seconds: float, segment_seconds: float,
                 until: float, retry: bool) -> Report:
    """One worker process: its viewers as asyncio tasks; reports its own CPU time."""
    report = Report()

    async def main() -> None:
        players = [_Player(p, parts, part_seconds, segment_seconds, report, retry) for p in plans]
        await asyncio.gather(*(p.play(until) for p in players))

    asyncio.run(main())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report.cpu_seconds = usage.ru_utime + usage.ru_stime
    report.errors = report.errors[:200]
    return report


def watch(ports: list[int], stream: Stream, viewers: int, seconds: float, processes: int = 2,
          seed: int = 1, low_latency_share: float = 0.5, retry: bool = False) -> Report:
    """`viewers` players spread over the edge pods and renditions, `low_latency_share` of them
    LL-HLS, joining over the first segment, for `seconds`; run in `processes` worker processes.
    With `retry`, players retry a failed request as hls.js does and play on."""
    rng = random.Random(seed)
    names = list(stream.renditions)
    plans = [ViewerPlan(ports[i % len(ports)], names[i % len(names)], rng.random() < low_latency_share,
                        rng.uniform(0, stream.segment_seconds)) for i in range(viewers)]
    until = time.time() + seconds
    groups = [plans[i::processes] for i in range(processes)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes) as pool:
        results = pool.starmap(_watch_group, [(g, stream.parts, stream.part_seconds, stream.segment_seconds, until,
                                               retry) for g in groups if g])
    total = Report()
    for r in results:
        total.merge(r)
    return total


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else float("nan")


# ---- the whole setup --------------------------------------------------------------------------------

@dataclass
class Setup:
    stream: Stream
    origins: list[Origin]
    shields: list[NginxServer]
    edges: list[NginxServer]
    syslog: SyslogSink                  # the edge pods' per-request lines (the shields' go elsewhere)

    @property
    def ports(self) -> list[int]:
        return [e.port for e in self.edges]

    def nginx_cpu(self) -> float:
        return sum(n.cpu_seconds() for n in (*self.shields, *self.edges))

    def origin_snapshot(self) -> tuple[Counter[str], int]:
        paths: Counter[str] = Counter()
        sent = 0
        for o in self.origins:
            p, b = o.snapshot()
            paths += p
            sent += b
        return paths, sent


@contextmanager
def running(edge: Edge, segment_seconds: float, part_seconds: float, shields: int = 2, edges: int = 2,
            workers: int = 1, preroll: int = 4, renditions: tuple[str, ...] = (),
            prepare: Callable[[NginxServer], Callable[[], None]] | None = None) -> Iterator[Setup]:
    """The stream, one origin per origin of `edge` (first primary), `shields` nginx shields in front
    of them and `edges` nginx edge pods in front of those, all torn down afterwards. The spec keeps
    every caching rule; only origins, timings of the stream and worker count are local (and the
    stream carries only `renditions` of the ladder when given). `prepare` sees each nginx before it
    starts (to mount a volume on its state directory, say) and returns what undoes that once it
    has stopped."""
    with workdir() as work:
        stream = Stream({r.name: r.bitrate_kbps for r in edge.renditions if not renditions or r.name in renditions},
                        segment_seconds, part_seconds)
        origins = [Origin(stream) for _ in edge.origins]
        local = replace(edge, origins=tuple(o.address for o in origins), segment_seconds=segment_seconds,
                        part_seconds=stream.part_seconds, pod_cpu=workers)
        syslog, shield_syslog = SyslogSink(), SyslogSink()
        shield_servers = [NginxServer(local, edge_nginx.shield_tier(local), work / f"shield{i}", shield_syslog.port)
                          for i in range(shields)]
        tier = edge_nginx.edge_tier(s.address for s in shield_servers)
        edge_servers = [NginxServer(local, tier, work / f"edge{i}", syslog.port) for i in range(edges)]
        stream.start(preroll)
        started: list[NginxServer] = []
        undo: list[Callable[[], None]] = []
        try:
            for server in (*shield_servers, *edge_servers):
                if prepare:
                    undo.append(prepare(server))
                server.start()
                started.append(server)
            yield Setup(stream, origins, shield_servers, edge_servers, syslog)
        finally:
            for server in started:
                server.stop()
            for step in undo:
                step()
            syslog.close()
            shield_syslog.close()
            stream.stop()
            for o in origins:
                o.close()
