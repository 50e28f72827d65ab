"""End to end, photos -> features: ``pipe.embed`` vs a hand-written OpenCV YuNet + SFace program.

Both read the same LFW files (from disk, each pass), detect with the same YuNet ONNX, take one
face, align with the 5-point template and embed with SFace (facefeat: its default runtime, or
``--model-dir`` for an int8 build; the hand-written program: ``cv2.FaceDetectorYN`` +
``cv2.FaceRecognizerSF`` on the same fp32 SFace ONNX facefeat caches). facefeat is timed two ways:
one call per photo (``[pipe.embed(p) for p in paths]``) and one call for the list
(``pipe.embed(paths)``: faces embedded in batches, the next photos read and detected meanwhile).
The three programs' passes are interleaved (A B C A B C ...); the median of each is reported, in
wall-clock and in process CPU time (on a shared machine the CPU time is the steadier figure),
with the speed-ups and the load average.

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
    ap.add_argument("--landmarks", default=None, help="facefeat's landmark mode (default: the pipeline's, 'mirror'; "
                    "'plain' is one detection pass like the hand-written program)")
    args = ap.parse_args()
    need(LFW_DIR, "LFW")
    people = sorted(os.listdir(LFW_DIR))
    paths = [str(LFW_DIR / p / f) for p in people for f in sorted(os.listdir(LFW_DIR / p))][:: 7][: args.n]
    kw = {"model_dir": args.model_dir} if args.model_dir else {"model": args.model}
    if args.landmarks:
        kw["landmarks"] = args.landmarks
    pipe = create_pipeline("face_recognition", num_threads=THREADS, **kw)
    hand = HandWritten()
    programs = {
        "facefeat, one pipe.embed call per photo": lambda: [pipe.embed(p) for p in paths],
        "facefeat, one pipe.embed call for the list": lambda: pipe.embed(paths),
        "hand-written OpenCV YuNet + SFace (OpenCV DNN fp32)": lambda: [hand(p) for p in paths],
    }
    for fn in programs.values():  # warm-up (compiled-model caches, file cache)
        fn()
    wall: dict[str, list[float]] = {k: [] for k in programs}
    cpu: dict[str, list[float]] = {k: [] for k in programs}
    for _ in range(args.reps):
        for name, fn in programs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    ms = {k: (float(np.median(wall[k])) / len(paths) * 1e3, float(np.median(cpu[k])) / len(paths) * 1e3)
          for k in programs}
    rt = pipe.predictor.runtime_info()
    hand_key = list(programs)[-1]
    print(f"{len(paths)} LFW images, {args.reps} interleaved passes, {THREADS} threads, "
          f"load {os.getloadavg()[0]:.1f}; facefeat runs {pipe.predictor.model_name} on "
          f"{rt['backend']}/{rt['precision']}, landmarks {pipe.landmarks}")
    print(f"{'program':54s} {'ms/img':>7s} {'cpu ms':>7s} {'speed-up':>9s} {'cpu ratio':>9s}")
    for k, (w, c) in ms.items():
        print(f"{k:54s} {w:7.2f} {c:7.2f} {ms[hand_key][0] / w:8.2f}x {ms[hand_key][1] / c:8.2f}x")

if __name__ == "__main__":
    main()
