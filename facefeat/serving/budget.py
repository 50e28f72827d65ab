"""Per-request budgets of the service and fair sharing of its pipelines between clients.

Every request that decodes images gets a :class:`RequestBudget`: the total decoded pixels of all
its images (checked from the headers before anything is decoded, 413) and a deadline (waiting for
a pipeline past it is a 503, work that runs past it a 504). Decoding and inference happen while
holding one of the service's pipelines, handed out by :class:`FairSlots`: a freed pipeline goes to
the waiting client (API key, or address without keys) that holds fewest, so a few heavy requests
of one client cannot starve another client's normal one (it waits for the first pipeline to free
up, not for the heavy queue); optionally one client holds at most ``per_client`` at once. A lone
client still gets every pipeline (the sharing costs nothing when nobody waits).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from facefeat.errors import LimitError
from facefeat.serving.errors import ServiceBusy, ServingError


class DeadlineExceeded(ServingError):
    """A request's work ran past its deadline (``request_timeout_s``)."""

    status = 504


class RequestBudget:
    """What one request may spend: decoded pixels (all images together) and wall time."""

    def __init__(self, max_pixels: int, timeout_s: float, client: str = "-"):
        self.max_pixels = int(max_pixels)
        self.timeout_s = float(timeout_s)
        self.client = client
        self.pixels = 0
        self.deadline = time.monotonic() + self.timeout_s

    def charge(self, width: int, height: int, what: str) -> None:
        """Count an image's pixels (from its header) against the budget; LimitError (413) over it."""
        self.pixels += int(width) * int(height)
        if self.pixels > self.max_pixels:
            raise LimitError(f"{what}: the request's images hold {self.pixels:,} pixels in all, above the "
                             f"per-request budget of {self.max_pixels:,} (max_request_pixels); send fewer or "
                             "smaller images per request")

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, stage: str) -> None:
        """DeadlineExceeded (504) once the deadline has passed."""
        if self.remaining() <= 0:
            raise DeadlineExceeded(f"the request ran past its deadline of {self.timeout_s:g} s (request_timeout_s) "
                                   f"{stage}; send smaller or fewer images, or retry when the server is less busy")


def client_id(api_key: str | None, address: str | None) -> str:
    """Who a request is from, for fairness: its API key (hashed, never kept) or its address."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return "addr:" + (address or "?")


def request_client(request: Any) -> str:
    """:func:`client_id` of a Starlette request: its API key (``X-API-Key`` or bearer), else its address."""
    auth = request.headers.get("authorization") or ""
    key = request.headers.get("x-api-key") or (auth[7:].strip() if auth[:7].lower() == "bearer " else None)
    return client_id(key, request.client.host if request.client else None)


class FairSlots:
    """``n`` slots shared fairly: a client holds at most ``per_client``; a freed slot goes to the
    waiting client holding fewest slots (first come first among equals)."""

    def __init__(self, n: int, per_client: int):
        self.n = int(n)
        self.per_client = max(1, min(int(per_client), self.n))
        self._cond = threading.Condition()
        self._held: dict[str, int] = {}
        self._free = self.n
        self._waiting: dict[int, str] = {}
        self._seq = itertools.count()

    def held(self, client: str) -> int:
        with self._cond:
            return self._held.get(client, 0)

    def _first_eligible(self) -> int | None:
        best = None
        for ticket, client in self._waiting.items():  # insertion order: first come first
            held = self._held.get(client, 0)
            if held < self.per_client and (best is None or held < best[0]):
                best = (held, ticket)
        return None if best is None else best[1]

    def acquire(self, client: str, timeout: float) -> None:
        """Take a slot for ``client``, waiting at most ``timeout`` s (then ServiceBusy, 503)."""
        end = time.monotonic() + max(0.0, timeout)
        with self._cond:
            ticket = next(self._seq)
            self._waiting[ticket] = client
            try:
                while not (self._free > 0 and self._first_eligible() == ticket):
                    left = end - time.monotonic()
                    if left <= 0:
                        raise ServiceBusy(f"the server is busy: no pipeline became free within {timeout:.3g} s "
                                          "(request_timeout_s); retry later")
                    self._cond.wait(left)
                self._free -= 1
                self._held[client] = self._held.get(client, 0) + 1
            finally:
                del self._waiting[ticket]
                self._cond.notify_all()

    def release(self, client: str) -> None:
        with self._cond:
            left = self._held.get(client, 0) - 1
            if left > 0:
                self._held[client] = left
            else:
                self._held.pop(client, None)
            self._free += 1
            self._cond.notify_all()

    @contextmanager
    def slot(self, client: str, timeout: float) -> Iterator[None]:
        self.acquire(client, timeout)
        try:
            yield
        finally:
            self.release(client)
