"""Sightings and unknown faces (tag ``sightings``; all admin: they hold biometric data). The work
is in :mod:`facefeat.index.sightings` and :mod:`facefeat.pipeline.unknown`."""

from __future__ import annotations

from typing import Any, Optional

from facefeat.index import sightings as SG
from facefeat.pipeline.unknown import unknown_groups as group_unknown
from facefeat.serving.errors import NotFound
from facefeat.serving.service import Service
from facefeat.serving.storage import check_key


def configure(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-sightings-config``: the gallery's sighting settings after the change."""
    key = check_key(body.indexKey)
    out = SG.configure(svc.store.get(key), body.record, body.keepUnknown, body.retentionDays)
    return {"indexKey": key, "record": out["record"], "keepUnknown": out["keep_unknown"],
            "retentionDays": out["retention_days"]}


def search(svc: Service, index_key: str, label: Optional[str], since: Optional[float], until: Optional[float],
           unknown: bool, limit: int) -> dict:
    """``GET /face-recognition-sightings``: sightings by person, time and unknown-ness."""

    key = check_key(index_key)
    rows = SG.search(svc.store.get(key), label=label, since=since, until=until, unknown=unknown, limit=limit)
    return {"indexKey": key, "sightings": rows}


def search_face(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-sightings-search``: sightings of the face in the image, best first."""
    key = check_key(body.indexKey)
    index = svc.store.get(key)
    g = svc.gallery_features([(body.image, "probe")], None, field="image")
    return {"indexKey": key, "sightings": SG.search(index, probe=g.features[0], limit=body.limit)}


def unknown_groups(svc: Service, index_key: str) -> dict:
    """``GET /face-recognition-unknown-groups``: the unknown faces grouped by likeness."""
    key = check_key(index_key)
    return {"indexKey": key, "groups": group_unknown(svc.store.get(key))}


def name_unknown(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-unknown-name``: the sightings' faces join (or become) the person."""
    key = check_key(body.indexKey)
    out = SG.name_sightings(svc.store.get(key), body.sightingIds, body.label)
    return {"indexKey": key, "label": out["label"], "sightingIds": out["sightings"],
            "sampleIds": out["sample_ids"], "duplicates": out["duplicates"]}


def crop(svc: Service, index_key: str, sighting_id: int) -> bytes:
    """The JPEG face kept with a sighting."""
    key = check_key(index_key)
    face = SG.sighting_crop(svc.store.get(key), sighting_id)
    if face is None:
        raise NotFound(f"no face kept for sighting {sighting_id} of index {key}")
    return face


def dismiss(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-sightings-dismiss``."""
    key = check_key(body.indexKey)
    return {"indexKey": key, "deleted": SG.dismiss(svc.store.get(key), body.sightingIds)}


__all__ = ["configure", "crop", "dismiss", "name_unknown", "search", "search_face", "unknown_groups"]
