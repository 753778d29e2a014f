"""An edge's origins as structured objects: scheme, host and port, each checked against what nginx's
`server` directive and a TLS handshake accept.

A stack file writes `host:port` (plain HTTP), `http://host:port` or `https://host[:port]`. Templates
render only the fields of `Origin`, never the raw string, so nothing a stack file holds beyond a
host name and a port number can reach nginx.conf.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_PORTS = {"http": 80, "https": 443}
# A DNS name (RFC 1123 labels) or a dotted IPv4 address: what `server` takes and SNI can carry.
# Matched whole (fullmatch; \Z in the lookahead): `$` would also match before a trailing newline.
_HOST = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_ORIGIN = re.compile(r"(?:(?P<scheme>[a-z]+)://)?(?P<host>[^:/]+)(?::(?P<port>[0-9]{1,5}))?")


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """What nginx's upstream `server` directive takes."""
        return f"{self.host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.address}"


def check_host(host: str) -> str:
    if not _HOST.fullmatch(host):
        raise ValueError("a DNS name or IPv4 address as host (letters, digits, '-', '.')")
    return host


def parse(text: str) -> Origin:
    """One origin, or ValueError saying what was expected (config.py prints it on one line)."""
    match = _ORIGIN.fullmatch(text)
    if not match:
        raise ValueError("host:port, http://host:port or https://host[:port] (no path, user or query)")
    scheme = match["scheme"] or "http"
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"scheme http or https, not {scheme!r}")
    host = check_host(match["host"])
    if match["port"] is None and match["scheme"] is None:
        raise ValueError("a port in host:port (or a scheme: http://host, https://host)")
    port = int(match["port"]) if match["port"] is not None else DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise ValueError(f"a port from 1 to 65535, not {port}")
    # The well-known port of the other scheme cannot be right: plain HTTP sent to a TLS listener
    # (or a handshake to a plain one) fails on every request.
    for other, well_known in DEFAULT_PORTS.items():
        if other != scheme and port == well_known:
            raise ValueError(f"{other}:// for port {port} (it is the {other} port), or another port for {scheme}")
    return Origin(scheme, host, port)


def of(edge: Any) -> tuple[Origin, ...]:
    """An Edge's origins, structured (the spec validated each string already); first is primary."""
    return tuple(parse(o) for o in edge.origins)
