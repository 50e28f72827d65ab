"""Download an image URL safely: http(s) only, a total deadline, a byte cap, and (by default)
no request to loopback, private, link-local, multicast or cloud-metadata addresses - checked on
every redirect hop, on the address actually connected to (the name is resolved once per hop and
the connection pinned to the checked address, so DNS rebinding cannot swap it).

Error messages say what went wrong without echoing internal details (resolved addresses, redirect
targets, OS error texts), so a refused fetch cannot be used to map a private network.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from typing import Iterable
from urllib.parse import urljoin, urlsplit

from facefeat.errors import InputError, LimitError

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(nets: Iterable[str | _Net]) -> list[_Net]:
    out = []
    for n in nets or ():
        try:
            out.append(ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n)
        except ValueError:
            raise InputError(f"allowed network {n!r} is not an IP network (e.g. 10.0.0.5/32)") from None
    return out


def is_public_address(ip: str) -> bool:
    """True for a globally routable unicast address (not loopback, private, link-local - which holds
    the 169.254.169.254 metadata service -, shared, multicast, reserved or unspecified)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return bool(addr.is_global) and not addr.is_multicast


def _getaddrinfo(host: str, port: int, timeout: float, what: str) -> list:
    """``getaddrinfo`` within ``timeout`` (it has no timeout of its own: it runs in a daemon thread)."""
    out: dict = {}

    def run():
        try:
            out["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            out["error"] = exc

    t = threading.Thread(target=run, name="facefeat-resolve", daemon=True)
    t.start()
    t.join(max(0.0, timeout))
    if t.is_alive():
        raise InputError(f"{what}: resolving the image URL's host name took too long")
    if "error" in out:
        raise InputError(f"{what}: cannot resolve the host name of the image URL")
    return out["infos"]


def _resolve(host: str, port: int, allow_private: bool, allowed: list[_Net], what: str, timeout: float) -> str:
    infos = _getaddrinfo(host, port, timeout, what)
    ips = [info[4][0] for info in infos]
    if not ips:
        raise InputError(f"{what}: cannot resolve the host name of the image URL")
    if not allow_private:
        for ip in ips:
            a = ipaddress.ip_address(ip.split("%", 1)[0])
            if not is_public_address(ip) and not any(a in n for n in allowed):
                raise InputError(f"{what}: the image URL (or a redirect) points to a non-public address "
                                 "(loopback, private, link-local or metadata); refused")
    return ips[0]


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = self.raw_sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.raw_sock = sock  # during the handshake; then the TLS socket, which owns the descriptor
        self.sock = self.raw_sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch_url(url: str, *, timeout: float = DEFAULT_TIMEOUT_S, max_bytes: int = DEFAULT_MAX_BYTES,
              allow_private: bool = False, allowed_networks: Iterable[str] = (),
              max_redirects: int = MAX_REDIRECTS, what: str = "image") -> bytes:
    """The body of ``url`` (http or https) in at most ``timeout`` seconds all told (DNS included)
    and ``max_bytes`` bytes; :class:`InputError` (:class:`LimitError` when too large) otherwise.

    ``allow_private=False`` refuses non-public addresses on every hop, except those inside
    ``allowed_networks`` (CIDR strings an operator trusts, e.g. an internal image host).
    """
    allowed = _networks(allowed_networks)
    deadline = time.monotonic() + float(timeout)
    for _hop in range(max_redirects + 1):
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise InputError(f"{what}: only http and https image URLs are supported")
        try:
            host, port = parts.hostname, parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise InputError(f"{what}: the image URL has an invalid port") from None
        if not host:
            raise InputError(f"{what}: the image URL has no host name")
        ip = _resolve(host, port, allow_private, allowed, what, deadline - time.monotonic())
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InputError(f"{what}: downloading the image URL took longer than {timeout:g} s")
        conn = (_PinnedHTTPS if scheme == "https" else _PinnedHTTP)(host, port, ip, remaining)
        # the watchdog enforces the total deadline: socket timeouts only bound each single read
        watchdog = threading.Timer(remaining, _abort, args=(conn,))
        watchdog.daemon = True
        watchdog.start()
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", path, headers={"User-Agent": "facefeat", "Accept": "image/*",
                                               "Accept-Encoding": "identity"})
            resp = conn.getresponse()
            if resp.status in _REDIRECTS:
                loc = resp.getheader("Location")
                if not loc:
                    raise InputError(f"{what}: the image URL redirects without a Location")
                url = urljoin(url, loc)
                continue
            if resp.status != 200:
                raise InputError(f"{what}: the image URL answered HTTP {resp.status}")
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise LimitError(f"{what}: the image URL's body is {int(length):,} bytes, above the limit "
                                 f"of {max_bytes:,} bytes")
            chunks, got = [], 0
            while True:
                chunk = resp.read(min(65536, max_bytes + 1 - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
                if got > max_bytes:
                    raise LimitError(f"{what}: the image URL's body is above the limit of {max_bytes:,} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError
            return b"".join(chunks)
        except (TimeoutError, socket.timeout):
            raise InputError(f"{what}: downloading the image URL took longer than {timeout:g} s") from None
        except (OSError, http.client.HTTPException, ssl.SSLError):
            if time.monotonic() >= deadline:
                raise InputError(f"{what}: downloading the image URL took longer than {timeout:g} s") from None
            raise InputError(f"{what}: cannot download the image URL (connection failed)") from None
        finally:
            watchdog.cancel()
            conn.close()
    raise InputError(f"{what}: the image URL redirects more than {max_redirects} times")


def _abort(conn: http.client.HTTPConnection) -> None:
    # the raw socket: http.client drops conn.sock once the response owns the connection
    sock = getattr(conn, "raw_sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
