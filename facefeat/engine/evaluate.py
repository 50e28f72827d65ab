"""Face-verification evaluation on a pair list (PaddleX ``pair_label.txt`` or LFW ``pairs.txt``).

    from facefeat import create_model
    from facefeat.engine.evaluate import evaluate_pairs_file
    r = evaluate_pairs_file(create_model("SFace"), "data/lfw_pairs.txt", root="data")
    r["accuracy"], r["std"], r["no_flip"]["accuracy"]

Each distinct image is embedded once, plain and mirrored; pair scores are cosine similarities of
the L2-normalised features, with the flip test (plain + mirrored feature, then normalised) and
without it. Both variants get the standard 10-fold accuracy (mean ± std; LFW's folds when the
file defines them, else 10 label-balanced folds in file order: :func:`stratified_folds`), ROC AUC, EER, TAR at FAR 1e-2 / 1e-3 and a
recommended threshold (the mean of the 10 fold thresholds). ``Evaluate.flip`` picks which variant
is the headline ``accuracy``.

``Global.mode=evaluate`` writes ``<output>/evaluate_result.json`` and ``<output>/roc.png``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from facefeat.config import as_config
from facefeat.data.formats import PairSet, read_pairs
from facefeat.data.layout import DatasetLayout
from facefeat.engine.calibration import calibrate_pairs
from facefeat.engine.distributed import single_device
from facefeat.engine.verification import best_threshold, evaluate_pairs, save_roc_png, stratified_folds
from facefeat.errors import ConfigError, DatasetError, InputError
from facefeat.io.image import read_image
from facefeat.predict.predictor import FeaturePredictor, create_model
from facefeat.registry import get_spec, list_models
from facefeat.runtime.model_dir import ModelMeta
from facefeat.runtime.torch_runner import TorchRunner
from facefeat.thresholds import store_thresholds
from facefeat.utils import atomic_write_json, json_safe, l2_normalize
from facefeat.vision.photo import PhotoAligner, check_align_mode, not_aligned_warning
from facefeat.weights import resolver

log = logging.getLogger("facefeat")

__all__ = [
    "KFOLD_MIN_PAIRS",
    "RESULT_NAME",
    "ROC_NAME",
    "embed_images",
    "evaluate_pairs_file",
    "find_pairs_file",
    "load_eval_predictor",
    "pair_scores",
    "quick_verification",
    "run_evaluate",
    "stratified_folds",
    "verification_summary",
]

RESULT_NAME = "evaluate_result.json"
ROC_NAME = "roc.png"
#: below this many pairs, training-time validation reports best-threshold accuracy, not 10-fold
KFOLD_MIN_PAIRS = 100


# ------------------------------------------------------------------------------------------------
# images -> features


def _read_chunk(paths: Sequence[str], idx: Sequence[int], aligner: Any = None,
                stats: dict | None = None) -> list[np.ndarray]:
    imgs = [read_image(paths[i]) for i in idx]
    if aligner is None:
        return imgs
    out, aligned, missing = [], 0, []
    for i, img in zip(idx, imgs):
        face = img if aligner.is_aligned(img) else aligner.face(img)
        aligned += face is not None and face is not img
        if face is None:
            missing.append(str(paths[i]))
        out.append(img if face is None else face)  # no face: the resized photo, counted
    if stats is not None:
        with _STATS_LOCK:  # chunks are read on several threads
            stats["aligned"] = stats.get("aligned", 0) + aligned
            stats["no_face"] = stats.get("no_face", 0) + len(missing)
            stats.setdefault("no_face_paths", []).extend(missing)
    return out


_STATS_LOCK = threading.Lock()


def _as_predictor(model: Any, spec: Any = None, device: str = "cpu", batch_size: int = 64):
    """A FeaturePredictor as is, or a torch module wrapped in one (``spec``: its ModelSpec/name)."""
    if isinstance(model, FeaturePredictor):
        return model
    if hasattr(model, "embed") and hasattr(model, "raw_features"):
        return model  # duck-typed predictor
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(model, torch.nn.Module):
        if spec is None:
            for name in list_models():
                s = get_spec(name)
                if s.arch.endswith(":" + type(model).__name__):
                    spec = s
                    break
        if spec is None:
            raise InputError(f"cannot tell which zoo model a {type(model).__name__} is; pass spec=")
        spec = get_spec(spec) if isinstance(spec, str) else spec
        return FeaturePredictor(TorchRunner(model, device), ModelMeta.from_spec(spec), batch_size)
    raise InputError(f"expected a FeaturePredictor (create_model) or a torch module, got {type(model).__name__}")


def embed_images(predictor: Any, paths: Sequence[str], batch_size: int = 64, progress: bool = False,
                 workers: int = 4, desc: str = "embedding", align_photos: bool = False,
                 stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw (un-normalised) features of each image and of its mirror image: two ``[N, D]`` arrays.

    ``align_photos``: images that are not of the model's input size (photos, not aligned crops)
    get their subject detected and aligned (:class:`~facefeat.vision.photo.PhotoAligner`); photos
    without a face are embedded resized. ``stats`` receives the counts (``aligned``, ``no_face``)."""
    aligner = None
    if align_photos:
        aligner = PhotoAligner(getattr(getattr(predictor, "meta", None), "input_size", (112, 112)))
    n = len(paths)
    dim = int(predictor.embedding_size)
    plain = np.zeros((n, dim), np.float32)
    mirrored = np.zeros((n, dim), np.float32)
    bs = max(1, int(batch_size))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=desc, unit="img", leave=False, file=sys.stderr)
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            chunks = [list(range(i, min(n, i + bs))) for i in range(0, n, bs)]
            ahead = max(2, workers)  # bounded read-ahead: a few chunks in memory, not the whole set
            futures = [pool.submit(_read_chunk, paths, idx, aligner, stats) for idx in chunks[:ahead]]
            for k, idx in enumerate(chunks):
                imgs = futures[k].result()
                futures[k] = None
                if k + ahead < len(chunks):
                    futures.append(pool.submit(_read_chunk, paths, chunks[k + ahead], aligner, stats))
                flipped = [np.ascontiguousarray(im[:, ::-1]) for im in imgs]
                plain[idx[0]: idx[-1] + 1] = predictor.raw_features(imgs, bs)
                mirrored[idx[0]: idx[-1] + 1] = predictor.raw_features(flipped, bs)
                if bar is not None:
                    bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    return plain, mirrored


