"""Events out: recognitions, unknown faces, presence and gallery changes, sent through a durable
outbox to MQTT (with Home Assistant discovery) and signed webhooks. See ``docs/guides/events.md``.

Modules: :mod:`.types` (events, ids), :mod:`.config` (the ``events:`` block), :mod:`.outbox`
(SQLite), :mod:`.presence` (presence, debouncing, snapshots), :mod:`.mqtt`, :mod:`.webhook`,
:mod:`.hub` (senders), :mod:`.feeds` (what recognisers hand the hub), :mod:`.cli` (flags, ``events test``).
"""

from facefeat.events.config import EventsConfig
from facefeat.events.hub import EventHub
from facefeat.events.outbox import Outbox
from facefeat.events.types import EVENT_TYPES, DeliveryError, Event

__all__ = ["EVENT_TYPES", "DeliveryError", "Event", "EventHub", "EventsConfig", "Outbox"]
