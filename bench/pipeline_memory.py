"""Resident memory of the face_recognition pipeline through a run of large photos with varying
detection thresholds (the load that once kept ~1.6 GB per threshold and thread).

Builds one 4900x4900 PNG at run time (a flat background with an LFW face pasted in: ~70 KB on
disk, 24 M pixels, under the pixel limit), then runs ``pipeline.predict`` on it from ``--threads``
threads, each going through ``--thresholds`` different ``det_threshold`` values. Prints the RSS
before the run, after it, and the peak (``ru_maxrss``), in MB, and the faces found.

    python bench/pipeline_memory.py                    # 2 threads x 7 thresholds
    PYTHONPATH=/path/to/other/checkout python bench/pipeline_memory.py   # compare another version

LFW is read from ``$FACEFEAT_SHARED/data/lfw`` (default: ``shared/`` beside the checkout).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path and "PYTHONPATH" not in os.environ:
    sys.path.insert(0, str(REPO))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=4900)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--thresholds", type=int, default=7)
    args = ap.parse_args()

    import facefeat
    from facefeat import create_pipeline

    shared = Path(os.environ.get("FACEFEAT_SHARED", REPO.parent / "shared"))
    face = cv2.imread(str(shared / "data" / "lfw" / "George_W_Bush" / "George_W_Bush_0001.jpg"))
    if face is None:
        print(f"LFW not found under {shared}", file=sys.stderr)
        return 2
    img = np.full((args.side, args.side, 3), 120, np.uint8)
    s = args.side // 5
    img[s:2 * s, s:2 * s] = cv2.resize(face, (s, s))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.png"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        size_kb = path.stat().st_size / 1024
        del img
        pipe = create_pipeline("face_recognition")
        list(pipe.predict(np.zeros((64, 64, 3), np.uint8)))  # warm up: models loaded
        before = rss_mb()
        found: list[int] = []
        t0 = time.perf_counter()

        def work(k: int) -> None:
            for j in range(args.thresholds):
                thr = round(0.30 + 0.08 * j + 0.01 * k, 2)
                res = next(iter(pipe.predict(str(path), det_threshold=thr)))
                found.append(len(res["boxes"]))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"facefeat from {Path(facefeat.__file__).parent}")
    print(f"{args.side}x{args.side} PNG ({size_kb:.0f} KB), {args.threads} threads x {args.thresholds} thresholds, "
          f"{time.perf_counter() - t0:.1f} s; faces per run {sorted(set(found))}")
    print(f"RSS before {before:.0f} MB, after {after:.0f} MB, peak {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
