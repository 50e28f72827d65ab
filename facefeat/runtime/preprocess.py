"""Preprocess: how a model wants its images (size, channel order, mean/std), torch-free.

One frozen object, held as is by the registry's ``ModelSpec`` and by a model directory's
``ModelMeta``; the predictor and the training data loader both prepare images with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from facefeat.errors import InputError

CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class Preprocess:
    """BGR uint8 image -> NCHW float32: bilinear resize to ``input_size`` (height, width), channel
    order, ``(x - mean) / std`` on 0..255 pixels. ``normalize_in_graph`` records that the network
    normalises itself (it takes 0..255 pixels; mean 0, std 1)."""

    input_size: tuple[int, int] = (112, 112)
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    normalize_in_graph: bool = False

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 2 or min(size) < 1:
            raise InputError(f"preprocess input_size must be (height, width) > 0, got {self.input_size!r}")
        order = str(self.channel_order).upper()
        if order not in CHANNEL_ORDERS:
            raise InputError(f"preprocess channel_order must be RGB or BGR, got {self.channel_order!r}")
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise InputError(f"preprocess mean/std need 3 values each and std > 0, got {self.mean!r} / {self.std!r}")
        for k, v in (("input_size", size), ("channel_order", order), ("mean", mean), ("std", std),
                     ("normalize_in_graph", bool(self.normalize_in_graph))):
            object.__setattr__(self, k, v)

    @property
    def single_pass(self) -> bool:
        """True when one OpenCV pass (``cv2.dnn.blobFromImages``) prepares a batch: the same mean and
        std for every channel (every zoo model). Otherwise numpy does it in several passes, and an
        OpenVINO runner compiles it into the graph instead (:func:`facefeat.runtime.runners.create_runner`)."""
        return len(set(self.mean)) == 1 and len(set(self.std)) == 1

    def __call__(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 images (gray ones are converted) -> ``[N, 3, H, W]`` float32."""
        import cv2

        h, w = self.input_size
        imgs = [cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) if im.ndim == 2 else im for im in imgs]
        swap = self.channel_order == "RGB"
        if self.single_pass:
            # one OpenCV pass (resize, channel swap, scale, NCHW) when mean/std are the same per channel
            m, sd = self.mean[0], self.std[0]
            return cv2.dnn.blobFromImages(imgs, 1.0 / sd, (w, h), (m, m, m), swapRB=swap, crop=False)
        sized = [im if im.shape[:2] == (h, w) else cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
                 for im in imgs]
        x = np.stack(sized)[..., ::-1].astype(np.float32) if swap else np.stack(sized).astype(np.float32)
        x -= np.asarray(self.mean, np.float32)
        x *= 1.0 / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def pixels(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 images -> ``[N, H, W, 3]`` uint8 BGR at ``input_size`` (bilinear), for a runner
        that does the rest in its compiled graph (:func:`facefeat.runtime.openvino_runner.with_preprocess`)."""
        import cv2

        h, w = self.input_size
        out = np.empty((len(imgs), h, w, 3), np.uint8)
        for i, im in enumerate(imgs):
            im = cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) if im.ndim == 2 else im
            out[i] = im if im.shape[:2] == (h, w) else cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"input_size": list(self.input_size), "channel_order": self.channel_order,
                "mean": list(self.mean), "std": list(self.std),
                "normalize_in_graph": self.normalize_in_graph, "resize": "bilinear"}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocess":
        return cls(input_size=tuple(d["input_size"]), channel_order=d.get("channel_order", "RGB"),
                   mean=tuple(d["mean"]), std=tuple(d["std"]),
                   normalize_in_graph=bool(d.get("normalize_in_graph", False)))


class HasPreprocess:
    """Read-through ``input_size``, ``channel_order``, ``mean``, ``std`` of a ``preprocess`` field
    (the registry's ModelSpec and the model directory's ModelMeta: one Preprocess object, no copies)."""

    preprocess: Preprocess

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.input_size

    @property
    def channel_order(self) -> str:
        return self.preprocess.channel_order

    @property
    def mean(self) -> tuple[float, ...]:
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.preprocess.std
