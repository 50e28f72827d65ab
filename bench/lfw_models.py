"""LFW 10-fold accuracy of zoo models through the pipeline's own steps, and of their score fusion.

Detection runs once (the pipeline's YuNet at 0.5, landmarks placed as ``--landmarks`` says, the
photo's subject by facefeat.vision.choice) and is cached; each model then embeds its own crop
(``pipe.align``: the 5-point alignment, or the model's ``face_crop``) of the same faces, also
cached per model (``--cache-dir``). Images with no face use a centre box (counted). Fusion
(``--fuse A,B``): on each of the 10 folds the z-norm statistics (impostor cosines) and the weight
``w`` (grid 0..1 by 0.05) are chosen on the 9 training folds only, the threshold too, and the
accuracy is taken on the held-out fold. The record to ship (all folds) is printed last, for
``facefeat.registry``'s fused model.

    python bench/lfw_models.py --models SFace,FaceNet --fuse SFace,FaceNet --cache-dir /tmp/lfwc
    python bench/lfw_models.py --models FaceNet --grow 1.2,1.3 --limit 600   # FaceNet's box growth
    python bench/lfw_models.py --models SFace+FaceNet --cache-dir /tmp/lfwc  # the shipped fused model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lfw import lfw_people, load_pairs, pair_rows  # noqa: E402

from facefeat.engine.verification import accuracy_at, best_threshold, evaluate_pairs  # noqa: E402
from facefeat.io import read_image  # noqa: E402
from facefeat.pipeline.face_recognition import FaceRecognitionPipeline  # noqa: E402
from facefeat.vision.align import ARCFACE_TEMPLATE  # noqa: E402
from facefeat.vision.choice import choose_face  # noqa: E402


def fallback_face(w: int, h: int) -> dict:
    """A centre box (LFW's faces sit there) with the template's landmarks, for images with no face."""
    s = 0.45 * min(w, h)
    x0, y0 = (w - s) / 2, (h - s) / 2
    lms = ARCFACE_TEMPLATE / 112.0 * s + np.array([x0, y0], np.float32)
    return {"coordinate": [x0, y0, x0 + s, y0 + s], "landmarks": lms.tolist()}


def detections(pipe, paths: list[str], cache: Path | None, retry: bool = False) -> list[dict]:
    """The subject of each photo: the plain detector (pipe.embed's path), or with ``retry`` the
    retrying detector of verify and enrolment (pipe.detect_retry)."""
    tag = "" if pipe.landmarks == "plain" else f"-{pipe.landmarks}"  # the plain files of earlier runs stay valid
    f = cache / (f"detections-{retry}{tag}.json" if retry else f"detections{tag}.json") if cache else None
    known = json.loads(f.read_text()) if f and f.is_file() else {}
    todo = [p for p in paths if p not in known]
    for n, p in enumerate(todo, 1):
        img = read_image(p)
        if retry == "retry-old":  # before: the orientation check and de-roll applied to profiles too
            from facefeat.vision.retry import RetryDetector

            found = RetryDetector(pipe.detector, pipe.det_threshold, lower_thresholds=(min(0.3, pipe.det_threshold),),
                                  keep_profiles=False).detect(img)
        else:
            found = pipe.detect_retry(img)[0] if retry else pipe.detect(img)
        d = choose_face(found, img.shape[1], img.shape[0])
        known[p] = fallback_face(img.shape[1], img.shape[0]) | {"none": True} if d is None else \
            {"coordinate": [float(v) for v in d.box], "landmarks": np.asarray(d.landmarks).tolist()}
        if n % 500 == 0:
            print(f"  detect {n}/{len(todo)}", flush=True)
    if f and todo:
        f.write_text(json.dumps(known))
    return [known[p] for p in paths]


def features(pipe, name: str, paths: list[str], dets: list[dict], cache: Path | None, flip: bool) -> np.ndarray:
    f = cache / f"feat-{name}{'-flip' if flip else ''}.npz" if cache else None
    have: dict = {}
    if f and f.is_file():
        z = np.load(f, allow_pickle=False)
        have = dict(zip(z["paths"].tolist(), z["x"]))
    todo = [(p, d) for p, d in zip(paths, dets) if p not in have]
    t0 = time.perf_counter()
    for i in range(0, len(todo), 64):
        chunk = todo[i:i + 64]
        crops = [pipe.align(read_image(p), d) for p, d in chunk]
        have.update(zip([p for p, _ in chunk], pipe.predictor.embed(crops, flip=flip)))
        print(f"  {name}: {i + len(crops)}/{len(todo)} ({(time.perf_counter() - t0) / (i + len(crops)) * 1e3:.1f}"
              " ms/img)", end="\r", flush=True)
    if todo:
        print()
        if f:
            np.savez(f, paths=np.array(list(have)), x=np.stack(list(have.values())))
    return np.stack([have[p] for p in paths])


def fuse_kfold(c1: np.ndarray, c2: np.ndarray, y: np.ndarray, folds: np.ndarray) -> dict:
    """10-fold accuracy of z-norm score fusion, everything chosen on the training folds."""
    from facefeat.weights.fused import fused_score

    grid = np.round(np.arange(0, 1.0001, 0.05), 2)
    accs, ws = [], []
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        imp = tr & (y == 0)
        zn = [[float(c[imp].mean()), float(c[imp].std())] for c in (c1, c2)]
        best = None
        for w in grid:
            rec = {"weight": float(w), "znorm": zn}
            thr, acc = best_threshold(fused_score(rec, c1[tr], c2[tr]), y[tr])
            if best is None or acc > best[0]:
                best = (acc, rec, thr)
        accs.append(accuracy_at(fused_score(best[1], c1[te], c2[te]), y[te], best[2]))
        ws.append(best[1]["weight"])
    imp = y == 0
    zn = [[float(c[imp].mean()), float(c[imp].std())] for c in (c1, c2)]
    ship = max(({"weight": float(w), "znorm": zn} for w in grid),
               key=lambda r: best_threshold(fused_score(r, c1, c2), y)[1])
    return {"accuracy": float(np.mean(accs)), "std": float(np.std(accs)), "fold_weights": ws, "ship": ship}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="SFace,FaceNet")
    ap.add_argument("--fuse", default=None, help="two models of --models: their fused score, fold-honest")
    ap.add_argument("--grow", default=None, help="FaceNet: these box growths instead of the registry's")
    ap.add_argument("--flip", action="store_true", help="the flip test (mean of the crop and its mirror)")
    ap.add_argument("--retry", action="store_true", help="detect as verify/enrolment do (the retrying detector)")
    ap.add_argument("--retry-old", action="store_true",
                    help="the retrying detector as it was: orientation check and de-roll on profiles too")
    ap.add_argument("--landmarks", default="mirror", choices=["plain", "mirror", "zoom"],
                    help="landmark placement (facefeat.vision.refine; the pipeline's default: mirror)")
    ap.add_argument("--limit", type=int, default=None, help="about this many pairs, balanced over folds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=None, help="detections and features cached here across runs")
    ap.add_argument("--all", action="store_true", help="embed all 13,233 images (for calibration)")
    ap.add_argument("--fused-cache", default=None,
                    help="write the fused model's features of all images (from the two parts of --fuse and the "
                    "registry's fusion record) as bench/lfw.py --calibrate --cache reads them")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    _, pairs, folds, paths = load_pairs(args.limit)
    if args.all or args.fused_cache:  # every LFW image, in bench/lfw.py's order (its --cache format)
        files = lfw_people()
        paths = [f for p in files for f in files[p]]
    li, ri, y = pair_rows(pairs, paths)
    cache = Path(args.cache_dir) if args.cache_dir else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    print(f"{len(pairs)} pairs, {len(paths)} images; load {os.getloadavg()[0]:.1f}", flush=True)
    res, cos, xs = {"load": os.getloadavg()[0], "pairs": len(pairs)}, {}, {}
    dets = None
    for name in args.models.split(","):
        pipe = FaceRecognitionPipeline(model=name, batch_size=64, num_threads=args.threads, landmarks=args.landmarks)
        retry = "retry-old" if args.retry_old else "retry" if args.retry else None
        dets = dets or detections(pipe, paths, cache, retry)
        res["no_face"] = sum(1 for d in dets if d.get("none"))
        variants = {name: None}
        if args.grow:
            variants = {f"{name}-grow{g}": float(g) for g in args.grow.split(",")}
        for label, grow in variants.items():
            if grow is not None:
                fc = pipe.predictor.meta.extra["face_crop"]
                fc["regions"][-1]["grow"] = grow
            tag = "" if args.landmarks == "plain" else f"-{args.landmarks}"
            x = features(pipe, label + (f"-{retry}" if retry else "") + tag, paths, dets, cache, args.flip)
            c = np.sum(x[li] * x[ri], axis=1)
            cos[label], xs[label] = c, x
            m = evaluate_pairs(c, y, fold_ids=folds)
            res[label] = {"accuracy": round(100 * m["accuracy"], 3), "std": round(100 * m["std"], 3),
                          "runtime": f"{pipe.predictor.backend}/{pipe.predictor.precision}"}
            print(label, res[label], flush=True)
    if args.fuse:
        a, b = args.fuse.split(",")
        r = fuse_kfold(cos[a], cos[b], y, np.asarray(folds))
        res[f"{a}+{b} (score fusion)"] = {"accuracy": round(100 * r["accuracy"], 3), "std": round(100 * r["std"], 3),
                                          "fold_weights": r["fold_weights"]}
        res["ship"] = r["ship"]
        if args.fused_cache:
            from facefeat.registry import get_spec
            from facefeat.weights.fused import fusion_scales

            fusion = get_spec(f"{a}+{b}").fusion
            k1, k2 = fusion_scales(fusion)
            np.savez(args.fused_cache, feats=np.concatenate([k1 * xs[a], k2 * xs[b]], axis=1).astype(np.float32))
            print(f"fused features of {len(paths)} images -> {args.fused_cache}")
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
