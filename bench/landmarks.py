"""The cost of each landmark placement (facefeat.vision.refine), measured interleaved on LFW photos.

For every photo, each mode (``plain``, ``mirror``, ``zoom``) runs in turn (the order rotates from
photo to photo, so load changes on a shared machine hit every mode alike): read, detect, place the
landmarks, align and embed the photo's subject through ``FaceRecognitionPipeline`` - what
``pipe.embed`` does. Prints ms per photo for each mode, end to end and for detection + placement
alone, with the load average. Accuracy: ``python bench/lfw.py --landmarks MODE``.

    python bench/landmarks.py -n 300
    python bench/landmarks.py -n 20            # a quick check that it runs
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
from _common import LFW_DIR, need, print_table  # noqa: E402
from lfw import lfw_people  # noqa: E402

from facefeat.io import read_image  # noqa: E402
from facefeat.pipeline.face_recognition import FaceRecognitionPipeline  # noqa: E402
from facefeat.vision.choice import order_faces  # noqa: E402
from facefeat.vision.refine import LANDMARK_MODES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="LFW photos (spread over the people)")
    ap.add_argument("--model", default="SFace")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default=",".join(LANDMARK_MODES))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    need(LFW_DIR, "LFW")
    files = [f for fs in lfw_people().values() for f in fs]
    paths = files[:: max(1, len(files) // args.n)][: args.n]
    modes = args.modes.split(",")
    base = FaceRecognitionPipeline(model=args.model, num_threads=args.threads)
    pipes = {m: FaceRecognitionPipeline(predictor=base.predictor, landmarks=m) for m in modes}
    e2e = {m: 0.0 for m in modes}
    det = {m: 0.0 for m in modes}
    load0 = os.getloadavg()[0]
    for i, p in enumerate(paths):
        order = modes[i % len(modes):] + modes[: i % len(modes)]
        for m in order:
            pipe = pipes[m]
            t0 = time.perf_counter()
            img = read_image(p)
            t1 = time.perf_counter()
            dets = order_faces(pipe.detect(img), img.shape[1], img.shape[0])
            t2 = time.perf_counter()
            usable = [d for d in dets if not d.too_small]
            if usable:
                pipe.predictor.embed([pipe.align(img, usable[0])], pipe.flip)
            t3 = time.perf_counter()
            e2e[m] += t3 - t0
            det[m] += t2 - t1
    n = len(paths)
    load = (load0 + os.getloadavg()[0]) / 2
    rows = [["landmarks", "e2e ms/photo", "detect+place ms/photo", "e2e vs plain"]]
    ref = e2e.get("plain")
    for m in modes:
        rows.append([m, f"{e2e[m] / n * 1e3:.1f}", f"{det[m] / n * 1e3:.1f}",
                     f"{e2e[m] / ref:.2f}x" if ref else "-"])
    print(f"{n} LFW photos, {args.model}, {args.threads} threads, load average {load:.1f}")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"photos": n, "load": load, "model": args.model,
                                               "e2e_ms": {m: e2e[m] / n * 1e3 for m in modes},
                                               "detect_ms": {m: det[m] / n * 1e3 for m in modes}}, indent=1))


if __name__ == "__main__":
    main()
