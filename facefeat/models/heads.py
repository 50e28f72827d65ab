"""Margin classification heads for face-feature training: ArcMargin (ArcFace) and CosMargin (CosFace).

Both follow PaddleClas (``ppcls.arch.gears.arcmargin`` / ``cosmargin``), which PaddleX's face
feature module trains with: the class centres are a ``weight`` of shape ``[embedding_size,
num_classes]`` (Paddle's layout, so a PaddleX ``head.weight`` loads as is), features and centres
are L2-normalised, and the logits are ``scale * cos`` with a margin on the target class:

* ArcMargin: ``cos(theta + m)`` for the target (additive angular margin). Where ``theta + m``
  would pass pi the logit falls back to ``cos(theta) - m * sin(m)`` (ArcFace's "hard margin"
  rule, PaddleClas ``easy_margin=False``), which keeps the target logit monotone in theta.
* CosMargin: ``cos(theta) - m`` for the target (additive cosine margin).

``forward(features, labels)`` returns the logits for ``cross_entropy``; with ``labels=None`` it
returns ``scale * cos`` (no margin), e.g. for monitoring. The maths runs in float32 even under
autocast: the margin terms are not safe in half precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facefeat.models.margins import DEFAULT_SCALE, MARGIN_DEFAULTS

__all__ = ["ArcMargin", "CosMargin", "build_head", "HEADS"]


class _MarginHead(nn.Module):
    def __init__(self, embedding_size: int, num_classes: int, margin: float, scale: float) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if int(embedding_size) < 1:
            raise ValueError(f"embedding_size must be >= 1, got {embedding_size}")
        self.embedding_size = int(embedding_size)
        self.num_classes = int(num_classes)
        self.margin = float(margin)
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(self.embedding_size, self.num_classes))
        nn.init.xavier_normal_(self.weight)  # PaddleClas: XavierNormal

    def extra_repr(self) -> str:
        return (f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, "
                f"margin={self.margin}, scale={self.scale}")

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, num_classes]`` cosines between the features and the class centres (float32)."""
        x = F.normalize(features.float(), dim=1)
        w = F.normalize(self.weight.float(), dim=0)
        return (x @ w).clamp(-1.0, 1.0)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = self.cosine(features)
        if labels is None:
            return cos * self.scale
        labels = labels.long().view(-1, 1)
        target = cos.gather(1, labels)
        logits = cos.scatter(1, labels, self.target_logit(target))
        return logits * self.scale


class ArcMargin(_MarginHead):
    """ArcFace head: target logit ``s * cos(theta + m)``; default m=0.5, s=64 (PaddleClas)."""

    def __init__(self, embedding_size: int, num_classes: int, margin: float = MARGIN_DEFAULTS["ArcMargin"],
                 scale: float = DEFAULT_SCALE, easy_margin: bool = False) -> None:
        super().__init__(embedding_size, num_classes, margin, scale)
        self.easy_margin = bool(easy_margin)
        self.cos_m = math.cos(self.margin)
        self.sin_m = math.sin(self.margin)
        self.th = math.cos(math.pi - self.margin)
        self.mm = math.sin(math.pi - self.margin) * self.margin

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        sin = torch.sqrt((1.0 - cos * cos).clamp_min(0.0))
        phi = cos * self.cos_m - sin * self.sin_m
        if self.easy_margin:
            return torch.where(cos > 0, phi, cos)
        return torch.where(cos > self.th, phi, cos - self.mm)


class CosMargin(_MarginHead):
    """CosFace head: target logit ``s * (cos(theta) - m)``; default m=0.35, s=64 (PaddleClas)."""

    def __init__(self, embedding_size: int, num_classes: int, margin: float = MARGIN_DEFAULTS["CosMargin"],
                 scale: float = DEFAULT_SCALE) -> None:
        super().__init__(embedding_size, num_classes, margin, scale)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        return cos - self.margin


HEADS = {"ArcMargin": ArcMargin, "CosMargin": CosMargin}


def build_head(loss: str, embedding_size: int, num_classes: int, margin: float | None = None,
               scale: float = DEFAULT_SCALE) -> _MarginHead:
    """The head named ``loss`` (``"ArcMargin"`` or ``"CosMargin"``); ``margin=None``: its default."""
    try:
        cls = HEADS[loss]
    except KeyError:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(HEADS)}") from None
    kwargs = {"scale": float(scale)}
    if margin is not None:
        kwargs["margin"] = float(margin)
    return cls(embedding_size, num_classes, **kwargs)
