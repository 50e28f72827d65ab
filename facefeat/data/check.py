"""``check_dataset``: validate a PaddleX face dataset and summarise it, as PaddleX's checker does.

Writes ``<output>/check_dataset_result.json`` (atomically) with PaddleX's fields::

    done_flag, check_pass,
    attributes: train_label_file, train_num_classes, train_samples, train_sample_paths,
                val_label_file, val_num_classes, val_samples, val_sample_paths,
    analysis, dataset_path, show_type ("image"), dataset_type ("ClsDataset")

and, beyond PaddleX: ``errors`` / ``warnings`` (``{"file", "line", "message"}`` each; the file
and 1-based line of every problem instead of stopping at the first), ``num_errors``, and an
``analysis`` with images-per-identity statistics, a histogram PNG
(``check_dataset/histogram.png``), image-size statistics and channel statistics.

Paths follow PaddleX: label files relative to ``<output>/check_dataset``, sample paths relative to
``<output>`` (``check_dataset/demo_img/<name>``). The ``check_dataset`` folder is built in a temp
folder and renamed into place.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.data.formats import Problem, parse_label_file, parse_pair_label_file
from facefeat.data.layout import DatasetLayout
from facefeat.errors import DependencyError, InputError
from facefeat.io.image import decode_image_bytes, image_header, read_image, read_image_file
from facefeat.plots import save_histogram_png
from facefeat.utils import atomic_dir, atomic_write_json

__all__ = ["check_dataset", "inspect_image", "draw_histogram"]

log = logging.getLogger("facefeat")

RESULT_NAME = "check_dataset_result.json"
MAX_REPORTED = 1000  # problems listed in the JSON per kind; num_errors counts them all
STATS_SAMPLE = 256  # images decoded for pixel mean/std


def inspect_image(path: str, full_decode: bool = False) -> dict:
    """An image's size and mode from its header (:func:`facefeat.io.image_header`) - and, with
    ``full_decode``, a full decode by the one reader - or an error."""
    p = Path(path)
    if not p.exists():
        return {"error": "image not found"}
    if p.is_dir():
        return {"error": "is a directory, not an image"}
    try:
        data = read_image_file(p, p.name)
        w, h, mode = image_header(data, p.name)
        if w <= 0 or h <= 0:
            return {"error": f"image has an empty size {w}x{h}"}
        if full_decode:
            decode_image_bytes(data, p.name)
    except InputError as exc:
        return {"error": str(exc).removeprefix(f"{p.name}: ")}
    return {"width": int(w), "height": int(h), "mode": mode or "unknown"}


def _inspect_all(paths: list[str], full_decode: bool, workers: int) -> dict[str, dict]:
    if not paths:
        return {}
    if workers <= 1 or len(paths) < 64:
        return {p: inspect_image(p, full_decode) for p in paths}
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return dict(zip(paths, ex.map(lambda p: inspect_image(p, full_decode), paths, chunksize=64)))


def _pixel_stats(paths: list[str]) -> dict | None:
    """Per-channel mean/std (RGB order, 0..255) over up to STATS_SAMPLE decoded images."""
    sums = np.zeros(3)
    sqs = np.zeros(3)
    n = 0
    used = 0
    gray = 0  # images whose three channels are identical (grey stored as colour)
    for p in paths:
        try:
            img = read_image(p)
        except InputError:
            continue
        if np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]):
            gray += 1
        x = img.reshape(-1, 3).astype(np.float64)[:, ::-1]
        sums += x.sum(0)
        sqs += (x * x).sum(0)
        n += x.shape[0]
        used += 1
    if not n:
        return None
    mean = sums / n
    std = np.sqrt(np.maximum(sqs / n - mean * mean, 0))
    return {"images": used, "grayscale_images": gray, "mean_rgb": [round(float(v), 3) for v in mean], "std_rgb": [round(float(v), 3) for v in std]}


def _stats(values: list[int] | np.ndarray) -> dict:
    a = np.asarray(values, dtype=np.float64)
    if not a.size:
        return {}
    return {"min": int(a.min()), "max": int(a.max()), "mean": round(float(a.mean()), 3), "median": float(np.median(a))}


def _hist_bins(max_count: int) -> list[tuple[int, int]]:
    if max_count <= 20:
        return [(k, k) for k in range(1, max_count + 1)]
    edges = [1, 2, 3, 4, 5, 6, 11, 21, 51, 101, 201, 501, 1001, 2001, 5001]
    bins = []
    for i, lo in enumerate(edges):
        if lo > max_count:
            break
        hi = edges[i + 1] - 1 if i + 1 < len(edges) else max_count
        bins.append((lo, min(hi, max_count)))
    return bins


def draw_histogram(counts_per_id: list[int], path: str | os.PathLike, title: str = "images per identity") -> dict:
    """Bar chart: how many identities have k images (k binned), drawn with matplotlib; atomic PNG.

    Returns ``bins``, ``identities`` and ``png`` (None when matplotlib is not installed).
    """
    counts = np.asarray(counts_per_id, dtype=np.int64)
    bins = _hist_bins(int(counts.max()) if counts.size else 1)
    heights = [int(((counts >= lo) & (counts <= hi)).sum()) for lo, hi in bins]
    labels = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in bins]
    try:
        png = save_histogram_png(labels, heights, path, f"{title} ({counts.size} identities, {int(counts.sum())} images)",
                                 "images per identity", "identities")
    except DependencyError as exc:
        log.warning("no histogram: %s", exc)
        png = None
    return {"bins": labels, "identities": heights, "png": png}


def _relpath(p: str | Path, start: str | Path) -> str:
    try:
        return os.path.relpath(os.path.abspath(p), os.path.abspath(start))
    except ValueError:  # different drives (Windows)
        return os.path.abspath(p)


def _copy_demo(src: str, demo_dir: Path, used: set[str]) -> str:
    name = Path(src).name
    stem, suf = os.path.splitext(name)
    k = 1
    while name in used:
        name = f"{stem}_{k}{suf}"
        k += 1
    used.add(name)
    shutil.copyfile(src, demo_dir / name)
    return name


def check_dataset(
    dataset_dir: str | os.PathLike,
    output_dir: str | os.PathLike = "./output",
    sample_num: int = 10,
    full_decode: bool = False,
    workers: int | None = None,
    seed: int = 123,
) -> dict:
    """Check a PaddleX face dataset; write and return ``check_dataset_result.json``'s content.

    Reports (never raises for) every problem in ``errors``: missing label file, missing or
    unreadable image, wrong column count, non-integer or negative label, labels not starting at 0,
    pair label not 0/1 - each with file and line. Label gaps and duplicate lines are
    ``warnings``. ``check_pass`` is true only without errors. ``full_decode`` decodes every image
    (slow) instead of reading headers. ``sample_num`` demo images per split are copied to
    ``<output>/check_dataset/demo_img`` (picked with a fixed seed, as PaddleX does).
    """
    output = Path(output_dir)
    ds_given = str(dataset_dir)
    ds = Path(dataset_dir)
    workers = workers if workers is not None else min(8, (os.cpu_count() or 2) * 2)
    errors: list[Problem] = []
    warnings: list[Problem] = []
    attrs: dict[str, Any] = {}
    analysis: dict[str, Any] = {}
    check_root = output / "check_dataset"

    def add(problems: list[Problem]) -> None:
        for p in problems:
            (errors if p.level == "error" else warnings).append(p)

    if not ds.is_dir():
        errors.append(Problem(str(ds), None, "dataset directory not found" if not ds.exists() else "not a directory"))
        train_samples, val_pairs = [], []
        train_file = ds / "train" / "label.txt"
        val_file = ds / "val" / "pair_label.txt"
    else:
        layout = DatasetLayout.find(ds)
        train_file, val_file = layout.train_file, layout.val_file
        train_samples, probs = parse_label_file(train_file)
        add(probs)
        val_pairs, probs = parse_pair_label_file(val_file)
        add(probs)

    # --- images: existence + readability (each distinct image once; report at its first line)
    first_ref: dict[str, tuple[str, int]] = {}
    for s in train_samples:
        first_ref.setdefault(s.path, (str(train_file), s.line))
    for p in val_pairs:
        first_ref.setdefault(p.left, (str(val_file), p.line))
        first_ref.setdefault(p.right, (str(val_file), p.line))
    info = _inspect_all(list(first_ref), full_decode, workers)
    bad_images = {path for path, r in info.items() if "error" in r}
    # every line that refers to a bad image is reported
    for s in train_samples:
        if s.path in bad_images:
            errors.append(Problem(str(train_file), s.line, f"{info[s.path]['error']}: {s.rel or s.path}"))
    for p in val_pairs:
        for side, img in (("left", p.left), ("right", p.right)):
            if img in bad_images:
                rel = _relpath(img, val_file.parent)
                errors.append(Problem(str(val_file), p.line, f"{side} image: {info[img]['error']}: {rel}"))

    # --- attributes (PaddleX's)
    check_rel = check_root  # label files relative to <output>/check_dataset, as PaddleX writes them
    good_train = [s for s in train_samples if s.path not in bad_images]
    good_pairs = [p for p in val_pairs if p.left not in bad_images and p.right not in bad_images]
    labels = [s.label for s in train_samples]
    attrs["train_label_file"] = _relpath(train_file, check_rel)
    attrs["train_num_classes"] = (max(labels) + 1) if labels else 0
    attrs["train_samples"] = len(train_samples)
    attrs["train_sample_paths"] = []
    attrs["val_label_file"] = _relpath(val_file, check_rel)
    attrs["val_num_classes"] = (max(p.label for p in val_pairs) + 1) if val_pairs else 0
    attrs["val_samples"] = len(val_pairs)
    attrs["val_sample_paths"] = []

    rng = random.Random(seed)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_dir(check_root) as tmp:
        demo = tmp / "demo_img"
        demo.mkdir()
        used: set[str] = set()
        train_pick = list(good_train)
        rng.shuffle(train_pick)
        for s in train_pick[: max(0, sample_num)]:
            name = _copy_demo(s.path, demo, used)
            attrs["train_sample_paths"].append(f"check_dataset/demo_img/{name}")
        val_imgs = list(dict.fromkeys(x for p in good_pairs for x in (p.left, p.right)))
        rng.shuffle(val_imgs)
        for img in val_imgs[: max(0, sample_num)]:
            name = _copy_demo(img, demo, used)
            attrs["val_sample_paths"].append(f"check_dataset/demo_img/{name}")

        # --- analysis (beyond PaddleX)
        if train_samples:
            per_id = Counter(labels)
            counts = [per_id[k] for k in sorted(per_id)]
            hist = draw_histogram(counts, tmp / "histogram.png", "train: images per identity")
            analysis["histogram"] = "check_dataset/histogram.png" if hist["png"] else None
            analysis["images_per_identity"] = {
                **_stats(counts),
                "identities": len(per_id),
                "identities_with_1_image": int(sum(1 for c in counts if c == 1)),
                "histogram": dict(zip(hist["bins"], hist["identities"])),
            }
        if val_pairs:
            pos = sum(p.label for p in val_pairs)
            analysis["val_pairs"] = {
                "positive": int(pos),
                "negative": int(len(val_pairs) - pos),
                "distinct_images": len({x for p in val_pairs for x in (p.left, p.right)}),
            }
        for split, paths in (
            ("train", list(dict.fromkeys(s.path for s in good_train))),
            ("val", list(dict.fromkeys(x for p in good_pairs for x in (p.left, p.right)))),
        ):
            ok = [info[p] for p in paths if p in info and "error" not in info[p]]
            if not ok:
                continue
            ws = [r["width"] for r in ok]
            hs = [r["height"] for r in ok]
            sizes = Counter((r["width"], r["height"]) for r in ok)
            sample = list(paths)
            random.Random(seed).shuffle(sample)
            analysis[f"{split}_images"] = {
                "count": len(ok),
                "width": _stats(ws),
                "height": _stats(hs),
                "common_sizes": {f"{w}x{h}": n for (w, h), n in sizes.most_common(5)},
                "modes": dict(Counter(r["mode"] for r in ok).most_common()),
                "pixels": _pixel_stats(sample[:STATS_SAMPLE]),
            }

    result = {
        "done_flag": True,
        "check_pass": not errors,
        "attributes": attrs,
        "analysis": analysis,
        "dataset_path": ds_given,
        "show_type": "image",
        "dataset_type": "ClsDataset",
        "num_errors": len(errors),
        "errors": [p.to_dict() for p in errors[:MAX_REPORTED]],
        "warnings": [p.to_dict() for p in warnings[:MAX_REPORTED]],
    }
    if len(errors) > MAX_REPORTED:
        result["errors_truncated"] = len(errors) - MAX_REPORTED
    atomic_write_json(output / RESULT_NAME, result)
    return result
