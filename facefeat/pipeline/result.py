"""FaceRecResult: the faces found in one image, each with its gallery matches."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from facefeat.results import BaseResult
from facefeat.utils import atomic_path
from facefeat.vision.draw import draw_faces


class FaceRecResult(BaseResult):
    """``{"res": {"input_path": ..., "boxes": [{labels, rec_scores, det_score, coordinate, landmarks}]}}``.

    ``labels``/``rec_scores`` are the top-k gallery matches, best first, or ``None`` when the face
    is unknown (top-1 below ``rec_threshold``) or no index was given.
    """

    default_stem = "face_rec"

    def draw(self) -> np.ndarray:
        """The input image (BGR) with boxes, landmarks and the top-1 label (or "Unknown") drawn."""
        return draw_faces(self["_img"], self["boxes"])

    @property
    def img(self) -> dict:
        """``{"res": PIL image}`` (RGB) of :meth:`draw`, as PaddleX's ``res.img``."""
        from PIL import Image

        return {"res": Image.fromarray(np.ascontiguousarray(self.draw()[..., ::-1]))}

    def save_to_img(self, save_path: str | os.PathLike) -> Path:
        """Write the visualisation; ``save_path`` is a .jpg/.png file or a directory."""
        p = Path(save_path)
        target = p if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp") else p / f"{self._stem()}_res.jpg"
        ok, buf = cv2.imencode(target.suffix or ".jpg", self.draw())
        if not ok:
            raise OSError(f"cannot encode visualisation as {target.suffix}")
        with atomic_path(target, target.suffix) as tmp:
            tmp.write_bytes(buf.tobytes())
        return target
