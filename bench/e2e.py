"""End to end, one photo -> one feature: ``pipe.embed`` vs a hand-written OpenCV YuNet + SFace program.

Both read the same LFW files (from disk, each pass), detect with the same YuNet ONNX, take one
face, align with the 5-point template and embed with SFace (facefeat: its default runtime, or
``--model-dir`` for an int8 build; the hand-written program: ``cv2.FaceDetectorYN`` +
``cv2.FaceRecognizerSF`` on the same fp32 SFace ONNX facefeat caches). Passes are interleaved
(A B A B ...) and the median of each is reported with the ratio and the load average.

    python bench/e2e.py                          # 500 LFW images, 5 interleaved passes each
    python bench/e2e.py -n 50 --reps 1           # tiny: proves it runs
    python bench/e2e.py --model-dir sface-int8   # facefeat with an int8 build (facefeat quantize)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

THREADS = 2
os.environ.setdefault("FACEFEAT_NUM_THREADS", str(THREADS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LFW_DIR, need  # noqa: E402

from facefeat import create_pipeline  # noqa: E402
from facefeat.registry import get_spec  # noqa: E402
from facefeat.runtime.model_dir import MODEL_FILE  # noqa: E402
from facefeat.runtime.zoo import prepare_model_dir  # noqa: E402
from facefeat.vision.detector import yunet_model_path  # noqa: E402
from facefeat.weights.resolver import resolve  # noqa: E402


class HandWritten:
    """What a user writes with OpenCV alone (its own YuNet + SFace sample)."""

    def __init__(self):
        cv2.setNumThreads(THREADS)
        self.det = cv2.FaceDetectorYN.create(str(yunet_model_path()), "", (320, 320), 0.5, 0.3, 5000)
        self.rec = cv2.FaceRecognizerSF.create(str(prepare_model_dir(get_spec("SFace"), resolve(None, "SFace")) / MODEL_FILE), "")

    def __call__(self, path: str):
        img = cv2.imread(path)
        self.det.setInputSize((img.shape[1], img.shape[0]))
        _, faces = self.det.detect(img)
        if faces is None:
            return None
        face = self.rec.alignCrop(img, faces[0])
        return self.rec.feature(face)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=500, help="LFW images per pass")
    ap.add_argument("--reps", type=int, default=5, help="interleaved passes of each program")
    ap.add_argument("--model-dir", default=None, help="facefeat runs this model directory (e.g. an int8 build)")
    ap.add_argument("--model", default="SFace", help="facefeat's zoo model (the hand-written side stays SFace)")
    args = ap.parse_args()
    need(LFW_DIR, "LFW")
    people = sorted(os.listdir(LFW_DIR))
    paths = [str(LFW_DIR / p / f) for p in people for f in sorted(os.listdir(LFW_DIR / p))][:: 7][: args.n]
    kw = {"model_dir": args.model_dir} if args.model_dir else {"model": args.model}
    pipe = create_pipeline("face_recognition", num_threads=THREADS, **kw)
    hand = HandWritten()
    ours = lambda: [pipe.embed(p) for p in paths]  # noqa: E731
    theirs = lambda: [hand(p) for p in paths]  # noqa: E731
    ours(), theirs()  # warm-up (compiled-model caches, file cache)
    t_ours, t_theirs = [], []
    for _ in range(args.reps):
        for fn, acc in ((ours, t_ours), (theirs, t_theirs)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    a, b = float(np.median(t_ours)) / len(paths) * 1e3, float(np.median(t_theirs)) / len(paths) * 1e3
    rt = pipe.predictor.runtime_info()
    print(f"{len(paths)} LFW images, {args.reps} interleaved passes, {THREADS} threads, load {os.getloadavg()[0]:.1f}")
    print(f"facefeat pipe.embed ({pipe.predictor.model_name}, {rt['backend']}/{rt['precision']}): {a:.2f} ms/img")
    print(f"hand-written OpenCV YuNet + SFace (OpenCV DNN fp32): {b:.2f} ms/img")
    print(f"speed-up: {b / a:.2f}x")


if __name__ == "__main__":
    main()
