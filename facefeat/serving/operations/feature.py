"""Face features (tag ``face feature``): PaddleX's ``/face-feature-infer``, the feature of an
aligned face image by a loaded model, through the same request batcher as the pipelines
(:mod:`facefeat.serving.batching`) and under the same budget and pipeline slots."""

from __future__ import annotations

from typing import Any

from facefeat.serving.service import Service


def feature(svc: Service, body: Any, client: str) -> dict:
    """``POST /face-feature-infer``: the unit feature of the image (a face) by the asked model."""
    predictor = svc.feature_model(body.model)
    bud = svc.budget(client)
    data = svc.image_bytes(body.image, "image", bud)
    with svc.pipeline(bud):  # a slot of the pool: the same fairness and deadline as every embedding route
        feat = predictor.embed([svc.decode(data, "image")], flip=body.flip)[0]
    return {"feature": feat.tolist(), "model": predictor.model_name, "dim": int(predictor.embedding_size)}


__all__ = ["feature"]