def pair_scores(feats: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Cosine similarity of pairs of rows of the (unit) feature matrix."""
    f = l2_normalize(feats)
    return np.einsum("ij,ij->i", f[left], f[right]).astype(np.float64)


# ------------------------------------------------------------------------------------------------
# metrics


def _fold_ids(ps_fold_ids: Any, labels: Any, folds: int = 10) -> np.ndarray | None:
    """The pair file's own folds (LFW pairs.txt) when it has them, else :func:`stratified_folds`."""
    if ps_fold_ids is not None and len(np.unique(ps_fold_ids)) >= 2:
        return np.asarray(ps_fold_ids)
    return stratified_folds(labels, folds)


def verification_summary(scores: np.ndarray, labels: np.ndarray, fold_ids: Any = None,
                         keep_curves: bool = False) -> dict:
    """:func:`~facefeat.engine.verification.evaluate_pairs` made JSON-ready.

    Drops the ROC arrays (kept under ``roc`` when ``keep_curves``, for plotting) and adds
    ``tar_at_far_1e-2`` / ``tar_at_far_1e-3`` shortcuts.
    """
    m = evaluate_pairs(scores, labels, fold_ids=fold_ids)
    roc = m.pop("roc")
    kf = m.pop("kfold")
    out = {k: v for k, v in m.items()}
    out["protocol"] = f"{kf['folds']}-fold"
    out["kfold"] = {k: kf[k] for k in ("folds", "fold_accuracies", "fold_thresholds", "fold_sizes", "threshold_mean")}
    for key, v in (m.get("tar_at_far") or {}).items():
        out[f"tar_at_far_{key}"] = v.get("tar")
    out["far_resolution"] = roc.get("far_resolution")
    out = json_safe(out)
    if keep_curves:
        out["roc"] = roc
    return out


def quick_verification(scores: np.ndarray, labels: np.ndarray, fold_ids: Any = None) -> dict:
    """Training-time validation: 10-fold accuracy with enough pairs, else best-threshold accuracy.

    ``fold_ids``: the pairs' folds; None means :func:`stratified_folds`.

    Returns ``accuracy``, ``threshold``, ``protocol`` ("10-fold" or "best-threshold"), ``num_pairs``
    (and ``std``, ``auc`` for the 10-fold protocol).
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels)
    both = (y == 1).any() and (y == 0).any()
    if s.size >= KFOLD_MIN_PAIRS and both:
        m = evaluate_pairs(s, y, fold_ids=_fold_ids(fold_ids, y))
        return json_safe({"accuracy": m["accuracy"], "std": m["std"], "auc": m["auc"],
                        "threshold": m["recommended_threshold"], "protocol": f"{m['kfold']['folds']}-fold",
                        "num_pairs": int(s.size)})
    thr, acc = best_threshold(s, y)
    return json_safe({"accuracy": acc, "threshold": thr, "protocol": "best-threshold", "num_pairs": int(s.size)})


# ------------------------------------------------------------------------------------------------
# the reusable entry point


def _pairset(pairs: str | os.PathLike | PairSet, root: str | os.PathLike | None) -> PairSet:
    if isinstance(pairs, PairSet):
        return pairs
    p = Path(pairs)
    if not p.is_file():
        raise DatasetError(f"pair file {str(pairs)!r} not found")
    return read_pairs(p, root)


def evaluate_pairs_file(predictor_or_model: Any, pairs_path: str | os.PathLike | PairSet,
                        root: str | os.PathLike | None = None, flip: bool = True, batch_size: int = 64,
                        progress: bool = False, keep_curves: bool = False, spec: Any = None,
                        device: str = "cpu", workers: int = 4, align: str = "auto") -> dict:
    """Verification metrics of a model on a pair file, with and without the flip test.

    ``predictor_or_model``: a :class:`~facefeat.predict.predictor.FeaturePredictor` (e.g.
    ``create_model(...)``) or a torch module of a zoo architecture (``spec`` names it if its class
    is ambiguous). ``pairs_path``: PaddleX ``pair_label.txt`` or LFW ``pairs.txt`` (auto-detected;
    ``root`` is where the image paths start, default the file's folder), or a PairSet.

    Returns the headline metrics of the chosen variant (``accuracy``, ``std``, ``auc``, ``eer``,
    ``tar_at_far``, ``recommended_threshold``, ...) at the top level, and both variants in full
    under ``"flip"`` and ``"no_flip"``; plus ``num_pairs``, ``num_images``, ``pairs_format``,
    ``seconds`` and ``images_per_s`` (each image embedded twice: plain and mirrored).

    ``align``: ``"auto"`` (default) detects and aligns the face of every image that is not an
    aligned crop of the model's input size (LFW's 250x250 photos), as the pipeline does, and
    reports ``photos_aligned`` / ``photos_without_face``; ``"warn"`` / ``"off"`` resize them (with /
    without a warning).
    """
    check_align_mode(align)
    ps = _pairset(pairs_path, root)
    if not len(ps):
        raise DatasetError(f"{ps.path}: no pairs")
    predictor = _as_predictor(predictor_or_model, spec, device, batch_size)
    images, left, right = ps.index_arrays()
    t0 = time.perf_counter()
    photo_stats: dict = {}
    plain, mirrored = embed_images(predictor, images, batch_size, progress, workers, align_photos=align == "auto",
                                   stats=photo_stats)
    seconds = time.perf_counter() - t0
    if photo_stats.get("no_face"):
        log.warning("%s: no face found in %d photo(s) (first: %s); they were embedded resized, not aligned",
                    ps.path, photo_stats["no_face"], photo_stats["no_face_paths"][0])
    if align == "warn" and len(images):
        size = getattr(getattr(predictor, "meta", None), "input_size", (112, 112))
        first = read_image(images[0])
        if not PhotoAligner(size).is_aligned(first):
            log.warning("%s", not_aligned_warning(str(images[0]), first, size, len(images)))
    labels = ps.labels
    fold_ids = _fold_ids(ps.fold_ids, labels)
    variants = {
        "no_flip": verification_summary(pair_scores(plain, left, right), labels, fold_ids, keep_curves),
        "flip": verification_summary(pair_scores(plain + mirrored, left, right), labels, fold_ids, keep_curves),
    }
    # the operating points, for the pipeline (no flip)
    calibration = calibrate_pairs(pair_scores(plain, left, right), labels, source="facefeat evaluate",
                                  data={"name": str(ps.path), "flip": False})
    head = variants["flip" if flip else "no_flip"]
    out: dict[str, Any] = {k: v for k, v in head.items() if k not in ("roc", "kfold")}
    out.update({
        "flip_test": bool(flip),
        "model_name": getattr(predictor, "model_name", None),
        "pairs_file": ps.path,
        "pairs_format": ps.format,
        "pairs_root": ps.root,
        "num_images": len(images),
        "photos_aligned": photo_stats.get("aligned", 0),
        "photos_without_face": photo_stats.get("no_face", 0),
        "seconds": round(seconds, 3),
        "images_per_s": round(2 * len(images) / seconds, 2) if seconds > 0 else None,
        "flip": variants["flip"],
        "no_flip": variants["no_flip"],
        "thresholds": calibration,
    })
    return out


# ------------------------------------------------------------------------------------------------
# Global.mode=evaluate


def find_pairs_file(dataset_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """``(pair file, root)`` for ``Global.dataset_dir``: a pair file itself, or a dataset folder
    (:meth:`facefeat.data.layout.DatasetLayout.pairs_file`)."""
    d = Path(dataset_dir)
    if d.is_file():
        return d, None
    f = DatasetLayout.find(dataset_dir).pairs_file()
    return f, f.parent


def load_eval_predictor(model_name: str, weight_path: str | None, device: str = "cpu", batch_size: int = 64):
    """A predictor for ``Evaluate.weight_path`` (any form :func:`facefeat.weights.resolver.resolve`
    accepts; null: ``model_name``'s default weights). A checkpoint or ``.pdparams`` the user names
    runs in PyTorch; exported model directories and zoo weights run on ONNX Runtime."""
    kw = resolver.model_kwargs(weight_path, model_name, where="Evaluate.weight_path")
    ref = kw.get("weights")
    if ref is not None and ref.kind != "zoo" and ref.format in ("facefeat", "pdparams"):
        kw["backend"] = "torch"
    predictor = create_model(**kw, device=device, batch_size=batch_size)
    if predictor.meta.extra.get("face_crop"):
        raise InputError(f"evaluate embeds the dataset's images as they are (aligned faces), but "
                         f"{predictor.model_name} takes its own crop of each photo; measure it through the "
                         "pipeline instead: python bench/lfw_models.py --models " + predictor.model_name)
    return predictor


def _describe(m: Mapping) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    tar = m.get("tar_at_far") or {}
    t2 = (tar.get("1e-02") or {}).get("tar")
    t3 = (tar.get("1e-03") or {}).get("tar")
    return (f"accuracy {pct(m.get('accuracy'))} ± {pct(m.get('std'))} ({m.get('protocol')}), "
            f"AUC {m.get('auc') if m.get('auc') is None else round(m['auc'], 5)}, EER {pct(m.get('eer'))}, "
            f"TAR@FAR=1e-2 {pct(t2)}, TAR@FAR=1e-3 {pct(t3)}, threshold {m.get('recommended_threshold') or float('nan'):.4f}")


def run_evaluate(cfg: Mapping, quiet: bool = False) -> dict:
    """``Global.mode=evaluate``: verification on the dataset's val pairs -> evaluate_result.json + roc.png."""
    cfg = as_config(cfg)
    g, ev = cfg.Global, cfg.Evaluate
    if not g.dataset_dir:
        raise ConfigError("Global.dataset_dir is required for evaluate (a PaddleX dataset, or a pair file)")
    pairs_file, root = find_pairs_file(g.dataset_dir)
    predictor = load_eval_predictor(g.model, ev.weight_path, single_device(g.device), ev.batch_size)
    out_dir = Path(g.output)
    res = evaluate_pairs_file(predictor, pairs_file, root, flip=ev.flip, batch_size=ev.batch_size,
                              progress=not quiet, keep_curves=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = {"flip test": res["flip"]["roc"], "no flip": res["no_flip"]["roc"]}
    roc_path = save_roc_png(curves, out_dir / ROC_NAME, title=f"{predictor.model_name}: ROC on {pairs_file.name}")
    for k in ("flip", "no_flip"):
        res[k].pop("roc", None)
    metrics = {k: res.get(k) for k in ("accuracy", "std", "auc", "eer", "eer_threshold", "tar_at_far_1e-02",
                                       "tar_at_far_1e-03", "recommended_threshold", "best_threshold",
                                       "best_threshold_accuracy", "protocol")}
    doc = {
        "done_flag": True,
        "model_name": predictor.model_name,
        "weight_path": ev.weight_path,
        "backend": getattr(predictor, "backend", None),
        "metrics": metrics,
        **{k: v for k, v in res.items() if k not in metrics},
        "roc_png": ROC_NAME,
    }
    atomic_write_json(out_dir / RESULT_NAME, json_safe(doc))
    doc["thresholds_written_to"] = store_thresholds(predictor, res["thresholds"])
    if not quiet:
        print(f"{predictor.model_name} on {pairs_file} ({res['num_pairs']} pairs, {res['pairs_format']} format)")
        print(f"  flip test: {_describe(res['flip'])}")
        print(f"  no flip  : {_describe(res['no_flip'])}")
        print(f"  wrote {out_dir / RESULT_NAME} and {roc_path}")
    return doc
