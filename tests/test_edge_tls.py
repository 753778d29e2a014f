"""https origins with a real nginx shield: SNI and certificate verification against the operator's
CA bundle (edges[].originCaSecret), and a refusal when the certificate is not that CA's."""
from __future__ import annotations

import dataclasses
import ssl
import subprocess
from pathlib import Path

import pytest

import edge_harness as h
from conftest import require_tool
import nights
from peaknight.edges import nginx as edge_nginx

# Real nginx end to end: the real-tool tier (pyproject.toml markers).
pytestmark = pytest.mark.realtool

NAME = "origin.live.test"          # the SNI name nginx sends and verifies (originServerName)


def _ca_and_cert(tmp: Path, ca: str) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for NAME signed by it (openssl, as an operator would)."""
    openssl = require_tool("openssl")
    run = lambda *args: subprocess.run([openssl, *args], cwd=tmp, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca}",
        "-keyout", f"{ca}.key", "-out", f"{ca}.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={NAME}", "-keyout", "server.key", "-out", "server.csr")
    (tmp / "san.ext").write_text(f"subjectAltName=DNS:{NAME}\n")
    run("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
    return tmp / f"{ca}.crt", tmp / "server.crt", tmp / "server.key"


def _shield(work: Path, ca_file: Path) -> tuple[h.NginxServer, h.Origin, h.Stream]:
    stream = h.Stream({"480p": 1200}, 2.0, 0.5)
    stream.start(2)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(work / "server.crt", work / "server.key")
    origin = h.Origin(stream, tls)
    edge = nights.spec("broadcast").edges[0]
    port = origin.address.rsplit(":", 1)[1]
    local = dataclasses.replace(edge, origins=(f"https://127.0.0.1:{port}",), origin_server_name=NAME,
                                origin_ca_secret="origin-ca", pod_cpu=1)
    shield = h.NginxServer(local, edge_nginx.shield_tier(local), work / "shield", ca_file=str(ca_file))
    return shield, origin, stream


def test_shields_verify_https_origins_against_the_operators_ca():
    require_tool("nginx")
    with h.workdir() as work:
        ca, _, _ = _ca_and_cert(work, "operator-ca")
        shield, origin, stream = _shield(work, ca)
        shield.start()
        try:
            segment = f"/live/gala/480p/{h.segment_uri(0)}"
            reply = h.get(shield.port, segment)
            assert reply.status == 200 and reply.body.split(b" ")[1] == b"480p/seg0.m4s"
            assert origin.snapshot()[0][segment] == 1
        finally:
            shield.stop()
            origin.close()
            stream.stop()


def test_shields_refuse_an_origin_whose_certificate_is_not_the_operators_cas():
    require_tool("nginx")
    with h.workdir() as work:
        _ca_and_cert(work, "operator-ca")
        (work / "other").mkdir()
        other, _, _ = _ca_and_cert(work / "other", "other-ca")
        shield, origin, stream = _shield(work, other)
        shield.start()
        try:
            assert h.get(shield.port, f"/live/gala/480p/{h.segment_uri(0)}").status == 502
            assert sum(origin.snapshot()[0].values()) == 0                  # no request sent unverified
            assert "upstream SSL certificate verify error" in shield.logs()
        finally:
            shield.stop()
            origin.close()
            stream.stop()
