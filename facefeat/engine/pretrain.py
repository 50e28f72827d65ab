"""Fine-tuning's start: the pretrained weights (``Train.pretrain_weight_path``, read once) and a
fresh head's class centres imprinted from the pretrained features."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from facefeat.data.formats import Sample
from facefeat.io.image import read_image
from facefeat.engine.train_data import backbone_predictor
from facefeat.registry import ModelSpec
from facefeat.weights import resolver
from facefeat.weights.loaders import load_into
from facefeat.weights.ref import WeightsRef

__all__ = ["IMPRINT_PER_CLASS", "imprint_head", "load_pretrain", "pretrain_weights"]


def pretrain_weights(spec: ModelSpec, value: str | os.PathLike | None) -> WeightsRef | None:
    """``Train.pretrain_weight_path`` -> the weights to fine-tune ``spec`` from, or None (null:
    from scratch). Any form :func:`facefeat.weights.resolver.resolve` accepts with
    ``purpose="pretrain"``: a file (``.pdparams``, facefeat ``.pt``, SFace ``.onnx``), a folder
    holding ``model.pt``, an http(s) URL, or ``spec``'s own zoo name (its default weights)."""
    if resolver.is_null(value):
        return None
    return resolver.resolve(value, spec, purpose="pretrain", where="Train.pretrain_weight_path")


def load_pretrain(backbone: nn.Module, head: nn.Module, spec: ModelSpec, weights: WeightsRef) -> dict[str, Any]:
    """Load pretrained backbone weights (and the head's, when the file holds a head of the same
    shape); the file is read once."""
    loaded = load_into(backbone, spec, weights)
    info = {"pretrain_weight_path": str(weights.path), "format": weights.format, "head_loaded": False}
    head_w = loaded.head
    if head_w is not None and tuple(head_w.shape) == tuple(head.weight.shape):
        with torch.no_grad():
            head.weight.copy_(head_w.to(head.weight.dtype))
        info["head_loaded"] = True
    return info


IMPRINT_PER_CLASS = 5


@torch.no_grad()
def imprint_head(backbone: nn.Module, head: nn.Module, samples: Sequence[Sample], spec: ModelSpec,
                 device: torch.device, per_class: int = IMPRINT_PER_CLASS, batch_size: int = 64) -> int:
    """Set each class centre of ``head`` to the mean unit embedding of (up to ``per_class``) of its
    training images under the pretrained ``backbone`` ("weight imprinting").

    Fine-tuning from pretrained weights with a random head starts far from the optimum (every
    target cosine ~0, so the margin loss is at its plateau and its gradients scramble the
    backbone); imprinted centres start it where the features already are. Classes without images
    keep their random centre. Returns the number of classes imprinted.
    """
    chosen: dict[int, list[str]] = {}
    for s in samples:
        lst = chosen.setdefault(int(s.label), [])
        if len(lst) < per_class:
            lst.append(s.path)
    paths = [p for lab in sorted(chosen) for p in chosen[lab]]
    labels = np.array([lab for lab in sorted(chosen) for _ in chosen[lab]], np.int64)
    was_training = backbone.training
    try:
        pred = backbone_predictor(backbone, spec, device, batch_size)
        feats = np.concatenate([pred.embed([read_image(p) for p in paths[i: i + batch_size]])
                                for i in range(0, len(paths), batch_size)])
    finally:
        backbone.train(was_training)
    sums = np.zeros((head.num_classes, feats.shape[1]), np.float64)
    np.add.at(sums, labels, feats)
    cls = np.unique(labels)
    centres = sums[cls] / np.maximum(np.linalg.norm(sums[cls], axis=1, keepdims=True), 1e-12)
    w = head.weight  # [embedding_size, num_classes]
    scale = float(w.norm(dim=0).mean())  # keep the init's column norm (only the direction matters)
    w[:, torch.from_numpy(cls)] = torch.from_numpy(centres.T.astype(np.float32)).to(w) * scale
    return int(cls.size)
