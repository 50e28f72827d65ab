"""Recognition (tag ``recognition``): who is in an image (``/face-recognition-infer``, PaddleX's
answer shape) and 1:1 verification (``/face-verify``), through the service's pipelines."""

from __future__ import annotations

import base64
from typing import Any

import cv2

from facefeat.errors import InputError
from facefeat.events import serving as events
from facefeat.index.people import People
from facefeat.results import _jsonable
from facefeat.serving.errors import PersonNotFound
from facefeat.serving.service import Service
from facefeat.serving.storage import check_key


def _det_threshold(value: Any) -> Any:
    # detectors are cached per threshold: round it so that clients cannot grow the cache unboundedly
    return None if value is None else round(float(value), 2)


def _face(b: dict, per_person: bool) -> dict:
    """One detected face of the pipeline's result as the answer shows it."""
    recs = []
    if b.get("labels"):
        recs = [{"label": str(lab), "score": round(float(sc), 6)} for lab, sc in zip(b["labels"], b["rec_scores"])]
    face = {"bbox": [round(float(x), 2) for x in b["coordinate"]], "score": round(float(b["det_score"]), 6),
            "recResults": recs}
    if per_person:
        face["sampleIds"] = [int(i) for i in b.get("sample_ids") or []]
    return face


def recognize(svc: Service, body: Any, client: str, origin: Any = None) -> dict:
    """``/face-recognition-infer``; ``origin`` (the HTTP request) names the events' source."""
    index = svc.store.get(check_key(body.indexKey)) if body.indexKey is not None else None
    bud = svc.budget(client)
    data = svc.image_bytes(body.image, "image", bud)
    with svc.pipeline(bud) as pipe:
        img = svc.decode(data, "image")
        res = next(iter(pipe.predict(img, index=index, det_threshold=_det_threshold(body.detThreshold),
                                     rec_threshold=body.recThreshold, rec_topk=body.topk,
                                     far=body.far, fpir=body.fpir, per_person=bool(body.perPerson))))
        vis = res.draw() if body.visualize is not False else None
    faces = [_face(b, bool(body.perPerson)) for b in res["boxes"]]
    op = _jsonable(res.get("operating_point") or {})
    bud.check("while recognising the faces")
    out: dict = {"faces": faces, "image": None, "threshold": op.get("threshold"), "operatingPoint": op,
                 "facesCapped": len(faces) >= svc.settings.max_faces}
    events.recognized(svc.events, origin, body.indexKey, faces, img, op)
    if vis is not None:
        okk, buf = cv2.imencode(".jpg", vis, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not okk:
            raise RuntimeError("cannot encode the visualisation as JPEG")
        out["image"] = base64.b64encode(buf.tobytes()).decode("ascii")
    return out


def verify(svc: Service, body: Any, client: str) -> dict:
    """``/face-verify``: two images, or an image and a gallery person."""
    if (body.image2 is None) == (body.label is None):
        raise InputError("face-verify: give image2, or indexKey and label (a gallery person), not both")
    if (body.label is None) != (body.indexKey is None):
        raise InputError("face-verify: label and indexKey go together (the person and the gallery holding them)")
    if body.recThreshold is not None and body.far is not None:
        raise InputError("face-verify: give recThreshold or far, not both")
    index = svc.store.get(check_key(body.indexKey)) if body.indexKey is not None else None
    if index is not None:
        if body.label not in People(index):
            raise PersonNotFound(f"no person {body.label[:64]!r} in index {body.indexKey}")
    bud = svc.budget(client)
    data1 = svc.image_bytes(body.image1, "image1", bud)
    data2 = svc.image_bytes(body.image2, "image2", bud) if body.image2 is not None else None
    with svc.pipeline(bud) as pipe:
        img1 = svc.decode(data1, "image1")
        img2 = svc.decode(data2, "image2") if data2 is not None else None
        res = pipe.verify(img1, img2, person=body.label, index=index, rec_threshold=body.recThreshold,
                          far=body.far, det_threshold=_det_threshold(body.detThreshold), names=("image1", "image2"))
    bud.check("while verifying")
    r = _jsonable(dict(res))
    for side, what in zip(r["faces"], ("image1", "image2")):
        if side.get("input") not in ("feature", "person"):
            side["input"] = what
    return {"verified": r["verified"], "score": r["score"], "threshold": r["threshold"], "far": r.get("far"),
            "operatingPoint": r.get("operating_point") or {}, "faces": r["faces"]}


__all__ = ["recognize", "verify"]
