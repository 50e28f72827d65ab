"""Build a small PaddleX-format face dataset from LFW: aligned 112x112 faces, standard val pairs.

    from facefeat.data import build_lfw_demo
    build_lfw_demo("shared/data/lfw", "shared/data/lfw_pairs.txt", "dataset/lfw_demo")

Layout written (PaddleX face_feature)::

    <out>/train/images/<name>/<name>_0001.jpg     train/label.txt       "images/<name>/<file> <id>"
    <out>/val/images/<name>/<name>_0003.jpg       val/pair_label.txt    "<left> <right> 1|0"
    <out>/lfw_demo.json                           what was built, and how (this function's summary)

* **train** (default, ``train_min_images=8``) = every identity with at least that many images
  (217 people / 4,822 images on full LFW), labelled 0..C-1 in name order; **val** = the pairs of
  the standard protocol (``pairs.txt``) in which *neither* person is a train identity (5,011 of
  6,000 pairs), so train and val never share a person. ``train_min_images=None`` instead keeps
  all 6,000 pairs and trains on the people that appear in no pair with at least
  ``min_images_per_id`` images (52 identities / 133 images: plumbing only).
* val pairs stay in file order, so ``pair_label.txt`` keeps the protocol's fold structure (folds
  are the 10 contiguous blocks, shortened by the dropped pairs). ``max_pairs`` keeps, per fold,
  the first k matched and k mismatched pairs.
* **faces**: ``align="align"`` detects faces (YuNet) and warps the 5 landmarks onto the ArcFace
  112x112 template; ``"crop"`` crops the detected box instead; ``"center"`` never detects. Among
  several faces the largest one that contains the image centre is taken (LFW centres the
  labelled person), else the largest. With no face found, the image falls back to a fixed centre
  crop (:data:`CENTER_BOX`, measured on LFW: the box whose 112x112 resize best matches the
  aligned template on average) and the summary lists those images.

The build goes to a temp folder renamed at the end, so a half-built dataset is never left behind;
the output is deterministic for a given LFW copy, pairs file and arguments.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facefeat.data.formats import read_pairs, write_label_file, write_pair_label_file
from facefeat.errors import DatasetError, InputError
from facefeat.io import read_image
from facefeat.utils import atomic_dir, atomic_write_json
from facefeat.vision import YuNetDetector
from facefeat.vision.align import align_face, crop_face
from facefeat.vision.detector import central_face

__all__ = ["build_lfw_demo", "center_crop", "CENTER_BOX", "ALIGN_MODES"]

ALIGN_MODES = ("align", "crop", "center")
#: centre-crop fallback for a 250x250 LFW image, (x0, y0, x1, y1); scaled for other sizes.
#: Measured with YuNet on 1,500 random LFW images: each face's 5 landmarks fitted (scale + shift,
#: no rotation) onto the 112x112 ArcFace template; this is the median of the square that fit maps
#: onto the 112x112 output (x0 59, y0 49, side 135.5; 10-90 % range of the side: 125-150 px).
CENTER_BOX = (59, 49, 194, 184)
JPEG_QUALITY = 95
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def center_crop(img: np.ndarray, size: int = 112, box: Sequence[int] = CENTER_BOX) -> np.ndarray:
    """The fixed LFW face region (``box`` in 250x250 coordinates, scaled to the image) resized."""
    import cv2

    h, w = img.shape[:2]
    sx, sy = w / 250.0, h / 250.0
    x0, y0, x1, y1 = (int(round(box[0] * sx)), int(round(box[1] * sy)), int(round(box[2] * sx)), int(round(box[3] * sy)))
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1))
    crop = img[y0:y1, x0:x1]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR)


# ------------------------------------------------------------------------------------------------
# per-image work (module level so worker processes can run it)

_DETECTOR = None
_MODE = "center"


def _init_worker(mode: str, score_threshold: float, single_thread: bool = True) -> None:
    global _DETECTOR, _MODE
    if single_thread:  # worker processes: one OpenCV thread each, the pool gives the parallelism
        import cv2

        cv2.setNumThreads(1)
    _MODE = mode
    if mode != "center":
        _DETECTOR = YuNetDetector(score_threshold=score_threshold)
    else:
        _DETECTOR = None


def _face(img: np.ndarray, mode: str, detector) -> tuple[np.ndarray, str]:
    if mode != "center" and detector is not None:
        det = central_face(list(detector.detect(img)), img.shape[1], img.shape[0])
        if det is not None:
            if mode == "align":
                return align_face(img, np.asarray(det.landmarks, dtype=np.float32), size=112), "align"
            return crop_face(img, det.box, size=112), "crop"
    return center_crop(img), "center"


def _process(job: tuple[str, str]) -> tuple[str, str, str | None]:
    import cv2

    src, dst = job
    try:
        img = read_image(src)
        face, how = _face(img, _MODE, _DETECTOR)
        ok, buf = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise InputError(f"{src}: cannot encode the face crop")
        with open(dst, "wb") as fh:
            fh.write(buf.tobytes())
        return dst, how, None
    except Exception as exc:  # reported by the parent with the source path
        return dst, "error", f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------------------


def _people(lfw: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in sorted(os.scandir(lfw), key=lambda e: e.name):
        if d.is_dir():
            files = sorted(f.name for f in os.scandir(d.path) if f.is_file() and f.name.lower().endswith(IMAGE_EXTS))
            if files:
                out[d.name] = files
    return out


def _select_pairs(pairs: list, folds: np.ndarray, max_pairs: int | None) -> tuple[list, list[int]]:
    if max_pairs is None or max_pairs >= len(pairs):
        return list(pairs), [int(f) for f in folds]
    if max_pairs < 2:
        raise InputError(f"max_pairs must be >= 2 (one matched and one mismatched pair), got {max_pairs}")
    fold_list = sorted(set(int(f) for f in folds))
    k = max(1, max_pairs // (2 * len(fold_list)))
    chosen, chosen_folds = [], []
    for f in fold_list:
        idx = [i for i in range(len(pairs)) if folds[i] == f]
        pos = [i for i in idx if pairs[i].label == 1][:k]
        neg = [i for i in idx if pairs[i].label == 0][:k]
        for i in pos + neg:
            chosen.append(pairs[i])
            chosen_folds.append(f)
        if len(chosen) >= max_pairs:
            break
    return chosen, chosen_folds


def build_lfw_demo(
    lfw_dir: str | os.PathLike,
    pairs_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    align: str = "align",
    max_train_ids: int | None = None,
    min_images_per_id: int = 2,
    max_pairs: int | None = None,
    train_min_images: int | None = 8,
    seed: int = 0,
    workers: int | None = None,
    max_images_per_id: int | None = None,
    score_threshold: float = 0.5,
    progress: bool = True,
) -> dict:
    """Build the LFW demo dataset at ``out_dir`` (see the module doc); returns a summary dict.

    ``max_train_ids``: keep this many train identities (a seeded random choice, then name order);
    ``max_pairs``: keep about this many val pairs, balanced over folds and labels;
    ``max_images_per_id``: cap train images per identity (first in name order);
    ``workers``: processes for detection/alignment (default: all CPUs; 1 = in this process).
    """
    t0 = time.perf_counter()
    if align not in ALIGN_MODES:
        raise InputError(f"align must be one of {', '.join(ALIGN_MODES)}; got {align!r}")
    lfw = Path(lfw_dir)
    if (lfw / "lfw").is_dir():
        lfw = lfw / "lfw"
    if not lfw.is_dir():
        raise DatasetError(f"{lfw_dir}: LFW folder not found (expected <name>/<name>_0001.jpg inside)")
    pairs_file = Path(pairs_file)
    ps = read_pairs(pairs_file, root=lfw, format="lfw")
    people = _people(lfw)
    if not people:
        raise DatasetError(f"{lfw}: no person folders with images")

    # --- split people: train identities never appear in a val pair
    pair_people = {Path(x).parent.name for p in ps.pairs for x in (p.left, p.right)}
    if train_min_images is not None:
        cands = [n for n, files in people.items() if len(files) >= train_min_images]
        blocked = set(cands)
        kept = [(p, f) for p, f in zip(ps.pairs, ps.fold_ids)
                if not {Path(p.left).parent.name, Path(p.right).parent.name} & blocked]
        all_pairs, all_folds = [p for p, _ in kept], np.asarray([f for _, f in kept])
    else:
        cands = [n for n, files in people.items() if len(files) >= min_images_per_id and n not in pair_people]
        all_pairs, all_folds = ps.pairs, ps.fold_ids

    # --- val: standard pairs (optionally a balanced subset), all images must exist
    pairs, pair_folds = _select_pairs(all_pairs, all_folds, max_pairs)
    missing = [(p.line, x) for p in pairs for x in (p.left, p.right) if not os.path.isfile(x)]
    if missing:
        shown = "; ".join(f"line {ln}: {x}" for ln, x in missing[:5])
        raise DatasetError(f"{pairs_file}: {len(missing)} pair image(s) not found under {lfw} ({shown})")
    # --- train: optionally a seeded subset of the candidate identities
    if max_train_ids is not None and max_train_ids < len(cands):
        cands = sorted(random.Random(seed).sample(cands, max(0, int(max_train_ids))))
    train_ids = {name: i for i, name in enumerate(cands)}

    jobs: list[tuple[str, str]] = []  # (source, destination relative to out)
    train_rows: list[tuple[str, int]] = []
    for name, label in train_ids.items():
        files = people[name][:max_images_per_id] if max_images_per_id else people[name]
        for fn in files:
            rel = f"images/{name}/{Path(fn).stem}.jpg"
            train_rows.append((rel, label))
            jobs.append((str(lfw / name / fn), f"train/{rel}"))
    val_rows: list[tuple[str, str, int]] = []
    val_images: dict[str, str] = {}
    for p in pairs:
        rels = []
        for x in (p.left, p.right):
            rel = f"images/{Path(x).parent.name}/{Path(x).stem}.jpg"
            if rel not in val_images:
                val_images[rel] = x
                jobs.append((x, f"val/{rel}"))
            rels.append(rel)
        val_rows.append((rels[0], rels[1], p.label))

    nproc = workers if workers is not None else (os.cpu_count() or 1)
    nproc = max(1, min(int(nproc), len(jobs) // 16 + 1))
    out = Path(out_dir)
    methods: Counter = Counter()
    fallbacks: list[str] = []
    failures: list[str] = []
    with atomic_dir(out) as tmp:
        for _, dst in jobs:
            (tmp / dst).parent.mkdir(parents=True, exist_ok=True)
        abs_jobs = [(src, str(tmp / dst)) for src, dst in jobs]
        src_of = {str(tmp / dst): src for src, dst in jobs}
        from tqdm import tqdm

        bar = tqdm(total=len(abs_jobs), desc=f"LFW demo ({align})", unit="img", disable=not progress, leave=False)
        pool = None
        try:
            if nproc <= 1:
                _init_worker(align, score_threshold, single_thread=False)
                results = map(_process, abs_jobs)
            else:
                import multiprocessing as mp

                pool = mp.get_context("spawn").Pool(nproc, initializer=_init_worker, initargs=(align, score_threshold))
                results = pool.imap_unordered(_process, abs_jobs, chunksize=16)
            for dst, how, err in results:
                bar.update(1)
                if err:
                    failures.append(f"{src_of[dst]}: {err}")
                    continue
                methods[how] += 1
                if how == "center" and align != "center":
                    fallbacks.append(os.path.relpath(dst, tmp))
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
        if failures:
            raise DatasetError(f"{len(failures)} LFW image(s) could not be processed: " + "; ".join(failures[:5]))
        write_label_file(tmp / "train" / "label.txt", train_rows)
        write_pair_label_file(tmp / "val" / "pair_label.txt", val_rows)
        fold_sizes = [int(v) for _, v in sorted(Counter(pair_folds).items())]
        summary: dict[str, Any] = {
            "out_dir": str(out),
            "align": align,
            "source_lfw": str(lfw),
            "source_pairs": str(pairs_file),
            "seed": seed,
            "min_images_per_id": min_images_per_id,
            "train_min_images": train_min_images,
            "num_train_ids": len(train_ids),
            "num_train_images": len(train_rows),
            "num_val_pairs": len(val_rows),
            "num_val_positive": int(sum(r[2] for r in val_rows)),
            "num_val_negative": int(sum(1 - r[2] for r in val_rows)),
            "num_val_images": len(val_images),
            "val_folds": len(fold_sizes),
            "val_fold_sizes": fold_sizes,
            "faces": dict(methods),
            "num_fallback_center": len(fallbacks),
            "fallback_images": sorted(fallbacks)[:50],
            "workers": nproc,
            "seconds": 0.0,
        }
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        atomic_write_json(tmp / "lfw_demo.json", summary)
    return summary


def configure_cli(ap) -> None:
    """Arguments of ``facefeat dataset lfw-demo`` / ``python -m facefeat.data.lfw_demo``."""
    ap.add_argument("--lfw", dest="lfw_dir", required=True, help="LFW folder (<name>/<name>_0001.jpg)")
    ap.add_argument("--pairs", dest="pairs_file", required=True, help="LFW pairs.txt")
    ap.add_argument("--out", dest="out_dir", required=True, help="dataset folder to create")
    ap.add_argument("--align", choices=ALIGN_MODES, default="align")
    ap.add_argument("--train-min-images", type=int, default=8,
                    help="train identities: people with at least this many images (0: people in no pair)")
    ap.add_argument("--max-train-ids", type=int, default=None)
    ap.add_argument("--max-pairs", type=int, default=None)
    ap.add_argument("--min-images-per-id", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)


def build_from_cli(a) -> dict:
    """Build the dataset from parsed ``configure_cli`` arguments; returns the summary (without the
    list of fallback images)."""
    s = build_lfw_demo(a.lfw_dir, a.pairs_file, a.out_dir, align=a.align, max_train_ids=a.max_train_ids,
                       min_images_per_id=a.min_images_per_id, max_pairs=a.max_pairs, seed=a.seed,
                       workers=a.workers, train_min_images=a.train_min_images or None)
    return {k: v for k, v in s.items() if k != "fallback_images"}


def run_cli(a) -> int:
    """``python -m facefeat.data.lfw_demo``: build, print the summary as JSON."""
    print(json.dumps(build_from_cli(a), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m facefeat.data.lfw_demo --lfw DIR --pairs FILE --out DIR [--align ...]``"""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m facefeat.data.lfw_demo", description=build_lfw_demo.__doc__)
    configure_cli(ap)
    return run_cli(ap.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
