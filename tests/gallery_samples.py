"""Small stored galleries for the gallery-life tests: people as clusters of unit features, each
sample with a real JPEG crop (a smooth synthetic 112x112 image), quality figures and a content hash."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facefeat.index import create_index
from facefeat.index.store import SampleRecord, content_hash

GOOD_FIGURES = {"face_size": 120.0, "det_score": 0.95, "sharpness": 150.0, "brightness": 110.0, "contrast": 40.0,
                "yaw": 2.0, "roll": 1.0}


def crop_image(rng: np.random.Generator) -> np.ndarray:
    """A smooth 112x112 BGR image (a random 7x7 field, upscaled): JPEG keeps it recognisable."""
    small = rng.integers(0, 255, (7, 7, 3), dtype=np.uint8)
    return cv2.resize(small, (112, 112), interpolation=cv2.INTER_CUBIC)


def record(img: np.ndarray, figures: dict | None = None) -> SampleRecord:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return SampleRecord(crop=buf.tobytes(), figures={"quality": dict(GOOD_FIGURES if figures is None else figures)},
                        det={"score": 0.95, "box": [0, 0, 112, 112], "landmarks": [[38, 51], [73, 51], [56, 71],
                                                                                   [41, 92], [70, 92]]},
                        content_hash=content_hash(img))


def cluster_features(rng: np.random.Generator, n_people: int, per: int, dim: int = 128,
                     spread: float = 0.6) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Unit features of ``n_people`` people (``per`` each), their labels, and the people's centres."""
    centres = rng.normal(size=(n_people, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x, labels = [], []
    for p in range(n_people):
        for _ in range(per):
            f = centres[p] + spread * rng.normal(size=dim) / np.sqrt(dim)
            x.append(f / np.linalg.norm(f))
            labels.append(f"person_{p:03d}")
    return np.asarray(x, np.float32), labels, centres.astype(np.float32)


def make_stored_gallery(path: str | Path, features: np.ndarray, labels: list[str], seed: int = 0,
                        figures: list | None = None, model_name: str = "SFace") -> list[SampleRecord]:
    """Save a gallery (Flat, IP) at ``path`` with a crop and figures per sample; returns the records."""
    rng = np.random.default_rng(seed)
    recs = [record(crop_image(rng), None if figures is None else figures[i]) for i in range(len(labels))]
    index = create_index(dim=features.shape[1], model_name=model_name, index_type="Flat")
    res = index.add_samples(features, labels, [f"{lab}/{i}.jpg" for i, lab in enumerate(labels)], recs)
    assert not res.duplicates
    index.save(path)
    return recs
