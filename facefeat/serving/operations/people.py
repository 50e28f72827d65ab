"""The people of a gallery (tag ``people``): list, add, remove, rename, a sample's thumbnail, the
report of everything stored about one person, forgetting them (:mod:`facefeat.index.privacy`) and
the recognition corrections (:mod:`facefeat.index.corrections`)."""

from __future__ import annotations

from typing import Any, Optional

from facefeat.events import serving as events
from facefeat.index import corrections as C
from facefeat.index.labels import normalize_label
from facefeat.index.people import People
from facefeat.index.privacy import UnknownPerson, forget_person, person_report
from facefeat.pipeline.enrol import add_gallery
from facefeat.serving.errors import NotFound, PersonNotFound
from facefeat.serving.operations.index import dups, gallery_kw
from facefeat.serving.service import Service
from facefeat.serving.storage import check_key


def persons(svc: Service, index_key: str) -> dict:
    """``GET /face-recognition-persons``: every person with their sample ids."""
    key = check_key(index_key)
    index = svc.store.get(key)
    rows = People(index).list()
    return {"indexKey": key, "personCount": len(rows), "imageCount": len(index),
            "persons": [{"label": p["label"], "sampleCount": p["samples"], "sampleIds": p["sample_ids"]}
                        for p in rows]}


def add(svc: Service, body: Any, client: str) -> dict:
    """``POST /face-recognition-person-add``: the images enrolled as one person."""
    key = check_key(body.indexKey)
    svc.store.get(key)  # 404 before the (slow) embedding
    predictor = svc.predictor
    g = svc.gallery_features([(im, body.label) for im in body.images], body.quality, field="images",
                             budget=svc.budget(client))
    with svc.store.mutate(key) as index:
        index.check_model(predictor.model_name, predictor.embedding_size)
        before = events.labels(svc.events, index)
        res = add_gallery(index, g)
        count = len(index)
    events.changed(svc.events, key, before, (before or set()) | {g.labels[0]})
    return {"label": g.labels[0], "ids": res.ids, "imageCount": count, **dups(res)}


def remove(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-person-remove``: every sample of the person (404 if none)."""
    key = check_key(body.indexKey)
    label = normalize_label(body.label)
    with svc.store.people(key) as people:
        ids = people.sample_ids(label)
        if not ids:
            raise PersonNotFound(f"no person {label[:64]!r} in index {key}")
        people.index.remove(ids)  # one transaction: the samples' crops go with them
        count = len(people.index)
    events.changed(svc.events, key, {label}, ())
    return {"label": label, "removed": ids, "imageCount": count}


def rename(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-person-rename`` (merged when the new label exists)."""
    key = check_key(body.indexKey)
    label, new = normalize_label(body.label), normalize_label(body.newLabel, "newLabel")
    with svc.store.people(key) as people:
        if not people.sample_ids(label):
            raise PersonNotFound(f"no person {label[:64]!r} in index {key}")
        n = people.rename(label, new)
    events.changed(svc.events, key, {label}, {new})
    return {"label": label, "newLabel": new, "renamed": n}


def thumbnail(svc: Service, index_key: str, sample_id: int) -> tuple[bytes, str]:
    """``(encoded, format)``: the sample's aligned face, from the gallery itself (a removed sample has none)."""
    key = check_key(index_key)
    crop = svc.store.crop(key, sample_id)
    if crop is None:
        raise NotFound(f"no thumbnail for sample {sample_id} of index {key}")
    return crop[0], crop[1]


def report(svc: Service, index_key: str, label: str) -> dict:
    """``GET /face-recognition-person``: everything stored about one person."""
    key = check_key(index_key)
    svc.store.get(key)
    try:
        rep = person_report(svc.store.location(key), label, **gallery_kw(svc, key))
    except UnknownPerson as exc:
        raise PersonNotFound(f"{exc} (index {key})") from None
    return {"indexKey": key, **{k: v for k, v in rep.items() if k != "gallery"}}


def forget(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-person-forget``: all of it deleted, everywhere."""
    key = check_key(body.indexKey)
    index = svc.store.get(key)
    try:
        rep = forget_person(svc.store.location(key), body.label, **gallery_kw(svc, key))
    except UnknownPerson as exc:
        raise PersonNotFound(f"{exc} (index {key})") from None
    index.refresh()
    return {"indexKey": key, "label": rep["label"], "removed": [s["id"] for s in rep["samples"]],
            "imageCount": len(index)}


def correct(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-correct``: ``kind`` "is" adds the face as a sample, "not" records a rejection."""
    key = check_key(body.indexKey)
    index = svc.store.get(key)
    try:
        C._check_person(index.store, body.label)  # 404 before the (slow) embedding
        g = svc.gallery_features([(body.image, body.label)], body.quality if body.kind == "is" else None,
                                 field="image")
        if body.kind == "is":
            out = C.confirm_features(index, g)
            return {"correctionId": out["correction"], "kind": "is", "label": g.labels[0],
                    "sampleId": out["sample_id"], "duplicate": out["duplicate"]}
        cid = C.reject_match(index, g.labels[0], g.features[0], crop=g.records[0].crop)
    except UnknownPerson as exc:
        raise PersonNotFound(f"{exc} (index {key})") from None
    return {"correctionId": cid, "kind": "not", "label": g.labels[0]}


def undo_correction(svc: Service, body: Any) -> dict:
    """``POST /face-recognition-correct-undo``."""
    key = check_key(body.indexKey)
    out = C.undo(svc.store.get(key), body.correctionId)
    return {"correctionId": out["correction"], "kind": out["kind"], "label": out["label"],
            "removedSample": out["removed_sample"]}


def corrections(svc: Service, index_key: str, label: Optional[str]) -> dict:
    """``GET /face-recognition-corrections``, of one person or all."""
    key = check_key(index_key)
    return {"indexKey": key, "corrections": C.list_corrections(svc.store.get(key), label)}


__all__ = ["add", "correct", "corrections", "forget", "persons", "remove", "rename", "report", "thumbnail",
           "undo_correction"]
