"""A stand-in S3-compatible store for the real AWS CLI: ListObjectsV2, HeadObject and GetObject of
one bucket held in memory, path-style, with the request lines it served recorded (and the access
key id each request was signed with)."""
from __future__ import annotations

import hashlib
import re
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

LAST_MODIFIED = "2026-12-01T00:00:00.000Z"


class FakeS3:
    """`with FakeS3("bucket", {"prefix/file": b"..."}) as s3:` serves at `s3.url`."""

    def __init__(self, bucket: str, objects: dict[str, bytes]):
        self.bucket, self.objects = bucket, objects
        self.requests: list[str] = []
        self.access_keys: set[str] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: bytes, content_type: str = "application/xml",
                       length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()

            def _object(self) -> tuple[str, bytes | None]:
                path = urlsplit(self.path).path
                bucket, _, key = unquote(path).lstrip("/").partition("/")
                return key, fake.objects.get(key) if bucket == fake.bucket else None

            def _record(self) -> None:
                fake.requests.append(f"{self.command} {self.path}")
                match = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
                if match:
                    fake.access_keys.add(match.group(1))

            def do_GET(self) -> None:
                self._record()
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path.strip("/") == fake.bucket and "list-type" in query:
                    prefix = query.get("prefix", [""])[0]
                    keys = sorted(k for k in fake.objects if k.startswith(prefix))
                    contents = "".join(
                        f"<Contents><Key>{escape(k)}</Key><LastModified>{LAST_MODIFIED}</LastModified>"
                        f"<ETag>\"{hashlib.md5(fake.objects[k]).hexdigest()}\"</ETag><Size>{len(fake.objects[k])}"
                        "</Size><StorageClass>STANDARD</StorageClass></Contents>" for k in keys)
                    body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>{fake.bucket}</Name>"
                            f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{len(keys)}</KeyCount><MaxKeys>1000</MaxKeys>"
                            f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>").encode()
                    self._reply(200, body)
                    self.wfile.write(body)
                    return
                key, data = self._object()
                if data is None:
                    self._reply(404, b"")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f"\"{hashlib.md5(data).hexdigest()}\"")
                self.send_header("Last-Modified", formatdate(usegmt=True))
                self.end_headers()
                self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._record()
                key, data = self._object()
                if data is None:
                    self._reply(404, b"")
                    return
                self._reply(200, b"", "application/octet-stream", len(data))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeS3":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
