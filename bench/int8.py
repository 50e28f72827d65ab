"""int8 against fp32 on LFW faces: feature agreement and LFW 10-fold accuracy, per zoo model.

For each ``NAME=INT8_DIR`` (an int8 model directory made by ``facefeat quantize``, ONNX or
OpenVINO IR), the LFW images of the selected pairs are detected once (the pipeline's detector and
face choice, cached) and each model embeds its own crop (``pipe.align``: the 5-point alignment or
the model's ``face_crop``) in fp32 and in int8. Reported: min / mean / 1st-percentile cosine between
the fp32 and int8 features of every face, and the 10-fold accuracy of both on the pairs, with the
load average. The quantisation itself is not timed here (see bench/inference.py for speed).

    facefeat quantize --model FaceNet --calib /tmp/lfw-calib --out /tmp/facenet-int8        # ~300 photos
    facefeat quantize --model SFace+FaceNet --calib /tmp/lfw-calib --out /tmp/fused-int8
    python bench/int8.py FaceNet=/tmp/facenet-int8 SFace+FaceNet=/tmp/fused-int8 --cache-dir /tmp/lfwc
    python bench/int8.py FaceNet=/tmp/facenet-int8 --limit 300                              # a small run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lfw import load_pairs, pair_rows  # noqa: E402
from lfw_models import detections, features  # noqa: E402

from facefeat.engine.verification import evaluate_pairs  # noqa: E402
from facefeat.pipeline.face_recognition import FaceRecognitionPipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", metavar="NAME=INT8_DIR", help="zoo model and its int8 model directory")
    ap.add_argument("--limit", type=int, default=None, help="about this many pairs, balanced over folds (all 6,000)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=None, help="detections and features cached here across runs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    _, pairs, folds, paths = load_pairs(args.limit)
    li, ri, y = pair_rows(pairs, paths)
    cache = Path(args.cache_dir) if args.cache_dir else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    res: dict = {"load": os.getloadavg()[0], "pairs": len(pairs), "images": len(paths)}
    print(f"{len(pairs)} pairs, {len(paths)} images; load {res['load']:.1f}", flush=True)
    dets = None
    for item in args.models:
        name, _, qdir = item.partition("=")
        if not qdir:
            raise SystemExit(f"{item!r}: give NAME=INT8_DIR")
        row: dict = {}
        xs = {}
        for label, pipe in (("fp32", FaceRecognitionPipeline(model=name, precision="fp32", batch_size=64,
                                                             num_threads=args.threads)),
                            ("int8", FaceRecognitionPipeline(model=None, model_dir=qdir, batch_size=64,
                                                             num_threads=args.threads))):
            dets = dets or detections(pipe, paths, cache)
            x = features(pipe, f"{name}-{label}", paths, dets, cache, False)
            m = evaluate_pairs(np.sum(x[li] * x[ri], axis=1), y, fold_ids=folds)
            row[label] = {"accuracy": round(100 * m["accuracy"], 3), "std": round(100 * m["std"], 3),
                          "runtime": f"{pipe.predictor.backend}/{pipe.predictor.precision}"}
            xs[label] = x
        cos = np.sum(xs["fp32"] * xs["int8"], axis=1)
        row["cosine"] = {"min": round(float(cos.min()), 4), "p1": round(float(np.percentile(cos, 1)), 4),
                         "mean": round(float(cos.mean()), 4)}
        res[name] = row
        print(name, json.dumps(row), flush=True)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
