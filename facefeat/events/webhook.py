"""Webhook target: each event is POSTed as JSON with ``X-Facefeat-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body under the shared secret, plus ``X-Facefeat-Event`` (type) and
``X-Facefeat-Id`` (the id to de-duplicate on). A 2xx answer is delivery; anything else, a timeout
or a refused connection is a :class:`DeliveryError` (the sender retries with backoff)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import socket
import ssl
import time
from urllib.parse import unquote, urlsplit

from facefeat.errors import ConfigError
from facefeat.events.config import WEBHOOK_SCHEMES, check_url
from facefeat.events.types import DeliveryError, redact

SIGNATURE_HEADER = "X-Facefeat-Signature"


def sign(body: bytes, secret: bytes) -> str:
    """The ``X-Facefeat-Signature`` value of ``body``: ``sha256=`` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: bytes) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return bool(header) and hmac.compare_digest(sign(body, secret), header.strip())


class WebhookTarget:
    """One webhook URL. ``check()`` at start: the host resolves and accepts connections, and, when
    the URL carries ``user:password@``, a ``HEAD`` with them is not answered 401/403."""

    kind = "webhook"

    def __init__(self, url: str, secret: bytes, timeout_s: float = 5.0):
        check_url(url, WEBHOOK_SCHEMES, "webhook")
        self.url, self.secret, self.timeout_s = url, secret, float(timeout_s)
        p = urlsplit(url)
        self.https = p.scheme.lower() == "https"
        self.host, self.port = p.hostname, p.port or (443 if self.https else 80)
        self.path = (p.path or "/") + (f"?{p.query}" if p.query else "")
        self.auth = None
        if p.username is not None:
            cred = f"{unquote(p.username)}:{unquote(p.password or '')}".encode("utf-8")
            self.auth = "Basic " + base64.b64encode(cred).decode("ascii")
        self.name = "webhook:" + redact(url)

    def __repr__(self) -> str:
        return f"WebhookTarget({redact(self.url)!r})"

    def check(self) -> None:
        """ConfigError naming the URL when its host does not resolve or refuses connections."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout_s):
                pass
        except socket.gaierror as exc:
            raise ConfigError(f"webhook {redact(self.url)}: host {self.host!r} does not resolve ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"webhook {redact(self.url)}: cannot connect to {self.host}:{self.port} "
                              f"({exc.strerror or exc}); is the receiver running?") from None
        if self.auth:  # the URL carries credentials: ask once (HEAD, no event) whether they are taken
            conn = self._connection()
            try:
                conn.request("HEAD", self.path, headers={"Authorization": self.auth, "User-Agent": "facefeat-events"})
                status = conn.getresponse().status
            except (OSError, http.client.HTTPException):
                return  # no answer to HEAD: the first event will tell
            finally:
                conn.close()
            if status in (401, 403):
                raise ConfigError(f"webhook {redact(self.url)}: the receiver answered HTTP {status} to the URL's "
                                  "credentials (wrong user name or password?)")

    def _connection(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def post(self, body: bytes, event_type: str, event_id: str) -> tuple[int, str]:
        """POST one body; ``(status, first 200 characters of the answer)``; raises DeliveryError
        when no answer came within the timeout."""
        headers = {"Content-Type": "application/json", "User-Agent": "facefeat-events",
                   SIGNATURE_HEADER: sign(body, self.secret), "X-Facefeat-Event": event_type,
                   "X-Facefeat-Id": event_id, "X-Facefeat-Timestamp": str(int(time.time()))}
        if self.auth:
            headers["Authorization"] = self.auth
        conn = self._connection()
        try:
            conn.request("POST", self.path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read(4096).decode("utf-8", "replace")
            return resp.status, text[:200]
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(f"webhook {redact(self.url)}: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()

    def send(self, body: str) -> str:
        """Deliver one event body (JSON text); DeliveryError unless the receiver answers 2xx."""
        doc = json.loads(body)
        status, text = self.post(body.encode("utf-8"), doc.get("type", ""), doc.get("id", ""))
        if not 200 <= status < 300:
            raise DeliveryError(f"webhook {redact(self.url)} answered HTTP {status}: {text[:100]!r}")
        return f"HTTP {status}"

    def test(self, body: str) -> tuple[bool, str]:
        """Send one (test) event; ``(ok, what the receiver answered)``."""
        doc = json.loads(body)
        t0 = time.perf_counter()
        try:
            status, text = self.post(body.encode("utf-8"), doc["type"], doc["id"])
        except DeliveryError as exc:
            return False, str(exc)
        ms = (time.perf_counter() - t0) * 1000
        return 200 <= status < 300, f"HTTP {status} in {ms:.0f} ms" + (f": {text.strip()[:120]}" if text.strip() else "")

    def announce(self, people, sources) -> None:
        """Webhooks have no discovery."""

    def close(self) -> None:
        """Nothing held between requests."""


__all__ = ["SIGNATURE_HEADER", "WebhookTarget", "sign", "verify_signature"]
