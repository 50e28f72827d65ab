"""facefeat.io.fetch: the safe URL fetcher (loopback servers only, bounded)."""

from __future__ import annotations

import http.server
import threading

import pytest

from facefeat.errors import InputError, LimitError
from facefeat.io.fetch import fetch_url, is_public_address


@pytest.mark.parametrize("ip,public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("0.0.0.0", False), ("::1", False), ("fe80::1", False), ("fd00:ec2::254", False), ("::ffff:127.0.0.1", False),
    ("224.0.0.1", False), ("255.255.255.255", False),
])
def test_public_addresses(ip, public):
    assert is_public_address(ip) is public


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", "/data")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"x" * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def base():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch(base):
    with pytest.raises(InputError, match="non-public address"):
        fetch_url(base + "/data")  # loopback is refused by default
    assert fetch_url(base + "/hop", allow_private=True) == b"x" * 1000
    assert fetch_url(base + "/hop", allowed_networks=["127.0.0.0/8"]) == b"x" * 1000
    with pytest.raises(LimitError, match="1,000 bytes"):
        fetch_url(base + "/data", allow_private=True, max_bytes=999)
    with pytest.raises(InputError, match="redirects more than 5"):
        fetch_url(base + "/loop", allow_private=True)
    with pytest.raises(InputError, match="only http and https"):
        fetch_url("file:///etc/passwd")
    with pytest.raises(InputError, match="not an IP network"):
        fetch_url(base + "/data", allowed_networks=["nonsense"])
    with pytest.raises(InputError, match="cannot download|took longer"):
        fetch_url("http://127.0.0.1:9/x", allow_private=True, timeout=5)  # nothing listens on port 9


def test_read_image_uses_the_fetcher(base, monkeypatch):
    """The library's read_image fetches URLs through fetch_url (deadline and byte cap)."""
    import facefeat.io.fetch as fetch

    seen = {}

    def fake(url, **kw):
        seen.update(kw, url=url)
        raise InputError("stop")

    monkeypatch.setattr(fetch, "fetch_url", fake)
    from facefeat.io import read_image

    with pytest.raises(InputError, match="stop"):
        read_image(base + "/data")
    assert seen["url"] == base + "/data" and seen["timeout"] > 0 and seen["max_bytes"] > 0
