"""From images to clusters: every face of the inputs collected through the pipeline (detect,
align, embed), then clustered (:func:`cluster_faces`) or added to saved clusters
(:func:`update_clusters`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.errors import InputError
from facefeat.io import IMAGE_EXTENSIONS
from facefeat.io.image import iter_batches, iter_images
from facefeat.io.walk import list_image_files
from facefeat.pipeline.cluster.algorithms import (DEFAULT_K, DEFAULT_METHOD, DEFAULT_MIN_SAMPLES, check_params,
                                                  cluster_features, default_threshold)
from facefeat.pipeline.cluster.result import ClusterResult
from facefeat.utils import l2_normalize

log = logging.getLogger("facefeat")


def expand_cluster_inputs(inputs: Any) -> list[Any]:
    """Inputs for clustering: directories are walked recursively (photo libraries nest)."""
    seq = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not seq:
        raise InputError("cluster: no inputs given")
    out: list[Any] = []
    for x in seq:
        if isinstance(x, (str, os.PathLike)) and Path(x).is_dir():
            out += [str(p) for p in list_image_files(x, IMAGE_EXTENSIONS, recursive=True)]
        else:
            out.append(x)
    return out


def collect_faces(pipe, inputs: Any, det_threshold: float | None = None, batch_images: int = 32,
                  progress: bool = False) -> tuple[np.ndarray, list[dict], list[tuple[str, str]], dict[int, Any]]:
    """Detect, align and embed every face of every input, streaming ``batch_images`` at a time.

    Returns ``(features [N, dim], faces, failed, sources)``: one record per face (``path``,
    ``box``, ``det_score``, ``landmarks``); ``failed`` lists ``(input, reason)`` for unreadable
    images; ``sources`` maps face index -> the in-memory image for inputs that have no path.
    """
    items = expand_cluster_inputs(inputs)
    feats: list[np.ndarray] = []
    faces: list[dict] = []
    failed: list[tuple[str, str]] = []
    sources: dict[int, Any] = {}
    small = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="faces", unit="img")
    for chunk in iter_batches(items, batch_images):
        imgs, names, srcs = [], [], []
        for k, (item, img, err) in enumerate(iter_images(chunk)):
            name = item.name if item.name is not None else f"input[{len(faces)}+{k}]"
            if err is not None:
                log.warning("cluster: %s skipped: %s", name, err)
                failed.append((name, str(err)))
                continue
            imgs.append(img)
            names.append(name)
            srcs.append(None if item.name is not None else item.source)
        per_img = pipe.embed(imgs, det_threshold=det_threshold) if imgs else []
        for name, src, dets in zip(names, srcs, per_img):
            for d in dets:
                if d.get("feature") is None:
                    small += 1
                    continue
                if src is not None:
                    sources[len(faces)] = src
                faces.append({"path": name, "box": [round(v, 1) for v in d["coordinate"]],
                              "det_score": round(float(d["det_score"]), 4),
                              "landmarks": [[round(x, 1), round(y, 1)] for x, y in d["landmarks"]]})
                feats.append(np.asarray(d["feature"], np.float32))
        if bar is not None:
            bar.update(len(chunk))
            bar.set_postfix(faces=len(faces))
    if bar is not None:
        bar.close()
    if small:
        log.info("cluster: %d face(s) too small to align were left out", small)
    dim = pipe.predictor.embedding_size
    x = np.stack(feats) if feats else np.zeros((0, dim), np.float32)
    return l2_normalize(x), faces, failed, sources


def cluster_faces(pipe, inputs: Any, threshold: float | None = None, min_samples: int | None = None,
                  method: str | None = None, k: int = DEFAULT_K, det_threshold: float | None = None,
                  progress: bool = False) -> ClusterResult:
    """Detect, align and embed every face of ``inputs`` and group them into people."""
    thr, src = (float(threshold), "given") if threshold is not None else default_threshold(pipe.thresholds)
    ms = DEFAULT_MIN_SAMPLES if min_samples is None else min_samples
    meth = method or DEFAULT_METHOD
    check_params(meth, thr, ms)
    feats, faces, failed, sources = collect_faces(pipe, inputs, det_threshold, progress=progress)
    raw = cluster_features(feats, thr, ms, meth, k)
    return ClusterResult(feats, faces, np.where(raw >= 0, raw + 1, 0), model_name=pipe.predictor.model_name, method=meth,
                         threshold=thr, min_samples=ms, k=k, failed=failed, sources=sources,
                         threshold_source=src)


def update_clusters(pipe, result: ClusterResult, inputs: Any, det_threshold: float | None = None,
                    progress: bool = False) -> dict[str, list[int]]:
    """Embed ``inputs`` and add their faces to ``result`` (see :meth:`ClusterResult.add_faces`);
    image paths already in ``result`` are skipped, so repeating an update adds nothing twice."""
    if result.model_name and result.model_name != pipe.predictor.model_name:
        raise InputError(f"update: the clusters were made with model {result.model_name!r}, "
                         f"this pipeline runs {pipe.predictor.model_name!r}")
    known = {f["path"] for f in result.faces}
    todo = [x for x in expand_cluster_inputs(inputs) if not (isinstance(x, (str, os.PathLike)) and str(x) in known)]
    if not todo:
        log.info("update: every input is already in the clusters")
        return result.add_faces(np.zeros((0, result.features.shape[1]), np.float32), [])
    feats, faces, failed, sources = collect_faces(pipe, todo, det_threshold, progress=progress)
    return result.add_faces(feats, faces, sources, failed)
