"""Events from ``facefeat serve``: the hub the settings ask for (flags over the pipeline YAML's
``events:`` block; outbox in the storage folder), recognitions of the infer endpoint (source: the
``X-Facefeat-Source`` header, else ``serve``), and gallery changes of the index / people endpoints."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterable, Optional

from facefeat.events.config import EventsConfig
from facefeat.events.feeds import gallery_changes, recognitions, result_faces
from facefeat.events.hub import EventHub, build_targets

log = logging.getLogger("facefeat.events")
SOURCE_HEADER = "x-facefeat-source"
DEFAULT_SOURCE = "serve"
_SOURCE_RE = re.compile(r"^[\w .:/@#-]{1,64}$")


def service_config(settings: Any) -> EventsConfig:
    """The serve settings' events: the pipeline YAML's ``events:`` block with the flags on top."""
    base = EventsConfig()
    if settings.pipeline:
        from facefeat.config import load_pipeline_config

        base = EventsConfig.from_mapping(load_pipeline_config(settings.pipeline).get("events"),
                                         f"{settings.pipeline}: events")
    return base.merged(mqtt=settings.mqtt, webhooks=list(settings.webhooks or []),
                       webhook_secret=settings.webhook_secret, webhook_secret_file=settings.webhook_secret_file,
                       outbox=settings.events_outbox)


def check_targets(settings: Any) -> None:
    """Connect to every target once and disconnect (``serve --workers N``: the parent checks at
    start, so that a bad URL or credentials fail there, not in every worker)."""
    cfg = service_config(settings)
    if not cfg.enabled:
        return

    for t in build_targets(cfg):
        try:
            t.check()
        finally:
            t.close()


def open_for_service(settings: Any, store: Any) -> Optional[Any]:
    """The service's :class:`~facefeat.events.hub.EventHub` (connected, presence ticker running),
    or None when no target is configured. Every gallery person is announced for discovery."""
    cfg = service_config(settings)
    if not cfg.enabled:
        return None

    people: set[str] = set()
    for key in store.keys():
        people |= gallery_labels(store, key)
    hub = EventHub.open(cfg, outbox=Path(settings.storage_dir) / "events" / "outbox.sqlite", people=sorted(people))
    hub.start_ticker()
    return hub


def gallery_labels(store: Any, key: str) -> set[str]:
    """The people of gallery ``key`` (empty when it cannot be read)."""
    try:
        return set(store.get(key).labels().values())
    except Exception as exc:  # a gallery being replaced or corrupt: no people to announce
        log.debug("events: gallery %s not read (%s)", key, exc)
        return set()


def labels(hub: Any, index: Any) -> Optional[set[str]]:
    """``index``'s labels when events are on (for :func:`changed`), else None (no cost)."""
    return None if hub is None else set(index.labels().values())


def changed(hub: Any, key: str, before: Optional[Iterable[str]], after: Any) -> None:
    """``person_added`` / ``person_removed`` for gallery ``key`` (after its change is saved);
    ``after`` is the labels or the index."""
    if hub is None:
        return

    if hasattr(after, "labels"):
        after = after.labels().values()
    gallery_changes(hub, key, before or (), after or ())


def source_of(request: Any) -> str:
    """The camera / client name the request gives in ``X-Facefeat-Source`` (else ``serve``)."""
    v = (request.headers.get(SOURCE_HEADER) or "").strip()
    return v if _SOURCE_RE.fullmatch(v) else DEFAULT_SOURCE


def recognized(hub: Any, request: Any, index_key: Optional[str], faces: list, image: Any, op: dict) -> None:
    """Events for one infer answer (``faces``: its ``bbox``/``recResults`` list)."""
    if hub is None:
        return

    recognitions(hub, source_of(request), result_faces({"faces": faces}), image, op, gallery=index_key)


__all__ = ["changed", "check_targets", "gallery_labels", "labels", "open_for_service", "recognized", "service_config", "source_of"]
