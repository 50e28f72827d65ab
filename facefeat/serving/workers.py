"""How the service's processes run under uvicorn: a header read timeout for slow clients (the
HTTP protocol class handed to uvicorn) and worker processes that exit when their master dies.

uvicorn has a keep-alive timeout but none for a request's headers: a client that sends one header
byte every few seconds holds a connection (and a file descriptor) for ever. :class:`HeaderTimeoutProtocol`
closes a connection whose request headers are not complete within ``header_timeout_s`` of the
connection opening or of the previous response. The body's timeout is the request middleware's
(:class:`facefeat.serving.http.RequestContextMiddleware`, 408).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger("facefeat.serving")

#: what ``uvicorn.run(http=...)`` is given (a string, so that spawned workers import it too)
PROTOCOL = "facefeat.serving.workers:HeaderTimeoutProtocol"
DEFAULT_HEADER_TIMEOUT_S = 10.0
_header_timeout_s = DEFAULT_HEADER_TIMEOUT_S


def set_header_timeout(seconds: float) -> None:
    """The header read timeout of the connections this process accepts from now on."""
    global _header_timeout_s
    _header_timeout_s = float(seconds)


class HeaderTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol, closing connections whose request headers arrive too slowly."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        timer = getattr(self, "_ff_header_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        timer = getattr(self, "_ff_header_timer", None)
        if timer is not None:
            timer.cancel()
        self._ff_waiting_for = self.cycle  # the request before the one whose headers we wait for
        self._ff_header_timer = self.loop.call_later(_header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        if self.cycle is self._ff_waiting_for and not self.transport.is_closing():
            # no new request's headers since the timer started (an idle keep-alive connection is
            # closed by uvicorn's own, shorter, keep-alive timeout first)
            log.info("closing a connection from %s: request headers not received within %g s (header_timeout_s)",
                     self.client[0] if self.client else "?", _header_timeout_s)
            self.transport.close()


# -- workers follow their master ------------------------------------------------------------------

PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_S = 0.5
#: after the master is gone, a worker shuts down gracefully (in-flight requests finish) or is ended
EXIT_GRACE_S = 10.0


def exit_with_parent() -> None:
    """Make this (worker) process leave when its parent dies: ``PR_SET_PDEATHSIG`` (Linux) sends it
    SIGTERM at once (uvicorn's graceful shutdown), and a watchdog thread that sees the parent pid
    change does the same on any platform, ending the process for good after :data:`EXIT_GRACE_S`."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
                log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as exc:  # pragma: no cover - no libc prctl
            log.debug("prctl unavailable: %s", exc)
    if os.getppid() != parent:  # died between the two calls
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_INTERVAL_S)
        log.warning("facefeat serve: the master process (pid %d) is gone; this worker (pid %d) exits",
                    parent, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(EXIT_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="facefeat-parent-watch", daemon=True).start()
