"""Event types, the event record (an id for de-duplication, JSON body), and small helpers shared by
the targets: names safe for MQTT topics and Home Assistant ids, URLs with their password hidden."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

from facefeat.errors import FacefeatError

#: every event type a recogniser emits (``test`` is what ``facefeat events test`` sends)
EVENT_TYPES = ("face_recognized", "face_unknown", "person_arrived", "person_left", "person_added",
               "person_removed", "test")


class DeliveryError(FacefeatError):
    """A target did not accept an event (down, refused, timed out, answered an error); retried."""


@dataclass
class Event:
    """One event: ``type`` (one of :data:`EVENT_TYPES`), a unique ``id`` (receivers de-duplicate on
    it: delivery is at-least-once), wall-clock ``ts`` (seconds since the epoch), the ``source``
    (video, stream, camera or service) and the type's own fields in ``data``."""

    type: str
    source: str = ""
    data: dict = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ts: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}; one of {', '.join(EVENT_TYPES)}")

    def to_dict(self) -> dict:
        """The JSON body: ``id, type, time (ISO 8601 UTC), ts, source`` and the type's fields."""
        iso = datetime.fromtimestamp(self.ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = {"id": self.id, "type": self.type, "time": iso, "ts": round(self.ts, 3), "source": self.source}
        body.update({k: v for k, v in self.data.items() if v is not None})
        return body

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


def slug(name: str, limit: int = 48) -> str:
    """A name as an MQTT topic level / Home Assistant id: ``[a-z0-9_]``; a short hash is added
    when characters were replaced, so that two names never share a slug."""
    s = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")[:limit] or "x"
    if s != str(name).lower():
        s += "_" + hashlib.sha1(str(name).encode("utf-8")).hexdigest()[:6]
    return s


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        p = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if p.password is None:
        return url
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urlunsplit((p.scheme, f"{p.username}:***@{host}", p.path, p.query, p.fragment))


__all__ = ["DeliveryError", "EVENT_TYPES", "Event", "redact", "slug"]
